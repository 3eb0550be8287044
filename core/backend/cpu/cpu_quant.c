/* A quantized base weight expanded for one op: rows in parallel, each row by the shared block code. */
#include "core/backend/cpu/cpu_ops.h"
#include "core/base/ggml_blocks.h"

void cpu_dequantize(const Backend *be, real_t *out, const void *blocks, GgmlType type, int rows, int cols) {
    (void)be;
    /* out (rows, cols); blocks (rows, ggml_row_bytes(type, cols)) bytes */
    size_t rb = ggml_row_bytes(type, cols);
    const uint8_t *b = blocks;
#pragma omp parallel for schedule(static) if ((size_t)rows * cols >= CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) ggml_dequantize(type, b + (size_t)r * rb, out + (size_t)r * cols, cols);
}
