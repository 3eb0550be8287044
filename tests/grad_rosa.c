/* Finite-difference checks, in double precision, of the whole model's loss with respect to the RoSA
 * tensors (LoRA A and B, and the sparse values of S) on every linear layer of a tiny random LLaMA with
 * random masks at density 0.1: RoSA with LoRA dropout, SpA (r = 0), and RoSA while gradients are being
 * collected (collection must leave every gradient as it is). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/rosa.h"
#include "core/nn/csr.h"
#include "core/models/llama/llama.h"
#include "core/base/rng.h"
#include "tests/model_testutil.h"
#include "tests/testutil.h"

#ifndef PEFTC_REAL_DOUBLE
#error "grad_rosa must be built against the double-precision library"
#endif

enum { B = 2, T = 6, R = 3 };

typedef struct {
    LlamaModel model;
    Arena arena;
    int32_t tokens[B * T], targets[B * T];
    uint64_t row_keys[B * T];
} Fixture;


/* What the integrator's method code will do: one adapter per linear, LoRA and sparse groups apart. */
static void attach(Fixture *f, const RosaConfig *rc) {
    int lora_group, sparse_group;
    ck_assert_int_eq(arena_group(&f->arena, "lora", 7e-4, 0, &lora_group), PEFTC_OK);
    ck_assert_int_eq(arena_group(&f->arena, "sparse", 2e-4, 0, &sparse_group), PEFTC_OK);
    for (int i = 0; i < llama_linear_count(&f->model); i++) {
        Linear *l = llama_linear(&f->model, i);
        Adapter *a;
        ck_assert_int_eq(rosa_create(&a, f->model.base.be, l, rc, lora_group, sparse_group), PEFTC_OK);
        l->adapter = a;
        ck_assert_int_eq(a->ops->register_params(a, &f->arena), PEFTC_OK);
    }
}

/* A random mask of rosa_nnz entries: the top-k of uniform scores keyed by the layer. */
static void set_random_mask(Adapter *a, const RosaConfig *rc, uint64_t key) {
    int64_t n = (int64_t)a->out * a->in, k = rosa_nnz(rc, a->in, a->out);
    float *score = malloc((size_t)n * sizeof *score);
    int64_t *flat = malloc((size_t)(k ? k : 1) * sizeof *flat);
    for (int64_t i = 0; i < n; i++) score[i] = (float)rng_uniform(key, (uint64_t)i);
    ck_assert_int_eq(csr_topk_flat(score, n, k, flat), PEFTC_OK);
    ck_assert_int_eq(rosa_set_mask(a, flat, k), PEFTC_OK);
    free(score);
    free(flat);
}

static void fixture_open(Fixture *f, const RosaConfig *rc) {
    memset(f, 0, sizeof *f);
    LlamaConfig tiny = tu_tiny_config(1, 0);
    ck_assert_int_eq(llama_create(&f->model, backend_cpu(), &tiny, 11, 0.3), PEFTC_OK);
    for (int i = 0; i < f->model.base.n_refs; i++) {
        const ParamRef *r = &f->model.base.refs[i];
        if (r->shape.ndim == 1) tu_fill_uniform(*r->data, (size_t)r->shape.dim[0], rng_key_str(5, r->name), 0.5, 1.5);
    }
    arena_init(&f->arena, backend_cpu());
    attach(f, rc);
    ck_assert_int_eq(arena_finalize(&f->arena), PEFTC_OK);
    for (int i = 0; i < llama_linear_count(&f->model); i++) {
        Linear *l = llama_linear(&f->model, i);
        ck_assert_int_eq(l->adapter->ops->init(l->adapter, &f->arena, l, 3), PEFTC_OK);
        if (rc->density > 0) set_random_mask(l->adapter, rc, rng_key_str(41, l->name));
    }
    ck_assert_int_eq(llama_reserve(&f->model, B, T), PEFTC_OK);
    tu_fill_batch(f->tokens, f->targets, f->row_keys, B * T, tiny.vocab);
    /* B and the values start at zero, where dA and the sparse path's influence vanish: move off it. */
    tu_fill_uniform(f->arena.params, f->arena.numel, 99, -0.5, 0.5);
}

static void fixture_close(Fixture *f) {
    for (int i = 0; i < llama_linear_count(&f->model); i++) {
        Linear *l = llama_linear(&f->model, i);
        l->adapter->ops->destroy(l->adapter);
        l->adapter = NULL;
    }
    llama_free(&f->model);
    arena_free(&f->arena);
}

static void check_all_tensors(Fixture *f) {
    GcBatch b = {&f->model, f->tokens, f->targets, f->row_keys, B, T};
    gc_check_arena(&b, &f->arena);
}

static RosaConfig cfg_of(int r, double dropout) {
    return (RosaConfig){.lora = {.r = r, .alpha = 6, .dropout = dropout, .targets = LORA_T_ALL}, .density = 0.1};
}

START_TEST(rosa_all_linear_with_dropout) {
    Fixture f;
    RosaConfig rc = cfg_of(R, 0.2);
    fixture_open(&f, &rc);
    ck_assert_int_eq(f.arena.n_entries, 3 * 7 * 2);
    check_all_tensors(&f);
    fixture_close(&f);
}
END_TEST

START_TEST(spa_all_linear) {
    Fixture f;
    RosaConfig rc = cfg_of(0, 0.2); /* the dropout of an absent LoRA branch is ignored */
    fixture_open(&f, &rc);
    ck_assert_int_eq(f.arena.n_entries, 7 * 2);
    for (int i = 0; i < f.arena.n_entries; i++) ck_assert_ptr_nonnull(strstr(f.arena.entries[i].name, ".rosa_values"));
    check_all_tensors(&f);
    fixture_close(&f);
}
END_TEST

/* Gradient collection rides along in backward without touching any gradient. It happens before a
 * mask exists, when RoSA is plain LoRA, so density 0 gives the arena exactly what trains then.
 * gc_check_arena runs one backward, so each layer holds one micro-batch afterwards; half the layers
 * share one scratch, the others allocate their own. */
START_TEST(rosa_collecting_keeps_gradients) {
    Fixture f;
    RosaConfig rc = cfg_of(R, 0.2);
    rc.density = 0;
    fixture_open(&f, &rc);
    LlamaConfig tiny = tu_tiny_config(1, 0);
    real_t *shared = backend_cpu()->alloc(backend_cpu(), (size_t)tiny.intermediate * tiny.hidden * sizeof(real_t));
    for (int i = 0; i < llama_linear_count(&f.model); i++) {
        Adapter *a = llama_linear(&f.model, i)->adapter;
        ck_assert(!rosa_has_mask(a));
        ck_assert_int_eq(rosa_collect_begin(a, i % 3 ? ROSA_ACC_MEAN_SQUARED : ROSA_ACC_MEAN, i % 2 ? NULL : shared),
                         PEFTC_OK);
    }
    check_all_tensors(&f);
    for (int i = 0; i < llama_linear_count(&f.model); i++) {
        Adapter *a = llama_linear(&f.model, i)->adapter;
        rosa_collect_end(a);
        int64_t count;
        const float *acc = rosa_accumulator(a, &count);
        ck_assert_ptr_nonnull(acc);
        ck_assert_int_eq(count, 1);
        double s = 0;
        for (int64_t j = 0; j < (int64_t)a->out * a->in; j++) s += fabs(acc[j]);
        ck_assert_msg(s > 0, "%s collected nothing", a->name);
    }
    fixture_close(&f);
    backend_cpu()->free(backend_cpu(), shared);
}
END_TEST

int main(void) {
    Suite *s = suite_create("grad_rosa");
    TCase *tc = tcase_create("finite_differences");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, rosa_all_linear_with_dropout);
    tcase_add_test(tc, spa_all_linear);
    tcase_add_test(tc, rosa_collecting_keeps_gradients);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
