/* Loading a tokenizer from GGUF metadata (llama.cpp's tokenizer.ggml.* keys), and choosing between a
 * GGUF file and a Hugging Face folder. The tokenizer.json reader is tok_hf.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/base/str.h"
#include "datasets/tokenizer/tok_internal.h"

/* llama.cpp's token types. */
enum { TT_CONTROL = 3, TT_USER_DEFINED = 4 };

static int str_is(GgufStr s, const char *lit) { return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0; }

/* tokenizer.ggml.pre, as llama.cpp names the pre-tokenizers we reproduce. */
static PeftcStatus pre_kind(const GgufFile *g, PretokKind *kind) {
    GgufStr pre = {"default", 7};
    if (gguf_find(g, "tokenizer.ggml.pre")) PEFTC_TRY(gguf_get_str(g, "tokenizer.ggml.pre", &pre));
    if (str_is(pre, "smollm")) *kind = PRETOK_SMOLLM;
    else if (str_is(pre, "llama-bpe") || str_is(pre, "llama3")) *kind = PRETOK_LLAMA3;
    else if (str_is(pre, "qwen2")) *kind = PRETOK_QWEN2;
    else if (str_is(pre, "gpt-2") || str_is(pre, "gpt2") || str_is(pre, "default")) *kind = PRETOK_GPT2;
    else
        return PEFTC_ERR(PEFTC_EFORMAT,
                         "%s: tokenizer.ggml.pre is '%.*s'; supported: smollm, llama-bpe, llama3, qwen2, gpt-2, gpt2, "
                         "default",
                         g->file.path, (int)pre.len, pre.ptr);
    return PEFTC_OK;
}

/* A token id key: -1 when absent; EFORMAT when outside the vocabulary. */
static PeftcStatus id_key(const GgufFile *g, const char *key, int n_vocab, int *out) {
    uint32_t v;
    PEFTC_TRY(gguf_get_u32_or(g, key, UINT32_MAX, &v));
    if (v == UINT32_MAX) {
        *out = -1;
        return PEFTC_OK;
    }
    if (v >= (uint32_t)n_vocab)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s = %u is outside the vocabulary [0, %d)", g->file.path, key, v, n_vocab);
    *out = (int)v;
    return PEFTC_OK;
}

static PeftcStatus gguf_pieces(Tokenizer *t, const GgufFile *g, const GgufStr *tokens, uint64_t n_tokens) {
    int32_t *types = NULL;
    uint64_t n_types = 0;
    if (gguf_find(g, "tokenizer.ggml.token_type"))
        PEFTC_TRY(gguf_get_i32_array(g, "tokenizer.ggml.token_type", &types, &n_types));
    PeftcStatus st = PEFTC_OK;
    if (types && n_types != n_tokens)
        st = PEFTC_ERR(PEFTC_EFORMAT, "%s: tokenizer.ggml.token_type has %llu entries, tokenizer.ggml.tokens %llu",
                       g->file.path, (unsigned long long)n_types, (unsigned long long)n_tokens);
    for (uint64_t i = 0; st == PEFTC_OK && i < n_tokens; i++) {
        int kind = !types ? TOK_NORMAL : types[i] == TT_CONTROL ? TOK_SPECIAL
                 : types[i] == TT_USER_DEFINED ? TOK_ADDED : TOK_NORMAL;
        st = tok_set_piece(t, (int)i, tokens[i].ptr, tokens[i].len, kind);
    }
    free(types);
    return st;
}

static PeftcStatus gguf_merges(Tokenizer *t, const GgufFile *g) {
    GgufStr *merges;
    uint64_t n;
    PEFTC_TRY(gguf_get_str_array(g, "tokenizer.ggml.merges", &merges, &n));
    PeftcStatus st = PEFTC_OK;
    for (uint64_t i = 0; st == PEFTC_OK && i < n; i++) {
        char what[64];
        snprintf(what, sizeof what, "tokenizer.ggml.merges[%llu]", (unsigned long long)i);
        const char *sp = memchr(merges[i].ptr, ' ', merges[i].len);
        if (!sp) {
            st = PEFTC_ERR(PEFTC_EFORMAT, "%s: %s = '%.*s' is not two tokens separated by a space", g->file.path,
                           what, (int)merges[i].len, merges[i].ptr);
            break;
        }
        size_t alen = (size_t)(sp - merges[i].ptr);
        st = tok_add_merge(t, merges[i].ptr, alen, sp + 1, merges[i].len - alen - 1, what);
    }
    free(merges);
    return st;
}

static PeftcStatus gguf_fill(Tokenizer *t, const GgufFile *g) {
    PEFTC_TRY(tok_index_vocab(t));
    PEFTC_TRY(gguf_merges(t, g));
    PEFTC_TRY(id_key(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos));
    PEFTC_TRY(id_key(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos));
    /* llama.cpp's defaults: LLaMA-3 tokenizers start with BOS and use whole words found in the vocabulary. */
    t->ignore_merges = t->pre == PRETOK_LLAMA3;
    /* Qwen2's tokenizer.json normalizes to NFC; llama.cpp's converter drops the normalizer, and ids stay
     * those of the tokenizer the file was converted from (they differ only on text not in NFC). */
    t->nfc = t->pre == PRETOK_QWEN2;
    PEFTC_TRY(gguf_get_bool_or(g, "tokenizer.ggml.add_bos_token", t->pre == PRETOK_LLAMA3, &t->add_bos));
    if (gguf_find(g, "tokenizer.chat_template")) {
        GgufStr tmpl;
        PEFTC_TRY(gguf_get_str(g, "tokenizer.chat_template", &tmpl));
        PEFTC_TRY(tok_set_chat_template(t, tmpl.ptr, tmpl.len));
    }
    return tok_finish(t);
}

PeftcStatus tok_load_gguf(Tokenizer **out, const GgufFile *g) {
    *out = NULL;
    GgufStr model;
    PEFTC_TRY(gguf_get_str(g, "tokenizer.ggml.model", &model));
    if (!str_is(model, "gpt2"))
        return PEFTC_ERR(PEFTC_EFORMAT,
                         "%s: tokenizer.ggml.model is '%.*s'; only \"gpt2\" (byte-level BPE) is supported",
                         g->file.path, (int)model.len, model.ptr);
    PretokKind kind = PRETOK_GPT2;
    PEFTC_TRY(pre_kind(g, &kind));
    GgufStr *tokens;
    uint64_t n_tokens;
    PEFTC_TRY(gguf_get_str_array(g, "tokenizer.ggml.tokens", &tokens, &n_tokens));
    Tokenizer *t = NULL;
    PeftcStatus st = n_tokens > (uint64_t)INT32_MAX / 2
                         ? PEFTC_ERR(PEFTC_EFORMAT, "%s: tokenizer.ggml.tokens has %llu entries, too many",
                                     g->file.path, (unsigned long long)n_tokens)
                         : tok_new(&t, (int)n_tokens, kind, g->file.path);
    if (st == PEFTC_OK) st = gguf_pieces(t, g, tokens, n_tokens);
    free(tokens);
    if (st == PEFTC_OK) st = gguf_fill(t, g);
    if (st != PEFTC_OK) {
        tok_free(t);
        return st;
    }
    *out = t;
    return PEFTC_OK;
}

PeftcStatus tok_load(Tokenizer **out, const char *model_path) {
    *out = NULL;
    struct stat sb;
    if (stat(model_path, &sb) != 0)
        return PEFTC_ERR(PEFTC_EIO, "%s: no such file or folder (expected a GGUF file or a folder with tokenizer.json)",
                         model_path);
    if (S_ISDIR(sb.st_mode)) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tokenizer.json", model_path);
        return tok_load_hf(out, path);
    }
    if (str_ends_with(model_path, ".json")) return tok_load_hf(out, model_path);
    GgufFile g;
    PEFTC_TRY(gguf_open(&g, model_path));
    PeftcStatus st = tok_load_gguf(out, &g);
    gguf_close(&g);
    return st;
}
