/* Inverted dropout with counter-based masks: element (r,c) is dropped iff uniform(row_keys[r], c) < p,
 * so a row's mask is a pure function of its key, whatever the batch layout, rank or thread count. */
#include <string.h>

#include "core/cpu/cpu_ops.h"
#include "core/rng.h"

/* 1/(1-p) for kept values; p >= 1 drops everything, and the zero avoids an inf * 0 = NaN. */
static real_t keep_scale(real_t p) { return p < (real_t)1 ? (real_t)1 / ((real_t)1 - p) : (real_t)0; }

void cpu_dropout_fwd(real_t *out, uint8_t *mask, const real_t *inp, const uint64_t *row_keys, int R, int C,
                     real_t p) {
    /* out (R,C), mask (R,C), inp (R,C), row_keys (R) */
    size_t n = (size_t)R * C;
    if (p <= 0) {
        if (out != inp) memcpy(out, inp, n * sizeof(real_t));
        memset(mask, 1, n);
        return;
    }
    /* Compare in float, where the 24-bit uniforms live: (float)p splits them exactly as p does, so the
     * float and double builds draw the same masks. */
    float pf = (float)p;
    real_t s = keep_scale(p);
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (int r = 0; r < R; r++) {
        size_t o = (size_t)r * C;
        for (int c = 0; c < C; c++) {
            uint8_t keep = rng_uniformf(row_keys[r], (uint64_t)c) >= pf;
            mask[o + c] = keep;
            out[o + c] = keep ? inp[o + c] * s : 0;
        }
    }
}

void cpu_dropout_bwd(real_t *dinp, const real_t *dout, const uint8_t *mask, int R, int C, real_t p) {
    /* dinp (R,C), dout (R,C), mask (R,C) */
    if (!dinp) return;
    size_t n = (size_t)R * C;
    real_t s = p <= 0 ? (real_t)1 : keep_scale(p);
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        if (mask[i]) dinp[i] += dout[i] * s;
}
