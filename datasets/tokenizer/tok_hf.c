/* Loading a tokenizer from Hugging Face's tokenizer.json (a byte-level BPE model), with bos/eos,
 * add_bos_token and chat_template from the tokenizer_config.json beside it. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/base/mapped.h"
#include "datasets/tokenizer/tok_internal.h"

/* The Split patterns of LLaMA-3 and Qwen2 as tokenizer.json spells them (JSON-decoded); they differ only
 * in the digit run. */
#define SPLIT_PATTERN(digits)                                                                              \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" digits                              \
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
const char LLAMA3_PATTERN[] = SPLIT_PATTERN("{1,3}"), QWEN2_PATTERN[] = SPLIT_PATTERN("");

static PeftcStatus read_json(const char *path, cJSON **out) {
    MappedFile f;
    PEFTC_TRY(mapped_open(&f, path));
    const char *text = (const char *)f.data, *end = text;
    *out = f.size ? cJSON_ParseWithLengthOpts(text, f.size, &end, 0) : NULL;
    long long at = end ? (long long)(end - text) : 0;
    mapped_close(&f);
    if (!*out) return PEFTC_ERR(PEFTC_EFORMAT, "%s: not valid JSON (error near byte %lld)", path, at);
    if (cJSON_IsObject(*out)) return PEFTC_OK;
    cJSON_Delete(*out);
    *out = NULL;
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: expected a JSON object", path);
}

static const cJSON *item(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNull(v) ? NULL : v;
}

static const char *str_item(const cJSON *o, const char *key) {
    const cJSON *v = item(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int type_is(const cJSON *o, const char *type) {
    const char *s = str_item(o, "type");
    return s && strcmp(s, type) == 0;
}

static int flag(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = item(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static int byte_level(const cJSON *p, int use_regex) {
    return type_is(p, "ByteLevel") && !flag(p, "add_prefix_space", 0) && flag(p, "use_regex", 1) == use_regex;
}

static int split_is(const cJSON *p, const char *pattern) {
    const cJSON *pat = item(p, "pattern");
    const char *re = str_item(pat, "Regex"), *behavior = str_item(p, "behavior");
    return type_is(p, "Split") && re && strcmp(re, pattern) == 0 && behavior && strcmp(behavior, "Isolated") == 0 &&
           !flag(p, "invert", 0);
}

/* "ByteLevel", "Sequence[Digits, ByteLevel]": what the message names when the pre-tokenizer or the
 * normalizer (list_key "pretokenizers" or "normalizers") is unknown. */
static void describe(const cJSON *p, const char *list_key, char *buf, size_t n) {
    const char *type = str_item(p, "type");
    int k = snprintf(buf, n, "%s", type ? type : p ? "(no type)" : "null");
    const cJSON *list = item(p, list_key);
    if (!cJSON_IsArray(list) || k < 0 || (size_t)k >= n) return;
    const cJSON *e;
    int first = 1;
    cJSON_ArrayForEach(e, list) {
        const char *t = str_item(e, "type");
        size_t at = strlen(buf);
        snprintf(buf + at, n - at, "%s%s", first ? "[" : ", ", t ? t : "?");
        first = 0;
    }
    size_t at = strlen(buf);
    snprintf(buf + at, n - at, "]");
}

static PeftcStatus pre_kind(const cJSON *root, const char *path, PretokKind *kind) {
    const cJSON *p = item(root, "pre_tokenizer"), *list = item(p, "pretokenizers");
    int n = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : 0;
    const cJSON *a = n == 2 ? cJSON_GetArrayItem(list, 0) : NULL, *b = n == 2 ? cJSON_GetArrayItem(list, 1) : NULL;
    if (byte_level(p, 1)) {
        *kind = PRETOK_GPT2;
    } else if (type_is(p, "Sequence") && n == 2 && type_is(a, "Digits") && flag(a, "individual_digits", 0) &&
               byte_level(b, 1)) {
        *kind = PRETOK_SMOLLM;
    } else if (type_is(p, "Sequence") && n == 2 && split_is(a, LLAMA3_PATTERN) && byte_level(b, 0)) {
        *kind = PRETOK_LLAMA3;
    } else if (type_is(p, "Sequence") && n == 2 && split_is(a, QWEN2_PATTERN) && byte_level(b, 0)) {
        *kind = PRETOK_QWEN2;
    } else {
        char what[256];
        describe(p, "pretokenizers", what, sizeof what);
        return PEFTC_ERR(PEFTC_EFORMAT,
                         "%s: pre_tokenizer %s is not supported (expected ByteLevel without prefix space, "
                         "Sequence[Digits(individual_digits), ByteLevel] or LLaMA-3's or Qwen2's Sequence[Split, "
                         "ByteLevel])", path, what);
    }
    return PEFTC_OK;
}

/* normalizer: none (null, an empty Sequence) or NFC (Qwen2), alone or as the only kind in a Sequence. */
static PeftcStatus norm_kind(const cJSON *root, const char *path, int *nfc) {
    const cJSON *norm = item(root, "normalizer"), *list = item(norm, "normalizers"), *e;
    int ok = !norm || type_is(norm, "NFC") || type_is(norm, "Sequence");
    cJSON_ArrayForEach(e, list) ok &= type_is(e, "NFC");
    *nfc = ok && norm && (type_is(norm, "NFC") || cJSON_GetArraySize(list) > 0);
    if (ok) return PEFTC_OK;
    char what[256];
    describe(norm, "normalizers", what, sizeof what);
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: normalizer %s is not supported (expected null, NFC or Sequence[NFC])", path,
                     what);
}

/* The parts of tokenizer.json that would change the ids without our noticing. */
static PeftcStatus check_model(const cJSON *root, const cJSON *model, const char *path) {
    if (!cJSON_IsObject(model)) return PEFTC_ERR(PEFTC_EFORMAT, "%s: no \"model\" object", path);
    const char *type = str_item(model, "type");
    if (!type || strcmp(type, "BPE") != 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: model.type is '%s'; only \"BPE\" (byte-level) is supported", path,
                         type ? type : "(missing)");
    const char *prefix = str_item(model, "continuing_subword_prefix"), *suffix = str_item(model, "end_of_word_suffix");
    if ((prefix && *prefix) || (suffix && *suffix))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: model.%s is set; byte-level BPE uses none", path,
                         prefix && *prefix ? "continuing_subword_prefix" : "end_of_word_suffix");
    const cJSON *dropout = item(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: model.dropout is %g; a tokenizer for training data must be deterministic",
                         path, dropout->valuedouble);
    const cJSON *dec = item(root, "decoder"), *decs = item(dec, "decoders"), *d;
    int ok = !dec || type_is(dec, "ByteLevel");
    cJSON_ArrayForEach(d, decs) ok |= type_is(d, "ByteLevel");
    if (!ok) return PEFTC_ERR(PEFTC_EFORMAT, "%s: decoder %s is not byte-level", path, str_item(dec, "type"));
    return PEFTC_OK;
}

static PeftcStatus token_id(const cJSON *v, const char *path, const char *what, const char *name, int *id) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e8 || v->valuedouble != (double)v->valueint)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s '%s' needs a non-negative integer id", path, what, name);
    *id = v->valueint;
    return PEFTC_OK;
}

/* More ids than entries: names the first id without a token (one of 0..entries must be free). */
static PeftcStatus id_gap(const cJSON *vocab, const cJSON *added, const char *path, int max, int entries) {
    unsigned char *seen = calloc((size_t)entries + 1, 1);
    if (!seen) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", path);
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) if (e->valueint <= entries) seen[e->valueint] = 1;
    cJSON_ArrayForEach(e, added) {
        int id = item(e, "id")->valueint; /* checked by vocab_size */
        if (id <= entries) seen[id] = 1;
    }
    int gap = 0;
    while (seen[gap]) gap++;
    free(seen);
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: no token has id %d (the largest id is %d; model.vocab and added_tokens hold "
                     "%d entries, expected ids 0..%d)", path, gap, max, entries, entries - 1);
}

/* The vocabulary size: one more than the largest id in model.vocab and added_tokens. Every id below it
 * must have a token, so a largest id beyond the number of entries is refused here, before tables are
 * sized by it (one entry {"a": 99999999} would otherwise allocate and index 10^8 slots). */
static PeftcStatus vocab_size(const cJSON *vocab, const cJSON *added, const char *path, int *n) {
    if (!cJSON_IsObject(vocab)) return PEFTC_ERR(PEFTC_EFORMAT, "%s: model.vocab is missing or not an object", path);
    const cJSON *e;
    int max = -1, id, entries = 0;
    cJSON_ArrayForEach(e, vocab) {
        PEFTC_TRY(token_id(e, path, "model.vocab", e->string, &id));
        if (id > max) max = id;
        entries++;
    }
    cJSON_ArrayForEach(e, added) {
        const char *content = str_item(e, "content");
        PEFTC_TRY(token_id(item(e, "id"), path, "added_tokens", content ? content : "?", &id));
        if (id > max) max = id;
        entries++;
    }
    if (max >= entries) return id_gap(vocab, added, path, max, entries);
    *n = max + 1;
    return PEFTC_OK;
}

/* Added tokens, special or not (tok_internal.h's kinds), by their "special" flag. Every one is matched
 * on the raw text: HF's "normalized": true, which matches one against the normalized text instead, is
 * not reproduced (no tokenizer this reads sets it on a token whose text normalization changes). */
static PeftcStatus hf_pieces(Tokenizer *t, const cJSON *vocab, const cJSON *added, const char *path) {
    const cJSON *e;
    int id;
    cJSON_ArrayForEach(e, vocab) {
        PEFTC_TRY(token_id(e, path, "model.vocab", e->string, &id));
        PEFTC_TRY(tok_set_piece(t, id, e->string, strlen(e->string), 0));
    }
    cJSON_ArrayForEach(e, added) {
        const char *content = str_item(e, "content");
        if (!content) return PEFTC_ERR(PEFTC_EFORMAT, "%s: an entry of added_tokens has no \"content\"", path);
        PEFTC_TRY(token_id(item(e, "id"), path, "added_tokens", content, &id));
        const cJSON *sp = item(e, "special");
        PEFTC_TRY(tok_set_piece(t, id, content, strlen(content), cJSON_IsFalse(sp) ? TOK_ADDED : TOK_SPECIAL));
    }
    return PEFTC_OK;
}

/* model.merges: "a b" strings (older files) or ["a", "b"] pairs. */
static PeftcStatus hf_merges(Tokenizer *t, const cJSON *merges, const char *path) {
    if (!cJSON_IsArray(merges)) return PEFTC_ERR(PEFTC_EFORMAT, "%s: model.merges is missing or not an array", path);
    const cJSON *e;
    int i = 0;
    cJSON_ArrayForEach(e, merges) {
        char what[48];
        snprintf(what, sizeof what, "model.merges[%d]", i++);
        const char *a = NULL, *b = NULL, *sp = NULL;
        size_t alen = 0;
        if (cJSON_IsString(e) && (sp = strchr(e->valuestring, ' '))) {
            a = e->valuestring;
            alen = (size_t)(sp - a);
            b = sp + 1;
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            alen = strlen(a);
            b = cJSON_GetArrayItem(e, 1)->valuestring;
        } else {
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s is neither \"a b\" nor [\"a\", \"b\"]", path, what);
        }
        PEFTC_TRY(tok_add_merge(t, a, alen, b, strlen(b), what));
    }
    return PEFTC_OK;
}

/* The special token the post-processor puts before the text, if any (LLaMA-3 adds BOS this way rather
 * than with add_bos_token). */
static const char *post_first_special(const cJSON *root) {
    const cJSON *p = item(root, "post_processor"), *list = item(p, "processors"), *e;
    if (!type_is(p, "TemplateProcessing")) {
        p = NULL;
        cJSON_ArrayForEach(e, list) if (type_is(e, "TemplateProcessing")) p = e;
    }
    const cJSON *first = cJSON_GetArrayItem(item(p, "single"), 0);
    return str_item(item(first, "SpecialToken"), "id");
}

/* bos_token / eos_token: a string, or {"content": ...}; *id stays as it is when the key is absent. */
static PeftcStatus config_token(const Tokenizer *t, const cJSON *cfg, const char *key, const char *path, int *id) {
    const cJSON *v = item(cfg, key);
    const char *text = cJSON_IsString(v) ? v->valuestring : str_item(v, "content");
    if (text && (*id = tok_lookup(t, text, strlen(text))) < 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s '%s' is not in the vocabulary", path, key, text);
    return PEFTC_OK;
}

/* chat_template: a string, or a list of {"name", "template"} (the one named "default", else the first). */
static const char *config_template(const cJSON *cfg) {
    const cJSON *v = item(cfg, "chat_template"), *e;
    if (cJSON_IsString(v)) return v->valuestring;
    const char *first = NULL;
    cJSON_ArrayForEach(e, v) {
        const char *name = str_item(e, "name"), *text = str_item(e, "template");
        if (name && text && strcmp(name, "default") == 0) return text;
        if (!first) first = text;
    }
    return first;
}

static PeftcStatus read_config(const char *tokenizer_path, cJSON **cfg, char *path, size_t n) {
    const char *slash = strrchr(tokenizer_path, '/');
    int dir = slash ? (int)(slash - tokenizer_path + 1) : 0;
    snprintf(path, n, "%.*stokenizer_config.json", dir, tokenizer_path);
    struct stat sb;
    *cfg = NULL;
    return stat(path, &sb) == 0 ? read_json(path, cfg) : PEFTC_OK; /* the file is optional */
}

/* bos/eos, add_bos_token and chat_template from tokenizer_config.json; without an add_bos_token there,
 * BOS is added when the post-processor starts with it (or with any special token, when bos is unknown). */
static PeftcStatus hf_config(Tokenizer *t, const cJSON *root, const char *tokenizer_path) {
    char path[1024];
    cJSON *cfg;
    PEFTC_TRY(read_config(tokenizer_path, &cfg, path, sizeof path));
    const char *tmpl = config_template(cfg), *post = post_first_special(root);
    PeftcStatus st = config_token(t, cfg, "bos_token", path, &t->bos);
    if (st == PEFTC_OK) st = config_token(t, cfg, "eos_token", path, &t->eos);
    const cJSON *add = item(cfg, "add_bos_token");
    if (cJSON_IsBool(add)) {
        t->add_bos = cJSON_IsTrue(add);
    } else if (post) {
        int post_id = tok_lookup(t, post, strlen(post));
        if (t->bos < 0) t->bos = post_id;
        t->add_bos = post_id >= 0 && post_id == t->bos;
    }
    if (st == PEFTC_OK && tmpl) st = tok_set_chat_template(t, tmpl, strlen(tmpl));
    cJSON_Delete(cfg);
    return st;
}

static PeftcStatus hf_build(Tokenizer **out, const cJSON *root, const char *path) {
    const cJSON *model = item(root, "model"), *added = item(root, "added_tokens");
    PEFTC_TRY(check_model(root, model, path));
    PretokKind kind = PRETOK_GPT2;
    PEFTC_TRY(pre_kind(root, path, &kind));
    int nfc = 0;
    PEFTC_TRY(norm_kind(root, path, &nfc));
    const cJSON *vocab = item(model, "vocab");
    int n = 0;
    PEFTC_TRY(vocab_size(vocab, added, path, &n));
    PEFTC_TRY(tok_new(out, n, kind, path));
    Tokenizer *t = *out;
    t->ignore_merges = flag(model, "ignore_merges", 0);
    t->nfc = nfc;
    PEFTC_TRY(hf_pieces(t, vocab, added, path));
    PEFTC_TRY(tok_index_vocab(t));
    PEFTC_TRY(hf_merges(t, item(model, "merges"), path));
    PEFTC_TRY(hf_config(t, root, path));
    return tok_finish(t);
}

PeftcStatus tok_load_hf(Tokenizer **out, const char *tokenizer_json_path) {
    *out = NULL;
    cJSON *root;
    PEFTC_TRY(read_json(tokenizer_json_path, &root));
    Tokenizer *t = NULL;
    PeftcStatus st = hf_build(&t, root, tokenizer_json_path);
    cJSON_Delete(root);
    if (st != PEFTC_OK) {
        tok_free(t);
        return st;
    }
    *out = t;
    return PEFTC_OK;
}
