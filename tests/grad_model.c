/* Finite-difference checks, in double precision, of the whole model's loss with respect to every
 * trainable tensor: LoRA A and B (with dropout active, rsLoRA on and off) and, for full fine-tuning,
 * every base weight (embedding tied and untied, q/k/v biases). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/method.h"
#include "core/models/llama/llama.h"
#include "core/base/rng.h"
#include "tests/model_testutil.h"
#include "tests/method_testutil.h"
#include "tests/testutil.h"

#ifndef PEFTC_REAL_DOUBLE
#error "grad_model must be built against the double-precision library"
#endif

enum { B = 2, T = 6 };

typedef struct {
    LlamaModel model;
    Arena arena;
    MethodConfig mc;
    int32_t tokens[B * T], targets[B * T];
    uint64_t row_keys[B * T];
} Fixture;


static void fixture_open(Fixture *f, LlamaConfig cfg, MethodConfig mc) {
    memset(f, 0, sizeof *f);
    f->mc = mc;
    ck_assert_int_eq(llama_create(&f->model, backend_cpu(), &cfg, 11, 0.3), PEFTC_OK);
    /* Random norms and biases, so their gradients are not checked at a special point. */
    for (int i = 0; i < f->model.base.n_refs; i++) {
        const ParamRef *r = &f->model.base.refs[i];
        if (r->shape.ndim == 1) tu_fill_uniform(*r->data, (size_t)r->shape.dim[0], rng_key_str(5, r->name), 0.5, 1.5);
    }
    arena_init(&f->arena, backend_cpu());
    ck_assert_int_eq(method_attach(&f->model.base, &f->arena, &mc), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(&f->arena), PEFTC_OK);
    ck_assert_int_eq(method_init(&f->model.base, &f->arena, &mc, 3), PEFTC_OK);
    ck_assert_int_eq(llama_reserve(&f->model, B, T), PEFTC_OK);
    tu_fill_batch(f->tokens, f->targets, f->row_keys, B * T, cfg.vocab);
    /* LoRA B starts at zero, where dA vanishes: move it so both factors are checked non-trivially. */
    if (mc.desc == method_find("lora")) tu_fill_uniform(f->arena.params, f->arena.numel, 99, -0.5, 0.5);
}

static void fixture_close(Fixture *f) {
    llama_free(&f->model);
    arena_free(&f->arena);
}

/* Every arena tensor of the fixture against central differences. */
static void check_all_tensors(Fixture *f) {
    GcBatch b = {&f->model, f->tokens, f->targets, f->row_keys, B, T};
    gc_check_arena(&b, &f->arena);
}

static MethodConfig lora_method(int rslora, double dropout) {
    MethodConfig mc = tu_method("lora");
    *tu_lora(&mc) = (LoraConfig){.r = 3, .alpha = 6, .dropout = dropout, .rslora = rslora, .targets = LORA_T_ALL};
    return mc;
}

START_TEST(lora_all_linear_with_dropout) {
    Fixture f;
    fixture_open(&f, tu_tiny_config(1, 0), lora_method(0, 0.2));
    ck_assert_int_eq(f.arena.n_entries, 2 * 7 * 2);
    check_all_tensors(&f);
    fixture_close(&f);
}
END_TEST

START_TEST(lora_rslora_subset_untied_bias) {
    Fixture f;
    MethodConfig mc = lora_method(1, 0);
    tu_targets(&mc, LORA_T_Q | LORA_T_V | LORA_T_DOWN);
    fixture_open(&f, tu_tiny_config(0, 1), mc);
    ck_assert_int_eq(f.arena.n_entries, 2 * 3 * 2);
    check_all_tensors(&f);
    fixture_close(&f);
}
END_TEST

START_TEST(full_finetune_tied) {
    Fixture f;
    fixture_open(&f, tu_tiny_config(1, 0), tu_method("full"));
    ck_assert_int_eq(f.arena.n_entries, f.model.base.n_refs);
    check_all_tensors(&f);
    fixture_close(&f);
}
END_TEST

START_TEST(full_finetune_untied_bias) {
    Fixture f;
    fixture_open(&f, tu_tiny_config(0, 1), tu_method("full"));
    ck_assert_int_ge(arena_find(&f.arena, "lm_head.weight"), 0);
    ck_assert_int_ge(arena_find(&f.arena, "model.layers.1.self_attn.k_proj.bias"), 0);
    check_all_tensors(&f);
    fixture_close(&f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("grad_model");
    TCase *tc = tcase_create("finite_differences");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, lora_all_linear_with_dropout);
    tcase_add_test(tc, lora_rslora_subset_untied_bias);
    tcase_add_test(tc, full_finetune_tied);
    tcase_add_test(tc, full_finetune_untied_bias);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
