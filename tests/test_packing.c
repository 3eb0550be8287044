/* Packing's placement (best-fit decreasing) and rows, and the spans the SFT data reports for it. The
 * packed model's numbers (same loss and gradients as unpacked) are grad_packing's; the packed runs
 * through the binary (ranks, resume) are cli_packing's. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/real.h"
#include "core/base/rng.h"
#include "core/train/packing.h"
#include "datasets/sft.h"
#include "tests/testutil.h"

/* n spans in [1, T] from stream key, skewed short as SFT examples are. */
static int32_t *random_spans(int64_t n, int T, uint64_t key) {
    int32_t *s = malloc((size_t)n * sizeof *s);
    for (int64_t i = 0; i < n; i++) {
        double u = rng_uniform(key, (uint64_t)i);
        s[i] = 1 + (int32_t)(u * u * T);
        if (s[i] > T) s[i] = T;
    }
    return s;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* Best-fit decreasing written plainly: every open window scanned for the least room that fits. Returns
 * the window count and leaves each window's fill in fill (sorted). */
static int64_t reference_bfd(const int32_t *span, int64_t n, int T, int *fill) {
    int64_t *order = malloc((size_t)n * sizeof *order), nw = 0;
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = 1; i < n; i++) /* insertion sort: span descending, then id */
        for (int64_t j = i; j > 0 && span[order[j - 1]] < span[order[j]]; j--) {
            int64_t x = order[j];
            order[j] = order[j - 1], order[j - 1] = x;
        }
    for (int64_t j = 0; j < n; j++) {
        int s = span[order[j]];
        int64_t best = -1;
        for (int64_t w = 0; w < nw; w++)
            if (T - fill[w] >= s && (best < 0 || fill[w] > fill[best])) best = w;
        if (best < 0) fill[best = nw++] = 0;
        fill[best] += s;
    }
    qsort(fill, (size_t)nw, sizeof *fill, cmp_int);
    free(order);
    return nw;
}

START_TEST(every_example_once_within_windows) {
    enum { N = 700, T = 64 };
    int32_t *span = random_spans(N, T, 5);
    Packing p;
    ck_assert_int_eq(packing_from_spans(&p, span, N, T), PEFTC_OK);
    int seen[N] = {0};
    int64_t used = 0;
    ck_assert_int_eq(p.first[0], 0);
    ck_assert_int_eq(p.first[p.n], N);
    for (int64_t w = 0; w < p.n; w++) {
        int fill = 0;
        ck_assert_int_gt(p.first[w + 1], p.first[w]); /* no empty window */
        for (int64_t j = p.first[w]; j < p.first[w + 1]; j++) {
            seen[p.members[j]]++;
            ck_assert_int_eq(p.spans[j], span[p.members[j]]);
            fill += p.spans[j];
        }
        ck_assert_int_le(fill, T);
        used += fill;
    }
    for (int i = 0; i < N; i++) ck_assert_int_eq(seen[i], 1);
    ck_assert_int_eq(used, p.used);
    ck_assert_int_eq(p.examples, N);
    packing_free(&p);
    free(span);
}
END_TEST

START_TEST(best_fit_decreasing_as_written_plainly) {
    enum { N = 600 };
    for (int T = 7; T <= 200; T += 61) {
        int32_t *span = random_spans(N, T, (uint64_t)T);
        int *want = malloc(N * sizeof *want), *got = malloc(N * sizeof *got);
        int64_t nw = reference_bfd(span, N, T, want);
        Packing p, again;
        ck_assert_int_eq(packing_from_spans(&p, span, N, T), PEFTC_OK);
        ck_assert_int_eq(p.n, nw);
        for (int64_t w = 0; w < p.n; w++) {
            got[w] = 0;
            for (int64_t j = p.first[w]; j < p.first[w + 1]; j++) got[w] += p.spans[j];
        }
        qsort(got, (size_t)p.n, sizeof *got, cmp_int);
        ck_assert_mem_eq(got, want, (size_t)nw * sizeof *got);
        /* the longest example, lowest id among equals, opens the first window */
        int64_t longest = 0;
        for (int i = 1; i < N; i++)
            if (span[i] > span[longest]) longest = i;
        ck_assert_int_eq(p.members[0], longest);
        ck_assert_int_eq(packing_from_spans(&again, span, N, T), PEFTC_OK);
        ck_assert_mem_eq(again.members, p.members, N * sizeof *p.members);
        ck_assert_mem_eq(again.first, p.first, (size_t)(p.n + 1) * sizeof *p.first);
        packing_free(&p), packing_free(&again);
        free(span), free(want), free(got);
    }
}
END_TEST

/* 7 | 4 4: the 1 goes where the least room fits it (the 4s' window, room 2), not into the first window
 * with room (the 7's, room 3), which first-fit would choose. */
START_TEST(best_fit_not_first_fit) {
    const int32_t span[] = {7, 4, 4, 1};
    Packing p;
    ck_assert_int_eq(packing_from_spans(&p, span, 4, 10), PEFTC_OK);
    ck_assert_int_eq(p.n, 2);
    ck_assert_int_eq(p.first[1], 1);
    const int64_t want[] = {0, 1, 2, 3};
    ck_assert_mem_eq(p.members, want, sizeof want);
    ck_assert_int_eq(p.used, 16);
    packing_free(&p);
}
END_TEST

START_TEST(bad_spans_are_refused) {
    const int32_t zero[] = {3, 0}, wide[] = {3, 9};
    Packing p;
    ck_assert_int_eq(packing_from_spans(&p, zero, 2, 8), PEFTC_EINVAL);
    ck_assert_int_eq(packing_from_spans(&p, wide, 2, 8), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "example 1 spans 9 positions, outside [1, 8]"));
    Dataset endless = {.name = "syn-copy"};
    ck_assert_int_eq(packing_build(&p, &endless, SPLIT_TRAIN, -1, 8), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "data.packing=true"));
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "syn-copy"));
}
END_TEST

/* ---- rows, on the built-in records task tokenized by the fixture tokenizer ---- */

static Tokenizer *tok;
static ChatTemplate chat;
static char chat_system[512];

static Dataset *records(int seq_len, SftStats *st) {
    if (!tok) {
        ck_assert_int_eq(tok_load(&tok, PEFTC_FIXTURE_DIR "/tokenizer/smollm"), PEFTC_OK);
        chat.format = chat_detect(tok_chat_template(tok));
        chat_default_system(tok_chat_template(tok), chat_system, sizeof chat_system);
        chat.default_system = chat_system;
    }
    SftConfig c = {.task = TASK_RECORDS, .train_examples = 60, .eval_examples = 4, .seed = 3, .seq_len = seq_len};
    Dataset *ds;
    ck_assert_int_eq(sft_dataset_create(&ds, &c, tok, &chat, st), PEFTC_OK);
    return ds;
}

/* span s: target s-1 is trained, none after it, and get(s) is the first s entries of get(T). */
static void check_spans(const Dataset *ds, int T, int *truncated_at_T) {
    int32_t tok_t[512], tgt_t[512], tok_s[512], tgt_s[512];
    for (int64_t id = 0; id < ds->size(ds, SPLIT_TRAIN); id++) {
        int s = ds->span(ds, SPLIT_TRAIN, id, T);
        ck_assert_int_ge(s, 1);
        ck_assert_int_le(s, T);
        ck_assert_int_eq(ds->get(ds, SPLIT_TRAIN, id, tok_t, tgt_t, T), PEFTC_OK);
        ck_assert_int_eq(ds->get(ds, SPLIT_TRAIN, id, tok_s, tgt_s, s), PEFTC_OK);
        ck_assert_int_ne(tgt_t[s - 1], PEFTC_IGNORE_INDEX);
        for (int t = s; t < T; t++) ck_assert_int_eq(tgt_t[t], PEFTC_IGNORE_INDEX);
        ck_assert_mem_eq(tok_s, tok_t, (size_t)s * sizeof *tok_s);
        ck_assert_mem_eq(tgt_s, tgt_t, (size_t)s * sizeof *tgt_s);
        *truncated_at_T += s == T;
    }
    ck_assert_int_eq(ds->span(ds, SPLIT_TRAIN, ds->size(ds, SPLIT_TRAIN), T), -1);
}

START_TEST(sft_span_ends_at_last_trained_target) {
    SftStats st;
    int at_T = 0;
    Dataset *ds = records(256, &st);
    check_spans(ds, 256, &at_T);
    ck_assert_int_eq(st.truncated, 0);
    ck_assert_int_eq(at_T, 0);
    ds->free(ds);
    /* 128 cuts the end of some completions: truncated as unpacked rows are, those fill T (the others
     * truncated lost only the untrained newline after the end of their turn) */
    ds = records(128, &st);
    check_spans(ds, 128, &at_T);
    ck_assert_int_gt(at_T, 0);
    ck_assert_int_le(at_T, st.truncated);
    ds->free(ds);
}
END_TEST

START_TEST(rows_hold_segments_positions_and_padding) {
    enum { T = 512 };
    SftStats st;
    Dataset *ds = records(T, &st);
    Packing p;
    ck_assert_int_eq(packing_build(&p, ds, SPLIT_TRAIN, ds->size(ds, SPLIT_TRAIN), T), PEFTC_OK);
    ck_assert_int_lt(p.n, p.examples / 2); /* records at this T: three or more per window */
    int32_t tok_r[T], tgt_r[T], seg[T], pos[T], one_tok[T], one_tgt[T];
    int64_t sample[T];
    ck_assert_int_eq(packing_fill_row(&p, ds, SPLIT_TRAIN, 0, tok_r, tgt_r, seg, pos, sample), PEFTC_OK);
    int off = 0, k = 0;
    for (int64_t j = p.first[0]; j < p.first[1]; j++, k++) {
        ck_assert_int_eq(ds->get(ds, SPLIT_TRAIN, p.members[j], one_tok, one_tgt, p.spans[j]), PEFTC_OK);
        ck_assert_mem_eq(tok_r + off, one_tok, (size_t)p.spans[j] * sizeof *one_tok);
        ck_assert_mem_eq(tgt_r + off, one_tgt, (size_t)p.spans[j] * sizeof *one_tgt);
        for (int i = 0; i < p.spans[j]; i++) {
            ck_assert_int_eq(seg[off + i], k);
            ck_assert_int_eq(pos[off + i], i);
            ck_assert_int_eq(sample[off + i], p.members[j]);
        }
        off += p.spans[j];
    }
    ck_assert_int_lt(off, T); /* some padding is left: its own segment, no targets */
    for (int i = off; i < T; i++) {
        ck_assert_int_eq(seg[i], k);
        ck_assert_int_eq(tgt_r[i], PEFTC_IGNORE_INDEX);
        ck_assert_int_eq(pos[i], i - off);
        ck_assert_int_eq(sample[i], -1);
    }
    ck_assert_int_eq(packing_fill_row(&p, ds, SPLIT_TRAIN, -1, tok_r, tgt_r, seg, pos, sample), PEFTC_OK);
    for (int i = 0; i < T; i++) ck_assert(tgt_r[i] == PEFTC_IGNORE_INDEX && seg[i] == 0 && pos[i] == i);
    packing_free(&p);
    ds->free(ds);
}
END_TEST

int main(void) {
    Suite *s = suite_create("packing");
    TCase *tc = tcase_create("packing");
    tcase_add_test(tc, every_example_once_within_windows);
    tcase_add_test(tc, best_fit_decreasing_as_written_plainly);
    tcase_add_test(tc, best_fit_not_first_fit);
    tcase_add_test(tc, bad_spans_are_refused);
    tcase_add_test(tc, sft_span_ends_at_last_trained_target);
    tcase_add_test(tc, rows_hold_segments_positions_and_padding);
    suite_add_tcase(s, tc);
    int rc = tu_run_suite(s);
    tok_free(tok);
    return rc;
}
