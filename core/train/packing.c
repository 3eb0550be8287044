/* Best-fit decreasing packing of examples into windows, and the packed rows (see packing.h). */
#include "core/train/packing.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/real.h"

/* Open windows by their room r (1 .. T-1): a stack of window ids per r, and a bit per r that has any,
 * so the best fit (the smallest r >= a span) is a scan over 64-bit words, not over windows. */
typedef struct {
    int64_t *head;  /* (T) top window of each room, -1 when none */
    int64_t *next;  /* (windows) the window below it in its stack */
    uint64_t *bits; /* (T/64 + 1) bit r set: head[r] >= 0 */
    int T;
} Rooms;

static int rooms_init(Rooms *r, int64_t max_windows, int T) {
    r->T = T;
    r->head = malloc((size_t)T * sizeof *r->head);
    r->next = malloc((size_t)(max_windows ? max_windows : 1) * sizeof *r->next);
    r->bits = calloc((size_t)T / 64 + 1, sizeof *r->bits);
    if (!r->head || !r->next || !r->bits) return 0;
    for (int i = 0; i < T; i++) r->head[i] = -1;
    return 1;
}

static void rooms_free(Rooms *r) {
    free(r->head);
    free(r->next);
    free(r->bits);
}

static void rooms_push(Rooms *r, int64_t w, int room) {
    r->next[w] = r->head[room];
    r->head[room] = w;
    r->bits[room / 64] |= (uint64_t)1 << (room % 64);
}

static int64_t rooms_pop(Rooms *r, int room) {
    int64_t w = r->head[room];
    r->head[room] = r->next[w];
    if (r->head[room] < 0) r->bits[room / 64] &= ~((uint64_t)1 << (room % 64));
    return w;
}

/* The smallest room >= need that an open window has, or 0 when none does. */
static int rooms_best(const Rooms *r, int need) {
    for (int word = need / 64; word <= (r->T - 1) / 64; word++) {
        uint64_t b = r->bits[word];
        if (word == need / 64) b &= ~(uint64_t)0 << (need % 64);
        if (b) return word * 64 + __builtin_ctzll(b);
    }
    return 0;
}

/* Example ids by span descending, ties by lower id: a stable counting sort over spans 1..T. */
static int64_t *order_by_span(const int32_t *span, int64_t n, int T) {
    int64_t *at = calloc((size_t)T + 1, sizeof *at), *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!at || !order) {
        free(at);
        free(order);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) at[T - span[i] + 1]++; /* key T - span: 0 for the longest */
    for (int k = 1; k <= T; k++) at[k] += at[k - 1];
    for (int64_t i = 0; i < n; i++) order[at[T - span[i]]++] = i;
    free(at);
    return order;
}

/* Window of each example in placement order: win (n); the window count in *windows. */
static void place(const int32_t *span, const int64_t *order, int64_t n, Rooms *rooms, int64_t *win,
                  int64_t *windows) {
    int64_t nw = 0;
    for (int64_t j = 0; j < n; j++) {
        int s = span[order[j]], room = rooms_best(rooms, s);
        int64_t w = room ? rooms_pop(rooms, room) : nw++;
        int left = (room ? room : rooms->T) - s;
        if (left > 0) rooms_push(rooms, w, left);
        win[j] = w;
    }
    *windows = nw;
}

/* first, members and spans from each placed example's window, keeping placement order inside windows. */
static int group(Packing *p, const int32_t *span, const int64_t *order, const int64_t *win, int64_t n) {
    p->first = calloc((size_t)p->n + 1, sizeof *p->first);
    p->members = malloc((size_t)(n ? n : 1) * sizeof *p->members);
    p->spans = malloc((size_t)(n ? n : 1) * sizeof *p->spans);
    int64_t *fill = malloc((size_t)(p->n ? p->n : 1) * sizeof *fill);
    if (!p->first || !p->members || !p->spans || !fill) {
        free(fill);
        return 0;
    }
    for (int64_t j = 0; j < n; j++) p->first[win[j] + 1]++;
    for (int64_t w = 0; w < p->n; w++) p->first[w + 1] += p->first[w];
    memcpy(fill, p->first, (size_t)p->n * sizeof *fill);
    for (int64_t j = 0; j < n; j++) {
        int64_t at = fill[win[j]]++;
        p->members[at] = order[j];
        p->spans[at] = span[order[j]];
    }
    free(fill);
    return 1;
}

PeftcStatus packing_from_spans(Packing *p, const int32_t *span, int64_t n, int T) {
    memset(p, 0, sizeof *p);
    if (T < 1 || n < 0) return PEFTC_ERR(PEFTC_EINVAL, "packing: needs T >= 1 and count >= 0, got %d and %lld", T,
                                         (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (span[i] < 1 || span[i] > T)
            return PEFTC_ERR(PEFTC_EINVAL, "packing: example %lld spans %d positions, outside [1, %d]", (long long)i,
                             span[i], T);
    p->T = T;
    p->examples = n;
    for (int64_t i = 0; i < n; i++) p->used += span[i];
    Rooms rooms;
    int64_t *order = order_by_span(span, n, T), *win = malloc((size_t)(n ? n : 1) * sizeof *win);
    int ok = order && win && rooms_init(&rooms, n, T);
    if (ok) place(span, order, n, &rooms, win, &p->n);
    if (order && win) rooms_free(&rooms);
    ok = ok && group(p, span, order, win, n);
    free(order);
    free(win);
    if (ok) return PEFTC_OK;
    packing_free(p);
    return PEFTC_ERR(PEFTC_ENOMEM, "packing: out of memory placing %lld examples", (long long)n);
}

PeftcStatus packing_build(Packing *p, const Dataset *ds, Split split, int64_t count, int T) {
    memset(p, 0, sizeof *p);
    const char *which = split == SPLIT_EVAL ? "held-out" : "train";
    if (!ds->span || count < 0)
        return PEFTC_ERR(PEFTC_EINVAL, "data.packing=true: the %s data (%s) cannot be packed: it is an endless "
                         "generator, not a set of examples; use text data or set data.packing=false", which, ds->name);
    int32_t *span = malloc((size_t)(count ? count : 1) * sizeof *span);
    if (!span) return PEFTC_ERR(PEFTC_ENOMEM, "data.packing: out of memory for %lld spans", (long long)count);
    for (int64_t i = 0; i < count; i++) {
        int n = ds->span(ds, split, i, T);
        span[i] = n;
        if (n >= 1 && n <= T) continue;
        free(span);
        return PEFTC_ERR(PEFTC_EINVAL, "data.packing: %s example %lld of %s spans %d positions, outside [1, "
                         "train.seq_len=%d]", which, (long long)i, ds->name, n, T);
    }
    PeftcStatus st = packing_from_spans(p, span, count, T);
    free(span);
    return st;
}

void packing_free(Packing *p) {
    free(p->first);
    free(p->members);
    free(p->spans);
    memset(p, 0, sizeof *p);
}

PeftcStatus packing_fill_row(const Packing *p, const Dataset *ds, Split split, int64_t w, int32_t *tokens,
                             int32_t *targets, int32_t *seg, int32_t *pos, int64_t *sample) {
    /* tokens, targets, seg, pos, sample (T) */
    int off = 0, k = 0;
    for (int64_t j = w < 0 ? 0 : p->first[w]; w >= 0 && j < p->first[w + 1]; j++, k++) {
        int n = p->spans[j];
        PEFTC_TRY(ds->get(ds, split, p->members[j], tokens + off, targets + off, n));
        for (int i = 0; i < n; i++) seg[off + i] = k, pos[off + i] = i, sample[off + i] = p->members[j];
        off += n;
    }
    /* The padding's token is any valid id: it has no target and no real token sees it. */
    for (int i = off; i < p->T; i++)
        tokens[i] = 0, targets[i] = PEFTC_IGNORE_INDEX, seg[i] = k, pos[i] = i - off, sample[i] = -1;
    return PEFTC_OK;
}
