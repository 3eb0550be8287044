/* Inside the tokenizer: the Tokenizer's layout and how the loaders (GGUF, tokenizer.json) build one.
 * Not for use outside datasets/tok*.c, except tok_encode_counted by tests.
 *
 * Building: tok_new -> tok_set_piece for every id -> tok_index_vocab -> tok_add_merge in rank order ->
 * tok_finish. Any failure leaves the tokenizer for tok_free. */
#ifndef PEFTC_TOK_INTERNAL_H
#define PEFTC_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/tokenizer/tokenizer.h"

/* What a vocabulary entry is (Tokenizer.kind). Added tokens are split out of the raw text before it is
 * normalized and pre-tokenized, as HF's tokenizers and llama.cpp do: special ones only where special
 * tokens are allowed (never inside chat content), others always (Qwen2.5's <tool_call>; llama.cpp's
 * USER_DEFINED tokens). Both decode to their text; a decode skipping special tokens keeps the others.
 * The values are hashed: TOK_SPECIAL stays 1 so the hashes (cache keys) of tokenizers without
 * non-special added tokens do not change. */
enum { TOK_NORMAL = 0, TOK_SPECIAL = 1, TOK_ADDED = 2 };

typedef struct {
    uint64_t key; /* (left id << 32) | right id */
    int32_t rank; /* -1: empty slot */
    int32_t result;
} TokMerge;

struct Tokenizer {
    char source[512]; /* file the tokenizer came from, for messages */
    int n_vocab;
    char **piece;      /* (n_vocab) NUL-terminated token strings */
    uint32_t *piece_len;
    uint8_t *kind;     /* (n_vocab) TOK_NORMAL, TOK_SPECIAL or TOK_ADDED */
    int32_t *vmap;     /* open-addressing piece -> id, -1 empty */
    uint32_t vmap_mask;
    TokMerge *mmap;    /* open-addressing (left, right) -> rank, merged id */
    uint32_t mmap_mask;
    int32_t n_merges;
    int32_t byte_tok[256]; /* id of each byte's one-character token, -1 when the vocabulary lacks it */
    int32_t *added;        /* ids of added tokens (special or not), by first byte then longest first */
    int n_added;
    int32_t added_start[257]; /* added[added_start[b] .. added_start[b+1]) start with byte b */
    PretokKind pre;
    int ignore_merges; /* a whole pre-token found in the vocabulary is used as is (LLaMA-3) */
    int nfc;           /* text between special tokens is NFC-normalized first (tokenizer.json's NFC normalizer) */
    int bos, eos, add_bos;
    char *chat_template;
    uint64_t hash;
};

/* LLaMA-3's and Qwen2's Split patterns, as tokenizer.json spells them (JSON-decoded); tok_hf.c. */
extern const char LLAMA3_PATTERN[], QWEN2_PATTERN[];

PeftcStatus tok_new(Tokenizer **out, int n_vocab, PretokKind pre, const char *source);
/* kind: TOK_NORMAL, TOK_SPECIAL or TOK_ADDED. An id given twice keeps one piece and the added kind. */
PeftcStatus tok_set_piece(Tokenizer *t, int id, const char *piece, size_t len, int kind);
/* After every piece is set: EFORMAT naming the first id without one. */
PeftcStatus tok_index_vocab(Tokenizer *t);
/* The next merge by rank; EFORMAT (naming `what`, e.g. "merges[12]") when a part or the merged token is
 * not in the vocabulary. */
PeftcStatus tok_add_merge(Tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, const char *what);
PeftcStatus tok_set_chat_template(Tokenizer *t, const char *text, size_t len);
/* Builds the added-token index and the hash. */
PeftcStatus tok_finish(Tokenizer *t);

/* tok_encode, also giving in *ops the work its BPE did: one per byte, per merge lookup and per heap
 * level a candidate pair is pushed or popped through. The count is a pure function of the text and the
 * tokenizer, so tests can check that encoding scales as O(n log n) without timing it (a clock would
 * fail them on a busy machine). */
PeftcStatus tok_encode_counted(const Tokenizer *t, const char *text, size_t n, int allow_special, int32_t **ids,
                               size_t *n_ids, size_t *cap, uint64_t *ops);

/* s[0..n) in Unicode NFC, as tokenizer.json's NFC normalizer gives it, into a new buffer *out of *out_n
 * bytes (caller frees); *out = NULL when the text is NFC already. Bytes that are not UTF-8 stay as they
 * are and the valid text between them is normalized. */
PeftcStatus tok_nfc(const char *s, size_t n, char **out, size_t *out_n);

/* Id of the piece s[0..len), or -1. */
int32_t tok_lookup(const Tokenizer *t, const char *s, size_t len);
/* The byte-level alphabet (GPT-2's bytes_to_unicode): the character standing for byte b, written as
 * UTF-8 into out (2 bytes at most); returns its length. */
int tok_byte_utf8(int b, char *out);
/* The byte a code point stands for, or -1 when it is not in the alphabet. */
int tok_char_byte(int32_t cp);

#endif
