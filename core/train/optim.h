/* AdamW (decoupled weight decay, bias-corrected moments) over the whole arena, with per-group
 * learning rates, and global-norm gradient clipping. */
#ifndef PEFTC_OPTIM_H
#define PEFTC_OPTIM_H

#include "core/nn/arena.h"

typedef struct {
    double beta1, beta2, eps;
    double grad_clip; /* max global L2 norm; <= 0 disables clipping */
} AdamWConfig;

/* Global L2 norm of the arena's gradient. */
double optim_grad_norm(const Arena *a);

/* Scales the gradient so its global norm is at most max_norm (if max_norm > 0 and norm > max_norm).
 * Returns the norm before clipping. */
double optim_clip(Arena *a, double max_norm);

/* One AdamW update. step is 1-based (for bias correction); lr_factor multiplies every group's lr (the
 * schedule's value at this step). */
void optim_adamw_step(Arena *a, const AdamWConfig *c, int64_t step, double lr_factor);

#endif
