/* The values held in ggml blocks, for the host and for CUDA kernels alike (the
 * GPU expands a quantized base with the same arithmetic the CPU and the GGUF loader use).
 *
 * Layouts follow ggml-common.h: each block stores its scales as little-endian f16 and its quants packed
 * as described above each function. Scales are applied in float in ggml's order, so the values match
 * ggml's (and the gguf Python package's) dequantization. */
#ifndef PEFTC_GGML_BLOCKS_H
#define PEFTC_GGML_BLOCKS_H

#include <stdint.h>
#include <string.h>

#include "core/base/ggml_types.h"
#include "core/base/hd.h"
#include "core/base/real.h"

static inline PEFTC_HD float ggml_bits_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

static inline PEFTC_HD float ggml_f16_value(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return ggml_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in float */
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    return ggml_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

static inline PEFTC_HD float ggml_rd_f16(const uint8_t *p) { return ggml_f16_value((uint16_t)(p[0] | (p[1] << 8))); }

static inline PEFTC_HD float ggml_value_f32(const uint8_t *b, size_t e) {
    const uint8_t *p = b + 4 * e;
    return ggml_bits_f32((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

static inline PEFTC_HD float ggml_value_f16(const uint8_t *b, size_t e) { return ggml_rd_f16(b + 2 * e); }

static inline PEFTC_HD float ggml_value_bf16(const uint8_t *b, size_t e) {
    return ggml_bits_f32((uint32_t)(b[2 * e] | (b[2 * e + 1] << 8)) << 16);
}

/* ---- quantized blocks, 32 elements at a time ----
 * ggml_group_<type>(b, k, y): y[0..32) = elements 32k .. 32k+31 of the block at b, k < elements / 32.
 * 32 is every block type's sub-block: on the host a loop over k specialises per type, on the GPU one
 * thread expands one group. */

/* f16 d, 16 bytes: element j is the low nibble of qs[j], element j+16 the high nibble; (q - 8) * d */
static inline PEFTC_HD void ggml_group_q4_0(const uint8_t *b, int k, real_t *y) {
    (void)k;
    float d = ggml_rd_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (real_t)(d * (float)((qs[j] & 0xf) - 8));
        y[j + 16] = (real_t)(d * (float)((qs[j] >> 4) - 8));
    }
}

/* f16 d, f16 m, 16 bytes as Q4_0; q * d + m */
static inline PEFTC_HD void ggml_group_q4_1(const uint8_t *b, int k, real_t *y) {
    (void)k;
    float d = ggml_rd_f16(b), m = ggml_rd_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (real_t)(d * (float)(qs[j] & 0xf) + m);
        y[j + 16] = (real_t)(d * (float)(qs[j] >> 4) + m);
    }
}

/* Q5: bit j of the little-endian u32 at qh is the fifth bit of element j, nibbles as Q4. */
static inline PEFTC_HD void ggml_q5_quants(const uint8_t *qh_bytes, const uint8_t *qs, int q[32]) {
    uint32_t qh = (uint32_t)qh_bytes[0] | (uint32_t)qh_bytes[1] << 8 | (uint32_t)qh_bytes[2] << 16 |
                  (uint32_t)qh_bytes[3] << 24;
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4);
        q[j + 16] = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
    }
}

/* f16 d, u32 qh, 16 bytes; (q - 16) * d */
static inline PEFTC_HD void ggml_group_q5_0(const uint8_t *b, int k, real_t *y) {
    (void)k;
    float d = ggml_rd_f16(b);
    int q[32];
    ggml_q5_quants(b + 2, b + 6, q);
    for (int j = 0; j < 32; j++) y[j] = (real_t)(d * (float)(q[j] - 16));
}

/* f16 d, f16 m, u32 qh, 16 bytes; q * d + m */
static inline PEFTC_HD void ggml_group_q5_1(const uint8_t *b, int k, real_t *y) {
    (void)k;
    float d = ggml_rd_f16(b), m = ggml_rd_f16(b + 2);
    int q[32];
    ggml_q5_quants(b + 4, b + 8, q);
    for (int j = 0; j < 32; j++) y[j] = (real_t)(d * (float)q[j] + m);
}

/* f16 d, 32 int8; q * d */
static inline PEFTC_HD void ggml_group_q8_0(const uint8_t *b, int k, real_t *y) {
    (void)k;
    float d = ggml_rd_f16(b);
    for (int j = 0; j < 32; j++) y[j] = (real_t)(d * (float)(int8_t)b[2 + j]);
}

/* Q4_K/Q5_K: f16 d, f16 dmin, 12 scale bytes, [Q5_K: 32 bytes qh,] 128 bytes qs. The scale bytes hold 8
 * six-bit scales and 8 six-bit mins: sub-blocks 0..3 in the low 6 bits of bytes 0..3 (scales) and 4..7
 * (mins); sub-blocks 4..7 in the nibbles of bytes 8..11 with their top two bits in the high bits of
 * bytes 0..3 (scales) and 4..7 (mins). Sub-block k takes the low (k even) or high (k odd) nibbles of
 * qs[32*(k/2) ..]; Q5_K adds bit k of qh[l] as bit 4 of its element l. value = d*sc*q - dmin*min. */
static inline PEFTC_HD void ggml_group_qk_45(const uint8_t *b, int k, real_t *y, int five) {
    const uint8_t *s = b + 4, *qh = b + 16, *qs = b + 16 + (five ? 32 : 0) + 32 * (k / 2);
    int sc, mn;
    if (k < 4) {
        sc = s[k] & 63;
        mn = s[k + 4] & 63;
    } else {
        sc = (s[k + 4] & 0xf) | ((s[k - 4] >> 6) << 4);
        mn = (s[k + 4] >> 4) | ((s[k] >> 6) << 4);
    }
    float dl = ggml_rd_f16(b) * (float)sc, ml = ggml_rd_f16(b + 2) * (float)mn;
    int shift = (k & 1) * 4;
    for (int l = 0; l < 32; l++) {
        int v = (qs[l] >> shift) & 0xf;
        if (five) v |= ((qh[l] >> k) & 1) << 4;
        y[l] = (real_t)(dl * (float)v - ml);
    }
}

static inline PEFTC_HD void ggml_group_q4_k(const uint8_t *b, int k, real_t *y) { ggml_group_qk_45(b, k, y, 0); }
static inline PEFTC_HD void ggml_group_q5_k(const uint8_t *b, int k, real_t *y) { ggml_group_qk_45(b, k, y, 1); }

/* Q6_K: 128 bytes ql, 64 bytes qh, 16 int8 scales, f16 d. Two halves of 128 elements; in half h, element
 * e = 32g + l (g 0..3) has its low bits from ql[64h + e%64] (low nibble for e < 64, high otherwise) and
 * bits 4..5 from bits 2g..2g+1 of qh[32h + l]; value = d * scales[(128h + e)/16] * (q - 32). Group k is
 * half k/4, g = k%4. */
static inline PEFTC_HD void ggml_group_q6_k(const uint8_t *b, int k, real_t *y) {
    int h = k / 4, g = k % 4;
    const uint8_t *ql = b + 64 * h + 32 * (g & 1), *qh = b + 128 + 32 * h;
    const int8_t *scales = (const int8_t *)(b + 192);
    float d = ggml_rd_f16(b + 208);
    int shift = g < 2 ? 0 : 4;
    for (int l = 0; l < 32; l++) {
        int lo = (ql[l] >> shift) & 0xf, hi = (qh[l] >> (2 * g)) & 3;
        y[l] = (real_t)(d * (float)scales[(32 * k + l) / 16] * (float)((lo | (hi << 4)) - 32));
    }
}

/* The group function of a quantized block type (block size 32 or 256), or one that fills NaN for any
 * other type, so that a missed ggml_type_supported() check shows at once. */
static inline PEFTC_HD void ggml_group(GgmlType t, const uint8_t *b, int k, real_t *y) {
    switch ((int)t) {
    case GGML_Q4_0: ggml_group_q4_0(b, k, y); break;
    case GGML_Q4_1: ggml_group_q4_1(b, k, y); break;
    case GGML_Q5_0: ggml_group_q5_0(b, k, y); break;
    case GGML_Q5_1: ggml_group_q5_1(b, k, y); break;
    case GGML_Q8_0: ggml_group_q8_0(b, k, y); break;
    case GGML_Q4_K: ggml_group_q4_k(b, k, y); break;
    case GGML_Q5_K: ggml_group_q5_k(b, k, y); break;
    case GGML_Q6_K: ggml_group_q6_k(b, k, y); break;
    default:
        for (int l = 0; l < 32; l++) y[l] = (real_t)ggml_bits_f32(0x7fc00000u);
    }
}

/* Element e of an F32/F16/BF16 "block" (one element each) at b, or NaN for another type. */
static inline PEFTC_HD float ggml_value_float(GgmlType t, const uint8_t *b, size_t e) {
    switch ((int)t) {
    case GGML_F32: return ggml_value_f32(b, e);
    case GGML_F16: return ggml_value_f16(b, e);
    case GGML_BF16: return ggml_value_bf16(b, e);
    default: return ggml_bits_f32(0x7fc00000u);
    }
}

/* out[0..n) = the n values encoded at src (host memory); n must be a multiple of the block size. An
 * unsupported t fills out with NaN (check ggml_type_supported() first). */
void ggml_dequantize(GgmlType t, const void *src, real_t *out, int64_t n);

#endif
