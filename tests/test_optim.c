/* AdamW, clipping and the learning-rate schedules against values written out from their definitions
 * (PyTorch's AdamW algorithm; HF-style warm-up then cosine / linear decay). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/train/optim.h"
#include "core/train/schedule.h"
#include "tests/testutil.h"

static void two_group_arena(Arena *a, int *h0, int *h1) {
    int g0, g1;
    arena_init(a, backend_cpu());
    ck_assert_int_eq(arena_group(a, "lora", 1e-2, 0.1, &g0), PEFTC_OK);
    ck_assert_int_eq(arena_group(a, "base", 1e-3, 0.1, &g1), PEFTC_OK);
    ck_assert_int_eq(arena_register(a, "x", shape1(3), g0, 1, h0), PEFTC_OK);
    ck_assert_int_eq(arena_register(a, "y", shape2(2, 2), g1, 0, h1), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(a), PEFTC_OK);
}

START_TEST(adamw_matches_reference) {
    Arena a;
    int h[2];
    two_group_arena(&a, &h[0], &h[1]);
    AdamWConfig c = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .grad_clip = 0};
    double p[2][4], m[2][4] = {{0}}, v[2][4] = {{0}};
    const double lr[2] = {1e-2, 1e-3}, wd[2] = {0.1, 0}; /* "y" is registered without decay */
    for (int e = 0; e < 2; e++)
        for (size_t i = 0; i < a.entries[h[e]].numel; i++) p[e][i] = arena_param(&a, h[e])[i] = (real_t)(0.5 - 0.3 * i + e);
    for (int step = 1; step <= 3; step++) {
        double f = 1.0 / step; /* any schedule factor */
        for (int e = 0; e < 2; e++)
            for (size_t i = 0; i < a.entries[h[e]].numel; i++) {
                double g = sin(1.0 + step + 3 * e + i);
                arena_grad(&a, h[e])[i] = (real_t)g;
                double l = lr[e] * f;
                p[e][i] *= 1 - l * wd[e];
                m[e][i] = 0.9 * m[e][i] + 0.1 * g;
                v[e][i] = 0.95 * v[e][i] + 0.05 * g * g;
                double mh = m[e][i] / (1 - pow(0.9, step)), vh = v[e][i] / (1 - pow(0.95, step));
                p[e][i] -= l * mh / (sqrt(vh) + 1e-8);
            }
        optim_adamw_step(&a, &c, step, f);
    }
    for (int e = 0; e < 2; e++)
        for (size_t i = 0; i < a.entries[h[e]].numel; i++)
            ck_assert_double_eq_tol(arena_param(&a, h[e])[i], p[e][i], 2e-6);
    arena_free(&a);
}
END_TEST

START_TEST(clip_scales_to_max_norm) {
    Arena a;
    int h0, h1;
    two_group_arena(&a, &h0, &h1);
    real_t g[7] = {3, 0, 0, 4, 0, 0, 0}; /* norm 5 spread over two tensors */
    for (int i = 0; i < 3; i++) arena_grad(&a, h0)[i] = g[i];
    for (int i = 0; i < 4; i++) arena_grad(&a, h1)[i] = g[3 + i];
    ck_assert_double_eq_tol(optim_grad_norm(&a), 5.0, 1e-6);
    ck_assert_double_eq_tol(optim_clip(&a, 10.0), 5.0, 1e-6); /* below the limit: untouched */
    ck_assert_double_eq_tol(optim_grad_norm(&a), 5.0, 1e-6);
    ck_assert_double_eq_tol(optim_clip(&a, 1.0), 5.0, 1e-6);
    ck_assert_double_eq_tol(optim_grad_norm(&a), 1.0, 1e-5);
    ck_assert_double_eq_tol(arena_grad(&a, h1)[0], 0.8, 1e-5);
    arena_free(&a);
}
END_TEST

START_TEST(schedules) {
    Schedule s = {.type = SCHED_COSINE, .warmup = 4, .total = 14, .min_ratio = 0.1};
    ck_assert_double_eq_tol(sched_factor(&s, 0), 0.25, 1e-12);
    ck_assert_double_eq_tol(sched_factor(&s, 3), 1.0, 1e-12);
    ck_assert_double_eq_tol(sched_factor(&s, 4), 1.0, 1e-12);   /* first decay step is the peak */
    ck_assert_double_eq_tol(sched_factor(&s, 13), 0.1, 1e-12);  /* last step reaches min_ratio */
    double mid = 0.1 + 0.9 * 0.5 * (1 + cos(acos(-1.0) * 4.0 / 9.0));
    ck_assert_double_eq_tol(sched_factor(&s, 8), mid, 1e-12);
    s.type = SCHED_LINEAR;
    ck_assert_double_eq_tol(sched_factor(&s, 8), 0.1 + 0.9 * (1 - 4.0 / 9.0), 1e-12);
    ck_assert_double_eq_tol(sched_factor(&s, 13), 0.1, 1e-12);
    s.type = SCHED_CONSTANT;
    ck_assert_double_eq_tol(sched_factor(&s, 13), 1.0, 1e-12);
    ck_assert_double_eq_tol(sched_factor(&s, 1), 0.5, 1e-12);
    ck_assert_str_eq(sched_names[SCHED_LINEAR], "linear");
}
END_TEST

START_TEST(arena_rejects_misuse) {
    Arena a;
    int g, h;
    arena_init(&a, backend_cpu());
    ck_assert_int_eq(arena_group(&a, "lora", 1, 0, &g), PEFTC_OK);
    ck_assert_int_eq(arena_register(&a, "w", shape1(5), g, 1, &h), PEFTC_OK);
    ck_assert_int_eq(arena_register(&a, "w", shape1(5), g, 1, &h), PEFTC_EINVAL);
    ck_assert_int_eq(arena_register(&a, "u", shape1(5), 7, 1, &h), PEFTC_EINVAL);
    ck_assert_int_eq(arena_register(&a, "bad", shape2(3, 0), g, 1, &h), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "'bad'"));
    ck_assert_int_eq(arena_finalize(&a), PEFTC_OK);
    ck_assert_int_eq(arena_register(&a, "z", shape1(5), g, 1, &h), PEFTC_ESTATE);
    Tensor t = arena_param_tensor(&a, 0);
    ck_assert_int_eq(t.dtype, DT_REAL);
    ck_assert_uint_eq(tensor_bytes(&t), 5 * sizeof(real_t));
    char buf[32];
    ck_assert_str_eq(shape_str(&(Shape){2, {576, 1536}}, buf, sizeof buf), "(576, 1536)");
    ck_assert_int_eq(arena_find(&a, "w"), 0);
    ck_assert_int_eq(arena_find(&a, "nope"), -1);
    arena_free(&a);
}
END_TEST

int main(void) {
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_add_test(tc, adamw_matches_reference);
    tcase_add_test(tc, clip_scales_to_max_norm);
    tcase_add_test(tc, schedules);
    tcase_add_test(tc, arena_rejects_misuse);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
