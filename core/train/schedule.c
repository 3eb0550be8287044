#include "core/train/schedule.h"

#include <math.h>
#include <stddef.h>

const char *const sched_names[] = {[SCHED_COSINE] = "cosine", [SCHED_LINEAR] = "linear",
                                   [SCHED_CONSTANT] = "constant", NULL};

double sched_factor(const Schedule *s, int64_t step) {
    /* Warm-up counts from 1 so the very first update already moves (as HF's schedulers do at step 1). */
    if (step < s->warmup) return (double)(step + 1) / (double)s->warmup;
    if (s->type == SCHED_CONSTANT) return 1.0;
    int64_t decay_steps = s->total - s->warmup;
    if (decay_steps <= 1) return 1.0;
    double progress = (double)(step - s->warmup) / (double)(decay_steps - 1);
    if (progress > 1) progress = 1;
    double shape = s->type == SCHED_COSINE ? 0.5 * (1.0 + cos(3.14159265358979323846 * progress)) : 1.0 - progress;
    return s->min_ratio + (1.0 - s->min_ratio) * shape;
}
