/* Synthetic digit tasks.
 *
 * Example (split, id) tries candidate prompts from streams keyed by (seed, split, id, attempt) and
 * keeps the first whose content hash falls in `split`. A candidate's digits are replayed from its
 * stream whenever they are needed (to hash, to size, to write), so generation needs no scratch
 * memory and get() is reentrant. The split hash does not involve the seed: which problems are held
 * out is a property of the problem, so no seed trains on another seed's held-out problems. */
#include "datasets/synthetic.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/real.h"
#include "core/base/rng.h"

enum { SYN_DIGITS_CAP = 4096 }; /* keeps every length far inside int */
/* Attempts before giving up: a split that no problem hashes into (a tiny digit range) would otherwise
 * loop forever; with a non-empty split, failing at eval_percent=1 has probability 0.99^65536. */
enum { SYN_MAX_ATTEMPTS = 1 << 16 };

typedef struct {
    Dataset ds;
    SynConfig cfg;
} SynDataset;

const char *const syn_task_names[] = {[SYN_COPY] = "copy", [SYN_REVERSE] = "reverse", [SYN_ADD] = "add", NULL};

int syn_max_len(const SynConfig *cfg) {
    int d = cfg->max_digits;
    /* BOS a SEP c EOS; add: BOS x PLUS y SEP (x+y: one digit more at most) EOS */
    return cfg->task == SYN_ADD ? 3 * d + 5 : 2 * d + 3;
}

/* A candidate prompt: operand lengths, and its stream positioned at the first digit. */
typedef struct {
    int a, b; /* digits of the first / second operand (b = 0 for copy and reverse) */
    Rng digits;
} Prompt;

static int prompt_len(const Prompt *p) { return p->b ? p->a + 1 + p->b : p->a; }

static int draw_len(Rng *r, const SynConfig *cfg) {
    return cfg->min_digits + (int)rng_next_below(r, (uint64_t)(cfg->max_digits - cfg->min_digits + 1));
}

/* Next digit of an operand; `lead` = most significant digit of a multi-digit number, never zero. */
static int draw_digit(Rng *r, int lead) { return lead ? 1 + (int)rng_next_below(r, 9) : (int)rng_next_below(r, 10); }

static Prompt draw_candidate(uint64_t example_key, uint64_t attempt, const SynConfig *cfg) {
    Rng r = rng_make(rng_key(example_key, attempt));
    Prompt p = {.a = draw_len(&r, cfg), .b = 0};
    if (cfg->task == SYN_ADD) p.b = draw_len(&r, cfg);
    p.digits = r;
    return p;
}

/* Replays the prompt's tokens to out(prompt_len) if non-NULL; returns the content hash. */
static uint64_t replay_prompt(const Prompt *p, int add, int32_t *out) {
    Rng r = p->digits;
    uint64_t h = rng_key_str(0, "synthetic.split");
    int n = prompt_len(p);
    for (int k = 0; k < n; k++) {
        int tok = SYN_PLUS;
        if (k != p->a) {
            int len = k < p->a ? p->a : p->b, pos = k < p->a ? k : k - p->a - 1;
            tok = draw_digit(&r, add && pos == 0 && len > 1);
        }
        h = rng_key(h, (uint64_t)tok);
        if (out) out[k] = tok;
    }
    return rng_key(h, (uint64_t)n);
}

static int in_split(uint64_t hash, Split split, int eval_percent) {
    return ((int)(hash % 100) < eval_percent) == (split == SPLIT_EVAL);
}

static PeftcStatus find_prompt(const SynConfig *cfg, Split split, int64_t id, Prompt *out) {
    uint64_t key = rng_key(rng_key(rng_key_str(cfg->seed, "synthetic.example"), (uint64_t)split), (uint64_t)id);
    for (uint64_t attempt = 0; attempt < SYN_MAX_ATTEMPTS; attempt++) {
        *out = draw_candidate(key, attempt, cfg);
        if (in_split(replay_prompt(out, cfg->task == SYN_ADD, NULL), split, cfg->eval_percent)) return PEFTC_OK;
    }
    return PEFTC_ERR(PEFTC_EINVAL,
                     "no data.task=%s problem with %d..%d digits (data.min_digits..data.max_digits) falls in the %s "
                     "split at data.eval_percent=%d after %d draws: widen the digit range",
                     syn_task_names[cfg->task], cfg->min_digits, cfg->max_digits, split == SPLIT_EVAL ? "eval" : "train",
                     cfg->eval_percent, (int)SYN_MAX_ATTEMPTS);
}

/* Whether x + y has one digit more than the longer operand, decided most significant column first:
 * the first column whose digit sum is not 9 decides (>= 10 carries out; <= 8 absorbs any carry from
 * below); a run of 9s to the end carries nothing. Replays x and y side by side, so no storage. */
static int sum_carries_out(const Prompt *p) {
    Rng x = p->digits, y = p->digits;
    for (int k = 0; k < p->a; k++) draw_digit(&y, k == 0 && p->a > 1); /* y's digits follow x's */
    int m = p->a > p->b ? p->a : p->b;
    for (int s = m - 1; s >= 0; s--) {
        int dx = s < p->a ? draw_digit(&x, s == p->a - 1 && p->a > 1) : 0;
        int dy = s < p->b ? draw_digit(&y, s == p->b - 1 && p->b > 1) : 0;
        if (dx + dy != 9) return dx + dy > 9;
    }
    return 0;
}

static int answer_len(const SynConfig *cfg, const Prompt *p) {
    if (cfg->task != SYN_ADD) return p->a;
    return (p->a > p->b ? p->a : p->b) + sum_carries_out(p);
}

/* Writes the answer(n) after the prompt already in seq (BOS at 0, prompt from 1). */
static void write_answer(const SynConfig *cfg, const Prompt *p, int32_t *seq, int32_t *ans, int n) {
    const int32_t *x = seq + 1, *y = seq + 1 + p->a + 1;
    int carry = 0;
    for (int i = 0; i < n; i++) {
        switch (cfg->task) {
        case SYN_COPY: ans[i] = x[i]; break;
        case SYN_REVERSE: ans[i] = x[p->a - 1 - i]; break;
        case SYN_ADD: { /* i-th least significant digit, written from the right */
            int s = (i < p->a ? x[p->a - 1 - i] : 0) + (i < p->b ? y[p->b - 1 - i] : 0) + carry;
            ans[n - 1 - i] = s % 10;
            carry = s / 10;
        } break;
        }
    }
}

static PeftcStatus check_get_args(Split split, int64_t id, const int32_t *tokens, const int32_t *targets, int T) {
    if (split != SPLIT_TRAIN && split != SPLIT_EVAL)
        return PEFTC_ERR(PEFTC_EINVAL, "synthetic: split must be SPLIT_TRAIN or SPLIT_EVAL, got %d", (int)split);
    if (id < 0) return PEFTC_ERR(PEFTC_EINVAL, "synthetic: example id must be >= 0, got %lld", (long long)id);
    if (!tokens || !targets) return PEFTC_ERR(PEFTC_EINVAL, "synthetic: tokens and targets must not be NULL");
    if (T < 1) return PEFTC_ERR(PEFTC_EINVAL, "train.seq_len must be >= 1, got %d", T);
    return PEFTC_OK;
}

/* tokens(T), targets(T) */
static PeftcStatus syn_get(const Dataset *ds, Split split, int64_t id, int32_t *tokens, int32_t *targets, int T) {
    const SynConfig *cfg = ds->impl;
    PEFTC_TRY(check_get_args(split, id, tokens, targets, T));
    Prompt p;
    PEFTC_TRY(find_prompt(cfg, split, id, &p));
    int plen = prompt_len(&p), alen = answer_len(cfg, &p);
    int sep = 1 + plen, eos = sep + 1 + alen, len = eos + 1;
    if (len > T)
        return PEFTC_ERR(PEFTC_EINVAL,
                         "train.seq_len=%d is too short: %s example %lld (data.task=%s) needs %d tokens, and the "
                         "longest for data.max_digits=%d needs %d",
                         T, split == SPLIT_EVAL ? "eval" : "train", (long long)id, syn_task_names[cfg->task], len,
                         cfg->max_digits, syn_max_len(cfg));
    tokens[0] = SYN_BOS;
    replay_prompt(&p, cfg->task == SYN_ADD, tokens + 1);
    tokens[sep] = SYN_SEP;
    write_answer(cfg, &p, tokens, tokens + sep + 1, alen);
    tokens[eos] = SYN_EOS;
    for (int t = len; t < T; t++) tokens[t] = SYN_PAD;
    /* Loss only where the next token is an answer digit or EOS: SEP .. last answer digit. */
    for (int t = 0; t < T; t++) targets[t] = t >= sep && t < eos ? tokens[t + 1] : PEFTC_IGNORE_INDEX;
    return PEFTC_OK;
}

static int64_t syn_size(const Dataset *ds, Split split) {
    (void)ds;
    (void)split;
    return -1; /* endless: any id is a fresh draw */
}

static void syn_free(Dataset *ds) { free(ds); /* the SynDataset block holds the config too */ }

static PeftcStatus check_config(const SynConfig *cfg) {
    if ((unsigned)cfg->task > SYN_ADD)
        return PEFTC_ERR(PEFTC_EINVAL, "data.task: no task number %d", (int)cfg->task);
    if (cfg->min_digits < 1) return PEFTC_ERR(PEFTC_EINVAL, "data.min_digits must be >= 1, got %d", cfg->min_digits);
    if (cfg->max_digits < cfg->min_digits || cfg->max_digits > SYN_DIGITS_CAP)
        return PEFTC_ERR(PEFTC_EINVAL, "data.max_digits must be in [data.min_digits=%d, %d], got %d", cfg->min_digits,
                         (int)SYN_DIGITS_CAP, cfg->max_digits);
    if (cfg->eval_percent < 1 || cfg->eval_percent > 50)
        return PEFTC_ERR(PEFTC_EINVAL, "data.eval_percent must be in [1, 50], got %d", cfg->eval_percent);
    return PEFTC_OK;
}

PeftcStatus syn_dataset_create(Dataset **out, const SynConfig *cfg) {
    static const char *const names[] = {"synthetic-copy", "synthetic-reverse", "synthetic-add"};
    if (!out || !cfg) return PEFTC_ERR(PEFTC_EINVAL, "syn_dataset_create: out and cfg must not be NULL");
    *out = NULL;
    PEFTC_TRY(check_config(cfg));
    /* Fail at startup, not at the first eval, if a split is empty for this digit range. */
    Prompt probe;
    PEFTC_TRY(find_prompt(cfg, SPLIT_TRAIN, 0, &probe));
    PEFTC_TRY(find_prompt(cfg, SPLIT_EVAL, 0, &probe));
    SynDataset *s = calloc(1, sizeof *s);
    if (!s) return PEFTC_ERR(PEFTC_ENOMEM, "synthetic: out of memory");
    s->cfg = *cfg;
    s->ds = (Dataset){.name = names[cfg->task],
                      .size = syn_size,
                      .get = syn_get,
                      .free = syn_free,
                      .vocab_needed = SYN_VOCAB,
                      .impl = &s->cfg};
    *out = &s->ds;
    return PEFTC_OK;
}
