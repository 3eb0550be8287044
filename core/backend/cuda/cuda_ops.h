/* Private to core/cuda/: the op implementations behind backend_cuda_open()'s vtable, split by file,
 * plus the runtime they share (the one stream, error recording, staging of host index arrays, scratch).
 * Shapes and semantics of the ops are documented in core/backend.h; core/cpu/ is the reference.
 *
 * Every kernel runs on cuda_stream(). Every CUDA/cuBLAS call goes through CUDA_CHECK/CUBLAS_CHECK and
 * every launch is followed by CUDA_CHECK_LAUNCH(): the first failure is kept and reported by
 * backend_cuda_status(), since the vtable's ops return void. */
#ifndef PEFTC_CUDA_OPS_H
#define PEFTC_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>

/* The C headers carry no extern "C" guards of their own. */
extern "C" {
#include "core/backend/backend.h"
#include "core/base/real.h"
#include "core/base/status.h"
}
#include "core/backend/cuda/cuda_backend.h"

static_assert(sizeof(real_t) == sizeof(float), "the CUDA kernels are fp32");

/* Threads per block for the flat and per-row kernels. */
#define CUDA_BLOCK 256
/* Grid cap for grid-stride loops: enough blocks to fill any current GPU several times over. */
#define CUDA_MAX_GRID 4096

/* ---- cuda_backend.cu: runtime ---- */
cudaStream_t cuda_stream(void);
cublasHandle_t cuda_cublas(void);

/* Records the first failure (the call's text, file:line, CUDA's message); later ones are dropped
 * until backend_cuda_status() reports and clears it. */
void cuda_check_at(cudaError_t e, const char *call, const char *file, int line);
void cublas_check_at(cublasStatus_t s, const char *call, const char *file, int line);
/* Records a failure found by the backend itself (e.g. an index out of range in a host array). */
void cuda_fail_at(PeftcStatus code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define CUDA_FAIL(code, ...) cuda_fail_at((code), __FILE__, __LINE__, __VA_ARGS__)
#define CUDA_CHECK(call) cuda_check_at((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) cublas_check_at((call), #call, __FILE__, __LINE__)
/* After a <<<...>>> launch: configuration errors surface here, faults at the next sync. */
#define CUDA_CHECK_LAUNCH(kernel) cuda_check_at(cudaGetLastError(), #kernel "<<<>>>", __FILE__, __LINE__)

/* Host index arrays (backend.h: tokens, targets, row keys, cache lengths are host memory) are copied
 * to a grow-only device buffer per slot, in stream order. The returned pointer stays valid for kernels
 * launched before the next cuda_stage() on the same slot. NULL (error recorded) on failure. */
enum {
    CUDA_STAGE_TOKENS = 0,
    CUDA_STAGE_TARGETS,
    CUDA_STAGE_KEYS,
    CUDA_STAGE_LENS,
    CUDA_STAGE_COUNT
};
const void *cuda_stage(int slot, const void *host, size_t bytes);

/* Device scratch: a grow-only buffer per slot, contents undefined, valid until the next cuda_scratch()
 * on the same slot (growing frees the old buffer, which waits for the device). NULL (error recorded)
 * on failure. A slot belongs to one file, whose ops use it one call at a time. */
enum {
    CUDA_SCRATCH_REDUCE = 0, /* sumsq partials, xent loss sums */
    CUDA_SCRATCH_NORM,       /* rmsnorm dw partial sums */
    CUDA_SCRATCH_ATTN0,      /* cuda_attention.cu */
    CUDA_SCRATCH_ATTN1,
    CUDA_SCRATCH_ATTN2,
    CUDA_SCRATCH_COUNT
};
void *cuda_scratch(int slot, size_t bytes);

/* Blocks for a grid-stride loop over n elements with `block` threads each (at least 1). */
static inline unsigned cuda_grid(size_t n, int block) {
    size_t g = (n + (size_t)block - 1) / (size_t)block;
    if (g < 1) g = 1;
    if (g > CUDA_MAX_GRID) g = CUDA_MAX_GRID;
    return (unsigned)g;
}

/* ---- block reductions: blockDim.x a multiple of 32, at most 1024; every thread gets the result.
 * The leading barrier lets a kernel call them back to back on the same shared array. ---- */
static __device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max_f(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static __device__ __forceinline__ double block_sum_d(double v) {
    __shared__ double part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    return warp_sum_d(lane < nwarps ? part[lane] : 0.0);
}

static __device__ __forceinline__ float block_max_f(float v) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_max_f(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    return warp_max_f(lane < nwarps ? part[lane] : -INFINITY);
}

/* ---- memory (cuda_backend.cu) ---- */
void *cuda_alloc(size_t bytes);
void cuda_free(void *p);
void cuda_zero(real_t *x, size_t n);
void cuda_copy(real_t *dst, const real_t *src, size_t n);
void cuda_upload(void *dst, const void *host_src, size_t bytes);
void cuda_download(void *host_dst, const void *src, size_t bytes);

/* ---- cuda_blas.cu ---- */
void cuda_matmul(real_t *C, const real_t *A, const real_t *B, int M, int N, int K, int transA, int transB,
                 real_t alpha, real_t beta);
void cuda_axpy(real_t *y, const real_t *x, real_t alpha, size_t n);
void cuda_scale(real_t *x, real_t alpha, size_t n);
double cuda_sumsq(const real_t *x, size_t n);

/* ---- cuda_elementwise.cu ---- */
void cuda_bias_fwd(real_t *out, const real_t *b, int BT, int OC);
void cuda_bias_bwd(real_t *db, const real_t *dout, int BT, int OC);
void cuda_embedding_fwd(real_t *out, const int32_t *tokens, const real_t *wte, int BT, int C);
void cuda_embedding_bwd(real_t *dwte, const real_t *dout, const int32_t *tokens, int BT, int C);
void cuda_swiglu_fwd(real_t *out, const real_t *gate, const real_t *up, size_t n);
void cuda_swiglu_bwd(real_t *dgate, real_t *dup, const real_t *dout, const real_t *gate, const real_t *up,
                     size_t n);

/* ---- cuda_norm.cu ---- */
void cuda_rmsnorm_fwd(real_t *out, real_t *rstd, const real_t *inp, const real_t *w, int BT, int C, real_t eps);
void cuda_rmsnorm_bwd(real_t *dinp, real_t *dw, const real_t *dout, const real_t *inp, const real_t *w,
                      const real_t *rstd, int BT, int C);

/* ---- cuda_rope.cu ---- */
void cuda_rope_fwd(real_t *x, const real_t *cos, const real_t *sin, int B, int T, int NH, int HD);
void cuda_rope_bwd(real_t *dx, const real_t *cos, const real_t *sin, int B, int T, int NH, int HD);

/* ---- cuda_attention.cu ---- */
size_t cuda_attention_saved(int B, int T, int NH);
void cuda_attention_fwd(real_t *out, real_t *att, const real_t *q, const real_t *k, const real_t *v, int B,
                        int T, int NH, int NKV, int HD);
void cuda_attention_bwd(real_t *dq, real_t *dk, real_t *dv, const real_t *dout, const real_t *att,
                        const real_t *q, const real_t *k, const real_t *v, int B, int T, int NH, int NKV,
                        int HD);
void cuda_attention_decode(real_t *out, const real_t *q, const real_t *kc, const real_t *vc, const int *len,
                           int B, int S, int NH, int NKV, int HD);

/* ---- cuda_xent.cu ---- */
double cuda_xent_fwd(real_t *probs, const real_t *logits, const int32_t *targets, int BT, int V,
                     int64_t *n_valid);
void cuda_xent_bwd(real_t *dlogits, const real_t *probs, const int32_t *targets, int BT, int V, real_t scale);

/* ---- cuda_dropout.cu ---- */
void cuda_dropout_fwd(real_t *out, uint8_t *mask, const real_t *inp, const uint64_t *row_keys, int R, int C,
                      real_t p);
void cuda_dropout_bwd(real_t *dinp, const real_t *dout, const uint8_t *mask, int R, int C, real_t p);

/* ---- cuda_adamw.cu ---- */
void cuda_adamw(real_t *p, const real_t *g, real_t *m, real_t *v, size_t n, double lr, double wd, double b1,
                double b2, double eps, double bc1, double bc2);

#endif
