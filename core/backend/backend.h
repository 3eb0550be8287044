/* The backend interface: every numeric op the model and the adapters need.
 *
 * Model and adapter code call be->op(...) and never look at which backend runs it. core/cpu/
 * implements it with OpenBLAS + OpenMP and is the reference a later CUDA backend is tested against.
 *
 * Conventions (all ops):
 *  - Pointers are backend memory holding real_t, row-major; shapes are written next to each pointer.
 *    BT = B*T rows of activations.
 *  - Forward ops overwrite their outputs. Backward ops ACCUMULATE (+=) into every gradient they
 *    write, so gradients are zeroed once per step and accumulation and residual fan-in come free.
 *    A NULL gradient pointer means "not needed" and is skipped. Two documented exceptions transform
 *    in place instead: rope_bwd, and xent_bwd when dlogits aliases probs.
 *  - Index arrays (tokens, targets, row keys, cache lengths) are HOST memory: they are small and made
 *    by the host; a device backend copies them itself. Scalars returned (loss sums, norms) are host.
 *  - A backend is driven by one host thread at a time (the CPU one changes OpenBLAS's thread count
 *    inside attention); it parallelises internally.
 */
#ifndef PEFTC_BACKEND_H
#define PEFTC_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/real.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

typedef struct Backend Backend;

struct Backend {
    const char *name;
    Device device; /* where alloc() places memory */
    /* OK, or the first failure of an op since the last call (ops return nothing; a device backend
     * records launch and library errors). Waits for queued work. */
    PeftcStatus (*status)(void);

    /* ---- memory ---- */
    void *(*alloc)(size_t bytes); /* zero-filled; NULL on failure */
    void (*free)(void *p);
    void (*zero)(real_t *x, size_t n);
    void (*copy)(real_t *dst, const real_t *src, size_t n);
    /* Between host memory and backend memory (plain memcpy on the CPU). */
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);

    /* ---- BLAS-like ----
     * C(M,N) = alpha * op(A) * op(B) + beta * C, op(A) is (M,K), op(B) is (K,N).
     * A is stored (M,K) or, if transA, (K,M); B is stored (K,N) or, if transB, (N,K).
     * beta = 1 accumulates. */
    void (*matmul)(real_t *C, const real_t *A, const real_t *B, int M, int N, int K, int transA,
                   int transB, real_t alpha, real_t beta);
    /* y(n) += alpha * x(n) */
    void (*axpy)(real_t *y, const real_t *x, real_t alpha, size_t n);
    /* x(n) *= alpha */
    void (*scale)(real_t *x, real_t alpha, size_t n);
    /* sum of squares of x(n), accumulated in double */
    double (*sumsq)(const real_t *x, size_t n);

    /* ---- bias ---- out(BT,OC) += b(OC) per row;  db(OC) += sum over rows of dout(BT,OC) */
    void (*bias_fwd)(real_t *out, const real_t *b, int BT, int OC);
    void (*bias_bwd)(real_t *db, const real_t *dout, int BT, int OC);

    /* ---- embedding ---- out(BT,C) = wte[tokens[i]];  dwte(V,C) += scatter of dout(BT,C) */
    void (*embedding_fwd)(real_t *out, const int32_t *tokens, const real_t *wte, int BT, int C);
    void (*embedding_bwd)(real_t *dwte, const real_t *dout, const int32_t *tokens, int BT, int C);

    /* ---- RMSNorm ---- out = inp * rstd * w, rstd(BT) = 1/sqrt(mean(inp^2) + eps) saved for bwd.
     * inp, out, dout, dinp: (BT,C); w, dw: (C). */
    void (*rmsnorm_fwd)(real_t *out, real_t *rstd, const real_t *inp, const real_t *w, int BT, int C,
                        real_t eps);
    void (*rmsnorm_bwd)(real_t *dinp, real_t *dw, const real_t *dout, const real_t *inp, const real_t *w,
                        const real_t *rstd, int BT, int C);

    /* ---- RoPE, HF rotate-half convention ----
     * x (B,T,NH,HD) is rotated in place: for i < HD/2, pair (x[i], x[i+HD/2]) at position t by angle
     * t * theta^(-2i/HD). cos, sin: (T, HD/2) tables from rope_tables(). Backward rotates dx in place by
     * the inverse angle (the op is orthogonal). */
    void (*rope_fwd)(real_t *x, const real_t *cos, const real_t *sin, int B, int T, int NH, int HD);
    void (*rope_bwd)(real_t *dx, const real_t *cos, const real_t *sin, int B, int T, int NH, int HD);

    /* ---- causal grouped-query attention ----
     * q (B,T,NH,HD), k and v (B,T,NKV,HD), NH % NKV == 0 (head h reads kv head h / (NH/NKV)).
     * out (B,T,NH,HD) = softmax(q k^T / sqrt(HD) + causal mask) v.
     * att (attention_saved(B,T,NH) elements) receives what the backward needs: the CPU keeps the
     * softmax probabilities (B,NH,T,T); a fused kernel keeps one log-sum-exp per row (B,NH,T) and
     * recomputes the rest. */
    size_t (*attention_saved)(int B, int T, int NH);
    void (*attention_fwd)(real_t *out, real_t *att, const real_t *q, const real_t *k, const real_t *v,
                          int B, int T, int NH, int NKV, int HD);
    /* dq (B,T,NH,HD), dk and dv (B,T,NKV,HD) accumulate. */
    void (*attention_bwd)(real_t *dq, real_t *dk, real_t *dv, const real_t *dout, const real_t *att,
                          const real_t *q, const real_t *k, const real_t *v, int B, int T, int NH, int NKV,
                          int HD);

    /* ---- attention of new queries over a KV cache ----
     * q (B,NH,HD) one new query per row; kc, vc (B,S,NKV*HD) cached keys (after RoPE) and values; row b
     * attends to positions [0, len[b]) (the new token's key is already stored at len[b]-1; len[b] <= S,
     * len[b] == 0 gives a zero output). len is host memory. out (B,NH,HD) = softmax(q k^T / sqrt(HD)) v. */
    void (*attention_decode)(real_t *out, const real_t *q, const real_t *kc, const real_t *vc, const int *len,
                             int B, int S, int NH, int NKV, int HD);

    /* ---- SwiGLU ---- out(n) = silu(gate) * up;  dgate, dup (n) accumulate. */
    void (*swiglu_fwd)(real_t *out, const real_t *gate, const real_t *up, size_t n);
    void (*swiglu_bwd)(real_t *dgate, real_t *dup, const real_t *dout, const real_t *gate, const real_t *up,
                       size_t n);

    /* ---- softmax cross-entropy with an ignore index ----
     * logits (BT,V) -> probs (BT,V) (probs MAY alias logits: it is then overwritten in place).
     * Returns the SUM of -log p[target] over rows whose target != PEFTC_IGNORE_INDEX, and stores the
     * number of such rows in *n_valid. Targets must be in [0,V) or PEFTC_IGNORE_INDEX. */
    double (*xent_fwd)(real_t *probs, const real_t *logits, const int32_t *targets, int BT, int V,
                       int64_t *n_valid);
    /* dlogits(BT,V) += scale * (probs - onehot(target)) on valid rows; ignored rows get nothing.
     * dlogits MAY alias probs: it is then overwritten rather than accumulated, and ignored rows are
     * set to zero (they would otherwise still hold probabilities). */
    void (*xent_bwd)(real_t *dlogits, const real_t *probs, const int32_t *targets, int BT, int V,
                     real_t scale);

    /* ---- dropout (inverted) ----
     * out(R,C) = inp * mask / (1-p), mask(R,C) bytes saved. Row r's mask is drawn from stream
     * row_keys[r] (index c), so it depends on which sample the row belongs to, not on where the row
     * sits in a batch or on which rank. p == 0 copies and sets mask to 1. */
    void (*dropout_fwd)(real_t *out, uint8_t *mask, const real_t *inp, const uint64_t *row_keys, int R, int C,
                        real_t p);
    /* dinp(R,C) += dout * mask / (1-p) */
    void (*dropout_bwd)(real_t *dinp, const real_t *dout, const uint8_t *mask, int R, int C, real_t p);

    /* ---- fixed-pattern sparse matrices (CSR; row_ptr (rows+1), col_idx (nnz) int32 backend memory) ----
     * W(rows,cols) += alpha * S, S given by its pattern and values (nnz) */
    void (*csr_add_dense)(real_t *W, const int32_t *row_ptr, const int32_t *col_idx, const real_t *values, int rows,
                          int cols, real_t alpha);
    /* y(R,rows) += alpha * x(R,cols) S^T */
    void (*csr_spmm)(real_t *y, const real_t *x, const int32_t *row_ptr, const int32_t *col_idx, const real_t *values,
                     int R, int rows, int cols, real_t alpha);
    /* dx(R,cols) += alpha * dy(R,rows) S */
    void (*csr_spmm_t)(real_t *dx, const real_t *dy, const int32_t *row_ptr, const int32_t *col_idx,
                       const real_t *values, int R, int rows, int cols, real_t alpha);
    /* dvalues(nnz) += alpha * (dy^T x) sampled at the pattern: the gradient of S's values (SDDMM).
     * dy (R,rows), x (R,cols). */
    void (*csr_sddmm)(real_t *dvalues, const real_t *dy, const real_t *x, const int32_t *row_ptr,
                      const int32_t *col_idx, int R, int rows, int cols, real_t alpha);

    /* ---- AdamW on one span of the arena (PyTorch semantics) ----
     * m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p = p (1 - lr wd) - lr/bc1 * m / (sqrt(v/bc2) + eps).
     * p, g, m, v (n); bc1 = 1 - b1^step, bc2 = 1 - b2^step. */
    void (*adamw)(real_t *p, const real_t *g, real_t *m, real_t *v, size_t n, double lr, double wd, double b1,
                  double b2, double eps, double bc1, double bc2);
};

/* Host memory in which to write the n values of backend tensor dst: dst itself on the CPU, a temporary
 * elsewhere (NULL if it cannot be allocated). backend_host_done() uploads the temporary and frees it.
 * For initialisers and tables that are computed on the host once. */
real_t *backend_host_begin(const Backend *be, real_t *dst, size_t n);
void backend_host_done(const Backend *be, real_t *dst, real_t *host, size_t n);

/* The CPU backend (OpenBLAS + OpenMP). Never NULL. */
const Backend *backend_cpu(void);

/* Fills cos, sin (T, HD/2) for RoPE with base theta (computed in double, stored as real_t). */
void rope_tables(real_t *cos, real_t *sin, int T, int HD, double theta);

/* rope_tables() into backend memory. */
PeftcStatus backend_rope_tables(const Backend *be, real_t *cos, real_t *sin, int T, int HD, double theta);

/* Sets the number of threads the CPU backend uses (OpenMP and OpenBLAS); n <= 0 means all cores. */
void backend_cpu_set_threads(int n);

#endif
