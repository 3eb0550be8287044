/* Byte-level BPE tokenizer (GPT-2 / SmolLM2 / LLaMA-3 / Qwen2 family).
 *
 * Text -> special tokens split out literally -> the rest NFC-normalized when tokenizer.json says so ->
 * pre-tokenizer split (per the model's `pre` name) -> bytes mapped to the GPT-2 byte-to-unicode
 * alphabet -> BPE merges by rank -> ids. Decoding maps ids back to bytes; special tokens decode to their
 * literal text. */
#ifndef PEFTC_TOKENIZER_H
#define PEFTC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/formats/gguf.h"
#include "core/base/status.h"

/* How raw text is split before BPE. */
typedef enum {
    PRETOK_GPT2 = 0,   /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    PRETOK_SMOLLM,     /* every digit alone (\p{N}), then GPT-2 */
    PRETOK_LLAMA3,     /* LLaMA-3's pattern: case-insensitive contractions, \p{N}{1,3}, ... */
    PRETOK_QWEN2,      /* Qwen2's: LLaMA-3's with \p{N} (every digit alone) */
} PretokKind;

typedef struct Tokenizer Tokenizer;

/* From the GGUF metadata tokenizer.ggml.{model="gpt2", pre, tokens, token_type, merges, bos/eos ids,
 * add_bos_token}; EFORMAT naming the key when something is missing or another model type is used. */
PeftcStatus tok_load_gguf(Tokenizer **out, const GgufFile *g);
/* From an HF tokenizer.json (model.type "BPE" with byte-level pre-tokenizer/decoder, added_tokens);
 * tokenizer_config.json beside it, if present, gives bos/eos and add_bos_token. */
PeftcStatus tok_load_hf(Tokenizer **out, const char *tokenizer_json_path);
/* Loads whichever the model path holds: a GGUF file, or an HF folder containing tokenizer.json. */
PeftcStatus tok_load(Tokenizer **out, const char *model_path);
void tok_free(Tokenizer *t);
/* Writes t as dir/tokenizer.json and dir/tokenizer_config.json (bos/eos, add_bos_token, the chat template,
 * model_max_length when max_len > 0) that transformers' PreTrainedTokenizerFast and tok_load_hf read
 * back with the same ids: how a GGUF model's tokenizer reaches an HF folder. */
PeftcStatus tok_write_hf(const Tokenizer *t, const char *dir, int64_t max_len);

int tok_vocab_size(const Tokenizer *t);
/* -1 when the model has none. */
int tok_bos(const Tokenizer *t);
int tok_eos(const Tokenizer *t);
int tok_add_bos(const Tokenizer *t); /* whether plain-text encoding starts with BOS */
/* Id of an exact token string (special or not), or -1. */
int tok_find(const Tokenizer *t, const char *piece);
/* Token string as stored (byte-level alphabet for normal tokens). */
const char *tok_piece(const Tokenizer *t, int id);
int tok_is_special(const Tokenizer *t, int id);
/* The model's chat template text (GGUF tokenizer.chat_template, tokenizer_config.json's chat_template),
 * for chat_detect; "" when none. */
const char *tok_chat_template(const Tokenizer *t);
/* A stable 64-bit hash of vocabulary, merges, specials and pre-tokenizer (for cache keys). */
uint64_t tok_hash(const Tokenizer *t);

/* Encodes n bytes of UTF-8 text. With allow_special, special-token strings in the text become their
 * ids; without, they are encoded as ordinary text. Does not add BOS. Appends to a growing array:
 * *ids (capacity *cap, reallocated as needed), *n_ids updated. */
PeftcStatus tok_encode(const Tokenizer *t, const char *text, size_t n, int allow_special, int32_t **ids,
                       size_t *n_ids, size_t *cap);
/* Decodes ids to UTF-8 bytes into a new NUL-terminated string (caller frees); *len excludes the NUL.
 * skip_special leaves special tokens out. */
PeftcStatus tok_decode(const Tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
                       size_t *len);

#endif
