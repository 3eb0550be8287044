/* Dequantization of ggml block formats and conversion of 16-bit floats, row by row. */
#ifndef PEFTC_QUANT_H
#define PEFTC_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/bf16.h"
#include "core/formats/gguf.h"
#include "core/base/real.h"
#include "core/base/status.h"

/* Elements per block and bytes per block of a ggml type (1 and the element size for F32/F16/BF16);
 * 0 for a type number whose layout is unknown. Sizes are known for more types than can be dequantized
 * (Q2_K, Q3_K, IQ*, ...), so files holding them still open and the loader can name the tensor. */
int ggml_block_elems(GgmlType t);
size_t ggml_block_bytes(GgmlType t);
/* Whether ggml_dequantize supports t: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K. */
int ggml_type_supported(GgmlType t);
/* Bytes taken by n elements (n a multiple of the block size). */
size_t ggml_row_bytes(GgmlType t, int64_t n);

/* out[0..n) = the n values encoded at src; n must be a multiple of the block size. Values are computed
 * in float exactly as ggml computes them. An unsupported t fills out with NaN (check first). */
void ggml_dequantize(GgmlType t, const void *src, real_t *out, int64_t n);

/* f16 both ways (round to nearest even); bf16's pair is in core/base/bf16.h. */
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

#endif
