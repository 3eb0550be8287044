/* Pre-tokenizer: splits text into the pieces BPE works on, as the regular expressions of Hugging Face
 * `tokenizers` (Oniguruma) and llama.cpp do, with hand-written scanners instead of a regex engine.
 *
 * Character classes follow Oniguruma's Unicode mode: \p{L} = general categories L*, \p{N} = N*, \s =
 * Zs, Zl, Zp, \t \n \v \f \r and U+0085. Bytes that are not valid UTF-8 count as one "other" character
 * each, so any byte string splits into pieces that cover it exactly. */
#ifndef PEFTC_PRETOK_H
#define PEFTC_PRETOK_H

#include <stddef.h>

#include "datasets/tokenizer/tokenizer.h"

typedef struct {
    PretokKind kind;
    const char *s;
    size_t n;       /* text s[0..n) */
    size_t pos;     /* start of the next piece */
    size_t seg_end; /* SMOLLM: end of the digit-free segment the GPT-2 pattern sees */
} Pretok;

void pretok_init(Pretok *p, PretokKind kind, const char *s, size_t n);
/* The next piece as s[*start .. *start + *len); returns 0 when the text is used up. Pieces are never
 * empty and follow each other without gaps. */
int pretok_next(Pretok *p, size_t *start, size_t *len);

#endif
