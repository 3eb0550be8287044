/* The model against Hugging Face's own LLaMA (transformers' Flax implementation, run by
 * tests/fixtures/gen_hf_llama.py): logits, the summed loss with ignored targets, and the gradient of
 * every weight, for a tied and an untied model with grouped-query attention. Finite differences
 * prove the backward matches our forward; this proves the forward means what HF's does (RoPE
 * rotate-half, GQA head mapping, RMSNorm, SwiGLU, head tying). Built in double precision; the
 * tolerance allows for the two float32 steps HF keeps (RoPE angles, RMSNorm variance). */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/method.h"
#include "core/models/llama/llama.h"
#include "tests/fixture.h"
#include "tests/method_testutil.h"
#include "tests/testutil.h"

#ifndef PEFTC_REAL_DOUBLE
#error "grad_hf_llama must be built against the double-precision library"
#endif

#define TOL 1e-5

static void check_case(const char *name) {
    Fixture fx = fixture_load(name);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(fx.meta, "config");
    LlamaConfig cfg = {.vocab = (int)fixture_num(c, "vocab"), .hidden = (int)fixture_num(c, "hidden"),
                       .intermediate = (int)fixture_num(c, "intermediate"), .layers = (int)fixture_num(c, "layers"),
                       .heads = (int)fixture_num(c, "heads"), .kv_heads = (int)fixture_num(c, "kv_heads"),
                       .rope_theta = fixture_num(c, "rope_theta"), .rms_eps = fixture_num(c, "rms_eps"),
                       .tie_embeddings = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "tie_embeddings"))};
    int B = (int)fixture_num(fx.meta, "B"), T = (int)fixture_num(fx.meta, "T"), BT = B * T;
    LlamaModel m;
    Arena a;
    MethodConfig mc = tu_method("full");
    ck_assert_int_eq(llama_create(&m, backend_cpu(), &cfg, 1, 0.02), PEFTC_OK);
    arena_init(&a, backend_cpu());
    ck_assert_int_eq(method_attach(&m.base, &a, &mc), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(&a), PEFTC_OK);
    ck_assert_int_eq(method_init(&m.base, &a, &mc, 1), PEFTC_OK);
    ck_assert_int_eq(llama_reserve(&m, B, T), PEFTC_OK);
    /* Every base tensor comes from the fixture, by its HF name. */
    for (int i = 0; i < m.base.n_refs; i++) {
        const ParamRef *r = &m.base.refs[i];
        size_t n = (size_t)shape_numel(&r->shape);
        const double *src = fixture_tensor(&fx, r->name, r->shape);
        for (size_t j = 0; j < n; j++) (*r->data)[j] = (real_t)src[j];
    }
    int32_t *tok = malloc((size_t)BT * sizeof *tok), *tgt = malloc((size_t)BT * sizeof *tgt);
    fixture_ints(cJSON_GetObjectItemCaseSensitive(fx.meta, "tokens"), tok, BT);
    fixture_ints(cJSON_GetObjectItemCaseSensitive(fx.meta, "targets"), tgt, BT);

    ck_assert_int_eq(llama_forward(&m, tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    Shape logits = {3, {B, T, cfg.vocab}};
    double e = fixture_rel_err(m.acts.logits, fixture_tensor(&fx, "logits", logits), (size_t)BT * cfg.vocab);
    printf("  %s: logits %.2e", name, e);
    ck_assert_msg(e < TOL, "%s: logits differ from HF by %.3g relative", name, e);

    double loss;
    int64_t nv;
    a.be->zero(a.be, a.grads, a.numel);
    ck_assert_int_eq(llama_forward(&m, tok, tgt, NULL, NULL, NULL, 0, B, T, &loss, &nv), PEFTC_OK);
    llama_backward(&m, tok, tgt, NULL, 1);
    ck_assert_int_eq(nv, (int64_t)fixture_num(fx.meta, "n_valid"));
    e = fabs(loss - fixture_num(fx.meta, "loss_sum")) / fabs(fixture_num(fx.meta, "loss_sum"));
    printf(", loss %.2e", e);
    ck_assert_msg(e < TOL, "%s: summed loss %.12g, HF %.12g", name, loss, fixture_num(fx.meta, "loss_sum"));

    double worst = 0;
    for (int i = 0; i < a.n_entries; i++) {
        const ArenaEntry *en = &a.entries[i];
        char gname[ARENA_NAME_MAX + 8];
        snprintf(gname, sizeof gname, "grad.%s", en->name);
        e = fixture_rel_err(arena_grad(&a, i), fixture_tensor(&fx, gname, en->shape), en->numel);
        ck_assert_msg(e < TOL, "%s: gradient of %s differs from HF by %.3g relative", name, en->name, e);
        worst = fmax(worst, e);
    }
    printf(", %d gradients, worst %.2e\n", a.n_entries, worst);
    free(tok);
    free(tgt);
    llama_free(&m);
    arena_free(&a);
    fixture_free(&fx);
}

START_TEST(tied_gqa_model_matches_hf) { check_case("hf_llama_tied"); }
END_TEST

START_TEST(untied_gqa_model_matches_hf) { check_case("hf_llama_untied"); }
END_TEST

int main(void) {
    Suite *s = suite_create("grad_hf_llama");
    TCase *tc = tcase_create("hf_reference");
    tcase_add_test(tc, tied_gqa_model_matches_hf);
    tcase_add_test(tc, untied_gqa_model_matches_hf);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
