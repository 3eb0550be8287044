/* GMT (Gradient-Mask Tuning, arXiv 2406.15330): full fine-tuning in which every optimizer step keeps,
 * in each trainable tensor, only the entries with the largest accumulated gradient magnitude.
 *
 * The five concerns of METHODS.md: (a) which tensors train and (b) their init are full fine-tuning's
 * (adapters/full.h: every base tensor, copied from the frozen base); (c) forward and backward are the
 * plain model's; what GMT adds is the update rule, installed as the trainer's GradHook; (d) there is
 * nothing to merge, the arena IS the model's weights; (e) checkpoints and exports are full
 * fine-tuning's (whole tensors).
 *
 * The mask is recomputed every step from the gradient after accumulation, the data-parallel
 * all-reduce and the normalisation by the global token count, so every rank computes the same mask
 * from the same numbers. Per tensor, numel - floor(mask_ratio * numel) entries are kept: the largest
 * |g|, and among equal |g| the lower flat index, so the mask is a function of the gradient alone.
 * Masked gradients become zero, then the trainer clips and runs AdamW:
 *   zero: AdamW sees the zeros; masked entries still move by their moment history and weight decay.
 *   skip: masked entries keep their parameter and their m and v exactly (saved before the update,
 *         restored after it).
 * Host code reads and writes the arena, so only the CPU backend is supported. */
#ifndef PEFTC_GMT_H
#define PEFTC_GMT_H

#include <stdint.h>

#include "core/nn/arena.h"
#include "core/train/trainer.h"

typedef enum { GMT_ZERO = 0, GMT_SKIP = 1 } GmtUpdate;

/* Names indexed by GmtUpdate, NULL-terminated: what configurations spell (gmt.masked_update). */
extern const char *const gmt_update_names[];

typedef struct {
    double mask_ratio; /* fraction of each tensor's entries MASKED, in [0, 1); 0 is full fine-tuning */
    GmtUpdate update;
} GmtConfig;

/* The per-step keep mask (one byte per arena entry) and, for skip, room for the parameter and
 * moments of every masked entry. */
typedef struct Gmt Gmt;

/* For arena `a` (finalized, on the CPU backend). EINVAL names gmt.mask_ratio or gmt.masked_update
 * when cfg is out of range, and the backend when it is not the CPU. */
PeftcStatus gmt_create(Gmt **out, const Arena *a, const GmtConfig *cfg);
void gmt_free(Gmt *g);

/* The hook to pass to trainer_set_grad_hook; g must outlive the steps that use it. */
GradHook gmt_hook(Gmt *g);

/* Entries kept in a tensor of numel entries: numel - floor(mask_ratio * numel), at least 1. */
int64_t gmt_kept(const GmtConfig *cfg, int64_t numel);

/* The last step's mask, indexed like the arena's flat buffers: 1 = kept, 0 = masked. All ones before
 * the first step, and always on the padding between tensors. */
const uint8_t *gmt_keep_mask(const Gmt *g);

#endif
