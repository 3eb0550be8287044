/* A dataset maps an example id to one training sequence.
 *
 * tokens (T) are model inputs; targets (T) are the next-token labels with PEFTC_IGNORE_INDEX where no
 * loss is taken (prompt and padding). Splits keep train and held-out data apart. */
#ifndef PEFTC_DATASET_H
#define PEFTC_DATASET_H

#include <stdint.h>

#include "core/base/status.h"

typedef enum { SPLIT_TRAIN = 0, SPLIT_EVAL = 1 } Split;

typedef struct Dataset Dataset;
struct Dataset {
    const char *name;
    /* Number of examples in `split`, or -1 for an endless generator. */
    int64_t (*size)(const Dataset *ds, Split split);
    /* Writes example `id` of `split` into tokens(T) and targets(T), padding with pad_id / ignore. Entry t
     * depends only on t, not on T, so a shorter T writes a prefix of the longer row (packing relies on it). */
    PeftcStatus (*get)(const Dataset *ds, Split split, int64_t id, int32_t *tokens, int32_t *targets, int T);
    /* Input positions example `id` of `split` needs in a row of T: through the input whose target is its
     * last trained token, at most T (>= 1); what follows it takes no loss and, causal, changes nothing
     * before it. -1 for an id outside the split. NULL: the dataset cannot be packed (data.packing). */
    int (*span)(const Dataset *ds, Split split, int64_t id, int T);
    void (*free)(Dataset *ds);
    /* Smallest vocabulary the dataset's token ids fit in. */
    int vocab_needed;
    void *impl;
};

#endif
