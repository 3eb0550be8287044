/* Shared by the GGUF suites (test_gguf, test_quant, test_model_gguf): the Python-written fixture,
 * per-test temporary files, and a relative comparison. */
#ifndef PEFTC_GGUF_TESTUTIL_H
#define PEFTC_GGUF_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define FIXTURE PEFTC_FIXTURE_DIR "/gguf_fixture.gguf"

/* ---- temporary files: one folder per test (Check runs each test in its own process) ---- */

static char tmp_dir[64];
static char tmp_files[64][128];
static int n_tmp_files;

static inline const char *tmp_path(const char *name) {
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/test_gguf_XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
    }
    ck_assert_int_lt(n_tmp_files, 64);
    char *p = tmp_files[n_tmp_files++];
    snprintf(p, sizeof tmp_files[0], "%s/%s", tmp_dir, name);
    return p;
}

static inline void tmp_cleanup(void) {
    for (int i = 0; i < n_tmp_files; i++) unlink(tmp_files[i]);
    if (tmp_dir[0]) rmdir(tmp_dir);
    tmp_dir[0] = 0;
    n_tmp_files = 0;
}

/* |a - b| within rel of |b| (b is the reference value). */
static inline int close_rel(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b) + 1e-30; }

#endif
