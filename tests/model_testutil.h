/* Whole-model helpers shared by the method suites: the tiny LLaMA they use, a fixed training batch,
 * an eval-logits snapshot, and the finite-difference check of the summed loss with respect to every
 * arena tensor (meaningful in the double-precision library). */
#ifndef PEFTC_MODEL_TESTUTIL_H
#define PEFTC_MODEL_TESTUTIL_H

#include <string.h>

#include "core/nn/arena.h"
#include "core/models/llama/llama.h"
#include "core/base/rng.h"
#include "tests/testutil.h"

/* Hidden 16, 2 layers, 4 heads over 2 kv heads, vocab 19: every op shape, small enough for finite
 * differences. */
static inline LlamaConfig tu_tiny_config(int tie, int bias) {
    return (LlamaConfig){.hidden = 16, .intermediate = 24, .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 0,
                         .vocab = 19, .rope_theta = 10000, .rms_eps = 1e-5, .tie_embeddings = tie, .qkv_bias = bias};
}

/* A fixed batch of n positions: random tokens and targets (every fifth from the third ignored) and
 * per-row dropout keys. */
static inline void tu_fill_batch(int32_t *tokens, int32_t *targets, uint64_t *row_keys, int n, int vocab) {
    for (int i = 0; i < n; i++) {
        tokens[i] = (int32_t)(rng_u64(21, i) % (uint64_t)vocab);
        targets[i] = i % 5 == 2 ? PEFTC_IGNORE_INDEX : (int32_t)(rng_u64(22, i) % (uint64_t)vocab);
        row_keys[i] = rng_key(77, (uint64_t)i);
    }
}

/* Eval-mode logits (B*T, V) of fixed random tokens, copied into a new buffer. */
static inline real_t *tu_logits(LlamaModel *m, int B, int T) {
    int V = m->cfg.vocab;
    int32_t *tok = malloc((size_t)B * T * sizeof *tok);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(rng_u64(4, i) % (uint64_t)V);
    ck_assert_int_eq(llama_forward(m, tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    size_t n = (size_t)B * T * V;
    real_t *out = malloc(n * sizeof *out);
    memcpy(out, m->acts.logits, n * sizeof *out);
    free(tok);
    return out;
}

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
    ck_assert_int_eq(llama_forward(b->model, b->tokens, b->targets, NULL, NULL, b->row_keys, 1, b->B, b->T, &loss, &n),
                     PEFTC_OK);
    return loss;
}

/* Analytic gradient of the summed loss, then every arena tensor against central differences; every
 * tensor's gradient must also be non-zero (a silently skipped term would pass a zero check). */
static inline void gc_check_arena(GcBatch *b, Arena *arena) {
    arena->be->zero(arena->be, arena->grads, arena->numel);
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
