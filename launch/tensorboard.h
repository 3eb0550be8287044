/* TensorBoard scalars of a run (output.tensorboard), written by rank 0 beside the metrics CSV into
 * <output.dir>/tensorboard, with the tag names of Hugging Face's Trainer:
 *
 *   train/loss, train/learning_rate, train/grad_norm, train/tokens_per_second   every optimizer step
 *   eval/loss                                                                   every held-out evaluation
 *   eval/exact_match   before and after training when eval.examples > 0 (a fraction, 0 to 1)
 *
 * The values are the metrics CSV's (tokens_per_second is its tokens_per_s), as float32. Every record
 * is flushed as written, so a killed job keeps its curve. */
#ifndef PEFTC_TENSORBOARD_H
#define PEFTC_TENSORBOARD_H

#include "core/train/trainer.h"

typedef struct TbWriter TbWriter;

/* Creates dir (and its parents) and a new event file in it, named as TensorBoard's own writer names
 * its files: events.out.tfevents.<unix time>.<host>.<pid>.<n>, n counting up past an existing name. It
 * opens with a START at step 0, or after resumed_at, the checkpoint step a resumed run continues from
 * (see tensorboard.c). */
PeftcStatus tb_open(TbWriter **out, const char *dir, int64_t resumed_at);
PeftcStatus tb_step(TbWriter *w, const StepStats *s);
PeftcStatus tb_eval(TbWriter *w, const EvalStats *s);
PeftcStatus tb_exact_match(TbWriter *w, int64_t step, double fraction);
const char *tb_path(const TbWriter *w);
/* Closes and frees w (NULL is fine); reports a failed close. */
PeftcStatus tb_close(TbWriter *w);

#endif
