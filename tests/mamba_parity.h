/* Mamba against transformers' MambaForCausalLM on the same folder (tests/fixtures/gen_hf_mamba.py):
 * logits, loss, every base parameter's gradient, and generation with the recurrent state, whose logits
 * at each new token are those of the full-sequence forward. Included by test_mamba.c (float, 1e-4) and
 * grad_mamba.c (double, where the fixture's float64 values are matched to MAMBA_TOL there). */
#ifndef PEFTC_TESTS_MAMBA_PARITY_H
#define PEFTC_TESTS_MAMBA_PARITY_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/models/mamba/mamba.h"
#include "core/models/model_load.h"
#include "tests/fixture.h"

#define MAMBA_DIR PEFTC_FIXTURE_DIR "/hf_tiny_mamba"

static inline MambaModel *mp_load(void) {
    Model *m = NULL;
    ModelInfo info;
    ck_assert_msg(model_load(&m, backend_cpu(), MAMBA_DIR, 0, &info) == PEFTC_OK, "%s", peftc_err_msg());
    ck_assert_str_eq(m->ops->family, "mamba");
    ck_assert_str_eq(info.arch, "mamba");
    return mamba_of(m);
}

/* Every base tensor gets a zeroed gradient buffer (host: the CPU backend), as full fine-tuning does. */
static inline real_t **mp_train_all(MambaModel *m) {
    real_t **g = calloc((size_t)m->base.n_refs, sizeof *g);
    for (int i = 0; i < m->base.n_refs; i++) {
        g[i] = calloc((size_t)shape_numel(&m->base.refs[i].shape), sizeof(real_t));
        *m->base.refs[i].grad = g[i];
    }
    return g;
}

/* The fixture's batch: B, T, and its tokens and next-token targets (B*T each, malloc'd). */
static inline void mp_batch(const Fixture *fx, int *B, int *T, int32_t **tok, int32_t **tgt) {
    *B = (int)fixture_num(fx->meta, "B");
    *T = (int)fixture_num(fx->meta, "T");
    *tok = malloc(sizeof **tok * (size_t)*B * *T);
    *tgt = malloc(sizeof **tgt * (size_t)*B * *T);
    fixture_ints(cJSON_GetObjectItemCaseSensitive(fx->meta, "tokens"), *tok, *B * *T);
    fixture_ints(cJSON_GetObjectItemCaseSensitive(fx->meta, "targets"), *tgt, *B * *T);
}

/* err, which is `kind` ("relative" or "absolute"), below tol, printed either way. */
static inline void mp_check_err(const char *what, const char *kind, double err, double tol) {
    printf("mamba parity: %-44s %s err %.2e\n", what, kind, err);
    ck_assert_msg(err < tol, "%s: %s error %.3g (tolerance %.1g)", what, kind, err, tol);
}

static inline void mp_check(const char *what, double err, double tol) { mp_check_err(what, "relative", err, tol); }

static inline void mp_forward_and_grads(double tol) {
    Fixture fx = fixture_load("hf_tiny_mamba_parity");
    MambaModel *m = mp_load();
    int B, T;
    int32_t *tok, *tgt;
    mp_batch(&fx, &B, &T, &tok, &tgt);
    int BT = B * T, V = m->cfg.vocab;
    real_t **grads = mp_train_all(m);
    ck_assert_int_eq(mamba_reserve(m, B, T), PEFTC_OK);
    ck_assert_int_eq(mamba_forward(m, tok, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    mp_check("logits", fixture_rel_err(m->acts.logits, fixture_tensor(&fx, "logits", (Shape){3, {B, T, V}}),
                                       (size_t)BT * V), tol);
    double loss;
    int64_t nv;
    ck_assert_int_eq(mamba_forward(m, tok, tgt, NULL, 1, B, T, &loss, &nv), PEFTC_OK);
    ck_assert_int_eq(nv, (int64_t)fixture_num(fx.meta, "n_valid"));
    double want = fixture_num(fx.meta, "loss_sum");
    mp_check("loss", fabs(loss - want) / want, tol);
    mamba_backward(m, tok, tgt, NULL, (real_t)(1.0 / (double)nv));
    ck_assert_int_eq(m->base.be->status(m->base.be), PEFTC_OK);
    for (int i = 0; i < m->base.n_refs; i++) {
        const ParamRef *r = &m->base.refs[i];
        char name[160];
        snprintf(name, sizeof name, "grad.%s", r->name);
        mp_check(r->name, fixture_rel_err(grads[i], fixture_tensor(&fx, name, r->shape), (size_t)shape_numel(&r->shape)),
                 tol);
        free(grads[i]);
    }
    free(grads);
    model_free(&m->base);
    free(tok), free(tgt);
    fixture_free(&fx);
}

/* Prefill of the prompt, then greedy decoding of the fixture's tokens one at a time through the state:
 * the logits at each step equal the full forward's (gen_logits), and their argmax is the token
 * transformers' generate chose. */
static inline void mp_generation(double tol) {
    Fixture fx = fixture_load("hf_tiny_mamba_parity");
    MambaModel *m = mp_load();
    int V = m->cfg.vocab, P = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(fx.meta, "gen_prompt"));
    int G = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(fx.meta, "gen_tokens"));
    int32_t prompt[16], gen[16];
    ck_assert(P <= 16 && G <= 16);
    fixture_ints(cJSON_GetObjectItemCaseSensitive(fx.meta, "gen_prompt"), prompt, P);
    fixture_ints(cJSON_GetObjectItemCaseSensitive(fx.meta, "gen_tokens"), gen, G);
    const double *want = fixture_tensor(&fx, "gen_logits", (Shape){2, {G, V}});
    GenState *g;
    ck_assert_int_eq(m->base.ops->gen_create(&m->base, 2, 64, &g), PEFTC_OK);
    real_t *logits = malloc(2 * (size_t)V * sizeof *logits);
    /* row 1 holds another prompt meanwhile: rows must not share state */
    ck_assert_int_eq(m->base.ops->gen_prefill(&m->base, g, 1, gen, 3, logits + V), PEFTC_OK);
    ck_assert_int_eq(m->base.ops->gen_prefill(&m->base, g, 0, prompt, P, logits), PEFTC_OK);
    uint8_t active[2] = {1, 0};
    for (int i = 0; i < G; i++) {
        char what[64];
        snprintf(what, sizeof what, "generation step %d logits", i);
        mp_check(what, fixture_rel_err(logits, want + (size_t)i * V, (size_t)V), tol);
        int best = 0;
        for (int v = 1; v < V; v++) best = logits[v] > logits[best] ? v : best;
        ck_assert_msg(best == gen[i], "step %d: argmax %d, transformers generated %d", i, best, gen[i]);
        int32_t next[2] = {gen[i], 0};
        if (i + 1 < G) ck_assert_int_eq(m->base.ops->gen_decode(&m->base, g, next, active, logits), PEFTC_OK);
    }
    m->base.ops->gen_free(g);
    free(logits);
    model_free(&m->base);
    fixture_free(&fx);
}

#endif
