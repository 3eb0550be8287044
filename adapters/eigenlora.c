/* EigenLoRAx: a LoRA whose factors live in frozen principal subspaces, A_eff^T = C_A alpha_A and
 * B_eff = C_B alpha_B; only the loadings alpha train. The forward builds the two (n,r) effective factors
 * once per call (cost K r (in + out), independent of the rows) and then runs as LoRA at rank r. */
#include "adapters/eigenlora.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/rng.h"
#include "adapters/formats/peft_io.h"

typedef struct {
    EigenConfig cfg;
    int group;
    int hA, hB;         /* arena handles */
    real_t *aA, *daA;   /* (K,r) alpha_A */
    real_t *aB, *daB;   /* (K,r) alpha_B */
    real_t *CA;         /* (in,K) frozen components */
    real_t *CB;         /* (out,K) */
    real_t *Ae, *dAe;   /* (in,r) C_A alpha_A, saved by forward; its gradient in backward */
    real_t *Be, *dBe;   /* (out,r) C_B alpha_B */
    real_t *At;         /* (r,in) export: (C_A alpha_A)^T */
    real_t *xa, *dxa;   /* (cap,r) x A_eff^T saved by forward; backward scratch */
    int cap;
} Eigen;

int64_t eigenlora_param_count(const EigenConfig *c) { return 2 * (int64_t)c->K * c->r; }

double eigenlora_export_alpha(const EigenConfig *c) { return (double)c->r; }

/* ---------------------------------------------------------------- (a) what trains */

static PeftcStatus eigen_register(Adapter *a, Arena *arena) {
    Eigen *E = a->state;
    char name[ARENA_NAME_MAX];
    snprintf(name, sizeof name, "%s.eigen_alpha_A", a->name);
    PEFTC_TRY(arena_register(arena, name, shape2(E->cfg.K, E->cfg.r), E->group, 1, &E->hA));
    snprintf(name, sizeof name, "%s.eigen_alpha_B", a->name);
    return arena_register(arena, name, shape2(E->cfg.K, E->cfg.r), E->group, 1, &E->hB);
}

/* ---------------------------------------------------------------- (b) initial values */

static PeftcStatus init_uniform(Adapter *a, const Arena *arena, int h, uint64_t seed) {
    Eigen *E = a->state;
    size_t n = (size_t)E->cfg.K * (size_t)E->cfg.r;
    real_t *dst = arena_param(arena, h), *host = backend_host_begin(a->be, dst, n);
    if (!host) return PEFTC_ERR(PEFTC_ENOMEM, "eigenlora: no host memory to initialise %s", a->name);
    uint64_t key = rng_key_str(seed, arena->entries[h].name);
    for (size_t i = 0; i < n; i++) host[i] = (real_t)(rng_uniform(key, i) - 0.5);
    backend_host_done(a->be, dst, host, n);
    return PEFTC_OK;
}

/* The source's lora_A (r,in) or lora_B (out,r) of this module into host memory out. */
static PeftcStatus read_source(const Adapter *a, const StFile *f, const char *dir, char which, Shape want,
                               real_t *out) {
    char name[200];
    snprintf(name, sizeof name, "base_model.model.%s.lora_%c.weight", a->name, which);
    const StTensor *t = st_find(f, name);
    if (!t) {
        snprintf(name, sizeof name, "base_model.model.%s.lora_%c.default.weight", a->name, which);
        t = st_find(f, name);
    }
    if (!t)
        return PEFTC_ERR(PEFTC_EFORMAT, "eigenlora.projection_from '%s': module %s has no lora_%c tensor (projection "
                                        "init needs every adapted module)", dir, a->name, which);
    return st_read_real(f, t, &want, out);
}

/* alpha(K,r) = scale * C^T X for C (n,K) and X (n,r) (transposed: X^T (r,n) when xt), in double. */
static void project(real_t *alpha, const real_t *C, const real_t *X, int xt, int n, int K, int r, double scale) {
    for (int k = 0; k < K; k++)
        for (int c = 0; c < r; c++) {
            double s = 0;
            for (int j = 0; j < n; j++)
                s += (double)C[(size_t)j * K + k] * (double)(xt ? X[(size_t)c * n + j] : X[(size_t)j * r + c]);
            alpha[(size_t)k * r + c] = (real_t)(scale * s);
        }
}

/* Downloads C (n,K), projects the source matrix on it and writes the loading into arena entry h. */
static PeftcStatus write_projection(Adapter *a, const Arena *arena, int h, const real_t *C, const real_t *X, int xt,
                                    int n, double scale) {
    Eigen *E = a->state;
    int K = E->cfg.K, r = E->cfg.r;
    real_t *hc = malloc((size_t)n * K * sizeof *hc), *dst = arena_param(arena, h);
    real_t *host = hc ? backend_host_begin(a->be, dst, (size_t)K * r) : NULL;
    if (!host) {
        free(hc);
        return PEFTC_ERR(PEFTC_ENOMEM, "eigenlora: no host memory for the projection of %s", a->name);
    }
    a->be->download(a->be, hc, C, (size_t)n * K * sizeof *hc);
    project(host, hc, X, xt, n, K, r, scale);
    backend_host_done(a->be, dst, host, (size_t)K * r);
    free(hc);
    return a->be->status(a->be);
}

static PeftcStatus init_projection(Adapter *a, const Arena *arena) {
    Eigen *E = a->state;
    const char *dir = E->cfg.projection_from;
    LoraConfig lc;
    PEFTC_TRY(peft_read_config(dir, &lc));
    if (lc.r != E->cfg.r)
        return PEFTC_ERR(PEFTC_EINVAL, "eigenlora.projection_from '%s': the adapter has r = %d, eigenlora.r is %d", dir,
                         lc.r, E->cfg.r);
    char path[1100];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    StFile f;
    PEFTC_TRY(st_open(&f, path));
    int r = E->cfg.r;
    real_t *A = malloc((size_t)r * a->in * sizeof *A), *B = malloc((size_t)a->out * r * sizeof *B);
    PeftcStatus st = A && B ? PEFTC_OK : PEFTC_ERR(PEFTC_ENOMEM, "eigenlora: out of memory reading %s", path);
    if (st == PEFTC_OK) st = read_source(a, &f, dir, 'A', shape2(r, a->in), A);
    if (st == PEFTC_OK) st = read_source(a, &f, dir, 'B', shape2(a->out, r), B);
    if (st == PEFTC_OK) st = write_projection(a, arena, E->hA, E->CA, A, 1, a->in, 1.0);
    if (st == PEFTC_OK) st = write_projection(a, arena, E->hB, E->CB, B, 0, a->out, lora_scale(&lc));
    free(A);
    free(B);
    st_close(&f);
    return st;
}

static PeftcStatus eigen_init(Adapter *a, const Arena *arena, const Linear *base, uint64_t seed) {
    (void)base;
    Eigen *E = a->state;
    E->aA = arena_param(arena, E->hA);
    E->daA = arena_grad(arena, E->hA);
    E->aB = arena_param(arena, E->hB);
    E->daB = arena_grad(arena, E->hB);
    if (E->cfg.init_projection) return init_projection(a, arena);
    PEFTC_TRY(init_uniform(a, arena, E->hA, seed));
    return init_uniform(a, arena, E->hB, seed);
}

/* ---------------------------------------------------------------- (c) forward / backward */

static PeftcStatus eigen_reserve(Adapter *a, int R) {
    Eigen *E = a->state;
    if (R <= E->cap) return PEFTC_OK;
    a->be->free(a->be, E->xa);
    a->be->free(a->be, E->dxa);
    size_t bytes = (size_t)R * (size_t)E->cfg.r * sizeof(real_t);
    E->xa = a->be->alloc(a->be, bytes);
    E->dxa = a->be->alloc(a->be, bytes);
    E->cap = (E->xa && E->dxa) ? R : 0;
    if (!E->cap)
        return PEFTC_ERR(PEFTC_ENOMEM, "eigenlora: cannot allocate 2 x %zu bytes for layer %s", bytes, a->name);
    return PEFTC_OK;
}

/* Ae(in,r) = C_A alpha_A, Be(out,r) = C_B alpha_B from the current loadings. */
static void effective_factors(const Adapter *a) {
    const Eigen *E = a->state;
    int K = E->cfg.K, r = E->cfg.r;
    a->be->matmul(a->be, E->Ae, E->CA, E->aA, a->in, r, K, 0, 0, 1, 0);
    a->be->matmul(a->be, E->Be, E->CB, E->aB, a->out, r, K, 0, 0, 1, 0);
}

static void eigen_forward(Adapter *a, const StepCtx *ctx, real_t *y, const real_t *x, int R) {
    Eigen *E = a->state;
    const Backend *be = a->be;
    int r = E->cfg.r;
    effective_factors(a);
    nn_matmul(be, ctx, E->xa, x, E->Ae, R, r, a->in, 0, 0, 1, 0);      /* xa(R,r) = x Ae */
    nn_matmul(be, ctx, y, E->xa, E->Be, R, a->out, r, 0, 1, 1, 1);     /* y += xa Be^T */
}

/* Uses Ae, Be and xa as the forward of the same rows left them. */
static void eigen_backward(Adapter *a, const StepCtx *ctx, real_t *dx, const real_t *dy, const real_t *x, int R) {
    Eigen *E = a->state;
    const Backend *be = a->be;
    int K = E->cfg.K, r = E->cfg.r;
    nn_matmul(be, ctx, E->dBe, dy, E->xa, a->out, r, R, 1, 0, 1, 0);   /* dBe(out,r) = dy^T xa */
    nn_matmul(be, ctx, E->dxa, dy, E->Be, R, r, a->out, 0, 0, 1, 0);   /* dxa(R,r) = dy Be */
    nn_matmul(be, ctx, E->dAe, x, E->dxa, a->in, r, R, 1, 0, 1, 0);    /* dAe(in,r) = x^T dxa */
    nn_matmul(be, ctx, E->daB, E->CB, E->dBe, K, r, a->out, 1, 0, 1, 1); /* dalpha_B(K,r) += C_B^T dBe */
    nn_matmul(be, ctx, E->daA, E->CA, E->dAe, K, r, a->in, 1, 0, 1, 1);  /* dalpha_A(K,r) += C_A^T dAe */
    if (dx) nn_matmul(be, ctx, dx, E->dxa, E->Ae, R, a->in, r, 0, 1, 1, 1); /* dx(R,in) += dxa Ae^T */
}

/* ---------------------------------------------------------------- (d) merge, (e) export */

static void eigen_merge(const Adapter *a, real_t *W) {
    const Eigen *E = a->state;
    effective_factors(a);
    a->be->matmul(a->be, W, E->Be, E->Ae, a->out, a->in, E->cfg.r, 0, 1, 1, 1); /* W(out,in) += Be Ae^T */
}

static PeftcStatus eigen_export(const Adapter *a, TensorSink sink, void *user) {
    const Eigen *E = a->state;
    int K = E->cfg.K, r = E->cfg.r;
    effective_factors(a);
    a->be->matmul(a->be, E->At, E->aA, E->CA, r, a->in, K, 1, 1, 1, 0); /* At(r,in) = alpha_A^T C_A^T */
    Tensor A = {E->At, DT_REAL, a->be->device, shape2(r, a->in)};
    Tensor B = {E->Be, DT_REAL, a->be->device, shape2(a->out, r)};
    char name[160];
    snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", a->name);
    PEFTC_TRY(sink(user, name, &A));
    snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", a->name);
    return sink(user, name, &B);
}

static void eigen_destroy(Adapter *a) {
    Eigen *E = a->state;
    real_t *bufs[] = {E->CA, E->CB, E->Ae, E->dAe, E->Be, E->dBe, E->At, E->xa, E->dxa};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) a->be->free(a->be, bufs[i]);
    adapter_free(a);
}

static const AdapterOps eigen_ops = {
    .kind = "eigenlora",
    .register_params = eigen_register,
    .init = eigen_init,
    .reserve = eigen_reserve,
    .forward = eigen_forward,
    .backward = eigen_backward,
    .merge = eigen_merge,
    .export_tensors = eigen_export,
    .destroy = eigen_destroy,
};

/* ---------------------------------------------------------------- creation */

static PeftcStatus check_config(const EigenConfig *c, const EigenBasis *basis, const char *layer) {
    if (c->r < 1) return PEFTC_ERR(PEFTC_EINVAL, "eigenlora.r must be >= 1, got %d", c->r);
    if (c->K < 1 || c->K > basis->columns)
        return PEFTC_ERR(PEFTC_EINVAL, "eigenlora.k = %d, but the basis %s has %d components per side (k %d + "
                                       "k_rand %d)", c->K, basis->file.file.path, basis->columns, basis->k,
                         basis->k_rand);
    if (c->init_projection && !c->projection_from[0])
        return PEFTC_ERR(PEFTC_EINVAL, "eigenlora: projection init of %s needs eigenlora.projection_from (a PEFT LoRA "
                                       "folder)", layer);
    return PEFTC_OK;
}

static PeftcStatus alloc_buffers(Adapter *a, const EigenBasis *basis) {
    Eigen *E = a->state;
    const Backend *be = a->be;
    int K = E->cfg.K, r = E->cfg.r;
    PEFTC_TRY(eigen_basis_load(basis, be, a->name, 'A', a->in, K, &E->CA));
    PEFTC_TRY(eigen_basis_load(basis, be, a->name, 'B', a->out, K, &E->CB));
    size_t in_r = (size_t)a->in * r * sizeof(real_t), out_r = (size_t)a->out * r * sizeof(real_t);
    E->Ae = be->alloc(be, in_r);
    E->dAe = be->alloc(be, in_r);
    E->At = be->alloc(be, in_r);
    E->Be = be->alloc(be, out_r);
    E->dBe = be->alloc(be, out_r);
    if (!E->Ae || !E->dAe || !E->At || !E->Be || !E->dBe)
        return PEFTC_ERR(PEFTC_ENOMEM, "eigenlora: cannot allocate the factors of layer %s", a->name);
    return PEFTC_OK;
}

PeftcStatus eigenlora_create(Adapter **out, const Backend *be, const Linear *base, const EigenBasis *basis,
                             const EigenConfig *cfg, int group) {
    PEFTC_TRY(check_config(cfg, basis, base->name));
    Adapter *a;
    PEFTC_TRY(adapter_new(&a, &eigen_ops, be, base, sizeof(Eigen)));
    Eigen *E = a->state;
    E->cfg = *cfg;
    E->group = group;
    PeftcStatus st = alloc_buffers(a, basis);
    if (st != PEFTC_OK) {
        eigen_destroy(a);
        return st;
    }
    *out = a;
    return PEFTC_OK;
}
