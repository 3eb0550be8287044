/* bfloat16 as stored bits (uint16_t): the top half of an IEEE float.
 *
 * Rounding is to nearest, ties to even, as PyTorch, oneDNN and CUDA's __float2bfloat16_rn round; NaN
 * stays a (quiet) NaN. Widening is exact. Shared by the file formats (safetensors, GGUF BF16 tensors)
 * and the bf16 compute path. */
#ifndef PEFTC_BF16_H
#define PEFTC_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* keep it a (quiet) NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* x rounded to the nearest bf16 value, as a float. */
static inline float bf16_round(float x) { return bf16_to_f32(f32_to_bf16(x)); }

#endif
