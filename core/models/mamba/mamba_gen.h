/* Mamba inference with its recurrent state: per layer and row, the conv window (K-1 inputs) and the SSM
 * state (D x N). Prefill runs a row's prompt through the training layer in chunks carrying the state;
 * decode advances every active row by one token. No KV cache: memory does not grow with length. */
#ifndef PEFTC_MAMBA_GEN_H
#define PEFTC_MAMBA_GEN_H

#include "core/models/mamba/mamba.h"

typedef struct MambaGen MambaGen;

PeftcStatus mamba_gen_create(MambaGen **out, MambaModel *m, int B);
void mamba_gen_free(MambaGen *g);
/* Row b starts from the zero state again. */
void mamba_gen_reset_row(MambaGen *g, int b);
/* Row b's n prompt tokens after what it holds; logits (V, host) of the last one. */
PeftcStatus mamba_gen_prefill(MambaModel *m, MambaGen *g, int b, const int32_t *tokens, int n, real_t *logits);
/* One token per row with active[b] (NULL = all); logits (B, V, host) of those rows. */
PeftcStatus mamba_gen_decode(MambaModel *m, MambaGen *g, const int32_t *tokens, const uint8_t *active,
                             real_t *logits);

#endif
