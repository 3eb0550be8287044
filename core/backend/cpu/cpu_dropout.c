/* Inverted dropout with counter-based masks: element (r,c) is dropped iff the c-th 32-bit draw of row
 * r's stream is below p * 2^32, so a row's mask is a pure function of its key, whatever the batch
 * layout, rank or thread count. Each 64-bit splitmix draw serves two elements: masks are recomputed in
 * backward, and per-element hashing cost more than the adapter's matmuls. */
#include <string.h>

#include "core/backend/cpu/cpu_ops.h"
#include "core/base/rng.h"

/* 1/(1-p) for kept values; p >= 1 drops everything, and the zero avoids an inf * 0 = NaN. */
static real_t keep_scale(real_t p) { return p < (real_t)1 ? (real_t)1 / ((real_t)1 - p) : (real_t)0; }

void cpu_dropout_fwd(const Backend *be, real_t *out, uint8_t *mask, const real_t *inp, const uint64_t *row_keys,
                     int R, int C, real_t p) {
    /* out (R,C), mask (R,C), inp (R,C), row_keys (R) */
    (void)be;
    size_t n = (size_t)R * C;
    if (p <= 0) {
        if (out != inp) memcpy(out, inp, n * sizeof(real_t));
        memset(mask, 1, n);
        return;
    }
    /* The threshold comes from (float)p so the float and double builds draw the same masks. */
    uint64_t thr = (uint64_t)((double)(float)p * 4294967296.0);
    real_t s = keep_scale(p);
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (int r = 0; r < R; r++) {
        size_t o = (size_t)r * C;
        uint64_t bits = 0;
        for (int c = 0; c < C; c++) {
            if (!(c & 1)) bits = rng_stream_u64(row_keys[r], (uint64_t)c >> 1);
            uint8_t keep = (bits & 0xFFFFFFFFu) >= thr;
            bits >>= 32;
            mask[o + c] = keep;
            out[o + c] = keep ? inp[o + c] * s : 0;
        }
    }
}

void cpu_dropout_bwd(const Backend *be, real_t *dinp, const real_t *dout, const uint8_t *mask, int R, int C,
                     real_t p) {
    /* dinp (R,C), dout (R,C), mask (R,C) */
    (void)be;
    if (!dinp) return;
    size_t n = (size_t)R * C;
    real_t s = p <= 0 ? (real_t)1 : keep_scale(p);
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        if (mask[i]) dinp[i] += dout[i] * s;
}
