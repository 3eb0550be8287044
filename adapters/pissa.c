/* PiSSA (arXiv 2404.02948) as HF PEFT's init_lora_weights="pissa" and "pissa_niter_K": a LoRA whose
 * A and B start on the principal singular directions of the base weight, with the base replaced by the
 * residual so the model is unchanged at init.
 *   (a) trains   "<module>.lora_A" (r,in) and "<module>.lora_B" (out,r), as LoRA (lora.* keys)
 *   (b) init     W = U S Vh (exact SVD, or a randomized one with pissa.niter subspace iterations), s the
 *                LoRA scale: A = diag(sqrt(S_r / s)) Vh_r, B = U_r diag(sqrt(S_r / s)), so that s B A is
 *                W's top-r part; W becomes W - s B A
 *   (c) forward  LoRA's, on the residual base
 *   (d) merge    W_res + s B A
 *   (e) export   a plain LoRA of rank 2r on the ORIGINAL base, as PEFT's
 *                path_initial_model_for_weight_conversion does: A' = [A; A0], B' = [B, -B0], alpha' =
 *                2 alpha (sqrt 2 alpha with rsLoRA), so s' B' A' = s (B A - B0 A0) and PEFT, vLLM and
 *                llama.cpp load it on the unmodified model.
 * The SVD runs in double whatever real_t is: a float SVD's singular vectors are off by eps |W| / gap,
 * which near-equal singular values turn into visible errors in A and B. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/formats/peft_io.h"
#include "adapters/lora.h"
#include "core/base/rng.h"

typedef struct {
    int niter;
} PissaSettings;

static const SettingKey pissa_keys[] = {
    SETTING_INT("pissa.niter", PissaSettings, niter, "0", KEY_IN(0, 64),
                "0: A and B from the exact SVD of each base weight (PEFT's pissa); K: a randomized SVD with K "
                "subspace iterations (pissa_niter_K), faster on large layers"),
};

static const MethodSection pissa_section = {
    .name = "pissa",
    .help = "PiSSA (method.name=pissa): LoRA started on the base weights' principal singular directions",
    .keys = pissa_keys,
    .n_keys = sizeof pissa_keys / sizeof pissa_keys[0],
    .size = sizeof(PissaSettings),
};

/* The adapter: a LoRA pair plus the initial factors the export subtracts. */
typedef struct {
    Adapter *lora;
    LoraConfig cfg;
    int niter;
    double *A0; /* (r,in) host, as initialised */
    double *B0; /* (out,r) */
} Pissa;

/* ---------------------------------------------------------------- the SVD */

/* Orthonormalises the columns of X (m,k) in place (Householder QR, then Q). */
static PeftcStatus orthonormalise(double *X, int m, int k, const char *name) {
    double *tau = malloc((size_t)k * sizeof *tau);
    if (!tau) return PEFTC_ERR(PEFTC_ENOMEM, "pissa: out of memory for layer %s", name);
    int info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, m, k, X, k, tau);
    if (info == 0) info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, m, k, k, X, k, tau);
    free(tau);
    if (info != 0) return PEFTC_ERR(PEFTC_EINVAL, "pissa: QR failed (LAPACK info %d) on layer %s", info, name);
    return PEFTC_OK;
}

/* C(m,n) = op(A) op(B) in double on the host; op(A) is (m,k), stored (k,m) when ta. */
static void dmul(double *C, const double *A, const double *B, int m, int n, int k, int ta, int tb) {
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0, A,
                ta ? m : k, B, tb ? k : n, 0.0, C, n);
}

/* Top-r SVD of W (out,in) by Halko et al.'s randomized range finder, as torch.svd_lowrank(W, q=r,
 * niter): Q spans W G for a seeded Gaussian G (in,r), refined by niter power iterations with
 * re-orthonormalisation; then the SVD of the small Q^T W. U (out,r), S (r), Vh (r,in). */
static PeftcStatus svd_randomized(const double *W, int out, int in, int r, int niter, uint64_t key, double *U,
                                  double *S, double *Vh, const char *name) {
    double *G = malloc((size_t)in * r * sizeof *G), *Q = malloc((size_t)out * r * sizeof *Q);
    double *Z = malloc((size_t)in * r * sizeof *Z), *Bs = malloc((size_t)r * in * sizeof *Bs);
    double *Ub = malloc((size_t)r * r * sizeof *Ub), *sup = malloc((size_t)r * sizeof *sup);
    PeftcStatus st = G && Q && Z && Bs && Ub && sup ? PEFTC_OK
                                                   : PEFTC_ERR(PEFTC_ENOMEM, "pissa: out of memory for layer %s", name);
    for (size_t i = 0; st == PEFTC_OK && i < (size_t)in * r; i++) G[i] = rng_normal(key, i);
    if (st == PEFTC_OK) dmul(Q, W, G, out, r, in, 0, 0); /* Q = W G */
    if (st == PEFTC_OK) st = orthonormalise(Q, out, r, name);
    for (int it = 0; st == PEFTC_OK && it < niter; it++) {
        dmul(Z, W, Q, in, r, out, 1, 0); /* Z = W^T Q */
        st = orthonormalise(Z, in, r, name);
        if (st == PEFTC_OK) dmul(Q, W, Z, out, r, in, 0, 0); /* Q = W Z */
        if (st == PEFTC_OK) st = orthonormalise(Q, out, r, name);
    }
    if (st == PEFTC_OK) dmul(Bs, Q, W, r, in, out, 1, 0); /* Bs = Q^T W (r,in) */
    int info = st == PEFTC_OK ? LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'S', 'S', r, in, Bs, in, S, Ub, r, Vh, in, sup) : 0;
    if (st == PEFTC_OK && info != 0)
        st = PEFTC_ERR(PEFTC_EINVAL, "pissa: SVD failed (LAPACK info %d) on layer %s", info, name);
    if (st == PEFTC_OK) dmul(U, Q, Ub, out, r, r, 0, 0); /* U = Q Ub */
    free(G), free(Q), free(Z), free(Bs), free(Ub), free(sup);
    return st;
}

/* Top-r SVD of W (out,in): U (out,r), S (r), Vh (r,in); exact (niter 0) or randomized. */
static PeftcStatus svd_top(const double *W, int out, int in, int r, int niter, uint64_t key, double *U, double *S,
                           double *Vh, const char *name) {
    if (niter > 0) return svd_randomized(W, out, in, r, niter, key, U, S, Vh, name);
    int k = out < in ? out : in;
    double *a = malloc((size_t)out * in * sizeof *a), *u = malloc((size_t)out * k * sizeof *u);
    double *s = malloc((size_t)k * sizeof *s), *vt = malloc((size_t)k * in * sizeof *vt);
    PeftcStatus st = a && u && s && vt ? PEFTC_OK : PEFTC_ERR(PEFTC_ENOMEM, "pissa: out of memory for layer %s", name);
    if (st == PEFTC_OK) {
        memcpy(a, W, (size_t)out * in * sizeof *a);
        int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', out, in, a, in, s, u, k, vt, in);
        if (info != 0) st = PEFTC_ERR(PEFTC_EINVAL, "pissa: SVD failed (LAPACK info %d) on layer %s", info, name);
    }
    for (int i = 0; st == PEFTC_OK && i < out; i++)
        for (int j = 0; j < r; j++) U[(size_t)i * r + j] = u[(size_t)i * k + j];
    if (st == PEFTC_OK) {
        memcpy(S, s, (size_t)r * sizeof *S);
        memcpy(Vh, vt, (size_t)r * in * sizeof *Vh);
    }
    free(a), free(u), free(s), free(vt);
    return st;
}

/* ---------------------------------------------------------------- init */

/* Writes host values (n doubles) into arena tensor `name` as real_t. */
static PeftcStatus set_entry(const Adapter *a, const Arena *arena, const char *suffix, const double *v, size_t n) {
    char name[ARENA_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", a->name, suffix);
    int h = arena_find(arena, name);
    if (h < 0) return PEFTC_ERR(PEFTC_ESTATE, "pissa: the arena has no entry %s", name);
    real_t *dst = arena_param(arena, h), *host = backend_host_begin(a->be, dst, n);
    if (!host) return PEFTC_ERR(PEFTC_ENOMEM, "pissa: no host memory to initialise %s", name);
    for (size_t i = 0; i < n; i++) host[i] = (real_t)v[i];
    backend_host_done(a->be, dst, host, n);
    return PEFTC_OK;
}

/* A0, B0 from the SVD of W (double, host); W becomes the residual W - s B0 A0. */
static PeftcStatus factor(Pissa *P, double *W, int out, int in, uint64_t key, const char *name) {
    int r = P->cfg.r;
    double s = lora_scale(&P->cfg);
    double *U = malloc((size_t)out * r * sizeof *U), *S = malloc((size_t)r * sizeof *S);
    double *Vh = malloc((size_t)r * in * sizeof *Vh);
    PeftcStatus st = U && S && Vh ? PEFTC_OK : PEFTC_ERR(PEFTC_ENOMEM, "pissa: out of memory for layer %s", name);
    if (st == PEFTC_OK) st = svd_top(W, out, in, r, P->niter, key, U, S, Vh, name);
    for (int i = 0; st == PEFTC_OK && i < r; i++) {
        double g = sqrt(S[i] / s);
        for (int j = 0; j < in; j++) P->A0[(size_t)i * in + j] = g * Vh[(size_t)i * in + j];
        for (int o = 0; o < out; o++) P->B0[(size_t)o * r + i] = U[(size_t)o * r + i] * g;
    }
    if (st == PEFTC_OK) /* W(out,in) -= s B0 A0 */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, r, -s, P->B0, r, P->A0, in, 1.0, W, in);
    free(U), free(S), free(Vh);
    return st;
}

/* The base weight is written through base->W: PiSSA's one departure from LoRA is that it moves the
 * top-r part of W into the adapter. A quantized base has no W of its own (the method refuses it). */
static PeftcStatus pissa_init(Adapter *a, const Arena *arena, const Linear *base, uint64_t seed) {
    Pissa *P = a->state;
    PEFTC_TRY(P->lora->ops->init(P->lora, arena, base, seed));
    if (base->qW)
        return PEFTC_ERR(PEFTC_EINVAL, "pissa: layer %s is kept quantized; PiSSA rewrites the base weight: set "
                         "model.quantized=false", a->name);
    size_t n = (size_t)a->out * a->in;
    real_t *w = malloc(n * sizeof *w);
    double *W = malloc(n * sizeof *W);
    PeftcStatus st = w && W ? PEFTC_OK : PEFTC_ERR(PEFTC_ENOMEM, "pissa: out of memory for layer %s", a->name);
    if (st == PEFTC_OK) st = linear_weight_dense(a->be, base, w);
    for (size_t i = 0; st == PEFTC_OK && i < n; i++) W[i] = w[i];
    if (st == PEFTC_OK) st = factor(P, W, a->out, a->in, rng_key_str(seed, a->name), a->name);
    if (st == PEFTC_OK) st = set_entry(a, arena, "lora_A", P->A0, (size_t)P->cfg.r * a->in);
    if (st == PEFTC_OK) st = set_entry(a, arena, "lora_B", P->B0, (size_t)a->out * P->cfg.r);
    for (size_t i = 0; st == PEFTC_OK && i < n; i++) w[i] = (real_t)W[i];
    if (st == PEFTC_OK) a->be->upload(a->be, base->W, w, n * sizeof *w);
    free(w);
    free(W);
    return st == PEFTC_OK ? a->be->status(a->be) : st;
}

/* ---------------------------------------------------------------- export */

typedef struct {
    Tensor A, B;
    int got;
} Pair;

static PeftcStatus take_pair(void *user, const char *name, const Tensor *t) {
    Pair *p = user;
    if (strstr(name, ".lora_A.")) p->A = *t, p->got |= 1;
    else p->B = *t, p->got |= 2;
    return PEFTC_OK;
}

/* Hands sink one (rows,cols) tensor of backend memory filled from host values. */
static PeftcStatus emit(const Adapter *a, TensorSink sink, void *user, const char *name, const real_t *host,
                        int rows, int cols) {
    size_t n = (size_t)rows * cols;
    real_t *dev = a->be->alloc(a->be, n * sizeof *dev);
    if (!dev) return PEFTC_ERR(PEFTC_ENOMEM, "pissa: out of memory exporting %s", name);
    a->be->upload(a->be, dev, host, n * sizeof *dev);
    Tensor t = {dev, DT_REAL, a->be->device, shape2(rows, cols)};
    PeftcStatus st = sink(user, name, &t);
    a->be->free(a->be, dev);
    return st;
}

/* A' = [A; A0] (2r,in), B' = [B, -B0] (out,2r): the trained delta on the original weight. */
static PeftcStatus pissa_export(const Adapter *a, TensorSink sink, void *user) {
    const Pissa *P = a->state;
    int r = P->cfg.r, in = a->in, out = a->out;
    Pair p = {0};
    PEFTC_TRY(P->lora->ops->export_tensors(P->lora, take_pair, &p));
    if (p.got != 3) return PEFTC_ERR(PEFTC_ESTATE, "pissa: layer %s exported no LoRA pair", a->name);
    real_t *A = malloc((size_t)2 * r * in * sizeof *A), *B = malloc((size_t)out * 2 * r * sizeof *B);
    real_t *Bt = malloc((size_t)out * r * sizeof *Bt);
    PeftcStatus st = A && B && Bt ? PEFTC_OK : PEFTC_ERR(PEFTC_ENOMEM, "pissa: out of memory exporting %s", a->name);
    if (st == PEFTC_OK) {
        a->be->download(a->be, A, p.A.data, (size_t)r * in * sizeof *A);
        a->be->download(a->be, Bt, p.B.data, (size_t)out * r * sizeof *Bt);
        st = a->be->status(a->be);
    }
    for (size_t i = 0; st == PEFTC_OK && i < (size_t)r * in; i++) A[(size_t)r * in + i] = (real_t)P->A0[i];
    for (int o = 0; st == PEFTC_OK && o < out; o++)
        for (int i = 0; i < r; i++) {
            B[(size_t)o * 2 * r + i] = Bt[(size_t)o * r + i];
            B[(size_t)o * 2 * r + r + i] = (real_t)-P->B0[(size_t)o * r + i];
        }
    char name[160];
    snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", a->name);
    if (st == PEFTC_OK) st = emit(a, sink, user, name, A, 2 * r, in);
    snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", a->name);
    if (st == PEFTC_OK) st = emit(a, sink, user, name, B, out, 2 * r);
    free(A), free(B), free(Bt);
    return st;
}

/* ---------------------------------------------------------------- the rest is LoRA's */

static PeftcStatus pissa_register(Adapter *a, Arena *arena) {
    Pissa *P = a->state;
    return P->lora->ops->register_params(P->lora, arena);
}
static PeftcStatus pissa_reserve(Adapter *a, int max_rows) {
    Pissa *P = a->state;
    return P->lora->ops->reserve(P->lora, max_rows);
}
static void pissa_forward(Adapter *a, const StepCtx *ctx, real_t *y, const real_t *x, int R) {
    Pissa *P = a->state;
    P->lora->ops->forward(P->lora, ctx, y, x, R);
}
static void pissa_backward(Adapter *a, const StepCtx *ctx, real_t *dx, const real_t *dy, const real_t *x, int R) {
    Pissa *P = a->state;
    P->lora->ops->backward(P->lora, ctx, dx, dy, x, R);
}
static void pissa_merge(const Adapter *a, real_t *W) {
    const Pissa *P = a->state;
    P->lora->ops->merge(P->lora, W);
}
static void pissa_destroy(Adapter *a) {
    Pissa *P = a->state;
    if (P->lora) P->lora->ops->destroy(P->lora);
    free(P->A0);
    free(P->B0);
    adapter_free(a);
}

static const AdapterOps pissa_ops = {
    .kind = "pissa",
    .register_params = pissa_register,
    .init = pissa_init,
    .reserve = pissa_reserve,
    .forward = pissa_forward,
    .backward = pissa_backward,
    .merge = pissa_merge,
    .export_tensors = pissa_export,
    .destroy = pissa_destroy,
};

static PeftcStatus pissa_create(Adapter **out, const Backend *be, const Linear *base, const LoraConfig *cfg, int niter,
                                int group) {
    if (cfg->r > (base->in < base->out ? base->in : base->out))
        return PEFTC_ERR(PEFTC_EINVAL, "pissa: lora.r = %d exceeds the rank of layer %s (%d x %d)", cfg->r, base->name,
                         base->out, base->in);
    Adapter *a;
    PEFTC_TRY(adapter_new(&a, &pissa_ops, be, base, sizeof(Pissa)));
    Pissa *P = a->state;
    P->cfg = *cfg;
    P->niter = niter;
    P->A0 = malloc((size_t)cfg->r * base->in * sizeof *P->A0);
    P->B0 = malloc((size_t)base->out * cfg->r * sizeof *P->B0);
    PeftcStatus st = P->A0 && P->B0 ? lora_create(&P->lora, be, base, cfg, group)
                                    : PEFTC_ERR(PEFTC_ENOMEM, "pissa: out of memory for layer %s", base->name);
    if (st != PEFTC_OK) {
        pissa_destroy(a);
        return st;
    }
    *out = a;
    return PEFTC_OK;
}

/* ---------------------------------------------------------------- the method */

static PeftcStatus validate(const MethodSettings *s, const MethodEnv *env) {
    (void)s;
    if (env->quantized_base)
        return PEFTC_ERR(PEFTC_EINVAL, "method.name=pissa rewrites the base weights with their SVD residual: set "
                                       "model.quantized=false");
    return PEFTC_OK;
}

static PeftcStatus make(Adapter **out, const Backend *be, const Linear *l, const void *cfg, int group, int niter) {
    return pissa_create(out, be, l, cfg, niter, group);
}

static PeftcStatus attach(Model *m, Arena *a, MethodConfig *mc) {
    PEFTC_TRY(lora_resolve_targets(m, mc));
    const LoraConfig *lc = &lora_settings_c(&mc->settings)->lora;
    const PissaSettings *ps = method_section_settings_c(&mc->settings, &pissa_section);
    int group;
    PEFTC_TRY(arena_group(a, mc->desc->name, lora_group_lr(mc), mc->weight_decay, &group));
    return method_attach_each(m, a, lc->targets, make, lc, group, ps->niter);
}

static PeftcStatus init(Model *m, Arena *a, MethodConfig *mc, uint64_t seed) {
    (void)mc;
    return method_init_adapters(m, a, seed);
}

/* The rank-2r LoRA on the original base, with the alpha that keeps the scale. */
static PeftcStatus export(const MethodConfig *mc, const Model *m, const char *dir, const char *base_name) {
    LoraConfig lc = lora_settings_c(&mc->settings)->lora;
    lc.alpha *= lc.rslora ? sqrt(2.0) : 2.0;
    lc.r *= 2;
    return peft_save(m, &lc, base_name, dir);
}

const MethodDesc pissa_method = {
    .name = "pissa",
    .help = "LoRA on the principal singular directions",
    .sections = (const MethodSection *const[]){&lora_section, &pissa_section, NULL},
    .validate = validate,
    .attach = attach,
    .init = init,
    .export = export,
};
