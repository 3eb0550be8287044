/* The stable softmax both attention and cross-entropy use. */
#include <tgmath.h> /* exp/log on real_t pick the float versions in the float build */

#include "core/backend/cpu/cpu_ops.h"

double cpu_softmax(real_t *p, const real_t *x, int n) {
    /* p, x (n); p may be x. Max-subtracted so large inputs cannot overflow; summed in double because
     * a 50k-entry row of float exponentials would otherwise lose its small terms. */
    real_t mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        p[i] = exp(x[i] - mx);
        sum += (double)p[i];
    }
    real_t inv = (real_t)(1.0 / sum);
    for (int i = 0; i < n; i++) p[i] *= inv;
    return (double)mx + log(sum);
}
