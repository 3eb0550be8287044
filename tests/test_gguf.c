/* GGUF reader: writer/reader round trip, metadata written by llama.cpp's Python package, and
 * rejection of truncated, mutated and malformed files. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/formats/gguf.h"
#include "core/formats/gguf_write.h"
#include "core/formats/quant.h"
#include "tests/gguf_testutil.h"
#include "tests/testutil.h"

/* ---- a byte builder independent of the writer, for hand-made (and broken) files ---- */

typedef struct {
    uint8_t b[8192];
    size_t n;
} Bytes;

static void by_raw(Bytes *x, const void *p, size_t n) {
    ck_assert_uint_le(x->n + n, sizeof x->b);
    memcpy(x->b + x->n, p, n);
    x->n += n;
}

static void by_u32(Bytes *x, uint32_t v) {
    for (int i = 0; i < 4; i++) x->b[x->n++] = (uint8_t)(v >> (8 * i));
}

static void by_u64(Bytes *x, uint64_t v) {
    by_u32(x, (uint32_t)v);
    by_u32(x, (uint32_t)(v >> 32));
}

static void by_str(Bytes *x, const char *s) {
    by_u64(x, strlen(s));
    by_raw(x, s, strlen(s));
}

static void by_head(Bytes *x, uint64_t n_tensors, uint64_t n_kv) {
    x->n = 0;
    by_raw(x, "GGUF", 4);
    by_u32(x, 3);
    by_u64(x, n_tensors);
    by_u64(x, n_kv);
}

static void by_tensor(Bytes *x, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
    by_str(x, name);
    by_u32(x, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) by_u64(x, ne[i]);
    by_u32(x, type);
    by_u64(x, off);
}

static void by_pad(Bytes *x, size_t align, size_t extra) {
    while (x->n % align) x->b[x->n++] = 0;
    memset(x->b + x->n, 0, extra);
    x->n += extra;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* Opening `path` fails with `st` and a message naming the file and containing `what`. */
static void expect_open_error(const char *path, PeftcStatus st, const char *what) {
    GgufFile g;
    peftc_err_clear();
    PeftcStatus got = gguf_open(&g, path);
    ck_assert_msg(got == st, "%s: expected status %d, got %d (%s)", what, st, got, peftc_err_msg());
    ck_assert_msg(strstr(peftc_err_msg(), path), "message lacks the path: %s", peftc_err_msg());
    ck_assert_msg(strstr(peftc_err_msg(), what), "message lacks '%s': %s", what, peftc_err_msg());
    ck_assert_ptr_null(g.kv);
}

static void expect_bytes_error(const Bytes *x, PeftcStatus st, const char *what) {
    const char *p = tmp_path("bad.gguf");
    write_file(p, x->b, x->n);
    expect_open_error(p, st, what);
    unlink(p);
    n_tmp_files--;
}

/* ======================= metadata and tensors round trip ======================= */

START_TEST(metadata_round_trip) {
    const char *path = tmp_path("meta.gguf");
    GgufWriter *w = gguf_writer_new();
    ck_assert_ptr_nonnull(w);
    const char *strs[] = {"alpha", "", "g\xc3\xa9"};
    const int32_t ints[] = {-7, 0, 2147483647};
    const float fl[] = {0.5f, -2.25f};
    ck_assert_int_eq(gguf_writer_u32(w, "t.u32", 1), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_u32(w, "t.u32", 4000000000u), PEFTC_OK); /* replaces */
    ck_assert_int_eq(gguf_writer_i32(w, "t.i32", -5), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_i32(w, "t.i32pos", 12), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_f32(w, "t.f32", 3.25f), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_bool(w, "t.bool", 1), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_str(w, "t.str", "hello"), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_str_array(w, "t.strs", strs, 3), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_i32_array(w, "t.ints", ints, 3), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_f32_array(w, "t.floats", fl, 2), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_u32(w, "general.alignment", 64), PEFTC_OK);
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint8_t q8[2 * 34];
    for (int i = 0; i < (int)sizeof q8; i++) q8[i] = (uint8_t)(i * 7);
    real_t r[4] = {1, (real_t)0.1, -65520, (real_t)1e-8};
    ck_assert_int_eq(gguf_writer_add_f32(w, "a", 2, (int64_t[]){3, 2}, a), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_add_raw(w, "q", GGML_Q8_0, 2, (int64_t[]){32, 2}, q8, sizeof q8), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_add_real(w, "h", GGML_F16, 1, (int64_t[]){4}, r), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_add_real(w, "bf", GGML_BF16, 1, (int64_t[]){4}, r), PEFTC_OK);
    /* writer-side rejections */
    ck_assert_int_eq(gguf_writer_add_f32(w, "a", 1, (int64_t[]){1}, a), PEFTC_EINVAL);
    ck_assert_int_eq(gguf_writer_add_f32(w, "z", 1, (int64_t[]){0}, a), PEFTC_EINVAL);
    ck_assert_int_eq(gguf_writer_add_f32(w, "z", 5, (int64_t[]){1, 1, 1, 1, 1}, a), PEFTC_EINVAL);
    ck_assert_int_eq(gguf_writer_add_raw(w, "z", GGML_Q8_0, 1, (int64_t[]){32}, q8, 33), PEFTC_EINVAL);
    ck_assert_int_eq(gguf_writer_add_raw(w, "z", GGML_Q8_0, 1, (int64_t[]){31}, q8, 34), PEFTC_EINVAL);
    ck_assert_int_eq(gguf_writer_add_real(w, "z", GGML_Q8_0, 1, (int64_t[]){32}, r), PEFTC_EINVAL);
    ck_assert_int_eq(gguf_writer_add_f32(w, "a_name_that_is_far_too_long_for_ggml_readers_to_accept_0123456789",
                                         1, (int64_t[]){1}, a), PEFTC_EINVAL);
    ck_assert_int_eq(gguf_writer_write(w, path), PEFTC_OK);
    gguf_writer_free(w);

    GgufFile g;
    ck_assert_int_eq(gguf_open(&g, path), PEFTC_OK);
    ck_assert_uint_eq(g.version, 3);
    ck_assert_uint_eq(g.alignment, 64);
    ck_assert_int_eq(g.n_kv, 10);
    ck_assert_int_eq(g.n_tensors, 4);
    uint32_t u;
    float f;
    int b;
    GgufStr s;
    ck_assert_int_eq(gguf_get_u32(&g, "t.u32", &u), PEFTC_OK);
    ck_assert_uint_eq(u, 4000000000u);
    ck_assert_int_eq(gguf_get_u32(&g, "t.i32pos", &u), PEFTC_OK);
    ck_assert_uint_eq(u, 12);
    ck_assert_int_eq(gguf_get_u32(&g, "t.i32", &u), PEFTC_EFORMAT); /* negative */
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "t.i32"));
    ck_assert_int_eq(gguf_get_f32(&g, "t.f32", &f), PEFTC_OK);
    ck_assert(f == 3.25f);
    ck_assert_int_eq(gguf_get_bool(&g, "t.bool", &b), PEFTC_OK);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(gguf_get_str(&g, "t.str", &s), PEFTC_OK);
    ck_assert(s.len == 5 && memcmp(s.ptr, "hello", 5) == 0);
    /* wrong type and missing key: the message names the file, the key and both types */
    ck_assert_int_eq(gguf_get_str(&g, "t.f32", &s), PEFTC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), path));
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "t.f32"));
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "f32"));
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "string"));
    ck_assert_int_eq(gguf_get_u32(&g, "t.missing", &u), PEFTC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "t.missing"));
    ck_assert_int_eq(gguf_get_u32(&g, "t.strs", &u), PEFTC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "array"));
    ck_assert_int_eq(gguf_get_u32_or(&g, "t.missing", 9, &u), PEFTC_OK);
    ck_assert_uint_eq(u, 9);
    ck_assert_int_eq(gguf_get_f32_or(&g, "t.missing", 0.5f, &f), PEFTC_OK);
    ck_assert(f == 0.5f);
    ck_assert_int_eq(gguf_get_bool_or(&g, "t.missing", 0, &b), PEFTC_OK);
    ck_assert_int_eq(b, 0);
    ck_assert_int_eq(gguf_get_bool_or(&g, "t.str", 0, &b), PEFTC_EFORMAT); /* present but not bool */

    GgufStr *items;
    uint64_t n;
    ck_assert_int_eq(gguf_get_str_array(&g, "t.strs", &items, &n), PEFTC_OK);
    ck_assert_uint_eq(n, 3);
    for (int i = 0; i < 3; i++)
        ck_assert(items[i].len == strlen(strs[i]) && memcmp(items[i].ptr, strs[i], items[i].len) == 0);
    free(items);
    int32_t *iv;
    ck_assert_int_eq(gguf_get_i32_array(&g, "t.ints", &iv, &n), PEFTC_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert(iv[0] == -7 && iv[1] == 0 && iv[2] == 2147483647);
    free(iv);
    ck_assert_int_eq(gguf_get_i32_array(&g, "t.strs", &iv, &n), PEFTC_EFORMAT);
    const GgufKV *kv = gguf_find(&g, "t.floats");
    ck_assert(kv && kv->type == GGUF_ARRAY && kv->elem_type == GGUF_F32 && kv->count == 2);
    float fv[2];
    memcpy(fv, kv->raw, sizeof fv);
    ck_assert(fv[0] == 0.5f && fv[1] == -2.25f);

    const GgufTensor *ta = gguf_tensor(&g, "a"), *tq = gguf_tensor(&g, "q"), *th = gguf_tensor(&g, "h");
    const GgufTensor *tb = gguf_tensor(&g, "bf");
    ck_assert(ta && tq && th && tb && !gguf_tensor(&g, "z") && !gguf_tensor(&g, "A"));
    ck_assert(ta->n_dims == 2 && ta->ne[0] == 3 && ta->ne[1] == 2 && ta->ne[2] == 1 && ta->type == GGML_F32);
    ck_assert(ta->nbytes == 24 && memcmp(ta->data, a, 24) == 0);
    ck_assert(tq->type == GGML_Q8_0 && tq->nbytes == sizeof q8 && memcmp(tq->data, q8, sizeof q8) == 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_uint_eq(g.tensors[i].offset % 64, 0);
        ck_assert_uint_eq((uintptr_t)(g.tensors[i].data - g.file.data) % 64, 0);
    }
    real_t back[4];
    ggml_dequantize(GGML_F16, th->data, back, 4);
    ck_assert(back[0] == 1 && back[1] == (real_t)f16_to_f32(f32_to_f16(0.1f)) && isinf(back[2]) && back[2] < 0);
    ck_assert(back[3] == (real_t)f16_to_f32(f32_to_f16(1e-8f)));
    ggml_dequantize(GGML_BF16, tb->data, back, 4);
    ck_assert(back[0] == 1 && back[1] == (real_t)bf16_to_f32(f32_to_bf16(0.1f)) && back[2] == -65536);
    gguf_close(&g);
    tmp_cleanup();
}
END_TEST

/* Reading what llama.cpp's own Python writer wrote, every value type included. */
START_TEST(reads_python_written_metadata) {
    GgufFile g;
    ck_assert_msg(gguf_open(&g, FIXTURE) == PEFTC_OK, "%s", peftc_err_msg());
    uint32_t u;
    float f;
    int b;
    GgufStr s;
    ck_assert_int_eq(gguf_get_u32(&g, "fx.u8", &u), PEFTC_OK);
    ck_assert_uint_eq(u, 200);
    ck_assert_int_eq(gguf_get_u32(&g, "fx.u16", &u), PEFTC_OK);
    ck_assert_uint_eq(u, 60000);
    ck_assert_int_eq(gguf_get_u32(&g, "fx.u32", &u), PEFTC_OK);
    ck_assert_uint_eq(u, 4000000000u);
    ck_assert_int_eq(gguf_get_u32(&g, "fx.i64", &u), PEFTC_OK);
    ck_assert_uint_eq(u, 7);
    ck_assert_int_eq(gguf_get_u32(&g, "fx.i8", &u), PEFTC_EFORMAT);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "-100"));
    ck_assert_int_eq(gguf_get_u32(&g, "fx.i16", &u), PEFTC_EFORMAT);
    ck_assert_int_eq(gguf_get_u32(&g, "fx.i32", &u), PEFTC_EFORMAT);
    ck_assert_int_eq(gguf_get_u32(&g, "fx.u64", &u), PEFTC_EFORMAT); /* 2^40 does not fit */
    ck_assert_int_eq(gguf_get_u32(&g, "fx.f32", &u), PEFTC_EFORMAT);
    ck_assert_int_eq(gguf_get_f32(&g, "fx.f32", &f), PEFTC_OK);
    ck_assert(f == 1.5f);
    ck_assert_int_eq(gguf_get_f32(&g, "fx.f64", &f), PEFTC_OK);
    ck_assert(f == 0.25f);
    ck_assert_int_eq(gguf_get_bool(&g, "fx.bool", &b), PEFTC_OK);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(gguf_get_str(&g, "fx.str", &s), PEFTC_OK);
    ck_assert(s.len == 6 && memcmp(s.ptr, "h\xc3\xa9llo", 6) == 0);
    ck_assert_int_eq(gguf_get_str(&g, "general.architecture", &s), PEFTC_OK);
    ck_assert(s.len == 7 && memcmp(s.ptr, "fixture", 7) == 0);
    GgufStr *items;
    uint64_t n;
    ck_assert_int_eq(gguf_get_str_array(&g, "fx.arr_str", &items, &n), PEFTC_OK);
    ck_assert(n == 3 && items[0].len == 1 && items[1].len == 2 && items[2].len == 0 && items[1].ptr[1] == 'c');
    free(items);
    int32_t *iv;
    ck_assert_int_eq(gguf_get_i32_array(&g, "fx.arr_i32", &iv, &n), PEFTC_OK);
    ck_assert(n == 3 && iv[0] == 1 && iv[1] == -2 && iv[2] == 3);
    free(iv);
    gguf_close(&g);
}
END_TEST

/* Every key of the Python-written fixture (one per value type, arrays of strings and numbers
 * included) copied with gguf_writer_copy_kv reads back as the same keys, in order, with the same types
 * and the same bytes; the byte lengths the reader records are the format's. */
START_TEST(copy_every_key_type) {
    GgufFile src, dst;
    ck_assert_msg(gguf_open(&src, FIXTURE) == PEFTC_OK, "%s", peftc_err_msg());
    const struct { const char *key; uint64_t nbytes; } sizes[] = {
        {"fx.u8", 1}, {"fx.i8", 1}, {"fx.u16", 2}, {"fx.i16", 2}, {"fx.u32", 4}, {"fx.i32", 4}, {"fx.f32", 4},
        {"fx.bool", 1}, {"fx.u64", 8}, {"fx.i64", 8}, {"fx.f64", 8}, {"fx.str", 8 + 6},
        {"fx.arr_str", 3 * 8 + 1 + 2 + 0}, {"fx.arr_i32", 3 * 4}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const GgufKV *kv = gguf_find(&src, sizes[i].key);
        ck_assert_msg(kv && kv->nbytes == sizes[i].nbytes, "%s: %llu bytes, expected %llu", sizes[i].key,
                      kv ? (unsigned long long)kv->nbytes : 0ull, (unsigned long long)sizes[i].nbytes);
    }
    GgufWriter *w = gguf_writer_new();
    for (int64_t i = 0; i < src.n_kv; i++) ck_assert_int_eq(gguf_writer_copy_kv(w, &src.kv[i]), PEFTC_OK);
    const char *path = tmp_path("copy.gguf");
    ck_assert_int_eq(gguf_writer_write(w, path), PEFTC_OK);
    gguf_writer_free(w);
    ck_assert_msg(gguf_open(&dst, path) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(dst.n_kv, src.n_kv);
    ck_assert_int_ge(src.n_kv, 14);
    for (int64_t i = 0; i < src.n_kv; i++) {
        const GgufKV *a = &src.kv[i], *b = &dst.kv[i];
        ck_assert(a->key.len == b->key.len && memcmp(a->key.ptr, b->key.ptr, a->key.len) == 0);
        ck_assert(a->type == b->type && a->count == b->count && a->nbytes == b->nbytes);
        ck_assert(a->type != GGUF_ARRAY || a->elem_type == b->elem_type);
        ck_assert_msg(memcmp(a->raw, b->raw, (size_t)a->nbytes) == 0, "value of key %lld differs", (long long)i);
    }
    GgufStr *items;
    uint64_t n;
    ck_assert_int_eq(gguf_get_str_array(&dst, "fx.arr_str", &items, &n), PEFTC_OK);
    ck_assert(n == 3 && items[1].len == 2 && memcmp(items[1].ptr, "bc", 2) == 0);
    free(items);
    gguf_close(&dst);
    GgufKV bad = src.kv[0];
    bad.key = (GgufStr){"a\0b", 3};
    w = gguf_writer_new();
    ck_assert_int_eq(gguf_writer_copy_kv(w, &bad), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "NUL"));
    gguf_writer_free(w);
    gguf_close(&src);
    tmp_cleanup();
}
END_TEST

/* ======================= corrupt files ======================= */

/* A small valid file: strings, arrays and two tensors. Returns the length beyond which only the
 * final padding lies (any shorter prefix must be rejected). */
static size_t write_small(const char *path) {
    GgufWriter *w = gguf_writer_new();
    const char *strs[] = {"x", "yz"};
    const int32_t ints[] = {1, 2};
    gguf_writer_str(w, "general.architecture", "llama");
    gguf_writer_str_array(w, "s", strs, 2);
    gguf_writer_i32_array(w, "i", ints, 2);
    gguf_writer_f32(w, "f", 1.0f);
    float a[8] = {0};
    uint8_t q[34] = {0};
    ck_assert_int_eq(gguf_writer_add_f32(w, "t0", 2, (int64_t[]){4, 2}, a), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_add_raw(w, "t1", GGML_Q8_0, 1, (int64_t[]){32}, q, sizeof q), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_write(w, path), PEFTC_OK);
    gguf_writer_free(w);
    GgufFile g;
    ck_assert_int_eq(gguf_open(&g, path), PEFTC_OK);
    const GgufTensor *t1 = gguf_tensor(&g, "t1");
    size_t end = (size_t)(t1->data - g.file.data) + t1->nbytes;
    gguf_close(&g);
    return end;
}

static size_t read_all(const char *path, uint8_t *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* GgufFill for deferred_tensors: element i of tensor "d.<k>" is k * 100 + i; "d.fail" fails. */
static PeftcStatus fill_pattern(void *user, const char *name, GgmlType type, void *dst, size_t nbytes) {
    int *calls = user;
    (*calls)++;
    if (!strcmp(name, "d.fail")) return PEFTC_ERR(PEFTC_EIO, "fill: cannot produce '%s'", name);
    size_t n = nbytes / ggml_block_bytes(type);
    real_t *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (real_t)(atoi(name + 2) * 100 + (int)i);
    gguf_encode_real(type, v, n, dst);
    free(v);
    return PEFTC_OK;
}

/* Deferred tensors get their bytes from the fill while the file is written, in file order beside
 * ordinary ones; without a fill, or when the fill fails, nothing is written. */
START_TEST(deferred_tensors) {
    const char *path = tmp_path("deferred.gguf");
    GgufWriter *w = gguf_writer_new();
    real_t plain[4] = {1.5f, -2, 3, 0.25f};
    ck_assert_int_eq(gguf_writer_add_deferred(w, "d.1", GGML_F32, 2, (int64_t[]){3, 2}), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_add_real(w, "plain", GGML_F32, 1, (int64_t[]){4}, plain), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_add_deferred(w, "d.2", GGML_BF16, 1, (int64_t[]){5}), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_add_deferred(w, "d.1", GGML_F32, 1, (int64_t[]){1}), PEFTC_EINVAL); /* twice */
    ck_assert_int_eq(gguf_writer_write(w, path), PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), "'d.1' was deferred"), "%s", peftc_err_msg());
    ck_assert_int_ne(access(path, F_OK), 0);
    int calls = 0;
    ck_assert_msg(gguf_writer_write_filled(w, path, fill_pattern, &calls) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(calls, 2);
    GgufFile g;
    ck_assert_int_eq(gguf_open(&g, path), PEFTC_OK);
    ck_assert_str_eq(g.tensors[0].name, "d.1");
    ck_assert_str_eq(g.tensors[2].name, "d.2");
    real_t got[6];
    ggml_dequantize(GGML_F32, gguf_tensor(&g, "d.1")->data, got, 6);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(got[i], 100 + i);
    ggml_dequantize(GGML_BF16, gguf_tensor(&g, "d.2")->data, got, 5);
    for (int i = 0; i < 5; i++) ck_assert_float_eq(got[i], 200 + i); /* exact in bf16 */
    ggml_dequantize(GGML_F32, gguf_tensor(&g, "plain")->data, got, 4);
    ck_assert_int_eq(memcmp(got, plain, sizeof plain), 0);
    gguf_close(&g);
    ck_assert_int_eq(gguf_writer_add_deferred(w, "d.fail", GGML_F32, 1, (int64_t[]){2}), PEFTC_OK);
    const char *other = tmp_path("failed.gguf");
    ck_assert_int_eq(gguf_writer_write_filled(w, other, fill_pattern, &calls), PEFTC_EIO);
    ck_assert_msg(strstr(peftc_err_msg(), "cannot produce 'd.fail'"), "%s", peftc_err_msg());
    ck_assert_int_ne(access(other, F_OK), 0);
    gguf_writer_free(w);
}
END_TEST

START_TEST(truncated_files) {
    const char *full = tmp_path("small.gguf"), *cut = tmp_path("cut.gguf");
    size_t end = write_small(full);
    static uint8_t buf[4096];
    size_t n = read_all(full, buf, sizeof buf);
    ck_assert_uint_lt(n, sizeof buf);
    ck_assert_uint_le(end, n);
    for (size_t len = 0; len <= n; len++) {
        write_file(cut, buf, len);
        GgufFile g;
        peftc_err_clear();
        PeftcStatus st = gguf_open(&g, cut);
        if (len >= end) { /* only trailing padding missing: still complete */
            ck_assert_msg(st == PEFTC_OK, "prefix %zu of %zu: %s", len, n, peftc_err_msg());
            gguf_close(&g);
            continue;
        }
        ck_assert_msg(st == PEFTC_EFORMAT, "prefix %zu of %zu gave status %d", len, n, st);
        ck_assert_msg(strstr(peftc_err_msg(), cut), "prefix %zu: %s", len, peftc_err_msg());
    }
    tmp_cleanup();
}
END_TEST

/* Every byte of the header overwritten with a few values: opening may succeed or fail, but never reads
 * out of bounds (ASan) and a failure always names the file. */
START_TEST(mutated_headers_never_crash) {
    const char *full = tmp_path("small.gguf"), *bad = tmp_path("mut.gguf");
    write_small(full);
    static uint8_t buf[4096], mut[4096];
    size_t n = read_all(full, buf, sizeof buf);
    GgufFile g0;
    ck_assert_int_eq(gguf_open(&g0, full), PEFTC_OK);
    size_t header = (size_t)(g0.tensors[0].data - g0.file.data);
    gguf_close(&g0);
    const uint8_t vals[] = {0x00, 0xff, 0x7f, 0x80, 0x01};
    int failures = 0;
    for (size_t pos = 0; pos < header; pos++) {
        for (size_t v = 0; v < sizeof vals; v++) {
            if (buf[pos] == vals[v]) continue;
            memcpy(mut, buf, n);
            mut[pos] = vals[v];
            write_file(bad, mut, n);
            GgufFile g;
            PeftcStatus st = gguf_open(&g, bad);
            if (st == PEFTC_OK) {
                for (int64_t i = 0; i < g.n_tensors; i++) /* whatever opened must lie inside the map */
                    ck_assert(g.tensors[i].data + g.tensors[i].nbytes <= g.file.data + g.file.size);
                gguf_close(&g);
            } else {
                failures++;
                ck_assert_msg(strstr(peftc_err_msg(), bad), "byte %zu = 0x%02x: %s", pos, vals[v], peftc_err_msg());
            }
        }
    }
    ck_assert_int_gt(failures, (int)header); /* most mutations of a header are detected */
    tmp_cleanup();
}
END_TEST

START_TEST(malformed_headers) {
    Bytes x;
    const uint64_t ne32[] = {32}, ne8[] = {8};

    by_head(&x, 0, 0);
    memcpy(x.b, "GGUG", 4);
    expect_bytes_error(&x, PEFTC_EFORMAT, "not a GGUF file");
    for (uint32_t v = 0; v < 3; v++) {
        by_head(&x, 0, 0);
        uint32_t bad[] = {1, 4, 0x03000000};
        x.n = 4;
        by_u32(&x, bad[v]);
        by_u64(&x, 0);
        by_u64(&x, 0);
        expect_bytes_error(&x, PEFTC_EFORMAT, v < 2 ? "version" : "big-endian");
    }
    by_head(&x, 0, 1ull << 62);
    expect_bytes_error(&x, PEFTC_EFORMAT, "metadata entries");
    by_head(&x, UINT64_MAX, 0);
    expect_bytes_error(&x, PEFTC_EFORMAT, "tensors");

    by_head(&x, 0, 1); /* key length far past EOF */
    by_u64(&x, 1ull << 40);
    by_raw(&x, "abcdefgh", 8);
    expect_bytes_error(&x, PEFTC_EFORMAT, "truncated");
    by_head(&x, 0, 1); /* string value past EOF */
    by_str(&x, "k.name");
    by_u32(&x, GGUF_STRING);
    by_u64(&x, 100);
    by_raw(&x, "short", 5);
    expect_bytes_error(&x, PEFTC_EFORMAT, "k.name");
    by_head(&x, 0, 1);
    by_str(&x, "k.type");
    by_u32(&x, 13);
    by_u32(&x, 0);
    expect_bytes_error(&x, PEFTC_EFORMAT, "unknown value type 13");
    by_head(&x, 0, 1);
    by_str(&x, "k.nested");
    by_u32(&x, GGUF_ARRAY);
    by_u32(&x, GGUF_ARRAY);
    by_u64(&x, 1);
    by_u32(&x, 0);
    expect_bytes_error(&x, PEFTC_EFORMAT, "array of arrays");
    by_head(&x, 0, 1); /* array count larger than the file */
    by_str(&x, "k.arr");
    by_u32(&x, GGUF_ARRAY);
    by_u32(&x, GGUF_U64);
    by_u64(&x, 1ull << 61);
    by_u64(&x, 0);
    expect_bytes_error(&x, PEFTC_EFORMAT, "k.arr");
    by_head(&x, 0, 1); /* a billion strings claimed */
    by_str(&x, "k.strs");
    by_u32(&x, GGUF_ARRAY);
    by_u32(&x, GGUF_STRING);
    by_u64(&x, 1000000000);
    by_u64(&x, 0);
    expect_bytes_error(&x, PEFTC_EFORMAT, "k.strs");
    by_head(&x, 0, 2);
    for (int i = 0; i < 2; i++) {
        by_str(&x, "k.dup");
        by_u32(&x, GGUF_U8);
        by_raw(&x, "\1", 1);
    }
    expect_bytes_error(&x, PEFTC_EFORMAT, "k.dup");
    for (int i = 0; i < 2; i++) { /* alignment: wrong type, not a power of two */
        by_head(&x, 0, 1);
        by_str(&x, "general.alignment");
        by_u32(&x, i ? GGUF_U32 : GGUF_U64);
        if (i) by_u32(&x, 48);
        else by_u64(&x, 32);
        expect_bytes_error(&x, PEFTC_EFORMAT, "general.alignment");
    }

    /* tensor infos */
    by_head(&x, 1, 0);
    by_tensor(&x, "t.dims", 5, (const uint64_t[]){1, 1, 1, 1, 1}, 0, 0);
    by_pad(&x, 32, 32);
    expect_bytes_error(&x, PEFTC_EFORMAT, "t.dims");
    by_head(&x, 1, 0);
    by_tensor(&x, "t.type", 1, ne32, 4, 0);
    by_pad(&x, 32, 32);
    expect_bytes_error(&x, PEFTC_EFORMAT, "unknown ggml type 4");
    by_head(&x, 1, 0);
    by_tensor(&x, "t.type", 1, ne32, 1000, 0);
    by_pad(&x, 32, 32);
    expect_bytes_error(&x, PEFTC_EFORMAT, "t.type");
    by_head(&x, 1, 0);
    by_tensor(&x, "t.unaligned", 1, ne8, GGML_F32, 4);
    by_pad(&x, 32, 64);
    expect_bytes_error(&x, PEFTC_EFORMAT, "t.unaligned");
    by_head(&x, 1, 0);
    by_tensor(&x, "t.far", 1, ne8, GGML_F32, 1ull << 40);
    by_pad(&x, 32, 64);
    expect_bytes_error(&x, PEFTC_EFORMAT, "t.far");
    by_head(&x, 1, 0);
    by_tensor(&x, "t.past", 1, ne8, GGML_F32, 32); /* 32 bytes at 32 in a 32-byte data section */
    by_pad(&x, 32, 32);
    expect_bytes_error(&x, PEFTC_EFORMAT, "t.past");
    by_head(&x, 1, 0);
    by_tensor(&x, "t.huge", 4, (const uint64_t[]){1ull << 20, 1ull << 20, 1ull << 20, 1ull << 20}, GGML_F32, 0);
    by_pad(&x, 32, 32);
    expect_bytes_error(&x, PEFTC_EFORMAT, "t.huge");
    by_head(&x, 1, 0);
    by_tensor(&x, "t.neg", 2, (const uint64_t[]){8, UINT64_MAX}, GGML_F32, 0);
    by_pad(&x, 32, 32);
    expect_bytes_error(&x, PEFTC_EFORMAT, "t.neg");
    by_head(&x, 1, 0);
    by_tensor(&x, "t.block", 1, (const uint64_t[]){31}, GGML_Q8_0, 0);
    by_pad(&x, 32, 64);
    expect_bytes_error(&x, PEFTC_EFORMAT, "t.block");
    by_head(&x, 2, 0);
    by_tensor(&x, "t.same", 1, ne8, GGML_F32, 0);
    by_tensor(&x, "t.same", 1, ne8, GGML_F32, 32);
    by_pad(&x, 32, 64);
    expect_bytes_error(&x, PEFTC_EFORMAT, "t.same");
    by_head(&x, 2, 0);
    by_tensor(&x, "t.a", 1, (const uint64_t[]){16}, GGML_F32, 0);
    by_tensor(&x, "t.b", 1, ne8, GGML_F32, 32);
    by_pad(&x, 32, 96);
    expect_bytes_error(&x, PEFTC_EFORMAT, "overlap");
    by_head(&x, 1, 0);
    by_tensor(&x, "t.name\0hidden", 1, ne8, GGML_F32, 0); /* by_str stops at the NUL: fine */
    by_pad(&x, 32, 32);
    const char *p = tmp_path("ok.gguf");
    write_file(p, x.b, x.n);
    GgufFile g;
    ck_assert_int_eq(gguf_open(&g, p), PEFTC_OK); /* the valid baseline of the cases above */
    ck_assert_ptr_nonnull(gguf_tensor(&g, "t.name"));
    gguf_close(&g);

    write_file(p, "", 0);
    expect_open_error(p, PEFTC_EFORMAT, "truncated");
    expect_open_error(tmp_dir, PEFTC_EIO, "regular file");
    expect_open_error("/nonexistent/peftc/model.gguf", PEFTC_EIO, "cannot open");
    tmp_cleanup();
}
END_TEST

int main(void) {
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("gguf");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, metadata_round_trip);
    tcase_add_test(tc, reads_python_written_metadata);
    tcase_add_test(tc, copy_every_key_type);
    tcase_add_test(tc, deferred_tensors);
    tcase_add_test(tc, truncated_files);
    tcase_add_test(tc, mutated_headers_never_crash);
    tcase_add_test(tc, malformed_headers);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
