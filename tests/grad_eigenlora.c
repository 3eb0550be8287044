/* Finite-difference checks, in double precision, of the whole model's loss with respect to the
 * EigenLoRAx loadings alpha_A and alpha_B, with an adapter on every linear layer (so dx flows through
 * the adapters of later layers into the loadings of earlier ones). The components are random and not
 * orthonormal, so the check does not lean on C^T C = I. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/eigenlora.h"
#include "adapters/method.h"
#include "core/models/llama/llama.h"
#include "core/base/rng.h"
#include "tests/model_testutil.h"
#include "tests/method_testutil.h"
#include "tests/testutil.h"

#ifndef PEFTC_REAL_DOUBLE
#error "grad_eigenlora must be built against the double-precision library"
#endif

enum { B = 2, T = 6, COLS = 6 };

typedef struct {
    LlamaModel model;
    Arena arena;
    char dir[64], basis[96];
    int32_t tokens[B * T], targets[B * T];
    uint64_t row_keys[B * T];
} Fixture;


/* A basis file with random (n, COLS) components for every linear layer of m. */
static void write_basis(LlamaModel *m, const char *path) {
    StWriter *w = st_writer_new();
    ck_assert_ptr_nonnull(w);
    const char *meta[][2] = {{"format", EIGEN_FORMAT}, {"r", "3"}, {"k", "4"}, {"k_rand", "2"}, {"seed", "0"},
                             {"sources", "synthetic"}};
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++)
        ck_assert_int_eq(st_writer_meta(w, meta[i][0], meta[i][1]), PEFTC_OK);
    for (int i = 0; i < llama_linear_count(m); i++) {
        const Linear *l = llama_linear(m, i);
        for (int s = 0; s < 2; s++) {
            int n = s ? l->out : l->in;
            real_t *C = malloc((size_t)n * COLS * sizeof *C);
            char name[160];
            snprintf(name, sizeof name, "%s.eigen_%c", l->name, s ? 'B' : 'A');
            tu_fill_uniform(C, (size_t)n * COLS, rng_key_str(31, name), -0.5, 0.5);
            Shape sh = shape2(n, COLS);
            ck_assert_int_eq(st_writer_add(w, name, ST_F32, &sh, C), PEFTC_OK);
            free(C);
        }
    }
    ck_assert_int_eq(st_write(w, path), PEFTC_OK);
    st_writer_free(w);
}

/* What method.c does for LoRA, with eigenlora_create. */
static void attach(Fixture *f, const EigenConfig *c) {
    EigenBasis basis;
    ck_assert_int_eq(eigen_basis_open(&basis, f->basis), PEFTC_OK);
    arena_init(&f->arena, backend_cpu());
    int group;
    ck_assert_int_eq(arena_group(&f->arena, "eigenlora", 4e-3, 0.1, &group), PEFTC_OK);
    for (int i = 0; i < llama_linear_count(&f->model); i++) {
        Linear *l = llama_linear(&f->model, i);
        if (!(linear_target_bit(l) & c->targets)) continue;
        Adapter *ad;
        PeftcStatus st = eigenlora_create(&ad, f->model.base.be, l, &basis, c, group);
        ck_assert_msg(st == PEFTC_OK, "%s", peftc_err_msg());
        l->adapter = ad;
        ck_assert_int_eq(ad->ops->register_params(ad, &f->arena), PEFTC_OK);
    }
    eigen_basis_close(&basis);
    ck_assert_int_eq(arena_finalize(&f->arena), PEFTC_OK);
    for (int i = 0; i < llama_linear_count(&f->model); i++) {
        Linear *l = llama_linear(&f->model, i);
        if (l->adapter) ck_assert_int_eq(l->adapter->ops->init(l->adapter, &f->arena, l, 3), PEFTC_OK);
    }
}

static void fixture_open(Fixture *f, LlamaConfig cfg, const EigenConfig *c) {
    memset(f, 0, sizeof *f);
    ck_assert_int_eq(llama_create(&f->model, backend_cpu(), &cfg, 11, 0.3), PEFTC_OK);
    for (int i = 0; i < f->model.base.n_refs; i++) {
        const ParamRef *r = &f->model.base.refs[i];
        if (r->shape.ndim == 1) tu_fill_uniform(*r->data, (size_t)r->shape.dim[0], rng_key_str(5, r->name), 0.5, 1.5);
    }
    snprintf(f->dir, sizeof f->dir, "/tmp/grad_eigen_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    snprintf(f->basis, sizeof f->basis, "%s/basis.safetensors", f->dir);
    write_basis(&f->model, f->basis);
    attach(f, c);
    ck_assert_int_eq(llama_reserve(&f->model, B, T), PEFTC_OK);
    tu_fill_batch(f->tokens, f->targets, f->row_keys, B * T, cfg.vocab);
}

static void fixture_close(Fixture *f) {
    method_detach(&f->model.base, NULL);
    llama_free(&f->model);
    arena_free(&f->arena);
    unlink(f->basis);
    rmdir(f->dir);
}

/* Every arena tensor of the fixture against central differences. */
static void check_all_tensors(Fixture *f) {
    GcBatch b = {&f->model, f->tokens, f->targets, f->row_keys, B, T};
    gc_check_arena(&b, &f->arena);
}

START_TEST(eigenlora_all_linear_tied) {
    Fixture f;
    EigenConfig c = {.r = 3, .K = COLS, .targets = LORA_T_ALL};
    fixture_open(&f, tu_tiny_config(1, 0), &c);
    ck_assert_int_eq(f.arena.n_entries, 2 * 7 * 2);
    check_all_tensors(&f);
    fixture_close(&f);
}
END_TEST

/* K below the basis's width: the adapter uses the leading columns only. */
START_TEST(eigenlora_subset_leading_columns_untied_bias) {
    Fixture f;
    EigenConfig c = {.r = 2, .K = 4, .targets = LORA_T_Q | LORA_T_V | LORA_T_DOWN};
    fixture_open(&f, tu_tiny_config(0, 1), &c);
    ck_assert_int_eq(f.arena.n_entries, 2 * 3 * 2);
    ck_assert_int_eq(f.arena.entries[0].numel, 4 * 2);
    check_all_tensors(&f);
    fixture_close(&f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("grad_eigenlora");
    TCase *tc = tcase_create("finite_differences");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, eigenlora_all_linear_tied);
    tcase_add_test(tc, eigenlora_subset_leading_columns_untied_bias);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
