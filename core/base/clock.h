/* Wall time for step timings and benchmarks: a monotonic clock, immune to system clock changes. */
#ifndef PEFTC_CLOCK_H
#define PEFTC_CLOCK_H

#include <time.h>

static inline double clock_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
