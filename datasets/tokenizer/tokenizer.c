/* The tokenizer's tables (vocabulary and merge maps, byte alphabet, special-token index), how loaders
 * fill them, the accessors and decoding. Encoding is in tok_encode.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "datasets/tokenizer/tok_internal.h"

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 (0..32,
 * 127..160, 173) for U+0100..U+0143 in byte order. */
static int32_t byte_cp(int b) {
    if (b <= 32) return 256 + b;
    if (b >= 127 && b <= 160) return 256 + 33 + (b - 127);
    if (b == 173) return 256 + 67;
    return b;
}

int tok_byte_utf8(int b, char *out) {
    int32_t cp = byte_cp(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

int tok_char_byte(int32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 255 && cp != 173)) return cp;
    int k = cp - 256;
    if (k < 0 || k > 67) return -1;
    if (k <= 32) return k;
    if (k <= 66) return 127 + (k - 33);
    return 173;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ULL;
    return h;
}

static uint32_t pow2_at_least(size_t n) {
    uint32_t m = 16;
    while (m < n) m <<= 1;
    return m;
}

PeftcStatus tok_new(Tokenizer **out, int n_vocab, PretokKind pre, const char *source) {
    *out = NULL;
    if (n_vocab <= 0) return PEFTC_ERR(PEFTC_EFORMAT, "%s: the vocabulary is empty", source);
    Tokenizer *t = calloc(1, sizeof *t);
    if (!t) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for the tokenizer", source);
    snprintf(t->source, sizeof t->source, "%s", source);
    t->n_vocab = n_vocab;
    t->pre = pre;
    t->bos = t->eos = -1;
    t->piece = calloc((size_t)n_vocab, sizeof *t->piece);
    t->piece_len = calloc((size_t)n_vocab, sizeof *t->piece_len);
    t->kind = calloc((size_t)n_vocab, 1);
    t->chat_template = calloc(1, 1);
    *out = t;
    if (!t->piece || !t->piece_len || !t->kind || !t->chat_template)
        return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for %d tokens", source, n_vocab);
    return PEFTC_OK;
}

PeftcStatus tok_set_piece(Tokenizer *t, int id, const char *piece, size_t len, int kind) {
    if (id < 0 || id >= t->n_vocab)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: token '%.*s' has id %d, outside [0, %d)", t->source, (int)len, piece,
                         id, t->n_vocab);
    if (t->piece[id]) {
        if (t->piece_len[id] != len || memcmp(t->piece[id], piece, len) != 0)
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: id %d is given to both '%s' and '%.*s'", t->source, id,
                             t->piece[id], (int)len, piece);
        if (kind != TOK_NORMAL) t->kind[id] = (uint8_t)kind;
        return PEFTC_OK;
    }
    if (len == 0) return PEFTC_ERR(PEFTC_EFORMAT, "%s: token %d is the empty string", t->source, id);
    if (!(t->piece[id] = malloc(len + 1))) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", t->source);
    memcpy(t->piece[id], piece, len);
    t->piece[id][len] = '\0';
    t->piece_len[id] = (uint32_t)len;
    t->kind[id] = (uint8_t)kind;
    return PEFTC_OK;
}

static uint32_t str_slot(const Tokenizer *t, const char *s, size_t len) {
    return (uint32_t)fnv(0xcbf29ce484222325ULL, s, len) & t->vmap_mask;
}

int32_t tok_lookup(const Tokenizer *t, const char *s, size_t len) {
    for (uint32_t i = str_slot(t, s, len);; i = (i + 1) & t->vmap_mask) {
        int32_t id = t->vmap[i];
        if (id < 0) return -1;
        if (t->piece_len[id] == len && memcmp(t->piece[id], s, len) == 0) return id;
    }
}

PeftcStatus tok_index_vocab(Tokenizer *t) {
    uint32_t size = pow2_at_least(2 * (size_t)t->n_vocab);
    if (!(t->vmap = malloc(size * sizeof *t->vmap))) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", t->source);
    memset(t->vmap, 0xff, size * sizeof *t->vmap);
    t->vmap_mask = size - 1;
    for (int id = 0; id < t->n_vocab; id++) {
        if (!t->piece[id]) return PEFTC_ERR(PEFTC_EFORMAT, "%s: no token has id %d", t->source, id);
        uint32_t i = str_slot(t, t->piece[id], t->piece_len[id]);
        /* A repeated string keeps the last id, as llama.cpp does. */
        while (t->vmap[i] >= 0 && strcmp(t->piece[t->vmap[i]], t->piece[id]) != 0) i = (i + 1) & t->vmap_mask;
        t->vmap[i] = id;
    }
    for (int b = 0; b < 256; b++) {
        char c[2];
        t->byte_tok[b] = tok_lookup(t, c, (size_t)tok_byte_utf8(b, c));
    }
    return PEFTC_OK;
}

static uint32_t merge_slot(uint64_t key, uint32_t mask) {
    return (uint32_t)((key * 0x9E3779B97F4A7C15ULL) >> 32) & mask;
}

static PeftcStatus merge_grow(Tokenizer *t) {
    uint32_t size = t->mmap ? 2 * (t->mmap_mask + 1) : 1024;
    TokMerge *m = malloc(size * sizeof *m);
    if (!m) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for merges", t->source);
    for (uint32_t i = 0; i < size; i++) m[i].rank = -1;
    for (uint32_t j = 0; t->mmap && j <= t->mmap_mask; j++) {
        if (t->mmap[j].rank < 0) continue;
        uint32_t i = merge_slot(t->mmap[j].key, size - 1);
        while (m[i].rank >= 0) i = (i + 1) & (size - 1);
        m[i] = t->mmap[j];
    }
    free(t->mmap);
    t->mmap = m;
    t->mmap_mask = size - 1;
    return PEFTC_OK;
}

PeftcStatus tok_add_merge(Tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, const char *what) {
    if (!t->mmap || 2 * ((size_t)t->n_merges + 1) > (size_t)t->mmap_mask + 1) PEFTC_TRY(merge_grow(t));
    int32_t ia = tok_lookup(t, a, alen), ib = tok_lookup(t, b, blen), ir = -1;
    char *ab = malloc(alen + blen);
    if (!ab) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", t->source);
    memcpy(ab, a, alen);
    memcpy(ab + alen, b, blen);
    if (ia >= 0 && ib >= 0) ir = tok_lookup(t, ab, alen + blen);
    free(ab);
    if (ir < 0) {
        const char *part = ia < 0 ? "the first part" : ib < 0 ? "the second part" : "the merged token";
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s = '%.*s %.*s': %s is not in the vocabulary", t->source, what,
                         (int)alen, a, (int)blen, b, part);
    }
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    uint32_t i = merge_slot(key, t->mmap_mask);
    while (t->mmap[i].rank >= 0) {
        if (t->mmap[i].key == key) return PEFTC_OK; /* a repeated pair keeps its first (best) rank */
        i = (i + 1) & t->mmap_mask;
    }
    t->mmap[i] = (TokMerge){key, t->n_merges++, ir};
    return PEFTC_OK;
}

PeftcStatus tok_set_chat_template(Tokenizer *t, const char *text, size_t len) {
    char *s = malloc(len + 1);
    if (!s) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", t->source);
    memcpy(s, text, len);
    s[len] = '\0';
    free(t->chat_template);
    t->chat_template = s;
    return PEFTC_OK;
}

typedef struct {
    unsigned char first;
    uint32_t len;
    int32_t id;
} SpecialKey;

/* By first byte, then longest first, so the first candidate that matches is the longest. */
static int special_order(const void *pa, const void *pb) {
    const SpecialKey *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static PeftcStatus added_index(Tokenizer *t) {
    SpecialKey *keys = malloc((size_t)t->n_vocab * sizeof *keys);
    if (!keys || !(t->added = malloc((size_t)t->n_vocab * sizeof *t->added))) {
        free(keys);
        return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", t->source);
    }
    int n = 0;
    for (int id = 0; id < t->n_vocab; id++)
        if (t->kind[id] != TOK_NORMAL) keys[n++] = (SpecialKey){(unsigned char)t->piece[id][0], t->piece_len[id], id};
    qsort(keys, (size_t)n, sizeof *keys, special_order);
    int k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < n && keys[k].first < b) k++;
        t->added_start[b] = k;
    }
    for (int i = 0; i < n; i++) t->added[i] = keys[i].id;
    t->n_added = n;
    free(keys);
    return PEFTC_OK;
}

static PeftcStatus compute_hash(Tokenizer *t) {
    uint64_t h = 0xcbf29ce484222325ULL;
    int32_t head[6] = {(int32_t)t->pre, t->ignore_merges, t->n_vocab, t->bos, t->eos, t->add_bos};
    h = fnv(h, head, sizeof head);
    if (t->nfc) h = fnv(h, "nfc", 3); /* only then, so the hashes (cache keys) of other tokenizers stay */
    for (int id = 0; id < t->n_vocab; id++) {
        h = fnv(h, t->piece[id], t->piece_len[id] + 1);
        h = fnv(h, &t->kind[id], 1);
    }
    /* Merges in rank order, whatever their slots. */
    int32_t *by_rank = malloc(((size_t)t->n_merges + 1) * 2 * sizeof *by_rank);
    if (!by_rank) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", t->source);
    for (uint32_t i = 0; i <= t->mmap_mask; i++) {
        if (t->mmap[i].rank < 0) continue;
        by_rank[2 * t->mmap[i].rank] = (int32_t)(t->mmap[i].key >> 32);
        by_rank[2 * t->mmap[i].rank + 1] = (int32_t)(t->mmap[i].key & 0xffffffffu);
    }
    t->hash = fnv(h, by_rank, (size_t)t->n_merges * 2 * sizeof *by_rank);
    free(by_rank);
    return PEFTC_OK;
}

PeftcStatus tok_finish(Tokenizer *t) {
    if (!t->mmap) PEFTC_TRY(merge_grow(t));
    PEFTC_TRY(added_index(t));
    return compute_hash(t);
}

void tok_free(Tokenizer *t) {
    if (!t) return;
    for (int i = 0; t->piece && i < t->n_vocab; i++) free(t->piece[i]);
    free(t->piece);
    free(t->piece_len);
    free(t->kind);
    free(t->vmap);
    free(t->mmap);
    free(t->added);
    free(t->chat_template);
    free(t);
}

int tok_vocab_size(const Tokenizer *t) { return t->n_vocab; }
int tok_bos(const Tokenizer *t) { return t->bos; }
int tok_eos(const Tokenizer *t) { return t->eos; }
int tok_add_bos(const Tokenizer *t) { return t->add_bos; }
uint64_t tok_hash(const Tokenizer *t) { return t->hash; }
const char *tok_chat_template(const Tokenizer *t) { return t->chat_template; }

int tok_find(const Tokenizer *t, const char *piece) { return tok_lookup(t, piece, strlen(piece)); }

const char *tok_piece(const Tokenizer *t, int id) { return id >= 0 && id < t->n_vocab ? t->piece[id] : NULL; }

int tok_is_special(const Tokenizer *t, int id) { return id >= 0 && id < t->n_vocab && t->kind[id] == TOK_SPECIAL; }

/* Appends the bytes a normal token stands for: alphabet characters become their bytes, anything else
 * (never in a byte-level vocabulary, but possible in a hand-made one) is copied as it is. */
static size_t piece_bytes(const Tokenizer *t, int id, char *out) {
    const char *p = t->piece[id];
    size_t n = t->piece_len[id], o = 0;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t len = utf8proc_iterate((const utf8proc_uint8_t *)p + i, (utf8proc_ssize_t)(n - i), &cp);
        int b = len > 0 ? tok_char_byte(cp) : -1;
        if (len <= 0) len = 1;
        if (b >= 0) {
            out[o++] = (char)b;
        } else {
            memcpy(out + o, p + i, (size_t)len);
            o += (size_t)len;
        }
        i += (size_t)len;
    }
    return o;
}

PeftcStatus tok_decode(const Tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
                       size_t *len) {
    *text = NULL;
    *len = 0;
    size_t cap = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return PEFTC_ERR(PEFTC_EINVAL, "decode: token id %d at position %zu is outside the vocabulary [0, %d) of "
                             "%s", (int)ids[i], i, t->n_vocab, t->source);
        cap += t->piece_len[ids[i]]; /* a token never decodes to more bytes than its string has */
    }
    char *out = malloc(cap);
    if (!out) return PEFTC_ERR(PEFTC_ENOMEM, "decode: out of memory for %zu bytes", cap);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int id = ids[i];
        if (t->kind[id] == TOK_NORMAL) {
            o += piece_bytes(t, id, out + o);
        } else if (t->kind[id] == TOK_ADDED || !skip_special) {
            memcpy(out + o, t->piece[id], t->piece_len[id]);
            o += t->piece_len[id];
        }
    }
    out[o] = '\0';
    *text = out;
    *len = o;
    return PEFTC_OK;
}
