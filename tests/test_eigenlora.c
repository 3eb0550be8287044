/* EigenLoRAx in the shipped float build: the basis built from three synthetic PEFT folders (orthonormal,
 * spanning the centred sources, top components first, seeded augmentation), the adapter's parameter
 * count, U(-0.5, 0.5) and projection initialisation, merge equivalence, export as unit-scale PEFT LoRA,
 * and errors that name the folder, module or file at fault. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/eigenlora.h"
#include "core/models/llama/llama.h"
#include "adapters/method.h"
#include "adapters/formats/peft_io.h"
#include "core/base/rng.h"
#include "tests/model_testutil.h"
#include "tests/method_testutil.h"
#include "tests/testutil.h"

enum { B = 2, T = 6, R = 2, NSRC = 3, MAXN = 24 };

/* q (16,16), k/v (8,16), o (16,16), gate/up (24,16), down (16,24): every side has n >= 8. */
static const LlamaConfig cfg = {.hidden = 16, .intermediate = 24, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 40,
                                .rope_theta = 10000, .rms_eps = 1e-5, .tie_embeddings = 1};

static const unsigned QVD = LORA_T_Q | LORA_T_V | LORA_T_DOWN;

static char tmp_root[64];
static char src_qvd[NSRC][96]; /* the sources: r = 2, alpha = 4 (scale 2), q, v, down */
static char src_qo[NSRC][96];  /* q and o only: every side has n = 16 */

/* ---------------------------------------------------------------- fixtures */

/* A LoRA-adapted tiny model with random A and B (seeded) saved as a PEFT folder. */
static void write_source(const char *dir, int r, unsigned targets, uint64_t seed) {
    LlamaModel m;
    Arena a;
    MethodConfig mc = tu_method("lora");
    *tu_lora(&mc) = (LoraConfig){.r = r, .alpha = 2.0 * r};
    tu_targets(&mc, targets);
    ck_assert_int_eq(llama_create(&m, backend_cpu(), &cfg, 1, 0.1), PEFTC_OK);
    arena_init(&a, backend_cpu());
    ck_assert_int_eq(method_attach(&m.base, &a, &mc), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(&a), PEFTC_OK);
    ck_assert_int_eq(method_init(&m.base, &a, &mc, seed), PEFTC_OK);
    tu_fill_uniform(a.params, a.numel, seed, -0.5, 0.5);
    ck_assert_int_eq(peft_save(&m.base, tu_lora(&mc), "tiny", dir), PEFTC_OK);
    method_detach(&m.base, NULL);
    llama_free(&m);
    arena_free(&a);
}

static void setup(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/eigenlora_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_root));
    for (int i = 0; i < NSRC; i++) {
        snprintf(src_qvd[i], sizeof src_qvd[i], "%s/qvd%d", tmp_root, i);
        write_source(src_qvd[i], R, QVD, 100 + (uint64_t)i);
        snprintf(src_qo[i], sizeof src_qo[i], "%s/qo%d", tmp_root, i);
        write_source(src_qo[i], R, LORA_T_Q | LORA_T_O, 200 + (uint64_t)i);
    }
}

/* Two levels: tmp_root/<folder>/<file> and tmp_root/<file>. */
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[400];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) remove_tree(path);
    }
    closedir(d);
    rmdir(dir);
}

static void teardown(void) { remove_tree(tmp_root); }

static const char *tmp_path(const char *name) {
    static char buf[8][160];
    static int at;
    char *p = buf[at++ % 8];
    snprintf(p, 160, "%s/%s", tmp_root, name);
    return p;
}

typedef struct {
    int n;
    EigenSideInfo info[32];
    char modules[32][96]; /* info->module lives only during the call */
} Reports;

static void collect_report(void *user, const EigenSideInfo *info) {
    Reports *r = user;
    ck_assert_int_lt(r->n, 32);
    snprintf(r->modules[r->n], sizeof r->modules[0], "%s", info->module);
    r->info[r->n] = *info;
    r->info[r->n].module = r->modules[r->n];
    r->n++;
}

static void build(const char (*dirs)[96], int K, int K_rand, uint64_t seed, const char *out, Reports *rep) {
    const char *d[NSRC] = {dirs[0], dirs[1], dirs[2]};
    PeftcStatus st = eigen_build_report(d, NSRC, K, K_rand, seed, out, rep ? collect_report : NULL, rep);
    ck_assert_msg(st == PEFTC_OK, "eigen_build: %s", peftc_err_msg());
}

/* ---------------------------------------------------------------- linear algebra on host copies */

/* A source's lora_A (r,in) or lora_B (out,r) as n x r columns: X[j*r + c] (A is transposed). */
static void source_columns(const char *dir, const char *module, char side, int n, double *X) {
    char path[200], name[200];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    StFile f;
    ck_assert_int_eq(st_open(&f, path), PEFTC_OK);
    snprintf(name, sizeof name, "base_model.model.%s.lora_%c.weight", module, side);
    const StTensor *t = st_find(&f, name);
    ck_assert_msg(t != NULL, "%s: no %s", path, name);
    real_t buf[MAXN * R];
    ck_assert_int_eq(st_read_real(&f, t, NULL, buf), PEFTC_OK);
    for (int j = 0; j < n; j++)
        for (int c = 0; c < R; c++) X[j * R + c] = side == 'A' ? buf[c * n + j] : buf[j * R + c];
    st_close(&f);
}

/* M (n, R*NSRC) row-major, rows centred across the columns as the build does. */
static void centred_data(const char (*dirs)[96], const char *module, char side, int n, double *M) {
    double X[MAXN * R];
    int m = R * NSRC;
    for (int i = 0; i < NSRC; i++) {
        source_columns(dirs[i], module, side, n, X);
        for (int j = 0; j < n; j++)
            for (int c = 0; c < R; c++) M[j * m + i * R + c] = X[j * R + c];
    }
    for (int j = 0; j < n; j++) {
        double mean = 0;
        for (int c = 0; c < m; c++) mean += M[j * m + c];
        for (int c = 0; c < m; c++) M[j * m + c] -= mean / m;
    }
}

/* max |C^T C - I| for C (n,K) row-major. */
static double orthonormality_error(const real_t *C, int n, int K) {
    double worst = 0;
    for (int a = 0; a < K; a++)
        for (int b = 0; b < K; b++) {
            double s = 0;
            for (int j = 0; j < n; j++) s += (double)C[j * K + a] * C[j * K + b];
            worst = fmax(worst, fabs(s - (a == b)));
        }
    return worst;
}

/* |x - C C^T x| / |x| for column c of M (n,m); C (n,K) row-major, K <= 8. */
static double span_residual(const real_t *C, int n, int K, const double *M, int m, int c) {
    double h[8] = {0}, res = 0, norm = 0;
    for (int k = 0; k < K; k++)
        for (int i = 0; i < n; i++) h[k] += C[i * K + k] * M[i * m + c];
    for (int i = 0; i < n; i++) {
        double p = M[i * m + c];
        for (int k = 0; k < K; k++) p -= C[i * K + k] * h[k];
        res += p * p, norm += M[i * m + c] * M[i * m + c];
    }
    return sqrt(res / norm);
}

/* ||M^T c_k||^2: the variance of the data along component k. M (n,m), C (n,K) row-major. */
static double variance_along(const double *M, int n, int m, const real_t *C, int K, int k) {
    double v = 0;
    for (int c = 0; c < m; c++) {
        double s = 0;
        for (int j = 0; j < n; j++) s += M[j * m + c] * C[j * K + k];
        v += s * s;
    }
    return v;
}

static const char *meta(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_vals[i];
    return "(absent)";
}

static void read_components(const char *path, const char *module, char side, int n, int K, real_t *C) {
    EigenBasis b;
    ck_assert_int_eq(eigen_basis_open(&b, path), PEFTC_OK);
    PeftcStatus st = eigen_basis_read(&b, module, side, n, K, C);
    ck_assert_msg(st == PEFTC_OK, "%s", peftc_err_msg());
    eigen_basis_close(&b);
}

/* ---------------------------------------------------------------- models with EigenLoRAx attached */

static EigenConfig eigen_cfg(int r, int K, unsigned targets) {
    EigenConfig c = {.r = r, .K = K, .targets = targets};
    return c;
}

/* What method.c does for LoRA, with eigenlora_create: attach, register, finalize, init, reserve. */
static void attach(LlamaModel *m, Arena *a, const char *basis_path, const EigenConfig *c, uint64_t seed) {
    EigenBasis basis;
    ck_assert_int_eq(eigen_basis_open(&basis, basis_path), PEFTC_OK);
    arena_init(a, backend_cpu());
    int group;
    ck_assert_int_eq(arena_group(a, "eigenlora", 4e-3, 0.1, &group), PEFTC_OK);
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (!(linear_target_bit(l) & c->targets)) continue;
        Adapter *ad;
        PeftcStatus st = eigenlora_create(&ad, m->base.be, l, &basis, c, group);
        ck_assert_msg(st == PEFTC_OK, "%s", peftc_err_msg());
        l->adapter = ad;
        ck_assert_int_eq(ad->ops->register_params(ad, a), PEFTC_OK);
    }
    eigen_basis_close(&basis); /* the adapters hold their own copies */
    ck_assert_int_eq(arena_finalize(a), PEFTC_OK);
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (!l->adapter) continue;
        PeftcStatus st = l->adapter->ops->init(l->adapter, a, l, seed);
        ck_assert_msg(st == PEFTC_OK, "%s", peftc_err_msg());
    }
    ck_assert_int_eq(llama_reserve(m, B, T), PEFTC_OK);
}

static void open_model(LlamaModel *m, Arena *a, const char *basis_path, const EigenConfig *c, uint64_t seed) {
    ck_assert_int_eq(llama_create(m, backend_cpu(), &cfg, 1, 0.1), PEFTC_OK);
    attach(m, a, basis_path, c, seed);
}

static void close_model(LlamaModel *m, Arena *a) {
    method_detach(&m->base, NULL);
    llama_free(m);
    arena_free(a);
}

static const real_t *alpha(const Arena *a, const char *module, char side) {
    char name[ARENA_NAME_MAX];
    snprintf(name, sizeof name, "%s.eigen_alpha_%c", module, side);
    int h = arena_find(a, name);
    ck_assert_msg(h >= 0, "no arena entry %s", name);
    return arena_param(a, h);
}

/* Snapshot of every base weight W (out,in) of the model's linears, concatenated. */
static real_t *weights(LlamaModel *m) {
    size_t total = 0;
    for (int i = 0; i < llama_linear_count(m); i++) total += (size_t)llama_linear(m, i)->in * llama_linear(m, i)->out;
    real_t *w = malloc(total * sizeof *w), *p = w;
    for (int i = 0; i < llama_linear_count(m); i++) {
        const Linear *l = llama_linear(m, i);
        memcpy(p, l->W, (size_t)l->in * l->out * sizeof *p);
        p += (size_t)l->in * l->out;
    }
    return w;
}

/* ---------------------------------------------------------------- the basis */

static const char *const modules_qvd[3] = {"self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"};
static const int in_qvd[3] = {16, 16, 24}, out_qvd[3] = {16, 8, 16};

/* K = rT - 1 = 5 is the full rank of the centred data: the basis must be orthonormal and hold every
 * centred source column, and report all of the variance as captured. */
START_TEST(basis_is_orthonormal_and_spans_centred_sources) {
    const char *path = tmp_path("full_rank.safetensors");
    Reports rep = {0};
    build(src_qvd, 5, 0, 3, path, &rep);
    ck_assert_int_eq(rep.n, cfg.layers * 3 * 2);
    for (int i = 0; i < rep.n; i++) {
        ck_assert_int_eq(rep.info[i].rank, R * NSRC - 1);
        ck_assert_int_eq(rep.info[i].pcs, 5);
        ck_assert_int_eq(rep.info[i].random, 0);
        ck_assert_double_eq_tol(rep.info[i].captured, 1.0, 1e-12);
    }
    EigenBasis b;
    ck_assert_int_eq(eigen_basis_open(&b, path), PEFTC_OK);
    ck_assert_int_eq(b.r, R);
    ck_assert_int_eq(b.columns, 5);
    ck_assert_int_eq(b.file.n_tensors, cfg.layers * 3 * 2);
    char sources[400];
    snprintf(sources, sizeof sources, "%s,%s,%s", src_qvd[0], src_qvd[1], src_qvd[2]);
    ck_assert_str_eq(meta(&b.file, "format"), "peftc-eigenlora");
    ck_assert_str_eq(meta(&b.file, "sources"), sources);
    ck_assert_str_eq(meta(&b.file, "seed"), "3");
    eigen_basis_close(&b);
    int m = R * NSRC;
    for (int l = 0; l < cfg.layers; l++)
        for (int j = 0; j < 3; j++)
            for (int s = 0; s < 2; s++) {
                char module[96];
                snprintf(module, sizeof module, "model.layers.%d.%s", l, modules_qvd[j]);
                char side = s ? 'B' : 'A';
                int n = s ? out_qvd[j] : in_qvd[j];
                real_t C[MAXN * 5];
                double M[MAXN * R * NSRC];
                read_components(path, module, side, n, 5, C);
                ck_assert_double_le(orthonormality_error(C, n, 5), 1e-5);
                centred_data(src_qvd, module, side, n, M);
                for (int c = 0; c < m; c++)
                    ck_assert_msg(span_residual(C, n, 5, M, m, c) <= 1e-5, "%s %c column %d: residual %g", module,
                                  side, c, span_residual(C, n, 5, M, m, c));
            }
}
END_TEST

/* K = 3 < rank: the kept columns carry the largest variances (the two dropped directions of the K = 5
 * basis carry less), and the reported capture is their share of the total. */
START_TEST(basis_keeps_top_components) {
    const char *p3 = tmp_path("k3.safetensors"), *p5 = tmp_path("k5.safetensors");
    Reports rep = {0};
    build(src_qvd, 3, 0, 3, p3, &rep);
    build(src_qvd, 5, 0, 3, p5, NULL);
    const char *module = "model.layers.1.mlp.down_proj";
    const int n = 24, m = R * NSRC;
    real_t C3[MAXN * 3], C5[MAXN * 5];
    double M[MAXN * R * NSRC], total = 0, kept = 0;
    read_components(p3, module, 'A', n, 3, C3);
    read_components(p5, module, 'A', n, 5, C5);
    centred_data(src_qvd, module, 'A', n, M);
    for (int i = 0; i < n * m; i++) total += M[i] * M[i];
    double v[3];
    for (int k = 0; k < 3; k++) kept += v[k] = variance_along(M, n, m, C3, 3, k);
    ck_assert(v[0] >= v[1] && v[1] >= v[2]);
    for (int k = 3; k < 5; k++) ck_assert_double_ge(v[2], variance_along(M, n, m, C5, 5, k));
    const EigenSideInfo *info = NULL;
    for (int i = 0; i < rep.n; i++)
        if (!strcmp(rep.info[i].module, module) && rep.info[i].side == 'A') info = &rep.info[i];
    ck_assert_ptr_nonnull(info);
    ck_assert_double_lt(info->captured, 0.999);
    ck_assert_double_eq_tol(info->captured, kept / total, 1e-5);
}
END_TEST

/* Random columns: bitwise the same for one seed, different for another, orthonormal to the principal
 * ones; a shortfall (k above the rank) draws the same vectors as k_rand does. */
START_TEST(augmentation_is_seeded) {
    const char *a7 = tmp_path("aug7.safetensors"), *b7 = tmp_path("aug7b.safetensors");
    const char *a8 = tmp_path("aug8.safetensors"), *s7 = tmp_path("short7.safetensors");
    Reports rep = {0};
    build(src_qvd, 5, 2, 7, a7, NULL);
    build(src_qvd, 5, 2, 7, b7, NULL);
    build(src_qvd, 5, 2, 8, a8, NULL);
    build(src_qvd, 7, 0, 7, s7, &rep);
    for (int i = 0; i < rep.n; i++) ck_assert(rep.info[i].pcs == 5 && rep.info[i].random == 2);
    const char *module = "model.layers.0.self_attn.v_proj";
    for (int s = 0; s < 2; s++) {
        char side = s ? 'B' : 'A';
        int n = s ? 8 : 16;
        real_t c7[16 * 7], c7b[16 * 7], c8[16 * 7], cs[16 * 7];
        read_components(a7, module, side, n, 7, c7);
        read_components(b7, module, side, n, 7, c7b);
        read_components(a8, module, side, n, 7, c8);
        read_components(s7, module, side, n, 7, cs);
        ck_assert_double_le(orthonormality_error(c7, n, 7), 1e-5);
        ck_assert(memcmp(c7, c7b, sizeof c7) == 0);
        ck_assert(memcmp(c7, cs, sizeof c7) == 0);
        double pc_diff = 0, rand_diff = 0;
        for (int j = 0; j < n; j++)
            for (int k = 0; k < 7; k++) {
                double d = fabs((double)c7[j * 7 + k] - c8[j * 7 + k]);
                if (k < 5) pc_diff = fmax(pc_diff, d);
                else rand_diff = fmax(rand_diff, d);
            }
        ck_assert_double_eq(pc_diff, 0);
        ck_assert_double_gt(rand_diff, 0.05);
    }
    EigenBasis b;
    ck_assert_int_eq(eigen_basis_open(&b, a8), PEFTC_OK);
    ck_assert(b.k == 5 && b.k_rand == 2 && b.columns == 7 && b.seed == 8);
    eigen_basis_close(&b);
}
END_TEST

/* ---------------------------------------------------------------- the adapter */

START_TEST(param_count_and_uniform_init) {
    const char *path = tmp_path("pc.safetensors");
    build(src_qvd, 5, 1, 0, path, NULL);
    LlamaModel m;
    Arena a;
    EigenConfig c = eigen_cfg(3, 4, QVD); /* r free of the sources' r; K below the basis's 6 columns */
    ck_assert_int_eq(eigenlora_param_count(&c), 2 * 4 * 3);
    open_model(&m, &a, path, &c, 9);
    ck_assert_int_eq(a.n_entries, 2 * 3 * cfg.layers);
    int64_t trainable = 0;
    double mx = 0, mean = 0;
    for (int e = 0; e < a.n_entries; e++) {
        trainable += (int64_t)a.entries[e].numel;
        const real_t *p = arena_param(&a, e);
        for (size_t i = 0; i < a.entries[e].numel; i++) mx = fmax(mx, fabs(p[i])), mean += p[i];
    }
    ck_assert_int_eq(trainable, eigenlora_param_count(&c) * 3 * cfg.layers);
    ck_assert_double_le(mx, 0.5);
    ck_assert_double_gt(mx, 0.4);
    ck_assert_double_lt(fabs(mean / (double)trainable), 0.1);
    int h = arena_find(&a, "model.layers.1.mlp.down_proj.eigen_alpha_B");
    ck_assert_int_ge(h, 0);
    ck_assert(shape_equal(&a.entries[h].shape, &(Shape){2, {4, 3}}));
    ck_assert_int_eq(a.entries[h].decay, 1);
    /* keyed by (seed, name): another seed gives other values */
    LlamaModel m2;
    Arena a2;
    open_model(&m2, &a2, path, &c, 10);
    ck_assert(memcmp(a.params, a2.params, a.numel * sizeof *a.params) != 0);
    close_model(&m2, &a2);
    close_model(&m, &a);
}
END_TEST

START_TEST(merge_gives_same_logits) {
    const char *path = tmp_path("merge.safetensors");
    build(src_qvd, 5, 2, 1, path, NULL);
    LlamaModel m;
    Arena a;
    EigenConfig c = eigen_cfg(2, 7, QVD);
    open_model(&m, &a, path, &c, 3);
    real_t *with = tu_logits(&m, B, T);
    Adapter *saved[64];
    for (int i = 0; i < llama_linear_count(&m); i++) {
        saved[i] = llama_linear(&m, i)->adapter;
        llama_linear(&m, i)->adapter = NULL;
    }
    real_t *base = tu_logits(&m, B, T);
    for (int i = 0; i < llama_linear_count(&m); i++) llama_linear(&m, i)->adapter = saved[i];
    size_t n = (size_t)B * T * cfg.vocab;
    double diff_base = 0, worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) diff_base = fmax(diff_base, fabs((double)base[i] - with[i]));
    ck_assert_double_gt(diff_base, 1e-2); /* U(-0.5, 0.5) loadings: the delta is nonzero at init */
    method_merge(&m.base);
    method_detach(&m.base, NULL);
    real_t *merged = tu_logits(&m, B, T);
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)merged[i] - with[i]));
        scale = fmax(scale, fabs((double)with[i]));
    }
    ck_assert_msg(worst <= 1e-5 * fmax(1, scale), "merged logits differ by %g (scale %g)", worst, scale);
    free(with);
    free(base);
    free(merged);
    llama_free(&m);
    arena_free(&a);
}
END_TEST

typedef struct {
    int n;
    char names[2][160];
    Shape shapes[2];
    real_t data[2][MAXN * 4];
} Sink;

static PeftcStatus collect(void *user, const char *name, const Tensor *t) {
    Sink *s = user;
    ck_assert_int_lt(s->n, 2);
    ck_assert_int_eq(t->dtype, DT_REAL);
    ck_assert_int_le(shape_numel(&t->shape), MAXN * 4);
    s->shapes[s->n] = t->shape;
    memcpy(s->data[s->n], t->data, (size_t)shape_numel(&t->shape) * sizeof(real_t));
    snprintf(s->names[s->n++], sizeof s->names[0], "%s", name);
    return PEFTC_OK;
}

/* lora_A (r,in), lora_B (out,r) with PEFT names; s B A with s = export_alpha / r = 1 is the merged delta. */
START_TEST(export_is_unit_scale_lora) {
    const char *path = tmp_path("export.safetensors");
    build(src_qvd, 5, 2, 1, path, NULL);
    LlamaModel m;
    Arena a;
    EigenConfig c = eigen_cfg(4, 6, QVD);
    open_model(&m, &a, path, &c, 3);
    ck_assert_double_eq(eigenlora_export_alpha(&c), 4.0);
    double s = eigenlora_export_alpha(&c) / c.r;
    Sink sinks[64] = {{0}};
    for (int i = 0; i < llama_linear_count(&m); i++) {
        Adapter *ad = llama_linear(&m, i)->adapter;
        if (ad) ck_assert_int_eq(ad->ops->export_tensors(ad, collect, &sinks[i]), PEFTC_OK);
    }
    real_t *before = weights(&m);
    method_merge(&m.base);
    real_t *after = weights(&m);
    size_t at = 0;
    int checked = 0;
    for (int i = 0; i < llama_linear_count(&m); i++) {
        const Linear *l = llama_linear(&m, i);
        if (l->adapter) {
            const Sink *k = &sinks[i];
            char want[160];
            ck_assert_int_eq(k->n, 2);
            snprintf(want, sizeof want, "base_model.model.%s.lora_A.weight", l->name);
            ck_assert_str_eq(k->names[0], want);
            ck_assert(shape_equal(&k->shapes[0], &(Shape){2, {c.r, l->in}}));
            ck_assert(shape_equal(&k->shapes[1], &(Shape){2, {l->out, c.r}}));
            for (int o = 0; o < l->out; o++)
                for (int j = 0; j < l->in; j++) {
                    double d = 0;
                    for (int q = 0; q < c.r; q++) d += (double)k->data[1][o * c.r + q] * k->data[0][q * l->in + j];
                    size_t w = at + (size_t)o * l->in + j;
                    ck_assert_msg(fabs(s * d - ((double)after[w] - before[w])) <= 1e-5 * fmax(1, fabs(d)),
                                  "%s (%d,%d): exported %g, merged %g", l->name, o, j, s * d, after[w] - before[w]);
                }
            checked++;
        }
        at += (size_t)l->in * l->out;
    }
    ck_assert_int_eq(checked, 3 * cfg.layers);
    free(before);
    free(after);
    close_model(&m, &a);
}
END_TEST

/* alpha_A = C_A^T A^T and alpha_B = s C_B^T B exactly (s = 2: the sources have alpha = 2r). */
START_TEST(projection_init_is_c_transpose_x) {
    const char *path = tmp_path("proj.safetensors");
    build(src_qvd, 5, 0, 1, path, NULL);
    LlamaModel m;
    Arena a;
    EigenConfig c = eigen_cfg(R, 5, QVD);
    c.init_projection = 1;
    snprintf(c.projection_from, sizeof c.projection_from, "%s", src_qvd[1]);
    open_model(&m, &a, path, &c, 3);
    const char *module = "model.layers.1.self_attn.v_proj";
    for (int s = 0; s < 2; s++) {
        char side = s ? 'B' : 'A';
        int n = s ? 8 : 16;
        double X[MAXN * R], scale = s ? 2.0 : 1.0;
        real_t C[MAXN * 5];
        source_columns(src_qvd[1], module, side, n, X);
        read_components(path, module, side, n, 5, C);
        const real_t *al = alpha(&a, module, side);
        for (int k = 0; k < 5; k++)
            for (int q = 0; q < R; q++) {
                double want = 0;
                for (int j = 0; j < n; j++) want += C[j * 5 + k] * X[j * R + q];
                ck_assert_double_eq_tol(al[k * R + q], scale * want, 1e-5);
            }
    }
    close_model(&m, &a);
}
END_TEST

/* With a basis spanning every side (q and o: n = 16 = 5 components + 11 random), projection from a
 * source reproduces its delta s B A exactly. */
START_TEST(projection_from_full_basis_reproduces_source) {
    const char *path = tmp_path("proj_full.safetensors");
    build(src_qo, 5, 11, 4, path, NULL);
    LlamaModel m;
    Arena a;
    EigenConfig c = eigen_cfg(R, 16, LORA_T_Q | LORA_T_O);
    c.init_projection = 1;
    snprintf(c.projection_from, sizeof c.projection_from, "%s", src_qo[2]);
    open_model(&m, &a, path, &c, 3);
    real_t *before = weights(&m);
    method_merge(&m.base);
    real_t *after = weights(&m);
    size_t at = 0;
    int checked = 0;
    for (int i = 0; i < llama_linear_count(&m); i++) {
        const Linear *l = llama_linear(&m, i);
        if (l->adapter) {
            double At[16 * R], Bm[16 * R], worst = 0; /* A^T (in,r), B (out,r) */
            source_columns(src_qo[2], l->name, 'A', l->in, At);
            source_columns(src_qo[2], l->name, 'B', l->out, Bm);
            for (int o = 0; o < l->out; o++)
                for (int j = 0; j < l->in; j++) {
                    double d = 0;
                    for (int q = 0; q < R; q++) d += 2.0 * Bm[o * R + q] * At[j * R + q];
                    size_t w = at + (size_t)o * l->in + j;
                    worst = fmax(worst, fabs(d - ((double)after[w] - before[w])));
                }
            ck_assert_msg(worst <= 1e-5, "%s: reconstructed delta off by %g", l->name, worst);
            checked++;
        }
        at += (size_t)l->in * l->out;
    }
    ck_assert_int_eq(checked, 2 * cfg.layers);
    free(before);
    free(after);
    close_model(&m, &a);
}
END_TEST

/* ---------------------------------------------------------------- errors */

static void expect_build_error(const char *odd, const char *want1, const char *want2) {
    const char *d[3] = {src_qvd[0], odd, src_qvd[2]};
    ck_assert_int_ne(eigen_build(d, 3, 3, 0, 0, tmp_path("bad.safetensors")), PEFTC_OK);
    ck_assert_msg(strstr(peftc_err_msg(), want1) && strstr(peftc_err_msg(), want2), "message: %s", peftc_err_msg());
    ck_assert_int_ne(access(tmp_path("bad.safetensors"), F_OK), 0);
}

START_TEST(build_errors_name_folder_and_module) {
    char r3[128], no_down[128], extra_o[128];
    snprintf(r3, sizeof r3, "%s/r3", tmp_root);
    snprintf(no_down, sizeof no_down, "%s/no_down", tmp_root);
    snprintf(extra_o, sizeof extra_o, "%s/extra_o", tmp_root);
    write_source(r3, 3, QVD, 1);
    write_source(no_down, R, LORA_T_Q | LORA_T_V, 1);
    write_source(extra_o, R, QVD | LORA_T_O, 1);
    expect_build_error(r3, r3, "r = 3");
    expect_build_error(no_down, no_down, "down_proj");
    expect_build_error(extra_o, extra_o, "o_proj");
    /* v's B side has 8 rows: 5 + 4 columns cannot be orthonormal */
    const char *d[3] = {src_qvd[0], src_qvd[1], src_qvd[2]};
    ck_assert_int_eq(eigen_build(d, 3, 5, 4, 0, tmp_path("bad.safetensors")), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "v_proj side B"));
}
END_TEST

START_TEST(adapter_errors_name_basis_and_module) {
    const char *path = tmp_path("errs.safetensors");
    build(src_qvd, 5, 0, 0, path, NULL);
    EigenBasis b;
    ck_assert_int_eq(eigen_basis_open(&b, path), PEFTC_OK);
    LlamaModel m;
    ck_assert_int_eq(llama_create(&m, backend_cpu(), &cfg, 1, 0.1), PEFTC_OK);
    Adapter *ad;
    EigenConfig c = eigen_cfg(R, 5, LORA_T_K);
    ck_assert_int_eq(eigenlora_create(&ad, m.base.be, &m.layers[0].k, &b, &c, 0), PEFTC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), path));
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "model.layers.0.self_attn.k_proj"));
    c = eigen_cfg(R, 6, QVD);
    ck_assert_int_eq(eigenlora_create(&ad, m.base.be, &m.layers[0].q, &b, &c, 0), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "eigenlora.k"));
    c = eigen_cfg(R, 5, QVD);
    c.init_projection = 1;
    ck_assert_int_eq(eigenlora_create(&ad, m.base.be, &m.layers[0].q, &b, &c, 0), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "projection_from"));
    eigen_basis_close(&b);
    /* a projection source of another rank */
    Arena a;
    c = eigen_cfg(3, 5, QVD);
    c.init_projection = 1;
    snprintf(c.projection_from, sizeof c.projection_from, "%s", src_qvd[0]);
    ck_assert_int_eq(eigen_basis_open(&b, path), PEFTC_OK);
    ck_assert_int_eq(eigenlora_create(&ad, m.base.be, &m.layers[0].q, &b, &c, 0), PEFTC_OK);
    eigen_basis_close(&b);
    arena_init(&a, backend_cpu());
    int group;
    ck_assert_int_eq(arena_group(&a, "eigenlora", 1e-3, 0, &group), PEFTC_OK);
    ck_assert_int_eq(group, 0);
    ck_assert_int_eq(ad->ops->register_params(ad, &a), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(&a), PEFTC_OK);
    ck_assert_int_eq(ad->ops->init(ad, &a, &m.layers[0].q, 0), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), src_qvd[0]));
    ad->ops->destroy(ad);
    arena_free(&a);
    /* not a basis file */
    char peft_file[160];
    snprintf(peft_file, sizeof peft_file, "%s/adapter_model.safetensors", src_qvd[0]);
    ck_assert_int_eq(eigen_basis_open(&b, peft_file), PEFTC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "peftc-eigenlora"));
    llama_free(&m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("eigenlora");
    TCase *tc = tcase_create("eigenlora");
    /* Checked: the sources are written in each test's own process, as OpenMP must not run in the
     * parent before Check forks. */
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, basis_is_orthonormal_and_spans_centred_sources);
    tcase_add_test(tc, basis_keeps_top_components);
    tcase_add_test(tc, augmentation_is_seeded);
    tcase_add_test(tc, param_count_and_uniform_init);
    tcase_add_test(tc, merge_gives_same_logits);
    tcase_add_test(tc, export_is_unit_scale_lora);
    tcase_add_test(tc, projection_init_is_c_transpose_x);
    tcase_add_test(tc, projection_from_full_basis_reproduces_source);
    tcase_add_test(tc, build_errors_name_folder_and_module);
    tcase_add_test(tc, adapter_errors_name_basis_and_module);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
