/* A frozen base weight kept quantized (QLoRA / QRoSA) in backend memory, expanded by the backend's
 * dequantize op only for the one linear op that needs it: either a GGUF file's ggml blocks, rows x cols
 * values as the file stores them with Q/K rows already in HF order, or NF4 (core/base/nf4_blocks.h), an
 * HF weight quantized at load over its flattened (out, in) values. */
#ifndef PEFTC_QWEIGHT_H
#define PEFTC_QWEIGHT_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend/backend.h"
#include "core/base/ggml_types.h"
#include "core/base/status.h"

typedef struct {
    GgmlType type;   /* any type ggml_type_supported() accepts, F32/F16/BF16 included, or GGML_NF4 */
    int rows, cols;  /* the HF (out, in); for a ggml type cols is a whole number of blocks, so rows are
                        independent; NF4 takes any size */
    uint8_t *blocks; /* (rows, ggml_row_bytes(type, cols)) bytes, or NF4's nf4_bytes(rows * cols), of
                        backend memory owned here */
    size_t nbytes;
} QWeight;

/* Allocates room for rows x cols of `type` on be; errors name `what` (the tensor). */
PeftcStatus qweight_alloc(QWeight *q, const Backend *be, GgmlType type, int rows, int cols, const char *what);
void qweight_free(QWeight *q, const Backend *be);
/* Bytes of one row of blocks (ggml types; NF4's blocks do not follow rows). */
size_t qweight_row_bytes(const QWeight *q);
/* out (rows, cols) backend memory = the dense values (the backend's dequantize op). */
void qweight_expand(const QWeight *q, const Backend *be, real_t *out);

#endif
