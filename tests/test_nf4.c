/* NF4 (core/base/nf4.h, nf4_blocks.h) against bitsandbytes: its tables, its codes bit for bit and
 * its dequantized values exactly (tests/fixtures/nf4_ref.*, made by gen_nf4.py from bitsandbytes'
 * quantize_4bit / dequantize_4bit), the tie rules of both levels, the error of a round trip within what
 * the two code tables allow, and the backend's dequantize op on sizes that are not whole blocks. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend/backend.h"
#include "core/base/nf4.h"
#include "core/base/rng.h"
#include "core/nn/qweight.h"
#include "tests/fixture.h"
#include "tests/testutil.h"

static const char *const CASES[] = {"normal", "odd", "ties", "zeros", "outlier", "tiny"};
enum { N_CASES = sizeof CASES / sizeof CASES[0] };

/* The same float, sign of zero included (the fixture's floats widen to double exactly). */
static int same_f32(float got, double want) {
    float w = (float)want;
    return memcmp(&got, &w, sizeof got) == 0;
}

static const double *case_tensor(const Fixture *fx, const char *c, const char *part, int64_t n) {
    char name[64];
    snprintf(name, sizeof name, "%s.%s", c, part);
    return fixture_tensor(fx, name, shape1(n));
}

static float buf_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

START_TEST(tables_match_bitsandbytes) {
    Fixture fx = fixture_load("nf4_ref");
    const double *code = fixture_tensor(&fx, "nf4_code", shape1(16));
    const double *dyn = fixture_tensor(&fx, "dynamic_map", shape1(256));
    for (int c = 0; c < 16; c++)
        ck_assert_msg(same_f32(nf4_code(c), code[c]), "NF4 code %d: %.9g vs %.9g", c, (double)nf4_code(c), code[c]);
    for (int q = 0; q < 256; q++)
        ck_assert_msg(same_f32(nf4_dynamic(q), dyn[q]), "dynamic map %d: %.9g vs %.9g", q, (double)nf4_dynamic(q),
                      dyn[q]);
    fixture_free(&fx);
}
END_TEST

/* dQuantizeNF4 compares x > midpoint: a value on a midpoint takes the lower code, one float above it the
 * upper. */
START_TEST(code_ties_take_the_lower) {
    for (int k = 0; k < 15; k++) {
        float mid = (nf4_code(k) + nf4_code(k + 1)) * 0.5f;
        ck_assert_int_eq(nf4_nearest_code(mid), k);
        ck_assert_int_eq(nf4_nearest_code(nextafterf(mid, 2.0f)), k + 1);
        ck_assert_int_eq(nf4_nearest_code(nextafterf(mid, -2.0f)), k);
    }
    ck_assert_int_eq(nf4_nearest_code(0.03979014977812767f), 7); /* a constant of dQuantizeNF4 */
    ck_assert_int_eq(nf4_nearest_code(-1.5f), 0);
    ck_assert_int_eq(nf4_nearest_code(1.5f), 15);
    ck_assert_int_eq(nf4_nearest_code(0.0f), 7);
}
END_TEST

/* The 8-bit level against a port of the CUDA kernel's binary search: every midpoint of the dynamic map
 * (a tie: the even index) and the floats on each side of it. */
START_TEST(dynamic_ties_follow_the_cuda_search) {
    Fixture fx = fixture_load("nf4_ref");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fx.meta, "tensors"),
                                                      "dyn_probe");
    int64_t n = (int64_t)cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(t, "shape"), 0)->valuedouble;
    const double *x = fixture_tensor(&fx, "dyn_probe", shape1(n));
    const double *q = fixture_tensor(&fx, "dyn_probe_q", shape1(n));
    int odd_ties = 0;
    for (int64_t i = 0; i < n; i++) {
        int got = nf4_nearest_dynamic((float)x[i]);
        ck_assert_msg(got == (int)q[i], "dynamic map index of %.9g: %d, the CUDA search gives %d", x[i], got,
                      (int)q[i]);
        odd_ties += i < 255 && i % 2 == 1 && got == (int)i + 1;
    }
    ck_assert_int_eq(odd_ties, 127); /* every tie between an odd and an even index went to the even one */
    fixture_free(&fx);
}
END_TEST

/* Each case quantized here: codes bit for bit as bitsandbytes wrote them; the offset (the mean summed in
 * double) within an ulp of torch's float mean; the second level and every dequantized value exactly as
 * the CUDA kernel's state for that offset gives them, through the host expansion and the CPU op. */
static void check_case(const Fixture *fx, const char *c) {
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fx->meta, "cases"), c);
    int rows = (int)fixture_num(meta, "rows"), cols = (int)fixture_num(meta, "cols");
    int64_t n = (int64_t)rows * cols, nb = nf4_blocks(n), ng = nf4_blocks2(n), nc = (n + 1) / 2;
    char name[64];
    snprintf(name, sizeof name, "%s.input", c);
    const double *in = fixture_tensor(fx, name, shape2(rows, cols));
    real_t *w = malloc((size_t)n * sizeof *w), *back = malloc((size_t)n * sizeof *back); /* (n) */
    uint8_t *buf = malloc(nf4_bytes(n));
    for (int64_t i = 0; i < n; i++) w[i] = (real_t)in[i];
    ck_assert_msg(nf4_quantize(w, n, buf, c) == PEFTC_OK, "%s", peftc_err_msg());

    const double *codes = case_tensor(fx, c, "codes", nc), *qabsmax = case_tensor(fx, c, "qabsmax", nb);
    const double *absmax2 = case_tensor(fx, c, "absmax2", ng), *deq = case_tensor(fx, c, "dequant", n);
    for (int64_t j = 0; j < nc; j++)
        ck_assert_msg(buf[nf4_codes_at(n) + (size_t)j] == (int)codes[j], "%s: code byte %lld is 0x%02x, bitsandbytes "
                      "wrote 0x%02x", c, (long long)j, buf[nf4_codes_at(n) + (size_t)j], (int)codes[j]);
    ck_assert_msg(same_f32(buf_f32(buf), case_tensor(fx, c, "offset", 1)[0]), "%s: offset", c);
    float ours = buf_f32(buf), bnb = (float)case_tensor(fx, c, "offset_bnb", 1)[0];
    ck_assert_msg(ours == bnb || nextafterf(ours, bnb) == bnb, "%s: offset %.9g, torch's mean %.9g", c, (double)ours,
                  (double)bnb);
    for (int64_t g = 0; g < ng; g++)
        ck_assert_msg(same_f32(buf_f32(buf + 4 + 4 * g), absmax2[g]), "%s: absmax2[%lld]", c, (long long)g);
    for (int64_t b = 0; b < nb; b++)
        ck_assert_msg(buf[nf4_qabsmax_at(n) + (size_t)b] == (int)qabsmax[b], "%s: qabsmax[%lld] is %d, expected %d",
                      c, (long long)b, buf[nf4_qabsmax_at(n) + (size_t)b], (int)qabsmax[b]);
    nf4_dequantize_blocks(buf, n, 0, nb, back);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(same_f32((float)back[i], deq[i]), "%s: value %lld dequantizes to %.9g, expected %.9g", c,
                      (long long)i, (double)back[i], deq[i]);
    memset(back, 0xff, (size_t)n * sizeof *back);
    backend_cpu()->dequantize(backend_cpu(), back, buf, GGML_NF4, rows, cols);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(same_f32((float)back[i], deq[i]), "%s: the dequantize op's value %lld is %.9g, expected %.9g",
                      c, (long long)i, (double)back[i], deq[i]);
    free(w);
    free(back);
    free(buf);
}

START_TEST(fixture_cases_match) {
    Fixture fx = fixture_load("nf4_ref");
    for (int k = 0; k < N_CASES; k++) check_case(&fx, CASES[k]);
    fixture_free(&fx);
}
END_TEST

/* bitsandbytes' own state (its offset, absmax2 and CPU-quantized absmax bytes) put in the buffer layout
 * expands to exactly what its dequantize_4bit returned. */
START_TEST(dequantizes_the_bitsandbytes_state) {
    Fixture fx = fixture_load("nf4_ref");
    for (int k = 0; k < N_CASES; k++) {
        const char *c = CASES[k];
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fx.meta, "cases"), c);
        int64_t n = (int64_t)fixture_num(meta, "rows") * (int64_t)fixture_num(meta, "cols");
        int64_t nb = nf4_blocks(n), ng = nf4_blocks2(n), nc = (n + 1) / 2;
        uint8_t *buf = malloc(nf4_bytes(n));
        real_t *out = malloc((size_t)n * sizeof *out); /* (n) */
        float off = (float)case_tensor(&fx, c, "offset_bnb", 1)[0];
        memcpy(buf, &off, sizeof off);
        const double *a2 = case_tensor(&fx, c, "absmax2_bnb", ng), *q = case_tensor(&fx, c, "qabsmax_bnb_cpu", nb);
        const double *codes = case_tensor(&fx, c, "codes", nc), *want = case_tensor(&fx, c, "dequant_bnb", n);
        for (int64_t g = 0; g < ng; g++) {
            float v = (float)a2[g];
            memcpy(buf + 4 + 4 * g, &v, sizeof v);
        }
        for (int64_t b = 0; b < nb; b++) buf[nf4_qabsmax_at(n) + (size_t)b] = (uint8_t)q[b];
        for (int64_t j = 0; j < nc; j++) buf[nf4_codes_at(n) + (size_t)j] = (uint8_t)codes[j];
        nf4_dequantize_blocks(buf, n, 0, nb, out);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(same_f32((float)out[i], want[i]), "%s: value %lld is %.9g, bitsandbytes gives %.9g", c,
                          (long long)i, (double)out[i], want[i]);
        free(buf);
        free(out);
    }
    fixture_free(&fx);
}
END_TEST

/* Normal weights (two groups of 256 blocks, a partial last block): each value within half the widest
 * NF4 gap (-1 to -0.696) of its block's absmax s, plus how far the dequantized s may be from s (half the widest gap of
 * the dynamic map times the group's absmax2), plus rounding; a block's largest value keeps its sign and
 * takes code -1 or 1; the RMS error stays near NF4's known ~10% of the weights' RMS. */
START_TEST(round_trip_error_bounded) {
    enum { N = 20001 };
    real_t *w = malloc(N * sizeof *w), *back = malloc(N * sizeof *back); /* (N) */
    uint8_t *buf = malloc(nf4_bytes(N));
    for (int i = 0; i < N; i++) w[i] = (real_t)(0.02 * rng_normal(rng_key(5, 1), (uint64_t)i));
    ck_assert_int_eq(nf4_quantize(w, N, buf, "round trip"), PEFTC_OK);
    nf4_dequantize_blocks(buf, N, 0, nf4_blocks(N), back);
    int64_t nb = nf4_blocks(N);
    float *s = malloc((size_t)nb * sizeof *s); /* (nb) */
    double mean = 0, err2 = 0, w2 = 0;
    for (int64_t b = 0; b < nb; b++) {
        s[b] = 0;
        for (int64_t i = 64 * b; i < N && i < 64 * b + 64; i++) s[b] = fmaxf(s[b], fabsf((float)w[i]));
        mean += s[b];
    }
    float offset = (float)(mean / (double)nb);
    for (int64_t b = 0; b < nb; b++) {
        float a2 = 0;
        for (int64_t k = b / 256 * 256; k < nb && k < b / 256 * 256 + 256; k++) a2 = fmaxf(a2, fabsf(s[k] - offset));
        double bound = 0.1519037 * s[b] + 0.0070313 * a2 + 1e-6 * (s[b] + offset + a2);
        int64_t top = 64 * b;
        for (int64_t i = 64 * b; i < N && i < 64 * b + 64; i++) {
            double e = fabs((double)back[i] - (double)w[i]);
            ck_assert_msg(e <= bound, "value %lld: %.9g -> %.9g, error %.3g over the bound %.3g", (long long)i,
                          (double)w[i], (double)back[i], e, bound);
            err2 += e * e;
            w2 += (double)w[i] * w[i];
            if (fabs((double)w[i]) > fabs((double)w[top])) top = i;
        }
        float scale = nf4_block_scale(buf, N, b);
        ck_assert_msg(back[top] == (w[top] < 0 ? -scale : scale), "block %lld: its largest value %.9g came back as "
                      "%.9g, not %s its scale %.9g", (long long)b, (double)w[top], (double)back[top],
                      w[top] < 0 ? "minus" : "plus", (double)scale);
    }
    double rel = sqrt(err2 / w2);
    printf("NF4 round trip of %d normal values: RMS error %.4f of their RMS\n", N, rel);
    ck_assert_msg(rel > 0.05 && rel < 0.12, "RMS error %.4f of the weights' RMS", rel);
    free(w);
    free(back);
    free(buf);
    free(s);
}
END_TEST

/* An odd, non-block size through a QWeight and the CPU op, large enough for its threads: the same
 * values as the serial host expansion; the pad nibble of the last byte is the code of 0. */
START_TEST(dequantize_op_any_size) {
    enum { ROWS = 129, COLS = 257 };
    int64_t n = (int64_t)ROWS * COLS;
    real_t *w = malloc((size_t)n * sizeof *w), *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
    for (int64_t i = 0; i < n; i++) w[i] = (real_t)rng_normal(rng_key(6, 2), (uint64_t)i);
    QWeight q;
    ck_assert_msg(qweight_alloc(&q, backend_cpu(), GGML_NF4, ROWS, COLS, "odd") == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_uint_eq(q.nbytes, 4 + 4 * 3 + 519 + (n + 1) / 2); /* 519 blocks in 3 groups */
    ck_assert_int_eq(nf4_quantize(w, n, q.blocks, "odd"), PEFTC_OK);
    ck_assert_int_eq(q.blocks[q.nbytes - 1] & 15, 7);
    nf4_dequantize_blocks(q.blocks, n, 0, nf4_blocks(n), a);
    qweight_expand(&q, backend_cpu(), b);
    ck_assert(memcmp(a, b, (size_t)n * sizeof *a) == 0);
    qweight_free(&q, backend_cpu());
    free(w);
    free(a);
    free(b);
}
END_TEST

START_TEST(nonfinite_refused) {
    real_t w[100] = {0};
    uint8_t buf[128];
    ck_assert_uint_le(nf4_bytes(100), sizeof buf);
    w[70] = (real_t)INFINITY;
    ck_assert_int_eq(nf4_quantize(w, 100, buf, "tensor 'x'"), PEFTC_EFORMAT);
    ck_assert_msg(strstr(peftc_err_msg(), "tensor 'x': value 70 ") && strstr(peftc_err_msg(), "finite"), "%s",
                  peftc_err_msg());
    w[70] = 0;
    w[3] = (real_t)NAN;
    ck_assert_int_eq(nf4_quantize(w, 100, buf, "tensor 'x'"), PEFTC_EFORMAT);
    ck_assert_msg(strstr(peftc_err_msg(), "value 3 "), "%s", peftc_err_msg());
}
END_TEST

int main(void) {
    Suite *s = suite_create("nf4");
    TCase *tc = tcase_create("nf4");
    tcase_add_test(tc, tables_match_bitsandbytes);
    tcase_add_test(tc, code_ties_take_the_lower);
    tcase_add_test(tc, dynamic_ties_follow_the_cuda_search);
    tcase_add_test(tc, fixture_cases_match);
    tcase_add_test(tc, dequantizes_the_bitsandbytes_state);
    tcase_add_test(tc, round_trip_error_bounded);
    tcase_add_test(tc, dequantize_op_any_size);
    tcase_add_test(tc, nonfinite_refused);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
