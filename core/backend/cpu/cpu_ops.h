/* Private to core/backend/cpu/: the op implementations behind the CPU backend's table, split by file,
 * plus the small helpers they share. Shapes and semantics of the ops are documented in
 * core/backend/backend_ops.h, whose list also declares them here: cpu_<op>(be, ...) for every op. */
#ifndef PEFTC_CPU_OPS_H
#define PEFTC_CPU_OPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backend/backend.h"
#include "core/base/real.h"

/* Column block width for reductions over rows (bias db, rmsnorm dw, embedding scatter): each thread
 * owns whole column blocks, so every sum is taken over rows in order, with no shared accumulator,
 * and the result does not depend on the thread count. 64 columns = one or two cache lines a row. */
#define CPU_COL_BLOCK 64

/* Below this many elements (or multiply-adds, for attention) an op runs on one thread: forking a
 * team costs microseconds, more than the whole op, and much more when the cores are oversubscribed. */
#define CPU_PAR_MIN 16384

/* Elements per chunk of flat reductions (sumsq): a fixed chunking, not one chunk per thread, keeps
 * the order of the partial sums independent of the thread count. */
#define CPU_FLAT_CHUNK 65536

/* Query rows per tile of attention. Smaller skips more of the masked triangle, larger makes
 * better-shaped gemms. Scratch per thread: one (CPU_ATT_TILE, T) tile in the forward, two in the
 * backward. */
#define CPU_ATT_TILE 64

/* Elements per operand in matmul_bf16's conversion scratch: operands larger than this go in tiles (of
 * op(A)'s rows or op(B)'s columns). 4M elements keeps every weight of a 1B model's layers in one tile
 * and costs 32 MiB per instance. */
#define CPU_LP_TILE ((size_t)1 << 22)

/* Selective scan (cpu_ssm.c). The forward saves each chunk's start state, so the backward's memory is
 * (B, ceil(T/CPU_SSM_CHUNK), N, D) saved values: N/64 of the (B,T,D) activations for Mamba's N = 16, and
 * its recomputed chunk (CPU_SSM_CHUNK+1 states of a block of a group of lanes) stays on the stack. */
#define CPU_SSM_CHUNK 64
/* States a group of channels keeps on the stack at a time: Mamba's N = 16 in one block. */
#define CPU_SSM_NBLK 16
/* Consecutive channels that walk time together, one per vector lane: each step then loads dt, u, z, dy
 * as one contiguous run rather than a float per cache line, and the state updates vectorise over d.
 * A multiple of 4 (sums over the lanes fold them to four) dividing CPU_SSM_DGROUP. 8 is two SSE
 * vectors; 16 ran the backward slower, its stack tiles (about 90 KiB of floats at 8) doubling. */
#define CPU_SSM_LANES 8
/* Channels per unit of the scan's backward: each unit keeps its own (T,N) partial sums of dB and dC, so
 * a larger group means less scratch (2 B T N D/64 doubles) but fewer units to spread over threads. */
#define CPU_SSM_DGROUP 64

typedef struct CpuDnnl CpuDnnl;

/* A CPU instance's state (Backend.impl): the op scratch reserve() sized, and the first failure.
 *
 * Scratch is sized ahead rather than grown by the op that runs short: an op cannot return an allocation
 * failure, growing would put malloc and its failure inside the step, and every user already knows its
 * largest shapes when it sets up (llama_reserve, kv_create, RoSA's reserve). So an op called beyond what
 * was reserved records an error naming the shape to reserve and returns without writing its outputs;
 * status() reports it at the step boundary. */
typedef struct {
    double *shared;      /* (shared_cap) one call's: xent_fwd's per-row losses, csr_sddmm's sums, ssm_scan_bwd's
                          * partial sums */
    size_t shared_cap;
    real_t *per_thread;  /* (threads, thread_cap): attention_bwd's ds tile, attention_decode's p */
    size_t thread_cap;
    int threads;         /* OpenMP threads the per-thread scratch was sized for */
    CpuDnnl *dnnl;       /* oneDNN engine and cached primitives (float build), made at the first bf16 matmul */
    int dnnl_failed;     /* 1: oneDNN could not start; OpenBLAS serves every matmul */
    real_t *lp[2];       /* (CPU_LP_TILE) each: matmul_bf16's operand tiles, allocated by reserve(bf16) */
    int err_set;
    PeftcStatus err_code;
    char err_msg[256];
} CpuState;

/* sigmoid(x) = 1 / (1 + e^-x) in real_t's precision (expf in the float build); for very negative x,
 * e^-x overflows to inf and the result is the correct limit 0, so no branch is needed. */
static inline real_t cpu_sigmoid(real_t x) {
#ifdef PEFTC_REAL_DOUBLE
    return 1.0 / (1.0 + exp(-x));
#else
    return 1.0f / (1.0f + expf(-x));
#endif
}

/* ---- cpu_backend.c ---- */
/* General matrix multiply on strided views, the only place that knows whether real_t is float or
 * double. OpenBLAS, not oneDNN, for fp32: measured on a LoRA step they run at the same speed, and
 * OpenBLAS's results do not depend on the thread count (it never splits K across threads; oneDNN's
 * gemm does), which N-rank runs equal to 1-rank ones rely on. C(M,N; ldc) = alpha * op(A) * op(B) + beta * C, A stored (M,K; lda) or if transA (K,M; lda),
 * B stored (K,N; ldb) or if transB (N,K; ldb). Runs with OpenBLAS's own threads: never call it from
 * inside an OpenMP parallel region unless cpu_blas_single_begin() is in effect. */
void cpu_gemm(int transA, int transB, int M, int N, int K, real_t alpha, const real_t *A, int lda,
              const real_t *B, int ldb, real_t beta, real_t *C, int ldc);
/* Brackets a region where OpenMP threads each call cpu_gemm: OpenBLAS runs single-threaded inside it
 * (one level of parallelism, no oversubscription). Returns the previous BLAS thread count to restore. */
int cpu_blas_single_begin(void);
void cpu_blas_single_end(int saved);
/* ---- cpu_dnnl.c (float build) ---- */
CpuDnnl *cpu_dnnl_create(void); /* NULL when oneDNN cannot start an engine */
void cpu_dnnl_free(CpuDnnl *d);
/* C = alpha op(A) op(B) + beta C through a cached oneDNN primitive, operands bf16 bits, C f32;
 * strides as cpu_gemm. Returns 0 when oneDNN has no kernel for it on this CPU (nothing written), 1
 * when done or when a failure was recorded. */
int cpu_dnnl_matmul(const Backend *be, CpuDnnl *d, float *C, const uint16_t *A, const uint16_t *B, int M, int N,
                    int K, int tA, int tB, int lda, int ldb, int ldc, float alpha, float beta);
/* Whether the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), and whether it has AMX. */
int cpu_dnnl_bf16_native(void);
int cpu_dnnl_amx(void);
/* The instance's oneDNN context, made on first use; NULL when it cannot be (OpenBLAS then serves). */
CpuDnnl *cpu_dnnl_of(const Backend *be);

/* Softmax of x(n) into p(n) (p may be x); returns log(sum(exp(x))), the log of the normaliser. */
double cpu_softmax(real_t *p, const real_t *x, int n);
/* Records the instance's first failure since status() (printf-style), for status() to report. */
void cpu_fail(const Backend *be, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The shared scratch for n doubles, or NULL after recording a failure naming op and the BackendNeed
 * field (`need`) that sizes it. n == 0 always succeeds (the pointer may then be NULL). */
double *cpu_shared_scratch(const Backend *be, size_t n, const char *op, const char *need);
/* Threads for a region whose threads each take n real_t of cpu_thread_scratch(): at most the team
 * OpenMP would start, at most the threads reserved for (a smaller team gives the same results: every
 * op splits its work into units that do not depend on the thread count), at least 1. 0 after recording
 * a failure when n exceeds what was reserved per thread, or when called from inside a parallel region
 * (its threads would share one slot). */
int cpu_thread_team(const Backend *be, size_t n, const char *op, const char *need);
/* The calling OpenMP thread's slot of the per-thread scratch. */
real_t *cpu_thread_scratch(const Backend *be);
/* Doubles of shared scratch ssm_scan_bwd takes for a (B,T,D,N) call (cpu_ssm.c); reserve() sizes it
 * from BackendNeed B, T, ssm_D, ssm_N. */
size_t cpu_ssm_bwd_scratch(int B, int T, int D, int N);

/* Every op: cpu_matmul, cpu_attention_fwd, ... (cpu_backend.c, cpu_norm.c, cpu_rope.c, cpu_attention.c,
 * cpu_decode.c, cpu_swiglu.c, cpu_xent.c, cpu_dropout.c, cpu_sparse.c, cpu_adamw.c, cpu_conv1d.c,
 * cpu_ssm.c). */
#define CPU_PROTO_(ret, name, params) PEFTC_BACKEND_PROTO(cpu, ret, name, params)
PEFTC_BACKEND_OPS(CPU_PROTO_)
#undef CPU_PROTO_

#endif
