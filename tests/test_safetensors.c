/* safetensors: writer/reader round trips (bit-exact F32, F16/BF16 rounding, metadata) and hand-made
 * corrupt files, each of which must give EFORMAT naming the file and what was expected. */
#include <check.h>
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/formats/quant.h"
#include "core/base/rng.h"
#include "core/formats/safetensors.h"
#include "tests/testutil.h"

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/peftc_st_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

static void tmp_path(char *out, const char *name) { snprintf(out, 512, "%s/%s", tmpdir, name); }

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* u64 length, the JSON text, then `buf` zero bytes of data. */
static void write_raw(const char *path, const char *json, size_t buf) {
    size_t n = strlen(json);
    uint8_t *b = calloc(8 + n + buf + 1, 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, json, n);
    write_bytes(path, b, 8 + n + buf);
    free(b);
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n + 1);
    ck_assert_uint_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void expect_bad(const char *path, const char *needle) {
    StFile f;
    peftc_err_clear();
    PeftcStatus st = st_open(&f, path);
    ck_assert_msg(st == PEFTC_EFORMAT, "%s (%s): expected EFORMAT, got %d: %s", path, needle, st, peftc_err_msg());
    ck_assert_msg(strstr(peftc_err_msg(), path), "message lacks the file name: %s", peftc_err_msg());
    ck_assert_msg(strstr(peftc_err_msg(), needle), "message lacks '%s': %s", needle, peftc_err_msg());
    ck_assert_ptr_null(f.tensors);
    ck_assert_int_eq(f.n_tensors, 0);
}

static uint64_t header_len(const StFile *f) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | f->file.data[i];
    return n;
}

START_TEST(f32_round_trip_is_bit_exact) {
    float v[9] = {0.0f, -0.0f, 1.0f, -1.5f, 1e-40f, FLT_MAX, INFINITY, NAN, 3.14159265f};
    real_t x[24];
    for (int i = 0; i < 9; i++) x[i] = (real_t)v[i];
    for (int i = 9; i < 24; i++) x[i] = (real_t)(0.1 * i - 1);
    real_t scalar = 42;
    char path[512];
    tmp_path(path, "rt.safetensors");
    StWriter *w = st_writer_new();
    Shape s33 = shape2(3, 3), s234 = {3, {2, 3, 4}}, s0 = {0, {0}}, sempty = shape2(0, 5);
    ck_assert_int_eq(st_writer_add(w, "m.values", ST_F32, &s33, x), PEFTC_OK);
    ck_assert_int_eq(st_writer_add(w, "b.cube", ST_F32, &s234, x), PEFTC_OK);
    ck_assert_int_eq(st_writer_add(w, "a.scalar", ST_F32, &s0, &scalar), PEFTC_OK);
    ck_assert_int_eq(st_writer_add(w, "z.empty", ST_F32, &sempty, NULL), PEFTC_OK);
    ck_assert_int_eq(st_write(w, path), PEFTC_OK);
    st_writer_free(w);
    ck_assert_int_ne(access(path, F_OK), -1);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_int_eq(access(tmp, F_OK), -1); /* renamed into place */

    StFile f;
    ck_assert_int_eq(st_open(&f, path), PEFTC_OK);
    ck_assert_int_eq(f.n_tensors, 4);
    ck_assert_uint_eq(header_len(&f) % 8, 0);
    ck_assert_uint_eq(f.file.size, 8 + header_len(&f) + 4 * (9 + 24 + 1));
    /* Laid out in name order: a, b, m, z. */
    const StTensor *a = st_find(&f, "a.scalar"), *b = st_find(&f, "b.cube"), *m = st_find(&f, "m.values"),
                   *z = st_find(&f, "z.empty");
    ck_assert(a && b && m && z);
    ck_assert_ptr_null(st_find(&f, "missing"));
    ck_assert(a->data < b->data && b->data < m->data && m->data <= z->data);
    ck_assert_int_eq(a->shape.ndim, 0);
    ck_assert_int_eq(m->dtype, ST_F32);
    ck_assert_str_eq(m->dtype_name, "F32");
    ck_assert(shape_equal(&b->shape, &s234));
    ck_assert(shape_equal(&z->shape, &sempty));
    ck_assert_uint_eq(z->nbytes, 0);
    ck_assert_mem_eq(m->data, v, sizeof v);
    real_t back[24], one;
    ck_assert_int_eq(st_read_real(&f, m, &s33, back), PEFTC_OK);
    ck_assert_mem_eq(back, x, 9 * sizeof *x);
    ck_assert_int_eq(st_read_real(&f, b, NULL, back), PEFTC_OK);
    ck_assert_mem_eq(back, x, 24 * sizeof *x);
    ck_assert_int_eq(st_read_real(&f, a, &s0, &one), PEFTC_OK);
    ck_assert(one == 42);
    ck_assert_int_eq(st_read_real(&f, z, &sempty, back), PEFTC_OK);
    ck_assert_int_eq(f.n_meta, 1);
    ck_assert_str_eq(f.meta_keys[0], "format");
    ck_assert_str_eq(f.meta_vals[0], "pt");
    st_close(&f);
}
END_TEST

/* Writes vals as `dtype`, checks the stored bits and the values read back. */
static void check_16bit(StDType dtype, const float *vals, const uint16_t *bits, const float *back, int n) {
    char path[512];
    tmp_path(path, "half.safetensors");
    real_t x[16], y[16];
    for (int i = 0; i < n; i++) x[i] = (real_t)vals[i];
    StWriter *w = st_writer_new();
    Shape s = shape1(n);
    ck_assert_int_eq(st_writer_add(w, "t", dtype, &s, x), PEFTC_OK);
    ck_assert_int_eq(st_write(w, path), PEFTC_OK);
    st_writer_free(w);
    StFile f;
    ck_assert_int_eq(st_open(&f, path), PEFTC_OK);
    const StTensor *t = st_find(&f, "t");
    ck_assert_int_eq(t->dtype, dtype);
    ck_assert_str_eq(t->dtype_name, dtype == ST_F16 ? "F16" : "BF16");
    ck_assert_uint_eq(t->nbytes, 2 * (uint64_t)n);
    ck_assert_int_eq(st_read_real(&f, t, &s, y), PEFTC_OK);
    for (int i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(t->data[2 * i] | t->data[2 * i + 1] << 8);
        if (isnan(vals[i])) {
            ck_assert_msg(isnan(y[i]), "[%d] NaN not kept", i);
            continue;
        }
        ck_assert_msg(h == bits[i], "[%d] %.9g stored as 0x%04x, expected 0x%04x", i, vals[i], h, bits[i]);
        ck_assert_msg(y[i] == back[i], "[%d] read %.9g, expected %.9g", i, (double)y[i], back[i]);
    }
    st_close(&f);
}

START_TEST(f16_rounds_to_nearest_even) {
    const float u = 1.0f / 2048; /* half an F16 ulp at 1 */
    float v[] = {1, 1 + u, 1 + 3 * u, 1 + u + 1.0f / (1 << 20), 65504, 65520, ldexpf(1, -24), ldexpf(1, -25),
                 3 * ldexpf(1, -25), -2.5f, INFINITY, NAN};
    uint16_t bits[] = {0x3C00, 0x3C00, 0x3C02, 0x3C01, 0x7BFF, 0x7C00, 0x0001, 0x0000, 0x0002, 0xC100, 0x7C00, 0};
    float back[] = {1, 1, 1 + 4 * u, 1 + 2 * u, 65504, INFINITY, ldexpf(1, -24), 0, ldexpf(1, -23), -2.5f, INFINITY, 0};
    check_16bit(ST_F16, v, bits, back, 12);
}
END_TEST

START_TEST(bf16_rounds_to_nearest_even) {
    const float u = 1.0f / 256; /* half a BF16 ulp at 1 */
    float v[] = {1, 1 + u, 1 + 3 * u, 1 + u + 1.0f / (1 << 20), -3, FLT_MAX, 1e-40f, NAN};
    uint16_t bits[] = {0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xC040, 0x7F80, 0x0001, 0};
    float back[] = {1, 1, 1 + 4 * u, 1 + 2 * u, -3, INFINITY, bf16_to_f32(1), 0};
    check_16bit(ST_BF16, v, bits, back, 8);
}
END_TEST

START_TEST(metadata_round_trip) {
    char path[512];
    tmp_path(path, "meta.safetensors");
    StWriter *w = st_writer_new();
    ck_assert_int_eq(st_writer_meta(w, "note", "first"), PEFTC_OK);
    ck_assert_int_eq(st_writer_meta(w, "odd \"key\"", "tab\there, newline\n, slash\\ and \x01"), PEFTC_OK);
    ck_assert_int_eq(st_writer_meta(w, "note", "second"), PEFTC_OK); /* replaces */
    ck_assert_int_eq(st_write(w, path), PEFTC_OK);                    /* no tensors is a valid file */
    st_writer_free(w);
    StFile f;
    ck_assert_int_eq(st_open(&f, path), PEFTC_OK);
    ck_assert_int_eq(f.n_tensors, 0);
    ck_assert_int_eq(f.n_meta, 3);
    int seen = 0;
    for (int i = 0; i < f.n_meta; i++) {
        const char *k = f.meta_keys[i], *v = f.meta_vals[i];
        if (strcmp(k, "note") == 0 && strcmp(v, "second") == 0) seen |= 1;
        if (strcmp(k, "format") == 0 && strcmp(v, "pt") == 0) seen |= 2;
        if (strcmp(k, "odd \"key\"") == 0 && strcmp(v, "tab\there, newline\n, slash\\ and \x01") == 0) seen |= 4;
    }
    ck_assert_int_eq(seen, 7);
    st_close(&f);
}
END_TEST

START_TEST(writer_rejects_bad_input) {
    StWriter *w = st_writer_new();
    real_t x[4] = {1, 2, 3, 4};
    Shape s = shape1(4), neg = shape1(-1);
    ck_assert_int_eq(st_writer_add(w, "t", ST_F32, &s, x), PEFTC_OK);
    ck_assert_int_eq(st_writer_add(w, "t", ST_F32, &s, x), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "'t'"));
    ck_assert_int_eq(st_writer_add(w, "__metadata__", ST_F32, &s, x), PEFTC_EINVAL);
    ck_assert_int_eq(st_writer_add(w, "i", ST_I32, &s, x), PEFTC_EINVAL);
    ck_assert_int_eq(st_writer_add(w, "n", ST_F32, &neg, x), PEFTC_EINVAL);
    ck_assert_int_eq(st_writer_add(w, "d", ST_F32, &s, NULL), PEFTC_EINVAL);
    char path[512];
    snprintf(path, sizeof path, "%s/no/such/folder/x.safetensors", tmpdir);
    ck_assert_int_eq(st_write(w, path), PEFTC_EWRITE);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), tmpdir));
    st_writer_free(w);
}
END_TEST

START_TEST(read_real_checks_shape_and_dtype) {
    char path[512];
    tmp_path(path, "ints.safetensors");
    write_raw(path, "{\"bytes\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                    "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[4,20]}}", 20);
    StFile f;
    ck_assert_int_eq(st_open(&f, path), PEFTC_OK);
    const StTensor *b = st_find(&f, "bytes"), *w = st_find(&f, "w");
    ck_assert_int_eq(b->dtype, ST_OTHER);
    ck_assert_str_eq(b->dtype_name, "I8");
    real_t out[4];
    ck_assert_int_eq(st_read_real(&f, b, NULL, out), PEFTC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), path));
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "'bytes'"));
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "I8"));
    Shape want = shape2(4, 1);
    ck_assert_int_eq(st_read_real(&f, w, &want, out), PEFTC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), path));
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "'w' has shape (2, 2), expected (4, 1)"));
    st_close(&f);
}
END_TEST

typedef struct {
    const char *json;
    size_t buf;
    const char *needle;
} BadCase;

static const char *A8 = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

START_TEST(corrupt_headers_are_named) {
    char gap[256], overlap[256], dup[256], trailing[256], longname[400];
    snprintf(gap, sizeof gap, "{%s,\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", A8);
    snprintf(overlap, sizeof overlap, "{%s,\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", A8);
    snprintf(dup, sizeof dup, "{%s,\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", A8);
    snprintf(trailing, sizeof trailing, "{%s} x", A8);
    snprintf(longname, sizeof longname, "{\"%0200d\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 7);
    const BadCase cases[] = {
        {"{\"a\": {\"dtype\": \"F32\",", 0, "not valid JSON"},
        {"[1, 2, 3]", 0, "JSON object"},
        {trailing, 8, "unexpected bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "\"data_offsets\" must be"},
        {gap, 20, "without gaps"},
        {overlap, 12, "overlaps tensor 'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "past the end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "4 trailing bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "expected 12"},
        {dup, 16, "'a' appears twice"},
        {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype \"Q4\""},
        {"{\"a\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "\"dtype\" must be"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "\"shape\" must be"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "5 dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,8]}}", 8, "too many elements"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, "end before"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":\"0-8\"}}", 8, "\"data_offsets\" must be"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", 16, "\"data_offsets\" must be"},
        {"{\"a\":5}", 0, "expected an object"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ key 'k'"},
        {"{\"__metadata__\":[]}", 0, "\"__metadata__\" must be"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "appears twice"},
        {"{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "whole number of bytes"},
        {longname, 0, "longer than"},
    };
    char path[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/bad%zu.safetensors", tmpdir, i);
        write_raw(path, cases[i].json, cases[i].buf);
        expect_bad(path, cases[i].needle);
    }
}
END_TEST

START_TEST(unusual_but_valid_headers_open) {
    char path[512];
    tmp_path(path, "ok.safetensors");
    /* Empty object, null metadata, zero-size tensors sharing an offset, sub-byte dtype, extra keys. */
    write_raw(path, "  {\"__metadata__\":null,\"e\":{\"dtype\":\"BOOL\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
                    "\"f\":{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[0,2],\"extra\":1},"
                    "\"g\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[2,10]}}\n  ", 10);
    StFile f;
    ck_assert_int_eq(st_open(&f, path), PEFTC_OK);
    ck_assert_int_eq(f.n_tensors, 3);
    ck_assert_int_eq(f.n_meta, 0);
    real_t g;
    ck_assert_int_eq(st_read_real(&f, st_find(&f, "g"), NULL, &g), PEFTC_OK);
    ck_assert(g == 0);
    st_close(&f);
    write_raw(path, "{}", 0);
    ck_assert_int_eq(st_open(&f, path), PEFTC_OK);
    ck_assert_int_eq(f.n_tensors, 0);
    st_close(&f);
}
END_TEST

/* A valid two-tensor file; returns its bytes and header length. */
static uint8_t *valid_file(const char *path, size_t *size, uint64_t *hlen) {
    real_t x[12];
    for (int i = 0; i < 12; i++) x[i] = (real_t)i;
    Shape s = shape2(3, 4), s2 = shape1(12);
    StWriter *w = st_writer_new();
    ck_assert_int_eq(st_writer_add(w, "w", ST_F32, &s, x), PEFTC_OK);
    ck_assert_int_eq(st_writer_add(w, "h", ST_BF16, &s2, x), PEFTC_OK);
    ck_assert_int_eq(st_write(w, path), PEFTC_OK);
    st_writer_free(w);
    uint8_t *b = read_all(path, size);
    *hlen = 0;
    for (int i = 7; i >= 0; i--) *hlen = *hlen << 8 | b[i];
    return b;
}

START_TEST(truncated_and_oversized_files) {
    char path[512], cut[512];
    tmp_path(path, "valid.safetensors");
    size_t size;
    uint64_t n;
    uint8_t *b = valid_file(path, &size, &n);
    size_t lens[] = {0, 3, 7, 8, 8 + (size_t)n / 2, 8 + (size_t)n - 1, 8 + (size_t)n, size - 1};
    const char *needles[] = {"at least the 8-byte", "at least the 8-byte", "at least the 8-byte", "runs past",
                             "runs past", "runs past", "past the end", "past the end"};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        snprintf(cut, sizeof cut, "%s/cut%zu.safetensors", tmpdir, lens[i]);
        write_bytes(cut, b, lens[i]);
        expect_bad(cut, needles[i]);
    }
    /* Header length over the format's 100 MB bound, and one past the end of the file. */
    uint8_t big[16] = {0};
    uint64_t huge = 200000000;
    for (int i = 0; i < 8; i++) big[i] = (uint8_t)(huge >> (8 * i));
    tmp_path(cut, "huge.safetensors");
    write_bytes(cut, big, sizeof big);
    expect_bad(cut, "over the limit");
    big[0] = 9, big[1] = big[2] = big[3] = 0;
    write_bytes(cut, big, sizeof big);
    expect_bad(cut, "runs past");
    free(b);
}
END_TEST

/* Random byte flips and cuts: whatever st_open says, it must say it without touching memory it should
 * not (ASan runs this suite), and whatever it accepts must read back. */
START_TEST(mutated_files_never_crash) {
    char path[512], mut[512];
    tmp_path(path, "valid.safetensors");
    tmp_path(mut, "mut.safetensors");
    size_t size;
    uint64_t n;
    uint8_t *b = valid_file(path, &size, &n);
    uint8_t *c = malloc(size);
    int accepted = 0;
    for (uint64_t it = 0; it < 400; it++) {
        memcpy(c, b, size);
        size_t len = size;
        int flips = 1 + (int)(rng_u64(11, 4 * it) % 3);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(rng_u64(12, 4 * it + (uint64_t)k) % (8 + n));
            c[at] = (uint8_t)rng_u64(13, 4 * it + (uint64_t)k);
        }
        if (it % 5 == 0) len = (size_t)(rng_u64(14, it) % size);
        write_bytes(mut, c, len);
        StFile f;
        PeftcStatus st = st_open(&f, mut);
        ck_assert_msg(st == PEFTC_OK || st == PEFTC_EFORMAT, "mutation %llu: status %d", (unsigned long long)it, st);
        if (st != PEFTC_OK) continue;
        accepted++;
        for (int i = 0; i < f.n_tensors; i++) {
            const StTensor *t = &f.tensors[i];
            real_t *out = malloc((size_t)shape_numel(&t->shape) * sizeof *out + 1);
            PeftcStatus rs = st_read_real(&f, t, NULL, out);
            int convertible = t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 || t->dtype == ST_F64;
            ck_assert_int_eq(rs, convertible ? PEFTC_OK : PEFTC_EFORMAT);
            free(out);
        }
        st_close(&f);
    }
    ck_assert_int_gt(accepted, 0); /* flips inside the data or padding leave valid files */
    free(b);
    free(c);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, make_tmpdir, remove_tmpdir);
    tcase_add_test(tc, f32_round_trip_is_bit_exact);
    tcase_add_test(tc, f16_rounds_to_nearest_even);
    tcase_add_test(tc, bf16_rounds_to_nearest_even);
    tcase_add_test(tc, metadata_round_trip);
    tcase_add_test(tc, writer_rejects_bad_input);
    tcase_add_test(tc, read_real_checks_shape_and_dtype);
    tcase_add_test(tc, corrupt_headers_are_named);
    tcase_add_test(tc, unusual_but_valid_headers_open);
    tcase_add_test(tc, truncated_and_oversized_files);
    tcase_add_test(tc, mutated_files_never_crash);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
