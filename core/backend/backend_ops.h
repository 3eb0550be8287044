/* The list of backend ops, declared once: PEFTC_BACKEND_OPS(X) calls X(ret, name, params) for every op,
 * where params is the parenthesised parameter list, starting with the instance the op runs on. From it
 * backend.h generates the fields of struct Backend, the BackendOp ids and backend_op_names[]; each
 * backend generates its prototypes (<prefix>_<name>) and fills its table with PEFTC_BACKEND_IMPL.
 *
 * Adding an op: one entry here (with its doc comment), one function per backend that has it, and a
 * PEFTC_LACKS_ line in each backend that does not. Shapes, accumulation and memory conventions are the
 * ones at the top of backend.h. Included only through backend.h, which declares the types used here.
 */
#ifndef PEFTC_BACKEND_OPS_H
#define PEFTC_BACKEND_OPS_H

/* Comments inside the macro end their lines with a backslash like the entries: the whole list is one
 * #define. */
#define PEFTC_BACKEND_OPS(X)                                                                                 \
    /* ---- instance ----                                                                                    \
     * OK, or the first failure of an op since the last call, which this call clears (ops return nothing;    \
     * a backend records launch and library errors, and calls beyond what reserve() sized). Waits for        \
     * queued work. */                                                                                       \
    X(PeftcStatus, status, (const Backend *be))                                                              \
    /* Sizes the op scratch for calls up to the shapes in *need, so that the ops themselves never allocate.  \
     * Grows, never shrinks: each user (model passes, KV cache, adapters) states its own need and the        \
     * instance keeps the largest of each. Not to be called between the ops of a step: it may free and       \
     * allocate. ENOMEM naming the size when memory runs out. */                                             \
    X(PeftcStatus, reserve, (const Backend *be, const BackendNeed *need))                                    \
                                                                                                             \
    /* ---- memory ---- */                                                                                   \
    /* zero-filled; NULL on failure */                                                                       \
    X(void *, alloc, (const Backend *be, size_t bytes))                                                      \
    X(void, free, (const Backend *be, void *p))                                                              \
    X(void, zero, (const Backend *be, real_t *x, size_t n))                                                  \
    X(void, copy, (const Backend *be, real_t *dst, const real_t *src, size_t n))                             \
    /* Between host memory and backend memory (plain memcpy on the CPU). */                                  \
    X(void, upload, (const Backend *be, void *dst, const void *host_src, size_t bytes))                      \
    X(void, download, (const Backend *be, void *host_dst, const void *src, size_t bytes))                    \
                                                                                                             \
    /* ---- BLAS-like ----                                                                                   \
     * C(M,N) = alpha * op(A) * op(B) + beta * C, op(A) is (M,K), op(B) is (K,N).                            \
     * A is stored (M,K) or, if transA, (K,M); B is stored (K,N) or, if transB, (N,K).                       \
     * beta = 1 accumulates. */                                                                              \
    X(void, matmul, (const Backend *be, real_t *C, const real_t *A, const real_t *B, int M, int N, int K,    \
                     int transA, int transB, real_t alpha, real_t beta))                                     \
    /* ---- bf16 (train.precision=bf16) ----                                                                 \
     * As matmul, with the products taken in bf16 and summed in fp32 (as PyTorch's autocast does): an        \
     * operand given as DT_BF16 is bf16 bits (uint16_t) used as they are, one given as DT_REAL is rounded    \
     * to bf16 (nearest even) first. C stays real_t. Scratch: BackendNeed bf16. */                           \
    X(void, matmul_bf16, (const Backend *be, real_t *C, const void *A, DType ta, const void *B, DType tb,    \
                          int M, int N, int K, int transA, int transB, real_t alpha, real_t beta))           \
    /* dst(n) = src rounded to bf16 (nearest even), as bits */                                               \
    X(void, to_bf16, (const Backend *be, uint16_t *dst, const real_t *src, size_t n))                        \
    /* dst(n) = src widened (exact) */                                                                       \
    X(void, from_bf16, (const Backend *be, real_t *dst, const uint16_t *src, size_t n))                      \
    /* out(BT,C) = wte[tokens[i]] widened, from a bf16 table wte (V,C) */                                    \
    X(void, embedding_fwd_bf16, (const Backend *be, real_t *out, const int32_t *tokens, const uint16_t *wte, \
                                 int BT, int C))                                                             \
    /* ---- quantized base (model.quantized) ----                                                            \
     * out(rows,cols) = the values of rows x cols elements of ggml type `type` held in blocks (backend       \
     * memory, rows of ggml_row_bytes(type, cols) bytes; cols a whole number of blocks), computed as         \
     * ggml computes them (core/base/ggml_blocks.h); for GGML_NF4, one buffer of nf4_bytes(rows * cols)      \
     * over the flattened tensor, any size (core/base/nf4_blocks.h). Another type ggml_type_supported()      \
     * refuses gives NaN. */                                                                                 \
    X(void, dequantize, (const Backend *be, real_t *out, const void *blocks, GgmlType type, int rows,        \
                         int cols))                                                                          \
    /* y(n) += alpha * x(n) */                                                                               \
    X(void, axpy, (const Backend *be, real_t *y, const real_t *x, real_t alpha, size_t n))                   \
    /* x(n) *= alpha */                                                                                      \
    X(void, scale, (const Backend *be, real_t *x, real_t alpha, size_t n))                                   \
    /* sum of squares of x(n), accumulated in double */                                                      \
    X(double, sumsq, (const Backend *be, const real_t *x, size_t n))                                         \
                                                                                                             \
    /* ---- bias ---- out(BT,OC) += b(OC) per row;  db(OC) += sum over rows of dout(BT,OC) */                \
    X(void, bias_fwd, (const Backend *be, real_t *out, const real_t *b, int BT, int OC))                     \
    X(void, bias_bwd, (const Backend *be, real_t *db, const real_t *dout, int BT, int OC))                   \
                                                                                                             \
    /* ---- embedding ---- out(BT,C) = wte[tokens[i]];  dwte(V,C) += scatter of dout(BT,C) */                \
    X(void, embedding_fwd, (const Backend *be, real_t *out, const int32_t *tokens, const real_t *wte,        \
                            int BT, int C))                                                                  \
    X(void, embedding_bwd, (const Backend *be, real_t *dwte, const real_t *dout, const int32_t *tokens,      \
                            int BT, int C))                                                                  \
                                                                                                             \
    /* ---- RMSNorm ---- out = inp * rstd * w, rstd(BT) = 1/sqrt(mean(inp^2) + eps) saved for bwd.           \
     * inp, out, dout, dinp: (BT,C); w, dw: (C). */                                                          \
    X(void, rmsnorm_fwd, (const Backend *be, real_t *out, real_t *rstd, const real_t *inp, const real_t *w,  \
                          int BT, int C, real_t eps))                                                        \
    X(void, rmsnorm_bwd, (const Backend *be, real_t *dinp, real_t *dw, const real_t *dout,                   \
                          const real_t *inp, const real_t *w, const real_t *rstd, int BT, int C))            \
                                                                                                             \
    /* ---- RoPE, HF rotate-half convention ----                                                             \
     * x (B,T,NH,HD) is rotated in place: for i < HD/2, pair (x[i], x[i+HD/2]) at position p by angle        \
     * p * inv_freq[i], reading row p of the cos, sin tables (rows of HD/2, from rope_tables_freq()). pos    \
     * (B,T) host, or NULL: p = pos[b*T+t] (packed rows restart at 0 for each example; every p must be a     \
     * row of the tables), or p = t. Backward rotates dx in place by the inverse angle: the transpose,       \
     * since the op is a rotation times the tables' scale. */                                                \
    X(void, rope_fwd, (const Backend *be, real_t *x, const real_t *cos, const real_t *sin,                   \
                       const int32_t *pos, int B, int T, int NH, int HD))                                    \
    X(void, rope_bwd, (const Backend *be, real_t *dx, const real_t *cos, const real_t *sin,                  \
                       const int32_t *pos, int B, int T, int NH, int HD))                                    \
                                                                                                             \
    /* ---- causal grouped-query attention ----                                                              \
     * q (B,T,NH,HD), k and v (B,T,NKV,HD), NH % NKV == 0 (head h reads kv head h / (NH/NKV)).               \
     * out (B,T,NH,HD) = softmax(q k^T / sqrt(HD) + mask) v, where query t of row b sees key s iff           \
     * s <= t and, when seg (B,T) host is given, seg[b*T+s] == seg[b*T+t] (packed rows: one segment per      \
     * example; NULL = the plain causal mask).                                                               \
     * att (attention_saved(B,T,NH) elements) receives what the backward needs: one log-sum-exp per          \
     * query row, (B,NH,T); the backward recomputes the probabilities from it, so memory stays linear in     \
     * T. Scratch: BackendNeed T. */                                                                         \
    X(size_t, attention_saved, (const Backend *be, int B, int T, int NH))                                    \
    X(void, attention_fwd, (const Backend *be, real_t *out, real_t *att, const real_t *q, const real_t *k,   \
                            const real_t *v, const int32_t *seg, int B, int T, int NH, int NKV, int HD))     \
    /* dq (B,T,NH,HD), dk and dv (B,T,NKV,HD) accumulate; seg as in the forward. Scratch: BackendNeed B,     \
     * T, NH. */                                                                                             \
    X(void, attention_bwd, (const Backend *be, real_t *dq, real_t *dk, real_t *dv, const real_t *dout,       \
                            const real_t *att, const real_t *q, const real_t *k, const real_t *v,            \
                            const int32_t *seg, int B, int T, int NH, int NKV, int HD))                      \
                                                                                                             \
    /* ---- attention of new queries over a KV cache ----                                                    \
     * q (B,NH,HD) one new query per row; kc, vc (B,S,NKV*HD) cached keys (after RoPE) and values; row b     \
     * attends to positions [0, len[b]) (the new token's key is already stored at len[b]-1; len[b] <= S,     \
     * len[b] == 0 gives a zero output). len is host memory. out (B,NH,HD) = softmax(q k^T / sqrt(HD)) v.    \
     * Scratch: BackendNeed S >= every len[b]. */                                                            \
    X(void, attention_decode, (const Backend *be, real_t *out, const real_t *q, const real_t *kc,            \
                               const real_t *vc, const int *len, int B, int S, int NH, int NKV, int HD))     \
                                                                                                             \
    /* ---- SwiGLU ---- out(n) = silu(gate) * up;  dgate, dup (n) accumulate. */                             \
    X(void, swiglu_fwd, (const Backend *be, real_t *out, const real_t *gate, const real_t *up, size_t n))    \
    X(void, swiglu_bwd, (const Backend *be, real_t *dgate, real_t *dup, const real_t *dout,                  \
                         const real_t *gate, const real_t *up, size_t n))                                    \
                                                                                                             \
    /* ---- Mamba: causal depthwise conv1d, SiLU, selective scan ----                                        \
     * x (B,T,D) rows of stride ldx (the x half of in_proj's output, ldx = 2D); w (D,K), HF's conv1d.weight  \
     * (D,1,K); b (D) or NULL. out (B,T,D) = b[d] + sum_k w[d,k] x[b, t-K+1+k, d], inputs before t = 0      \
     * taken from state, or zero when state is NULL. state (B,K-1,D) or NULL: the K-1 inputs before t = 0,  \
     * oldest first; on return the K-1 inputs before t = T (generation carries it from call to call). */    \
    X(void, conv1d_fwd, (const Backend *be, real_t *out, const real_t *x, int ldx, const real_t *w,          \
                         const real_t *b, real_t *state, int B, int T, int D, int K))                        \
    /* Zero initial state. dx (B,T,D) rows of stride ldx, dw (D,K), db (D) accumulate; NULL skips. */        \
    X(void, conv1d_bwd, (const Backend *be, real_t *dx, real_t *dw, real_t *db, const real_t *dout,          \
                         const real_t *x, int ldx, const real_t *w, int B, int T, int D, int K))             \
    /* out(n) = x * sigmoid(x);  dx(n) += dout * silu'(x) */                                                 \
    X(void, silu_fwd, (const Backend *be, real_t *out, const real_t *x, size_t n))                           \
    X(void, silu_bwd, (const Backend *be, real_t *dx, const real_t *dout, const real_t *x, size_t n))        \
    /* dst(rows, cols) rows of stride ld_dst = src(rows, cols) rows of stride ld_src (column blocks of       \
     * wider activations, e.g. x_proj's dt columns into dt_proj's input). */                                 \
    X(void, copy_2d, (const Backend *be, real_t *dst, int ld_dst, const real_t *src, int ld_src, int rows,   \
                      int cols))                                                                             \
    /* Selective scan, as transformers' MambaMixer.slow_forward computes it, per (b, d, n):                  \
     *   delta = softplus(dt) (identity above 20, as torch's), A = -exp(A_log),                              \
     *   h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,  y_t = (sum_n C_t h_t + Dskip u_t) * silu(z_t).     \
     * u, dt (B,T,D), dt before softplus (dt_proj's output, its bias included); A_log (D,N); Bm, Cm (B,T,N)  \
     * rows of stride ldbc (x_proj's output columns); Dskip (D); z (B,T,D) rows of stride ldz (in_proj's    \
     * z half). y (B,T,D). h (B,D,N) or NULL: the state before t = 0 (NULL: zero); on return the state     \
     * after t = T-1. saved (ssm_scan_saved(B,T,D,N) values) or NULL: what the backward needs, states at    \
     * chunk boundaries only, so memory stays O(B T D), not O(B T D N). */                                   \
    X(size_t, ssm_scan_saved, (const Backend *be, int B, int T, int D, int N))                               \
    X(void, ssm_scan_fwd, (const Backend *be, real_t *y, real_t *saved, real_t *h, const real_t *u,          \
                           const real_t *dt, const real_t *A_log, const real_t *Bm, const real_t *Cm,        \
                           int ldbc, const real_t *Dskip, const real_t *z, int ldz, int B, int T, int D,     \
                           int N))                                                                           \
    /* Zero initial state (training). Gradients accumulate, NULL skips: du, ddt (B,T,D); dA_log (D,N); dB,   \
     * dC (B,T,N) rows of stride ldbc; dDskip (D); dz (B,T,D) rows of stride ldz. Scratch: BackendNeed B,   \
     * T, ssm_D, ssm_N. */                                                                                   \
    X(void, ssm_scan_bwd, (const Backend *be, real_t *du, real_t *ddt, real_t *dA_log, real_t *dB,           \
                           real_t *dC, real_t *dDskip, real_t *dz, const real_t *dy, const real_t *saved,    \
                           const real_t *u, const real_t *dt, const real_t *A_log, const real_t *Bm,         \
                           const real_t *Cm, int ldbc, const real_t *Dskip, const real_t *z, int ldz, int B, \
                           int T, int D, int N))                                                             \
                                                                                                             \
    /* ---- softmax cross-entropy with an ignore index ----                                                  \
     * logits (BT,V) -> probs (BT,V) (probs MAY alias logits: it is then overwritten in place).              \
     * Returns the SUM of -log p[target] over rows whose target != PEFTC_IGNORE_INDEX, and stores the        \
     * number of such rows in *n_valid. Targets must be in [0,V) or PEFTC_IGNORE_INDEX.                      \
     * Scratch: BackendNeed B * T >= BT. */                                                                  \
    X(double, xent_fwd, (const Backend *be, real_t *probs, const real_t *logits, const int32_t *targets,     \
                         int BT, int V, int64_t *n_valid))                                                   \
    /* dlogits(BT,V) += scale * (probs - onehot(target)) on valid rows; ignored rows get nothing.            \
     * dlogits MAY alias probs: it is then overwritten rather than accumulated, and ignored rows are         \
     * set to zero (they would otherwise still hold probabilities). */                                       \
    X(void, xent_bwd, (const Backend *be, real_t *dlogits, const real_t *probs, const int32_t *targets,      \
                       int BT, int V, real_t scale))                                                         \
                                                                                                             \
    /* ---- dropout (inverted) ----                                                                          \
     * out(R,C) = inp * mask / (1-p), mask(R,C) bytes saved. Row r's mask is drawn from stream               \
     * row_keys[r] (index c), so it depends on which sample the row belongs to, not on where the row         \
     * sits in a batch or on which rank. p == 0 copies and sets mask to 1. */                                \
    X(void, dropout_fwd, (const Backend *be, real_t *out, uint8_t *mask, const real_t *inp,                  \
                          const uint64_t *row_keys, int R, int C, real_t p))                                 \
    /* dinp(R,C) += dout * mask / (1-p) */                                                                   \
    X(void, dropout_bwd, (const Backend *be, real_t *dinp, const real_t *dout, const uint8_t *mask, int R,   \
                          int C, real_t p))                                                                  \
                                                                                                             \
    /* ---- fixed-pattern sparse matrices (CSR; row_ptr (rows+1), col_idx (nnz) int32 backend memory) ----   \
     * W(rows,cols) += alpha * S, S given by its pattern and values (nnz) */                                 \
    X(void, csr_add_dense, (const Backend *be, real_t *W, const int32_t *row_ptr, const int32_t *col_idx,    \
                            const real_t *values, int rows, int cols, real_t alpha))                         \
    /* dvalues(nnz) += alpha * W(rows,cols) at the pattern: csr_add_dense's gradient with respect to the     \
     * values (a sparse delta on a tensor that is not a linear layer's weight, e.g. Mamba's A_log) */        \
    X(void, csr_gather, (const Backend *be, real_t *dvalues, const real_t *W, const int32_t *row_ptr,        \
                         const int32_t *col_idx, int rows, int cols, real_t alpha))                          \
    /* y(R,rows) += alpha * x(R,cols) S^T */                                                                 \
    X(void, csr_spmm, (const Backend *be, real_t *y, const real_t *x, const int32_t *row_ptr,                \
                       const int32_t *col_idx, const real_t *values, int R, int rows, int cols,              \
                       real_t alpha))                                                                        \
    /* dx(R,cols) += alpha * dy(R,rows) S */                                                                 \
    X(void, csr_spmm_t, (const Backend *be, real_t *dx, const real_t *dy, const int32_t *row_ptr,            \
                         const int32_t *col_idx, const real_t *values, int R, int rows, int cols,            \
                         real_t alpha))                                                                      \
    /* dvalues(nnz) += alpha * (dy^T x) sampled at the pattern: the gradient of S's values (SDDMM).          \
     * dy (R,rows), x (R,cols). Scratch: BackendNeed nnz. */                                                 \
    X(void, csr_sddmm, (const Backend *be, real_t *dvalues, const real_t *dy, const real_t *x,               \
                        const int32_t *row_ptr, const int32_t *col_idx, int R, int rows, int cols,           \
                        real_t alpha))                                                                       \
                                                                                                             \
    /* ---- AdamW on one span of the arena (PyTorch semantics) ----                                          \
     * m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p = p (1 - lr wd) - lr/bc1 * m / (sqrt(v/bc2) + eps).   \
     * p, g, m, v (n); bc1 = 1 - b1^step, bc2 = 1 - b2^step. */                                              \
    X(void, adamw, (const Backend *be, real_t *p, const real_t *g, real_t *m, real_t *v, size_t n,           \
                    double lr, double wd, double b1, double b2, double eps, double bc1, double bc2))

/* ---- generating a backend from the list ----
 * A backend with prefix p implements op `name` as the function p_name, or states that it lacks it:
 *     #define PEFTC_LACKS_p_name PEFTC_LACKING
 * Then PEFTC_BACKEND_PROTO(p, ret, name, params) declares p_name for the ops it has (nothing for the
 * others), and PEFTC_BACKEND_IMPL(p, name) is p_name, or NULL for an op it lacks: its table holds NULL
 * there by construction, and backend_require() names the op. */
#define PEFTC_LACKING ~, 1

/* PEFTC_PP_LACKS_(p, name): 1 when PEFTC_LACKS_p_name is defined as PEFTC_LACKING (it expands to two
 * arguments, shifting the 1 into second place), else 0. */
#define PEFTC_PP_SECOND_(a, b, ...) b
#define PEFTC_PP_PROBE_(...) PEFTC_PP_SECOND_(__VA_ARGS__, 0, ~)
#define PEFTC_PP_LACKS_(p, name) PEFTC_PP_PROBE_(PEFTC_LACKS_##p##_##name)
#define PEFTC_PP_CAT_(a, b) PEFTC_PP_CAT2_(a, b)
#define PEFTC_PP_CAT2_(a, b) a##b
#define PEFTC_PP_IF_LACKS_0(has, lacks) has
#define PEFTC_PP_IF_LACKS_1(has, lacks) lacks
#define PEFTC_PP_IF_LACKS_(p, name) PEFTC_PP_CAT_(PEFTC_PP_IF_LACKS_, PEFTC_PP_LACKS_(p, name))

#define PEFTC_BACKEND_IMPL(p, name) PEFTC_PP_IF_LACKS_(p, name)(p##_##name, NULL)
#define PEFTC_BACKEND_PROTO(p, ret, name, params) PEFTC_PP_IF_LACKS_(p, name)(ret p##_##name params;, )

#endif
