/* Gradient checks of the sparse-delta ops, in double precision.
 *
 * L = sum(dy * (alpha x S^T)) through csr_spmm; csr_sddmm must be dL/dvalues and csr_spmm_t dL/dx.
 * As in grad_ops.c, the analytic gradients are accumulated into buffers pre-filled with random values
 * that are then subtracted, so an op that overwrites instead of accumulating fails. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/csr.h"
#include "tests/testutil.h"

#define FD_EPS 1e-5
#define FD_TOL 1e-7

static const Backend *be;

static void setup(void) { be = backend_cpu(); }

static real_t *rrand(size_t n, uint64_t key, double lo, double hi) {
    real_t *p = calloc(n ? n : 1, sizeof(real_t));
    ck_assert_ptr_nonnull(p);
    tu_fill_uniform(p, n, key, lo, hi);
    return p;
}

static double maxabs(const real_t *a, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

static void gc(tu_loss_fn f, void *ctx, real_t *x, const real_t *g, size_t n, const char *what) {
    ck_assert_msg(maxabs(g, n) > 1e-3, "%s: analytic gradient is (near) zero: the check is vacuous", what);
    double err = tu_gradcheck(f, ctx, x, g, n, FD_EPS, n, what);
    printf("  gradcheck %-28s n=%-5zu worst err %.2e\n", what, n, err);
    fflush(stdout);
    ck_assert_msg(err < FD_TOL, "gradcheck %s: worst error %.3g >= %.1g", what, err, FD_TOL);
}

typedef struct {
    CsrPattern p;
    real_t *values; /* (nnz) */
    real_t *x;      /* (R,cols) */
    real_t *dy;     /* (R,rows) the loss weights */
    real_t *y;      /* (R,rows) scratch */
    int R;
    real_t alpha;
} SpCtx;

static double sp_loss(void *p) {
    SpCtx *c = p;
    size_t ny = (size_t)c->R * c->p.rows;
    memset(c->y, 0, ny * sizeof(real_t));
    be->csr_spmm(be, c->y, c->x, c->p.row_ptr, c->p.col_idx, c->values, c->R, c->p.rows, c->p.cols, c->alpha);
    double s = 0.0;
    for (size_t i = 0; i < ny; i++) s += (double)c->y[i] * (double)c->dy[i];
    return s;
}

/* A (rows,cols) pattern with every third row empty and about a third of the rest set. */
static SpCtx sp_make(int rows, int cols, int R, real_t alpha, uint64_t key) {
    SpCtx c = {.R = R, .alpha = alpha};
    int64_t *flat = calloc((size_t)rows * cols, sizeof *flat), nnz = 0;
    for (int64_t f = 0; f < (int64_t)rows * cols; f++)
        if ((f / cols) % 3 != 1 && rng_uniform(key, (uint64_t)f) < 0.35) flat[nnz++] = f;
    ck_assert_int_eq(csr_from_flat(&c.p, be, rows, cols, flat, nnz, "grad"), PEFTC_OK);
    ck_assert_int_gt(c.p.nnz, 0);
    free(flat);
    c.values = rrand((size_t)nnz, key + 1, -1, 1);
    c.x = rrand((size_t)R * cols, key + 2, -1, 1);
    c.dy = rrand((size_t)R * rows, key + 3, -1, 1);
    c.y = rrand((size_t)R * rows, key + 4, 0, 0);
    return c;
}

static void sp_free(SpCtx *c) {
    csr_free(&c->p, be);
    free(c->values), free(c->x), free(c->dy), free(c->y);
}

/* g(n) pre-filled with random values, handed to the op, then the pre-fill removed. */
static real_t *grad_prefilled(size_t n, uint64_t key, real_t **g0) {
    real_t *g = rrand(n, key, -2, 2);
    *g0 = malloc((n ? n : 1) * sizeof(real_t));
    memcpy(*g0, g, n * sizeof(real_t));
    return g;
}

static void grad_unfill(real_t *g, real_t *g0, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] -= g0[i];
    free(g0);
}

START_TEST(test_sparse_grads) {
    const struct {
        int rows, cols, R;
        double alpha;
    } cases[] = {{6, 5, 4, 1.0}, {9, 13, 7, -0.6}, {8, 4, 1, 2.5}};
    for (int k = 0; k < 3; k++) {
        SpCtx c = sp_make(cases[k].rows, cases[k].cols, cases[k].R, (real_t)cases[k].alpha, 40 + 10 * (uint64_t)k);
        size_t nv = (size_t)c.p.nnz, nx = (size_t)c.R * c.p.cols;
        real_t *g0, *g = grad_prefilled(nv, 7, &g0);
        BackendNeed need = {.nnz = c.p.nnz}; /* the scratch SDDMM sums in */
        ck_assert_int_eq(be->reserve(be, &need), PEFTC_OK);
        be->csr_sddmm(be, g, c.dy, c.x, c.p.row_ptr, c.p.col_idx, c.R, c.p.rows, c.p.cols, c.alpha);
        grad_unfill(g, g0, nv);
        gc(sp_loss, &c, c.values, g, nv, "csr_sddmm (d values)");
        free(g);
        g = grad_prefilled(nx, 8, &g0);
        be->csr_spmm_t(be, g, c.dy, c.p.row_ptr, c.p.col_idx, c.values, c.R, c.p.rows, c.p.cols, c.alpha);
        grad_unfill(g, g0, nx);
        gc(sp_loss, &c, c.x, g, nx, "csr_spmm_t (d x)");
        free(g);
        sp_free(&c);
    }
}
END_TEST

/* The merge W' = W + alpha S: d sum(G * W') / d values must be alpha G sampled at the pattern, which
 * is what the forward's gradient flows through when RoSA builds W' densely (sp_add). */
typedef struct {
    const CsrPattern *p;
    real_t *values, *W0, *W, *G; /* values (nnz); W0, W, G (rows,cols) */
    real_t alpha;
} AddCtx;

static double add_loss(void *p) {
    AddCtx *c = p;
    size_t n = (size_t)c->p->rows * c->p->cols;
    memcpy(c->W, c->W0, n * sizeof(real_t));
    be->csr_add_dense(be, c->W, c->p->row_ptr, c->p->col_idx, c->values, c->p->rows, c->p->cols, c->alpha);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)c->W[i] * (double)c->G[i];
    return s;
}

START_TEST(test_add_dense_grad) {
    SpCtx s = sp_make(7, 6, 1, 1, 90);
    size_t n = (size_t)s.p.rows * s.p.cols, nv = (size_t)s.p.nnz;
    AddCtx c = {&s.p, s.values, rrand(n, 1, -1, 1), rrand(n, 2, 0, 0), rrand(n, 3, -1, 1), (real_t)-1.7};
    real_t *g = rrand(nv, 4, 0, 0);
    for (int i = 0; i < s.p.rows; i++)
        for (int32_t j = s.p.row_ptr[i]; j < s.p.row_ptr[i + 1]; j++)
            g[j] = c.alpha * c.G[(size_t)i * s.p.cols + s.p.col_idx[j]];
    gc(add_loss, &c, s.values, g, nv, "csr_add_dense (d values)");
    free(g), free(c.W0), free(c.W), free(c.G);
    sp_free(&s);
}
END_TEST

static Suite *csr_grad_suite(void) {
    Suite *s = suite_create("grad_csr");
    TCase *tc = tcase_create("sparse");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_sparse_grads);
    tcase_add_test(tc, test_add_dense_grad);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return tu_run_suite(csr_grad_suite());
}
