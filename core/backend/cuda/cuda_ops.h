/* Private to core/backend/cuda/: the op implementations behind a CUDA instance's table, split by file,
 * plus the runtime they share (the instance's state, error recording, staging of host index arrays,
 * scratch). Shapes and semantics of the ops are documented in core/backend/backend_ops.h, whose list also
 * declares them here (cuda_<op>(be, ...)); core/backend/cpu/ is the reference.
 *
 * Every op starts with cuda_enter(be) and runs its kernels on that instance's stream. Every CUDA/cuBLAS
 * call goes through CUDA_CHECK/CUBLAS_CHECK and every launch is followed by CUDA_CHECK_LAUNCH(): the
 * first failure is kept in the instance and reported by its status(), since the ops return void. */
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

/* Host index arrays (backend.h: tokens, targets, row keys, cache lengths, segment ids and positions are
 * host memory) are copied to a grow-only device buffer per slot, in stream order. The returned pointer
 * stays valid for kernels launched before the next cuda_stage() on the same slot. NULL (error recorded)
 * on failure. */
enum {
    CUDA_STAGE_TOKENS = 0,
    CUDA_STAGE_TARGETS,
    CUDA_STAGE_KEYS,
    CUDA_STAGE_LENS,
    CUDA_STAGE_SEG, /* attention's segment ids (packed rows) */
    CUDA_STAGE_POS, /* RoPE's positions (packed rows) */
    CUDA_STAGE_COUNT
};

/* Device scratch: a grow-only buffer per slot, contents undefined, valid until the next cuda_scratch()
 * on the same slot (growing frees the old buffer, which waits for the device). NULL (error recorded)
 * on failure. A slot belongs to one file, whose ops use it one call at a time. */
enum {
    CUDA_SCRATCH_REDUCE = 0, /* sumsq partials, xent loss sums */
    CUDA_SCRATCH_NORM,       /* rmsnorm dw partial sums */
    CUDA_SCRATCH_ATTN0,      /* cuda_attention.cu */
    CUDA_SCRATCH_ATTN1,
    CUDA_SCRATCH_ATTN2,
    CUDA_SCRATCH_BF16_A,     /* cuda_bf16.cu: matmul_bf16's operands rounded to bf16 */
    CUDA_SCRATCH_BF16_B,
    CUDA_SCRATCH_SSM_TILE,   /* cuda_ssm.cu: the scan backward's recomputed chunk states */
    CUDA_SCRATCH_SSM_PART,   /* cuda_ssm.cu: the scan backward's partial sums */
    CUDA_SCRATCH_COUNT
};

/* Pinned copies kept per staging slot: a slot can be refilled this many times before the host waits
 * for the oldest copy out of it, so staging does not serialise the host with the GPU. */
#define CUDA_STAGE_RING 8

typedef struct {
    void *dev;                           /* (cap) bytes, device */
    void *pinned[CUDA_STAGE_RING];       /* (cap) bytes each, page-locked host */
    cudaEvent_t copied[CUDA_STAGE_RING]; /* recorded after the copy out of pinned[i] */
    int used[CUDA_STAGE_RING];           /* copied[i] has been recorded */
    int next;
    size_t cap;
} CudaStageSlot;

typedef struct {
    void *p;
    size_t bytes;
} CudaMemEntry;

/* One instance's state (Backend.impl). */
typedef struct {
    int device;
    cudaStream_t stream; /* every op of the instance, in issue order */
    cublasHandle_t blas; /* bound to stream */
    CudaStageSlot stage[CUDA_STAGE_COUNT];
    void *scratch[CUDA_SCRATCH_COUNT];
    size_t scratch_cap[CUDA_SCRATCH_COUNT];
    /* Live device allocations, open addressing keyed by pointer: free() needs each one's size. */
    CudaMemEntry *mem;
    size_t mem_cap, mem_count, in_use, peak;
    /* The first failure since the last status(). */
    int err_set;
    PeftcStatus err_code;
    char err_msg[512];
} CudaState;

/* ---- cuda_backend.cu: runtime ---- */
/* The instance's state, with its device made current on this thread: every op starts here, so
 * instances on different GPUs can be driven from one host thread. */
CudaState *cuda_enter(const Backend *be);

/* Records the first failure (the call's text, file:line, CUDA's message); later ones are dropped
 * until the instance's status() reports and clears it. */
void cuda_check_at(CudaState *cu, cudaError_t e, const char *call, const char *file, int line);
void cublas_check_at(CudaState *cu, cublasStatus_t s, const char *call, const char *file, int line);
/* Records a failure found by the backend itself (e.g. an index out of range in a host array). */
void cuda_fail_at(CudaState *cu, PeftcStatus code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define CUDA_FAIL(cu, code, ...) cuda_fail_at((cu), (code), __FILE__, __LINE__, __VA_ARGS__)
#define CUDA_CHECK(cu, call) cuda_check_at((cu), (call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(cu, call) cublas_check_at((cu), (call), #call, __FILE__, __LINE__)
/* After a <<<...>>> launch: configuration errors surface here, faults at the next sync. */
#define CUDA_CHECK_LAUNCH(cu, kernel) cuda_check_at((cu), cudaGetLastError(), #kernel "<<<>>>", __FILE__, __LINE__)

const void *cuda_stage(CudaState *cu, int slot, const void *host, size_t bytes);
/* tokens (BT, host) staged for a gather or scatter; NULL after recording an error naming op for a
 * negative id, which would index before the table (the upper bound V is not passed in). */
const int32_t *cuda_stage_tokens(CudaState *cu, const int32_t *tokens, int BT, const char *op);
void *cuda_scratch(CudaState *cu, int slot, size_t bytes);

/* A grid-stride loop: i runs over [0, n) split across every thread of the grid. */
#define GRID_STRIDE(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* Blocks for a grid-stride loop over n elements with `block` threads each (at least 1). */
static inline unsigned cuda_grid(size_t n, int block) {
    size_t g = (n + (size_t)block - 1) / (size_t)block;
    if (g < 1) g = 1;
    if (g > CUDA_MAX_GRID) g = CUDA_MAX_GRID;
    return (unsigned)g;
}

/* sigmoid(x) = 1 / (1 + e^-x); e^-x overflowing to inf for very negative x gives the right limit 0. */
static __device__ __forceinline__ float cuda_sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* ---- cuda_ssm.cu: the selective scan's scratch, for reserve() ---- */
/* Bytes of CUDA_SCRATCH_SSM_TILE and CUDA_SCRATCH_SSM_PART ssm_scan_bwd takes for a (B,T,D,N) call. */
size_t cuda_ssm_tile_bytes(int B, int D);
size_t cuda_ssm_part_bytes(int B, int T, int D, int N);

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

/* Every op this backend has: cuda_matmul, cuda_attention_fwd, ... (cuda_backend.cu, cuda_blas.cu,
 * cuda_elementwise.cu, cuda_norm.cu, cuda_rope.cu, cuda_attention.cu, cuda_xent.cu, cuda_dropout.cu,
 * cuda_adamw.cu, cuda_ssm.cu). */
#define CUDA_PROTO_(ret, name, params) PEFTC_BACKEND_PROTO(cuda, ret, name, params)
PEFTC_BACKEND_OPS(CUDA_PROTO_)
#undef CUDA_PROTO_

#endif
