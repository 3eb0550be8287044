/* The SFT dataset: every example is tokenized once at creation (or read from the tokenized cache)
 * into one id array and one loss-mask array per split; get() only copies and shifts. */
#include "datasets/sft.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/real.h"
#include "datasets/jsonl.h"
#include "datasets/tokcache.h"

typedef struct {
    Dataset ds;
    TokData d;
    int seq_len;
    int task; /* TaskKind, or -1 for files */
    int32_t pad;
} SftDataset;

static const char *split_name(Split s) { return s == SPLIT_EVAL ? "eval" : "train"; }

/* ---- the Dataset ---- */

static int64_t sft_size(const Dataset *ds, Split split) {
    const SftDataset *s = ds->impl;
    return split == SPLIT_TRAIN || split == SPLIT_EVAL ? s->d.split[split].n : 0;
}

static PeftcStatus check_id(const SftDataset *s, Split split, int64_t id) {
    if (split != SPLIT_TRAIN && split != SPLIT_EVAL)
        return PEFTC_ERR(PEFTC_EINVAL, "sft: split must be SPLIT_TRAIN or SPLIT_EVAL, got %d", (int)split);
    if (id < 0 || id >= s->d.split[split].n)
        return PEFTC_ERR(PEFTC_EINVAL, "sft: %s example id %lld is outside [0, %lld)", split_name(split),
                         (long long)id, (long long)s->d.split[split].n);
    return PEFTC_OK;
}

/* tokens(T), targets(T): targets[t] = ids[t+1] where that token is trained, padding on the right. */
static PeftcStatus sft_get(const Dataset *ds, Split split, int64_t id, int32_t *tokens, int32_t *targets, int T) {
    const SftDataset *s = ds->impl;
    PEFTC_TRY(check_id(s, split, id));
    if (!tokens || !targets) return PEFTC_ERR(PEFTC_EINVAL, "sft: tokens and targets must not be NULL");
    if (T < 1) return PEFTC_ERR(PEFTC_EINVAL, "train.seq_len must be >= 1, got %d", T);
    const TokSplit *sp = &s->d.split[split];
    const int32_t *x = sp->ids + sp->start[id];
    const uint8_t *m = sp->mask ? sp->mask + sp->start[id] : NULL;
    int len = sp->len[id];
    for (int t = 0; t < T; t++) {
        tokens[t] = t < len ? x[t] : s->pad;
        targets[t] = t + 1 < len && (!m || m[t + 1]) ? x[t + 1] : PEFTC_IGNORE_INDEX;
    }
    return PEFTC_OK;
}

/* The input whose target is the last trained token among the first T + 1, plus one. */
static int sft_span(const Dataset *ds, Split split, int64_t id, int T) {
    const SftDataset *s = ds->impl;
    if ((split != SPLIT_TRAIN && split != SPLIT_EVAL) || id < 0 || id >= s->d.split[split].n || T < 1) return -1;
    const TokSplit *sp = &s->d.split[split];
    const uint8_t *m = sp->mask ? sp->mask + sp->start[id] : NULL; /* (len) */
    int last = sp->len[id] - 1 < T ? sp->len[id] - 1 : T;       /* the last token that can be a target */
    while (last > 1 && m && !m[last]) last--;
    return last > 1 ? last : 1;
}

static void sft_free(Dataset *ds) {
    if (!ds) return;
    SftDataset *s = ds->impl;
    tokdata_free(&s->d);
    free(s);
}

PeftcStatus sft_prompt(const Dataset *ds, Split split, int64_t id, const int32_t **ids, int *n,
                       const char **answer) {
    if (!ds || ds->get != sft_get) return PEFTC_ERR(PEFTC_EINVAL, "sft_prompt: the dataset is not an SFT dataset");
    if (!ids || !n || !answer) return PEFTC_ERR(PEFTC_EINVAL, "sft_prompt: ids, n and answer must not be NULL");
    const SftDataset *s = ds->impl;
    PEFTC_TRY(check_id(s, split, id));
    const TokSplit *sp = &s->d.split[split];
    *ids = sp->prompt_off[id] < 0 ? sp->ids + sp->start[id] : sp->pids + sp->prompt_off[id];
    *n = sp->prompt_len[id];
    *answer = sp->answer_off[id] < 0 ? NULL : sp->answers + sp->answer_off[id];
    return PEFTC_OK;
}

int sft_task(const Dataset *ds) {
    if (!ds || ds->get != sft_get) return -1;
    return ((const SftDataset *)ds->impl)->task;
}

/* ---- building one split ---- */

typedef struct {
    TokSplit s;
    size_t n_ids, ids_cap; /* s.n_ids; ids and mask share the capacity */
    size_t ex_cap, pids_cap, answers_cap;
} SplitBuilder;

/* One conversation's tokens, reused from example to example. */
typedef struct {
    int32_t *ids;
    uint8_t *mask;
    size_t n, cap;
} Scratch;

/* Shared by every example: the tokenizer, format, limits, scratch for the example and its prompt, and
 * the counts. Examples are encoded into scratch and then appended, so chat_encode never grows (or
 * copies) the whole split's arrays. */
typedef struct {
    const Tokenizer *tok;
    const ChatTemplate *ct;
    int seq_len;
    Scratch conv, prompt;
    TokData *d;
} Encoder;

static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * size);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

static int push_example(SplitBuilder *b, int64_t start, int32_t len, int64_t poff, int32_t plen, int64_t aoff) {
    TokSplit *s = &b->s;
    size_t need = (size_t)s->n + 1, cap = b->ex_cap;
    int ok = grow((void **)&s->start, &cap, need, sizeof *s->start);
    cap = b->ex_cap;
    ok = ok && grow((void **)&s->len, &cap, need, sizeof *s->len);
    cap = b->ex_cap;
    ok = ok && grow((void **)&s->prompt_off, &cap, need, sizeof *s->prompt_off);
    cap = b->ex_cap;
    ok = ok && grow((void **)&s->prompt_len, &cap, need, sizeof *s->prompt_len);
    cap = b->ex_cap;
    ok = ok && grow((void **)&s->answer_off, &cap, need, sizeof *s->answer_off);
    if (!ok) return 0;
    b->ex_cap = cap;
    s->start[s->n] = start;
    s->len[s->n] = len;
    s->prompt_off[s->n] = poff;
    s->prompt_len[s->n] = plen;
    s->answer_off[s->n] = aoff;
    s->n++;
    return 1;
}

static int64_t push_answer(SplitBuilder *b, const char *text) {
    size_t n = strlen(text) + 1, at = (size_t)b->s.n_answers;
    if (!grow((void **)&b->s.answers, &b->answers_cap, at + n, 1)) return -2;
    memcpy(b->s.answers + at, text, n);
    b->s.n_answers += (int64_t)n;
    return (int64_t)at;
}

/* The generation prompt of a conversation: a prefix of the example when it is one (ChatML, LLaMA-3),
 * else stored on its own. Returns its offset in pids, -1 for a prefix, -2 when out of memory. */
static int64_t place_prompt(SplitBuilder *b, const Encoder *e, size_t keep) {
    const Scratch *p = &e->prompt;
    if (p->n <= keep && memcmp(e->conv.ids, p->ids, p->n * sizeof *p->ids) == 0) return -1;
    size_t at = (size_t)b->s.n_pids;
    if (!grow((void **)&b->s.pids, &b->pids_cap, at + p->n, sizeof *b->s.pids)) return -2;
    memcpy(b->s.pids + at, p->ids, p->n * sizeof *p->ids);
    b->s.n_pids += (int64_t)p->n;
    return (int64_t)at;
}

/* Appends the first `keep` tokens of the encoded conversation to the split; returns their start or -1. */
static int64_t push_tokens(SplitBuilder *b, const Scratch *c, size_t keep) {
    size_t at = b->n_ids, cap = b->ids_cap;
    if (!grow((void **)&b->s.ids, &cap, at + keep, sizeof *b->s.ids)) return -1;
    cap = b->ids_cap;
    if (!grow((void **)&b->s.mask, &cap, at + keep, 1)) return -1;
    b->ids_cap = cap;
    memcpy(b->s.ids + at, c->ids, keep * sizeof *c->ids);
    memcpy(b->s.mask + at, c->mask, keep);
    b->n_ids += keep;
    b->s.n_ids = (int64_t)b->n_ids;
    return (int64_t)at;
}

static int last_assistant(const ChatMessage *m, int n) {
    for (int i = n - 1; i >= 0; i--)
        if (m[i].role == ROLE_ASSISTANT) return i;
    return -1;
}

/* Tokenizes one conversation into b: keeps its first seq_len + 1 tokens, or drops it when none of those
 * is a trained target. `where` names the example in errors. */
static PeftcStatus encode_example(Encoder *e, SplitBuilder *b, const ChatMessage *m, int n_msgs, const char *where) {
    Scratch *c = &e->conv, *p = &e->prompt;
    c->n = 0;
    PEFTC_TRY(chat_encode(e->ct, e->tok, m, n_msgs, 0, &c->ids, &c->mask, &c->n, &c->cap));
    size_t keep = c->n < (size_t)e->seq_len + 1 ? c->n : (size_t)e->seq_len + 1;
    int trained = 0;
    for (size_t t = 1; t < keep && !trained; t++) trained = c->mask[t];
    if (!trained) return e->d->dropped++, PEFTC_OK;
    e->d->truncated += c->n > keep;
    int last = last_assistant(m, n_msgs);
    p->n = 0;
    PEFTC_TRY(chat_encode(e->ct, e->tok, m, last, 1, &p->ids, &p->mask, &p->n, &p->cap));
    int64_t poff = place_prompt(b, e, keep), aoff = push_answer(b, m[last].content), start = push_tokens(b, c, keep);
    if (poff < -1 || aoff < 0 || start < 0 || !push_example(b, start, (int32_t)keep, poff, (int32_t)p->n, aoff))
        return PEFTC_ERR(PEFTC_ENOMEM, "sft: out of memory tokenizing %s", where);
    return PEFTC_OK;
}

/* Cuts a token stream (ownership taken) into windows of seq_len inputs, each with its next-token
 * targets, so window w covers ids[w*S .. w*S + S] and the last window is shorter. */
static PeftcStatus make_windows(TokSplit *s, int32_t *ids, size_t n, int S) {
    memset(s, 0, sizeof *s);
    s->ids = ids;
    s->n_ids = (int64_t)n;
    int64_t w = n >= 2 ? (int64_t)((n - 2) / (size_t)S) + 1 : 0;
    size_t k = (size_t)(w ? w : 1);
    s->start = malloc(k * sizeof *s->start);
    s->len = malloc(k * sizeof *s->len);
    s->prompt_off = malloc(k * sizeof *s->prompt_off);
    s->prompt_len = malloc(k * sizeof *s->prompt_len);
    s->answer_off = malloc(k * sizeof *s->answer_off);
    if (!s->start || !s->len || !s->prompt_off || !s->prompt_len || !s->answer_off)
        return PEFTC_ERR(PEFTC_ENOMEM, "sft: out of memory for %lld text windows", (long long)w);
    for (int64_t i = 0; i < w; i++) {
        size_t st = (size_t)i * (size_t)S, left = n - st;
        s->start[i] = (int64_t)st;
        s->len[i] = (int32_t)(left < (size_t)S + 1 ? left : (size_t)S + 1);
        s->prompt_off[i] = -1;
        s->prompt_len[i] = s->len[i] < S ? s->len[i] : S;
        s->answer_off[i] = -1;
    }
    s->n = w;
    return PEFTC_OK;
}

/* ---- sources ---- */

/* A data file: conversations or text documents from JSONL, or a .txt file as one document. */
typedef struct {
    JsonlFile j;
    char *raw; /* a .txt file's bytes */
    size_t raw_n;
    int plain;
} Source;

static int is_txt(const char *path) {
    size_t n = strlen(path);
    if (n < 4) return 0;
    const char *e = path + n - 4;
    return e[0] == '.' && tolower((unsigned char)e[1]) == 't' && tolower((unsigned char)e[2]) == 'x' &&
           tolower((unsigned char)e[3]) == 't';
}

static PeftcStatus read_raw(Source *s, const char *path, const char *what) {
    FILE *f = fopen(path, "rb");
    if (!f) return PEFTC_ERR(PEFTC_EIO, "%s: cannot open %s: %s", what, path, strerror(errno));
    size_t cap = 0, got;
    char chunk[1 << 16];
    PeftcStatus st = PEFTC_OK;
    while (st == PEFTC_OK && (got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (!grow((void **)&s->raw, &cap, s->raw_n + got + 1, 1))
            st = PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory reading %s", what, path);
        else memcpy(s->raw + s->raw_n, chunk, got), s->raw_n += got;
    }
    if (st == PEFTC_OK && ferror(f)) st = PEFTC_ERR(PEFTC_EIO, "%s: error reading %s", what, path);
    fclose(f);
    if (st == PEFTC_OK && !s->raw_n) st = PEFTC_ERR(PEFTC_EFORMAT, "%s: %s is empty", what, path);
    return st;
}

static PeftcStatus source_read(Source *s, const char *path, const char *what, int skip_bad_lines) {
    memset(s, 0, sizeof *s);
    s->plain = is_txt(path);
    if (s->plain) return read_raw(s, path, what);
    PEFTC_TRY(jsonl_read(&s->j, path, what, skip_bad_lines));
    s->plain = s->j.kind == JSONL_TEXT;
    return PEFTC_OK;
}

static void source_free(Source *s) {
    jsonl_free(&s->j);
    free(s->raw);
    memset(s, 0, sizeof *s);
}

/* ---- plain text: one stream per split, EOS after every document ---- */

static PeftcStatus append_id(int32_t **ids, size_t *n, size_t *cap, int32_t id) {
    if (!grow((void **)ids, cap, *n + 1, sizeof **ids)) return PEFTC_ERR(PEFTC_ENOMEM, "sft: out of memory");
    (*ids)[(*n)++] = id;
    return PEFTC_OK;
}

static PeftcStatus encode_doc(const Tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n,
                              size_t *cap) {
    if (tok_add_bos(tok) && tok_bos(tok) >= 0) PEFTC_TRY(append_id(ids, n, cap, tok_bos(tok)));
    PEFTC_TRY(tok_encode(tok, text, len, 0, ids, n, cap));
    return tok_eos(tok) >= 0 ? append_id(ids, n, cap, tok_eos(tok)) : PEFTC_OK;
}

/* The source's documents as one stream into *ids(*n), a new array also on failure (then NULL). */
static PeftcStatus encode_stream(const Source *s, const Tokenizer *tok, int32_t **ids, size_t *n) {
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    PeftcStatus st = PEFTC_OK;
    if (s->raw) st = encode_doc(tok, s->raw, s->raw_n, ids, n, &cap);
    for (int64_t i = 0; !s->raw && i < s->j.n && st == PEFTC_OK; i++) {
        const char *text = s->j.ex[i].msgs[0].content;
        st = encode_doc(tok, text, strlen(text), ids, n, &cap);
    }
    if (st != PEFTC_OK) {
        free(*ids);
        *ids = NULL;
    }
    return st;
}

/* The held-out windows are the last eval_percent of the train file's windows, cut at a window edge
 * so that no token is an input or target of both splits. */
static PeftcStatus split_stream(const SftConfig *cfg, int32_t *ids, size_t n, TokData *d) {
    size_t S = (size_t)cfg->seq_len;
    int64_t w = n >= 2 ? (int64_t)((n - 2) / S) + 1 : 0, e = (int64_t)(w * cfg->eval_percent / 100);
    if (cfg->eval_percent > 0 && e < 1) e = 1;
    if (w - e < 1) {
        free(ids);
        return PEFTC_ERR(PEFTC_EINVAL,
                         "data.path: %s gives %zu tokens, %lld window(s) of train.seq_len=%d: too few to train on and "
                         "hold out data.eval_percent=%d%% (add text or set data.eval_path)",
                         cfg->path, n, (long long)w, cfg->seq_len, cfg->eval_percent);
    }
    size_t cut = e ? (size_t)(w - e) * S : n;
    int32_t *tail = malloc((n - cut ? n - cut : 1) * sizeof *tail);
    if (!tail) {
        free(ids);
        return PEFTC_ERR(PEFTC_ENOMEM, "sft: out of memory splitting %s", cfg->path);
    }
    memcpy(tail, ids + cut, (n - cut) * sizeof *tail);
    PeftcStatus st = make_windows(&d->split[SPLIT_TRAIN], ids, cut, cfg->seq_len);
    if (st != PEFTC_OK) {
        free(tail);
        return st;
    }
    return make_windows(&d->split[SPLIT_EVAL], tail, n - cut, cfg->seq_len);
}

static PeftcStatus build_plain(const SftConfig *cfg, const Tokenizer *tok, const Source *train, const Source *eval,
                               TokData *d) {
    int32_t *ids;
    size_t n;
    d->plain = 1;
    PEFTC_TRY(encode_stream(train, tok, &ids, &n));
    if (!eval) return split_stream(cfg, ids, n, d);
    PEFTC_TRY(make_windows(&d->split[SPLIT_TRAIN], ids, n, cfg->seq_len));
    PEFTC_TRY(encode_stream(eval, tok, &ids, &n));
    return make_windows(&d->split[SPLIT_EVAL], ids, n, cfg->seq_len);
}

/* ---- conversations: files and built-in tasks ---- */

/* Prefixes an error from deep inside tokenization with the example it came from. */
static PeftcStatus in_example(PeftcStatus st, const char *where) {
    if (st == PEFTC_OK) return st;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", peftc_err_msg());
    return PEFTC_ERR(st, "%s: %s", where, msg);
}

static PeftcStatus encode_range(Encoder *e, SplitBuilder *b, const JsonlFile *f, const char *path, int64_t from,
                                int64_t to) {
    char where[600];
    for (int64_t i = from; i < to; i++) {
        const JsonlExample *x = &f->ex[i];
        snprintf(where, sizeof where, "%s:%lld", path, (long long)x->line);
        PEFTC_TRY(in_example(encode_example(e, b, x->msgs, x->n_msgs, where), where));
    }
    return PEFTC_OK;
}

/* Without an eval file the held-out examples are the last eval_percent of the file, by line order. */
static PeftcStatus build_chat(const SftConfig *cfg, Encoder *e, const Source *train, const Source *eval,
                              TokData *d) {
    SplitBuilder b[2] = {0};
    int64_t n = train->j.n, n_eval = eval ? 0 : n * cfg->eval_percent / 100;
    if (!eval && cfg->eval_percent > 0 && n_eval < 1) n_eval = 1;
    if (n - n_eval < 1)
        return PEFTC_ERR(PEFTC_EINVAL,
                         "data.path: %s holds %lld example(s): too few to train on and hold out data.eval_percent=%d%% "
                         "(add examples or set data.eval_path)",
                         cfg->path, (long long)n, cfg->eval_percent);
    PeftcStatus st = encode_range(e, &b[SPLIT_TRAIN], &train->j, cfg->path, 0, n - n_eval);
    if (st == PEFTC_OK)
        st = eval ? encode_range(e, &b[SPLIT_EVAL], &eval->j, cfg->eval_path, 0, eval->j.n)
                  : encode_range(e, &b[SPLIT_EVAL], &train->j, cfg->path, n - n_eval, n);
    d->split[SPLIT_TRAIN] = b[SPLIT_TRAIN].s;
    d->split[SPLIT_EVAL] = b[SPLIT_EVAL].s;
    return st;
}

/* Built-in tasks: the task instruction as the system message, the problem as the user message. */
static PeftcStatus encode_task_split(const SftConfig *cfg, Encoder *e, SplitBuilder *b, Split split, int64_t count) {
    char prompt[1024], answer[512], where[96];
    const char *ins = task_instruction(cfg->task);
    const ChatMessage m[3] = {{ROLE_SYSTEM, ins}, {ROLE_USER, prompt}, {ROLE_ASSISTANT, answer}};
    int skip = ins[0] == '\0';
    for (int64_t id = 0; id < count; id++) {
        PEFTC_TRY(task_example(cfg->task, cfg->seed, split, id, prompt, sizeof prompt, answer, sizeof answer));
        snprintf(where, sizeof where, "data.task=%s %s example %lld", task_names[cfg->task], split_name(split),
                 (long long)id);
        PEFTC_TRY(in_example(encode_example(e, b, m + skip, 3 - skip, where), where));
    }
    return PEFTC_OK;
}

static PeftcStatus build_task(const SftConfig *cfg, Encoder *e, TokData *d) {
    SplitBuilder b[2] = {0};
    PeftcStatus st = encode_task_split(cfg, e, &b[SPLIT_TRAIN], SPLIT_TRAIN, cfg->train_examples);
    if (st == PEFTC_OK) st = encode_task_split(cfg, e, &b[SPLIT_EVAL], SPLIT_EVAL, cfg->eval_examples);
    d->split[SPLIT_TRAIN] = b[SPLIT_TRAIN].s;
    d->split[SPLIT_EVAL] = b[SPLIT_EVAL].s;
    return st;
}

static PeftcStatus build_files(const SftConfig *cfg, Encoder *e, TokData *d) {
    Source train, eval;
    memset(&eval, 0, sizeof eval);
    PeftcStatus st = source_read(&train, cfg->path, "data.path", cfg->skip_bad_lines);
    if (st == PEFTC_OK && cfg->eval_path[0])
        st = source_read(&eval, cfg->eval_path, "data.eval_path", cfg->skip_bad_lines);
    if (st == PEFTC_OK && cfg->eval_path[0] && eval.plain != train.plain)
        st = PEFTC_ERR(PEFTC_EFORMAT, "data.eval_path: %s holds %s but data.path %s holds %s", cfg->eval_path,
                       eval.plain ? "plain text" : "conversations", cfg->path,
                       train.plain ? "plain text" : "conversations");
    const Source *ev = cfg->eval_path[0] ? &eval : NULL;
    d->bad_lines = train.j.bad_lines + eval.j.bad_lines;
    if (st == PEFTC_OK)
        st = train.plain ? build_plain(cfg, e->tok, &train, ev, d) : build_chat(cfg, e, &train, ev, d);
    source_free(&train);
    source_free(&eval);
    return st;
}

/* ---- cache key, checks, creation ---- */

/* Tokenizes a fixed conversation and text into the key, so a change in the tokenizer or chat code
 * (not only in the vocabulary) invalidates caches built with the old one. */
static PeftcStatus hash_probe(TcHash *h, const Tokenizer *tok, const ChatTemplate *ct) {
    static const ChatMessage probe[] = {
        {ROLE_SYSTEM, "Be brief."}, {ROLE_USER, "What is 12 + 30?"}, {ROLE_ASSISTANT, "It is 42."}};
    static const char text[] = "Hello, world! 123 <|endoftext|>\n\tcafe\xC3\xA9";
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    size_t n = 0, cap = 0;
    PeftcStatus st = chat_encode(ct, tok, probe, 3, 0, &ids, &mask, &n, &cap);
    size_t n_chat = n;
    if (st == PEFTC_OK) st = tok_encode(tok, text, sizeof text - 1, 0, &ids, &n, &cap);
    if (st == PEFTC_OK) {
        tc_hash_update(h, ids, n * sizeof *ids);
        tc_hash_update(h, mask, n_chat);
        tc_hash_u64(h, (uint64_t)n);
    }
    free(ids);
    free(mask);
    return st;
}

static PeftcStatus hash_task(TcHash *h, const SftConfig *cfg) {
    char prompt[1024], answer[512];
    tc_hash_u64(h, (uint64_t)cfg->task);
    tc_hash_u64(h, cfg->seed);
    tc_hash_u64(h, (uint64_t)cfg->train_examples);
    tc_hash_u64(h, (uint64_t)cfg->eval_examples);
    tc_hash_str(h, task_instruction(cfg->task));
    /* Problems stand in for the generator's code: with 64 per split every template and wording shows up
     * (all but surely), so editing one changes the key. */
    for (int split = 0; split < 2; split++)
        for (int64_t id = 0; id < 64; id++) {
            PEFTC_TRY(task_example(cfg->task, cfg->seed, (Split)split, id, prompt, sizeof prompt, answer,
                                   sizeof answer));
            tc_hash_str(h, prompt);
            tc_hash_str(h, answer);
        }
    return PEFTC_OK;
}

static PeftcStatus cache_key(const SftConfig *cfg, const Tokenizer *tok, const ChatTemplate *ct, uint64_t *key) {
    TcHash h;
    tc_hash_init(&h, TOKCACHE_VERSION);
    tc_hash_u64(&h, tok_hash(tok));
    tc_hash_u64(&h, (uint64_t)ct->format);
    tc_hash_str(&h, ct->default_system);
    tc_hash_u64(&h, (uint64_t)cfg->seq_len);
    PEFTC_TRY(hash_probe(&h, tok, ct));
    if (!cfg->path[0]) PEFTC_TRY(hash_task(&h, cfg));
    else {
        tc_hash_u64(&h, (uint64_t)cfg->eval_percent);
        tc_hash_u64(&h, (uint64_t)cfg->skip_bad_lines);
        tc_hash_u64(&h, (uint64_t)is_txt(cfg->path));
        PEFTC_TRY(tc_hash_file(&h, cfg->path, "data.path"));
        tc_hash_u64(&h, cfg->eval_path[0] ? 1u + (uint64_t)is_txt(cfg->eval_path) : 0u);
        if (cfg->eval_path[0]) PEFTC_TRY(tc_hash_file(&h, cfg->eval_path, "data.eval_path"));
    }
    *key = tc_hash_final(&h);
    return PEFTC_OK;
}

static PeftcStatus check_config(const SftConfig *cfg) {
    if (cfg->seq_len < 1) return PEFTC_ERR(PEFTC_EINVAL, "train.seq_len must be >= 1, got %d", cfg->seq_len);
    if (cfg->eval_percent < 0 || cfg->eval_percent > 99)
        return PEFTC_ERR(PEFTC_EINVAL, "data.eval_percent must be in [0, 99], got %d", cfg->eval_percent);
    if (cfg->path[0]) return PEFTC_OK;
    if (cfg->eval_path[0]) return PEFTC_ERR(PEFTC_EINVAL, "data.eval_path is set but data.path is not");
    if ((unsigned)cfg->task >= TASK_COUNT)
        return PEFTC_ERR(PEFTC_EINVAL, "data.task: no built-in text task number %d", (int)cfg->task);
    if (cfg->train_examples < 1 || cfg->eval_examples < 0)
        return PEFTC_ERR(PEFTC_EINVAL,
                         "data.train_examples must be >= 1 and data.eval_examples >= 0, got %lld and %lld",
                         (long long)cfg->train_examples, (long long)cfg->eval_examples);
    return PEFTC_OK;
}

/* A split left empty by dropping is an error: training or evaluating on nothing hides the cause. */
static PeftcStatus check_built(const SftConfig *cfg, const TokData *d) {
    const char *src = cfg->path[0] ? cfg->path : task_names[cfg->task];
    int64_t want_eval = cfg->path[0] ? (cfg->eval_path[0] || cfg->eval_percent > 0) : cfg->eval_examples > 0;
    for (int s = 0; s < 2; s++) {
        if (d->split[s].n > 0 || (s == SPLIT_EVAL && !want_eval)) continue;
        return PEFTC_ERR(PEFTC_EINVAL,
                         "%s: no %s example is left: %lld were dropped because their prompt fills train.seq_len=%d%s",
                         src, split_name((Split)s), (long long)d->dropped, cfg->seq_len,
                         d->plain ? " (the text is shorter than 2 tokens)" : "");
    }
    return PEFTC_OK;
}

static PeftcStatus load_or_build(const SftConfig *cfg, const Tokenizer *tok, const ChatTemplate *ct, TokData *d,
                                 int *from_cache) {
    uint64_t key = 0;
    *from_cache = 0;
    if (cfg->cache_dir[0]) {
        PEFTC_TRY(cache_key(cfg, tok, ct, &key));
        if (tokcache_load(cfg->cache_dir, key, tok_vocab_size(tok), d)) {
            *from_cache = 1;
            return check_built(cfg, d);
        }
    }
    Encoder e = {.tok = tok, .ct = ct, .seq_len = cfg->seq_len, .d = d};
    PeftcStatus st = cfg->path[0] ? build_files(cfg, &e, d) : build_task(cfg, &e, d);
    free(e.conv.ids);
    free(e.conv.mask);
    free(e.prompt.ids);
    free(e.prompt.mask);
    if (st == PEFTC_OK) st = check_built(cfg, d);
    if (st == PEFTC_OK && cfg->cache_dir[0]) st = tokcache_save(cfg->cache_dir, key, d);
    return st;
}

static void fill_stats(const TokData *d, int seq_len, int from_cache, SftStats *st) {
    memset(st, 0, sizeof *st);
    st->examples[0] = d->split[0].n;
    st->examples[1] = d->split[1].n;
    st->dropped = d->dropped;
    st->truncated = d->truncated;
    st->bad_lines = d->bad_lines;
    st->from_cache = from_cache;
    const TokSplit *tr = &d->split[SPLIT_TRAIN];
    for (int64_t i = 0; i < tr->n; i++) st->tokens += tr->len[i] < seq_len ? tr->len[i] : seq_len;
}

PeftcStatus sft_dataset_create(Dataset **out, const SftConfig *cfg, const Tokenizer *tok, const ChatTemplate *ct,
                               SftStats *stats) {
    static const char *const task_ds_names[] = {"sft-arith", "sft-records", "sft-sql"};
    if (!out || !cfg) return PEFTC_ERR(PEFTC_EINVAL, "sft_dataset_create: out and cfg must not be NULL");
    *out = NULL;
    if (!tok || !ct)
        return PEFTC_ERR(PEFTC_EINVAL, "text data needs the model's tokenizer and chat format: set model.path");
    PEFTC_TRY(check_config(cfg));
    SftDataset *s = calloc(1, sizeof *s);
    if (!s) return PEFTC_ERR(PEFTC_ENOMEM, "sft: out of memory");
    int from_cache;
    PeftcStatus st = load_or_build(cfg, tok, ct, &s->d, &from_cache);
    if (st != PEFTC_OK) {
        tokdata_free(&s->d);
        free(s);
        return st;
    }
    s->seq_len = cfg->seq_len;
    s->task = cfg->path[0] ? -1 : (int)cfg->task;
    s->pad = tok_eos(tok) >= 0 ? tok_eos(tok) : 0;
    s->ds = (Dataset){.name = cfg->path[0] ? (s->d.plain ? "sft-text" : "sft-chat") : task_ds_names[cfg->task],
                      .size = sft_size,
                      .get = sft_get,
                      .span = sft_span,
                      .free = sft_free,
                      .vocab_needed = tok_vocab_size(tok),
                      .impl = s};
    if (stats) fill_stats(&s->d, cfg->seq_len, from_cache, stats);
    *out = &s->ds;
    return PEFTC_OK;
}
