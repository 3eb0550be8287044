/* RMSNorm, one block per row; the weight gradient is a column sum over rows taken in two passes
 * (per-chunk partials, then the chunks in order) so it is reproducible and needs no atomics.
 * Same math as core/backend/cpu/cpu_norm.c: sums of squares and dot products in double. */
#include "core/backend/cuda/cuda_ops.h"

/* dw tiles: 32 columns by 32 row strides; a chunk of rows per block along grid y. */
#define DW_COLS 32
#define DW_ROWS 32
#define DW_MAX_CHUNKS 64
#define DW_MIN_CHUNK_ROWS 128

static __global__ void rmsnorm_fwd_kernel(float *out, float *rstd, const float *inp, const float *w, int C,
                                          float eps) {
    /* out, inp (BT,C), rstd (BT), w (C); block r owns row r. out may alias inp: every read of the row
     * happens before the barrier inside block_sum_d, and the second loop reads each element in the
     * thread that then writes it. */
    const float *x = inp + (size_t)blockIdx.x * C; /* (C) */
    float *o = out + (size_t)blockIdx.x * C;       /* (C) */
    double ss = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ss += (double)x[c] * (double)x[c];
    ss = block_sum_d(ss);
    float s = (float)(1.0 / sqrt(ss / C + (double)eps));
    for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = x[c] * s * w[c];
    if (threadIdx.x == 0) rstd[blockIdx.x] = s;
}

void cuda_rmsnorm_fwd(const Backend *be, real_t *out, real_t *rstd, const real_t *inp, const real_t *w, int BT, int C,
                      real_t eps) {
    CudaState *cu = cuda_enter(be);
    if (BT <= 0 || C <= 0) return;
    rmsnorm_fwd_kernel<<<BT, CUDA_BLOCK, 0, cu->stream>>>(out, rstd, inp, w, C, eps);
    CUDA_CHECK_LAUNCH(cu, rmsnorm_fwd_kernel);
}

/* dx += rstd * w*g - x * rstd^3 * mean(w*g*x), the gradient of x*rstd*w through rstd's dependence on
 * x; block r owns row r. */
static __global__ void rmsnorm_dinp_kernel(float *dinp, const float *dout, const float *inp, const float *w,
                                           const float *rstd, int C) {
    /* dinp, dout, inp (BT,C), w (C), rstd (BT) */
    size_t off = (size_t)blockIdx.x * C;
    const float *g = dout + off, *x = inp + off; /* (C) */
    float *dx = dinp + off;                      /* (C) */
    double dot = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dot += (double)g[c] * (double)w[c] * (double)x[c];
    dot = block_sum_d(dot);
    float rs = rstd[blockIdx.x];
    double rsd = (double)rs;
    float k = (float)(rsd * rsd * rsd * dot / C);
    for (int c = threadIdx.x; c < C; c += blockDim.x) dx[c] += rs * w[c] * g[c] - k * x[c];
}

/* partial[chunk][c] = sum over the chunk's rows of g * x * rstd (double). Block (x, chunk) covers
 * columns [x*DW_COLS, +DW_COLS) and rows [chunk*rows_per, +rows_per). */
static __global__ void rmsnorm_dw_partial_kernel(double *partial, const float *dout, const float *inp,
                                                 const float *rstd, int BT, int C, int rows_per) {
    /* partial (gridDim.y, C), dout, inp (BT,C), rstd (BT) */
    __shared__ double part[DW_ROWS][DW_COLS + 1];
    int c = blockIdx.x * DW_COLS + threadIdx.x;
    int r0 = blockIdx.y * rows_per, r1 = min(r0 + rows_per, BT);
    double acc = 0.0;
    if (c < C)
        for (int r = r0 + threadIdx.y; r < r1; r += DW_ROWS) {
            size_t i = (size_t)r * C + c;
            acc += (double)dout[i] * (double)inp[i] * (double)rstd[r];
        }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        double s = 0.0;
        for (int y = 0; y < DW_ROWS; y++) s += part[y][threadIdx.x];
        partial[(size_t)blockIdx.y * C + c] = s;
    }
}

static __global__ void rmsnorm_dw_finish_kernel(float *dw, const double *partial, int nchunks, int C) {
    /* dw (C), partial (nchunks, C) */
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
        double s = 0.0;
        for (int k = 0; k < nchunks; k++) s += partial[(size_t)k * C + c];
        dw[c] += (float)s;
    }
}

static void rmsnorm_dw(CudaState *cu, real_t *dw, const real_t *dout, const real_t *inp, const real_t *rstd, int BT,
                       int C) {
    int nchunks = (BT + DW_MIN_CHUNK_ROWS - 1) / DW_MIN_CHUNK_ROWS;
    if (nchunks > DW_MAX_CHUNKS) nchunks = DW_MAX_CHUNKS;
    int rows_per = (BT + nchunks - 1) / nchunks;
    double *partial = (double *)cuda_scratch(cu, CUDA_SCRATCH_NORM, (size_t)nchunks * C * sizeof(double));
    /* partial (nchunks,C) */
    if (!partial) return;
    dim3 grid((C + DW_COLS - 1) / DW_COLS, nchunks), block(DW_COLS, DW_ROWS);
    rmsnorm_dw_partial_kernel<<<grid, block, 0, cu->stream>>>(partial, dout, inp, rstd, BT, C, rows_per);
    CUDA_CHECK_LAUNCH(cu, rmsnorm_dw_partial_kernel);
    rmsnorm_dw_finish_kernel<<<cuda_grid((size_t)C, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(dw, partial,
                                                                                              nchunks, C);
    CUDA_CHECK_LAUNCH(cu, rmsnorm_dw_finish_kernel);
}

void cuda_rmsnorm_bwd(const Backend *be, real_t *dinp, real_t *dw, const real_t *dout, const real_t *inp,
                      const real_t *w, const real_t *rstd, int BT, int C) {
    CudaState *cu = cuda_enter(be);
    if (BT <= 0 || C <= 0) return;
    if (dinp) {
        rmsnorm_dinp_kernel<<<BT, CUDA_BLOCK, 0, cu->stream>>>(dinp, dout, inp, w, rstd, C);
        CUDA_CHECK_LAUNCH(cu, rmsnorm_dinp_kernel);
    }
    if (dw) rmsnorm_dw(cu, dw, dout, inp, rstd, BT, C);
}
