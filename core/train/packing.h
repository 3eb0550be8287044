/* Packing (data.packing): whole examples placed back to back into rows ("windows") of T input
 * positions, so a batch carries several short examples per row instead of one example and padding.
 *
 * Placement is best-fit decreasing: examples by span descending (ties: lower id first), each into the
 * open window with the least room that still holds it, else into a new window. Examples never split: a
 * span is at most T (the dataset has already truncated longer examples as the unpacked path does).
 * The result depends only on the spans, so every rank computes the same windows.
 *
 * A packed row: the window's examples in placement order, example k of the window holding segment id k
 * and positions 0, 1, ... (RoPE restarts for each); what is left after them is padding with no targets,
 * in a segment of its own, so no real token ever attends to it. */
#ifndef PEFTC_PACKING_H
#define PEFTC_PACKING_H

#include <stdint.h>

#include "core/base/status.h"
#include "core/train/dataset.h"

typedef struct {
    int T;             /* positions per window */
    int64_t n;         /* windows */
    int64_t *first;    /* (n + 1) window w holds entries first[w] .. first[w+1] of members and spans */
    int64_t *members;  /* (examples) example ids, window by window, in placement order */
    int32_t *spans;    /* (examples) each member's span */
    int64_t examples;  /* examples packed */
    int64_t used;      /* positions they fill: sum of spans */
} Packing;

/* Packs examples 0 .. count-1 of `split` by their ds->span at T. EINVAL naming data.packing when the
 * dataset has no spans (an endless generator) or reports a bad one. */
PeftcStatus packing_build(Packing *p, const Dataset *ds, Split split, int64_t count, int T);
/* The same from spans given directly: span[i] in [1, T] is example i's (for tests). */
PeftcStatus packing_from_spans(Packing *p, const int32_t *span, int64_t count, int T);
void packing_free(Packing *p);

/* Row of window w (w < 0: an empty row, all padding): tokens, targets, seg, pos (T) as described above,
 * and sample (T), the example id at each position (-1 on padding), which keys per-example randomness. */
PeftcStatus packing_fill_row(const Packing *p, const Dataset *ds, Split split, int64_t w, int32_t *tokens,
                             int32_t *targets, int32_t *seg, int32_t *pos, int64_t *sample);

#endif
