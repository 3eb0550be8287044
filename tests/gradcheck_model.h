/* Finite-difference check of a whole model's summed loss with respect to every arena tensor, shared
 * by the grad_* suites of each method. Double-precision library only. */
#ifndef PEFTC_GRADCHECK_MODEL_H
#define PEFTC_GRADCHECK_MODEL_H

#include <string.h>

#include "core/arena.h"
#include "core/llama.h"
#include "tests/testutil.h"

/* One fixed training batch of a model: tokens, targets (B*T), row keys (B*T) for dropout. */
typedef struct {
    LlamaModel *model;
    const int32_t *tokens, *targets;
    const uint64_t *row_keys;
    int B, T;
} GcBatch;

static inline double gc_loss(void *ctx) {
    GcBatch *b = ctx;
    double loss;
    int64_t n;
    ck_assert_int_eq(llama_forward(b->model, b->tokens, b->targets, b->row_keys, 1, b->B, b->T, &loss, &n), PEFTC_OK);
    return loss;
}

/* Analytic gradient of the summed loss, then every arena tensor against central differences; every
 * tensor's gradient must also be non-zero (a silently skipped term would pass a zero check). */
static inline void gc_check_arena(GcBatch *b, Arena *arena) {
    arena->be->zero(arena->grads, arena->numel);
    gc_loss(b);
    llama_backward(b->model, b->tokens, b->targets, b->row_keys, 1);
    real_t *g = malloc(arena->numel * sizeof *g);
    memcpy(g, arena->grads, arena->numel * sizeof *g);
    double worst = 0;
    for (int i = 0; i < arena->n_entries; i++) {
        const ArenaEntry *e = &arena->entries[i];
        double err = tu_gradcheck(gc_loss, b, arena->params + e->offset, g + e->offset, e->numel, 1e-6, 40, e->name);
        ck_assert_msg(err < 1e-7, "gradient of %s: relative error %.3g", e->name, err);
        double gnorm = 0;
        for (size_t j = 0; j < e->numel; j++) gnorm += g[e->offset + j] * g[e->offset + j];
        ck_assert_msg(gnorm > 0, "gradient of %s is identically zero", e->name);
        if (err > worst) worst = err;
    }
    printf("  %d tensors, worst relative error %.2e\n", arena->n_entries, worst);
    free(g);
}

#endif
