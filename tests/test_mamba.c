/* The Mamba family in the float build: transformers parity at 1e-4 (tests/mamba_parity.h), and a PEFT
 * LoRA adapter on in_proj, x_proj and dt_proj loaded through lora.init_from: logits, loss and every
 * lora_A / lora_B gradient against the adapter's meaning (W + s B A on all three; PEFT's own unmerged
 * forward drops dt_proj's, which MambaMixer reads as a raw weight: tests/fixtures/README.md); and the
 * same model in llama.cpp's GGUF layout. */
#include "adapters/lora.h"
#include "launch/session.h"
#include "tests/mamba_parity.h"
#include "tests/testutil.h"

#define TOL 1e-4

START_TEST(forward_and_gradients_match_transformers) { mp_forward_and_grads(TOL); }
END_TEST

START_TEST(generation_with_state_matches_full_forward) { mp_generation(TOL); }
END_TEST

START_TEST(peft_lora_matches_its_meaning) {
    Fixture fx = fixture_load("hf_tiny_mamba_lora");
    static RunConfig c;
    config_defaults(&c);
    ck_assert_int_eq(config_apply_override(&c, "model.path=" MAMBA_DIR), PEFTC_OK);
    snprintf(lora_settings(&c.methods)->init_from, sizeof lora_settings(&c.methods)->init_from, "%s",
             PEFTC_FIXTURE_DIR "/hf_tiny_mamba_lora");
    lora_settings(&c.methods)->lora.dropout = 0;
    ck_assert_msg(session_resolve_model(&c) == PEFTC_OK, "%s", peftc_err_msg());
    static Session s;
    ck_assert_msg(session_open_model(&s, &c) == PEFTC_OK, "%s", peftc_err_msg());
    MambaModel *m = mamba_of(s.model);
    int B, T;
    int32_t *tok, *tgt;
    mp_batch(&fx, &B, &T, &tok, &tgt);
    int BT = B * T, V = m->cfg.vocab;
    ck_assert_int_eq(mamba_reserve(m, B, T), PEFTC_OK);
    ck_assert_int_eq(mamba_forward(m, tok, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    mp_check("LoRA logits", fixture_rel_err(m->acts.logits, fixture_tensor(&fx, "logits", (Shape){3, {B, T, V}}),
                                            (size_t)BT * V), TOL);
    double loss;
    int64_t nv;
    m->base.be->zero(m->base.be, s.arena.grads, s.arena.numel);
    ck_assert_int_eq(mamba_forward(m, tok, tgt, NULL, 1, B, T, &loss, &nv), PEFTC_OK);
    mp_check("LoRA loss", fabs(loss / (double)nv - fixture_num(fx.meta, "loss_mean")) / fixture_num(fx.meta, "loss_mean"),
             TOL);
    mamba_backward(m, tok, tgt, NULL, (real_t)(1.0 / (double)nv));
    int checked = 0;
    for (int i = 0; i < s.arena.n_entries; i++) {
        const ArenaEntry *t = &s.arena.entries[i];
        char name[200];
        const char *leaf = strrchr(t->name, '.'); /* "<module>.lora_A" -> PEFT's "...<module>.lora_A.weight" */
        snprintf(name, sizeof name, "grad.base_model.model.%.*s%s.weight", (int)(leaf - t->name), t->name, leaf);
        mp_check(t->name, fixture_rel_err(s.arena.grads + t->offset, fixture_tensor(&fx, name, t->shape),
                                          (size_t)shape_numel(&t->shape)), TOL);
        checked++;
    }
    ck_assert_int_eq(checked, 12); /* A and B of 3 modules in 2 layers */
    session_close(&s);
    free(tok), free(tgt);
    fixture_free(&fx);
}
END_TEST

/* llama.cpp's GGUF layout of the same model (tests/fixtures/gen_gguf_mamba.py: names from the gguf
 * package, A stored as -exp(A_log), the conv weight squeezed): every tensor as the folder's (A_log back
 * through log(-a), to float rounding), and the same logits. */
START_TEST(gguf_loads_as_the_folder) {
    MambaModel *hf = mp_load();
    Model *g = NULL;
    ModelInfo info;
    ck_assert_msg(model_load(&g, backend_cpu(), PEFTC_FIXTURE_DIR "/hf_tiny_mamba.gguf", 0, &info) == PEFTC_OK, "%s",
                  peftc_err_msg());
    ck_assert_str_eq(g->ops->family, "mamba");
    ck_assert(info.is_gguf && !strcmp(info.arch, "mamba") && !strcmp(info.name, "hf_tiny_mamba"));
    MambaModel *gm = mamba_of(g);
    ck_assert(gm->cfg.hidden == hf->cfg.hidden && gm->cfg.inner == hf->cfg.inner && gm->cfg.state == hf->cfg.state &&
              gm->cfg.dt_rank == hf->cfg.dt_rank && gm->cfg.conv_bias && gm->cfg.tie_embeddings);
    ck_assert_int_eq(g->n_refs, hf->base.n_refs);
    for (int i = 0; i < g->n_refs; i++) {
        const ParamRef *a = &g->refs[i], *b = &hf->base.refs[i];
        size_t n = (size_t)shape_numel(&b->shape);
        double worst = 0;
        for (size_t k = 0; k < n; k++) worst = fmax(worst, fabs((double)(*a->data)[k] - (*b->data)[k]));
        ck_assert_msg(worst <= (strstr(b->name, "A_log") ? 1e-6 : 0), "%s differs by %g", b->name, worst);
    }
    int32_t tok[13] = {1, 5, 9, 33, 2, 60, 7, 7, 12, 40, 3, 8, 63};
    MambaModel *ms[2] = {hf, gm};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(mamba_reserve(ms[i], 1, 13), PEFTC_OK);
        ck_assert_int_eq(mamba_forward(ms[i], tok, NULL, NULL, 0, 1, 13, NULL, NULL), PEFTC_OK);
    }
    double e = 0;
    for (int k = 0; k < 13 * hf->cfg.vocab; k++) e = fmax(e, fabs((double)hf->acts.logits[k] - gm->acts.logits[k]));
    mp_check_err("GGUF logits against the folder's", "absolute", e, 1e-5);
    model_free(g);
    model_free(&hf->base);
}
END_TEST

int main(void) {
    Suite *s = suite_create("mamba");
    TCase *tc = tcase_create("mamba");
    tcase_add_test(tc, forward_and_gradients_match_transformers);
    tcase_add_test(tc, generation_with_state_matches_full_forward);
    tcase_add_test(tc, peft_lora_matches_its_meaning);
    tcase_add_test(tc, gguf_loads_as_the_folder);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
