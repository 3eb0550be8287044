#include "launch/evaluate.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/clock.h"
#include "core/models/generate.h"

/* How many prompts are decoded together: one batched decode step reads the weights once for all. */
enum { EM_BATCH = 16 };

/* Files have no task-specific normalisation: compare with surrounding whitespace trimmed. */
static int trimmed_equal(const char *a, const char *b) {
    while (isspace((unsigned char)*a)) a++;
    while (isspace((unsigned char)*b)) b++;
    size_t la = strlen(a), lb = strlen(b);
    while (la && isspace((unsigned char)a[la - 1])) la--;
    while (lb && isspace((unsigned char)b[lb - 1])) lb--;
    return la == lb && memcmp(a, b, la) == 0;
}

static int answer_matches(const Session *s, const char *generated, const char *reference) {
    int task = sft_task(s->data);
    return task >= 0 ? task_match((TaskKind)task, generated, reference) : trimmed_equal(generated, reference);
}

/* Copies text for a one-line display: newlines and tabs become \n and \t. */
static void one_line(char *dst, size_t cap, const char *src) {
    size_t o = 0;
    for (; *src && o + 3 < cap; src++) {
        if (*src == '\n' || *src == '\t') {
            dst[o++] = '\\';
            dst[o++] = *src == '\n' ? 'n' : 't';
        } else {
            dst[o++] = *src;
        }
    }
    dst[o] = '\0';
}

static void keep_sample(EmStats *out, const char *prompt, const char *answer, const char *reference) {
    one_line(out->sample_prompt, sizeof out->sample_prompt, prompt);
    one_line(out->sample_answer, sizeof out->sample_answer, answer);
    one_line(out->sample_reference, sizeof out->sample_reference, reference);
}

/* Generates and scores examples ids[0..n) of the held-out split; adds to *correct. */
static PeftcStatus em_batch(Session *s, const int64_t *ids, int n, int max_new, int64_t *correct, EmStats *out) {
    const int32_t *prompts[EM_BATCH];
    const char *refs[EM_BATCH];
    int lens[EM_BATCH], out_n[EM_BATCH];
    int32_t *gen[EM_BATCH] = {0}, stop[8];
    for (int b = 0; b < n; b++) PEFTC_TRY(sft_prompt(s->data, SPLIT_EVAL, ids[b], &prompts[b], &lens[b], &refs[b]));
    int n_stop = chat_stop_ids(&s->chat, s->tok, stop, 8);
    PeftcStatus st = PEFTC_OK;
    for (int b = 0; b < n && st == PEFTC_OK; b++)
        if (!(gen[b] = malloc((size_t)max_new * sizeof *gen[b]))) st = PEFTC_ERR(PEFTC_ENOMEM, "eval: out of memory");
    SamplerConfig greedy = {.temperature = 0, .top_p = 1, .top_k = 0, .seed = 0, .vocab_limit = tok_vocab_size(s->tok)};
    if (st == PEFTC_OK)
        st = gen_generate(s->model, &greedy, n, prompts, lens, max_new, stop, n_stop, gen, out_n, NULL, NULL);
    for (int b = 0; b < n && st == PEFTC_OK; b++) {
        char *text = NULL;
        size_t len;
        st = tok_decode(s->tok, gen[b], (size_t)out_n[b], 1, &text, &len);
        if (st != PEFTC_OK) break;
        *correct += answer_matches(s, text, refs[b] ? refs[b] : "");
        if (ids[b] == 0 && !out->sample_answer[0]) {
            char *ptext = NULL;
            size_t plen;
            if (tok_decode(s->tok, prompts[b], (size_t)lens[b], 0, &ptext, &plen) == PEFTC_OK)
                keep_sample(out, ptext, text, refs[b] ? refs[b] : "");
            free(ptext);
        }
        free(text);
    }
    for (int b = 0; b < n; b++) free(gen[b]);
    return st;
}

PeftcStatus em_evaluate(Session *s, Comm *comm, int64_t n, int max_new, EmStats *out) {
    memset(out, 0, sizeof *out);
    double t0 = clock_seconds();
    int64_t avail = s->data->size(s->data, SPLIT_EVAL);
    if (avail >= 0 && n > avail) n = avail;
    int rank = comm_rank(comm), world = comm_size(comm);
    int64_t correct = 0, mine = 0, ids[EM_BATCH];
    PeftcStatus local = s->tok ? PEFTC_OK : PEFTC_ERR(PEFTC_EINVAL, "eval.examples needs a tokenizer (model.path)");
    /* Rank r answers ids r, r+world, ...: the same examples whatever the world size. */
    for (int64_t id = rank; id < n && local == PEFTC_OK;) {
        int k = 0;
        for (; k < EM_BATCH && id < n; k++, id += world) ids[k] = id;
        local = em_batch(s, ids, k, max_new, &correct, out);
        mine += k;
    }
    double sums[3] = {(double)correct, (double)mine, local != PEFTC_OK};
    PEFTC_TRY(comm_allreduce_f64(comm, sums, 3, COMM_SUM));
    if (local != PEFTC_OK) return local;
    if (sums[2] > 0) return PEFTC_ERR(PEFTC_ECOMM, "eval: %g other rank(s) failed during exact-match evaluation", sums[2]);
    out->correct = (int64_t)sums[0];
    out->total = (int64_t)sums[1];
    out->seconds = clock_seconds() - t0;
    return PEFTC_OK;
}

int em_enabled(const Session *s) {
    return s->cfg.em_examples > 0 && s->tok && (s->cfg.sft.path[0] || !data_task_is_synthetic(s->cfg.task));
}

/* Exact-match accuracy of greedy answers on held-out prompts; rank 0 prints it. */
PeftcStatus em_report(Session *s, Comm *comm, const char *when, double *acc) {
    EmStats es;
    PEFTC_TRY(em_evaluate(s, comm, s->cfg.em_examples, s->cfg.max_new_tokens, &es));
    *acc = es.total ? (double)es.correct / (double)es.total : 0;
    if (comm_rank(comm) == 0) {
        printf("exact match %s: %lld/%lld = %.1f%% (%.1f s)\n", when, (long long)es.correct, (long long)es.total,
               100 * *acc, es.seconds);
        if (es.sample_reference[0])
            printf("  e.g. reference \"%s\", model said \"%s\"\n", es.sample_reference, es.sample_answer);
        fflush(stdout);
    }
    return PEFTC_OK;
}

