/* SLoRA / NLoRA / IntTune (arXiv 2502.14482, TracyGuo2001/NLoRA): LoRA with an r x r matrix N between
 * the two factors, y = x W^T + s drop(x) A^T N^T B^T. The five concerns of adapter.h, in file order:
 * registration, initialisation (SLoRA random, NLoRA from W's leading blocks), forward/backward,
 * merge, export as PEFT LoRA with N folded into B. */
#include "adapters/slora.h"

#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/rng.h"

const char *const slora_init_names[] = {[SLORA_INIT_SLORA] = "slora", [SLORA_INIT_NLORA] = "nlora", NULL};
const char *const nlora_core_names[] = {[NLORA_CORE_BLOCK] = "block", [NLORA_CORE_PINV] = "pinv", NULL};

typedef struct {
    SloraConfig cfg;
    real_t scale;
    int group;
    int hA, hN, hB;        /* arena handles; hA = hB = -1 for IntTune */
    real_t *A, *dA;        /* (r,in); dA NULL when frozen */
    real_t *N, *dN;        /* (r,r) */
    real_t *B, *dB;        /* (out,r); dB NULL when frozen */
    int owns_ab;           /* IntTune: A and B are this adapter's backend memory */
    real_t *bn;            /* (out,r) B N, computed for merge and export */
    uint64_t key;          /* dropout stream of this layer, from its name */
    real_t *xa, *xn;       /* (cap,r) drop(x) A^T and xa N^T, saved by forward */
    real_t *g, *dxa;       /* (cap,r) backward scratch: d(xn), d(xa) */
    int cap;
} Slora;

double slora_scale(const SloraConfig *c) { return c->rslora ? c->alpha / sqrt((double)c->r) : c->alpha / c->r; }

int64_t slora_param_count(const SloraConfig *c, int in, int out) {
    int64_t r = c->r;
    return c->train_ab ? r * ((int64_t)in + out) + r * r : r * r;
}

/* ---------------------------------------------------------------- (a) which tensors train */

static PeftcStatus slora_register(Adapter *a, Arena *arena) {
    Slora *S = a->state;
    int r = S->cfg.r;
    char name[ARENA_NAME_MAX];
    if (S->cfg.train_ab) {
        snprintf(name, sizeof name, "%s.slora_A", a->name);
        PEFTC_TRY(arena_register(arena, name, shape2(r, a->in), S->group, 1, &S->hA));
    }
    snprintf(name, sizeof name, "%s.slora_N", a->name);
    PEFTC_TRY(arena_register(arena, name, shape2(r, r), S->group, 1, &S->hN));
    if (!S->cfg.train_ab) return PEFTC_OK;
    snprintf(name, sizeof name, "%s.slora_B", a->name);
    return arena_register(arena, name, shape2(a->out, r), S->group, 1, &S->hB);
}

/* ---------------------------------------------------------------- (b) init from the frozen base */

/* dst(n) = U(-bound, bound) from the stream keyed by (seed, "<module>.slora_<which>"): the arena name
 * when the tensor trains, so draws do not depend on registration order. */
static PeftcStatus fill_uniform(const Adapter *a, real_t *dst, size_t n, uint64_t seed, const char *which,
                                double bound) {
    char name[ARENA_NAME_MAX];
    snprintf(name, sizeof name, "%s.slora_%s", a->name, which);
    uint64_t key = rng_key_str(seed, name);
    real_t *h = backend_host_begin(a->be, dst, n);
    if (!h) return PEFTC_ERR(PEFTC_ENOMEM, "slora: no host memory to initialise %s", name);
    for (size_t i = 0; i < n; i++) h[i] = (real_t)(bound * (2.0 * rng_uniform(key, i) - 1.0));
    backend_host_done(a->be, dst, h, n);
    return PEFTC_OK;
}

/* SLoRA: kaiming_uniform(a=sqrt 5) on A and N, i.e. U(+-1/sqrt fan_in); B = 0. */
static PeftcStatus init_slora(Adapter *a, uint64_t seed) {
    Slora *S = a->state;
    int r = S->cfg.r;
    PEFTC_TRY(fill_uniform(a, S->A, (size_t)r * (size_t)a->in, seed, "A", 1.0 / sqrt((double)a->in)));
    PEFTC_TRY(fill_uniform(a, S->N, (size_t)r * (size_t)r, seed, "N", 1.0 / sqrt((double)r)));
    a->be->zero(a->be, S->B, (size_t)a->out * (size_t)r);
    return PEFTC_OK;
}

/* P(r,r) = pinv(M(r,r)) by SVD, in double whatever real_t is: the inverse of small singular values
 * amplifies rounding. Singular values below r * eps(real_t) * s_max count as zero, the default cutoff
 * of torch.linalg.pinv on a tensor of that precision. */
static PeftcStatus pinv_square(real_t *P, const real_t *M, int r, const char *module) {
    size_t n = (size_t)r * (size_t)r;
    double *buf = malloc((4 * n + 2 * (size_t)r) * sizeof *buf);
    if (!buf) return PEFTC_ERR(PEFTC_ENOMEM, "slora: no host memory for the pseudo-inverse of %s's N", module);
    double *m = buf, *u = m + n, *vt = u + n, *s = vt + n, *superb = s + r;
    for (size_t i = 0; i < n; i++) m[i] = M[i];
    lapack_int info = LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'A', 'A', r, r, m, r, s, u, r, vt, r, superb);
    if (info != 0) {
        free(buf);
        return PEFTC_ERR(PEFTC_EINVAL, "slora: SVD of %s's block W[:%d,:%d] did not converge (LAPACK info %d; "
                                       "is the weight finite?)", module, r, r, (int)info);
    }
    double eps = sizeof(real_t) == sizeof(float) ? FLT_EPSILON : DBL_EPSILON;
    double tol = r * eps * s[0];
    for (int i = 0; i < r; i++) /* P = V diag(1/s) U^T */
        for (int j = 0; j < r; j++) {
            double acc = 0;
            for (int k = 0; k < r && s[k] > tol; k++) acc += vt[(size_t)k * r + i] / s[k] * u[(size_t)j * r + k];
            P[(size_t)i * r + j] = (real_t)acc;
        }
    free(buf);
    return PEFTC_OK;
}

/* Writes host values h(n) into backend tensor dst. */
static PeftcStatus put(const Adapter *a, real_t *dst, const real_t *h, size_t n, const char *what) {
    real_t *d = backend_host_begin(a->be, dst, n);
    if (!d) return PEFTC_ERR(PEFTC_ENOMEM, "slora: no host memory to initialise %s of %s", what, a->name);
    memcpy(d, h, n * sizeof *d);
    backend_host_done(a->be, dst, d, n);
    return PEFTC_OK;
}

/* NLoRA from the host copy w(out,in) of W: A = W[:r,:], N = W[:r,:r] or its pinv, B = W[:,:r]. */
static PeftcStatus nlora_from_host(Adapter *a, const real_t *w) {
    Slora *S = a->state;
    int r = S->cfg.r;
    real_t *h = malloc(((size_t)a->out + (size_t)r) * (size_t)r * sizeof *h);
    if (!h) return PEFTC_ERR(PEFTC_ENOMEM, "slora: no host memory to initialise %s", a->name);
    real_t *blk = h, *b = h + (size_t)r * r; /* blk (r,r), b (out,r) */
    for (int i = 0; i < r; i++) memcpy(blk + (size_t)i * r, w + (size_t)i * a->in, (size_t)r * sizeof *h);
    for (int o = 0; o < a->out; o++) memcpy(b + (size_t)o * r, w + (size_t)o * a->in, (size_t)r * sizeof *h);
    PeftcStatus st = put(a, S->A, w, (size_t)r * (size_t)a->in, "A");
    if (st == PEFTC_OK) st = put(a, S->B, b, (size_t)a->out * (size_t)r, "B");
    if (st == PEFTC_OK && S->cfg.core == NLORA_CORE_PINV) {
        real_t *p = malloc((size_t)r * r * sizeof *p);
        st = p ? pinv_square(p, blk, r, a->name)
               : PEFTC_ERR(PEFTC_ENOMEM, "slora: no host memory for the pseudo-inverse of %s's N", a->name);
        if (st == PEFTC_OK) memcpy(blk, p, (size_t)r * r * sizeof *p);
        free(p);
    }
    if (st == PEFTC_OK) st = put(a, S->N, blk, (size_t)r * r, "N");
    free(h);
    return st;
}

/* W may live on a device or in quantized blocks: one dense copy of the whole matrix on the host beats out
 * strided row-prefix copies. */
static PeftcStatus init_nlora(Adapter *a, const Linear *base) {
    size_t n = (size_t)a->out * (size_t)a->in;
    real_t *w = malloc(n * sizeof *w);
    if (!w) return PEFTC_ERR(PEFTC_ENOMEM, "slora: no host memory to read %s.weight (%zu values)", a->name, n);
    PeftcStatus st = linear_weight_dense(a->be, base, w);
    if (st == PEFTC_OK) st = nlora_from_host(a, w);
    free(w);
    return st;
}

static PeftcStatus slora_init(Adapter *a, const Arena *arena, const Linear *base, uint64_t seed) {
    Slora *S = a->state;
    S->N = arena_param(arena, S->hN);
    S->dN = arena_grad(arena, S->hN);
    if (S->cfg.train_ab) {
        S->A = arena_param(arena, S->hA);
        S->dA = arena_grad(arena, S->hA);
        S->B = arena_param(arena, S->hB);
        S->dB = arena_grad(arena, S->hB);
    }
    if (base->in != a->in || base->out != a->out)
        return PEFTC_ERR(PEFTC_EINVAL, "slora: %s is (%d, %d), the adapter was made for (%d, %d)", base->name,
                         base->out, base->in, a->out, a->in);
    return S->cfg.init == SLORA_INIT_NLORA ? init_nlora(a, base) : init_slora(a, seed);
}

/* ---------------------------------------------------------------- (c) forward / backward */

static PeftcStatus slora_reserve(Adapter *a, int R) {
    Slora *S = a->state;
    if (R <= S->cap) return PEFTC_OK;
    real_t **bufs[4] = {&S->xa, &S->xn, &S->g, &S->dxa};
    size_t bytes = (size_t)R * (size_t)S->cfg.r * sizeof(real_t);
    S->cap = R;
    for (int i = 0; i < 4; i++) {
        a->be->free(a->be, *bufs[i]);
        *bufs[i] = a->be->alloc(a->be, bytes);
        if (!*bufs[i]) S->cap = 0;
    }
    if (!S->cap) return PEFTC_ERR(PEFTC_ENOMEM, "slora: cannot allocate 4 x %zu bytes for layer %s", bytes, a->name);
    return PEFTC_OK;
}

/* The adapter's input: x, or its dropped-out copy in ctx->scratch (mask in ctx->mask_scratch). The mask
 * is a pure function of (row key, layer), so backward recomputes it instead of storing it. */
static const real_t *slora_input(Adapter *a, const StepCtx *ctx, const real_t *x, int R) {
    const Slora *S = a->state;
    return adapter_dropout_input(a, ctx, x, R, S->cfg.dropout, S->key);
}

static void slora_forward(Adapter *a, const StepCtx *ctx, real_t *y, const real_t *x, int R) {
    Slora *S = a->state;
    const Backend *be = a->be;
    int r = S->cfg.r;
    const real_t *xd = slora_input(a, ctx, x, R);
    nn_matmul(be, ctx, S->xa, xd, S->A, R, r, a->in, 0, 1, 1, 0);         /* xa(R,r) = xd A^T */
    nn_matmul(be, ctx, S->xn, S->xa, S->N, R, r, r, 0, 1, 1, 0);          /* xn(R,r) = xa N^T */
    nn_matmul(be, ctx, y, S->xn, S->B, R, a->out, r, 0, 1, S->scale, 1);  /* y += s xn B^T */
}

static void slora_backward(Adapter *a, const StepCtx *ctx, real_t *dx, const real_t *dy, const real_t *x, int R) {
    Slora *S = a->state;
    const Backend *be = a->be;
    int r = S->cfg.r;
    if (S->dB) nn_matmul(be, ctx, S->dB, dy, S->xn, a->out, r, R, 1, 0, S->scale, 1); /* dB(out,r) += s dy^T xn */
    nn_matmul(be, ctx, S->g, dy, S->B, R, r, a->out, 0, 0, S->scale, 0);               /* g(R,r) = s dy B */
    nn_matmul(be, ctx, S->dN, S->g, S->xa, r, r, R, 1, 0, 1, 1);                       /* dN(r,r) += g^T xa */
    if (!S->dA && !dx) return;
    nn_matmul(be, ctx, S->dxa, S->g, S->N, R, r, r, 0, 0, 1, 0);                       /* dxa(R,r) = g N */
    const real_t *xd = slora_input(a, ctx, x, R);
    if (S->dA) nn_matmul(be, ctx, S->dA, S->dxa, xd, r, a->in, R, 1, 0, 1, 1);        /* dA(r,in) += dxa^T xd */
    if (!dx) return;
    if (xd == x) {
        nn_matmul(be, ctx, dx, S->dxa, S->A, R, a->in, r, 0, 0, 1, 1);                 /* dx += dxa A */
    } else {
        /* xd is no longer needed: reuse its scratch for dxa A, then route through the mask. */
        nn_matmul(be, ctx, ctx->scratch, S->dxa, S->A, R, a->in, r, 0, 0, 1, 0);
        be->dropout_bwd(be, dx, ctx->scratch, ctx->mask_scratch, R, a->in, (real_t)S->cfg.dropout);
    }
}

/* ---------------------------------------------------------------- (d) merge, (e) export */

/* bn(out,r) = B N: the one factor PEFT's B stands for. */
static void fold_bn(const Adapter *a) {
    Slora *S = a->state;
    a->be->matmul(a->be, S->bn, S->B, S->N, a->out, S->cfg.r, S->cfg.r, 0, 0, 1, 0);
}

static void slora_merge(const Adapter *a, real_t *W) {
    const Slora *S = a->state;
    fold_bn(a);
    a->be->matmul(a->be, W, S->bn, S->A, a->out, a->in, S->cfg.r, 0, 0, S->scale, 1); /* W(out,in) += s (B N) A */
}

static PeftcStatus slora_export(const Adapter *a, TensorSink sink, void *user) {
    const Slora *S = a->state;
    fold_bn(a);
    PEFTC_TRY(a->be->status(a->be));
    char name[160];
    Tensor A = {S->A, DT_REAL, a->be->device, shape2(S->cfg.r, a->in)};
    Tensor B = {S->bn, DT_REAL, a->be->device, shape2(a->out, S->cfg.r)};
    snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", a->name);
    PEFTC_TRY(sink(user, name, &A));
    snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", a->name);
    return sink(user, name, &B);
}

static void slora_destroy(Adapter *a) {
    Slora *S = a->state;
    if (S->owns_ab) {
        a->be->free(a->be, S->A);
        a->be->free(a->be, S->B);
    }
    real_t *bufs[5] = {S->bn, S->xa, S->xn, S->g, S->dxa};
    for (int i = 0; i < 5; i++) a->be->free(a->be, bufs[i]);
    adapter_free(a);
}

static const AdapterOps slora_ops = {
    .kind = "slora",
    .register_params = slora_register,
    .init = slora_init,
    .reserve = slora_reserve,
    .forward = slora_forward,
    .backward = slora_backward,
    .merge = slora_merge,
    .export_tensors = slora_export,
    .destroy = slora_destroy,
};

static PeftcStatus check_config(const Linear *base, const SloraConfig *c) {
    if (c->r < 1) return PEFTC_ERR(PEFTC_EINVAL, "slora: r must be >= 1, got %d", c->r);
    if (c->dropout < 0 || c->dropout >= 1)
        return PEFTC_ERR(PEFTC_EINVAL, "slora: dropout must be in [0, 1), got %g", c->dropout);
    if (c->init != SLORA_INIT_SLORA && c->init != SLORA_INIT_NLORA)
        return PEFTC_ERR(PEFTC_EINVAL, "slora: init must be slora or nlora, got %d", (int)c->init);
    if (c->core != NLORA_CORE_BLOCK && c->core != NLORA_CORE_PINV)
        return PEFTC_ERR(PEFTC_EINVAL, "slora: nlora core must be block or pinv, got %d", (int)c->core);
    if (!c->train_ab && c->init == SLORA_INIT_SLORA)
        return PEFTC_ERR(PEFTC_EINVAL, "slora: IntTune (A and B frozen) needs the nlora init: with the slora init "
                                       "B stays 0 and N would never train");
    int mn = base->in < base->out ? base->in : base->out;
    if (c->init == SLORA_INIT_NLORA && c->r > mn)
        return PEFTC_ERR(PEFTC_EINVAL, "slora: nlora init of %s (out %d, in %d) needs r <= min(in, out) = %d, got "
                                       "r = %d", base->name, base->out, base->in, mn, c->r);
    return PEFTC_OK;
}

PeftcStatus slora_create(Adapter **out, const Backend *be, const Linear *base, const SloraConfig *cfg, int group) {
    PEFTC_TRY(check_config(base, cfg));
    Adapter *a;
    PEFTC_TRY(adapter_new(&a, &slora_ops, be, base, sizeof(Slora)));
    Slora *S = a->state;
    S->cfg = *cfg;
    S->scale = (real_t)slora_scale(cfg);
    S->group = group;
    S->hA = S->hB = -1;
    S->key = rng_key_str(0x5104A, base->name);
    size_t rb = (size_t)cfg->r * sizeof(real_t);
    S->bn = be->alloc(be, (size_t)a->out * rb);
    if (!cfg->train_ab) {
        S->owns_ab = 1;
        S->A = be->alloc(be, (size_t)a->in * rb);
        S->B = be->alloc(be, (size_t)a->out * rb);
    }
    if (!S->bn || (S->owns_ab && (!S->A || !S->B))) {
        slora_destroy(a);
        return PEFTC_ERR(PEFTC_ENOMEM, "slora: cannot allocate the factors of layer %s", base->name);
    }
    *out = a;
    return PEFTC_OK;
}
