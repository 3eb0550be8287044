/* <output.dir>/summary.json: one run's outcome in a form scripts read without parsing progress lines
 * (the method comparison and scaling studies collect these).
 *
 *   {"method": "rosa", "ranks": 2, "trainable": 2441280, "steps": 40, "seed": 1, "task": "records",
 *    "eval_loss_first": 1.49, "eval_loss_last": 0.0035, "exact_match_before": 0.0,
 *    "exact_match_after": 0.969, "eval_examples": 64, "tokens_per_s": 265.0,
 *    "target_tokens_per_s": 47.7, "train_seconds": 120.1, "wall_seconds": 149.0}
 *
 * Exact-match fields are null when eval.examples is 0. Written by rank 0 with an atomic rename. */
#ifndef PEFTC_SUMMARY_H
#define PEFTC_SUMMARY_H

#include "launch/session.h"

typedef struct {
    int ranks;
    double eval_loss_first, eval_loss_last;
    int has_exact_match;
    double exact_match_before, exact_match_after;
    double tokens_per_s;        /* input positions per second, padding included */
    double target_tokens_per_s; /* positions with a loss per second */
    double train_seconds; /* the steps the metrics CSV shows */
    double wall_seconds;  /* the whole command: loading, mask generation, evaluation, saving */
} RunSummary;

PeftcStatus summary_write(const Session *s, const RunSummary *r, const char *path);

#endif
