/* The progress lines and the metrics CSV. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launch/metrics.h"
#include "launch/progress.h"
#include <math.h>

#include "tests/testutil.h"

static StepStats step_at(int64_t step, int64_t total) {
    StepStats s = {.step = step, .total = total, .loss = 1.2345, .lr = 2.95e-3, .grad_norm = 0.812,
                   .tokens = 256, .seq_tokens = 64, .step_seconds = 0.0125, .elapsed_seconds = 0.0125 * step,
                   .compute_seconds = 0.01025, .reduce_seconds = 0.00175, .bytes_reduced = 4096};
    return s;
}

static int count(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

START_TEST(format_step_line) {
    StepStats s = step_at(40, 300);
    char line[256];
    progress_format_step(line, sizeof line, &s, 64 / 0.0125, 20 / 0.0125, 0.0125);
    ck_assert_str_eq(line, "step 40/300 | loss 1.2345 | lr 2.95e-03 | gnorm 0.812 | 5120 tok/s (1600 target) | "
                           "12.5 ms/step | ETA 0:00:03");
    s.step = 0;
    s.total = 1000000;
    progress_format_step(line, sizeof line, &s, 1, 1, 0.5);
    ck_assert_ptr_nonnull(strstr(line, "ETA 138:53:20"));
}
END_TEST

START_TEST(plain_output_every_log_every) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    Progress *p;
    ck_assert_int_eq(progress_create(&p, f, 0, 10), PEFTC_OK);
    for (int64_t i = 1; i <= 25; i++) {
        StepStats s = step_at(i, 25);
        progress_step(p, &s);
        if (i == 20) {
            EvalStats e = {.step = 20, .loss = 1.5, .tokens = 2048};
            progress_eval(p, &e);
        }
    }
    progress_finish(p);
    fclose(f);
    ck_assert_int_eq(count(text, "\n"), 4);
    ck_assert_ptr_nonnull(strstr(text, "step 10/25 | "));
    ck_assert_ptr_nonnull(strstr(text, "step 20/25 | "));
    ck_assert_ptr_nonnull(strstr(text, "step 25/25 | "));
    ck_assert_ptr_nonnull(strstr(text, "eval @ step 20: held-out loss 1.5000 (2048 tokens)\n"));
    ck_assert_ptr_null(strstr(text, "\r"));
    ck_assert_ptr_null(strstr(text, "\033"));
    free(text);
}
END_TEST

/* A skipped (non-finite) update is said at once, between the log_every lines, and only once. */
START_TEST(skipped_step_is_said_at_once) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    Progress *p;
    ck_assert_int_eq(progress_create(&p, f, 0, 10), PEFTC_OK);
    for (int64_t i = 1; i <= 10; i++) {
        StepStats s = step_at(i, 20);
        if (i == 3 || i == 10) s.loss = NAN, s.grad_norm = NAN, s.skipped = i == 3 ? 1 : 2;
        progress_step(p, &s);
    }
    progress_finish(p);
    fclose(f);
    ck_assert_int_eq(count(text, "\n"), 2);
    ck_assert_ptr_nonnull(strstr(text, "step 3/20: loss nan, gradient norm nan: not finite, update skipped (1 in a row)\n"));
    ck_assert_ptr_nonnull(strstr(text, "step 10/20: loss nan, gradient norm nan: not finite, update skipped (2 in a row)\n"));
    free(text);
}
END_TEST

START_TEST(tty_redraws_in_place) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    Progress *p;
    ck_assert_int_eq(progress_create(&p, f, 1, 10), PEFTC_OK);
    for (int64_t i = 1; i <= 5; i++) {
        StepStats s = step_at(i, 5);
        progress_step(p, &s);
        if (i == 3) {
            EvalStats e = {.step = 3, .loss = 1.25, .tokens = 100};
            progress_eval(p, &e);
        }
    }
    progress_finish(p);
    fclose(f);
    ck_assert_int_eq(count(text, "\r"), 6); /* five steps and the eval line */
    ck_assert_ptr_nonnull(strstr(text, "\rstep 1/5 | "));
    ck_assert_ptr_nonnull(strstr(text, "\reval @ step 3: held-out loss 1.2500 (100 tokens)\033[K\nstep 3/5 | "));
    /* The last step ends its own line and finish adds no blank line. */
    ck_assert_int_eq(count(text, "\n"), 2);
    ck_assert(len > 0 && text[len - 1] == '\n');
    ck_assert_ptr_nonnull(strstr(text, "step 5/5 | "));
    free(text);
}
END_TEST

START_TEST(tty_finish_ends_pending_line) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    Progress *p;
    ck_assert_int_eq(progress_create(&p, f, 1, 1), PEFTC_OK);
    StepStats s = step_at(2, 10); /* stopped early */
    progress_step(p, &s);
    progress_finish(p);
    progress_finish(NULL);
    fclose(f);
    ck_assert(len > 0 && text[len - 1] == '\n');
    free(text);
}
END_TEST

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

START_TEST(metrics_rows) {
    char dir[] = "/tmp/peftc_test_metrics_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    Metrics *m;
    ck_assert_int_eq(metrics_open(&m, path), PEFTC_OK);
    ck_assert_str_eq(slurp(path), "kind,step,loss,lr,grad_norm,tokens,tokens_per_s,step_ms,bytes_reduced,compute_ms,allreduce_ms\n");
    StepStats s = step_at(1, 10);
    s.loss = 2.7080502011022101;
    ck_assert_int_eq(metrics_step(m, &s), PEFTC_OK);
    EvalStats e = {.step = 1, .loss = 1.0 / 3.0, .tokens = 2048};
    ck_assert_int_eq(metrics_eval(m, &e), PEFTC_OK);
    /* Rows are on disk before close: a killed job keeps its log. */
    ck_assert_str_eq(slurp(path), "kind,step,loss,lr,grad_norm,tokens,tokens_per_s,step_ms,bytes_reduced,compute_ms,allreduce_ms\n"
                                  "train,1,2.7080502,0.00295,0.812,256,5120.0,12.500,4096,10.250,1.750\n"
                                  "eval,1,0.333333333,,,2048,,,,,\n");
    ck_assert_int_eq(metrics_close(m), PEFTC_OK);
    ck_assert_int_eq(metrics_close(NULL), PEFTC_OK);
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(metrics_open_error_names_path) {
    Metrics *m = NULL;
    ck_assert_int_eq(metrics_open(&m, "/nonexistent-dir/x/metrics.csv"), PEFTC_EWRITE);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "/nonexistent-dir/x/metrics.csv"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("progress");
    TCase *tc = tcase_create("progress");
    tcase_add_test(tc, format_step_line);
    tcase_add_test(tc, plain_output_every_log_every);
    tcase_add_test(tc, skipped_step_is_said_at_once);
    tcase_add_test(tc, tty_redraws_in_place);
    tcase_add_test(tc, tty_finish_ends_pending_line);
    tcase_add_test(tc, metrics_rows);
    tcase_add_test(tc, metrics_open_error_names_path);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
