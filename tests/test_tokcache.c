/* The tokenized cache: a dataset rebuilt from its cache matches the fresh one, damaged or stale files
 * are rebuilt rather than believed, the loader checks every id and offset, and the content hash does
 * not depend on how the input is split. Uses SmolLM2's tokenizer (ChatML). */
#include <check.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/status.h"
#include "datasets/sft.h"
#include "datasets/tokcache.h"
#include "tests/sft_testutil.h"
#include "tests/testutil.h"

static void same_examples(const Dataset *a, const Dataset *b, int T) {
    int32_t *ta = malloc((size_t)T * sizeof *ta), *ga = malloc((size_t)T * sizeof *ga);
    int32_t *tb = malloc((size_t)T * sizeof *tb), *gb = malloc((size_t)T * sizeof *gb);
    for (int s = 0; s < 2; s++) {
        ck_assert_int_eq(a->size(a, s), b->size(b, s));
        for (int64_t i = 0; i < a->size(a, s); i++) {
            get_ex(a, s, i, ta, ga, T);
            get_ex(b, s, i, tb, gb, T);
            REQUIRE(memcmp(ta, tb, (size_t)T * sizeof *ta) == 0 && memcmp(ga, gb, (size_t)T * sizeof *ga) == 0,
                    "split %d example %lld differs", s, (long long)i);
            const int32_t *pa, *pb;
            int na, nb;
            const char *aa, *ab;
            ck_assert_int_eq(sft_prompt(a, s, i, &pa, &na, &aa), PEFTC_OK);
            ck_assert_int_eq(sft_prompt(b, s, i, &pb, &nb, &ab), PEFTC_OK);
            ck_assert_int_eq(na, nb);
            ck_assert_mem_eq(pa, pb, (size_t)na * sizeof *pa);
            ck_assert_str_eq(aa, ab);
        }
    }
    free(ta);
    free(ga);
    free(tb);
    free(gb);
}

/* The one .tok file in dir (asserting there is exactly one and no temporary file is left). */
static void cache_file(const char *dir, char *out, size_t cap) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        ck_assert_msg(ends_with(e->d_name, ".tok"), "unexpected file %s in the cache", e->d_name);
        snprintf(out, cap, "%s/%s", dir, e->d_name);
        found++;
    }
    closedir(d);
    ck_assert_int_eq(found, 1);
}

static Dataset *make_cached(const SftConfig *c, int want_from_cache, const SftStats *want) {
    SftStats st;
    Dataset *ds = make(c, &st);
    ck_assert_int_eq(st.from_cache, want_from_cache);
    if (want) {
        ck_assert_int_eq(st.examples[0], want->examples[0]);
        ck_assert_int_eq(st.examples[1], want->examples[1]);
        ck_assert_int_eq(st.tokens, want->tokens);
        ck_assert_int_eq(st.dropped, want->dropped);
        ck_assert_int_eq(st.truncated, want->truncated);
        ck_assert_int_eq(st.bad_lines, want->bad_lines);
    }
    return ds;
}

static void damage(const char *path, long at, int truncate_to) {
    if (truncate_to >= 0) {
        ck_assert_int_eq(truncate(path, truncate_to), 0);
        return;
    }
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
}

START_TEST(cache_is_reused_and_never_trusted_blindly) {
    NEED_TOKENIZER();
    make_tmp();
    char data[128], cache[128], file[1200], text[4096];
    snprintf(data, sizeof data, "%s/data.jsonl", tmp_root);
    FILE *fp = fopen(FIX "bad.jsonl", "rb");
    size_t len = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[len] = '\0';
    write_file(data, text);
    snprintf(cache, sizeof cache, "%s/cache/nested", tmp_root); /* created on demand */
    SftConfig c = file_cfg(data, 64, 40);
    c.skip_bad_lines = 1;
    snprintf(c.cache_dir, sizeof c.cache_dir, "%s", cache);
    SftStats first;
    Dataset *fresh = make(&c, &first);
    ck_assert_int_eq(first.from_cache, 0);
    ck_assert_int_eq(first.bad_lines, 8);
    cache_file(cache, file, sizeof file);

    Dataset *ds = make_cached(&c, 1, &first); /* bad_lines survive the cache too */
    same_examples(fresh, ds, 64);
    ds->free(ds);

    struct stat sb;
    ck_assert_int_eq(stat(file, &sb), 0);
    const long spots[] = {3, 30, (long)sb.st_size / 2, (long)sb.st_size - 3};
    for (size_t i = 0; i < sizeof spots / sizeof *spots; i++) {
        damage(file, spots[i], -1); /* one flipped bit anywhere: rebuilt, not believed */
        ds = make_cached(&c, 0, &first);
        same_examples(fresh, ds, 64);
        ds->free(ds);
        ds = make_cached(&c, 1, &first); /* and the rebuild rewrote a good file */
        ds->free(ds);
    }
    const int cuts[] = {(int)sb.st_size / 2, (int)sb.st_size - 1, 8, 0};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        damage(file, 0, cuts[i]);
        ds = make_cached(&c, 0, &first);
        same_examples(fresh, ds, 64);
        ds->free(ds);
    }
    cache_file(cache, file, sizeof file);

    /* New data: a new key, so the old file does not apply. */
    fp = fopen(data, "ab");
    fputs("{\"prompt\": \"Added later.\", \"completion\": \"Four.\"}\n", fp);
    fclose(fp);
    SftStats grown;
    ds = make(&c, &grown);
    ck_assert_int_eq(grown.from_cache, 0);
    ck_assert_int_eq(grown.examples[0] + grown.examples[1], 4);
    ds->free(ds);
    ds = make_cached(&c, 1, &grown);
    ds->free(ds);
    /* Other settings the tokens depend on are in the key as well. */
    c.seq_len = 48;
    ds = make_cached(&c, 0, NULL);
    ds->free(ds);
    c.eval_percent = 10;
    ds = make_cached(&c, 0, NULL);
    ds->free(ds);
    fresh->free(fresh);
    remove_tree(tmp_root);
}
END_TEST

/* Past the checksum, the loader still checks every id and offset (a file written by a buggy build). */
START_TEST(tokcache_checks_contents) {
    make_tmp();
    int32_t ids[] = {5, 6, 7}, pids[] = {5};
    uint8_t mask[] = {0, 1, 1};
    int64_t start[] = {0}, poff[] = {-1}, aoff[] = {0};
    int32_t len[] = {3}, plen[] = {1};
    char answers[] = "x";
    TokData d = {0};
    TokSplit *s = &d.split[SPLIT_TRAIN];
    *s = (TokSplit){.n = 1, .start = start, .len = len, .prompt_off = poff, .prompt_len = plen, .answer_off = aoff,
                    .n_ids = 3, .ids = ids, .mask = mask, .n_pids = 1, .pids = pids, .n_answers = 2,
                    .answers = answers};
    d.dropped = 4;
    TokData back;
    ck_assert_int_eq(tokcache_save(tmp_root, 42, &d), PEFTC_OK);
    ck_assert_int_eq(tokcache_load(tmp_root, 42, 8, &back), 1);
    ck_assert_int_eq(back.split[0].n, 1);
    ck_assert_mem_eq(back.split[0].ids, ids, sizeof ids);
    ck_assert_mem_eq(back.split[0].mask, mask, sizeof mask);
    ck_assert_int_eq(back.split[1].n, 0);
    ck_assert_int_eq(back.dropped, 4);
    tokdata_free(&back);
    ck_assert_int_eq(tokcache_load(tmp_root, 43, 8, &back), 0); /* another key */
    ck_assert_int_eq(tokcache_load(tmp_root, 42, 7, &back), 0); /* id 7 outside a 7-token vocabulary */
    ck_assert_int_eq(back.split[0].n, 0);
    len[0] = 4; /* past the ids */
    ck_assert_int_eq(tokcache_save(tmp_root, 42, &d), PEFTC_OK);
    ck_assert_int_eq(tokcache_load(tmp_root, 42, 8, &back), 0);
    len[0] = 3;
    poff[0] = 0;
    plen[0] = 2; /* a stored prompt past pids */
    ck_assert_int_eq(tokcache_save(tmp_root, 42, &d), PEFTC_OK);
    ck_assert_int_eq(tokcache_load(tmp_root, 42, 8, &back), 0);
    plen[0] = 1;
    mask[0] = 2;
    ck_assert_int_eq(tokcache_save(tmp_root, 42, &d), PEFTC_OK);
    ck_assert_int_eq(tokcache_load(tmp_root, 42, 8, &back), 0);
    mask[0] = 0;
    answers[1] = 'y'; /* an answer without its terminator */
    ck_assert_int_eq(tokcache_save(tmp_root, 42, &d), PEFTC_OK);
    ck_assert_int_eq(tokcache_load(tmp_root, 42, 8, &back), 0);
    /* An unwritable cache directory is an error that names it. */
    char blocked[128];
    snprintf(blocked, sizeof blocked, "%s/file", tmp_root);
    write_file(blocked, "x");
    snprintf(blocked, sizeof blocked, "%s/file/sub", tmp_root);
    ck_assert_int_eq(tokcache_save(blocked, 42, &d), PEFTC_EWRITE);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "data.cache_dir"));
    remove_tree(tmp_root);
}
END_TEST

START_TEST(hash_is_split_independent) {
    static const char text[] = "The quick brown fox jumps over the lazy dog, twice over.";
    TcHash a, b;
    tc_hash_init(&a, 7);
    tc_hash_update(&a, text, sizeof text);
    tc_hash_init(&b, 7);
    for (size_t i = 0; i < sizeof text; i += 3) tc_hash_update(&b, text + i, sizeof text - i < 3 ? sizeof text - i : 3);
    ck_assert_uint_eq(tc_hash_final(&a), tc_hash_final(&b));
    tc_hash_init(&b, 7);
    tc_hash_update(&b, text, sizeof text - 1);
    ck_assert_uint_ne(tc_hash_final(&a), tc_hash_final(&b));
    tc_hash_init(&b, 8);
    tc_hash_update(&b, text, sizeof text);
    ck_assert_uint_ne(tc_hash_final(&a), tc_hash_final(&b));
}
END_TEST

static Suite *tokcache_suite(void) {
    Suite *s = suite_create("tokcache");
    TCase *cache = tcase_create("cache");
    tcase_add_unchecked_fixture(cache, load_tokenizer, free_tokenizer);
    tcase_add_test(cache, cache_is_reused_and_never_trusted_blindly);
    tcase_add_test(cache, tokcache_checks_contents);
    tcase_add_test(cache, hash_is_split_independent);
    suite_add_tcase(s, cache);
    return s;
}

int main(void) { return tu_run_suite(tokcache_suite()); }
