/* bitsandbytes' NF4 with double quantization (what QLoRA keeps of a frozen base weight), read by the host
 * and by CUDA kernels alike, so both backends multiply the same values.
 *
 * A tensor of n values, flattened row-major as bitsandbytes flattens a weight (out, in), is one buffer:
 *   float offset               the mean of the first-level absmax values
 *   float absmax2[nb2]         per 256 first-level blocks, the absmax of their (absmax - offset)
 *   uint8 qabsmax[nb]          per 64-value block, (absmax - offset) / absmax2 as an index into the 8-bit
 *                              dynamic map
 *   uint8 codes[(n + 1) / 2]   an index into the 16 NF4 codes per value: value 2j in the high nibble of
 *                              byte j, value 2j+1 in the low one
 * with nb = ceil(n / 64) and nb2 = ceil(nb / 256); the floats come first so that they are aligned
 * wherever the buffer is. Value i is
 *   code[nibble] * (dynamic[qabsmax[i / 64]] * absmax2[i / 64 / 256] + offset),
 * each product and the sum rounded to float as bitsandbytes' dequantize_4bit rounds them (no fused
 * multiply-add: nf4_mul / nf4_add keep nvcc from contracting them). Blocks follow the flat order, so a
 * block may span rows and any n works: the last block (and the last 256-group) may be partial, and for
 * an odd n the low nibble of the last byte is padding. */
#ifndef PEFTC_NF4_BLOCKS_H
#define PEFTC_NF4_BLOCKS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/base/hd.h"

#define NF4_BLOCK 64   /* values per first-level absmax (bitsandbytes' blocksize) */
#define NF4_BLOCK2 256 /* first-level absmax values per second-level one */

/* bitsandbytes' get_4bit_type("nf4"): quantiles of a normal distribution scaled to [-1, 1], with an
 * exact 0. Each literal is a float exactly. */
#define NF4_CODE_VALUES                                                                                      \
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,         \
        -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,      \
        0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,               \
        0.7229568362236023f, 1.0f

/* The positive half of bitsandbytes' create_dynamic_map(signed=True), the 8-bit code of the second
 * level, as float32 computes it (torch's linspace and products): the map is these 127 values negated
 * in reverse order, then 0, then these, then 1.0 (tests/fixtures/gen_nf4.py checks it against
 * bitsandbytes, test_nf4 against the fixture). */
#define NF4_DYNAMIC_POSITIVE                                                                                 \
    5.5000004e-07f, 3.2500002e-06f, 7.75e-06f, 2.1249998e-05f, 4.375e-05f, 6.625e-05f, 8.875e-05f,           \
        0.00015625001f, 0.00026875004f, 0.00038125002f, 0.00049375003f, 0.0006062501f, 0.00071875006f,       \
        0.00083125f, 0.0009437501f, 0.0012812499f, 0.00184375f, 0.00240625f, 0.00296875f, 0.0035312497f,     \
        0.00409375f, 0.0046562497f, 0.0052187503f, 0.00578125f, 0.00634375f, 0.00690625f, 0.00746875f,      \
        0.00803125f, 0.00859375f, 0.009156249f, 0.00971875f, 0.01140625f, 0.01421875f, 0.01703125f,          \
        0.019843752f, 0.02265625f, 0.02546875f, 0.028281251f, 0.03109375f, 0.03390625f, 0.036718752f,        \
        0.03953125f, 0.042343747f, 0.04515625f, 0.04796875f, 0.05078125f, 0.05359375f, 0.05640625f,          \
        0.059218753f, 0.06203125f, 0.06484375f, 0.067656256f, 0.070468746f, 0.07328125f, 0.07609375f,        \
        0.07890625f, 0.08171876f, 0.08453125f, 0.08734375f, 0.09015625f, 0.092968754f, 0.09578126f,          \
        0.09859375f, 0.107031256f, 0.12109375f, 0.13515624f, 0.14921875f, 0.16328125f, 0.17734376f,          \
        0.19140625f, 0.20546874f, 0.21953125f, 0.23359375f, 0.24765624f, 0.26171875f, 0.27578127f,           \
        0.28984374f, 0.30390626f, 0.31796873f, 0.33203125f, 0.34609374f, 0.36015624f, 0.37421876f,           \
        0.38828123f, 0.40234375f, 0.41640624f, 0.43046874f, 0.44453126f, 0.45859373f, 0.47265625f,           \
        0.4867187f, 0.50078124f, 0.5148437f, 0.5289062f, 0.54296875f, 0.5570313f, 0.5710938f, 0.58515626f,  \
        0.5992187f, 0.61328125f, 0.6273438f, 0.6414063f, 0.65546876f, 0.6695312f, 0.68359375f, 0.6976563f,  \
        0.7117188f, 0.72578126f, 0.7398437f, 0.75390625f, 0.7679688f, 0.78203124f, 0.79609376f, 0.8101562f, \
        0.82421875f, 0.8382813f, 0.85234374f, 0.86640626f, 0.8804687f, 0.89453125f, 0.9085938f,             \
        0.92265624f, 0.93671876f, 0.9507812f, 0.96484375f, 0.9789063f, 0.99296874f

/* Device code reads its own copy of the tables from constant memory; host code reads these. */
static const float nf4_code_host[16] = {NF4_CODE_VALUES};
static const float nf4_dynamic_host[127] = {NF4_DYNAMIC_POSITIVE};
#ifdef __CUDACC__
static __constant__ float nf4_code_dev[16] = {NF4_CODE_VALUES};
static __constant__ float nf4_dynamic_dev[127] = {NF4_DYNAMIC_POSITIVE};
#endif

/* NF4 code c (0..15). */
static inline PEFTC_HD float nf4_code(int c) {
#ifdef __CUDA_ARCH__
    return nf4_code_dev[c];
#else
    return nf4_code_host[c];
#endif
}

/* Entry q (0..255) of the 8-bit dynamic map, sorted ascending: 127 negatives, 0 at 127, 1.0 at 255. */
static inline PEFTC_HD float nf4_dynamic(int q) {
    if (q == 255) return 1.0f;
    if (q == 127) return 0.0f;
#ifdef __CUDA_ARCH__
    return q > 127 ? nf4_dynamic_dev[q - 128] : -nf4_dynamic_dev[126 - q];
#else
    return q > 127 ? nf4_dynamic_host[q - 128] : -nf4_dynamic_host[126 - q];
#endif
}

/* a * b and a + b, each rounded once. */
static inline PEFTC_HD float nf4_mul(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

static inline PEFTC_HD float nf4_add(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

/* ---- the buffer of n values ---- */

static inline PEFTC_HD int64_t nf4_blocks(int64_t n) { return (n + NF4_BLOCK - 1) / NF4_BLOCK; }
static inline PEFTC_HD int64_t nf4_blocks2(int64_t n) { return (nf4_blocks(n) + NF4_BLOCK2 - 1) / NF4_BLOCK2; }

/* Byte offsets of the parts after the offset float (at 0) and absmax2 (at 4). */
static inline PEFTC_HD size_t nf4_qabsmax_at(int64_t n) { return 4 + 4 * (size_t)nf4_blocks2(n); }
static inline PEFTC_HD size_t nf4_codes_at(int64_t n) { return nf4_qabsmax_at(n) + (size_t)nf4_blocks(n); }
/* Bytes of the whole buffer. */
static inline PEFTC_HD size_t nf4_bytes(int64_t n) { return nf4_codes_at(n) + (size_t)(n + 1) / 2; }

/* The float at p, 4-aligned within the buffer. */
static inline PEFTC_HD float nf4_rd_f32(const uint8_t *p) {
#ifdef __CUDA_ARCH__
    return *(const float *)p;
#else
    float f;
    memcpy(&f, p, sizeof f);
    return f;
#endif
}

/* The dequantized absmax of first-level block b: what each of its codes is multiplied by. */
static inline PEFTC_HD float nf4_block_scale(const uint8_t *buf, int64_t n, int64_t b) {
    float offset = nf4_rd_f32(buf), absmax2 = nf4_rd_f32(buf + 4 + 4 * (size_t)(b / NF4_BLOCK2));
    return nf4_add(nf4_mul(nf4_dynamic(buf[nf4_qabsmax_at(n) + (size_t)b]), absmax2), offset);
}

/* Values 2j and 2j+1 (y[0], y[1]) from code byte j, both in a block of the given scale; when 2j+1 == n,
 * y[1] is the padding's and belongs to no value. */
static inline PEFTC_HD void nf4_pair(const uint8_t *buf, int64_t n, int64_t j, float scale, float *y) {
    uint8_t byte = buf[nf4_codes_at(n) + (size_t)j];
    y[0] = nf4_mul(nf4_code(byte >> 4), scale);
    y[1] = nf4_mul(nf4_code(byte & 15), scale);
}

#endif
