/* Dequantization against hand-computed values and against llama.cpp's Python package, and the
 * f16/bf16 conversions. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/gguf.h"
#include "core/formats/quant.h"
#include "tests/gguf_testutil.h"
#include "tests/testutil.h"

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

int main(void) {
    Suite *s = suite_create("quant");
    TCase *tc = tcase_create("quant");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, dequant_hand_built_blocks);
    tcase_add_test(tc, half_conversions);
    tcase_add_test(tc, dequant_matches_gguf_python);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
