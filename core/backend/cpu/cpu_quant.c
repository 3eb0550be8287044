/* A quantized base weight expanded for one op: ggml types rows in parallel, each row by the shared block
 * code; NF4 (whose blocks run over the flattened tensor) blocks in parallel. */
#include "core/backend/cpu/cpu_ops.h"
#include "core/base/ggml_blocks.h"
#include "core/base/nf4.h"

/* Tasks of CHUNK blocks (4096 values): each long enough to pay for handing it to a thread. */
static void dequantize_nf4(real_t *out, const uint8_t *buf, int64_t n) {
    /* out (n); buf nf4_bytes(n) bytes */
    enum { CHUNK = 64 };
    int64_t nb = nf4_blocks(n), tasks = (nb + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t b0 = t * CHUNK, b1 = b0 + CHUNK < nb ? b0 + CHUNK : nb;
        nf4_dequantize_blocks(buf, n, b0, b1, out + b0 * NF4_BLOCK);
    }
}

void cpu_dequantize(const Backend *be, real_t *out, const void *blocks, GgmlType type, int rows, int cols) {
    (void)be;
    if (type == GGML_NF4) {
        dequantize_nf4(out, blocks, (int64_t)rows * cols);
        return;
    }
    /* out (rows, cols); blocks (rows, ggml_row_bytes(type, cols)) bytes */
    size_t rb = ggml_row_bytes(type, cols);
    const uint8_t *b = blocks;
#pragma omp parallel for schedule(static) if ((size_t)rows * cols >= CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) ggml_dequantize(type, b + (size_t)r * rb, out + (size_t)r * cols, cols);
}
