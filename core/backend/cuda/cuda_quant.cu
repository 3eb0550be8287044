/* A quantized base weight expanded on the GPU for one op, with the block arithmetic the CPU and the GGUF
 * loader use (core/base/ggml_blocks.h, core/base/nf4_blocks.h), so both backends multiply the same
 * values. Block types: one thread per 32-element group (a group shares its scales); F32/F16/BF16: one
 * thread per element; NF4: one thread per code byte (two values), so neighbouring threads read
 * neighbouring bytes and write neighbouring values. */
#include "core/backend/cuda/cuda_ops.h"

extern "C" {
#include "core/base/ggml_blocks.h"
#include "core/base/nf4_blocks.h"
}

static __global__ void dequant_groups_kernel(float *out, const uint8_t *blocks, GgmlType type, size_t row_bytes,
                                             int block_bytes, int groups_per_block, int groups_per_row, int cols,
                                             size_t n) {
    /* out (rows, cols); blocks (rows, row_bytes) bytes; n = rows * groups_per_row */
    GRID_STRIDE(i, n) {
        size_t r = i / (size_t)groups_per_row;
        int g = (int)(i % (size_t)groups_per_row);
        const uint8_t *b = blocks + r * row_bytes + (size_t)(g / groups_per_block) * block_bytes;
        ggml_group(type, b, g % groups_per_block, out + r * (size_t)cols + 32 * (size_t)g);
    }
}

static __global__ void dequant_elems_kernel(float *out, const uint8_t *blocks, GgmlType type, size_t n) {
    /* out (n); blocks (n) elements of one-element "blocks", rows contiguous; NaN for another type */
    GRID_STRIDE(i, n) out[i] = ggml_value_float(type, blocks, i);
}

static __global__ void dequant_nf4_kernel(float *out, const uint8_t *buf, int64_t n, size_t pairs) {
    /* out (n); buf nf4_bytes(n) bytes; pairs = (n + 1) / 2 */
    GRID_STRIDE(j, pairs) {
        float y[2];
        int64_t e = 2 * (int64_t)j;
        nf4_pair(buf, n, (int64_t)j, nf4_block_scale(buf, n, e / NF4_BLOCK), y);
        out[e] = y[0];
        if (e + 1 < n) out[e + 1] = y[1];
    }
}

void cuda_dequantize(const Backend *be, real_t *out, const void *blocks, GgmlType type, int rows, int cols) {
    CudaState *cu = cuda_enter(be);
    /* out (rows, cols); blocks (rows, ggml_row_bytes(type, cols)) bytes, device; NF4: nf4_bytes(rows * cols) */
    size_t n = (size_t)rows * (size_t)cols;
    if (!n) return;
    if (type == GGML_NF4) {
        size_t pairs = (n + 1) / 2;
        dequant_nf4_kernel<<<cuda_grid(pairs, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(
            out, (const uint8_t *)blocks, (int64_t)n, pairs);
        CUDA_CHECK_LAUNCH(cu, dequant_nf4_kernel);
        return;
    }
    int block_elems = ggml_block_elems(type);
    if (!ggml_type_supported(type) || block_elems == 1) {
        dequant_elems_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(out, (const uint8_t *)blocks,
                                                                                       type, n);
        CUDA_CHECK_LAUNCH(cu, dequant_elems_kernel);
        return;
    }
    if (cols % block_elems != 0) {
        CUDA_FAIL(cu, PEFTC_EINVAL, "dequantize: %d columns of %s are not a whole number of %d-element blocks",
                  cols, ggml_type_name(type), block_elems);
        return;
    }
    int per_block = block_elems / 32, per_row = cols / 32;
    size_t groups = (size_t)rows * (size_t)per_row;
    dequant_groups_kernel<<<cuda_grid(groups, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(
        out, (const uint8_t *)blocks, type, ggml_row_bytes(type, cols), (int)ggml_block_bytes(type), per_block,
        per_row, cols, groups);
    CUDA_CHECK_LAUNCH(cu, dequant_groups_kernel);
}
