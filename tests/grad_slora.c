/* Finite-difference checks, in double precision, of the whole model's loss with respect to the
 * SLoRA / NLoRA / IntTune tensors A, N, B on every linear layer of a tiny random LLaMA: SLoRA with
 * dropout, NLoRA with the raw-block and pseudo-inverse cores at their init point, and IntTune (only
 * N trains; the frozen A and B must come through a backward untouched). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/slora.h"
#include "core/models/llama/llama.h"
#include "core/base/rng.h"
#include "tests/model_testutil.h"
#include "tests/testutil.h"

#ifndef PEFTC_REAL_DOUBLE
#error "grad_slora must be built against the double-precision library"
#endif

enum { B = 2, T = 6, R = 3 };

typedef struct {
    LlamaModel model;
    Arena arena;
    int32_t tokens[B * T], targets[B * T];
    uint64_t row_keys[B * T];
} Fixture;


/* What method.c does for LoRA, with slora_create: one adapter per targeted linear, registered. */
static void attach(Fixture *f, const SloraConfig *sc) {
    int group;
    ck_assert_int_eq(arena_group(&f->arena, "slora", 1e-3, 0, &group), PEFTC_OK);
    for (int i = 0; i < llama_linear_count(&f->model); i++) {
        Linear *l = llama_linear(&f->model, i);
        if (!(linear_target_bit(l) & sc->targets)) continue;
        Adapter *a;
        ck_assert_int_eq(slora_create(&a, f->model.base.be, l, sc, group), PEFTC_OK);
        l->adapter = a;
        ck_assert_int_eq(a->ops->register_params(a, &f->arena), PEFTC_OK);
    }
}

static void fixture_open(Fixture *f, const SloraConfig *sc) {
    memset(f, 0, sizeof *f);
    LlamaConfig tiny = tu_tiny_config(1, 0);
    ck_assert_int_eq(llama_create(&f->model, backend_cpu(), &tiny, 11, 0.3), PEFTC_OK);
    for (int i = 0; i < f->model.base.n_refs; i++) {
        const ParamRef *r = &f->model.base.refs[i];
        if (r->shape.ndim == 1) tu_fill_uniform(*r->data, (size_t)r->shape.dim[0], rng_key_str(5, r->name), 0.5, 1.5);
    }
    arena_init(&f->arena, backend_cpu());
    attach(f, sc);
    ck_assert_int_eq(arena_finalize(&f->arena), PEFTC_OK);
    for (int i = 0; i < llama_linear_count(&f->model); i++) {
        Linear *l = llama_linear(&f->model, i);
        if (l->adapter) ck_assert_int_eq(l->adapter->ops->init(l->adapter, &f->arena, l, 3), PEFTC_OK);
    }
    ck_assert_int_eq(llama_reserve(&f->model, B, T), PEFTC_OK);
    tu_fill_batch(f->tokens, f->targets, f->row_keys, B * T, tiny.vocab);
}

static void fixture_close(Fixture *f) {
    for (int i = 0; i < llama_linear_count(&f->model); i++) {
        Linear *l = llama_linear(&f->model, i);
        if (l->adapter) l->adapter->ops->destroy(l->adapter);
        l->adapter = NULL;
    }
    llama_free(&f->model);
    arena_free(&f->arena);
}

/* Every arena tensor of the fixture against central differences. */
static void check_all_tensors(Fixture *f) {
    GcBatch b = {&f->model, f->tokens, f->targets, f->row_keys, B, T};
    gc_check_arena(&b, &f->arena);
}

static SloraConfig cfg_of(SloraInit init, NloraCore core, int train_ab, double dropout) {
    return (SloraConfig){.r = R, .alpha = 6, .dropout = dropout, .init = init, .core = core, .train_ab = train_ab,
                         .targets = LORA_T_ALL};
}

START_TEST(slora_all_linear_with_dropout) {
    Fixture f;
    SloraConfig sc = cfg_of(SLORA_INIT_SLORA, NLORA_CORE_BLOCK, 1, 0.2);
    fixture_open(&f, &sc);
    ck_assert_int_eq(f.arena.n_entries, 3 * 7 * 2);
    /* B starts at zero, where dA and dN vanish: move everything off that point. */
    tu_fill_uniform(f.arena.params, f.arena.numel, 99, -0.5, 0.5);
    check_all_tensors(&f);
    fixture_close(&f);
}
END_TEST

START_TEST(slora_rslora_subset) {
    Fixture f;
    SloraConfig sc = cfg_of(SLORA_INIT_SLORA, NLORA_CORE_BLOCK, 1, 0);
    sc.rslora = 1;
    sc.targets = LORA_T_K | LORA_T_O | LORA_T_UP;
    fixture_open(&f, &sc);
    ck_assert_int_eq(f.arena.n_entries, 3 * 3 * 2);
    tu_fill_uniform(f.arena.params, f.arena.numel, 98, -0.5, 0.5);
    check_all_tensors(&f);
    fixture_close(&f);
}
END_TEST

/* NLoRA's B = W[:, :r] is nonzero, so its own init point already exercises every gradient. */
START_TEST(nlora_block_at_init) {
    Fixture f;
    SloraConfig sc = cfg_of(SLORA_INIT_NLORA, NLORA_CORE_BLOCK, 1, 0.1);
    fixture_open(&f, &sc);
    check_all_tensors(&f);
    fixture_close(&f);
}
END_TEST

START_TEST(nlora_pinv_at_init) {
    Fixture f;
    SloraConfig sc = cfg_of(SLORA_INIT_NLORA, NLORA_CORE_PINV, 1, 0);
    sc.alpha = 0.5; /* pinv makes B N A ~ W: keep the adapted layers from dwarfing the base */
    fixture_open(&f, &sc);
    check_all_tensors(&f);
    fixture_close(&f);
}
END_TEST

typedef struct {
    int n;
    real_t *copy[2 * 14];
} Snapshot;

static PeftcStatus snap(void *user, const char *name, const Tensor *t) {
    (void)name;
    Snapshot *s = user;
    size_t bytes = tensor_bytes(t);
    s->copy[s->n] = malloc(bytes);
    memcpy(s->copy[s->n++], t->data, bytes);
    return PEFTC_OK;
}

static void snapshot(Fixture *f, Snapshot *s) {
    s->n = 0;
    for (int i = 0; i < llama_linear_count(&f->model); i++) {
        Adapter *a = llama_linear(&f->model, i)->adapter;
        ck_assert_int_eq(a->ops->export_tensors(a, snap, s), PEFTC_OK);
    }
}

/* IntTune: only N is registered and gets gradients; A and B (exported as A and B N with N unchanged)
 * are bit-for-bit what they were before the backward. */
START_TEST(inttune_only_n) {
    Fixture f;
    SloraConfig sc = cfg_of(SLORA_INIT_NLORA, NLORA_CORE_BLOCK, 0, 0.2);
    fixture_open(&f, &sc);
    ck_assert_int_eq(f.arena.n_entries, 7 * 2);
    for (int i = 0; i < f.arena.n_entries; i++) {
        ck_assert_ptr_nonnull(strstr(f.arena.entries[i].name, ".slora_N"));
        ck_assert_uint_eq(f.arena.entries[i].numel, R * R);
    }
    Snapshot before, after;
    snapshot(&f, &before);
    check_all_tensors(&f);
    snapshot(&f, &after);
    ck_assert_int_eq(before.n, after.n);
    size_t sizes[2] = {(size_t)R * (size_t)tu_tiny_config(1, 0).hidden, 0};
    for (int i = 0; i < before.n; i++) {
        const Adapter *a = llama_linear(&f.model, i / 2)->adapter;
        sizes[0] = (size_t)R * a->in, sizes[1] = (size_t)a->out * R;
        ck_assert_msg(memcmp(before.copy[i], after.copy[i], sizes[i % 2] * sizeof(real_t)) == 0,
                      "%s: frozen %s changed in a backward", a->name, i % 2 ? "B" : "A");
        free(before.copy[i]);
        free(after.copy[i]);
    }
    fixture_close(&f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("grad_slora");
    TCase *tc = tcase_create("finite_differences");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, slora_all_linear_with_dropout);
    tcase_add_test(tc, slora_rslora_subset);
    tcase_add_test(tc, nlora_block_at_init);
    tcase_add_test(tc, nlora_pinv_at_init);
    tcase_add_test(tc, inttune_only_n);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
