/* The fixed-pattern CSR matrix of RoSA: building patterns from flat indices, the deterministic top-k
 * that chooses them, and the four CPU ops checked against dense references built with be->matmul. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/csr.h"
#include "tests/testutil.h"

static const Backend *be;

static void setup(void) { be = backend_cpu(); }

/* The backend scratch csr_sddmm sums a pattern of nnz values in. */
static void reserve_nnz(int64_t nnz) {
    BackendNeed need = {.nnz = nnz};
    ck_assert_int_eq(be->reserve(be, &need), PEFTC_OK);
}

static void assert_i32(const int32_t *got, const int32_t *want, int n, const char *what) {
    for (int i = 0; i < n; i++) ck_assert_msg(got[i] == want[i], "%s[%d] = %d, expected %d", what, i, got[i], want[i]);
}

static void assert_i64(const int64_t *got, const int64_t *want, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "%s[%lld] = %lld, expected %lld", what, (long long)i, (long long)got[i],
                      (long long)want[i]);
}

/* ======================= csr_from_flat ======================= */

START_TEST(from_flat_layout) {
    /* (3,4): row 0 holds cols 1, 3; row 1 is empty; row 2 holds cols 0, 1, 3. Given out of order. */
    const int64_t flat[] = {9, 1, 3, 11, 8};
    const int32_t want_rp[] = {0, 2, 2, 5}, want_ci[] = {1, 3, 0, 1, 3};
    CsrPattern p;
    ck_assert_int_eq(csr_from_flat(&p, be, 3, 4, flat, 5, "t"), PEFTC_OK);
    ck_assert_int_eq(p.rows, 3);
    ck_assert_int_eq(p.cols, 4);
    ck_assert_int_eq(p.nnz, 5);
    assert_i32(p.row_ptr, want_rp, 4, "row_ptr");
    assert_i32(p.col_idx, want_ci, 5, "col_idx");
    csr_free(&p, be);
    ck_assert_ptr_null(p.row_ptr);
    ck_assert_ptr_null(p.col_idx);

    /* Already ascending (the top-k's output), trailing empty row. */
    const int64_t asc[] = {0, 5};
    const int32_t rp2[] = {0, 1, 2, 2}, ci2[] = {0, 1};
    ck_assert_int_eq(csr_from_flat(&p, be, 3, 4, asc, 2, "t"), PEFTC_OK);
    assert_i32(p.row_ptr, rp2, 4, "row_ptr");
    assert_i32(p.col_idx, ci2, 2, "col_idx");
    csr_free(&p, be);
}
END_TEST

START_TEST(from_flat_wide_columns) {
    /* Column indices past int16 (spops' 32767 cap) are stored exactly. */
    const int64_t flat[] = {100000 + 40000, 99999};
    CsrPattern p;
    ck_assert_int_eq(csr_from_flat(&p, be, 2, 100000, flat, 2, "wide"), PEFTC_OK);
    const int32_t rp[] = {0, 1, 2}, ci[] = {99999, 40000};
    assert_i32(p.row_ptr, rp, 3, "row_ptr");
    assert_i32(p.col_idx, ci, 2, "col_idx");
    csr_free(&p, be);
}
END_TEST

START_TEST(from_flat_empty) {
    CsrPattern p;
    ck_assert_int_eq(csr_from_flat(&p, be, 4, 6, NULL, 0, "empty"), PEFTC_OK);
    ck_assert_int_eq(p.nnz, 0);
    ck_assert_ptr_nonnull(p.col_idx);
    const int32_t rp[] = {0, 0, 0, 0, 0};
    assert_i32(p.row_ptr, rp, 5, "row_ptr");
    csr_free(&p, be);
}
END_TEST

static void expect_reject(const int64_t *flat, int64_t nnz, const char *needle) {
    CsrPattern p;
    peftc_err_clear();
    ck_assert_int_eq(csr_from_flat(&p, be, 3, 4, flat, nnz, "layers.0.q_proj.sparse"), PEFTC_EINVAL);
    const char *msg = peftc_err_msg();
    ck_assert_msg(strstr(msg, "layers.0.q_proj.sparse") && strstr(msg, needle), "message '%s' lacks '%s'", msg,
                  needle);
    ck_assert_ptr_null(p.row_ptr);
    ck_assert_ptr_null(p.col_idx);
    csr_free(&p, be); /* safe on a failed build */
}

START_TEST(from_flat_rejects) {
    const int64_t dup[] = {5, 2, 7, 5}, high[] = {3, 12}, neg[] = {2, -1}, last_ok[] = {11};
    expect_reject(dup, 4, "flat index 5 ");
    expect_reject(high, 2, "flat index 12 ");
    expect_reject(neg, 2, "flat index -1 ");
    CsrPattern p;
    ck_assert_int_eq(csr_from_flat(&p, be, 3, 4, last_ok, 1, "t"), PEFTC_OK); /* rows*cols - 1 is inside */
    csr_free(&p, be);
}
END_TEST

/* ======================= csr_topk_flat ======================= */

START_TEST(topk_hand) {
    const float s[] = {1, 3, 3, 2, 3, 0};
    int64_t out[6];
    const int64_t w2[] = {1, 2}, w4[] = {1, 2, 3, 4}, w6[] = {0, 1, 2, 3, 4, 5};
    ck_assert_int_eq(csr_topk_flat(s, 6, 2, out), PEFTC_OK);
    assert_i64(out, w2, 2, "k=2");
    ck_assert_int_eq(csr_topk_flat(s, 6, 4, out), PEFTC_OK);
    assert_i64(out, w4, 4, "k=4");
    ck_assert_int_eq(csr_topk_flat(s, 6, 6, out), PEFTC_OK);
    assert_i64(out, w6, 6, "k=n");

    /* Raw means can be negative: ranked by value, not magnitude. */
    const float neg[] = {-1, -5, -1, -3, -0.5f};
    const int64_t n1[] = {4}, n3[] = {0, 2, 4};
    ck_assert_int_eq(csr_topk_flat(neg, 5, 1, out), PEFTC_OK);
    assert_i64(out, n1, 1, "negative k=1");
    ck_assert_int_eq(csr_topk_flat(neg, 5, 3, out), PEFTC_OK);
    assert_i64(out, n3, 3, "negative k=3");

    /* -0 equals +0, so the lower index wins the tie whichever sign it carries. */
    const float zeros[] = {-1, -0.0f, 0.0f, -0.0f};
    const int64_t z1[] = {1}, z2[] = {1, 2};
    ck_assert_int_eq(csr_topk_flat(zeros, 4, 1, out), PEFTC_OK);
    assert_i64(out, z1, 1, "signed zeros k=1");
    ck_assert_int_eq(csr_topk_flat(zeros, 4, 2, out), PEFTC_OK);
    assert_i64(out, z2, 2, "signed zeros k=2");

    /* Infinities are ordinary extremes. */
    const float inf[] = {INFINITY, 1, -INFINITY, 2};
    const int64_t i2[] = {0, 3}, i4[] = {0, 1, 2, 3};
    ck_assert_int_eq(csr_topk_flat(inf, 4, 2, out), PEFTC_OK);
    assert_i64(out, i2, 2, "inf k=2");
    ck_assert_int_eq(csr_topk_flat(inf, 4, 4, out), PEFTC_OK);
    assert_i64(out, i4, 4, "inf k=4");
}
END_TEST

START_TEST(topk_errors) {
    const float s[] = {1, 2, NAN, 4};
    int64_t out[4] = {-7, -7, -7, -7};
    ck_assert_int_eq(csr_topk_flat(s, 2, 0, out), PEFTC_OK);
    ck_assert_int_eq(out[0], -7); /* k = 0 writes nothing */
    ck_assert_int_eq(csr_topk_flat(s, 2, 3, out), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "k = 3"));
    ck_assert_int_eq(csr_topk_flat(s, 2, -1, out), PEFTC_EINVAL);
    ck_assert_int_eq(csr_topk_flat(s, 4, 1, out), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "score 2 "));
}
END_TEST

typedef struct {
    float v;
    int64_t i;
} Scored;

static int cmp_rank(const void *a, const void *b) {
    const Scored *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Scores on a coarse grid of signed levels (heavy ties, both zero signs), or fine uniform values. */
static void fill_scores(float *s, int64_t n, uint64_t key, int levels) {
    for (int64_t i = 0; i < n; i++) {
        double u = rng_uniform(key, (uint64_t)i);
        if (levels == 0) {
            s[i] = (float)(4 * u - 2);
        } else {
            int l = (int)(u * levels) - levels / 2;
            s[i] = l == 0 && (i & 1) ? -0.0f : (float)l * 0.25f;
        }
    }
}

/* Sort-based reference: rank by (value desc, index asc), keep k, ascending. */
static void topk_ref(const float *s, int64_t n, int64_t k, int64_t *out) {
    Scored *a = malloc((size_t)n * sizeof *a);
    for (int64_t i = 0; i < n; i++) a[i] = (Scored){s[i], i};
    qsort(a, (size_t)n, sizeof *a, cmp_rank);
    for (int64_t j = 0; j < k; j++) out[j] = a[j].i;
    qsort(out, (size_t)k, sizeof *out, cmp_i64);
    free(a);
}

START_TEST(topk_matches_sort) {
    const int64_t ns[] = {1, 7, 1000, 4099};
    const int levels[] = {0, 2, 5, 40};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            int64_t n = ns[a];
            float *s = malloc((size_t)n * sizeof *s);
            int64_t *got = malloc((size_t)n * sizeof *got), *want = malloc((size_t)n * sizeof *want);
            fill_scores(s, n, 100 + (uint64_t)(a * 4 + b), levels[b]);
            const int64_t ks[] = {1, n / 3, n / 2 + 1, n - 1, n};
            for (int c = 0; c < 5; c++) {
                int64_t k = ks[c];
                if (k < 1) continue;
                ck_assert_int_eq(csr_topk_flat(s, n, k, got), PEFTC_OK);
                topk_ref(s, n, k, want);
                assert_i64(got, want, k, "topk vs sort");
            }
            free(s), free(got), free(want);
        }
}
END_TEST

START_TEST(topk_thread_independent) {
    const int64_t n = 300000, k = 12345;
    float *s = malloc((size_t)n * sizeof *s);
    int64_t *one = malloc((size_t)k * sizeof *one), *two = malloc((size_t)k * sizeof *two);
    fill_scores(s, n, 77, 9);
    backend_cpu_set_threads(1);
    ck_assert_int_eq(csr_topk_flat(s, n, k, one), PEFTC_OK);
    backend_cpu_set_threads(2);
    ck_assert_int_eq(csr_topk_flat(s, n, k, two), PEFTC_OK);
    backend_cpu_set_threads(0);
    ck_assert(memcmp(one, two, (size_t)k * sizeof *one) == 0);
    free(s), free(one), free(two);
}
END_TEST

/* ======================= the ops against dense references ======================= */

typedef struct {
    int rows, cols, R;
    double density;
    int empty_every; /* every empty_every-th sparse row has no nonzeros (0: none forced) */
} OpCase;

/* Small and odd shapes, empty rows, nnz = 0, one activation row (the decode path), and sizes that
 * cross CPU_PAR_MIN so the parallel branches run. */
static const OpCase op_cases[] = {
    {7, 5, 4, 0.4, 3},       {16, 33, 1, 0.2, 0},    {9, 12, 6, 0.0, 0}, {40, 70, 37, 0.1, 4},
    {64, 300, 130, 0.05, 2}, {300, 200, 1, 0.3, 5},  {1, 1, 1, 1.0, 0},
};

/* A pattern, its values, and S densely. */
typedef struct {
    CsrPattern p;
    real_t *values; /* (nnz) */
    real_t *dense;  /* (rows,cols) */
} Sparse;

static Sparse sparse_make(const OpCase *c, uint64_t key) {
    int64_t numel = (int64_t)c->rows * c->cols, nnz = 0;
    int64_t *flat = calloc((size_t)numel, sizeof *flat);
    for (int64_t f = numel - 1; f >= 0; f--) { /* descending: from_flat must sort */
        int row = (int)(f / c->cols);
        if (c->empty_every && row % c->empty_every == 0) continue;
        if (rng_uniform(key, (uint64_t)f) < c->density) flat[nnz++] = f;
    }
    Sparse s;
    ck_assert_int_eq(csr_from_flat(&s.p, be, c->rows, c->cols, flat, nnz, "case"), PEFTC_OK);
    s.values = calloc((size_t)(nnz ? nnz : 1), sizeof(real_t));
    tu_fill_uniform(s.values, (size_t)nnz, key + 1, -1, 1);
    s.dense = calloc((size_t)numel, sizeof(real_t));
    for (int i = 0; i < c->rows; i++)
        for (int32_t j = s.p.row_ptr[i]; j < s.p.row_ptr[i + 1]; j++)
            s.dense[(size_t)i * c->cols + s.p.col_idx[j]] = s.values[j];
    free(flat);
    return s;
}

static void sparse_free(Sparse *s) {
    csr_free(&s->p, be);
    free(s->values);
    free(s->dense);
}

static real_t *rand_buf(size_t n, uint64_t key) {
    real_t *p = calloc(n ? n : 1, sizeof(real_t));
    tu_fill_uniform(p, n, key, -1, 1);
    return p;
}

static real_t *dup_buf(const real_t *x, size_t n) {
    real_t *p = malloc((n ? n : 1) * sizeof(real_t));
    memcpy(p, x, n * sizeof(real_t));
    return p;
}

/* got against want (both started from start): close, and, when S has nonzeros, visibly moved. */
static void assert_close(const real_t *got, const real_t *want, const real_t *start, size_t n, int64_t nnz,
                         const char *what) {
    double scale = 1, moved = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs((double)want[i]));
        moved = fmax(moved, fabs((double)want[i] - start[i]));
        worst = fmax(worst, fabs((double)got[i] - want[i]));
    }
    ck_assert_msg(worst <= 1e-5 * scale, "%s: differs from the dense reference by %g (scale %g)", what, worst, scale);
    if (nnz == 0) ck_assert_msg(memcmp(got, start, n * sizeof(real_t)) == 0, "%s: empty S changed the output", what);
    else ck_assert_msg(moved > 1e-3, "%s: the reference barely moved (%g): the check is vacuous", what, moved);
}

START_TEST(ops_vs_dense) {
    const OpCase *c = &op_cases[_i];
    Sparse S = sparse_make(c, 1000 + (uint64_t)_i);
    const CsrPattern *p = &S.p;
    int R = c->R, rows = c->rows, cols = c->cols;
    const real_t alpha = (real_t)-0.7;
    size_t nW = (size_t)rows * cols, nx = (size_t)R * cols, ny = (size_t)R * rows;
    real_t *x = rand_buf(nx, 1), *dy = rand_buf(ny, 2);

    /* W += alpha S */
    real_t *W0 = rand_buf(nW, 3), *W = dup_buf(W0, nW), *Wr = dup_buf(W0, nW);
    be->csr_add_dense(be, W, p->row_ptr, p->col_idx, S.values, rows, cols, alpha);
    be->axpy(be, Wr, S.dense, alpha, nW);
    assert_close(W, Wr, W0, nW, p->nnz, "csr_add_dense");

    /* y += alpha x S^T */
    real_t *y0 = rand_buf(ny, 4), *y = dup_buf(y0, ny), *yr = dup_buf(y0, ny);
    be->csr_spmm(be, y, x, p->row_ptr, p->col_idx, S.values, R, rows, cols, alpha);
    be->matmul(be, yr, x, S.dense, R, rows, cols, 0, 1, alpha, 1);
    assert_close(y, yr, y0, ny, p->nnz, "csr_spmm");

    /* dx += alpha dy S */
    real_t *dx0 = rand_buf(nx, 5), *dx = dup_buf(dx0, nx), *dxr = dup_buf(dx0, nx);
    be->csr_spmm_t(be, dx, dy, p->row_ptr, p->col_idx, S.values, R, rows, cols, alpha);
    be->matmul(be, dxr, dy, S.dense, R, cols, rows, 0, 0, alpha, 1);
    assert_close(dx, dxr, dx0, nx, p->nnz, "csr_spmm_t");

    /* dvalues += alpha (dy^T x) at the pattern */
    size_t nv = (size_t)p->nnz;
    real_t *dv0 = rand_buf(nv, 6), *dv = dup_buf(dv0, nv), *dvr = dup_buf(dv0, nv), *G = calloc(nW, sizeof(real_t));
    reserve_nnz(p->nnz);
    be->csr_sddmm(be, dv, dy, x, p->row_ptr, p->col_idx, R, rows, cols, alpha);
    be->matmul(be, G, dy, x, rows, cols, R, 1, 0, 1, 0);
    for (int i = 0; i < rows; i++)
        for (int32_t j = p->row_ptr[i]; j < p->row_ptr[i + 1]; j++)
            dvr[j] += alpha * G[(size_t)i * cols + p->col_idx[j]];
    assert_close(dv, dvr, dv0, nv, p->nnz, "csr_sddmm");

    /* dvalues += alpha W at the pattern (the gradient of csr_add_dense's values) */
    real_t *dg = dup_buf(dv0, nv), *dgr = dup_buf(dv0, nv);
    be->csr_gather(be, dg, W0, p->row_ptr, p->col_idx, rows, cols, alpha);
    for (int i = 0; i < rows; i++)
        for (int32_t j = p->row_ptr[i]; j < p->row_ptr[i + 1]; j++)
            dgr[j] += alpha * W0[(size_t)i * cols + p->col_idx[j]];
    assert_close(dg, dgr, dv0, nv, p->nnz, "csr_gather");
    free(dg), free(dgr);

    free(x), free(dy), free(W0), free(W), free(Wr), free(y0), free(y), free(yr);
    free(dx0), free(dx), free(dxr), free(dv0), free(dv), free(dvr), free(G);
    sparse_free(&S);
}
END_TEST

/* The four outputs of one case at the current thread count, started from fixed non-zero values. */
static real_t *ops_run(const OpCase *c, const Sparse *S, size_t *n) {
    const CsrPattern *p = &S->p;
    int R = c->R, rows = c->rows, cols = c->cols;
    size_t nW = (size_t)rows * cols, nx = (size_t)R * cols, ny = (size_t)R * rows, nv = (size_t)p->nnz;
    *n = nW + ny + nx + nv;
    real_t *out = rand_buf(*n, 9), *x = rand_buf(nx, 1), *dy = rand_buf(ny, 2);
    real_t *W = out, *y = W + nW, *dx = y + ny, *dv = dx + nx;
    be->csr_add_dense(be, W, p->row_ptr, p->col_idx, S->values, rows, cols, 1.5);
    be->csr_spmm(be, y, x, p->row_ptr, p->col_idx, S->values, R, rows, cols, 1.5);
    be->csr_spmm_t(be, dx, dy, p->row_ptr, p->col_idx, S->values, R, rows, cols, 1.5);
    reserve_nnz(p->nnz);
    be->csr_sddmm(be, dv, dy, x, p->row_ptr, p->col_idx, R, rows, cols, 1.5);
    free(x), free(dy);
    return out;
}

START_TEST(ops_thread_independent) {
    /* Big enough to run in parallel: many activation rows, and one row (spmm splits the sparse rows). */
    const OpCase cases[] = {{256, 384, 200, 0.03, 3}, {512, 256, 1, 0.4, 7}};
    for (int k = 0; k < 2; k++) {
        Sparse S = sparse_make(&cases[k], 55 + (uint64_t)k);
        size_t n1, n2;
        backend_cpu_set_threads(1);
        real_t *one = ops_run(&cases[k], &S, &n1);
        backend_cpu_set_threads(2);
        real_t *two = ops_run(&cases[k], &S, &n2);
        backend_cpu_set_threads(0);
        ck_assert(n1 == n2);
        ck_assert_msg(memcmp(one, two, n1 * sizeof(real_t)) == 0, "case %d: 1 and 2 threads differ", k);
        free(one), free(two);
        sparse_free(&S);
    }
}
END_TEST

static Suite *csr_suite(void) {
    Suite *s = suite_create("csr");
    TCase *pat = tcase_create("pattern");
    tcase_add_checked_fixture(pat, setup, NULL);
    tcase_add_test(pat, from_flat_layout);
    tcase_add_test(pat, from_flat_wide_columns);
    tcase_add_test(pat, from_flat_empty);
    tcase_add_test(pat, from_flat_rejects);
    suite_add_tcase(s, pat);
    TCase *tk = tcase_create("topk");
    tcase_add_test(tk, topk_hand);
    tcase_add_test(tk, topk_errors);
    tcase_add_test(tk, topk_matches_sort);
    tcase_add_test(tk, topk_thread_independent);
    suite_add_tcase(s, tk);
    TCase *ops = tcase_create("ops");
    tcase_add_checked_fixture(ops, setup, NULL);
    tcase_add_loop_test(ops, ops_vs_dense, 0, (int)(sizeof op_cases / sizeof op_cases[0]));
    tcase_add_test(ops, ops_thread_independent);
    suite_add_tcase(s, ops);
    return s;
}

int main(void) {
    return tu_run_suite(csr_suite());
}
