/* Helpers shared by the test suites. */
#ifndef PEFTC_TESTUTIL_H
#define PEFTC_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/base/real.h"
#include "core/base/rng.h"

/* Fills x(n) with uniform values in [lo, hi) from stream `key`. */
static inline void tu_fill_uniform(real_t *x, size_t n, uint64_t key, double lo, double hi) {
    for (size_t i = 0; i < n; i++) x[i] = (real_t)(lo + (hi - lo) * rng_uniform(key, i));
}

/* A scalar function of the current contents of some buffer, for finite differences. */
typedef double (*tu_loss_fn)(void *ctx);

/* Compares analytic gradient g(n) of f with respect to x(n) against central differences with step
 * eps, at up to max_probe entries spread over x. Returns the worst error measured as
 * |g - fd| / max(1, |g|, |fd|) and prints the worst entry. x is restored afterwards. */
static inline double tu_gradcheck(tu_loss_fn f, void *ctx, real_t *x, const real_t *g, size_t n, double eps,
                                  size_t max_probe, const char *what) {
    size_t stride = n > max_probe ? n / max_probe : 1;
    double worst = 0.0;
    size_t worst_i = 0;
    double worst_g = 0, worst_fd = 0;
    for (size_t i = 0; i < n; i += stride) {
        real_t saved = x[i];
        x[i] = saved + (real_t)eps;
        double fp = f(ctx);
        x[i] = saved - (real_t)eps;
        double fm = f(ctx);
        x[i] = saved;
        double fd = (fp - fm) / (2 * eps);
        double scale = fmax(1.0, fmax(fabs(fd), fabs((double)g[i])));
        double err = fabs(fd - (double)g[i]) / scale;
        if (err > worst) {
            worst = err;
            worst_i = i;
            worst_g = g[i];
            worst_fd = fd;
        }
    }
    if (worst > 1e-6)
        fprintf(stderr, "gradcheck %s: worst at %zu: analytic %.10g, numeric %.10g (err %.3g)\n", what, worst_i,
                worst_g, worst_fd, worst);
    return worst;
}

/* Runs a suite with Check's normal report and returns the process exit code. */
static inline int tu_run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
