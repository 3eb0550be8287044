/* One backend allocation for a pass's many buffers: their sizes are fixed for the run, so separate
 * blocks would gain nothing, and one free releases them all. */
#ifndef PEFTC_CARVE_H
#define PEFTC_CARVE_H

#include <stddef.h>

#include "core/backend/backend.h"

typedef struct {
    void **ptr;   /* receives the buffer's address */
    size_t bytes;
} Carve;

/* Allocates the n buffers of plan, each at a 64-byte boundary, in one block of *total bytes (zeroed, as
 * be->alloc gives) and points every ptr into it. Returns the block (free it with be->free), or NULL
 * with *total set for the caller's message. */
void *carve_alloc(const Backend *be, const Carve *plan, size_t n, size_t *total);

#endif
