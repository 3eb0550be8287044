/* Writing a tokenizer as Hugging Face's tokenizer.json + tokenizer_config.json: the byte-level BPE
 * (vocabulary, merges in rank order), its pre-tokenizer spelt the way tok_hf.c recognises it, the
 * special tokens as added tokens, and BOS through a template post-processor when the model adds it. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/json_file.h"
#include "datasets/tokenizer/tok_internal.h"

static cJSON *byte_level(int use_regex) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddFalseToObject(o, "add_prefix_space");
    cJSON_AddTrueToObject(o, "trim_offsets");
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

/* Sequence[first, ByteLevel(use_regex)]. */
static cJSON *sequence(cJSON *first, int use_regex) {
    cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "pretokenizers");
    cJSON_AddStringToObject(o, "type", "Sequence");
    cJSON_AddItemToArray(list, first);
    cJSON_AddItemToArray(list, byte_level(use_regex));
    return o;
}

static cJSON *pre_tokenizer(PretokKind kind) {
    cJSON *first = cJSON_CreateObject();
    if (kind == PRETOK_SMOLLM) {
        cJSON_AddStringToObject(first, "type", "Digits");
        cJSON_AddTrueToObject(first, "individual_digits");
        return sequence(first, 1);
    }
    if (kind == PRETOK_LLAMA3 || kind == PRETOK_QWEN2) {
        cJSON_AddStringToObject(first, "type", "Split");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(first, "pattern"), "Regex",
                                kind == PRETOK_QWEN2 ? QWEN2_PATTERN : LLAMA3_PATTERN);
        cJSON_AddStringToObject(first, "behavior", "Isolated");
        cJSON_AddFalseToObject(first, "invert");
        return sequence(first, 0);
    }
    cJSON_Delete(first);
    return byte_level(1);
}

/* Merges by rank as "left right" (byte-level pieces hold no spaces). */
static cJSON *merges(const Tokenizer *t) {
    const TokMerge **by_rank = calloc((size_t)t->n_merges + 1, sizeof *by_rank);
    cJSON *list = cJSON_CreateArray();
    if (!by_rank || !list) {
        free(by_rank);
        cJSON_Delete(list);
        return NULL;
    }
    for (uint32_t i = 0; i <= t->mmap_mask; i++)
        if (t->mmap[i].rank >= 0 && t->mmap[i].rank < t->n_merges) by_rank[t->mmap[i].rank] = &t->mmap[i];
    for (int32_t r = 0; r < t->n_merges; r++) {
        if (!by_rank[r]) continue;
        const char *a = t->piece[by_rank[r]->key >> 32], *b = t->piece[by_rank[r]->key & 0xffffffffu];
        char *pair = malloc(strlen(a) + strlen(b) + 2);
        if (!pair) break;
        sprintf(pair, "%s %s", a, b);
        cJSON_AddItemToArray(list, cJSON_CreateString(pair));
        free(pair);
    }
    free(by_rank);
    return list;
}

static cJSON *bpe_model(const Tokenizer *t) {
    cJSON *m = cJSON_CreateObject(), *vocab = cJSON_AddObjectToObject(m, "vocab");
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddFalseToObject(m, "fuse_unk");
    cJSON_AddFalseToObject(m, "byte_fallback");
    cJSON_AddBoolToObject(m, "ignore_merges", t->ignore_merges);
    for (int i = 0; i < t->n_vocab; i++) cJSON_AddNumberToObject(vocab, t->piece[i], i);
    cJSON_AddItemToObject(m, "merges", merges(t));
    return m;
}

static cJSON *added_tokens(const Tokenizer *t) {
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; i < t->n_vocab; i++) {
        if (t->kind[i] == TOK_NORMAL) continue;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", i);
        cJSON_AddStringToObject(a, "content", t->piece[i]);
        cJSON_AddFalseToObject(a, "single_word");
        cJSON_AddFalseToObject(a, "lstrip");
        cJSON_AddFalseToObject(a, "rstrip");
        cJSON_AddFalseToObject(a, "normalized");
        cJSON_AddBoolToObject(a, "special", t->kind[i] == TOK_SPECIAL);
        cJSON_AddItemToArray(list, a);
    }
    return list;
}

/* BOS before every sequence when the model adds it; else nothing is added. */
static cJSON *post_processor(const Tokenizer *t) {
    if (!t->add_bos || t->bos < 0) return cJSON_CreateNull();
    const char *bos = t->piece[t->bos];
    cJSON *o = cJSON_CreateObject(), *single = cJSON_AddArrayToObject(o, "single");
    cJSON_AddStringToObject(o, "type", "TemplateProcessing");
    cJSON *s = cJSON_CreateObject(), *seq = cJSON_CreateObject();
    cJSON *st = cJSON_AddObjectToObject(s, "SpecialToken"), *sq = cJSON_AddObjectToObject(seq, "Sequence");
    cJSON_AddStringToObject(st, "id", bos);
    cJSON_AddNumberToObject(st, "type_id", 0);
    cJSON_AddStringToObject(sq, "id", "A");
    cJSON_AddNumberToObject(sq, "type_id", 0);
    cJSON_AddItemToArray(single, s);
    cJSON_AddItemToArray(single, seq);
    cJSON_AddItemToObject(o, "pair", cJSON_Duplicate(single, 1));
    cJSON *specials = cJSON_AddObjectToObject(o, "special_tokens"), *sp = cJSON_AddObjectToObject(specials, bos);
    cJSON_AddStringToObject(sp, "id", bos);
    cJSON_AddItemToObject(sp, "ids", cJSON_CreateIntArray(&t->bos, 1));
    cJSON_AddItemToObject(sp, "tokens", cJSON_CreateStringArray(&bos, 1));
    return o;
}

static cJSON *tokenizer_json(const Tokenizer *t) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON_AddNullToObject(j, "truncation");
    cJSON_AddNullToObject(j, "padding");
    cJSON_AddItemToObject(j, "added_tokens", added_tokens(t));
    if (t->nfc) cJSON_AddStringToObject(cJSON_AddObjectToObject(j, "normalizer"), "type", "NFC");
    else cJSON_AddNullToObject(j, "normalizer");
    cJSON_AddItemToObject(j, "pre_tokenizer", pre_tokenizer(t->pre));
    cJSON_AddItemToObject(j, "post_processor", post_processor(t));
    cJSON *dec = byte_level(1);
    cJSON_ReplaceItemInObject(dec, "add_prefix_space", cJSON_CreateTrue());
    cJSON_AddItemToObject(j, "decoder", dec);
    cJSON_AddItemToObject(j, "model", bpe_model(t));
    return j;
}

static cJSON *tokenizer_config(const Tokenizer *t, int64_t max_len) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "tokenizer_class", "PreTrainedTokenizerFast");
    cJSON_AddBoolToObject(j, "add_bos_token", t->add_bos);
    cJSON_AddFalseToObject(j, "add_eos_token");
    if (t->bos >= 0) cJSON_AddStringToObject(j, "bos_token", t->piece[t->bos]);
    else cJSON_AddNullToObject(j, "bos_token");
    if (t->eos >= 0) cJSON_AddStringToObject(j, "eos_token", t->piece[t->eos]);
    else cJSON_AddNullToObject(j, "eos_token");
    if (t->chat_template && t->chat_template[0]) cJSON_AddStringToObject(j, "chat_template", t->chat_template);
    cJSON_AddFalseToObject(j, "clean_up_tokenization_spaces");
    if (max_len > 0) cJSON_AddNumberToObject(j, "model_max_length", (double)max_len);
    return j;
}

/* j written as dir/name. */
static PeftcStatus write_json(cJSON *j, const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return json_write_object(path, j);
}

PeftcStatus tok_write_hf(const Tokenizer *t, const char *dir, int64_t max_len) {
    PEFTC_TRY(write_json(tokenizer_json(t), dir, "tokenizer.json"));
    return write_json(tokenizer_config(t, max_len), dir, "tokenizer_config.json");
}
