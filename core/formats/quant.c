/* f16 conversions (IEEE binary16 both ways). */
#include "core/formats/quant.h"

#include <string.h>

#include "core/base/ggml_blocks.h"

/* ---- scalar conversions ---- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

float f16_to_f32(uint16_t h) { return ggml_f16_value(h); }

/* Rounds q + rem/2^shift to the nearest integer, ties to even. */
static uint32_t round_shift(uint32_t m, int shift) {
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

uint16_t f32_to_f16(float f) {
    uint32_t x = f32_bits(f), sign = (x >> 16) & 0x8000, ax = x & 0x7fffffff;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff)); /* NaN stays NaN */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);                      /* rounds past 65504 */
    uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
    if (e < 113) { /* below 2^-14: a half subnormal, value / 2^-24 rounded */
        int shift = 126 - (int)e;
        if (e == 0 || shift > 25) return (uint16_t)sign;
        return (uint16_t)(sign | round_shift(m, shift)); /* 0x400 when it rounds up to the smallest normal */
    }
    /* The rounding carry may run into the exponent, which is the correct encoding. */
    return (uint16_t)(sign | round_shift(((e - 112) << 23) | (ax & 0x7fffff), 13));
}

/* ---- blocks ---- */
