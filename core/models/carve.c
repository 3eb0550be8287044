#include "core/models/carve.h"

static size_t rounded(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

void *carve_alloc(const Backend *be, const Carve *plan, size_t n, size_t *total) {
    *total = 0;
    for (size_t i = 0; i < n; i++) *total += rounded(plan[i].bytes);
    char *block = be->alloc(be, *total);
    if (!block) return NULL;
    for (size_t i = 0, off = 0; i < n; i++) {
        *plan[i].ptr = block + off;
        off += rounded(plan[i].bytes);
    }
    return block;
}
