/* Private to core/cpu/: the op implementations behind backend_cpu()'s vtable, split by file, plus the
 * small helpers they share. Shapes and semantics of the ops are documented in core/backend.h. */
#ifndef PEFTC_CPU_OPS_H
#define PEFTC_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

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

void cpu_matmul(real_t *C, const real_t *A, const real_t *B, int M, int N, int K, int transA, int transB,
                real_t alpha, real_t beta);
void cpu_axpy(real_t *y, const real_t *x, real_t alpha, size_t n);
void cpu_scale(real_t *x, real_t alpha, size_t n);
double cpu_sumsq(const real_t *x, size_t n);

/* ---- cpu_norm.c ---- */
void cpu_bias_fwd(real_t *out, const real_t *b, int BT, int OC);
void cpu_bias_bwd(real_t *db, const real_t *dout, int BT, int OC);
void cpu_embedding_fwd(real_t *out, const int32_t *tokens, const real_t *wte, int BT, int C);
void cpu_embedding_bwd(real_t *dwte, const real_t *dout, const int32_t *tokens, int BT, int C);
void cpu_rmsnorm_fwd(real_t *out, real_t *rstd, const real_t *inp, const real_t *w, int BT, int C,
                     real_t eps);
void cpu_rmsnorm_bwd(real_t *dinp, real_t *dw, const real_t *dout, const real_t *inp, const real_t *w,
                     const real_t *rstd, int BT, int C);

/* ---- cpu_rope.c ---- */
void cpu_rope_fwd(real_t *x, const real_t *cos, const real_t *sin, int B, int T, int NH, int HD);
void cpu_rope_bwd(real_t *dx, const real_t *cos, const real_t *sin, int B, int T, int NH, int HD);

/* ---- cpu_attention.c ---- */
void cpu_attention_fwd(real_t *out, real_t *att, const real_t *q, const real_t *k, const real_t *v, int B,
                       int T, int NH, int NKV, int HD);
void cpu_attention_bwd(real_t *dq, real_t *dk, real_t *dv, const real_t *dout, const real_t *att,
                       const real_t *q, const real_t *k, const real_t *v, int B, int T, int NH, int NKV,
                       int HD);

/* ---- cpu_adamw.c ---- */
void cpu_adamw(real_t *p, const real_t *g, real_t *m, real_t *v, size_t n, double lr, double wd, double beta1,
               double beta2, double eps, double bc1, double bc2);

/* ---- cpu_attention.c ---- saved state: the probabilities */
size_t cpu_attention_saved(int B, int T, int NH);

/* ---- cpu_decode.c ---- */
void cpu_attention_decode(real_t *out, const real_t *q, const real_t *kc, const real_t *vc, const int *len, int B,
                          int S, int NH, int NKV, int HD);

/* ---- cpu_swiglu.c ---- */
void cpu_swiglu_fwd(real_t *out, const real_t *gate, const real_t *up, size_t n);
void cpu_swiglu_bwd(real_t *dgate, real_t *dup, const real_t *dout, const real_t *gate, const real_t *up,
                    size_t n);

/* ---- cpu_xent.c ---- */
double cpu_xent_fwd(real_t *probs, const real_t *logits, const int32_t *targets, int BT, int V,
                    int64_t *n_valid);
void cpu_xent_bwd(real_t *dlogits, const real_t *probs, const int32_t *targets, int BT, int V, real_t scale);

/* ---- cpu_dropout.c ---- */
void cpu_dropout_fwd(real_t *out, uint8_t *mask, const real_t *inp, const uint64_t *row_keys, int R, int C,
                     real_t p);
void cpu_dropout_bwd(real_t *dinp, const real_t *dout, const uint8_t *mask, int R, int C, real_t p);

/* ---- cpu_sparse.c ---- */
void cpu_csr_add_dense(real_t *W, const int32_t *row_ptr, const int32_t *col_idx, const real_t *values, int rows,
                       int cols, real_t alpha);
void cpu_csr_spmm(real_t *y, const real_t *x, const int32_t *row_ptr, const int32_t *col_idx, const real_t *values,
                  int R, int rows, int cols, real_t alpha);
void cpu_csr_spmm_t(real_t *dx, const real_t *dy, const int32_t *row_ptr, const int32_t *col_idx,
                    const real_t *values, int R, int rows, int cols, real_t alpha);
void cpu_csr_sddmm(real_t *dvalues, const real_t *dy, const real_t *x, const int32_t *row_ptr,
                   const int32_t *col_idx, int R, int rows, int cols, real_t alpha);

#endif
