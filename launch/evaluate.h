/* Generation-based evaluation: greedy answers to held-out prompts, scored by exact match against the
 * reference answers (the task's own normalisation for built-in tasks, trimmed string equality for
 * files). Examples are split across ranks; counts are summed, so the score does not depend on the
 * world size. */
#ifndef PEFTC_EVALUATE_H
#define PEFTC_EVALUATE_H

#include "launch/session.h"

typedef struct {
    int64_t correct, total;
    double seconds;
    /* rank 0's first example, to show the reader what the model says */
    char sample_prompt[512], sample_answer[256], sample_reference[256];
} EmStats;

/* Answers the first n held-out examples (fewer if the split is smaller) with at most max_new tokens.
 * Collective: every rank must call it. */
PeftcStatus em_evaluate(Session *s, Comm *comm, int64_t n, int max_new, EmStats *out);

/* Whether the run has held-out answers to generate (text data, eval.examples > 0). */
int em_enabled(const Session *s);
/* em_evaluate over eval.examples, printed by rank 0 as "exact match <when>: c/n = x%"; *acc = c/n. */
PeftcStatus em_report(Session *s, Comm *comm, const char *when, double *acc);

#endif
