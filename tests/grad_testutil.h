/* Helpers of the op-level finite-difference suites (grad_ops.c, grad_ssm.c; double build): random
 * buffers, gradient buffers that start non-zero so a backward must accumulate, and the checked
 * comparison against central differences. Each suite sets `be` before its tests run. */
#ifndef PEFTC_GRAD_TESTUTIL_H
#define PEFTC_GRAD_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend/backend.h"
#include "tests/testutil.h"

#ifndef PEFTC_REAL_DOUBLE
#error "the finite-difference suites are built against the double-precision library"
#endif

/* Central differences in double: truncation ~eps^2 and roundoff ~1e-16/eps are both far below TOL,
 * while a wrong factor or sign in a backward gives errors of order 1e-2 or more. */
#define FD_EPS 1e-5
#define FD_TOL 1e-7

static const Backend *be;

static inline real_t *rbuf(size_t n) {
    real_t *p = calloc(n ? n : 1, sizeof(real_t));
    ck_assert_ptr_nonnull(p);
    return p;
}

static inline real_t *rrand(size_t n, uint64_t key, double lo, double hi) {
    real_t *p = rbuf(n);
    tu_fill_uniform(p, n, key, lo, hi);
    return p;
}

static inline double dot(const real_t *a, const real_t *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

static inline double maxabs(const real_t *a, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

/* A gradient buffer pre-filled with random values: backwards must add to it. */
typedef struct {
    real_t *g;  /* (n) what the backward accumulates into */
    real_t *g0; /* (n) the pre-fill */
    size_t n;
} Grad;

static inline Grad grad_new(size_t n, uint64_t key) {
    Grad G = {rrand(n, key, -2, 2), rbuf(n), n};
    memcpy(G.g0, G.g, n * sizeof(real_t));
    return G;
}

/* Leaves only what the backward added. */
static inline real_t *grad_added(Grad *G) {
    for (size_t i = 0; i < G->n; i++) G->g[i] -= G->g0[i];
    return G->g;
}

static inline void grad_free(Grad *G) {
    free(G->g);
    free(G->g0);
}

/* Finite-difference check of g against f at up to max_probe entries of x spread over it (every entry
 * when n <= max_probe); returns the worst error. */
static inline double gc_probe(tu_loss_fn f, void *ctx, real_t *x, const real_t *g, size_t n, size_t max_probe,
                              const char *what) {
    ck_assert_msg(maxabs(g, n) > 1e-3, "%s: analytic gradient is (near) zero: the check is vacuous", what);
    double err = tu_gradcheck(f, ctx, x, g, n, FD_EPS, max_probe, what);
    printf("  gradcheck %-34s n=%-5zu worst err %.2e\n", what, n, err);
    fflush(stdout);
    ck_assert_msg(err < FD_TOL, "gradcheck %s: worst error %.3g >= %.1g", what, err, FD_TOL);
    return err;
}

/* The same at every entry of x (n is small in these tests). */
static inline void gc(tu_loss_fn f, void *ctx, real_t *x, const real_t *g, size_t n, const char *what) {
    gc_probe(f, ctx, x, g, n, n, what);
}

#endif
