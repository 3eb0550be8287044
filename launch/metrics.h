/* The metrics CSV: one row per optimizer step and per evaluation, flushed as written so a killed job
 * keeps its curve.
 *
 *   kind,step,loss,lr,grad_norm,tokens,tokens_per_s,step_ms,bytes_reduced,compute_ms,allreduce_ms
 *   train,1,2.70805025,0.00015,1.03,512,48211.4,10.62,1234,9.80,0.51
 *   eval,50,1.18620741,,,2048,,,,,
 *
 * step_ms = compute_ms (forward and backward) + allreduce_ms (including the wait for the slowest
 * rank) + the optimizer update; all are rank 0's.
 * Losses are written with 9 significant digits so runs can be compared to 1e-5. */
#ifndef PEFTC_METRICS_H
#define PEFTC_METRICS_H

#include "core/train/trainer.h"

typedef struct Metrics Metrics;

/* Creates (truncates) the file and writes the header. */
PeftcStatus metrics_open(Metrics **out, const char *path);
PeftcStatus metrics_step(Metrics *m, const StepStats *s);
PeftcStatus metrics_eval(Metrics *m, const EvalStats *s);
/* For a run resumed at `step`: keeps the file's header and the rows of steps <= step (what the
 * interrupted run wrote after its checkpoint is dropped, so the curve has no repeated steps), then
 * appends. A missing file starts fresh. *first_eval and *last_eval get the losses of the first and last
 * kept eval rows, or NaN. */
PeftcStatus metrics_resume(Metrics **out, const char *path, int64_t step, double *first_eval, double *last_eval);
/* Closes and frees m (NULL is fine); reports a failed final write. */
PeftcStatus metrics_close(Metrics *m);

#endif
