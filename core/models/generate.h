/* Token sampling and batch generation through the Model interface (any family). */
#ifndef PEFTC_MODELS_GENERATE_H
#define PEFTC_MODELS_GENERATE_H

#include "core/models/model.h"

typedef struct {
    double temperature; /* 0 = greedy */
    double top_p;       /* 1 = off */
    int top_k;          /* 0 = off */
    uint64_t seed;
    /* Ids at or past this are never sampled (0 = none excluded): a model's vocabulary is often padded
     * past its tokenizer's (to a multiple of 64), and those rows' ids have no text. */
    int vocab_limit;
} SamplerConfig;

/* Picks a token from logits (V): greedy (argmax, lowest id on ties) when temperature == 0, else
 * softmax(logits / T) restricted to top-k, then to the smallest set with mass >= top_p, sampled with
 * the uniform draw keyed by (seed, row, step). Returns -1 only when it cannot allocate its sort buffer. */
int gen_sample(const SamplerConfig *sc, const real_t *logits, int V, uint64_t row, uint64_t step);

/* Batch generation: each of the B prompts (ids[b], n[b]) is prefilled, then decoded until a stop id or
 * max_new tokens. out[b] receives up to max_new ids (without the stop id), out_n[b] their count.
 * on_token (optional) is called for every new token of row 0 (for streaming to a terminal). */
typedef void (*GenTokenFn)(void *user, int32_t id);
PeftcStatus gen_generate(Model *m, const SamplerConfig *sc, int B, const int32_t *const *ids, const int *n,
                         int max_new, const int32_t *stop, int n_stop, int32_t **out, int *out_n,
                         GenTokenFn on_token, void *user);

#endif
