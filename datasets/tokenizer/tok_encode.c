/* Encoding: added tokens split out literally, the rest normalized (NFC, when the tokenizer has it) and
 * pre-tokenized, and each piece's bytes merged by BPE. The merge loop keeps the candidate pairs in a
 * min-heap by (rank, position), as HF's BPE does, so a piece of n bytes costs O(n log n) however long it
 * is (long whitespace runs are one piece). */
#include <stdlib.h>
#include <string.h>

#include "datasets/tokenizer/pretok.h"
#include "datasets/tokenizer/tok_internal.h"

typedef struct {
    int32_t rank, left, right; /* candidate: merge symbols left and right (adjacent when pushed) */
    int32_t lid, rid;          /* their ids then; the entry is stale once either changed */
} Cand;

typedef struct {
    int32_t *sym, *prev, *next; /* (n) symbol ids (-1 once merged into the left neighbour), links */
    Cand *heap;                 /* (3n) at most n-1 initial pairs and 2 per merge */
    size_t n_heap;
    char *mapped;               /* (2n) the piece in the byte alphabet, for whole-piece lookup */
    size_t cap;
    uint64_t ops;               /* for tok_encode_counted: bytes, merge lookups and heap levels visited */
} Work;

typedef struct {
    int32_t **ids;
    size_t *n, *cap;
} Out;

static PeftcStatus work_reserve(Work *w, size_t n) {
    if (n <= w->cap) return PEFTC_OK;
    size_t cap = n < 64 ? 64 : n + n / 2;
    int32_t *sym = realloc(w->sym, cap * sizeof *sym);
    if (sym) w->sym = sym;
    int32_t *prev = realloc(w->prev, cap * sizeof *prev);
    if (prev) w->prev = prev;
    int32_t *next = realloc(w->next, cap * sizeof *next);
    if (next) w->next = next;
    Cand *heap = realloc(w->heap, 3 * cap * sizeof *heap);
    if (heap) w->heap = heap;
    char *mapped = realloc(w->mapped, 2 * cap);
    if (mapped) w->mapped = mapped;
    if (!sym || !prev || !next || !heap || !mapped)
        return PEFTC_ERR(PEFTC_ENOMEM, "encode: out of memory for a piece of %zu bytes", n);
    w->cap = cap;
    return PEFTC_OK;
}

static void work_free(Work *w) {
    free(w->sym);
    free(w->prev);
    free(w->next);
    free(w->heap);
    free(w->mapped);
}

static PeftcStatus out_reserve(Out *o, size_t more) {
    if (*o->n + more <= *o->cap) return PEFTC_OK;
    size_t cap = *o->cap ? *o->cap : 64;
    while (cap < *o->n + more) cap *= 2;
    int32_t *ids = realloc(*o->ids, cap * sizeof *ids);
    if (!ids) return PEFTC_ERR(PEFTC_ENOMEM, "encode: out of memory for %zu token ids", cap);
    *o->ids = ids;
    *o->cap = cap;
    return PEFTC_OK;
}

static int cand_less(const Cand *a, const Cand *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->left < b->left;
}

static void heap_push(Work *w, Cand c) {
    size_t i = w->n_heap++;
    w->ops++;
    while (i > 0) {
        w->ops++;
        size_t up = (i - 1) / 2;
        if (!cand_less(&c, &w->heap[up])) break;
        w->heap[i] = w->heap[up];
        i = up;
    }
    w->heap[i] = c;
}

static Cand heap_pop(Work *w) {
    Cand top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    w->ops++;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        w->ops++;
        if (c + 1 < n && cand_less(&w->heap[c + 1], &w->heap[c])) c++;
        if (!cand_less(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0) w->heap[i] = last;
    return top;
}

static const TokMerge *find_merge(const Tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint32_t i = (uint32_t)((key * 0x9E3779B97F4A7C15ULL) >> 32) & t->mmap_mask;; i = (i + 1) & t->mmap_mask) {
        if (t->mmap[i].rank < 0) return NULL;
        if (t->mmap[i].key == key) return &t->mmap[i];
    }
}

static void try_pair(const Tokenizer *t, Work *w, int32_t left, int32_t right) {
    w->ops++;
    const TokMerge *m = find_merge(t, w->sym[left], w->sym[right]);
    if (m) heap_push(w, (Cand){m->rank, left, right, w->sym[left], w->sym[right]});
}

/* BPE over the bytes of one piece; appends its ids (out has room for len more). */
static PeftcStatus bpe_piece(const Tokenizer *t, Work *w, const unsigned char *s, size_t len, Out *o) {
    PEFTC_TRY(work_reserve(w, len));
    w->ops += len;
    if (t->ignore_merges) {
        size_t m = 0;
        for (size_t i = 0; i < len; i++) m += (size_t)tok_byte_utf8(s[i], w->mapped + m);
        int32_t id = tok_lookup(t, w->mapped, m);
        if (id >= 0) {
            (*o->ids)[(*o->n)++] = id;
            return PEFTC_OK;
        }
    }
    for (size_t i = 0; i < len; i++) {
        if ((w->sym[i] = t->byte_tok[s[i]]) < 0)
            return PEFTC_ERR(PEFTC_EFORMAT, "encode: %s has no token for byte 0x%02x", t->source, s[i]);
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = (int32_t)i + 1;
    }
    int32_t n = (int32_t)len;
    w->n_heap = 0;
    for (int32_t i = 0; i + 1 < n; i++) try_pair(t, w, i, i + 1);
    while (w->n_heap > 0) {
        Cand c = heap_pop(w);
        if (w->sym[c.left] != c.lid || w->sym[c.right] != c.rid || w->next[c.left] != c.right) continue;
        w->sym[c.left] = find_merge(t, c.lid, c.rid)->result;
        w->sym[c.right] = -1;
        int32_t after = w->next[c.right];
        w->next[c.left] = after;
        if (after < n) w->prev[after] = c.left;
        if (w->prev[c.left] >= 0) try_pair(t, w, w->prev[c.left], c.left);
        if (after < n) try_pair(t, w, c.left, after);
    }
    for (int32_t i = 0; i < n; i = w->next[i]) (*o->ids)[(*o->n)++] = w->sym[i];
    return PEFTC_OK;
}

/* Text between added tokens: normalized on its own (HF splits added tokens out of the raw text
 * first), then pre-tokenized and merged. */
static PeftcStatus encode_text(const Tokenizer *t, Work *w, const char *text, size_t n, Out *o) {
    char *norm = NULL;
    if (t->nfc) PEFTC_TRY(tok_nfc(text, n, &norm, &n));
    if (norm) text = norm;
    Pretok p;
    pretok_init(&p, t->pre, text, n);
    size_t start, len;
    PeftcStatus st = PEFTC_OK;
    while (st == PEFTC_OK && pretok_next(&p, &start, &len)) {
        st = out_reserve(o, len);
        if (st == PEFTC_OK) st = bpe_piece(t, w, (const unsigned char *)text + start, len, o);
    }
    free(norm);
    return st;
}

/* The longest added token starting at s[i] (special ones only when allowed), or -1. */
static int32_t added_at(const Tokenizer *t, const char *s, size_t n, size_t i, int allow_special) {
    unsigned char b = (unsigned char)s[i];
    for (int32_t k = t->added_start[b]; k < t->added_start[b + 1]; k++) {
        int32_t id = t->added[k];
        if (t->kind[id] == TOK_SPECIAL && !allow_special) continue;
        if (t->piece_len[id] <= n - i && memcmp(t->piece[id], s + i, t->piece_len[id]) == 0) return id;
    }
    return -1;
}

static PeftcStatus encode_all(const Tokenizer *t, Work *w, const char *text, size_t n, int allow_special, Out *o) {
    size_t start = 0;
    if (t->n_added > 0) {
        for (size_t i = 0; i < n;) {
            int32_t id = added_at(t, text, n, i, allow_special);
            if (id < 0) {
                i++;
                continue;
            }
            PEFTC_TRY(encode_text(t, w, text + start, i - start, o));
            PEFTC_TRY(out_reserve(o, 1));
            (*o->ids)[(*o->n)++] = id;
            i += t->piece_len[id];
            start = i;
        }
    }
    return encode_text(t, w, text + start, n - start, o);
}

PeftcStatus tok_encode_counted(const Tokenizer *t, const char *text, size_t n, int allow_special, int32_t **ids,
                               size_t *n_ids, size_t *cap, uint64_t *ops) {
    Work w = {0};
    Out o = {ids, n_ids, cap};
    PeftcStatus st = encode_all(t, &w, text, n, allow_special, &o);
    if (ops) *ops = w.ops;
    work_free(&w);
    return st;
}

PeftcStatus tok_encode(const Tokenizer *t, const char *text, size_t n, int allow_special, int32_t **ids,
                       size_t *n_ids, size_t *cap) {
    return tok_encode_counted(t, text, n, allow_special, ids, n_ids, cap, NULL);
}
