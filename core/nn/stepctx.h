/* What one forward/backward pass needs to know besides tensors. */
#ifndef PEFTC_STEPCTX_H
#define PEFTC_STEPCTX_H

#include <stdint.h>

#include "core/base/real.h"

typedef struct {
    int training;              /* 0 in eval: dropout off */
    const uint64_t *row_keys;  /* (R) one RNG key per activation row, derived from (seed, step,
                                  sample id, position): randomness follows the sample, not the rank */
    /* Shared scratch owned by the model, valid for the duration of one op call (not across calls). */
    real_t *scratch;           /* (R * scratch_cols) */
    uint8_t *mask_scratch;     /* (R * scratch_cols) */
    uint64_t *key_scratch;     /* (R) host memory: row keys are index arrays (backend.h) */
    int scratch_cols;
    int bf16;                  /* 1: the step's matmuls take bf16 inputs, fp32 sums (train.precision) */
} StepCtx;

#endif
