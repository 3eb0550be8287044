/* HF tokenizer.json (datasets/tok_hf.c): vocabulary, merges, added tokens, pre-tokenizer, normalizer;
 * the input up to its first NUL byte is tokenizer.json and what follows, if anything, the
 * tokenizer_config.json beside it (bos/eos, add_bos_token, chat_template). A loaded tokenizer encodes
 * and decodes a text with special tokens, digits, non-ASCII letters and a decomposed accent. */
#include <stdlib.h>
#include <string.h>

#include "datasets/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t head = nul ? (size_t)(nul - data) : size;
    const char *path = fuzz_write("tokenizer.json", data, head);
    if (nul) fuzz_write("tokenizer_config.json", nul + 1, size - head - 1);
    else fuzz_remove("tokenizer_config.json");
    Tokenizer *tok = NULL;
    if (fuzz_note(tok_load_hf(&tok, path), "tok_load_hf") != PEFTC_OK) return 0;
    static const char text[] =
        "Hello, world! It's 2024: 12345 caf\xc3\xa9 cafe\xcc\x81 <|im_start|>user\n<|endoftext|>  x";
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    if (fuzz_note(tok_encode(tok, text, sizeof text - 1, 1, &ids, &n, &cap), "tok_encode") == PEFTC_OK) {
        char *out = NULL;
        size_t len;
        if (tok_decode(tok, ids, n, 1, &out, &len) == PEFTC_OK) free(out);
    }
    free(ids);
    (void)tok_chat_template(tok);
    (void)tok_hash(tok);
    tok_free(tok);
    return 0;
}
