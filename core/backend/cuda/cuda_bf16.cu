/* bf16 on the GPU: matmul_bf16 on the tensor cores through cublasGemmEx (bf16 inputs, fp32 compute and
 * output), the conversions both ways, and the embedding lookup from a bf16 table.
 *
 * A real_t operand is rounded into a bf16 scratch slot first (round to nearest even, as the CPU and
 * PyTorch round), so both backends multiply the same bf16 values; only the order of the fp32 sums
 * differs. */
#include <cuda_bf16.h>

#include "core/backend/cuda/cuda_ops.h"

static __global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t n) {
    /* dst (n), src (n) */
    GRID_STRIDE(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

void cuda_to_bf16(const Backend *be, uint16_t *dst, const real_t *src, size_t n) {
    CudaState *cu = cuda_enter(be);
    if (!n) return;
    to_bf16_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>((__nv_bfloat16 *)dst, src, n);
    CUDA_CHECK_LAUNCH(cu, to_bf16_kernel);
}

static __global__ void from_bf16_kernel(float *dst, const __nv_bfloat16 *src, size_t n) {
    /* dst (n), src (n) */
    GRID_STRIDE(i, n) dst[i] = __bfloat162float(src[i]);
}

void cuda_from_bf16(const Backend *be, real_t *dst, const uint16_t *src, size_t n) {
    CudaState *cu = cuda_enter(be);
    if (!n) return;
    from_bf16_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(dst, (const __nv_bfloat16 *)src, n);
    CUDA_CHECK_LAUNCH(cu, from_bf16_kernel);
}

static __global__ void embedding_fwd_bf16_kernel(float *out, const int32_t *tokens, const __nv_bfloat16 *wte,
                                                 size_t n, int C) {
    /* out (n/C,C), tokens (n/C), wte (V,C) */
    GRID_STRIDE(i, n) {
        size_t r = i / (size_t)C, c = i % (size_t)C;
        out[i] = __bfloat162float(wte[(size_t)tokens[r] * C + c]);
    }
}

void cuda_embedding_fwd_bf16(const Backend *be, real_t *out, const int32_t *tokens, const uint16_t *wte, int BT,
                             int C) {
    CudaState *cu = cuda_enter(be);
    /* tokens is host memory */
    size_t n = (size_t)BT * C;
    if (!n) return;
    const int32_t *tok = cuda_stage_tokens(cu, tokens, BT, "embedding_fwd_bf16");
    if (!tok) return;
    embedding_fwd_bf16_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(
        out, tok, (const __nv_bfloat16 *)wte, n, C);
    CUDA_CHECK_LAUNCH(cu, embedding_fwd_bf16_kernel);
}

/* p as bf16: itself, or rounded into scratch `slot`. NULL (error recorded) when the scratch fails. */
static const void *as_bf16(const Backend *be, CudaState *cu, const void *p, DType t, size_t n, int slot) {
    if (t == DT_BF16) return p;
    uint16_t *s = (uint16_t *)cuda_scratch(cu, slot, n * sizeof(uint16_t));
    if (s) cuda_to_bf16(be, s, (const real_t *)p, n);
    return s;
}

void cuda_matmul_bf16(const Backend *be, real_t *C, const void *A, DType ta, const void *B, DType tb, int M, int N,
                      int K, int transA, int transB, real_t alpha, real_t beta) {
    CudaState *cu = cuda_enter(be);
    /* C (M,N); A (M,K) or (K,M) if transA; B (K,N) or (N,K) if transB; real_t or bf16 bits */
    if (M <= 0 || N <= 0) return;
    if ((ta != DT_REAL && ta != DT_BF16) || (tb != DT_REAL && tb != DT_BF16)) {
        CUDA_FAIL(cu, PEFTC_EINVAL, "matmul_bf16 takes real or bf16 operands, not dtypes %d and %d", (int)ta, (int)tb);
        return;
    }
    if (K <= 0) { /* no products: C = beta C, as matmul */
        cuda_matmul(be, C, NULL, NULL, M, N, 0, transA, transB, alpha, beta);
        return;
    }
    const void *a = as_bf16(be, cu, A, ta, (size_t)M * K, CUDA_SCRATCH_BF16_A);
    const void *b = as_bf16(be, cu, B, tb, (size_t)K * N, CUDA_SCRATCH_BF16_B);
    if (!a || !b) return;
    /* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, as in cuda_matmul. */
    cublasOperation_t opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    int ldb = transB ? K : N, lda = transA ? M : K;
    CUBLAS_CHECK(cu, cublasGemmEx(cu->blas, opB, opA, N, M, K, &alpha, b, CUDA_R_16BF, ldb, a, CUDA_R_16BF, lda,
                                  &beta, C, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}
