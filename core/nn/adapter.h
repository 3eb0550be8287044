/* The adapter interface: a small vtable attached to one linear layer.
 *
 * Each method keeps the five concerns of METHODS.md visible:
 *   (a) which tensors train        -> register()   (names + shapes into the arena)
 *   (b) init from the frozen base  -> init()       (after the arena is allocated)
 *   (c) forward / backward         -> forward(), backward()
 *   (d) merge into the base weight -> merge()
 *   (e) checkpoint / export        -> export_tensors() (named tensors; the arena holds the state)
 */
#ifndef PEFTC_ADAPTER_H
#define PEFTC_ADAPTER_H

#include "core/nn/arena.h"
#include "core/nn/linear.h"
#include "core/nn/stepctx.h"

/* Receives one exported tensor: `name` in the method's export convention (PEFT names for LoRA). */
typedef PeftcStatus (*TensorSink)(void *user, const char *name, const Tensor *t);

typedef struct AdapterOps {
    const char *kind;
    PeftcStatus (*register_params)(Adapter *a, Arena *arena);
    PeftcStatus (*init)(Adapter *a, const Arena *arena, const Linear *base, uint64_t seed);
    /* Allocates what forward saves for backward, for up to max_rows rows; called once per batch
     * shape, never on the hot path. */
    PeftcStatus (*reserve)(Adapter *a, int max_rows);
    /* y(R,out) += delta(x(R,in)) */
    void (*forward)(Adapter *a, const StepCtx *ctx, real_t *y, const real_t *x, int R);
    /* own grads += ...; dx(R,in) += ... (dx may be NULL) */
    void (*backward)(Adapter *a, const StepCtx *ctx, real_t *dx, const real_t *dy, const real_t *x, int R);
    /* W(out,in) += delta */
    void (*merge)(const Adapter *a, real_t *W);
    PeftcStatus (*export_tensors)(const Adapter *a, TensorSink sink, void *user);
    void (*destroy)(Adapter *a);
} AdapterOps;

struct Adapter {
    const AdapterOps *ops;
    const Backend *be;
    char name[96]; /* the module path of the layer it adapts */
    int in, out;
    void *state;   /* method-specific */
};

/* A zeroed Adapter for layer `base` with `ops` and a zeroed state of state_bytes (a->state); errors
 * name ops->kind and the layer. */
PeftcStatus adapter_new(Adapter **out, const AdapterOps *ops, const Backend *be, const Linear *base,
                        size_t state_bytes);
/* Frees what adapter_new allocated (the state's own buffers are the caller's). */
void adapter_free(Adapter *a);

/* The input an adapter with dropout p sees: x itself (eval, or p == 0), or its dropped-out copy in
 * ctx->scratch (R,in) with the mask in ctx->mask_scratch. The mask is a pure function of (row key,
 * layer_key), so backward recomputes it instead of storing (R,in) bytes per layer. */
const real_t *adapter_dropout_input(const Adapter *a, const StepCtx *ctx, const real_t *x, int R, double p,
                                    uint64_t layer_key);

#endif
