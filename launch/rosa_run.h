/* RoSA's mask schedule (METHODS.md "Mask generation"): train LoRA for rosa.warmup steps, collect the
 * frozen weights' gradients over rosa.grad_steps steps, all-reduce the accumulators once, take the
 * same deterministic top-k on every rank, save the masks, then either start again from step 0 with
 * fresh adapters and the masks (rosa.restart, the paper's recipe) or go on in the same run. */
#ifndef PEFTC_ROSA_RUN_H
#define PEFTC_ROSA_RUN_H

#include "launch/session.h"

/* Whether the run still needs its masks generated (RoSA/SpA with density > 0 and no mask file). */
int rosa_needs_masks(const Session *s);

/* Generates the masks as above; rank 0 writes rosa.mask_path. On return the session is ready for
 * trainer_run: restarted at step 0 (restart) or at the step reached. Collective. */
PeftcStatus rosa_make_masks(Session *s, Comm *comm);

#endif
