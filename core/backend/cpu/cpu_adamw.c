/* AdamW on one span of the arena, in the precision of real_t. */
#include <math.h>

#include "core/backend/cpu/cpu_ops.h"

void cpu_adamw(const Backend *be, real_t *p, const real_t *g, real_t *m, real_t *v, size_t n, double lr, double wd,
               double beta1, double beta2, double eps_d, double bc1, double bc2) {
    (void)be;
    /* p, g, m, v (n). Written branch-free so the compiler vectorises it; the optimizer parallelises
     * over arena entries, so this runs on one thread. */
    const real_t b1 = (real_t)beta1, b2 = (real_t)beta2;
    const real_t step = (real_t)(lr / bc1), eps = (real_t)eps_d, rbc2 = (real_t)(1.0 / sqrt(bc2));
    const real_t decay = (real_t)(1.0 - lr * wd);
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        p[i] = p[i] * decay - step * m[i] / ((real_t)sqrt((double)v[i]) * rbc2 + eps);
    }
}
