/* LoRA behaviour in the shipped float build: merge equivalence, PEFT initialisation and scaling,
 * target selection and export names. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/adapter.h"
#include "core/models/llama/llama.h"
#include "adapters/method.h"
#include "core/train/optim.h"
#include "core/base/rng.h"
#include "tests/method_testutil.h"
#include "tests/testutil.h"

enum { B = 2, T = 8 };

static const LlamaConfig cfg = {.hidden = 32, .intermediate = 48, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 40,
                                .rope_theta = 10000, .rms_eps = 1e-5, .tie_embeddings = 1};

static void open_model(LlamaModel *m, Arena *a, MethodConfig *mc) {
    ck_assert_int_eq(llama_create(m, backend_cpu(), &cfg, 1, 0.1), PEFTC_OK);
    arena_init(a, backend_cpu());
    ck_assert_int_eq(method_attach(&m->base, a, mc), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(a), PEFTC_OK);
    ck_assert_int_eq(method_init(&m->base, a, mc, 5), PEFTC_OK);
    ck_assert_int_eq(llama_reserve(m, B, T), PEFTC_OK);
}

static MethodConfig lora_mc(unsigned targets) {
    MethodConfig mc = tu_method("lora");
    *tu_lora(&mc) = (LoraConfig){.r = 4, .alpha = 8, .dropout = 0.1};
    tu_targets(&mc, targets);
    return mc;
}

START_TEST(merge_gives_same_logits) {
    LlamaModel m;
    Arena a;
    MethodConfig mc = lora_mc(LORA_T_ALL);
    open_model(&m, &a, &mc);
    tu_fill_uniform(a.params, a.numel, 3, -0.2, 0.2); /* B != 0 so the adapters matter */
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(rng_u64(4, i) % (uint64_t)cfg.vocab);
    size_t n = (size_t)B * T * cfg.vocab;
    real_t *with = malloc(n * sizeof *with);
    ck_assert_int_eq(llama_forward(&m, tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    memcpy(with, m.acts.logits, n * sizeof *with);
    /* Base-only logits must differ, or the comparison below proves nothing. */
    Adapter *saved[14];
    for (int i = 0; i < llama_linear_count(&m); i++) {
        saved[i] = llama_linear(&m, i)->adapter;
        llama_linear(&m, i)->adapter = NULL;
    }
    ck_assert_int_eq(llama_forward(&m, tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    double diff_base = 0;
    for (size_t i = 0; i < n; i++) diff_base = fmax(diff_base, fabs((double)m.acts.logits[i] - with[i]));
    ck_assert_double_gt(diff_base, 1e-2);
    for (int i = 0; i < llama_linear_count(&m); i++) llama_linear(&m, i)->adapter = saved[i];
    method_merge(&m.base);
    method_detach(&m.base, NULL);
    ck_assert_int_eq(llama_forward(&m, tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)m.acts.logits[i] - with[i]));
        scale = fmax(scale, fabs((double)with[i]));
    }
    ck_assert_msg(worst <= 1e-5 * fmax(1, scale), "merged logits differ by %g (scale %g)", worst, scale);
    free(with);
    llama_free(&m);
    arena_free(&a);
}
END_TEST

START_TEST(init_follows_peft) {
    LlamaModel m;
    Arena a;
    MethodConfig mc = lora_mc(LORA_T_Q | LORA_T_DOWN);
    open_model(&m, &a, &mc);
    ck_assert_int_eq(a.n_entries, 2 * 2 * 2);
    int hA = arena_find(&a, "model.layers.1.mlp.down_proj.lora_A");
    int hB = arena_find(&a, "model.layers.1.mlp.down_proj.lora_B");
    ck_assert_int_ge(hA, 0);
    ck_assert_int_ge(hB, 0);
    ck_assert(shape_equal(&a.entries[hA].shape, &(Shape){2, {4, cfg.intermediate}})); /* A (r, in) */
    ck_assert(shape_equal(&a.entries[hB].shape, &(Shape){2, {cfg.hidden, 4}}));       /* B (out, r) */
    /* kaiming_uniform(a=sqrt 5) is U(-1/sqrt(in), 1/sqrt(in)): bounded, centred, spread to the bound. */
    double bound = 1 / sqrt((double)cfg.intermediate), mx = 0, mean = 0;
    const real_t *A = arena_param(&a, hA);
    size_t n = a.entries[hA].numel;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(A[i])), mean += A[i];
    ck_assert_double_le(mx, bound);
    ck_assert_double_gt(mx, 0.9 * bound);
    ck_assert_double_lt(fabs(mean / n), 0.2 * bound);
    const real_t *Bm = arena_param(&a, hB);
    for (size_t i = 0; i < a.entries[hB].numel; i++) ck_assert(Bm[i] == 0);
    ck_assert_int_lt(arena_find(&a, "model.layers.0.self_attn.k_proj.lora_A"), 0);
    llama_free(&m);
    arena_free(&a);
}
END_TEST

START_TEST(scaling_and_targets) {
    LoraConfig c = {.r = 16, .alpha = 32};
    ck_assert_double_eq_tol(lora_scale(&c), 2.0, 1e-12);
    c.rslora = 1;
    ck_assert_double_eq_tol(lora_scale(&c), 8.0, 1e-12);
    unsigned t;
    ck_assert_int_eq(lora_parse_targets("all-linear", &t), PEFTC_OK);
    ck_assert_uint_eq(t, LORA_T_ALL);
    ck_assert_int_eq(lora_parse_targets("q, v_proj,down", &t), PEFTC_OK);
    ck_assert_uint_eq(t, LORA_T_Q | LORA_T_V | LORA_T_DOWN);
    ck_assert_int_eq(lora_parse_targets("q,wq", &t), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "wq"));
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "lora.targets"));
    ck_assert_int_eq(lora_parse_targets(" , ", &t), PEFTC_EINVAL);
}
END_TEST

/* Attaching resolves lora.targets against the model's own list of layer kinds: short and HF names, a
 * PEFT-style dotted parent, all-linear; a kind the family lacks is refused naming the family's list. */
START_TEST(targets_resolve_against_the_family) {
    LlamaModel m;
    ck_assert_int_eq(llama_create(&m, backend_cpu(), &cfg, 1, 0.1), PEFTC_OK);
    unsigned t;
    ck_assert_int_eq(model_target_mask(&m.base, "q, self_attn.v_proj,down_proj", "lora.targets", &t), PEFTC_OK);
    ck_assert_uint_eq(t, LORA_T_Q | LORA_T_V | LORA_T_DOWN);
    ck_assert_int_eq(model_target_mask(&m.base, "all-linear", "lora.targets", &t), PEFTC_OK);
    ck_assert_uint_eq(t, LORA_T_ALL);
    ck_assert_int_eq(model_target_mask(&m.base, "q,in_proj", "lora.targets", &t), PEFTC_EINVAL);
    ck_assert_str_eq(peftc_err_msg(), "lora.targets: 'in_proj' is not a kind of linear layer of a llama model "
                                      "(expected q, k, v, o, gate, up, down, their HF names, or all-linear)");
    MethodConfig mc = tu_method("lora");
    tu_targets(&mc, LORA_T_K | LORA_T_UP);
    lora_settings(&mc.settings)->lora.targets = LORA_T_ALL; /* the text, not stale bits, decides */
    Arena a;
    arena_init(&a, backend_cpu());
    ck_assert_int_eq(method_attach(&m.base, &a, &mc), PEFTC_OK);
    for (int i = 0; i < m.base.n_linears; i++) {
        const Linear *l = m.base.linears[i];
        int want = !strcmp(m.base.targets[l->target].name, "k") || !strcmp(m.base.targets[l->target].name, "up");
        ck_assert_msg((l->adapter != NULL) == want, "%s", l->name);
    }
    method_detach(&m.base, &mc);
    arena_free(&a);
    llama_free(&m);
}
END_TEST

typedef struct {
    int n;
    char names[8][160];
    Shape shapes[8];
} Sink;

static PeftcStatus collect(void *user, const char *name, const Tensor *t) {
    Sink *s = user;
    ck_assert_int_eq(t->dtype, DT_REAL);
    ck_assert_int_eq(t->device, DEV_CPU);
    s->shapes[s->n] = t->shape;
    snprintf(s->names[s->n++], sizeof s->names[0], "%s", name);
    return PEFTC_OK;
}

START_TEST(export_uses_peft_names) {
    LlamaModel m;
    Arena a;
    MethodConfig mc = lora_mc(LORA_T_V);
    open_model(&m, &a, &mc);
    Sink s = {0};
    Adapter *ad = m.layers[0].v.adapter;
    ck_assert_int_eq(ad->ops->export_tensors(ad, collect, &s), PEFTC_OK);
    ck_assert_int_eq(s.n, 2);
    ck_assert_str_eq(s.names[0], "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight");
    ck_assert_str_eq(s.names[1], "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight");
    int kv = cfg.kv_heads * (cfg.hidden / cfg.heads);
    ck_assert(shape_equal(&s.shapes[0], &(Shape){2, {4, cfg.hidden}})); /* PEFT: lora_A (r, in) */
    ck_assert(shape_equal(&s.shapes[1], &(Shape){2, {kv, 4}}));         /* PEFT: lora_B (out, r) */
    llama_free(&m);
    arena_free(&a);
}
END_TEST

/* Activations sized before the adapters exist: a second llama_reserve with the same (B, T) must
 * still size the new adapters' buffers (a forward would otherwise write through NULL). */
START_TEST(adapters_attached_after_reserve_are_sized) {
    LlamaModel m;
    Arena a;
    MethodConfig mc = lora_mc(LORA_T_ALL);
    ck_assert_int_eq(llama_create(&m, backend_cpu(), &cfg, 1, 0.1), PEFTC_OK);
    ck_assert_int_eq(llama_reserve(&m, B, T), PEFTC_OK);
    real_t *acts = m.acts.resid;
    arena_init(&a, backend_cpu());
    ck_assert_int_eq(method_attach(&m.base, &a, &mc), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(&a), PEFTC_OK);
    ck_assert_int_eq(method_init(&m.base, &a, &mc, 5), PEFTC_OK);
    ck_assert_int_eq(llama_reserve(&m, B, T), PEFTC_OK);
    ck_assert_ptr_eq(m.acts.resid, acts); /* same shape: the model's buffers were kept */
    int32_t tok[B * T], tgt[B * T];
    uint64_t keys[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = i % cfg.vocab, tgt[i] = (i + 1) % cfg.vocab, keys[i] = (uint64_t)i;
    double loss;
    int64_t nv;
    ck_assert_int_eq(llama_forward(&m, tok, tgt, NULL, NULL, keys, 1, B, T, &loss, &nv), PEFTC_OK);
    llama_backward(&m, tok, tgt, keys, 1);
    ck_assert(isfinite(loss) && nv == B * T);
    ck_assert(optim_grad_norm(&a) > 0);
    llama_free(&m);
    arena_free(&a);
}
END_TEST

int main(void) {
    Suite *s = suite_create("lora");
    TCase *tc = tcase_create("lora");
    tcase_add_test(tc, merge_gives_same_logits);
    tcase_add_test(tc, init_follows_peft);
    tcase_add_test(tc, scaling_and_targets);
    tcase_add_test(tc, targets_resolve_against_the_family);
    tcase_add_test(tc, export_uses_peft_names);
    tcase_add_test(tc, adapters_attached_after_reserve_are_sized);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
