/* Fixed-pattern CSR matrices S (rows, cols) on the GPU: RoSA's and SpA's sparse delta.
 *
 * As on the CPU (cpu_sparse.c), every output element is written by one thread and summed in a fixed
 * order (nonzeros ascending within a row, activation rows ascending), in double for the dots and the
 * SDDMM sums, so reruns are bit-identical and no atomics are needed. */
#include "core/backend/cuda/cuda_ops.h"

static __global__ void csr_add_dense_kernel(float *W, const int32_t *row_ptr, const int32_t *col_idx,
                                            const float *values, int rows, int cols, float alpha) {
    /* W (rows,cols); one thread per sparse row */
    GRID_STRIDE(i, (size_t)rows) {
        float *w = W + i * (size_t)cols;
        for (int32_t j = row_ptr[i]; j < row_ptr[i + 1]; j++) w[col_idx[j]] += alpha * values[j];
    }
}

void cuda_csr_add_dense(const Backend *be, real_t *W, const int32_t *row_ptr, const int32_t *col_idx,
                        const real_t *values, int rows, int cols, real_t alpha) {
    CudaState *cu = cuda_enter(be);
    if (rows <= 0) return;
    csr_add_dense_kernel<<<cuda_grid((size_t)rows, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(W, row_ptr, col_idx,
                                                                                            values, rows, cols, alpha);
    CUDA_CHECK_LAUNCH(cu, csr_add_dense_kernel);
}

static __global__ void csr_gather_kernel(float *dvalues, const float *W, const int32_t *row_ptr,
                                         const int32_t *col_idx, int rows, int cols, float alpha) {
    /* dvalues (nnz) += alpha W (rows,cols) at the pattern; one thread per sparse row */
    GRID_STRIDE(i, (size_t)rows) {
        const float *w = W + i * (size_t)cols;
        for (int32_t j = row_ptr[i]; j < row_ptr[i + 1]; j++) dvalues[j] += alpha * w[col_idx[j]];
    }
}

void cuda_csr_gather(const Backend *be, real_t *dvalues, const real_t *W, const int32_t *row_ptr,
                     const int32_t *col_idx, int rows, int cols, real_t alpha) {
    CudaState *cu = cuda_enter(be);
    if (rows <= 0) return;
    csr_gather_kernel<<<cuda_grid((size_t)rows, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(dvalues, W, row_ptr,
                                                                                        col_idx, rows, cols, alpha);
    CUDA_CHECK_LAUNCH(cu, csr_gather_kernel);
}

static __global__ void csr_spmm_kernel(float *y, const float *x, const int32_t *row_ptr, const int32_t *col_idx,
                                       const float *values, int R, int rows, int cols, float alpha) {
    /* y (R,rows) += alpha x (R,cols) S^T; one thread per (r, i), consecutive threads along i */
    GRID_STRIDE(e, (size_t)R * rows) {
        size_t r = e / (size_t)rows;
        int i = (int)(e % (size_t)rows);
        const float *xr = x + r * (size_t)cols;
        double s = 0.0;
        for (int32_t j = row_ptr[i]; j < row_ptr[i + 1]; j++) s += (double)values[j] * (double)xr[col_idx[j]];
        y[e] += alpha * (float)s;
    }
}

void cuda_csr_spmm(const Backend *be, real_t *y, const real_t *x, const int32_t *row_ptr, const int32_t *col_idx,
                   const real_t *values, int R, int rows, int cols, real_t alpha) {
    CudaState *cu = cuda_enter(be);
    size_t n = (size_t)R * (size_t)rows;
    if (!n) return;
    csr_spmm_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(y, x, row_ptr, col_idx, values, R,
                                                                            rows, cols, alpha);
    CUDA_CHECK_LAUNCH(cu, csr_spmm_kernel);
}

static __global__ void csr_spmm_t_kernel(float *dx, const float *dy, const int32_t *row_ptr, const int32_t *col_idx,
                                         const float *values, int R, int rows, int cols, float alpha) {
    /* dx (R,cols) += alpha dy (R,rows) S. One block per activation row r; the sparse rows go in order,
     * the threads splitting each row's nonzeros (distinct columns within a row, so no two threads
     * write one element in the same pass; the barrier orders the passes). */
    for (int r = blockIdx.x; r < R; r += gridDim.x) {
        float *d = dx + (size_t)r * cols;
        const float *g = dy + (size_t)r * rows;
        for (int i = 0; i < rows; i++) {
            int32_t j0 = row_ptr[i], j1 = row_ptr[i + 1];
            if (j0 == j1) continue; /* the same for the whole block */
            float gi = alpha * g[i];
            for (int32_t j = j0 + (int32_t)threadIdx.x; j < j1; j += (int32_t)blockDim.x) d[col_idx[j]] += gi * values[j];
            __syncthreads();
        }
    }
}

void cuda_csr_spmm_t(const Backend *be, real_t *dx, const real_t *dy, const int32_t *row_ptr,
                     const int32_t *col_idx, const real_t *values, int R, int rows, int cols, real_t alpha) {
    CudaState *cu = cuda_enter(be);
    if (!dx || R <= 0 || rows <= 0) return;
    unsigned blocks = R < CUDA_MAX_GRID ? (unsigned)R : CUDA_MAX_GRID;
    csr_spmm_t_kernel<<<blocks, CUDA_BLOCK, 0, cu->stream>>>(dx, dy, row_ptr, col_idx, values, R, rows, cols, alpha);
    CUDA_CHECK_LAUNCH(cu, csr_spmm_t_kernel);
}

/* The sparse row holding nonzero j: the last i with row_ptr[i] <= j (empty rows share a start). */
static __device__ int row_of(const int32_t *row_ptr, int rows, int32_t j) {
    int lo = 0, hi = rows - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (row_ptr[mid] <= j) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static __global__ void csr_sddmm_kernel(float *dvalues, const float *dy, const float *x, const int32_t *row_ptr,
                                        const int32_t *col_idx, int R, int rows, int cols, float alpha) {
    /* dvalues (nnz) += alpha sum_r dy (R,rows)[r, row(j)] x (R,cols)[r, col(j)]; one thread per nonzero */
    GRID_STRIDE(j, (size_t)row_ptr[rows]) {
        int i = row_of(row_ptr, rows, (int32_t)j), c = col_idx[j];
        double s = 0.0;
        for (int r = 0; r < R; r++) s += (double)dy[(size_t)r * rows + i] * (double)x[(size_t)r * cols + c];
        dvalues[j] += alpha * (float)s;
    }
}

void cuda_csr_sddmm(const Backend *be, real_t *dvalues, const real_t *dy, const real_t *x, const int32_t *row_ptr,
                    const int32_t *col_idx, int R, int rows, int cols, real_t alpha) {
    CudaState *cu = cuda_enter(be);
    if (!dvalues || rows <= 0) return;
    /* nnz lives on the device (row_ptr[rows]); the grid is sized by a bound the host knows: every
     * nonzero of a (rows, cols) pattern, and the kernel's loop stops at the real count. */
    size_t bound = (size_t)rows * (size_t)cols;
    csr_sddmm_kernel<<<cuda_grid(bound, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(dvalues, dy, x, row_ptr, col_idx,
                                                                                 R, rows, cols, alpha);
    CUDA_CHECK_LAUNCH(cu, csr_sddmm_kernel);
}
