/* SwiGLU, the LLaMA MLP gate: out = silu(gate) * up, and SiLU alone (Mamba's conv output). Purely
 * elementwise. */
#include "core/backend/cpu/cpu_ops.h"

void cpu_swiglu_fwd(const Backend *be, real_t *out, const real_t *gate, const real_t *up, size_t n) {
    /* out, gate, up (n); out may alias gate or up */
    (void)be;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        real_t g = gate[i];
        out[i] = g * cpu_sigmoid(g) * up[i];
    }
}

void cpu_swiglu_bwd(const Backend *be, real_t *dgate, real_t *dup, const real_t *dout, const real_t *gate,
                    const real_t *up, size_t n) {
    /* dgate, dup, dout, gate, up (n). silu'(g) = sig(g) * (1 + g * (1 - sig(g))). */
    (void)be;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        real_t g = gate[i], sg = cpu_sigmoid(g), d = dout[i];
        if (dgate) dgate[i] += d * up[i] * sg * ((real_t)1 + g * ((real_t)1 - sg));
        if (dup) dup[i] += d * g * sg;
    }
}

void cpu_silu_fwd(const Backend *be, real_t *out, const real_t *x, size_t n) {
    /* out, x (n); out may alias x */
    (void)be;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        real_t v = x[i];
        out[i] = v * cpu_sigmoid(v);
    }
}

void cpu_silu_bwd(const Backend *be, real_t *dx, const real_t *dout, const real_t *x, size_t n) {
    /* dx, dout, x (n). silu'(x) = s + x s (1 - s), s = sig(x). */
    (void)be;
    if (!dx) return;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        real_t v = x[i], s = cpu_sigmoid(v);
        dx[i] += dout[i] * (s + v * s * ((real_t)1 - s));
    }
}
