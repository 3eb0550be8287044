/* ggml block formats. Layouts follow ggml-common.h: each block stores its scales as little-endian f16
 * and its quants packed as described above each kernel. Scales are applied in float, as ggml does, so
 * the values match ggml's (and the gguf Python package's) dequantization exactly. */
#include "core/formats/quant.h"

#include <math.h>
#include <string.h>

typedef struct {
    int type;
    const char *name;
    int block_elems;
    int block_bytes;
    int supported;
} TypeInfo;

/* Every type whose block size is known, so a file holding types we cannot dequantize still opens and
 * the loader can name the tensor it cannot read. */
static const TypeInfo types[] = {
    {0, "F32", 1, 4, 1},         {1, "F16", 1, 2, 1},        {2, "Q4_0", 32, 18, 1},
    {3, "Q4_1", 32, 20, 1},      {6, "Q5_0", 32, 22, 1},     {7, "Q5_1", 32, 24, 1},
    {8, "Q8_0", 32, 34, 1},      {10, "Q2_K", 256, 84, 0},   {11, "Q3_K", 256, 110, 0},
    {12, "Q4_K", 256, 144, 1},   {13, "Q5_K", 256, 176, 1},  {14, "Q6_K", 256, 210, 1},
    {15, "Q8_K", 256, 292, 0},   {16, "IQ2_XXS", 256, 66, 0}, {17, "IQ2_XS", 256, 74, 0},
    {18, "IQ3_XXS", 256, 98, 0}, {19, "IQ1_S", 256, 50, 0},  {20, "IQ4_NL", 32, 18, 0},
    {21, "IQ3_S", 256, 110, 0},  {22, "IQ2_S", 256, 82, 0},  {23, "IQ4_XS", 256, 136, 0},
    {24, "I8", 1, 1, 0},         {25, "I16", 1, 2, 0},       {26, "I32", 1, 4, 0},
    {27, "I64", 1, 8, 0},        {28, "F64", 1, 8, 0},       {29, "IQ1_M", 256, 56, 0},
    {30, "BF16", 1, 2, 1},       {34, "TQ1_0", 256, 54, 0},  {35, "TQ2_0", 256, 66, 0},
    {39, "MXFP4", 32, 17, 0},
};

static const TypeInfo *type_info(GgmlType t) {
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].type == (int)t) return &types[i];
    return NULL;
}

int ggml_block_elems(GgmlType t) {
    const TypeInfo *ti = type_info(t);
    return ti ? ti->block_elems : 0;
}

size_t ggml_block_bytes(GgmlType t) {
    const TypeInfo *ti = type_info(t);
    return ti ? (size_t)ti->block_bytes : 0;
}

int ggml_type_supported(GgmlType t) {
    const TypeInfo *ti = type_info(t);
    return ti && ti->supported;
}

size_t ggml_row_bytes(GgmlType t, int64_t n) {
    const TypeInfo *ti = type_info(t);
    return ti ? (size_t)(n / ti->block_elems) * (size_t)ti->block_bytes : 0;
}

const char *ggml_type_name(GgmlType t) {
    const TypeInfo *ti = type_info(t);
    return ti ? ti->name : "unknown";
}

/* ---- scalar conversions ---- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in float */
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

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

static float rd_f16(const uint8_t *p) { return f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

/* ---- block kernels: one block of src into y ---- */

/* f16 d, 16 bytes: element j is the low nibble of qs[j], element j+16 the high nibble; (q - 8) * d */
static void deq_q4_0(const uint8_t *b, real_t *y) {
    float d = rd_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (real_t)(d * (float)((qs[j] & 0xf) - 8));
        y[j + 16] = (real_t)(d * (float)((qs[j] >> 4) - 8));
    }
}

/* f16 d, f16 m, 16 bytes as Q4_0; q * d + m */
static void deq_q4_1(const uint8_t *b, real_t *y) {
    float d = rd_f16(b), m = rd_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (real_t)(d * (float)(qs[j] & 0xf) + m);
        y[j + 16] = (real_t)(d * (float)(qs[j] >> 4) + m);
    }
}

/* Q5: bit j of the little-endian u32 qh is the fifth bit of element j, nibbles as Q4. */
static void q5_quants(const uint8_t *qh_bytes, const uint8_t *qs, int q[32]) {
    uint32_t qh = (uint32_t)qh_bytes[0] | (uint32_t)qh_bytes[1] << 8 | (uint32_t)qh_bytes[2] << 16 |
                  (uint32_t)qh_bytes[3] << 24;
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4);
        q[j + 16] = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
    }
}

/* f16 d, u32 qh, 16 bytes; (q - 16) * d */
static void deq_q5_0(const uint8_t *b, real_t *y) {
    float d = rd_f16(b);
    int q[32];
    q5_quants(b + 2, b + 6, q);
    for (int j = 0; j < 32; j++) y[j] = (real_t)(d * (float)(q[j] - 16));
}

/* f16 d, f16 m, u32 qh, 16 bytes; q * d + m */
static void deq_q5_1(const uint8_t *b, real_t *y) {
    float d = rd_f16(b), m = rd_f16(b + 2);
    int q[32];
    q5_quants(b + 4, b + 8, q);
    for (int j = 0; j < 32; j++) y[j] = (real_t)(d * (float)q[j] + m);
}

/* f16 d, 32 int8; q * d */
static void deq_q8_0(const uint8_t *b, real_t *y) {
    float d = rd_f16(b);
    for (int j = 0; j < 32; j++) y[j] = (real_t)(d * (float)(int8_t)b[2 + j]);
}

/* The 12 scale bytes of Q4_K/Q5_K hold 8 six-bit scales and 8 six-bit mins: sub-blocks 0..3 in the
 * low 6 bits of bytes 0..3 (scales) and 4..7 (mins); sub-blocks 4..7 in the nibbles of bytes 8..11 with
 * their top two bits in the high bits of bytes 0..3 (scales) and 4..7 (mins). */
static void k_scale_min(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* f16 d, f16 dmin, 12 scale bytes, [Q5_K: 32 bytes qh,] 128 bytes qs. Sub-block j (32 elements) takes
 * the low (j even) or high (j odd) nibbles of qs[32*(j/2) ..]; Q5_K adds bit j of qh[l] as bit 4 of
 * element l of sub-block j. value = d*sc*q - dmin*min. */
static void deq_qk_45(const uint8_t *b, real_t *y, int five) {
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *sc_bytes = b + 4, *qh = b + 16, *qs = b + 16 + (five ? 32 : 0);
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        k_scale_min(sc_bytes, j, &sc, &mn);
        float dl = d * (float)sc, ml = dmin * (float)mn;
        const uint8_t *q = qs + 32 * (j / 2);
        int shift = (j & 1) * 4;
        for (int l = 0; l < 32; l++) {
            int v = (q[l] >> shift) & 0xf;
            if (five) v |= ((qh[l] >> j) & 1) << 4;
            y[32 * j + l] = (real_t)(dl * (float)v - ml);
        }
    }
}

static void deq_q4_k(const uint8_t *b, real_t *y) { deq_qk_45(b, y, 0); }
static void deq_q5_k(const uint8_t *b, real_t *y) { deq_qk_45(b, y, 1); }

/* 128 bytes ql, 64 bytes qh, 16 int8 scales, f16 d. Two halves of 128 elements; in half h, element
 * e = 32g + l (g 0..3) has low bits from ql[64h + e%64] (low nibble for e < 64, high otherwise) and
 * bits 4..5 from bits 2g..2g+1 of qh[32h + l]; value = d * scales[e/16 of the block] * (q - 32). */
static void deq_q6_k(const uint8_t *b, real_t *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *scales = (const int8_t *)(b + 192);
    float d = rd_f16(b + 208);
    for (int h = 0; h < 2; h++) {
        for (int e = 0; e < 128; e++) {
            int g = e / 32, l = e % 32;
            int lo = (ql[64 * h + e % 64] >> (e < 64 ? 0 : 4)) & 0xf;
            int hi = (qh[32 * h + l] >> (2 * g)) & 3;
            int idx = 128 * h + e;
            y[idx] = (real_t)(d * (float)scales[idx / 16] * (float)((lo | (hi << 4)) - 32));
        }
    }
}

static void deq_f16(const uint8_t *b, real_t *y) { *y = (real_t)rd_f16(b); }
static void deq_bf16(const uint8_t *b, real_t *y) { *y = (real_t)bf16_to_f32((uint16_t)(b[0] | (b[1] << 8))); }

typedef void (*BlockFn)(const uint8_t *b, real_t *y);

static BlockFn block_fn(GgmlType t) {
    switch ((int)t) {
    case GGML_F16: return deq_f16;
    case GGML_BF16: return deq_bf16;
    case GGML_Q4_0: return deq_q4_0;
    case GGML_Q4_1: return deq_q4_1;
    case GGML_Q5_0: return deq_q5_0;
    case GGML_Q5_1: return deq_q5_1;
    case GGML_Q8_0: return deq_q8_0;
    case GGML_Q4_K: return deq_q4_k;
    case GGML_Q5_K: return deq_q5_k;
    case GGML_Q6_K: return deq_q6_k;
    default: return NULL;
    }
}

void ggml_dequantize(GgmlType t, const void *src, real_t *out, int64_t n) {
    const uint8_t *s = src;
    if (t == GGML_F32) {
        for (int64_t i = 0; i < n; i++) {
            float v;
            memcpy(&v, s + 4 * i, sizeof v);
            out[i] = (real_t)v;
        }
        return;
    }
    BlockFn fn = block_fn(t);
    if (!fn) { /* callers check ggml_type_supported(); NaN makes a missed check visible at once */
        for (int64_t i = 0; i < n; i++) out[i] = (real_t)NAN;
        return;
    }
    int64_t be = ggml_block_elems(t);
    size_t bb = ggml_block_bytes(t);
    for (int64_t i = 0; i < n / be; i++) fn(s + (size_t)i * bb, out + i * be);
}
