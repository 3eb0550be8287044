/* The backend interface: every numeric op the model and the adapters need.
 *
 * The ops are listed once, with their shapes and semantics, in backend_ops.h; from that list come the
 * fields of struct Backend (a table of function pointers), the BackendOp ids and their names, and each
 * backend's prototypes and table. core/backend/cpu/ implements every op with OpenBLAS + OpenMP (and
 * oneDNN for bf16) and is the reference; core/backend/cuda/ implements every op too. A backend may
 * lack ops (its entries are NULL): a run asks backend_require() for what it needs.
 *
 * A Backend is an instance: model and adapter code call be->op(be, ...) and never look at which
 * backend runs it, and each instance holds its own state (CPU: op scratch and the first error; CUDA:
 * device ordinal, stream, cuBLAS handle, scratch and the first error). backend_cpu() is a shared
 * default CPU instance; backend_cpu_create() and backend_cuda_create() make more, backend_free()
 * releases them. A run asks backend_require() once at start-up for every op it will call, so a missing
 * one is an error naming it rather than a NULL call in the middle of a step.
 *
 * Ops never allocate, abort or return an error. Their scratch is sized ahead by reserve() from the
 * largest shapes each user will pass (BackendNeed: the model from llama_reserve(), the KV cache, RoSA's
 * adapters); a call beyond them, like any other failure of an op, is recorded in the instance and
 * returned by status(), which callers check at step boundaries.
 *
 * Conventions (all ops):
 *  - Pointers are backend memory holding real_t, row-major; shapes are written next to each pointer.
 *    BT = B*T rows of activations.
 *  - Forward ops overwrite their outputs. Backward ops ACCUMULATE (+=) into every gradient they
 *    write, so gradients are zeroed once per step and accumulation and residual fan-in come free.
 *    A NULL gradient pointer means "not needed" and is skipped. Two documented exceptions transform
 *    in place instead: rope_bwd, and xent_bwd when dlogits aliases probs.
 *  - Index arrays (tokens, targets, row keys, cache lengths, segment ids, positions) are HOST memory:
 *    they are small and made by the host; a device backend copies them itself. Scalars returned (loss
 *    sums, norms) are host.
 *  - An instance is driven by one host thread at a time, never from inside an OpenMP region (the CPU
 *    one changes OpenBLAS's thread count inside attention, and its scratch serves one call at a time);
 *    it parallelises internally.
 */
#ifndef PEFTC_BACKEND_H
#define PEFTC_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend/backend_ops.h"
#include "core/base/ggml_types.h"
#include "core/base/real.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

typedef struct Backend Backend;

/* The largest shapes a user will call the scratch-needing ops with, for reserve(); a field left 0 asks
 * nothing for the ops it sizes. */
typedef struct {
    int B, T, NH; /* attention_bwd (B,T,NH) and xent_fwd (B*T rows) of a training or eval pass */
    int S;        /* attention_decode: positions a KV cache holds (every len[b] <= S) */
    int64_t nnz;  /* csr_sddmm: nonzeros of the largest pattern */
    int bf16;     /* 1: matmul_bf16 will be called (its operand conversion scratch) */
    int ssm_D, ssm_N; /* ssm_scan_bwd over (B,T) rows of D channels and N states */
} BackendNeed;

/* An op's id, BACKEND_OP_<name>, for backend_require() and backend_op_names[]. */
typedef enum {
#define PEFTC_BACKEND_OP_ID_(ret, name, params) BACKEND_OP_##name,
    PEFTC_BACKEND_OPS(PEFTC_BACKEND_OP_ID_)
#undef PEFTC_BACKEND_OP_ID_
    BACKEND_OP_COUNT
} BackendOp;

/* "matmul", "csr_spmm", ...: each op's name as in the list, by id. */
extern const char *const backend_op_names[BACKEND_OP_COUNT];

/* An instance: its table of ops and its own state. Every op takes the instance first
 * (be->matmul(be, C, A, ...)), so two instances never share scratch, streams or errors. */
struct Backend {
    const char *name;
    Device device;                 /* where alloc() places memory */
    void *impl;                    /* the instance's state, private to the backend */
    void (*destroy)(Backend *be);  /* backend_free(); NULL for an instance that is never freed */
#define PEFTC_BACKEND_FIELD_(ret, name, params) ret(*name) params;
    PEFTC_BACKEND_OPS(PEFTC_BACKEND_FIELD_)
#undef PEFTC_BACKEND_FIELD_
};

/* Whether be implements op (its table entry is not NULL). */
int backend_has(const Backend *be, BackendOp op);

/* Asks once, before a run starts, for every op it will call: OK, or EINVAL with one message naming
 * the backend and each op of ops(n) it lacks, in the order asked, e.g. "train.device=cuda: the cuda
 * backend lacks csr_spmm, csr_sddmm (needed by method rosa)". who (the setting that chose the backend)
 * and needed_by may be NULL. */
PeftcStatus backend_require(const Backend *be, const BackendOp *ops, int n, const char *who, const char *needed_by);

/* Releases an instance made by a backend_*_create(); NULL and the shared backend_cpu() are no-ops. */
void backend_free(Backend *be);

/* Host memory in which to write the n values of backend tensor dst: dst itself on the CPU, a temporary
 * elsewhere (NULL if it cannot be allocated). backend_host_done() uploads the temporary and frees it.
 * For initialisers and tables that are computed on the host once. */
real_t *backend_host_begin(const Backend *be, real_t *dst, size_t n);
void backend_host_done(const Backend *be, real_t *dst, real_t *host, size_t n);

/* The shared default CPU instance (OpenBLAS + OpenMP). Never NULL. Its scratch grows with every
 * reserve() any user makes of it. */
const Backend *backend_cpu(void);

/* A CPU instance of its own (scratch and error state not shared), freed with backend_free(). ENOMEM
 * when the host is out of memory. */
PeftcStatus backend_cpu_create(Backend **out);

/* Fills cos, sin (T, half) for RoPE: pair i at position t turns by t * inv_freq[i] (half), and both
 * tables are multiplied by scale (YaRN's attention factor; 1 otherwise). Computed in double, stored
 * as real_t. */
void rope_tables_freq(real_t *cos, real_t *sin, int T, int half, const double *inv_freq, double scale);
/* The unscaled tables (T, HD/2) for base theta: inv_freq[i] = theta^(-2i/HD). */
void rope_tables(real_t *cos, real_t *sin, int T, int HD, double theta);

/* rope_tables_freq() into backend memory. */
PeftcStatus backend_rope_tables(const Backend *be, real_t *cos, real_t *sin, int T, int half, const double *inv_freq,
                                double scale);

/* Whether this CPU multiplies bf16 in hardware, as oneDNN sees it: 1 with AMX or AVX512-BF16 (*what
 * names which), else 0 (*what says what is missing; matmul_bf16 then rounds its operands and runs the
 * fp32 kernels, slower than fp32 itself). what may be NULL. */
int backend_cpu_bf16_native(const char **what);

/* Sets the number of threads the CPU backend uses (OpenMP and OpenBLAS); n <= 0 means all cores. */
void backend_cpu_set_threads(int n);

#endif
