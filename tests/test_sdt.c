/* SDT's pieces (adapters/sdt.h): the kept counts of the paper's configurations, the selection on a
 * hand-made delta (ties to the lower index), x_proj's indices, the selection file and its refusal of
 * another shape, and the model's A_log delta: with zero values it computes the base model, and the
 * gradient it hands its values is transformers' A_log gradient at those entries. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/sdt.h"
#include "tests/mamba_parity.h"
#include "tests/testutil.h"

START_TEST(kept_counts_of_the_paper) {
    /* METHODS.md: 15 of 1536 channels (130m), 41 of 4096 (1.4b); 4, 2, 1 of 16 states */
    ck_assert_int_eq(sdt_kept(0.99, 1536), 15);
    ck_assert_int_eq(sdt_kept(0.99, 4096), 41);
    ck_assert_int_eq(sdt_kept(0.75, 16), 4);
    ck_assert_int_eq(sdt_kept(0.9, 16), 2);
    ck_assert_int_eq(sdt_kept(0.95, 16), 1);
}
END_TEST

START_TEST(selection_by_hand) {
    enum { D = 5, N = 4 };
    /* channel scores (sum of squares): 1, 9+16 = 25, 0, 25 (tie with 1), 4 */
    const float delta[D * N] = {1, 0, 0, 0, 0, 3, -4, 0, 0, 0, 0, 0, -4, 0, 0, 3, 0, 2, 0, 0};
    int32_t ch[2];
    int64_t a[4];
    ck_assert_int_eq(sdt_select(delta, D, N, 2, 2, ch, a), PEFTC_OK);
    ck_assert(ch[0] == 1 && ch[1] == 3);
    /* channel 1: states 2 (16) and 1 (9); channel 3: states 0 (16) and 3 (9); ascending flat */
    ck_assert(a[0] == 1 * N + 1 && a[1] == 1 * N + 2 && a[2] == 3 * N + 0 && a[3] == 3 * N + 3);
    int64_t x[2 * 2 * 3];
    sdt_xproj_flat(ch, 2, 1, 3, D, x); /* R 1, N 3: rows 1..6 (B then C) at columns 1 and 3 */
    for (int r = 0; r < 6; r++) ck_assert(x[2 * r] == (r + 1) * D + 1 && x[2 * r + 1] == (r + 1) * D + 3);
    float bad[D * N] = {0};
    bad[7] = NAN;
    ck_assert_int_eq(sdt_select(bad, D, N, 2, 2, ch, a), PEFTC_EINVAL);
}
END_TEST

START_TEST(mask_file_round_trip) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_sdt_%d.safetensors", (int)getpid());
    const int32_t ch[4] = {3, 7, 0, 9};
    const int64_t a[4] = {3 * 8 + 1, 7 * 8 + 5, 0 * 8 + 2, 9 * 8 + 7};
    ck_assert_int_eq(sdt_save_masks(path, 2, 2, 1, ch, a), PEFTC_OK);
    int32_t ch2[4];
    int64_t a2[4];
    ck_assert_int_eq(sdt_load_masks(path, 2, 2, 1, ch2, a2), PEFTC_OK);
    ck_assert(!memcmp(ch, ch2, sizeof ch) && !memcmp(a, a2, sizeof a));
    ck_assert_int_eq(sdt_load_masks(path, 2, 3, 1, ch2, a2), PEFTC_EFORMAT); /* other sdt.f_ch */
    ck_assert_msg(strstr(peftc_err_msg(), "sdt_channels") && strstr(peftc_err_msg(), path), "%s", peftc_err_msg());
    ck_assert_int_eq(sdt_load_masks(path, 3, 2, 1, ch2, a2), PEFTC_EFORMAT); /* a third layer */
    unlink(path);
}
END_TEST

/* A delta on layer 1's A_log at a few entries, values 0: the logits are the base model's bit for bit,
 * and d(loss_mean)/d(values) is transformers' A_log gradient there. */
START_TEST(A_delta_gradient_is_A_logs) {
    Fixture fx = fixture_load("hf_tiny_mamba_parity");
    MambaModel *m = mp_load();
    int B, T;
    int32_t *tok, *tgt;
    mp_batch(&fx, &B, &T, &tok, &tgt);
    int BT = B * T, V = m->cfg.vocab;
    int D = m->cfg.inner, N = m->cfg.state;
    const int64_t flat[5] = {0, 5, 3 * N + 2, 17 * N + 7, (int64_t)D * N - 1};
    TensorDelta d;
    ck_assert_int_eq(csr_from_flat(&d.pat, m->base.be, D, N, flat, 5, "delta"), PEFTC_OK);
    real_t values[5] = {0}, dvalues[5] = {0};
    d.values = values;
    d.dvalues = dvalues;
    ck_assert_int_eq(mamba_set_A_delta(m, 1, &d), PEFTC_OK);
    ck_assert_int_eq(mamba_reserve(m, B, T), PEFTC_OK);
    ck_assert_int_eq(mamba_forward(m, tok, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    mp_check("logits with a zero delta",
             fixture_rel_err(m->acts.logits, fixture_tensor(&fx, "logits", (Shape){3, {B, T, V}}), (size_t)BT * V), 1e-4);
    double loss;
    int64_t nv;
    ck_assert_int_eq(mamba_forward(m, tok, tgt, NULL, 1, B, T, &loss, &nv), PEFTC_OK);
    mamba_backward(m, tok, tgt, NULL, (real_t)(1.0 / (double)nv));
    const double *g = fixture_tensor(&fx, "grad.backbone.layers.1.mixer.A_log", shape2(D, N));
    double want[5];
    for (int i = 0; i < 5; i++) want[i] = g[flat[i]];
    mp_check("delta gradient = A_log gradient at the pattern", fixture_rel_err(dvalues, want, 5), 1e-4);
    ck_assert_int_eq(mamba_set_A_delta(m, 1, NULL), PEFTC_OK);
    csr_free(&d.pat, m->base.be);
    model_free(&m->base);
    free(tok), free(tgt);
    fixture_free(&fx);
}
END_TEST

int main(void) {
    Suite *s = suite_create("sdt");
    TCase *tc = tcase_create("sdt");
    tcase_add_test(tc, kept_counts_of_the_paper);
    tcase_add_test(tc, selection_by_hand);
    tcase_add_test(tc, mask_file_round_trip);
    tcase_add_test(tc, A_delta_gradient_is_A_logs);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
