/* The HDF5 checkpoint file: a bit-exact round trip of the arena, its metadata and per-method blobs;
 * refusal of a different registry; every single-byte flip and every truncation either detected or
 * provably harmless; a flip inside a dataset named by the CRC check. */
#define _GNU_SOURCE /* memmem */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "core/train/checkpoint.h"
#include "tests/testutil.h"

static char dir[] = "/tmp/peftc_ckpt_XXXXXX";
static char path[128];

static const int32_t MASK[] = {0, 2, 3, 3, 7, 11, 2};

/* Two tensors in two groups, values from stream `key`; the registry checkpoints are matched against. */
static void make_arena(Arena *a, const char *second, int64_t second_cols, uint64_t key) {
    arena_init(a, backend_cpu());
    int g0, g1, h;
    ck_assert_int_eq(arena_group(a, "lora", 1e-3, 0, &g0), PEFTC_OK);
    ck_assert_int_eq(arena_group(a, "sparse", 2e-4, 0, &g1), PEFTC_OK);
    ck_assert_int_eq(arena_register(a, "layers.0.q.lora_A", (Shape){2, {4, 6}}, g0, 1, &h), PEFTC_OK);
    ck_assert_int_eq(arena_register(a, second, (Shape){2, {3, second_cols}}, g1, 0, &h), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(a), PEFTC_OK);
    tu_fill_uniform(a->params, a->numel, key, -1, 1);
    tu_fill_uniform(a->m, a->numel, key + 1, -1, 1);
    tu_fill_uniform(a->v, a->numel, key + 2, 0, 1);
}

static CkptMeta meta(void) {
    CkptMeta m = {.step = 17, .cursor = 136, .seed = 42, .global_batch = 8, .world = 2, .config = "train:\n  steps: 40\n"};
    snprintf(m.method, sizeof m.method, "rosa");
    snprintf(m.base_model, sizeof m.base_model, "models/base.gguf");
    snprintf(m.base_hash, sizeof m.base_hash, "crc32:0123abcd size:99");
    return m;
}

static void write_reference(void) {
    Arena a;
    make_arena(&a, "layers.0.q.rosa_values", 5, 100);
    CkptMeta m = meta();
    CkptBlob blob = {"rosa/layers.0.q/col_idx", CKPT_I32, MASK, 7};
    ck_assert_int_eq(ckpt_write(path, &m, &a, &blob, 1), PEFTC_OK);
    arena_free(&a);
}

static void setup(void) {
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/step_17.h5", dir);
    write_reference();
}

static void teardown(void) {
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
    strcpy(dir, "/tmp/peftc_ckpt_XXXXXX");
}

/* Every HDF5 handle peftc opened has been closed, on success and failure paths alike. */
static void assert_no_open_handles(void) {
    ck_assert_int_eq(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

/* 1 when path reads back to exactly what write_reference wrote (the flip was harmless). */
static int reads_back_identical(const char *p) {
    CkptMeta m;
    if (ckpt_verify(p) != PEFTC_OK || ckpt_read_meta(p, &m) != PEFTC_OK) return 0;
    CkptMeta want = meta();
    int same = m.step == want.step && m.cursor == want.cursor && m.seed == want.seed && m.global_batch == want.global_batch &&
               m.world == want.world &&
               !strcmp(m.method, want.method) && !strcmp(m.base_model, want.base_model) &&
               !strcmp(m.base_hash, want.base_hash) && !strcmp(m.config, want.config);
    ckpt_meta_free(&m);
    Arena got, ref;
    make_arena(&got, "layers.0.q.rosa_values", 5, 900);
    make_arena(&ref, "layers.0.q.rosa_values", 5, 100);
    same = same && ckpt_read_arena(p, &got) == PEFTC_OK &&
           !memcmp(got.params, ref.params, ref.numel * sizeof(real_t)) &&
           !memcmp(got.m, ref.m, ref.numel * sizeof(real_t)) && !memcmp(got.v, ref.v, ref.numel * sizeof(real_t));
    arena_free(&got);
    arena_free(&ref);
    void *blob = NULL;
    size_t n = 0;
    same = same && ckpt_read_blob(p, "rosa/layers.0.q/col_idx", CKPT_I32, &blob, &n) == PEFTC_OK && n == 7 &&
           !memcmp(blob, MASK, sizeof MASK);
    free(blob);
    return same;
}

START_TEST(round_trip_is_bit_exact) {
    ck_assert_int_eq(ckpt_verify(path), PEFTC_OK);
    ck_assert(reads_back_identical(path));
    assert_no_open_handles();
    /* The temporary is gone and a second write replaces the file whole. */
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_int_ne(access(tmp, F_OK), 0);
}
END_TEST

START_TEST(different_registry_is_refused) {
    Arena a;
    make_arena(&a, "layers.0.q.lora_B", 5, 7); /* same sizes, another tensor */
    ck_assert_int_eq(ckpt_read_arena(path, &a), PEFTC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "layers.0.q.rosa_values"));
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "layers.0.q.lora_B"));
    arena_free(&a);
    make_arena(&a, "layers.0.q.rosa_values", 6, 7); /* same name, another shape */
    ck_assert_int_eq(ckpt_read_arena(path, &a), PEFTC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "rosa_values"));
    arena_free(&a);
}
END_TEST

static unsigned char *slurp(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(*n);
    ck_assert_uint_eq(fread(buf, 1, *n, f), *n);
    fclose(f);
    return buf;
}

/* A plain write: these files are scratch, and thousands of fsyncs would only slow the test. */
static void spit(const char *p, const unsigned char *buf, size_t n) {
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* HDF5 stamps objects with times (1 s resolution) unless told not to: the same state written a second
 * later must still be the same bytes, so checkpoints can be compared whole. */
START_TEST(same_state_writes_same_bytes) {
    char first[160];
    snprintf(first, sizeof first, "%s.first", path);
    ck_assert_int_eq(rename(path, first), 0);
    usleep(1100 * 1000);
    write_reference();
    size_t n1, n2;
    unsigned char *a = slurp(first, &n1), *b = slurp(path, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert(memcmp(a, b, n1) == 0);
    free(a);
    free(b);
}
END_TEST

/* Every byte of the file, flipped in turn: the checkpoint is refused, or it still reads back to exactly
 * what was written (a byte HDF5 never reads, such as free space). */
START_TEST(every_flipped_byte_is_caught_or_harmless) {
    size_t n;
    unsigned char *buf = slurp(path, &n);
    char bad[160];
    snprintf(bad, sizeof bad, "%s/flipped.h5", dir);
    int caught = 0, harmless = 0;
    for (size_t i = 0; i < n; i++) {
        buf[i] ^= 0xFF;
        spit(bad, buf, n);
        buf[i] ^= 0xFF;
        int refused = ckpt_verify(bad) != PEFTC_OK;
        assert_no_open_handles();
        if (refused) caught++;
        else if (reads_back_identical(bad)) harmless++;
        else ck_abort_msg("byte %zu of %zu flipped: the checkpoint verifies but reads back different", i, n);
        assert_no_open_handles();
    }
    printf("checkpoint of %zu bytes: %d flips refused, %d in bytes never read\n", n, caught, harmless);
    ck_assert_int_gt(caught, (int)n / 2);
    free(buf);
}
END_TEST

/* A flip inside a dataset's values is reported by the CRC check with the dataset's name. */
START_TEST(flip_in_values_names_the_dataset) {
    Arena a;
    make_arena(&a, "layers.0.q.rosa_values", 5, 100);
    size_t n;
    unsigned char *buf = slurp(path, &n);
    const size_t probe = 8 * sizeof(real_t);
    unsigned char *at = memmem(buf, n, a.m, probe);
    ck_assert_msg(at != NULL, "the moments' bytes are not stored contiguously");
    at[3] ^= 0x10;
    spit(path, buf, n);
    ck_assert_int_eq(ckpt_verify(path), PEFTC_EFORMAT);
    ck_assert_msg(strstr(peftc_err_msg(), "'/arena/m' fails its CRC32"), "%s", peftc_err_msg());
    ck_assert_int_eq(ckpt_read_arena(path, &a), PEFTC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "/arena/m"));
    free(buf);
    arena_free(&a);
}
END_TEST

START_TEST(every_truncation_is_refused) {
    size_t n;
    unsigned char *buf = slurp(path, &n);
    char cut[160];
    snprintf(cut, sizeof cut, "%s/cut.h5", dir);
    for (size_t len = 0; len < n; len += 1 + len / 64) {
        spit(cut, buf, len);
        ck_assert_msg(ckpt_verify(cut) != PEFTC_OK, "checkpoint cut to %zu of %zu bytes verified", len, n);
        assert_no_open_handles();
        ck_assert_ptr_nonnull(strstr(peftc_err_msg(), cut));
    }
    free(buf);
}
END_TEST

START_TEST(other_files_are_refused_by_name) {
    char other[160];
    snprintf(other, sizeof other, "%s/notes.txt", dir);
    spit(other, (const unsigned char *)"not hdf5\n", 9);
    ck_assert_int_eq(ckpt_verify(other), PEFTC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "notes.txt"));
    snprintf(other, sizeof other, "%s/missing.h5", dir);
    ck_assert_int_eq(ckpt_verify(other), PEFTC_EIO);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "missing.h5"));
}
END_TEST

START_TEST(file_hash_names_size_and_crc) {
    char p[160], h[64];
    snprintf(p, sizeof p, "%s/base.bin", dir);
    spit(p, (const unsigned char *)"123456789", 9);
    ck_assert_int_eq(ckpt_file_hash(p, h, sizeof h), PEFTC_OK);
    ck_assert_str_eq(h, "crc32:cbf43926 size:9"); /* the CRC-32 check value of "123456789" */
}
END_TEST

int main(void) {
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("hdf5");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, round_trip_is_bit_exact);
    tcase_add_test(tc, same_state_writes_same_bytes);
    tcase_add_test(tc, different_registry_is_refused);
    tcase_add_test(tc, every_flipped_byte_is_caught_or_harmless);
    tcase_add_test(tc, flip_in_values_names_the_dataset);
    tcase_add_test(tc, every_truncation_is_refused);
    tcase_add_test(tc, other_files_are_refused_by_name);
    tcase_add_test(tc, file_hash_names_size_and_crc);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
