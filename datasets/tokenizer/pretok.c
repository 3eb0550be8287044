/* The pre-tokenizer patterns, each scanner reproducing the regular expression's ordered alternation
 * (the first alternative that matches wins, greedy runs give back characters only for a look-ahead):
 *
 *   GPT2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   LLAMA3 (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 *          \s*[\r\n]+|\s+(?!\S)|\s+
 *   QWEN2  LLAMA3 with \p{N} for \p{N}{1,3}: every digit alone
 *   SMOLLM every \p{N} alone, then GPT2 on the text between them (its look-ahead stops at a digit).
 *
 * Every character starts some alternative, so pieces follow each other without gaps and each one is
 * "the match at the current position". */
#include "datasets/tokenizer/pretok.h"

#include <stdint.h>
#include <utf8proc.h>

typedef enum { CC_OTHER, CC_LETTER, CC_NUMBER, CC_SPACE } CharClass;

typedef struct {
    int len; /* bytes */
    CharClass cls;
} Ch;

static CharClass class_of(int32_t cp) {
    if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x85) return CC_SPACE;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: return CC_LETTER;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO: return CC_NUMBER;
    case UTF8PROC_CATEGORY_ZS: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: return CC_SPACE;
    default: return CC_OTHER;
    }
}

/* The character at s[i] (i < n); an invalid UTF-8 byte is one "other" character. */
static Ch char_at(const char *s, size_t n, size_t i) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
        CharClass cls = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ? CC_LETTER
                        : (c >= '0' && c <= '9')                         ? CC_NUMBER
                        : (c == ' ' || (c >= 0x09 && c <= 0x0D))         ? CC_SPACE
                                                                         : CC_OTHER;
        return (Ch){1, cls};
    }
    utf8proc_int32_t cp;
    utf8proc_ssize_t len = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
    if (len <= 0) return (Ch){1, CC_OTHER};
    return (Ch){(int)len, class_of(cp)};
}

static size_t run_end(const char *s, size_t n, size_t i, CharClass cls) {
    while (i < n) {
        Ch c = char_at(s, n, i);
        if (c.cls != cls) break;
        i += (size_t)c.len;
    }
    return i;
}

static int is_crlf(char c) { return c == '\r' || c == '\n'; }

/* Matches the letter c of a contraction at s[i]; case-insensitive folding as Oniguruma's Unicode (?i),
 * where the long s U+017F folds to 's'. Returns the bytes matched or 0. */
static size_t letter_at(const char *s, size_t n, size_t i, char c, int fold) {
    if (i >= n) return 0;
    if (s[i] == c) return 1;
    if (!fold) return 0;
    if (s[i] == c - 'a' + 'A') return 1;
    if (c == 's' && i + 1 < n && (unsigned char)s[i] == 0xC5 && (unsigned char)s[i + 1] == 0xBF) return 2;
    return 0;
}

/* 's|'t|'re|'ve|'m|'ll|'d at s[p]: bytes matched or 0. */
static size_t contraction(const char *s, size_t n, size_t p, int fold) {
    static const char *const suffixes[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    if (s[p] != '\'') return 0;
    for (size_t k = 0; k < sizeof suffixes / sizeof *suffixes; k++) {
        size_t i = p + 1;
        const char *c = suffixes[k];
        for (; *c; c++) {
            size_t m = letter_at(s, n, i, *c, fold);
            if (!m) break;
            i += m;
        }
        if (!*c) return i - p;
    }
    return 0;
}

/* \s+(?!\S)|\s+ at a whitespace character s[p]: the run up to the end of the text, or the run less its
 * last character when something else follows and the run has more than one. */
static size_t space_tail(const char *s, size_t n, size_t p) {
    size_t i = p, last = p;
    while (i < n) {
        Ch c = char_at(s, n, i);
        if (c.cls != CC_SPACE) break;
        last = i;
        i += (size_t)c.len;
    }
    if (i == n || last == p) return i - p;
    return last - p;
}

static size_t gpt2_piece(const char *s, size_t n, size_t p) {
    size_t m = contraction(s, n, p, 0);
    if (m) return m;
    size_t q = p;
    Ch c = char_at(s, n, p);
    if (s[p] == ' ' && p + 1 < n) {
        Ch next = char_at(s, n, p + 1);
        if (next.cls != CC_SPACE) {
            q = p + 1;
            c = next;
        }
    }
    if (c.cls != CC_SPACE) return run_end(s, n, q, c.cls) - p;
    return space_tail(s, n, p);
}

/* LLAMA3 (max_digits 3) and QWEN2 (max_digits 1). */
static size_t llama3_piece(const char *s, size_t n, size_t p, int max_digits) {
    size_t m = contraction(s, n, p, 1);
    if (m) return m;
    Ch c = char_at(s, n, p);
    if (c.cls == CC_LETTER) return run_end(s, n, p, CC_LETTER) - p;
    size_t after = p + (size_t)c.len;
    if (c.cls != CC_NUMBER && !is_crlf(s[p]) && after < n && char_at(s, n, after).cls == CC_LETTER)
        return run_end(s, n, after, CC_LETTER) - p;
    if (c.cls == CC_NUMBER) {
        size_t i = p;
        for (int k = 0; k < max_digits && i < n; k++) {
            Ch d = char_at(s, n, i);
            if (d.cls != CC_NUMBER) break;
            i += (size_t)d.len;
        }
        return i - p;
    }
    size_t q = p;
    if (s[p] == ' ' && after < n && char_at(s, n, after).cls == CC_OTHER) q = after;
    if (char_at(s, n, q).cls == CC_OTHER) {
        size_t i = run_end(s, n, q, CC_OTHER);
        while (i < n && is_crlf(s[i])) i++;
        return i - p;
    }
    /* Whitespace: \s*[\r\n]+ takes the run up to its last line break, if it has one. */
    size_t end = run_end(s, n, p, CC_SPACE), brk = 0;
    for (size_t i = p; i < end; i++)
        if (is_crlf(s[i])) brk = i + 1;
    if (brk) return brk - p;
    return space_tail(s, n, p);
}

void pretok_init(Pretok *p, PretokKind kind, const char *s, size_t n) {
    *p = (Pretok){.kind = kind, .s = s, .n = n, .pos = 0, .seg_end = 0};
}

int pretok_next(Pretok *p, size_t *start, size_t *len) {
    if (p->pos >= p->n) return 0;
    size_t m;
    if (p->kind == PRETOK_LLAMA3 || p->kind == PRETOK_QWEN2) {
        m = llama3_piece(p->s, p->n, p->pos, p->kind == PRETOK_QWEN2 ? 1 : 3);
    } else if (p->kind == PRETOK_GPT2) {
        m = gpt2_piece(p->s, p->n, p->pos);
    } else {
        if (p->pos >= p->seg_end) {
            Ch c = char_at(p->s, p->n, p->pos);
            if (c.cls == CC_NUMBER) {
                *start = p->pos;
                *len = (size_t)c.len;
                p->pos += *len;
                return 1;
            }
            size_t i = p->pos;
            while (i < p->n) {
                Ch d = char_at(p->s, p->n, i);
                if (d.cls == CC_NUMBER) break;
                i += (size_t)d.len;
            }
            p->seg_end = i;
        }
        m = gpt2_piece(p->s, p->seg_end, p->pos);
    }
    *start = p->pos;
    *len = m;
    p->pos += m;
    return 1;
}
