/* What every adapter's constructor and input path share. */
#include "core/nn/adapter.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/base/rng.h"

PeftcStatus adapter_new(Adapter **out, const AdapterOps *ops, const Backend *be, const Linear *base,
                        size_t state_bytes) {
    Adapter *a = calloc(1, sizeof *a);
    void *state = calloc(1, state_bytes);
    if (!a || !state) {
        free(a);
        free(state);
        return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for layer %s", ops->kind, base->name);
    }
    a->ops = ops;
    a->be = be;
    snprintf(a->name, sizeof a->name, "%s", base->name);
    a->in = base->in;
    a->out = base->out;
    a->state = state;
    *out = a;
    return PEFTC_OK;
}

void adapter_free(Adapter *a) {
    if (!a) return;
    free(a->state);
    free(a);
}

const real_t *adapter_dropout_input(const Adapter *a, const StepCtx *ctx, const real_t *x, int R, double p,
                                    uint64_t layer_key) {
    if (!ctx->training || p <= 0) return x;
    for (int r = 0; r < R; r++) ctx->key_scratch[r] = rng_key(ctx->row_keys[r], layer_key);
    a->be->dropout_fwd(a->be, ctx->scratch, ctx->mask_scratch, x, ctx->key_scratch, R, a->in, (real_t)p);
    return ctx->scratch;
}
