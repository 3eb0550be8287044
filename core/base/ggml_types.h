/* ggml tensor types: their numbers (ggml's own), names and block layouts. Kept beneath the file formats
 * because the backends expand blocks too (core/base/ggml_blocks.h holds the values' arithmetic). */
#ifndef PEFTC_GGML_TYPES_H
#define PEFTC_GGML_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q5_1 = 7,
    GGML_Q8_0 = 8, GGML_Q8_1 = 9, GGML_Q2_K = 10, GGML_Q3_K = 11, GGML_Q4_K = 12, GGML_Q5_K = 13,
    GGML_Q6_K = 14, GGML_Q8_K = 15, GGML_BF16 = 30,
    /* Not a ggml type: peftc's own number for bitsandbytes' NF4 with double quantization, laid out over a
     * whole tensor (core/base/nf4_blocks.h), which only a QWeight holds. No GGUF file may declare it:
     * the functions below treat it as unknown, but for its name. */
    GGML_NF4 = 1000
} GgmlType;

/* Elements per block and bytes per block of a ggml type (1 and the element size for F32/F16/BF16);
 * 0 for a type number whose layout is unknown. Sizes are known for more types than can be dequantized
 * (Q2_K, Q3_K, IQ*, ...), so files holding them still open and the loader can name the tensor. */
int ggml_block_elems(GgmlType t);
size_t ggml_block_bytes(GgmlType t);
/* Whether the values of t can be computed (ggml_blocks.h): F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K
 * Q5_K Q6_K. */
int ggml_type_supported(GgmlType t);
/* Bytes taken by n elements (n a multiple of the block size). */
size_t ggml_row_bytes(GgmlType t, int64_t n);
/* "Q4_0", ..., "NF4"; "unknown" for a number not in the table. */
const char *ggml_type_name(GgmlType t);

#endif
