/* TensorBoard event files: CRC-32C, the record encoder against bytes TensorBoard's own writer made
 * (tests/fixtures/gen_tfevents.py), and the writer read back through tests/tfevents_reader.h. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/base/crc32c.h"
#include "core/formats/tfevents.h"
#include "launch/tensorboard.h"

#include "tests/fixture.h"
#include "tests/testutil.h"
#include "tests/tfevents_reader.h"

#define GOLDEN PEFTC_FIXTURE_DIR "/tfevents_golden.bin"

/* A whole file in memory (fixture.h's reader); *n its size. */
static uint8_t *slurp(const char *path, size_t *n) { return (uint8_t *)fx_slurp(path, n); }

static int by_name(const void *a, const void *b) { return strcmp(a, b); }

/* The event files in dir, sorted by name (TensorBoard's reading order); returns how many. */
static int event_files(const char *dir, char names[][320], int cap) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "events.out.tfevents.", 20) == 0 && n < cap)
            snprintf(names[n++], 320, "%s/%s", dir, e->d_name);
    closedir(d);
    qsort(names, (size_t)n, 320, by_name);
    return n;
}

static void remove_dir(const char *dir) {
    char names[8][320];
    int n = event_files(dir, names, 8);
    for (int i = 0; i < n; i++) unlink(names[i]);
    rmdir(dir);
}

/* Reads every record of a file; returns how many, or fails the test naming the reader's complaint. */
static int read_all(const char *path, TfrEvent *ev, int cap) {
    size_t n, pos = 0;
    uint8_t *buf = slurp(path, &n);
    const char *why = NULL;
    int k = 0, r;
    while (k < cap && (r = tfr_next(buf, n, &pos, &ev[k], &why)) == 1) k++;
    ck_assert_msg(why == NULL, "%s: %s", path, why);
    free(buf);
    return k;
}

START_TEST(crc32c_check_values) {
    ck_assert_uint_eq(crc32c("123456789", 9), 0xE3069283u); /* the CRC-32C check value */
    ck_assert_uint_eq(crc32c("", 0), 0);
    uint8_t zeros[32] = {0};
    ck_assert_uint_eq(crc32c(zeros, 32), 0x8A9136AAu); /* RFC 3720, B.4 */
    /* ((c >> 15) | (c << 17)) + 0xa282ead8, by hand for c = 0xE3069283 */
    ck_assert_uint_eq(crc32c_masked("123456789", 9), 0xC78AB0E5u);
}
END_TEST

/* The five records of gen_tfevents.py, encoded here, equal the file TensorBoard's writer made. */
START_TEST(encoder_matches_tensorboard_bytes) {
    size_t n;
    uint8_t *golden = slurp(GOLDEN, &n);
    uint8_t buf[1024];
    size_t len = 0;
    const double t0 = 1700000000.25;
    char long_tag[131];
    memset(long_tag, 'x', 128);
    strcpy(long_tag + 128, "/y");
    TfScalar train[] = {{"train/loss", 2.5f}, {"train/learning_rate", 3e-4f}};
    TfScalar eval = {"eval/loss", -1.75f}, wide = {long_tag, 0.0f};
    len += tfevents_version(buf + len, sizeof buf - len, t0);
    len += tfevents_scalars(buf + len, sizeof buf - len, t0, 7, train, 2);
    len += tfevents_scalars(buf + len, sizeof buf - len, t0, 0, &eval, 1);
    len += tfevents_scalars(buf + len, sizeof buf - len, t0, 300, &wide, 1);
    len += tfevents_start(buf + len, sizeof buf - len, 1700000123.5, 200001);
    ck_assert_uint_eq(len, n);
    for (size_t i = 0; i < n; i++) ck_assert_msg(buf[i] == golden[i], "byte %zu: %02x, expected %02x", i, buf[i], golden[i]);
    /* and the test reader decodes what it says */
    TfrEvent e;
    size_t pos = 0;
    const char *why;
    for (int k = 0; k < 4; k++) ck_assert_int_eq(tfr_next(golden, n, &pos, &e, &why), 1);
    ck_assert_int_eq(e.step, 300);
    ck_assert_str_eq(e.tags[0], long_tag);
    ck_assert_int_eq(tfr_next(golden, n, &pos, &e, &why), 1);
    ck_assert(e.start && e.step == 200001 && e.wall_time == 1700000123.5);
    ck_assert_int_eq(tfr_next(golden, n, &pos, &e, &why), 0);
    free(golden);
}
END_TEST

/* A buffer too small gets nothing written past its end and a 0 back. */
START_TEST(encoder_respects_capacity) {
    uint8_t buf[64];
    TfScalar v = {"train/loss", 1.0f};
    size_t need = tfevents_scalars(buf, sizeof buf, 1.0, 5, &v, 1);
    ck_assert_uint_gt(need, 16);
    for (size_t cap = 0; cap < need; cap++) {
        memset(buf, 0xAB, sizeof buf);
        ck_assert_uint_eq(tfevents_scalars(buf, cap, 1.0, 5, &v, 1), 0);
        for (size_t i = cap; i < sizeof buf; i++) ck_assert_uint_eq(buf[i], 0xAB);
    }
}
END_TEST

/* The writer's file, read back: name, version and START at step 0 first, then every scalar at its step;
 * records are on disk before close (a killed job keeps its curve). */
START_TEST(writer_round_trip) {
    char dir[] = "/tmp/peftc_tb_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char sub[64];
    snprintf(sub, sizeof sub, "%s/run/tensorboard", dir); /* created with its parents */
    TbWriter *w;
    ck_assert_int_eq(tb_open(&w, sub, 0), PEFTC_OK);
    ck_assert_int_eq(tb_exact_match(w, 0, 0.25), PEFTC_OK);
    for (int64_t s = 1; s <= 3; s++) {
        StepStats st = {.step = s, .loss = 2.0 / (double)s, .lr = 1e-3 * (double)s, .grad_norm = 0.5 + (double)s,
                        .seq_tokens = 512, .step_seconds = 0.25};
        ck_assert_int_eq(tb_step(w, &st), PEFTC_OK);
    }
    EvalStats ev = {.step = 3, .loss = 1.0 / 3.0, .tokens = 100};
    ck_assert_int_eq(tb_eval(w, &ev), PEFTC_OK);

    char names[4][320];
    ck_assert_int_eq(event_files(sub, names, 4), 1);
    ck_assert_str_eq(names[0], tb_path(w));
    char host[256] = "";
    gethostname(host, sizeof host);
    char tail[320];
    snprintf(tail, sizeof tail, ".%s.%ld.0", host, (long)getpid());
    const char *base = strrchr(names[0], '/') + 1;
    ck_assert_msg(strlen(base) == 20 + 10 + strlen(tail) && strcmp(base + 30, tail) == 0, "%s", base);

    TfrEvent e[8];
    ck_assert_int_eq(read_all(names[0], e, 8), 7);
    ck_assert_str_eq(e[0].version, "brain.Event:2");
    ck_assert_msg(e[0].wall_time > 1.6e9, "wall_time %f is not Unix time", e[0].wall_time);
    ck_assert(e[1].start && e[1].step == 0 && e[1].n == 0);
    ck_assert(e[2].step == 0 && e[2].n == 1 && strcmp(e[2].tags[0], "eval/exact_match") == 0);
    ck_assert(e[2].values[0] == 0.25f);
    const char *tags[] = {"train/loss", "train/learning_rate", "train/grad_norm", "train/tokens_per_second"};
    for (int s = 1; s <= 3; s++) {
        const TfrEvent *x = &e[2 + s];
        ck_assert_int_eq(x->step, s);
        ck_assert_int_eq(x->n, 4);
        for (int i = 0; i < 4; i++) ck_assert_str_eq(x->tags[i], tags[i]);
        ck_assert(x->values[0] == (float)(2.0 / s));
        ck_assert(x->values[1] == (float)(1e-3 * s));
        ck_assert(x->values[2] == (float)(0.5 + s));
        ck_assert(x->values[3] == 2048.0f);
    }
    ck_assert(e[6].step == 3 && strcmp(e[6].tags[0], "eval/loss") == 0 && e[6].values[0] == (float)(1.0 / 3.0));
    ck_assert_int_eq(tb_close(w), PEFTC_OK);
    ck_assert_int_eq(tb_close(NULL), PEFTC_OK);
    remove_dir(sub);
    snprintf(sub, sizeof sub, "%s/run", dir);
    rmdir(sub);
    rmdir(dir);
}
END_TEST

/* A resumed run gets a file of its own that TensorBoard reads after the first (even when both start in
 * the same second) and that says where the resumed curve begins. */
START_TEST(resumed_run_gets_new_file) {
    char dir[] = "/tmp/peftc_tb_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    TbWriter *a, *b;
    ck_assert_int_eq(tb_open(&a, dir, 0), PEFTC_OK);
    ck_assert_int_eq(tb_open(&b, dir, 30), PEFTC_OK);
    ck_assert_msg(strcmp(tb_path(a), tb_path(b)) < 0, "%s sorts before %s", tb_path(b), tb_path(a));
    StepStats st = {.step = 31, .loss = 1.5};
    ck_assert_int_eq(tb_step(b, &st), PEFTC_OK);
    TfrEvent e[4];
    ck_assert_int_eq(read_all(tb_path(a), e, 4), 2);
    ck_assert_int_eq(read_all(tb_path(b), e, 4), 3);
    ck_assert_str_eq(e[0].version, "brain.Event:2");
    ck_assert(e[1].start && e[1].step == 31 && e[1].n == 0);
    ck_assert(e[2].step == 31 && e[2].values[0] == 1.5f);
    ck_assert_int_eq(tb_close(a), PEFTC_OK);
    ck_assert_int_eq(tb_close(b), PEFTC_OK);
    remove_dir(dir);
}
END_TEST

/* A file named for a later time (a clock set back since) still has the new file sort after it. */
START_TEST(new_file_sorts_after_existing) {
    char dir[] = "/tmp/peftc_tb_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    long long later = (long long)time(NULL) + 100;
    char old[128];
    snprintf(old, sizeof old, "%s/events.out.tfevents.%010lld.otherhost.1.0", dir, later);
    fclose(fopen(old, "w"));
    TbWriter *w;
    ck_assert_int_eq(tb_open(&w, dir, 0), PEFTC_OK);
    char want[64];
    snprintf(want, sizeof want, "/events.out.tfevents.%010lld.", later + 1);
    ck_assert_msg(strstr(tb_path(w), want), "%s", tb_path(w));
    ck_assert_int_eq(tb_close(w), PEFTC_OK);
    remove_dir(dir);
}
END_TEST

/* The reader used above notices a flipped bit anywhere and a cut-off record. */
START_TEST(reader_detects_corruption) {
    size_t n;
    uint8_t *buf = slurp(GOLDEN, &n);
    TfrEvent e;
    const char *why;
    for (size_t at = 0; at < n; at += 7) {
        buf[at] ^= 0x10;
        size_t pos = 0;
        int r;
        while ((r = tfr_next(buf, n, &pos, &e, &why)) == 1) continue;
        ck_assert_msg(r == -1 && why, "a flipped bit at byte %zu went unnoticed", at);
        buf[at] ^= 0x10;
    }
    size_t pos = 0;
    while (tfr_next(buf, n - 3, &pos, &e, &why) == 1) continue;
    ck_assert_str_eq(why, "truncated record");
    free(buf);
}
END_TEST

START_TEST(open_error_names_path) {
    char dir[] = "/tmp/peftc_tb_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char file[64];
    snprintf(file, sizeof file, "%s/tensorboard", dir);
    fclose(fopen(file, "w")); /* a file where the folder should be */
    TbWriter *w = NULL;
    ck_assert_int_eq(tb_open(&w, file, 0), PEFTC_EWRITE);
    ck_assert_msg(strstr(peftc_err_msg(), file) && strstr(peftc_err_msg(), "events.out.tfevents."), "%s",
                  peftc_err_msg());
    ck_assert_ptr_null(w);
    unlink(file);
    rmdir(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tensorboard");
    TCase *tc = tcase_create("tensorboard");
    tcase_add_test(tc, crc32c_check_values);
    tcase_add_test(tc, encoder_matches_tensorboard_bytes);
    tcase_add_test(tc, encoder_respects_capacity);
    tcase_add_test(tc, writer_round_trip);
    tcase_add_test(tc, resumed_run_gets_new_file);
    tcase_add_test(tc, new_file_sorts_after_existing);
    tcase_add_test(tc, reader_detects_corruption);
    tcase_add_test(tc, open_error_names_path);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
