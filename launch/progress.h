/* The rank-0 progress reporter: one line per step with loss, lr, gradient norm, throughput and ETA.
 *
 * On a terminal the step line is redrawn in place; evaluation results and the last step stay on their
 * own lines. Otherwise (a log file, a batch job) a plain line is printed every log_every steps and at
 * the last step, so logs stay short and greppable. */
#ifndef PEFTC_PROGRESS_H
#define PEFTC_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

#include "core/train/trainer.h"

typedef struct Progress Progress;

/* log_every < 1 is treated as 1. `out` stays the caller's. */
PeftcStatus progress_create(Progress **out, FILE *f, int is_tty, int64_t log_every);
void progress_step(Progress *p, const StepStats *s);
void progress_eval(Progress *p, const EvalStats *s);
/* Ends a pending in-place line and frees p (NULL is fine). */
void progress_finish(Progress *p);

/* The step line without decoration, e.g. "step 40/300 | loss 1.2345 | lr 2.95e-03 | gnorm 0.812 |
 * 5321 tok/s (1830 target) | 12.3 ms/step | ETA 0:00:05": tok/s counts every input position processed,
 * padding included (StepStats.seq_tokens), "target" the positions with a loss (StepStats.tokens), the
 * rate packing raises. Exposed for tests and for callers that log elsewhere. */
void progress_format_step(char *buf, size_t n, const StepStats *s, double tok_per_s, double target_per_s,
                          double sec_per_step);

#endif
