/* Sampler sharding/resume/permutation and the synthetic tasks. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/real.h"
#include "core/base/status.h"
#include "core/train/sampler.h"
#include "datasets/synthetic.h"
#include "tests/testutil.h"

/* An assertion without Check's bookkeeping (a pipe write per passing ck_assert), for hot loops. */
#define REQUIRE(cond, ...)                                                                                             \
    do {                                                                                                               \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                                        \
    } while (0)

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* All ids of one step across every rank and micro-batch: out(B*accum*world), sorted. */
static void step_ids(uint64_t seed, int64_t n, int B, int accum, int world, int64_t cursor, int64_t *out) {
    for (int r = 0; r < world; r++) {
        Sampler s;
        sampler_init(&s, seed, n, B, accum, world, r);
        s.cursor = cursor;
        for (int m = 0; m < accum; m++) sampler_micro_ids(&s, m, out + ((int64_t)r * accum + m) * B);
    }
    qsort(out, (size_t)B * accum * world, sizeof *out, cmp_i64);
}

START_TEST(sampler_shards_disjoint) {
    /* Finite n a multiple of G, so no step straddles an epoch (across one, ids legitimately recur). */
    const int64_t ns[] = {-1, 48, 24};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        enum { B = 4, ACCUM = 2, WORLD = 3, G = B * ACCUM * WORLD };
        int64_t ids[G];
        for (int64_t step = 0; step < 5; step++) {
            step_ids(7, ns[k], B, ACCUM, WORLD, step * G, ids);
            for (int i = 1; i < G; i++)
                REQUIRE(ids[i] != ids[i - 1], "n=%lld step %lld: id %lld twice", (long long)ns[k], (long long)step,
                        (long long)ids[i]);
        }
    }
}
END_TEST

START_TEST(sampler_union_independent_of_world) {
    enum { B = 3, N = 4, G = B * N };
    const int64_t ns[] = {-1, 37, 5};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        Sampler s;
        sampler_init(&s, 11, ns[k], B, N, 1, 0);
        for (int step = 0; step < 6; step++) {
            int64_t a[G], b[G], c[G];
            step_ids(11, ns[k], B, N, 1, s.cursor, a);
            step_ids(11, ns[k], B, 1, N, s.cursor, b);
            step_ids(11, ns[k], B, N / 2, 2, s.cursor, c);
            ck_assert_mem_eq(a, b, sizeof a);
            ck_assert_mem_eq(a, c, sizeof a);
            sampler_advance(&s);
        }
        ck_assert_int_eq(s.cursor, 6 * G);
    }
}
END_TEST

/* The documented layout: rank r's micro m covers positions cursor + (m*world + r)*B + [0, B). */
START_TEST(sampler_layout_matches_contract) {
    enum { B = 3, ACCUM = 2, WORLD = 3 };
    for (int r = 0; r < WORLD; r++) {
        Sampler s;
        sampler_init(&s, 5, 29, B, ACCUM, WORLD, r);
        sampler_advance(&s);
        ck_assert_int_eq(s.cursor, B * ACCUM * WORLD);
        for (int m = 0; m < ACCUM; m++) {
            int64_t ids[B];
            sampler_micro_ids(&s, m, ids);
            for (int b = 0; b < B; b++)
                REQUIRE(ids[b] == sampler_id_at(&s, s.cursor + (int64_t)(m * WORLD + r) * B + b),
                        "rank %d micro %d slot %d", r, m, b);
        }
    }
}
END_TEST

START_TEST(sampler_resumes_from_cursor) {
    enum { B = 2, ACCUM = 3, WORLD = 2 };
    Sampler a;
    sampler_init(&a, 99, 41, B, ACCUM, WORLD, 1);
    for (int i = 0; i < 5; i++) sampler_advance(&a);
    Sampler b;
    sampler_init(&b, 99, 41, B, ACCUM, WORLD, 1);
    b.cursor = a.cursor; /* what a checkpoint stores */
    for (int step = 0; step < 4; step++) {
        for (int m = 0; m < ACCUM; m++) {
            int64_t x[B], y[B];
            sampler_micro_ids(&a, m, x);
            sampler_micro_ids(&b, m, y);
            ck_assert_mem_eq(x, y, sizeof x);
        }
        sampler_advance(&a);
        sampler_advance(&b);
    }
}
END_TEST

START_TEST(sampler_permutation_is_bijection) {
    const int64_t ns[] = {1, 2, 3, 5, 16, 17, 64, 100, 1000, 4097};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        int64_t n = ns[k];
        Sampler s;
        sampler_init(&s, 1234, n, 1, 1, 1, 0);
        int *seen = calloc((size_t)n, sizeof *seen);
        int64_t same_as_epoch0 = 0;
        for (int64_t e = 0; e < 3; e++) {
            for (int64_t i = 0; i < n; i++) {
                int64_t id = sampler_id_at(&s, e * n + i);
                REQUIRE(id >= 0 && id < n, "n=%lld: id %lld out of range", (long long)n, (long long)id);
                REQUIRE(seen[id] == e, "n=%lld epoch %lld: id %lld repeated", (long long)n, (long long)e,
                        (long long)id);
                seen[id]++;
                if (e == 1) same_as_epoch0 += id == sampler_id_at(&s, i);
            }
        }
        if (n >= 16) ck_assert_msg(same_as_epoch0 < n, "n=%lld: epoch 1 repeats epoch 0", (long long)n);
        free(seen);
    }
}
END_TEST

START_TEST(sampler_huge_n_and_endless) {
    Sampler s;
    sampler_init(&s, 5, (int64_t)1 << 50, 1, 1, 1, 0);
    for (int64_t p = 0; p < 1000; p++) {
        int64_t id = sampler_id_at(&s, p);
        REQUIRE(id >= 0 && id < ((int64_t)1 << 50), "id %lld out of range", (long long)id);
        REQUIRE(p == 0 || id != sampler_id_at(&s, p - 1), "positions %lld and %lld collide", (long long)p,
                (long long)p - 1);
    }
    sampler_init(&s, 5, -1, 1, 1, 1, 0);
    ck_assert_int_eq(sampler_id_at(&s, 123456789), 123456789);
    /* A different seed shuffles differently. */
    Sampler a, b;
    sampler_init(&a, 1, 1000, 1, 1, 1, 0);
    sampler_init(&b, 2, 1000, 1, 1, 1, 0);
    int same = 0;
    for (int64_t p = 0; p < 1000; p++) same += sampler_id_at(&a, p) == sampler_id_at(&b, p);
    ck_assert_int_lt(same, 50);
}
END_TEST

/* ---- synthetic ---- */

enum { TMAX = 128 };

typedef struct {
    int32_t tok[TMAX], tgt[TMAX];
    int sep, eos, plus; /* positions; plus = -1 when absent */
} Example;

static Dataset *make_ds(SynTask task, int lo, int hi, uint64_t seed) {
    SynConfig cfg = {.task = task, .min_digits = lo, .max_digits = hi, .seed = seed, .eval_percent = 10};
    Dataset *ds = NULL;
    PeftcStatus st = syn_dataset_create(&ds, &cfg);
    ck_assert_msg(st == PEFTC_OK, "syn_dataset_create: %s", peftc_err_msg());
    return ds;
}

/* Fetches and checks the layout BOS prompt SEP answer EOS PAD... */
static void fetch(const Dataset *ds, Split split, int64_t id, int T, Example *ex) {
    PeftcStatus st = ds->get(ds, split, id, ex->tok, ex->tgt, T);
    REQUIRE(st == PEFTC_OK, "get(%lld): %s", (long long)id, peftc_err_msg());
    REQUIRE(ex->tok[0] == SYN_BOS, "id %lld: no BOS", (long long)id);
    ex->sep = ex->eos = ex->plus = -1;
    for (int t = 1; t < T && ex->eos < 0; t++) {
        int v = ex->tok[t];
        if (v == SYN_SEP) {
            REQUIRE(ex->sep == -1, "id %lld: two SEP", (long long)id);
            ex->sep = t;
        } else if (v == SYN_PLUS) {
            REQUIRE(ex->plus == -1, "id %lld: two PLUS", (long long)id);
            ex->plus = t;
        } else if (v == SYN_EOS) {
            ex->eos = t;
        } else {
            REQUIRE(v >= 0 && v <= 9, "id %lld: token %d at %d", (long long)id, v, t);
        }
    }
    REQUIRE(ex->sep > 1 && ex->eos > ex->sep + 1, "id %lld: bad layout", (long long)id);
    for (int t = ex->eos + 1; t < T; t++) REQUIRE(ex->tok[t] == SYN_PAD, "id %lld: pad %d", (long long)id, t);
}

/* Digits tok[from, to) as a number (< 10^18). */
static uint64_t number(const int32_t *tok, int from, int to) {
    uint64_t v = 0;
    for (int t = from; t < to; t++) v = v * 10 + (uint64_t)tok[t];
    return v;
}

START_TEST(synthetic_answers_correct) {
    for (int task = SYN_COPY; task <= SYN_ADD; task++) {
        int hi = task == SYN_ADD ? 18 : 20;
        for (int range = 0; range < 2; range++) {
            int lo = range ? 1 : 3, top = range ? 2 : hi; /* small range: many carries through 9s */
            Dataset *ds = make_ds((SynTask)task, lo, top, 3);
            for (int64_t id = 0; id < 2000; id++) {
                Example ex;
                fetch(ds, id % 2 ? SPLIT_EVAL : SPLIT_TRAIN, id, TMAX, &ex);
                const int32_t *ans = ex.tok + ex.sep + 1;
                int alen = ex.eos - ex.sep - 1;
                if (task != SYN_ADD) {
                    int n = ex.sep - 1;
                    REQUIRE(ex.plus < 0 && n >= lo && n <= top && alen == n, "task %d id %lld: lengths", task,
                            (long long)id);
                    for (int k = 0; k < n; k++)
                        REQUIRE(ans[k] == ex.tok[task == SYN_COPY ? 1 + k : n - k], "task %d id %lld: answer digit %d",
                                task, (long long)id, k);
                    continue;
                }
                int a = ex.plus - 1, b = ex.sep - ex.plus - 1;
                REQUIRE(a >= lo && a <= top && b >= lo && b <= top, "id %lld: operand lengths %d, %d", (long long)id, a,
                        b);
                REQUIRE(a == 1 || ex.tok[1] != 0, "id %lld: leading zero in x", (long long)id);
                REQUIRE(b == 1 || ex.tok[ex.plus + 1] != 0, "id %lld: leading zero in y", (long long)id);
                uint64_t x = number(ex.tok, 1, ex.plus), y = number(ex.tok, ex.plus + 1, ex.sep);
                char want[32], got[32];
                snprintf(want, sizeof want, "%llu", (unsigned long long)(x + y));
                for (int k = 0; k < alen; k++) got[k] = (char)('0' + ans[k]);
                got[alen] = '\0';
                REQUIRE(strcmp(got, want) == 0, "%llu + %llu: got %s", (unsigned long long)x, (unsigned long long)y,
                        got);
            }
            ds->free(ds);
        }
    }
}
END_TEST

START_TEST(synthetic_targets_are_next_tokens_on_answer) {
    for (int task = SYN_COPY; task <= SYN_ADD; task++) {
        Dataset *ds = make_ds((SynTask)task, 1, 8, 4);
        const int T = syn_max_len(&(SynConfig){.task = (SynTask)task, .max_digits = 8}) + 3;
        for (int64_t id = 0; id < 500; id++) {
            Example ex;
            fetch(ds, SPLIT_TRAIN, id, T, &ex);
            for (int t = 0; t < T; t++) {
                int want = t >= ex.sep && t < ex.eos ? ex.tok[t + 1] : PEFTC_IGNORE_INDEX;
                REQUIRE(ex.tgt[t] == want, "task %d id %lld: target[%d] = %d, want %d", task, (long long)id, t,
                        ex.tgt[t], want);
            }
            REQUIRE(ex.tgt[ex.eos - 1] == SYN_EOS, "id %lld: last label is not EOS", (long long)id);
        }
        /* A sequence that exactly fills T: the final position has no next token. */
        Example ex;
        fetch(ds, SPLIT_TRAIN, 0, T, &ex);
        int len = ex.eos + 1;
        fetch(ds, SPLIT_TRAIN, 0, len, &ex);
        ck_assert_int_eq(ex.eos, len - 1);
        ck_assert_int_eq(ex.tgt[len - 1], PEFTC_IGNORE_INDEX);
        ck_assert_int_eq(ex.tgt[len - 2], SYN_EOS);
        ds->free(ds);
    }
}
END_TEST

START_TEST(synthetic_deterministic) {
    Dataset *a = make_ds(SYN_ADD, 1, 6, 42), *b = make_ds(SYN_ADD, 1, 6, 42), *c = make_ds(SYN_ADD, 1, 6, 43);
    int differs = 0;
    for (int64_t id = 0; id < 200; id++) {
        Example x, y, z;
        fetch(a, SPLIT_EVAL, id, 40, &x);
        fetch(b, SPLIT_EVAL, id, 40, &y);
        size_t sz = sizeof(int32_t) * 40;
        REQUIRE(!memcmp(x.tok, y.tok, sz) && !memcmp(x.tgt, y.tgt, sz), "id %lld differs between instances",
                (long long)id);
        fetch(a, SPLIT_EVAL, id, 40, &y); /* repeat on the same object */
        REQUIRE(!memcmp(x.tok, y.tok, sz), "id %lld differs on repeat", (long long)id);
        fetch(c, SPLIT_EVAL, id, 40, &z);
        differs += memcmp(x.tok, z.tok, sz) != 0;
        fetch(a, SPLIT_TRAIN, id, 40, &z);
        differs += memcmp(x.tok, z.tok, sz) != 0;
    }
    ck_assert_int_gt(differs, 300);
    a->free(a), b->free(b), c->free(c);
}
END_TEST

/* Prompt of an example as a string, for set comparisons. */
static void prompt_key(const Example *ex, char *out) {
    int n = 0;
    for (int t = 1; t < ex->sep; t++) out[n++] = (char)('0' + ex->tok[t]); /* PLUS shows as ':' */
    out[n] = '\0';
}

static int cmp_str16(const void *a, const void *b) { return strcmp(a, b); }

START_TEST(synthetic_splits_disjoint) {
    enum { N = 3000, W = 16 };
    for (int task = SYN_COPY; task <= SYN_ADD; task++) {
        /* A small space (10..1110 problems), so a leak between splits would show up. */
        Dataset *ds = make_ds((SynTask)task, 1, task == SYN_ADD ? 2 : 3, 8);
        char(*train)[W] = malloc(sizeof(char[W]) * N), (*eval)[W] = malloc(sizeof(char[W]) * N);
        for (int64_t id = 0; id < N; id++) {
            Example ex;
            fetch(ds, SPLIT_TRAIN, id, 32, &ex);
            prompt_key(&ex, train[id]);
            fetch(ds, SPLIT_EVAL, id, 32, &ex);
            prompt_key(&ex, eval[id]);
        }
        qsort(train, N, W, cmp_str16);
        qsort(eval, N, W, cmp_str16);
        for (int i = 0, j = 0; i < N && j < N;) {
            int c = strcmp(train[i], eval[j]);
            REQUIRE(c != 0, "task %d: prompt %s in both splits", task, train[i]);
            if (c < 0)
                i++;
            else
                j++;
        }
        free(train), free(eval);
        ds->free(ds);
    }
}
END_TEST

START_TEST(synthetic_lengths_and_metadata) {
    for (int task = SYN_COPY; task <= SYN_ADD; task++) {
        SynConfig cfg = {.task = (SynTask)task, .min_digits = 2, .max_digits = 5, .seed = 1, .eval_percent = 20};
        Dataset *ds = NULL;
        ck_assert_int_eq(syn_dataset_create(&ds, &cfg), PEFTC_OK);
        ck_assert_int_eq(ds->vocab_needed, SYN_VOCAB);
        ck_assert_int_eq(ds->size(ds, SPLIT_TRAIN), -1);
        ck_assert_int_eq(ds->size(ds, SPLIT_EVAL), -1);
        int maxlen = syn_max_len(&cfg), longest = 0;
        for (int64_t id = 0; id < 3000; id++) {
            Example ex;
            fetch(ds, id % 3 ? SPLIT_TRAIN : SPLIT_EVAL, id, maxlen, &ex); /* T = max always fits */
            if (ex.eos + 1 > longest) longest = ex.eos + 1;
        }
        ck_assert_int_eq(longest, maxlen); /* the bound is tight */
        ds->free(ds);
    }
}
END_TEST

START_TEST(synthetic_errors) {
    Dataset *ds = make_ds(SYN_ADD, 3, 6, 9);
    Example ex;
    fetch(ds, SPLIT_TRAIN, 17, TMAX, &ex);
    int need = ex.eos + 1;
    peftc_err_clear();
    ck_assert_int_eq(ds->get(ds, SPLIT_TRAIN, 17, ex.tok, ex.tgt, need - 1), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "train.seq_len"));
    char needs[32];
    snprintf(needs, sizeof needs, "needs %d", need);
    ck_assert_msg(strstr(peftc_err_msg(), needs), "message lacks '%s': %s", needs, peftc_err_msg());
    ck_assert_int_eq(ds->get(ds, SPLIT_TRAIN, 17, ex.tok, ex.tgt, need), PEFTC_OK);
    ds->free(ds);

    ck_assert_str_eq(syn_task_names[SYN_REVERSE], "reverse");
    ck_assert_str_eq(syn_task_names[SYN_ADD], "add");
    ck_assert_ptr_null(syn_task_names[SYN_ADD + 1]);

    SynConfig bad = {.task = SYN_COPY, .min_digits = 0, .max_digits = 3, .eval_percent = 10};
    ck_assert_int_eq(syn_dataset_create(&ds, &bad), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "data.min_digits"));
    bad.min_digits = 4;
    ck_assert_int_eq(syn_dataset_create(&ds, &bad), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "data.max_digits"));
    bad.min_digits = 1, bad.eval_percent = 51;
    ck_assert_int_eq(syn_dataset_create(&ds, &bad), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "data.eval_percent"));
}
END_TEST

static Suite *datasets_suite(void) {
    Suite *s = suite_create("datasets");
    TCase *tc = tcase_create("sampler");
    tcase_add_test(tc, sampler_shards_disjoint);
    tcase_add_test(tc, sampler_union_independent_of_world);
    tcase_add_test(tc, sampler_layout_matches_contract);
    tcase_add_test(tc, sampler_resumes_from_cursor);
    tcase_add_test(tc, sampler_permutation_is_bijection);
    tcase_add_test(tc, sampler_huge_n_and_endless);
    suite_add_tcase(s, tc);
    tc = tcase_create("synthetic");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, synthetic_answers_correct);
    tcase_add_test(tc, synthetic_targets_are_next_tokens_on_answer);
    tcase_add_test(tc, synthetic_deterministic);
    tcase_add_test(tc, synthetic_splits_disjoint);
    tcase_add_test(tc, synthetic_lengths_and_metadata);
    tcase_add_test(tc, synthetic_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return tu_run_suite(datasets_suite());
}
