/* Row-broadcast and elementwise ops: bias, token embedding, SwiGLU, SiLU. Same formulas, in the same
 * order, as core/backend/cpu/cpu_norm.c and cpu_swiglu.c. */
#include "core/backend/cuda/cuda_ops.h"

/* bias_bwd tiles: 32 columns (one coalesced row segment) by BIAS_ROWS row strides. */
#define BIAS_COLS 32
#define BIAS_ROWS 32

static __global__ void bias_fwd_kernel(float *out, const float *b, size_t n, int OC) {
    /* out (n/OC,OC), b (OC) */
    GRID_STRIDE(i, n) out[i] += b[i % (size_t)OC];
}

void cuda_bias_fwd(const Backend *be, real_t *out, const real_t *b, int BT, int OC) {
    CudaState *cu = cuda_enter(be);
    size_t n = (size_t)BT * OC;
    if (!n) return;
    bias_fwd_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(out, b, n, OC);
    CUDA_CHECK_LAUNCH(cu, bias_fwd_kernel);
}

/* One block per 32 columns: thread (x,y) sums rows y, y+BIAS_ROWS, ... of column x in double, then
 * row y = 0 adds the BIAS_ROWS partials in order. Each column is owned by one block: no atomics. */
static __global__ void bias_bwd_kernel(float *db, const float *dout, int BT, int OC) {
    /* db (OC), dout (BT,OC) */
    __shared__ double part[BIAS_ROWS][BIAS_COLS + 1];
    int c = blockIdx.x * BIAS_COLS + threadIdx.x;
    double acc = 0.0;
    if (c < OC)
        for (int r = threadIdx.y; r < BT; r += BIAS_ROWS) acc += dout[(size_t)r * OC + c];
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < OC) {
        double s = 0.0;
        for (int y = 0; y < BIAS_ROWS; y++) s += part[y][threadIdx.x];
        db[c] += (float)s;
    }
}

void cuda_bias_bwd(const Backend *be, real_t *db, const real_t *dout, int BT, int OC) {
    CudaState *cu = cuda_enter(be);
    if (!db || BT <= 0 || OC <= 0) return;
    dim3 block(BIAS_COLS, BIAS_ROWS);
    bias_bwd_kernel<<<(OC + BIAS_COLS - 1) / BIAS_COLS, block, 0, cu->stream>>>(db, dout, BT, OC);
    CUDA_CHECK_LAUNCH(cu, bias_bwd_kernel);
}

static __global__ void embedding_fwd_kernel(float *out, const int32_t *tokens, const float *wte, size_t n, int C) {
    /* out (n/C,C), tokens (n/C), wte (V,C) */
    GRID_STRIDE(i, n) {
        size_t r = i / (size_t)C, c = i % (size_t)C;
        out[i] = wte[(size_t)tokens[r] * C + c];
    }
}

const int32_t *cuda_stage_tokens(CudaState *cu, const int32_t *tokens, int BT, const char *op) {
    for (int r = 0; r < BT; r++)
        if (tokens[r] < 0) {
            CUDA_FAIL(cu, PEFTC_EINVAL, "%s: token id %d at row %d is negative", op, (int)tokens[r], r);
            return NULL;
        }
    return (const int32_t *)cuda_stage(cu, CUDA_STAGE_TOKENS, tokens, (size_t)BT * sizeof *tokens);
}

void cuda_embedding_fwd(const Backend *be, real_t *out, const int32_t *tokens, const real_t *wte, int BT, int C) {
    CudaState *cu = cuda_enter(be);
    /* tokens is host memory */
    size_t n = (size_t)BT * C;
    if (!n) return;
    const int32_t *tok = cuda_stage_tokens(cu, tokens, BT, "embedding_fwd");
    if (!tok) return;
    embedding_fwd_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(out, tok, wte, n, C);
    CUDA_CHECK_LAUNCH(cu, embedding_fwd_kernel);
}

/* A token repeated in the batch scatters into the same row of dwte: atomic adds. */
static __global__ void embedding_bwd_kernel(float *dwte, const float *dout, const int32_t *tokens, size_t n, int C) {
    /* dwte (V,C), dout (n/C,C), tokens (n/C) */
    GRID_STRIDE(i, n) {
        size_t r = i / (size_t)C, c = i % (size_t)C;
        atomicAdd(&dwte[(size_t)tokens[r] * C + c], dout[i]);
    }
}

void cuda_embedding_bwd(const Backend *be, real_t *dwte, const real_t *dout, const int32_t *tokens, int BT, int C) {
    CudaState *cu = cuda_enter(be);
    /* tokens is host memory */
    size_t n = (size_t)BT * C;
    if (!dwte || !n) return;
    const int32_t *tok = cuda_stage_tokens(cu, tokens, BT, "embedding_bwd");
    if (!tok) return;
    embedding_bwd_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(dwte, dout, tok, n, C);
    CUDA_CHECK_LAUNCH(cu, embedding_bwd_kernel);
}

static __global__ void swiglu_fwd_kernel(float *out, const float *gate, const float *up, size_t n) {
    /* out, gate, up (n); out may alias gate or up: each element is read before its own write */
    GRID_STRIDE(i, n) {
        float g = gate[i];
        out[i] = g * cuda_sigmoidf(g) * up[i];
    }
}

void cuda_swiglu_fwd(const Backend *be, real_t *out, const real_t *gate, const real_t *up, size_t n) {
    CudaState *cu = cuda_enter(be);
    if (!n) return;
    swiglu_fwd_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(out, gate, up, n);
    CUDA_CHECK_LAUNCH(cu, swiglu_fwd_kernel);
}

static __global__ void swiglu_bwd_kernel(float *dgate, float *dup, const float *dout, const float *gate,
                                         const float *up, size_t n) {
    /* dgate, dup, dout, gate, up (n); silu'(g) = sig(g) * (1 + g * (1 - sig(g))) */
    GRID_STRIDE(i, n) {
        float g = gate[i], sg = cuda_sigmoidf(g), d = dout[i];
        if (dgate) dgate[i] += d * up[i] * sg * (1.0f + g * (1.0f - sg));
        if (dup) dup[i] += d * g * sg;
    }
}

void cuda_swiglu_bwd(const Backend *be, real_t *dgate, real_t *dup, const real_t *dout, const real_t *gate,
                     const real_t *up, size_t n) {
    CudaState *cu = cuda_enter(be);
    if (!n || (!dgate && !dup)) return;
    swiglu_bwd_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(dgate, dup, dout, gate, up, n);
    CUDA_CHECK_LAUNCH(cu, swiglu_bwd_kernel);
}

static __global__ void silu_fwd_kernel(float *out, const float *x, size_t n) {
    /* out, x (n); out may alias x */
    GRID_STRIDE(i, n) {
        float v = x[i];
        out[i] = v * cuda_sigmoidf(v);
    }
}

void cuda_silu_fwd(const Backend *be, real_t *out, const real_t *x, size_t n) {
    CudaState *cu = cuda_enter(be);
    if (!n) return;
    silu_fwd_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(out, x, n);
    CUDA_CHECK_LAUNCH(cu, silu_fwd_kernel);
}

static __global__ void silu_bwd_kernel(float *dx, const float *dout, const float *x, size_t n) {
    /* dx, dout, x (n); silu'(x) = s + x s (1 - s), s = sig(x) */
    GRID_STRIDE(i, n) {
        float v = x[i], s = cuda_sigmoidf(v);
        dx[i] += dout[i] * (s + v * s * (1.0f - s));
    }
}

void cuda_silu_bwd(const Backend *be, real_t *dx, const real_t *dout, const real_t *x, size_t n) {
    CudaState *cu = cuda_enter(be);
    if (!n || !dx) return;
    silu_bwd_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(dx, dout, x, n);
    CUDA_CHECK_LAUNCH(cu, silu_bwd_kernel);
}
