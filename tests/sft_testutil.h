/* Shared by the SFT suites (test_sft, test_tokcache): SmolLM2's tokenizer and its chat template, the
 * skip when the model file is absent, fixture paths, building a dataset, fetching examples with the
 * next-token check, and a scratch directory. */
#ifndef PEFTC_SFT_TESTUTIL_H
#define PEFTC_SFT_TESTUTIL_H

#include <check.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/real.h"
#include "core/base/status.h"
#include "datasets/sft.h"

#define FIX PEFTC_FIXTURE_DIR "/sft/"
#define REQUIRE(cond, ...)                                                                                             \
    do {                                                                                                               \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                                        \
    } while (0)

static Tokenizer *tok;
static ChatTemplate ct;
static char default_system[512];

static inline void load_tokenizer(void) {
    if (access(PEFTC_DEFAULT_MODEL, R_OK) != 0) return;
    if (tok_load(&tok, PEFTC_DEFAULT_MODEL) != PEFTC_OK) {
        fprintf(stderr, "sft tests: cannot load the tokenizer of %s: %s\n", PEFTC_DEFAULT_MODEL, peftc_err_msg());
        tok = NULL;
        return;
    }
    const char *tmpl = tok_chat_template(tok);
    ct.format = chat_detect(tmpl);
    chat_default_system(tmpl, default_system, sizeof default_system);
    ct.default_system = default_system;
}

static inline void free_tokenizer(void) {
    tok_free(tok);
    tok = NULL;
}

/* Tests that tokenize skip (and pass) without the model file, saying so. */
#define NEED_TOKENIZER()                                                                                               \
    do {                                                                                                               \
        if (!tok) {                                                                                                    \
            printf("SKIP %s: tokenizer model %s not available\n", __func__, PEFTC_DEFAULT_MODEL);                      \
            return;                                                                                                    \
        }                                                                                                              \
    } while (0)

static inline SftConfig file_cfg(const char *path, int seq_len, int eval_percent) {
    SftConfig c = {.eval_percent = eval_percent, .seed = 1, .seq_len = seq_len};
    snprintf(c.path, sizeof c.path, "%s", path);
    return c;
}

static inline Dataset *make(const SftConfig *c, SftStats *st) {
    Dataset *ds = NULL;
    SftStats local;
    PeftcStatus s = sft_dataset_create(&ds, c, tok, &ct, st ? st : &local);
    ck_assert_msg(s == PEFTC_OK, "sft_dataset_create(%s): %s", c->path, peftc_err_msg());
    return ds;
}

/* targets are next-token labels: wherever one is set inside the window, it is the next input. */
static inline void check_shift(const int32_t *tokens, const int32_t *targets, int T) {
    for (int t = 0; t + 1 < T; t++)
        REQUIRE(targets[t] == PEFTC_IGNORE_INDEX || targets[t] == tokens[t + 1], "target %d is not token %d", t, t + 1);
}

static inline void get_ex(const Dataset *ds, Split split, int64_t id, int32_t *tokens, int32_t *targets, int T) {
    ck_assert_msg(ds->get(ds, split, id, tokens, targets, T) == PEFTC_OK, "get(%d, %lld): %s", (int)split,
                  (long long)id, peftc_err_msg());
    check_shift(tokens, targets, T);
}

static inline int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static char tmp_root[64];

static inline void make_tmp(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/peftc_sft_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_root));
}

/* Removes the test's directory tree: files, then folders (the cache folder nests). */
static inline void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) continue; /* not one of ours */
        if (unlink(p) != 0) remove_tree(p);
    }
    closedir(d);
    rmdir(dir);
}

static inline void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

#endif
