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

#endif
