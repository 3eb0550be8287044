/* Inference with a KV cache: prefill a prompt per row, then decode one token per row per step for a
 * batch of rows that may sit at different positions. Attached adapters take part (dropout off). */
#ifndef PEFTC_GENERATE_H
#define PEFTC_GENERATE_H

#include "core/models/llama/llama.h"

typedef struct {
    int B;          /* rows */
    int S;          /* capacity in positions per row */
    int *len;       /* (B) positions filled per row */
    real_t *k, *v;  /* (L, B, S, NKV*HD) keys after RoPE, values */
    /* work buffers for one decode step of B rows or one prefill of up to S tokens */
    void *work;
} KvCache;

PeftcStatus kv_create(KvCache *c, const LlamaModel *m, int B, int S);
void kv_free(KvCache *c);
/* Empties row b (len 0) so it can take a new prompt. */
void kv_reset_row(KvCache *c, int b);

/* Runs the n prompt tokens of row b (appended after what the row holds) and writes the logits of the
 * last one into logits (V, host memory). EINVAL when the row would exceed S. */
PeftcStatus gen_prefill(LlamaModel *m, KvCache *c, int b, const int32_t *tokens, int n, real_t *logits);
/* One token for each row with active[b] != 0 (active may be NULL = all): appends tokens[b] at
 * position len[b] and writes that row's next-token logits into logits (B, V, host memory). */
PeftcStatus gen_decode(LlamaModel *m, KvCache *c, const int32_t *tokens, const uint8_t *active, real_t *logits);

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
PeftcStatus gen_generate(LlamaModel *m, const SamplerConfig *sc, int B, const int32_t *const *ids, const int *n,
                         int max_new, const int32_t *stop, int n_stop, int32_t **out, int *out_n,
                         GenTokenFn on_token, void *user);

#endif
