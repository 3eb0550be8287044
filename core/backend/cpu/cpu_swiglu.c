/* SwiGLU, the LLaMA MLP gate: out = silu(gate) * up. Purely elementwise. */
#include <tgmath.h> /* exp on real_t picks expf in the float build */

#include "core/backend/cpu/cpu_ops.h"

/* sigmoid(x) = 1 / (1 + e^-x); for very negative x, e^-x overflows to inf and the result is the
 * correct limit 0, so no branch is needed. */
static inline real_t sigmoid(real_t x) { return (real_t)1 / ((real_t)1 + exp(-x)); }

void cpu_swiglu_fwd(const Backend *be, real_t *out, const real_t *gate, const real_t *up, size_t n) {
    /* out, gate, up (n); out may alias gate or up */
    (void)be;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        real_t g = gate[i];
        out[i] = g * sigmoid(g) * up[i];
    }
}

void cpu_swiglu_bwd(const Backend *be, real_t *dgate, real_t *dup, const real_t *dout, const real_t *gate,
                    const real_t *up, size_t n) {
    /* dgate, dup, dout, gate, up (n). silu'(g) = sig(g) * (1 + g * (1 - sig(g))). */
    (void)be;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        real_t g = gate[i], sg = sigmoid(g), d = dout[i];
        if (dgate) dgate[i] += d * up[i] * sg * ((real_t)1 + g * ((real_t)1 - sg));
        if (dup) dup[i] += d * g * sg;
    }
}
