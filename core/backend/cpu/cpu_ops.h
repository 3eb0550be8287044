/* Private to core/backend/cpu/: the op implementations behind the CPU backend's table, split by file,
 * plus the small helpers they share. Shapes and semantics of the ops are documented in
 * core/backend/backend_ops.h, whose list also declares them here: cpu_<op>(be, ...) for every op. */
#ifndef PEFTC_CPU_OPS_H
#define PEFTC_CPU_OPS_H

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

/* ---- cpu_backend.c ---- */
/* General matrix multiply on strided views, the only place that knows whether real_t is float or
 * double. C(M,N; ldc) = alpha * op(A) * op(B) + beta * C, A stored (M,K; lda) or if transA (K,M; lda),
 * B stored (K,N; ldb) or if transB (N,K; ldb). Runs with OpenBLAS's own threads: never call it from
 * inside an OpenMP parallel region unless cpu_blas_single_begin() is in effect. */
void cpu_gemm(int transA, int transB, int M, int N, int K, real_t alpha, const real_t *A, int lda,
              const real_t *B, int ldb, real_t beta, real_t *C, int ldc);
/* Brackets a region where OpenMP threads each call cpu_gemm: OpenBLAS runs single-threaded inside it
 * (one level of parallelism, no oversubscription). Returns the previous BLAS thread count to restore. */
int cpu_blas_single_begin(void);
void cpu_blas_single_end(int saved);
/* Softmax of x(n) into p(n) (p may be x); returns log(sum(exp(x))), the log of the normaliser. */
double cpu_softmax(real_t *p, const real_t *x, int n);
/* malloc for op scratch; the ops return void, so running out of memory here aborts with a message. */
void *cpu_scratch(size_t bytes);

/* Every op: cpu_matmul, cpu_attention_fwd, ... (cpu_backend.c, cpu_norm.c, cpu_rope.c, cpu_attention.c,
 * cpu_decode.c, cpu_swiglu.c, cpu_xent.c, cpu_dropout.c, cpu_sparse.c, cpu_adamw.c). */
#define CPU_PROTO_(ret, name, params) PEFTC_BACKEND_PROTO(cpu, ret, name, params)
PEFTC_BACKEND_OPS(CPU_PROTO_)
#undef CPU_PROTO_

#endif
