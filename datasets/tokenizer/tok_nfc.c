/* The NFC normalizer of tokenizer.json (Qwen2), with utf8proc's composition. HF normalizes Rust strings,
 * which are always UTF-8; raw bytes that are not reach here too (training files), so each invalid byte
 * is kept as it is and only the valid text around it is normalized. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "datasets/tokenizer/tok_internal.h"

typedef struct {
    char *buf;
    size_t n, cap;
} Buf;

static PeftcStatus put(Buf *b, const void *s, size_t len) {
    if (b->n + len > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + len) cap *= 2;
        char *p = realloc(b->buf, cap);
        if (!p) return PEFTC_ERR(PEFTC_ENOMEM, "encode: out of memory normalizing %zu bytes to NFC", b->n + len);
        b->buf = p;
        b->cap = cap;
    }
    memcpy(b->buf + b->n, s, len);
    b->n += len;
    return PEFTC_OK;
}

/* Appends the NFC form of the valid UTF-8 text s[0..n). */
static PeftcStatus put_nfc(Buf *b, const char *s, size_t n) {
    if (n == 0) return PEFTC_OK;
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t len = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &nfc,
                                        UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (len < 0)
        return PEFTC_ERR(len == UTF8PROC_ERROR_NOMEM ? PEFTC_ENOMEM : PEFTC_EINVAL, "encode: NFC of %zu bytes: %s", n,
                         utf8proc_errmsg(len));
    PeftcStatus st = put(b, nfc, (size_t)len);
    free(nfc);
    return st;
}

PeftcStatus tok_nfc(const char *s, size_t n, char **out, size_t *out_n) {
    *out = NULL;
    *out_n = n;
    /* U+0000..U+02FF (lead bytes below 0xCC) are all NFC_Quick_Check=Yes with combining class 0, so a
     * text of them alone is NFC already: most text skips the copy. */
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0xCC) i++;
    if (i == n) return PEFTC_OK;
    Buf b = {0};
    size_t run = 0; /* start of the valid text not yet normalized */
    PeftcStatus st = PEFTC_OK;
    for (i = 0; i < n && st == PEFTC_OK;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t len = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (len > 0) {
            i += (size_t)len;
            continue;
        }
        st = put_nfc(&b, s + run, i - run);
        if (st == PEFTC_OK) st = put(&b, s + i, 1);
        run = ++i;
    }
    if (st == PEFTC_OK) st = put_nfc(&b, s + run, n - run);
    if (st != PEFTC_OK) {
        free(b.buf);
        return st;
    }
    *out = b.buf;
    *out_n = b.n;
    return PEFTC_OK;
}
