/* LoRA (Hu et al. 2021), with PEFT's conventions: A (r,in) kaiming-uniform(a=sqrt 5), B (out,r) zero,
 * scale alpha/r (alpha/sqrt r with rsLoRA), dropout on the adapter's input only. */
#include "adapters/lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/rng.h"
#include "core/models/llama/llama.h"
#include "core/models/mamba/mamba.h"

typedef struct {
    LoraConfig cfg;
    real_t scale;
    int group;
    int hA, hB;            /* arena handles */
    real_t *A, *dA;        /* (r,in) */
    real_t *B, *dB;        /* (out,r) */
    uint64_t key;          /* dropout stream of this layer, from its name */
    real_t *xa;            /* (cap,r) drop(x) A^T saved by forward */
    real_t *dxa;           /* (cap,r) backward scratch */
    int cap;               /* rows xa/dxa can hold */
} Lora;

_Static_assert(LORA_T_ALL == (1u << LLAMA_N_TARGETS) - 1, "LORA_T_* are the bits of llama_targets");

/* Before a model is loaded its family is unknown: names that one family has all pass here, and attach
 * resolves them against the model's own list (lora_resolve_targets). */
PeftcStatus lora_parse_targets(const char *s, unsigned *out) {
    if (model_targets_mask(llama_targets, LLAMA_N_TARGETS, "llama", s, "lora.targets", out) == PEFTC_OK)
        return PEFTC_OK;
    char first[512];
    snprintf(first, sizeof first, "%s", peftc_err_msg());
    peftc_err_clear();
    if (model_targets_mask(mamba_targets, MAMBA_N_TARGETS, "mamba", s, "lora.targets", out) == PEFTC_OK)
        return PEFTC_OK;
    peftc_err_clear();
    return PEFTC_ERR(PEFTC_EINVAL, "%s; on a mamba model: in_proj, x_proj, dt_proj, out_proj", first);
}

double lora_scale(const LoraConfig *c) { return c->rslora ? c->alpha / sqrt((double)c->r) : c->alpha / c->r; }

static PeftcStatus lora_register(Adapter *a, Arena *arena) {
    Lora *L = a->state;
    char name[ARENA_NAME_MAX];
    snprintf(name, sizeof name, "%s.lora_A", a->name);
    PEFTC_TRY(arena_register(arena, name, shape2(L->cfg.r, a->in), L->group, 1, &L->hA));
    snprintf(name, sizeof name, "%s.lora_B", a->name);
    return arena_register(arena, name, shape2(a->out, L->cfg.r), L->group, 1, &L->hB);
}

static PeftcStatus lora_init(Adapter *a, const Arena *arena, const Linear *base, uint64_t seed) {
    (void)base;
    Lora *L = a->state;
    L->A = arena_param(arena, L->hA);
    L->dA = arena_grad(arena, L->hA);
    L->B = arena_param(arena, L->hB);
    L->dB = arena_grad(arena, L->hB);
    /* kaiming_uniform(a=sqrt 5): gain sqrt(2/(1+5)), bound gain*sqrt(3/fan_in) = 1/sqrt(fan_in). */
    double bound = 1.0 / sqrt((double)a->in);
    uint64_t key = rng_key_str(seed, arena->entries[L->hA].name);
    size_t n = (size_t)L->cfg.r * (size_t)a->in;
    real_t *A = backend_host_begin(a->be, L->A, n);
    if (!A) return PEFTC_ERR(PEFTC_ENOMEM, "lora: no host memory to initialise %s", a->name);
    for (size_t i = 0; i < n; i++) A[i] = (real_t)(bound * (2.0 * rng_uniform(key, i) - 1.0));
    backend_host_done(a->be, L->A, A, n);
    a->be->zero(a->be, L->B, (size_t)a->out * (size_t)L->cfg.r);
    return PEFTC_OK;
}

static PeftcStatus lora_reserve(Adapter *a, int R) {
    Lora *L = a->state;
    if (R <= L->cap) return PEFTC_OK;
    a->be->free(a->be, L->xa);
    a->be->free(a->be, L->dxa);
    size_t bytes = (size_t)R * (size_t)L->cfg.r * sizeof(real_t);
    L->xa = a->be->alloc(a->be, bytes);
    L->dxa = a->be->alloc(a->be, bytes);
    L->cap = (L->xa && L->dxa) ? R : 0;
    if (!L->cap) return PEFTC_ERR(PEFTC_ENOMEM, "lora: cannot allocate 2 x %zu bytes for layer %s", bytes, a->name);
    return PEFTC_OK;
}

static const real_t *lora_input(Adapter *a, const StepCtx *ctx, const real_t *x, int R) {
    const Lora *L = a->state;
    return adapter_dropout_input(a, ctx, x, R, L->cfg.dropout, L->key);
}

static void lora_forward(Adapter *a, const StepCtx *ctx, real_t *y, const real_t *x, int R) {
    Lora *L = a->state;
    const Backend *be = a->be;
    int r = L->cfg.r;
    const real_t *xd = lora_input(a, ctx, x, R);
    nn_matmul(be, ctx, L->xa, xd, L->A, R, r, a->in, 0, 1, 1, 0);             /* xa(R,r) = xd A^T */
    nn_matmul(be, ctx, y, L->xa, L->B, R, a->out, r, 0, 1, L->scale, 1);       /* y += s xa B^T */
}

static void lora_backward(Adapter *a, const StepCtx *ctx, real_t *dx, const real_t *dy, const real_t *x, int R) {
    Lora *L = a->state;
    const Backend *be = a->be;
    int r = L->cfg.r;
    nn_matmul(be, ctx, L->dB, dy, L->xa, a->out, r, R, 1, 0, L->scale, 1);     /* dB(out,r) += s dy^T xa */
    nn_matmul(be, ctx, L->dxa, dy, L->B, R, r, a->out, 0, 0, L->scale, 0);     /* dxa(R,r) = s dy B */
    const real_t *xd = lora_input(a, ctx, x, R);
    nn_matmul(be, ctx, L->dA, L->dxa, xd, r, a->in, R, 1, 0, 1, 1);            /* dA(r,in) += dxa^T xd */
    if (!dx) return;
    if (xd == x) {
        nn_matmul(be, ctx, dx, L->dxa, L->A, R, a->in, r, 0, 0, 1, 1);         /* dx += dxa A */
    } else {
        /* xd is no longer needed: reuse its scratch for dxa A, then route through the mask. */
        nn_matmul(be, ctx, ctx->scratch, L->dxa, L->A, R, a->in, r, 0, 0, 1, 0);
        be->dropout_bwd(be, dx, ctx->scratch, ctx->mask_scratch, R, a->in, (real_t)L->cfg.dropout);
    }
}

static void lora_merge(const Adapter *a, real_t *W) {
    const Lora *L = a->state;
    a->be->matmul(a->be, W, L->B, L->A, a->out, a->in, L->cfg.r, 0, 0, L->scale, 1); /* W(out,in) += s B A */
}

static PeftcStatus lora_export(const Adapter *a, TensorSink sink, void *user) {
    const Lora *L = a->state;
    char name[160];
    Tensor A = {L->A, DT_REAL, a->be->device, shape2(L->cfg.r, a->in)};
    Tensor B = {L->B, DT_REAL, a->be->device, shape2(a->out, L->cfg.r)};
    snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", a->name);
    PEFTC_TRY(sink(user, name, &A));
    snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", a->name);
    return sink(user, name, &B);
}

static void lora_destroy(Adapter *a) {
    Lora *L = a->state;
    a->be->free(a->be, L->xa);
    a->be->free(a->be, L->dxa);
    adapter_free(a);
}

static const AdapterOps lora_ops = {
    .kind = "lora",
    .register_params = lora_register,
    .init = lora_init,
    .reserve = lora_reserve,
    .forward = lora_forward,
    .backward = lora_backward,
    .merge = lora_merge,
    .export_tensors = lora_export,
    .destroy = lora_destroy,
};

PeftcStatus lora_create(Adapter **out, const Backend *be, const Linear *base, const LoraConfig *cfg, int group) {
    if (cfg->r < 1) return PEFTC_ERR(PEFTC_EINVAL, "lora.r must be >= 1, got %d", cfg->r);
    if (cfg->dropout < 0 || cfg->dropout >= 1)
        return PEFTC_ERR(PEFTC_EINVAL, "lora.dropout must be in [0, 1), got %g", cfg->dropout);
    Adapter *a;
    PEFTC_TRY(adapter_new(&a, &lora_ops, be, base, sizeof(Lora)));
    Lora *L = a->state;
    L->cfg = *cfg;
    L->scale = (real_t)lora_scale(cfg);
    L->group = group;
    L->key = rng_key_str(0x10AA, base->name);
    *out = a;
    return PEFTC_OK;
}
