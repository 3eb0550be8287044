/* GGUF: writer/reader round trip, dequantization against hand-computed values and against llama.cpp's
 * Python package, rejection of corrupt files, and LLaMA loading (synthetic and SmolLM2). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/gguf.h"
#include "core/gguf_write.h"
#include "core/model_formats.h"
#include "core/quant.h"
#include "core/rng.h"
#include "tests/testutil.h"

#define FIXTURE PEFTC_FIXTURE_DIR "/gguf_fixture.gguf"

/* ---- temporary files: one folder per test (Check runs each test in its own process) ---- */

static char tmp_dir[64];
static char tmp_files[64][128];
static int n_tmp_files;

static const char *tmp_path(const char *name) {
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/test_gguf_XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
    }
    ck_assert_int_lt(n_tmp_files, 64);
    char *p = tmp_files[n_tmp_files++];
    snprintf(p, sizeof tmp_files[0], "%s/%s", tmp_dir, name);
    return p;
}

static void tmp_cleanup(void) {
    for (int i = 0; i < n_tmp_files; i++) unlink(tmp_files[i]);
    if (tmp_dir[0]) rmdir(tmp_dir);
    tmp_dir[0] = 0;
    n_tmp_files = 0;
}

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

static int close_rel(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b) + 1e-30; }

/* ======================= 1. metadata and tensors round trip ======================= */

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

/* ======================= 2. dequantization ======================= */

static void put_f16(uint8_t *p, float v) {
    uint16_t h = f32_to_f16(v);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* Blocks built from chosen d, m and quants; expected values from the format's formula. */
START_TEST(dequant_hand_built_blocks) {
    const float d = 0.375f, m = -1.5f; /* exact in f16 */
    int q[32];
    for (int j = 0; j < 32; j++) q[j] = (j * 5 + 3) % 16;
    uint8_t b40[18], b41[20], b80[34], b50[22], b51[24];
    put_f16(b40, d);
    put_f16(b41, d);
    put_f16(b41 + 2, m);
    for (int j = 0; j < 16; j++) b40[2 + j] = b41[4 + j] = (uint8_t)(q[j] | q[j + 16] << 4);
    put_f16(b80, d);
    for (int j = 0; j < 32; j++) b80[2 + j] = (uint8_t)(int8_t)(j * 8 - 128);
    /* Q5: fifth bit of element j in bit j of qh; element j's quant is q[j] + 16 * (j % 3 == 0) */
    uint32_t qh = 0;
    for (int j = 0; j < 32; j++) qh |= (uint32_t)(j % 3 == 0) << j;
    put_f16(b50, d);
    put_f16(b51, d);
    put_f16(b51 + 2, m);
    for (int i = 0; i < 4; i++) b50[2 + i] = b51[4 + i] = (uint8_t)(qh >> (8 * i));
    for (int j = 0; j < 16; j++) b50[6 + j] = b51[8 + j] = (uint8_t)(q[j] | q[j + 16] << 4);
    real_t y[32];
    ggml_dequantize(GGML_Q4_0, b40, y, 32);
    for (int j = 0; j < 32; j++) ck_assert_double_eq((double)y[j], (q[j] - 8) * 0.375);
    ggml_dequantize(GGML_Q4_1, b41, y, 32);
    for (int j = 0; j < 32; j++) ck_assert_double_eq((double)y[j], q[j] * 0.375 - 1.5);
    ggml_dequantize(GGML_Q8_0, b80, y, 32);
    for (int j = 0; j < 32; j++) ck_assert_double_eq((double)y[j], (j * 8 - 128) * 0.375);
    ggml_dequantize(GGML_Q5_0, b50, y, 32);
    for (int j = 0; j < 32; j++) ck_assert_double_eq((double)y[j], (q[j] + 16 * (j % 3 == 0) - 16) * 0.375);
    ggml_dequantize(GGML_Q5_1, b51, y, 32);
    for (int j = 0; j < 32; j++) ck_assert_double_eq((double)y[j], (q[j] + 16 * (j % 3 == 0)) * 0.375 - 1.5);
    /* two blocks in a row: the second one is read from the right place */
    uint8_t two[36];
    memcpy(two, b40, 18);
    memcpy(two + 18, b40, 18);
    put_f16(two + 18, -2.0f);
    real_t y2[64];
    ggml_dequantize(GGML_Q4_0, two, y2, 64);
    ck_assert_double_eq((double)y2[32 + 5], (q[5] - 8) * -2.0);
    /* sizes */
    ck_assert_uint_eq(ggml_row_bytes(GGML_Q4_1, 576), 18 * 20);
    ck_assert_uint_eq(ggml_row_bytes(GGML_Q6_K, 512), 2 * 210);
    ck_assert_uint_eq(ggml_block_bytes(GGML_Q4_K), 144);
    ck_assert_int_eq(ggml_block_elems(GGML_Q4_K), 256);
    ck_assert_int_eq(ggml_type_supported(GGML_Q3_K), 0);
    ck_assert_int_eq(ggml_type_supported(GGML_Q6_K), 1);
    ck_assert_int_eq(ggml_block_elems((GgmlType)4), 0); /* removed from ggml: unknown */
    ck_assert_str_eq(ggml_type_name(GGML_BF16), "BF16");
}
END_TEST

static float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

START_TEST(half_conversions) {
    /* every half survives the round trip (counted, not asserted one by one: 2^16 asserts are slow) */
    int bad = 0;
    uint32_t first_bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h), fb = bf16_to_f32((uint16_t)h);
        int ok = isnan(f) ? isnan(f16_to_f32(f32_to_f16(f))) : f32_to_f16(f) == h;
        ok &= isnan(fb) ? isnan(bf16_to_f32(f32_to_bf16(fb))) : f32_to_bf16(fb) == h;
        if (!ok && !bad++) first_bad = h;
    }
    ck_assert_msg(bad == 0, "%d halves do not round-trip, first 0x%04x", bad, first_bad);
    ck_assert(f16_to_f32(0x3c00) == 1.0f && f16_to_f32(0xc000) == -2.0f && f16_to_f32(0x0001) == ldexpf(1, -24));
    ck_assert(f16_to_f32(0x7bff) == 65504.0f && isinf(f16_to_f32(0x7c00)));
    ck_assert_uint_eq(f32_to_f16(1.0f + ldexpf(1, -11)), 0x3c00);     /* tie -> even */
    ck_assert_uint_eq(f32_to_f16(1.0f + 3 * ldexpf(1, -11)), 0x3c02); /* tie -> even (up) */
    ck_assert_uint_eq(f32_to_f16(1.0f + ldexpf(1, -11) + ldexpf(1, -20)), 0x3c01);
    ck_assert_uint_eq(f32_to_f16(65519.0f), 0x7bff);
    ck_assert_uint_eq(f32_to_f16(65520.0f), 0x7c00);
    ck_assert_uint_eq(f32_to_f16(-1e9f), 0xfc00);
    ck_assert_uint_eq(f32_to_f16(ldexpf(1, -25)), 0x0000);            /* tie -> even (zero) */
    ck_assert_uint_eq(f32_to_f16(ldexpf(1.0001f, -25)), 0x0001);
    ck_assert_uint_eq(f32_to_f16(ldexpf(3, -25)), 0x0002);             /* 1.5 ulp tie -> 2 */
    ck_assert_uint_eq(f32_to_f16(ldexpf(1023.5f, -24)), 0x0400);      /* rounds up into the normals */
    ck_assert_uint_eq(f32_to_f16(-0.0f), 0x8000);
    ck_assert_uint_eq(f32_to_f16(1e-30f), 0x0000);
    ck_assert((f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (f32_to_f16(NAN) & 0x3ff));
    ck_assert_uint_eq(f32_to_bf16(bits_to_f32(0x3f808000)), 0x3f80); /* tie -> even */
    ck_assert_uint_eq(f32_to_bf16(bits_to_f32(0x3f818000)), 0x3f82);
    ck_assert_uint_eq(f32_to_bf16(bits_to_f32(0x3f808001)), 0x3f81);
    ck_assert(isnan(bf16_to_f32(f32_to_bf16(bits_to_f32(0x7f800001))))); /* NaN with low payload stays NaN */
}
END_TEST

/* Each type against gguf.quants.dequantize (fixture written by tests/fixtures/gen_gguf_fixture.py). */
START_TEST(dequant_matches_gguf_python) {
    static const char *names[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16"};
    GgufFile g;
    ck_assert_msg(gguf_open(&g, FIXTURE) == PEFTC_OK, "%s", peftc_err_msg());
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char rn[32], dn[32];
        snprintf(rn, sizeof rn, "raw.%s", names[k]);
        snprintf(dn, sizeof dn, "deq.%s", names[k]);
        const GgufTensor *raw = gguf_tensor(&g, rn), *deq = gguf_tensor(&g, dn);
        ck_assert_msg(raw && deq, "fixture lacks %s", rn);
        ck_assert_str_eq(ggml_type_name(raw->type), names[k]);
        ck_assert(ggml_type_supported(raw->type));
        int64_t n = raw->ne[0] * raw->ne[1];
        ck_assert_int_eq(n, deq->ne[0] * deq->ne[1]);
        ck_assert_uint_eq(ggml_row_bytes(raw->type, raw->ne[0]) * (size_t)raw->ne[1], raw->nbytes);
        real_t *y = malloc((size_t)n * sizeof *y);
        ggml_dequantize(raw->type, raw->data, y, n);
        int nonzero = 0;
        int64_t bad = -1;
        for (int64_t i = 0; i < n; i++) {
            float want;
            memcpy(&want, deq->data + 4 * i, 4);
            nonzero += want != 0;
            if (bad < 0 && !(close_rel((double)y[i], want, 1e-6) || (isinf(want) && y[i] == want))) bad = i;
        }
        if (bad >= 0) {
            float want;
            memcpy(&want, deq->data + 4 * bad, 4);
            ck_abort_msg("%s[%lld]: %.9g, gguf-py %.9g", names[k], (long long)bad, (double)y[bad], (double)want);
        }
        ck_assert_int_gt(nonzero, n / 2);
        free(y);
    }
    gguf_close(&g);
}
END_TEST

/* ======================= 3. corrupt files ======================= */

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

/* ======================= 4. LLaMA as GGUF ======================= */

typedef struct {
    const char *arch;      /* general.architecture, "llama" when NULL */
    const char *skip;      /* GGUF tensor left out */
    const char *swap;      /* GGUF tensor written with its two dimensions swapped */
    const char *iq4;       /* GGUF tensor written as IQ4_NL (a type that cannot be dequantized) */
    const char *skip_key;  /* metadata key left out */
    int vocab_from_tokens; /* no llama.vocab_size: the vocabulary is the token list's length */
    int rope_freqs;        /* add rope_freqs.weight */
    int f16_mlp;           /* gate/up/down stored as F16 */
    int rope_dim;          /* llama.rope.dimension_count, head_dim when 0 */
    int no_permute;        /* store Q/K in HF order (what a naive converter would do) */
} LlamaGgufOpts;

/* llama.cpp's names, written out independently of the loader's table. */
static void gguf_name(const char *hf, char *out, size_t n) {
    static const char *const map[][2] = {
        {"input_layernorm.weight", "attn_norm.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},   {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},   {"self_attn.o_proj.weight", "attn_output.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"},       {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.bias", "attn_v.bias"},       {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},        {"mlp.down_proj.weight", "ffn_down.weight"}};
    if (!strcmp(hf, "model.embed_tokens.weight")) snprintf(out, n, "token_embd.weight");
    else if (!strcmp(hf, "model.norm.weight")) snprintf(out, n, "output_norm.weight");
    else if (!strcmp(hf, "lm_head.weight")) snprintf(out, n, "output.weight");
    else {
        int layer;
        ck_assert_int_eq(sscanf(hf, "model.layers.%d.", &layer), 1);
        const char *rest = strchr(hf + strlen("model.layers."), '.') + 1;
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (!strcmp(rest, map[i][0])) {
                snprintf(out, n, "blk.%d.%s", layer, map[i][1]);
                return;
            }
        ck_abort_msg("no GGUF name for %s", hf);
    }
}

/* convert_hf_to_gguf.py: w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols) */
static void llama_cpp_permute(float *dst, const float *src, int n_head, int hd, int cols) {
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < hd / 2; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + ((size_t)h * hd + i * 2 + j) * cols, src + ((size_t)h * hd + j * (hd / 2) + i) * cols,
                       (size_t)cols * sizeof *dst);
}

static void write_meta(GgufWriter *w, const LlamaConfig *c, const LlamaGgufOpts *o) {
    struct { const char *key; uint32_t v; } u[] = {
        {"llama.block_count", (uint32_t)c->layers}, {"llama.embedding_length", (uint32_t)c->hidden},
        {"llama.feed_forward_length", (uint32_t)c->intermediate}, {"llama.attention.head_count", (uint32_t)c->heads},
        {"llama.attention.head_count_kv", (uint32_t)c->kv_heads}, {"llama.context_length", 4096},
        {"llama.attention.key_length", (uint32_t)c->head_dim},
        {"llama.rope.dimension_count", (uint32_t)(o->rope_dim ? o->rope_dim : c->head_dim)},
        {"llama.vocab_size", (uint32_t)c->vocab}};
    ck_assert_int_eq(gguf_writer_str(w, "general.architecture", o->arch ? o->arch : "llama"), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_str(w, "general.name", "tiny test llama"), PEFTC_OK);
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        if (o->skip_key && !strcmp(o->skip_key, u[i].key)) continue;
        if (o->vocab_from_tokens && !strcmp(u[i].key, "llama.vocab_size")) continue;
        ck_assert_int_eq(gguf_writer_u32(w, u[i].key, u[i].v), PEFTC_OK);
    }
    ck_assert_int_eq(gguf_writer_f32(w, "llama.rope.freq_base", (float)c->rope_theta), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_f32(w, "llama.attention.layer_norm_rms_epsilon", (float)c->rms_eps), PEFTC_OK);
    if (o->vocab_from_tokens) {
        const char **toks = malloc((size_t)c->vocab * sizeof *toks);
        for (int i = 0; i < c->vocab; i++) toks[i] = "t";
        ck_assert_int_eq(gguf_writer_str_array(w, "tokenizer.ggml.tokens", toks, (uint64_t)c->vocab), PEFTC_OK);
        free(toks);
    }
}

static void add_ref_tensor(GgufWriter *w, const LlamaModel *m, const LlamaParamRef *r, const LlamaGgufOpts *o) {
    char name[96];
    gguf_name(r->name, name, sizeof name);
    if (o->skip && !strcmp(o->skip, name)) return;
    int nd = r->shape.ndim;
    int64_t rows = nd == 2 ? r->shape.dim[0] : 1, cols = r->shape.dim[nd - 1];
    int64_t ne[2] = {cols, rows};
    if (o->swap && !strcmp(o->swap, name)) {
        ne[0] = rows;
        ne[1] = cols;
    }
    size_t n = (size_t)(rows * cols);
    float *v = malloc(n * sizeof *v), *perm = malloc(n * sizeof *perm);
    for (size_t i = 0; i < n; i++) v[i] = (float)(*r->data)[i];
    int heads = strstr(name, "attn_q.") ? m->cfg.heads : strstr(name, "attn_k.") ? m->cfg.kv_heads : 0;
    if (heads && !o->no_permute) {
        /* a bias is a column of one-element rows */
        llama_cpp_permute(perm, v, heads, m->cfg.head_dim, nd == 2 ? (int)cols : 1);
        ck_assert_msg(memcmp(perm, v, n * sizeof *v) != 0, "permutation of %s is the identity", name);
        memcpy(v, perm, n * sizeof *v);
    }
    if (o->iq4 && !strcmp(o->iq4, name)) {
        uint8_t *q = calloc((size_t)(rows * (cols / 32) * 18), 1);
        ck_assert_int_eq(gguf_writer_add_raw(w, name, (GgmlType)20, nd, ne, q, (size_t)(rows * (cols / 32) * 18)),
                         PEFTC_OK);
        free(q);
    } else if (o->f16_mlp && strstr(name, "ffn_") && nd == 2) {
        real_t *rv = malloc(n * sizeof *rv);
        for (size_t i = 0; i < n; i++) rv[i] = (real_t)v[i];
        ck_assert_int_eq(gguf_writer_add_real(w, name, GGML_F16, nd, ne, rv), PEFTC_OK);
        free(rv);
    } else {
        ck_assert_int_eq(gguf_writer_add_f32(w, name, nd, ne, v), PEFTC_OK);
    }
    free(v);
    free(perm);
}

static void write_llama_gguf(const LlamaModel *m, const char *path, const LlamaGgufOpts *o) {
    GgufWriter *w = gguf_writer_new();
    write_meta(w, &m->cfg, o);
    for (int i = 0; i < m->n_refs; i++) add_ref_tensor(w, m, &m->refs[i], o);
    if (o->rope_freqs) {
        float f[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        ck_assert_int_eq(gguf_writer_add_f32(w, "rope_freqs.weight", 1, (int64_t[]){8}, f), PEFTC_OK);
    }
    float extra[4] = {0};
    ck_assert_int_eq(gguf_writer_add_f32(w, "some.unknown.tensor", 1, (int64_t[]){4}, extra), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_write(w, path), PEFTC_OK);
    gguf_writer_free(w);
}

static LlamaConfig tiny_cfg(int tie, int bias) {
    /* head_dim 12 with hidden 32: key_length must be honoured, and rows of Q (48) differ from C */
    return (LlamaConfig){.hidden = 32, .intermediate = 40, .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 12,
                         .vocab = 50, .rope_theta = 500000, .rms_eps = 1e-6, .tie_embeddings = tie, .qkv_bias = bias};
}

/* Every base tensor of b equals a's (rounded through f16 for the MLP when f16_mlp). */
static void expect_same_weights(const LlamaModel *a, const LlamaModel *b, int f16_mlp) {
    ck_assert_int_eq(a->n_refs, b->n_refs);
    for (int i = 0; i < a->n_refs; i++) {
        const LlamaParamRef *ra = &a->refs[i], *rb = &b->refs[i];
        ck_assert_str_eq(ra->name, rb->name);
        ck_assert(shape_equal(&ra->shape, &rb->shape));
        int f16 = f16_mlp && strstr(ra->name, ".mlp.");
        for (int64_t k = 0; k < shape_numel(&ra->shape); k++) {
            real_t want = (*ra->data)[k];
            if (f16) want = (real_t)f16_to_f32(f32_to_f16((float)want));
            else want = (real_t)(float)want;
            if ((*rb->data)[k] != want)
                ck_abort_msg("%s[%lld]: loaded %.9g, expected %.9g", ra->name, (long long)k, (double)(*rb->data)[k],
                             (double)want);
        }
    }
}

static void check_roundtrip(int tie, int bias, const LlamaGgufOpts *o) {
    LlamaConfig cfg = tiny_cfg(tie, bias);
    LlamaModel src, got;
    ck_assert_int_eq(llama_create(&src, backend_cpu(), &cfg, 11, 0.5), PEFTC_OK);
    if (bias) /* llama_create zeroes biases; give them values so their permutation is checked */
        for (int i = 0; i < src.n_refs; i++)
            if (strstr(src.refs[i].name, ".bias"))
                tu_fill_uniform(*src.refs[i].data, (size_t)shape_numel(&src.refs[i].shape), (uint64_t)i, -1, 1);
    const char *path = tmp_path("tiny.gguf");
    write_llama_gguf(&src, path, o);

    GgufFile g;
    LlamaConfig rc;
    ModelInfo info;
    ck_assert_int_eq(gguf_open(&g, path), PEFTC_OK);
    ck_assert_msg(model_gguf_config(&g, &rc, &info) == PEFTC_OK, "%s", peftc_err_msg());
    gguf_close(&g);
    ck_assert(rc.hidden == 32 && rc.intermediate == 40 && rc.layers == 2 && rc.heads == 4 && rc.kv_heads == 2);
    ck_assert(rc.head_dim == 12 && rc.vocab == 50 && rc.tie_embeddings == tie && rc.qkv_bias == bias);
    ck_assert(rc.rope_theta == 500000 && rc.rms_eps == (double)1e-6f);
    ck_assert_str_eq(info.name, "tiny test llama");
    ck_assert_str_eq(info.arch, "llama");
    ck_assert_str_eq(info.path, path);
    ck_assert(info.is_gguf == 1 && info.context_length == 4096);

    ModelInfo li;
    ck_assert_msg(model_gguf_load(&got, backend_cpu(), path, &li) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert(li.content_hash == info.content_hash);
    ck_assert(got.cfg.tie_embeddings == tie && (tie || (got.lm_head && got.lm_head != got.wte)));
    expect_same_weights(&src, &got, o->f16_mlp);
    llama_free(&got);
    llama_free(&src);
    tmp_cleanup();
}

START_TEST(tiny_llama_tied) {
    LlamaGgufOpts o = {0};
    check_roundtrip(1, 0, &o);
}
END_TEST

START_TEST(tiny_llama_untied_bias_f16) {
    LlamaGgufOpts o = {.f16_mlp = 1, .vocab_from_tokens = 1};
    check_roundtrip(0, 1, &o);
}
END_TEST

/* Not undoing the permutation would give other weights: the round trip above is not vacuous, and a
 * file whose Q/K were not permuted loads as something else. */
START_TEST(permutation_matters) {
    LlamaConfig cfg = tiny_cfg(1, 0);
    LlamaModel src, got;
    ck_assert_int_eq(llama_create(&src, backend_cpu(), &cfg, 3, 0.5), PEFTC_OK);
    const char *path = tmp_path("plain.gguf");
    LlamaGgufOpts o = {.no_permute = 1};
    write_llama_gguf(&src, path, &o);
    ck_assert_int_eq(model_gguf_load(&got, backend_cpu(), path, NULL), PEFTC_OK);
    size_t nq = (size_t)cfg.heads * cfg.head_dim * cfg.hidden;
    ck_assert(memcmp(got.layers[0].q.W, src.layers[0].q.W, nq * sizeof(real_t)) != 0);
    ck_assert(memcmp(got.layers[0].v.W, src.layers[0].v.W, (nq / 2) * sizeof(real_t)) == 0);
    /* row 1 of the file (head 0, pair 0, second element) is HF row hd/2 */
    ck_assert(memcmp(got.layers[0].q.W + (size_t)(cfg.head_dim / 2) * cfg.hidden, src.layers[0].q.W + cfg.hidden,
                     (size_t)cfg.hidden * sizeof(real_t)) == 0);
    llama_free(&got);
    llama_free(&src);
    tmp_cleanup();
}
END_TEST

START_TEST(content_hash_follows_the_weights) {
    LlamaConfig cfg = tiny_cfg(1, 0);
    LlamaModel a, b;
    ck_assert_int_eq(llama_create(&a, backend_cpu(), &cfg, 1, 0.5), PEFTC_OK);
    ck_assert_int_eq(llama_create(&b, backend_cpu(), &cfg, 1, 0.5), PEFTC_OK);
    b.layers[1].down.W[7] += 1; /* one weight differs */
    LlamaGgufOpts o = {0};
    const char *pa = tmp_path("a.gguf"), *pa2 = tmp_path("a_copy.gguf"), *pb = tmp_path("b.gguf");
    write_llama_gguf(&a, pa, &o);
    write_llama_gguf(&a, pa2, &o);
    write_llama_gguf(&b, pb, &o);
    uint64_t h[3];
    const char *paths[3] = {pa, pa2, pb};
    for (int i = 0; i < 3; i++) {
        GgufFile g;
        LlamaConfig c;
        ModelInfo info;
        ck_assert_int_eq(gguf_open(&g, paths[i]), PEFTC_OK);
        ck_assert_int_eq(model_gguf_config(&g, &c, &info), PEFTC_OK);
        h[i] = info.content_hash;
        gguf_close(&g);
    }
    ck_assert(h[0] == h[1] && h[0] != h[2]);
    llama_free(&a);
    llama_free(&b);
    tmp_cleanup();
}
END_TEST

/* Loading fails with EFORMAT, leaves m empty, and the message names the file and `what`. */
static void expect_load_error(const LlamaGgufOpts *o, int tie, const char *what) {
    LlamaConfig cfg = tiny_cfg(tie, 0);
    LlamaModel src, got;
    ck_assert_int_eq(llama_create(&src, backend_cpu(), &cfg, 5, 0.5), PEFTC_OK);
    const char *path = tmp_path("broken.gguf");
    write_llama_gguf(&src, path, o);
    peftc_err_clear();
    PeftcStatus st = model_gguf_load(&got, backend_cpu(), path, NULL);
    ck_assert_msg(st == PEFTC_EFORMAT, "%s: status %d (%s)", what, st, peftc_err_msg());
    ck_assert_msg(strstr(peftc_err_msg(), path), "no path in: %s", peftc_err_msg());
    ck_assert_msg(strstr(peftc_err_msg(), what), "no '%s' in: %s", what, peftc_err_msg());
    ck_assert_ptr_null(got.base_mem);
    llama_free(&src);
    unlink(path);
    n_tmp_files--;
}

START_TEST(llama_gguf_errors) {
    expect_load_error(&(LlamaGgufOpts){.arch = "gpt2"}, 1, "general.architecture is 'gpt2'");
    expect_load_error(&(LlamaGgufOpts){.skip = "blk.1.ffn_up.weight"}, 1, "blk.1.ffn_up.weight");
    expect_load_error(&(LlamaGgufOpts){.skip = "output_norm.weight"}, 0, "output_norm.weight");
    expect_load_error(&(LlamaGgufOpts){.swap = "blk.0.attn_k.weight"}, 1, "[24, 32]");
    expect_load_error(&(LlamaGgufOpts){.iq4 = "blk.0.ffn_gate.weight"}, 1, "IQ4_NL");
    expect_load_error(&(LlamaGgufOpts){.rope_freqs = 1}, 1, "rope_freqs");
    expect_load_error(&(LlamaGgufOpts){.rope_dim = 8}, 1, "llama.rope.dimension_count");
    expect_load_error(&(LlamaGgufOpts){.skip_key = "llama.block_count"}, 1, "llama.block_count");
    /* without key_length the head size is hidden / heads = 8, which the RoPE dimension (12) contradicts */
    expect_load_error(&(LlamaGgufOpts){.skip_key = "llama.attention.key_length"}, 1, "is 12, expected the head size 8");
    /* an untied file whose output.weight is missing is simply tied: not an error */
    tmp_cleanup();
}
END_TEST

/* ======================= 5. the real SmolLM2 file ======================= */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Rows `row_ids` and the sums of every stride-th row of the HF-layout matrix w (rows, cols) match the
 * fixture's smol.<name>.* values from gguf-py. */
static void expect_matrix(const GgufFile *fx, const char *name, const real_t *w, int64_t rows, int64_t cols) {
    char key[96];
    snprintf(key, sizeof key, "smol.%s.row_ids", name);
    int32_t *ids;
    uint64_t n_ids;
    uint32_t stride;
    ck_assert_msg(gguf_get_i32_array(fx, key, &ids, &n_ids) == PEFTC_OK, "fixture lacks %s: regenerate it with the "
                  "model present", key);
    snprintf(key, sizeof key, "smol.%s.rowsum_stride", name);
    ck_assert_int_eq(gguf_get_u32(fx, key, &stride), PEFTC_OK);
    snprintf(key, sizeof key, "smol.%s.rows", name);
    const GgufTensor *tr = gguf_tensor(fx, key);
    snprintf(key, sizeof key, "smol.%s.rowsum", name);
    const GgufTensor *ts = gguf_tensor(fx, key);
    ck_assert(tr && ts && tr->ne[0] == cols && tr->ne[1] == (int64_t)n_ids);
    ck_assert_int_eq(ts->ne[0], (rows + stride - 1) / stride);
    for (uint64_t k = 0; k < n_ids; k++)
        for (int64_t c = 0; c < cols; c++) {
            float want;
            memcpy(&want, tr->data + 4 * (k * (uint64_t)cols + (uint64_t)c), 4);
            real_t got = w[ids[k] * cols + c];
            if (!close_rel((double)got, want, 1e-6))
                ck_abort_msg("%s row %d col %lld: %.9g, gguf-py %.9g", name, ids[k], (long long)c, (double)got,
                             (double)want);
        }
    for (int64_t r = 0, k = 0; r < rows; r += stride, k++) {
        double sum = 0, mag = 0;
        for (int64_t c = 0; c < cols; c++) {
            sum += (double)w[r * cols + c];
            mag += fabs((double)w[r * cols + c]);
        }
        float want;
        memcpy(&want, ts->data + 4 * k, 4);
        if (!(fabs(sum - want) <= 1e-6 * mag))
            ck_abort_msg("%s row %lld sum %.9g, gguf-py %.9g", name, (long long)r, sum, (double)want);
    }
    free(ids);
}

START_TEST(smollm2_file) {
    const char *path = PEFTC_DEFAULT_MODEL;
    if (access(path, R_OK) != 0) {
        printf("test_gguf: SKIP smollm2_file: %s not present (tools/fetch-model.sh downloads it)\n", path);
        return;
    }
    GgufFile g;
    LlamaConfig c;
    ModelInfo info;
    ck_assert_msg(gguf_open(&g, path) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_int_eq(g.n_tensors, 272);
    ck_assert_msg(model_gguf_config(&g, &c, &info) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert(c.hidden == 576 && c.intermediate == 1536 && c.layers == 30 && c.heads == 9 && c.kv_heads == 3);
    ck_assert(c.head_dim == 64 && c.vocab == 49152 && c.rope_theta == 100000 && c.tie_embeddings == 1);
    ck_assert(c.qkv_bias == 0 && fabs(c.rms_eps - 1e-5) < 1e-11);
    ck_assert(info.context_length == 8192 && info.is_gguf && info.content_hash != 0);
    ck_assert_str_eq(info.name, "Smollm2 135M 8k Lc100K Mix1 Ep2");
    ck_assert(gguf_tensor(&g, "token_embd.weight")->type == GGML_Q8_0);
    ck_assert(gguf_tensor(&g, "blk.0.attn_q.weight")->type == GGML_Q4_1);
    gguf_close(&g);

    LlamaModel m;
    double t0 = now_s();
    ck_assert_msg(model_gguf_load(&m, backend_cpu(), path, NULL) == PEFTC_OK, "%s", peftc_err_msg());
    printf("test_gguf: loaded %s (%lld params) in %.2f s\n", path, (long long)llama_param_count(&m.cfg),
           now_s() - t0);
    GgufFile fx;
    ck_assert_int_eq(gguf_open(&fx, FIXTURE), PEFTC_OK);
    expect_matrix(&fx, "token_embd", m.wte, c.vocab, c.hidden);
    expect_matrix(&fx, "attn_q", m.layers[0].q.W, c.heads * c.head_dim, c.hidden);
    expect_matrix(&fx, "attn_k", m.layers[0].k.W, c.kv_heads * c.head_dim, c.hidden);
    const GgufTensor *norm = gguf_tensor(&fx, "smol.ffn_norm");
    ck_assert(norm && norm->ne[0] == c.hidden);
    int bad = 0;
    for (int i = 0; i < c.hidden; i++) {
        float want;
        memcpy(&want, norm->data + 4 * i, 4);
        bad += m.layers[0].ln2_w[i] != (real_t)want;
    }
    ck_assert_int_eq(bad, 0);
    gguf_close(&fx);
    llama_free(&m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("gguf");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, metadata_round_trip);
    tcase_add_test(tc, reads_python_written_metadata);
    tcase_add_test(tc, dequant_hand_built_blocks);
    tcase_add_test(tc, half_conversions);
    tcase_add_test(tc, dequant_matches_gguf_python);
    tcase_add_test(tc, truncated_files);
    tcase_add_test(tc, mutated_headers_never_crash);
    tcase_add_test(tc, malformed_headers);
    tcase_add_test(tc, tiny_llama_tied);
    tcase_add_test(tc, tiny_llama_untied_bias_f16);
    tcase_add_test(tc, permutation_matters);
    tcase_add_test(tc, content_hash_follows_the_weights);
    tcase_add_test(tc, llama_gguf_errors);
    tcase_add_test(tc, smollm2_file);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
