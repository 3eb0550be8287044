/* RoSA: LoRA (the lora.c adapter, held as the branch) plus a fixed-mask sparse delta S in CSR form.
 * See rosa.h for the layer, the mask generation and which gradient is collected. */
#include "adapters/rosa.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/csr.h"

/* Elements of G^T X brought to the host per download while collecting: bounded host staging whatever
 * the layer's size (256 KiB of floats). */
#define ROSA_CHUNK 65536

const char *const rosa_accum_names[] = {[ROSA_ACC_MEAN_SQUARED] = "mean_squared", [ROSA_ACC_MEAN] = "mean", NULL};

const BackendOp rosa_sparse_ops[ROSA_SPARSE_OPS] = {BACKEND_OP_csr_spmm, BACKEND_OP_csr_spmm_t, BACKEND_OP_csr_sddmm,
                                                    BACKEND_OP_csr_add_dense};

typedef struct {
    RosaConfig cfg;
    Adapter *lora;            /* the LoRA branch; NULL for SpA */
    int sparse_group;
    int64_t nnz;
    int hV;                   /* arena handle of the values; -1 when nnz == 0 */
    real_t *values, *dvalues; /* (nnz) arena memory, set by init */
    CsrPattern pat;           /* valid when has_mask */
    int has_mask;
    /* gradient collection */
    int collecting;
    RosaAccum mode;
    float *acc;               /* (out,in) host running sum; NULL when none */
    int64_t count;            /* micro-batches in acc */
    real_t *g;                /* (out,in) backend scratch for G^T X */
    int own_g;
    real_t *chunk;            /* (ROSA_CHUNK) host staging */
} Rosa;

static const AdapterOps rosa_ops;

int rosa_is(const Adapter *a) { return a && a->ops == &rosa_ops; }

int64_t rosa_nnz(const RosaConfig *cfg, int in, int out) {
    if (cfg->nnz > 0) return cfg->nnz;
    if (!(cfg->density > 0)) return 0;
    return (int64_t)floor(cfg->density * (double)((int64_t)in * out));
}

int64_t rosa_param_count(const RosaConfig *cfg, int in, int out) {
    return (int64_t)cfg->lora.r * (in + out) + rosa_nnz(cfg, in, out);
}

/* ---- (a) trainable tensors, (b) init ---- */

static PeftcStatus rosa_register(Adapter *a, Arena *arena) {
    Rosa *S = a->state;
    if (S->lora) PEFTC_TRY(S->lora->ops->register_params(S->lora, arena));
    if (S->nnz == 0) return PEFTC_OK;
    char name[ARENA_NAME_MAX];
    snprintf(name, sizeof name, "%s.rosa_values", a->name);
    return arena_register(arena, name, shape1(S->nnz), S->sparse_group, 1, &S->hV);
}

static PeftcStatus rosa_init(Adapter *a, const Arena *arena, const Linear *base, uint64_t seed) {
    Rosa *S = a->state;
    if (S->lora) PEFTC_TRY(S->lora->ops->init(S->lora, arena, base, seed));
    if (S->nnz == 0) return PEFTC_OK;
    S->values = arena_param(arena, S->hV);
    S->dvalues = arena_grad(arena, S->hV);
    a->be->zero(a->be, S->values, (size_t)S->nnz);
    return PEFTC_OK;
}

static PeftcStatus rosa_reserve(Adapter *a, int R) {
    Rosa *S = a->state;
    if (S->nnz > 0) { /* SDDMM sums the pattern's nnz values in the backend's scratch */
        BackendNeed need = {.nnz = S->nnz};
        PEFTC_TRY(a->be->reserve(a->be, &need));
    }
    return S->lora ? S->lora->ops->reserve(S->lora, R) : PEFTC_OK;
}

/* ---- (c) forward / backward ---- */

static int sparse_active(const Rosa *S) { return S->has_mask && S->nnz > 0; }

static void rosa_forward(Adapter *a, const StepCtx *ctx, real_t *y, const real_t *x, int R) {
    Rosa *S = a->state;
    if (sparse_active(S)) /* y(R,out) += x S^T, W's own undropped input */
        a->be->csr_spmm(a->be, y, x, S->pat.row_ptr, S->pat.col_idx, S->values, R, a->out, a->in, 1);
    if (S->lora) S->lora->ops->forward(S->lora, ctx, y, x, R);
}

/* acc += G^T X (or its square) of one micro-batch, through the backend scratch in host-sized chunks. */
static void collect(Adapter *a, const real_t *dy, const real_t *x, int R) {
    Rosa *S = a->state;
    size_t n = (size_t)a->out * (size_t)a->in;
    a->be->matmul(a->be, S->g, dy, x, a->out, a->in, R, 1, 0, 1, 0); /* g(out,in) = dy^T x */
    for (size_t off = 0; off < n; off += ROSA_CHUNK) {
        size_t m = n - off < ROSA_CHUNK ? n - off : ROSA_CHUNK;
        a->be->download(a->be, S->chunk, S->g + off, m * sizeof(real_t));
        float *acc = S->acc + off;
        if (S->mode == ROSA_ACC_MEAN_SQUARED)
            for (size_t i = 0; i < m; i++) acc[i] += (float)(S->chunk[i] * S->chunk[i]);
        else
            for (size_t i = 0; i < m; i++) acc[i] += (float)S->chunk[i];
    }
    S->count++;
}

static void rosa_backward(Adapter *a, const StepCtx *ctx, real_t *dx, const real_t *dy, const real_t *x, int R) {
    Rosa *S = a->state;
    const Backend *be = a->be;
    if (S->lora) S->lora->ops->backward(S->lora, ctx, dx, dy, x, R);
    if (sparse_active(S)) {
        be->csr_sddmm(be, S->dvalues, dy, x, S->pat.row_ptr, S->pat.col_idx, R, a->out, a->in, 1); /* (dy^T x) at S */
        if (dx) be->csr_spmm_t(be, dx, dy, S->pat.row_ptr, S->pat.col_idx, S->values, R, a->out, a->in, 1); /* += dy S */
    }
    if (S->collecting) collect(a, dy, x, R);
}

/* ---- (d) merge, (e) export ---- */

static void rosa_merge(const Adapter *a, real_t *W) {
    const Rosa *S = a->state;
    if (sparse_active(S)) a->be->csr_add_dense(a->be, W, S->pat.row_ptr, S->pat.col_idx, S->values, a->out, a->in, 1);
    if (S->lora) S->lora->ops->merge(S->lora, W);
}

static PeftcStatus rosa_export(const Adapter *a, TensorSink sink, void *user) {
    const Rosa *S = a->state;
    return S->lora ? S->lora->ops->export_tensors(S->lora, sink, user) : PEFTC_OK;
}

/* Host copies of the pattern: row_ptr (out+1), col_idx (nnz). */
static void download_pattern(const Adapter *a, int32_t *row_ptr, int32_t *col_idx) {
    const Rosa *S = a->state;
    a->be->download(a->be, row_ptr, S->pat.row_ptr, ((size_t)a->out + 1) * sizeof(int32_t));
    if (S->nnz) a->be->download(a->be, col_idx, S->pat.col_idx, (size_t)S->nnz * sizeof(int32_t));
}

int64_t rosa_layer_nnz(const Adapter *a) { return rosa_is(a) ? ((const Rosa *)a->state)->nnz : 0; }

PeftcStatus rosa_export_sparse(const Adapter *a, int32_t *row_ptr, int32_t *col_idx, real_t *values) {
    if (!rosa_is(a)) return PEFTC_ERR(PEFTC_EINVAL, "rosa_export_sparse: layer %s is not a RoSA adapter", a->name);
    const Rosa *S = a->state;
    if (!S->has_mask) return PEFTC_ERR(PEFTC_ESTATE, "rosa: layer %s has no mask to export", a->name);
    if (S->nnz && !S->values)
        return PEFTC_ERR(PEFTC_ESTATE, "rosa: layer %s: sparse values exported before init", a->name);
    download_pattern(a, row_ptr, col_idx);
    if (S->nnz) a->be->download(a->be, values, S->values, (size_t)S->nnz * sizeof(real_t));
    return a->be->status(a->be);
}

/* ---- the mask ---- */

static void collect_free(Rosa *S, const Backend *be) {
    if (S->own_g) be->free(be, S->g);
    free(S->chunk);
    S->g = NULL;
    S->chunk = NULL;
    S->own_g = 0;
    S->collecting = 0;
}

static void accumulator_free(Rosa *S, const Backend *be) {
    collect_free(S, be);
    free(S->acc);
    S->acc = NULL;
    S->count = 0;
}

PeftcStatus rosa_set_mask(Adapter *a, const int64_t *flat, int64_t count) {
    if (!rosa_is(a)) return PEFTC_ERR(PEFTC_EINVAL, "rosa_set_mask: layer %s is not a RoSA adapter", a->name);
    Rosa *S = a->state;
    if (S->has_mask)
        return PEFTC_ERR(PEFTC_ESTATE, "rosa: layer %s already has a mask (a mask is fixed once set)", a->name);
    if (count != S->nnz)
        return PEFTC_ERR(PEFTC_EINVAL,
                         "rosa: mask for layer %s has %lld indices, expected %lld (density %g of %d x %d, or the "
                         "count asked)", a->name, (long long)count, (long long)S->nnz, S->cfg.density, a->out, a->in);
    char what[160];
    snprintf(what, sizeof what, "rosa mask of layer %s", a->name);
    PEFTC_TRY(csr_from_flat(&S->pat, a->be, a->out, a->in, flat, count, what));
    S->has_mask = 1;
    accumulator_free(S, a->be);
    return PEFTC_OK;
}

int rosa_has_mask(const Adapter *a) { return rosa_is(a) && ((const Rosa *)a->state)->has_mask; }

PeftcStatus rosa_mask_flat(const Adapter *a, int64_t *out) {
    if (!rosa_is(a)) return PEFTC_ERR(PEFTC_EINVAL, "rosa_mask_flat: layer %s is not a RoSA adapter", a->name);
    const Rosa *S = a->state;
    if (!S->has_mask) return PEFTC_ERR(PEFTC_ESTATE, "rosa: layer %s has no mask yet", a->name);
    int32_t *row_ptr = malloc(((size_t)a->out + 1) * sizeof *row_ptr);
    int32_t *col_idx = malloc((size_t)(S->nnz ? S->nnz : 1) * sizeof *col_idx);
    PeftcStatus st = PEFTC_OK;
    if (!row_ptr || !col_idx) st = PEFTC_ERR(PEFTC_ENOMEM, "rosa: no host memory for the mask of layer %s", a->name);
    if (st == PEFTC_OK) {
        download_pattern(a, row_ptr, col_idx);
        st = a->be->status(a->be);
    }
    for (int r = 0; st == PEFTC_OK && r < a->out; r++)
        for (int32_t j = row_ptr[r]; j < row_ptr[r + 1]; j++) out[j] = (int64_t)r * a->in + col_idx[j];
    free(row_ptr);
    free(col_idx);
    return st;
}

/* ---- gradient collection ---- */

PeftcStatus rosa_collect_begin(Adapter *a, RosaAccum mode, real_t *scratch) {
    if (!rosa_is(a)) return PEFTC_ERR(PEFTC_EINVAL, "rosa_collect_begin: layer %s is not a RoSA adapter", a->name);
    Rosa *S = a->state;
    if (mode != ROSA_ACC_MEAN_SQUARED && mode != ROSA_ACC_MEAN)
        return PEFTC_ERR(PEFTC_EINVAL, "rosa: unknown accumulation mode %d (expected mean_squared or mean)", (int)mode);
    if (S->has_mask)
        return PEFTC_ERR(PEFTC_ESTATE, "rosa: layer %s already has its mask; gradients are collected only before",
                         a->name);
    if (S->collecting) return PEFTC_ERR(PEFTC_ESTATE, "rosa: layer %s is already collecting gradients", a->name);
    if (S->acc && S->mode != mode)
        return PEFTC_ERR(PEFTC_EINVAL, "rosa: layer %s holds a %s gradient sum; it cannot continue as %s", a->name,
                         rosa_accum_names[S->mode], rosa_accum_names[mode]);
    size_t n = (size_t)a->out * (size_t)a->in;
    int fresh = S->acc == NULL;
    if (fresh) {
        S->acc = calloc(n, sizeof *S->acc);
        S->count = 0;
        S->mode = mode;
    }
    S->chunk = malloc(ROSA_CHUNK * sizeof *S->chunk);
    S->own_g = scratch == NULL;
    S->g = scratch ? scratch : a->be->alloc(a->be, n * sizeof(real_t));
    if (!S->acc || !S->chunk || !S->g) {
        if (fresh) accumulator_free(S, a->be); /* a continued sum survives the failure */
        else collect_free(S, a->be);
        return PEFTC_ERR(PEFTC_ENOMEM, "rosa: no memory to collect the (%d, %d) gradient of layer %s", a->out, a->in,
                         a->name);
    }
    S->collecting = 1;
    return PEFTC_OK;
}

void rosa_collect_end(Adapter *a) {
    if (rosa_is(a)) collect_free(a->state, a->be);
}

float *rosa_accumulator(Adapter *a, int64_t *count) {
    const Rosa *S = rosa_is(a) ? a->state : NULL;
    *count = S && S->acc ? S->count : 0;
    return S ? S->acc : NULL;
}

/* acc(out,in) <- |acc / count| in place; EINVAL naming the first NaN. */
static PeftcStatus score_in_place(const Adapter *a, float *acc, int64_t count) {
    size_t n = (size_t)a->out * (size_t)a->in;
    float c = (float)count;
    for (size_t i = 0; i < n; i++) {
        if (isnan(acc[i]))
            return PEFTC_ERR(PEFTC_EINVAL, "rosa: layer %s: accumulated gradient at row %zu, column %zu is NaN",
                             a->name, i / (size_t)a->in, i % (size_t)a->in);
        acc[i] = fabsf(acc[i] / c);
    }
    return PEFTC_OK;
}

PeftcStatus rosa_mask_from_accumulator(Adapter *a, int64_t count) {
    if (!rosa_is(a))
        return PEFTC_ERR(PEFTC_EINVAL, "rosa_mask_from_accumulator: layer %s is not a RoSA adapter", a->name);
    Rosa *S = a->state;
    if (!S->acc)
        return PEFTC_ERR(PEFTC_ESTATE, "rosa: layer %s has no gradient sum (rosa_collect_begin was not called)",
                         a->name);
    if (count < 1)
        return PEFTC_ERR(PEFTC_EINVAL, "rosa: layer %s: the gradient sum must hold at least 1 micro-batch, got %lld",
                         a->name, (long long)count);
    collect_free(S, a->be);
    PEFTC_TRY(score_in_place(a, S->acc, count));
    int64_t *flat = malloc((size_t)(S->nnz ? S->nnz : 1) * sizeof *flat);
    if (!flat) return PEFTC_ERR(PEFTC_ENOMEM, "rosa: no host memory for the mask of layer %s", a->name);
    PeftcStatus st = csr_topk_flat(S->acc, (int64_t)a->out * a->in, S->nnz, flat);
    if (st == PEFTC_OK) st = rosa_set_mask(a, flat, S->nnz); /* frees the sum */
    free(flat);
    return st;
}

/* ---- lifetime ---- */

static void rosa_destroy(Adapter *a) {
    Rosa *S = a->state;
    if (S->lora) S->lora->ops->destroy(S->lora);
    accumulator_free(S, a->be);
    csr_free(&S->pat, a->be);
    adapter_free(a);
}

static const AdapterOps rosa_ops = {
    .kind = "rosa",
    .register_params = rosa_register,
    .init = rosa_init,
    .reserve = rosa_reserve,
    .forward = rosa_forward,
    .backward = rosa_backward,
    .merge = rosa_merge,
    .export_tensors = rosa_export,
    .destroy = rosa_destroy,
};

static PeftcStatus check_config(const RosaConfig *cfg, const Backend *be, const Linear *base) {
    if (cfg->lora.r < 0) return PEFTC_ERR(PEFTC_EINVAL, "rosa: lora.r must be >= 0 (0: SpA), got %d", cfg->lora.r);
    if (!(cfg->density >= 0 && cfg->density <= 1))
        return PEFTC_ERR(PEFTC_EINVAL, "rosa.density must be in [0, 1], got %g", cfg->density);
    if (cfg->nnz < 0 || cfg->nnz > (int64_t)base->in * base->out)
        return PEFTC_ERR(PEFTC_EINVAL, "rosa: layer %s: %lld nonzeros asked of a (%d, %d) weight", base->name,
                         (long long)cfg->nnz, base->out, base->in);
    if (cfg->lora.r == 0 && cfg->density == 0 && cfg->nnz == 0)
        return PEFTC_ERR(PEFTC_EINVAL, "rosa: lora.r = 0 and rosa.density = 0 leave layer %s nothing to train",
                         base->name);
    if (rosa_nnz(cfg, base->in, base->out) > INT32_MAX)
        return PEFTC_ERR(PEFTC_EINVAL, "rosa: layer %s: density %g gives %lld nonzeros, more than int32 offsets allow",
                         base->name, cfg->density, (long long)rosa_nnz(cfg, base->in, base->out));
    if (cfg->density == 0 && cfg->nnz == 0) return PEFTC_OK;
    char why[64];
    snprintf(why, sizeof why, "rosa.density %g", cfg->density);
    return backend_require(be, rosa_sparse_ops, ROSA_SPARSE_OPS, "rosa", why);
}

PeftcStatus rosa_create(Adapter **out, const Backend *be, const Linear *base, const RosaConfig *cfg, int lora_group,
                        int sparse_group) {
    PEFTC_TRY(check_config(cfg, be, base));
    Adapter *lora = NULL;
    if (cfg->lora.r > 0) PEFTC_TRY(lora_create(&lora, be, base, &cfg->lora, lora_group));
    Adapter *a;
    PeftcStatus st = adapter_new(&a, &rosa_ops, be, base, sizeof(Rosa));
    if (st != PEFTC_OK) {
        if (lora) lora->ops->destroy(lora);
        return st;
    }
    Rosa *S = a->state;
    S->cfg = *cfg;
    S->lora = lora;
    S->sparse_group = sparse_group;
    S->nnz = rosa_nnz(cfg, base->in, base->out);
    S->hV = -1;
    *out = a;
    return PEFTC_OK;
}

PeftcStatus rosa_maker(Adapter **out, const Backend *be, const Linear *l, const void *cfg, int lora_group,
                       int sparse_group) {
    return rosa_create(out, be, l, cfg, lora_group, sparse_group);
}
