/* Matrix products through cuBLAS, and the flat vector ops (axpy, scale, sum of squares). */
#include <stdlib.h>
#include <string.h>

#include "core/backend/cuda/cuda_ops.h"

/* Blocks of the first sumsq pass: a fixed count, so the partial sums and their order depend on n
 * only and the result is reproducible. */
#define SUMSQ_BLOCKS 1024

/* PEFTC_CUDA_TF32=1 lets cuBLAS round the inputs to TF32 on the tensor cores (read once). */
static cublasComputeType_t gemm_compute_type(void) {
    static int tf32 = -1;
    if (tf32 < 0) {
        const char *s = getenv("PEFTC_CUDA_TF32");
        tf32 = s && strcmp(s, "1") == 0;
    }
    return tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

void cuda_matmul(const Backend *be, real_t *C, const real_t *A, const real_t *B, int M, int N, int K, int transA,
                 int transB, real_t alpha, real_t beta) {
    CudaState *cu = cuda_enter(be);
    /* C (M,N); A (M,K) or (K,M) if transA; B (K,N) or (N,K) if transB; all dense row-major. */
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        /* No products: C = beta C, with beta = 0 writing zeros whatever C held (as BLAS does). */
        if (beta == (real_t)0)
            cuda_zero(be, C, (size_t)M * N);
        else if (beta != (real_t)1)
            cuda_scale(be, C, beta, (size_t)M * N);
        return;
    }
    /* cuBLAS is column-major, where a row-major (R,S) matrix reads as its transpose (S,R). So compute
     * C^T (N,M) = op(B)^T op(A)^T: B comes first, and each operand's leading dimension is its stored
     * row length. */
    cublasOperation_t opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    int ldb = transB ? K : N, lda = transA ? M : K;
    CUBLAS_CHECK(cu, cublasGemmEx(cu->blas, opB, opA, N, M, K, &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda,
                              &beta, C, CUDA_R_32F, N, gemm_compute_type(), CUBLAS_GEMM_DEFAULT));
}

static __global__ void axpy_kernel(float *y, const float *x, float alpha, size_t n) {
    /* y (n), x (n) */
    GRID_STRIDE(i, n)
        y[i] += alpha * x[i];
}

void cuda_axpy(const Backend *be, real_t *y, const real_t *x, real_t alpha, size_t n) {
    CudaState *cu = cuda_enter(be);
    if (!n) return;
    axpy_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(y, x, alpha, n);
    CUDA_CHECK_LAUNCH(cu, axpy_kernel);
}

static __global__ void scale_kernel(float *x, float alpha, size_t n) {
    /* x (n) */
    GRID_STRIDE(i, n)
        x[i] *= alpha;
}

void cuda_scale(const Backend *be, real_t *x, real_t alpha, size_t n) {
    CudaState *cu = cuda_enter(be);
    if (!n) return;
    scale_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(x, alpha, n);
    CUDA_CHECK_LAUNCH(cu, scale_kernel);
}

static __global__ void sumsq_partial_kernel(double *part, const float *x, size_t n) {
    /* part (gridDim.x), x (n) */
    double s = 0.0;
    GRID_STRIDE(i, n)
        s += (double)x[i] * (double)x[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

static __global__ void sum_kernel(double *out, const double *part, int n) {
    /* out (1), part (n); one block */
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) *out = s;
}

double cuda_sumsq(const Backend *be, const real_t *x, size_t n) {
    CudaState *cu = cuda_enter(be);
    /* x (n) */
    if (!n) return 0.0;
    unsigned nb = cuda_grid(n, CUDA_BLOCK);
    if (nb > SUMSQ_BLOCKS) nb = SUMSQ_BLOCKS;
    double *part = (double *)cuda_scratch(cu, CUDA_SCRATCH_REDUCE, (nb + 1) * sizeof(double)); /* (nb), total */
    if (!part) return 0.0;
    sumsq_partial_kernel<<<nb, CUDA_BLOCK, 0, cu->stream>>>(part + 1, x, n);
    CUDA_CHECK_LAUNCH(cu, sumsq_partial_kernel);
    sum_kernel<<<1, CUDA_BLOCK, 0, cu->stream>>>(part, part + 1, (int)nb);
    CUDA_CHECK_LAUNCH(cu, sum_kernel);
    double s = 0.0;
    cuda_download(be, &s, part, sizeof s);
    return s;
}
