/* Learning-rate schedule: linear warm-up from 0, then cosine, linear or constant decay to
 * min_ratio * peak at the last step. Returns a factor in [0, 1] that multiplies each group's lr. */
#ifndef PEFTC_SCHEDULE_H
#define PEFTC_SCHEDULE_H

#include <stdint.h>

typedef enum { SCHED_COSINE = 0, SCHED_LINEAR = 1, SCHED_CONSTANT = 2 } SchedType;

typedef struct {
    SchedType type;
    int64_t warmup;    /* steps of linear warm-up */
    int64_t total;     /* total optimizer steps */
    double min_ratio;  /* final lr as a fraction of peak (cosine, linear) */
} Schedule;

/* Names indexed by SchedType, NULL-terminated: what configurations spell. */
extern const char *const sched_names[];
/* Factor for 0-based optimizer step `step` (the update that produces step+1). */
double sched_factor(const Schedule *s, int64_t step);

#endif
