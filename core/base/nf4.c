#include "core/base/nf4.h"

#include <math.h>
#include <stdlib.h>

#define SCALE_FLOOR 1e-38f /* an all-zero block's absmax is taken as this, so its values stay 0 */

/* The 15 midpoints between consecutive NF4 codes, rounded to float: they equal the constants of
 * bitsandbytes' dQuantizeNF4. */
static void code_midpoints(float *mid) {
    for (int k = 0; k < 15; k++) mid[k] = (nf4_code(k) + nf4_code(k + 1)) * 0.5f;
}

/* Codes whose midpoint with the next one lies below x: every comparison made, so the loop vectorises. */
static int code_of(const float *mid, float x) {
    int c = 0;
    for (int k = 0; k < 15; k++) c += x > mid[k];
    return c;
}

static void dynamic_midpoints(float *mid) {
    for (int k = 0; k < 255; k++) mid[k] = (nf4_dynamic(k) + nf4_dynamic(k + 1)) * 0.5f;
}

/* The first entry whose midpoint with the next is >= x; on a midpoint, the even one of its two entries,
 * which is where the CUDA kernel's search (pivot 127, steps 64 .. 1, always even) stops. */
static int dynamic_of(const float *mid, float x) {
    int lo = 0, hi = 255;
    while (lo < hi) {
        int m = (lo + hi) / 2;
        if (mid[m] < x) lo = m + 1;
        else hi = m;
    }
    return lo < 255 && mid[lo] == x ? lo + (lo & 1) : lo;
}

int nf4_nearest_code(float x) {
    float mid[15];
    code_midpoints(mid);
    return code_of(mid, x);
}

int nf4_nearest_dynamic(float x) {
    float mid[255];
    dynamic_midpoints(mid);
    return dynamic_of(mid, x);
}

/* absmax (nb) of each 64-value block; NaN for a block holding a value that is not finite. */
static void block_absmax(const real_t *w, int64_t n, float *absmax) {
    int64_t nb = nf4_blocks(n);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        int64_t end = b * NF4_BLOCK + NF4_BLOCK < n ? b * NF4_BLOCK + NF4_BLOCK : n;
        float m = 0;
        int finite = 1;
        for (int64_t i = b * NF4_BLOCK; i < end; i++) {
            float a = fabsf((float)w[i]);
            finite &= isfinite(a) != 0;
            m = a > m ? a : m;
        }
        absmax[b] = finite ? m : NAN;
    }
}

static PeftcStatus refuse_nonfinite(const real_t *w, int64_t n, const float *absmax, const char *what) {
    for (int64_t b = 0; b < nf4_blocks(n); b++) {
        if (!isnan(absmax[b])) continue;
        for (int64_t i = b * NF4_BLOCK; i < n; i++)
            if (!isfinite((float)w[i]))
                return PEFTC_ERR(PEFTC_EFORMAT, "%s: value %lld (row-major) is %g; NF4 holds finite values only",
                                 what, (long long)i, (double)w[i]);
    }
    return PEFTC_OK;
}

/* The code bytes of every block: two values a byte, the first in the high nibble; the pad of an odd n
 * is the code of 0, as bitsandbytes pads. */
static void encode_codes(const real_t *w, int64_t n, const float *absmax, uint8_t *codes) {
    float mid[15];
    code_midpoints(mid);
    int64_t nb = nf4_blocks(n);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        float inv = 1.0f / fmaxf(absmax[b], SCALE_FLOOR);
        int64_t end = b * NF4_BLOCK + NF4_BLOCK < n ? b * NF4_BLOCK + NF4_BLOCK : n;
        for (int64_t i = b * NF4_BLOCK; i < end; i += 2) {
            int hi = code_of(mid, (float)w[i] * inv);
            int lo = code_of(mid, i + 1 < n ? (float)w[i + 1] * inv : 0.0f);
            codes[i / 2] = (uint8_t)((hi << 4) | lo);
        }
    }
}

/* The second level: the offset, then per group of 256 blocks absmax2 and each block's qabsmax. */
static void encode_absmax(const float *absmax, int64_t n, uint8_t *buf) {
    int64_t nb = nf4_blocks(n), ng = nf4_blocks2(n);
    double sum = 0;
    for (int64_t b = 0; b < nb; b++) sum += absmax[b];
    float offset = nb ? (float)(sum / (double)nb) : 0.0f;
    memcpy(buf, &offset, sizeof offset);
    float mid[255];
    dynamic_midpoints(mid);
    uint8_t *qabsmax = buf + nf4_qabsmax_at(n);
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < ng; g++) {
        int64_t b0 = g * NF4_BLOCK2, b1 = b0 + NF4_BLOCK2 < nb ? b0 + NF4_BLOCK2 : nb;
        float a2 = 0;
        for (int64_t b = b0; b < b1; b++) a2 = fmaxf(a2, fabsf(absmax[b] - offset));
        float inv = 1.0f / fmaxf(a2, SCALE_FLOOR);
        for (int64_t b = b0; b < b1; b++) qabsmax[b] = (uint8_t)dynamic_of(mid, (absmax[b] - offset) * inv);
        memcpy(buf + 4 + 4 * (size_t)g, &a2, sizeof a2);
    }
}

PeftcStatus nf4_quantize(const real_t *w, int64_t n, uint8_t *buf, const char *what) {
    int64_t nb = nf4_blocks(n);
    float *absmax = malloc((size_t)(nb ? nb : 1) * sizeof *absmax); /* (nb) */
    if (!absmax) return PEFTC_ERR(PEFTC_ENOMEM, "%s: no memory for %lld block maxima", what, (long long)nb);
    block_absmax(w, n, absmax);
    PeftcStatus st = refuse_nonfinite(w, n, absmax, what);
    if (st == PEFTC_OK) {
        encode_codes(w, n, absmax, buf + nf4_codes_at(n));
        encode_absmax(absmax, n, buf);
    }
    free(absmax);
    return st;
}

void nf4_dequantize_blocks(const uint8_t *buf, int64_t n, int64_t b0, int64_t b1, real_t *out) {
    for (int64_t b = b0; b < b1; b++) {
        float scale = nf4_block_scale(buf, n, b), y[2];
        int64_t end = b * NF4_BLOCK + NF4_BLOCK < n ? b * NF4_BLOCK + NF4_BLOCK : n;
        for (int64_t i = b * NF4_BLOCK; i < end; i += 2) {
            nf4_pair(buf, n, i / 2, scale, y);
            out[i - b0 * NF4_BLOCK] = (real_t)y[0];
            if (i + 1 < end) out[i + 1 - b0 * NF4_BLOCK] = (real_t)y[1];
        }
    }
}
