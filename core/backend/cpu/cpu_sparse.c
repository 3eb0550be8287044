/* Fixed-pattern CSR matrices S (rows, cols): the sparse delta of RoSA.
 *
 * Every output element is owned by one thread and summed in a fixed order (nonzeros ascending within a
 * row, activation rows ascending), so results do not depend on the thread count. Dots and SDDMM sums
 * are taken in double, like the other reductions of this backend. */
#include <omp.h>

#include "core/backend/cpu/cpu_ops.h"

/* Activation rows per SDDMM block: 32 rows of x stay in L2 (cols = 4096 float: 512 KiB) while every
 * sparse row gathers from them. */
#define CPU_SDDMM_RBLOCK 32

/* Sparse rows per dynamic chunk: RoSA masks cluster in a few rows, so a static split by row count
 * would leave most threads idle. */
#define CPU_SPARSE_ROW_CHUNK 16

void cpu_csr_add_dense(const Backend *be, real_t *W, const int32_t *row_ptr, const int32_t *col_idx,
                       const real_t *values, int rows, int cols, real_t alpha) {
    /* W (rows,cols), row_ptr (rows+1), col_idx (nnz), values (nnz) */
    (void)be;
#pragma omp parallel for schedule(dynamic, CPU_SPARSE_ROW_CHUNK) if (row_ptr[rows] >= CPU_PAR_MIN)
    for (int i = 0; i < rows; i++) {
        real_t *w = W + (size_t)i * cols; /* (cols) */
        for (int32_t j = row_ptr[i]; j < row_ptr[i + 1]; j++) w[col_idx[j]] += alpha * values[j];
    }
}

void cpu_csr_gather(const Backend *be, real_t *dvalues, const real_t *W, const int32_t *row_ptr,
                    const int32_t *col_idx, int rows, int cols, real_t alpha) {
    /* dvalues (nnz), W (rows,cols), row_ptr (rows+1), col_idx (nnz) */
    (void)be;
#pragma omp parallel for schedule(dynamic, CPU_SPARSE_ROW_CHUNK) if (row_ptr[rows] >= CPU_PAR_MIN)
    for (int i = 0; i < rows; i++) {
        const real_t *w = W + (size_t)i * cols; /* (cols) */
        for (int32_t j = row_ptr[i]; j < row_ptr[i + 1]; j++) dvalues[j] += alpha * w[col_idx[j]];
    }
}

/* y(rows) += alpha * S x(cols) for sparse rows [i0, i1): one activation row against part of S. */
static void spmv_rows(real_t *y, const real_t *x, const int32_t *row_ptr, const int32_t *col_idx,
                      const real_t *values, int i0, int i1, real_t alpha) {
    for (int i = i0; i < i1; i++) {
        double s = 0.0;
        for (int32_t j = row_ptr[i]; j < row_ptr[i + 1]; j++) s += (double)values[j] * (double)x[col_idx[j]];
        y[i] += alpha * (real_t)s;
    }
}

void cpu_csr_spmm(const Backend *be, real_t *y, const real_t *x, const int32_t *row_ptr, const int32_t *col_idx,
                  const real_t *values, int R, int rows, int cols, real_t alpha) {
    /* y (R,rows), x (R,cols). Many activation rows (training): split them, each thread keeps its x row
     * in cache. Few (decoding): split the sparse rows instead. Either way an element is one dot. */
    (void)be;
    size_t work = (size_t)R * (size_t)row_ptr[rows];
    if (R >= omp_get_max_threads()) {
#pragma omp parallel for schedule(static) if (work >= CPU_PAR_MIN)
        for (int r = 0; r < R; r++)
            spmv_rows(y + (size_t)r * rows, x + (size_t)r * cols, row_ptr, col_idx, values, 0, rows, alpha);
        return;
    }
    for (int r = 0; r < R; r++) {
#pragma omp parallel for schedule(dynamic, 1) if (work >= CPU_PAR_MIN)
        for (int i0 = 0; i0 < rows; i0 += CPU_SPARSE_ROW_CHUNK) {
            int i1 = i0 + CPU_SPARSE_ROW_CHUNK < rows ? i0 + CPU_SPARSE_ROW_CHUNK : rows;
            spmv_rows(y + (size_t)r * rows, x + (size_t)r * cols, row_ptr, col_idx, values, i0, i1, alpha);
        }
    }
}

void cpu_csr_spmm_t(const Backend *be, real_t *dx, const real_t *dy, const int32_t *row_ptr,
                    const int32_t *col_idx, const real_t *values, int R, int rows, int cols, real_t alpha) {
    /* dx (R,cols), dy (R,rows). Sparse rows scatter into the same dx columns, so threads split the
     * activation rows, never the sparse ones. */
    (void)be;
    if (!dx) return;
    size_t work = (size_t)R * (size_t)row_ptr[rows];
#pragma omp parallel for schedule(static) if (work >= CPU_PAR_MIN)
    for (int r = 0; r < R; r++) {
        real_t *d = dx + (size_t)r * cols;       /* (cols) */
        const real_t *g = dy + (size_t)r * rows; /* (rows) */
        for (int i = 0; i < rows; i++) {
            real_t gi = alpha * g[i];
            for (int32_t j = row_ptr[i]; j < row_ptr[i + 1]; j++) d[col_idx[j]] += gi * values[j];
        }
    }
}

/* acc(nnz) += the sums over activation rows [r0, r1) for sparse rows [i0, i1). */
static void sddmm_block(double *acc, const real_t *dy, const real_t *x, const int32_t *row_ptr,
                        const int32_t *col_idx, int r0, int r1, int i0, int i1, int rows, int cols) {
    for (int i = i0; i < i1; i++) {
        int32_t j0 = row_ptr[i], j1 = row_ptr[i + 1];
        if (j0 == j1) continue;
        for (int r = r0; r < r1; r++) {
            double g = dy[(size_t)r * rows + i];
            const real_t *xr = x + (size_t)r * cols; /* (cols) */
            for (int32_t j = j0; j < j1; j++) acc[j] += g * (double)xr[col_idx[j]];
        }
    }
}

void cpu_csr_sddmm(const Backend *be, real_t *dvalues, const real_t *dy, const real_t *x, const int32_t *row_ptr,
                   const int32_t *col_idx, int R, int rows, int cols, real_t alpha) {
    /* dvalues (nnz), dy (R,rows), x (R,cols). Threads split the sparse rows, one block of activation
     * rows at a time: a nonzero's sum runs over r in order whichever thread owns it in each block. */
    if (!dvalues) return;
    int32_t nnz = row_ptr[rows];
    if (nnz == 0) return;
    double *acc = cpu_shared_scratch(be, (size_t)nnz, "csr_sddmm", "nnz"); /* (nnz) */
    if (!acc) return;
    for (int32_t j = 0; j < nnz; j++) acc[j] = 0.0;
    int nchunks = (rows + CPU_SPARSE_ROW_CHUNK - 1) / CPU_SPARSE_ROW_CHUNK;
#pragma omp parallel if ((size_t)R * (size_t)nnz >= CPU_PAR_MIN)
    for (int r0 = 0; r0 < R; r0 += CPU_SDDMM_RBLOCK) {
        int r1 = r0 + CPU_SDDMM_RBLOCK < R ? r0 + CPU_SDDMM_RBLOCK : R;
#pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < nchunks; c++) {
            int i0 = c * CPU_SPARSE_ROW_CHUNK, i1 = i0 + CPU_SPARSE_ROW_CHUNK < rows ? i0 + CPU_SPARSE_ROW_CHUNK : rows;
            sddmm_block(acc, dy, x, row_ptr, col_idx, r0, r1, i0, i1, rows, cols);
        }
    }
    for (int32_t j = 0; j < nnz; j++) dvalues[j] += alpha * (real_t)acc[j];
}
