/* Data parallelism changes nothing but speed: an N-rank run must give the same loss curve, held-out
 * losses and final trainable values as a 1-rank run with N-times accumulation on the same global
 * batches, and as a 1-rank run with one N-times larger micro-batch (where every sample sits at another
 * row than in the distributed run, so randomness tied to batch layout would show). LoRA with dropout,
 * and full fine-tuning. Run under mpiexec with 1, 2, 3 ranks; rank 0 repeats the run alone on
 * MPI_COMM_SELF as the reference. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/gmt.h"
#include "adapters/lora.h"
#include "launch/session.h"

enum { STEPS = 6 };

static Comm *world;

typedef struct {
    double loss[STEPS], gnorm[STEPS], eval[STEPS + 2];
    int n_eval;
    real_t *params;
    size_t numel;
} Curve;

static void on_step(void *u, const StepStats *s) {
    ((Curve *)u)->loss[s->step - 1] = s->loss;
    ((Curve *)u)->gnorm[s->step - 1] = s->grad_norm; /* sees every dropout mask directly */
}
static void on_eval(void *u, const EvalStats *s) {
    Curve *c = u;
    c->eval[c->n_eval++] = s->loss;
}

static RunConfig small_config(const char *method, int micro_batch, int accum) {
    RunConfig c;
    config_defaults(&c);
    char kv[32];
    snprintf(kv, sizeof kv, "method.name=%s", method);
    ck_assert_int_eq(config_apply_override(&c, kv), PEFTC_OK);
    ck_assert_int_eq(config_apply_override(&c, "model.path="), PEFTC_OK);
    ck_assert_int_eq(config_apply_override(&c, "data.task=reverse"), PEFTC_OK);
    c.model.hidden = 32;
    c.model.intermediate = 48;
    c.model.layers = 2;
    c.model.vocab = 16;
    c.train.steps = STEPS;
    c.train.micro_batch = micro_batch;
    c.train.accum = accum;
    c.train.seq_len = 20;
    c.train.eval_every = 3;
    c.train.eval_batches = 12 / micro_batch; /* the same 12 held-out sequences in every layout */
    c.train.sched.warmup = 2;
    c.lr = 1e-2;
    lora_settings(&c.methods)->lora.dropout = 0.1; /* masks follow the sample, so they must not break the equivalence */
    ck_assert_int_eq(config_finish(&c), PEFTC_OK);
    return c;
}

static void train(Curve *out, const RunConfig *cfg, Comm *comm) {
    Session s;
    memset(out, 0, sizeof *out);
    ck_assert_msg(session_open(&s, cfg, comm) == PEFTC_OK, "%s", peftc_err_msg());
    TrainerHooks hooks = {out, on_step, on_eval};
    ck_assert_msg(trainer_run(&s.trainer, &hooks) == PEFTC_OK, "%s", peftc_err_msg());
    out->numel = s.arena.numel;
    out->params = malloc(out->numel * sizeof(real_t));
    memcpy(out->params, s.arena.params, out->numel * sizeof(real_t));
    session_close(&s);
}

static double rel(double a, double b) { return fabs(a - b) / fmax(1e-12, fmax(fabs(a), fabs(b))); }

/* Final values are compared as vectors, ||dist - ref|| / ||ref|| <= l2_tol, with a looser bound on
 * any single entry (max |d| / max |ref| <= max_tol): where an entry's true gradient is near zero,
 * AdamW's m / sqrt(v) turns float summation-order noise into a visible step for that entry alone
 * (measured: 3.9e-7 in L2 but 1.1e-5 on one entry for 3 ranks). Losses and gradient norms stay at
 * float precision, and they are what catch layout-dependent randomness (keying dropout by row moves
 * the step-2 loss by 1e-3). */
static void compare(const Curve *dist, const Curve *ref, const char *what, double l2_tol, double max_tol) {
    for (int i = 0; i < STEPS; i++)
        ck_assert_msg(rel(dist->loss[i], ref->loss[i]) < 1e-5, "%s step %d: loss %.9g distributed, %.9g reference", what,
                      i + 1, dist->loss[i], ref->loss[i]);
    for (int i = 0; i < STEPS; i++)
        ck_assert_msg(rel(dist->gnorm[i], ref->gnorm[i]) < 1e-5, "%s step %d: grad norm %.9g distributed, %.9g reference",
                      what, i + 1, dist->gnorm[i], ref->gnorm[i]);
    ck_assert_int_eq(ref->n_eval, dist->n_eval);
    for (int i = 0; i < ref->n_eval; i++)
        ck_assert_msg(rel(dist->eval[i], ref->eval[i]) < 1e-5, "%s eval %d: %.9g vs %.9g", what, i, dist->eval[i],
                      ref->eval[i]);
    double diff = 0, scale = 0, d2 = 0, r2 = 0;
    for (size_t i = 0; i < ref->numel; i++) {
        double d = (double)dist->params[i] - ref->params[i];
        diff = fmax(diff, fabs(d));
        scale = fmax(scale, fabs((double)ref->params[i]));
        d2 += d * d;
        r2 += (double)ref->params[i] * ref->params[i];
    }
    double l2 = sqrt(d2 / fmax(r2, 1e-300));
    ck_assert_msg(l2 <= l2_tol, "%s: final trainable values differ by %.3g relative (L2)", what, l2);
    ck_assert_msg(diff <= max_tol * scale, "%s: a final trainable value differs by %g (largest value %g)", what, diff,
                  scale);
}

/* must_learn: the loss must fall within the few steps (IntTune's r*r values per layer are too few to
 * show it on noisy 6-step curves; equivalence is what is tested). */
static void check_equivalent_as(const char *method, int must_learn) {
    int n = comm_size(world);
    Curve dist, ref;
    RunConfig cfg = small_config(method, 2, 1);
    train(&dist, &cfg, world);
    ck_assert_msg(!must_learn || dist.loss[STEPS - 1] < dist.loss[0], "%s: loss did not fall (%g -> %g)", method,
                  dist.loss[0], dist.loss[STEPS - 1]);
    if (comm_rank(world) == 0) {
        Comm *self;
        ck_assert_int_eq(comm_init_self(&self), PEFTC_OK);
        RunConfig accum = small_config(method, 2, n), wide = small_config(method, 2 * n, 1);
        train(&ref, &accum, self);
        compare(&dist, &ref, "1 rank, accum N", 1e-5, 1e-4);
        free(ref.params);
        train(&ref, &wide, self);
        compare(&dist, &ref, "1 rank, micro-batch x N", 5e-5, 1e-3);
        free(ref.params);
        comm_free(self);
    }
    free(dist.params);
}

static void check_equivalent(const char *method) { check_equivalent_as(method, 1); }

START_TEST(lora_n_ranks_equal_one_rank_with_accumulation) { check_equivalent("lora"); }
END_TEST

START_TEST(full_n_ranks_equal_one_rank_with_accumulation) { check_equivalent("full"); }
END_TEST

/* The three-matrix family: SLoRA (random init), NLoRA (from W's blocks), IntTune (N alone). */
START_TEST(slora_family_n_ranks_equal_one_rank_with_accumulation) {
    check_equivalent("slora");
    check_equivalent("nlora");
    check_equivalent_as("inttune", 0);
}
END_TEST

/* GMT's masks come from the reduced gradient, so the layouts agree as full fine-tuning does (an entry
 * sitting exactly at a tensor's cut-off could flip with summation order; none does here). */
START_TEST(gmt_n_ranks_equal_one_rank_with_accumulation) { check_equivalent("gmt"); }
END_TEST

/* Every rank holds the same GMT mask after each step. */
START_TEST(gmt_mask_identical_on_every_rank) {
    static Session s;
    RunConfig cfg = small_config("gmt", 2, 1);
    ck_assert_int_eq(session_open(&s, &cfg, world), PEFTC_OK);
    size_t n = s.arena.numel;
    uint8_t *mine = malloc(n), *root = malloc(n);
    for (int step = 0; step < 3; step++) {
        StepStats st;
        ck_assert_int_eq(trainer_step(&s.trainer, &st), PEFTC_OK);
        memcpy(mine, gmt_keep_mask(s.method.state), n);
        memcpy(root, mine, n);
        ck_assert_int_eq(comm_bcast(world, root, n, 0), PEFTC_OK);
        ck_assert_msg(memcmp(mine, root, n) == 0, "step %d: rank %d's GMT mask differs from rank 0's", step + 1,
                      comm_rank(world));
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) kept += mine[i];
        ck_assert_msg(kept < n, "step %d: the mask keeps every entry", step + 1);
    }
    free(mine);
    free(root);
    session_close(&s);
}
END_TEST

START_TEST(same_seed_is_bit_identical) {
    Curve a, b;
    RunConfig cfg = small_config("lora", 2, 1);
    train(&a, &cfg, world);
    train(&b, &cfg, world);
    ck_assert_mem_eq(a.loss, b.loss, sizeof a.loss);
    ck_assert_mem_eq(a.params, b.params, a.numel * sizeof(real_t));
    cfg.train.seed++;
    free(b.params);
    train(&b, &cfg, world);
    ck_assert_msg(memcmp(a.params, b.params, a.numel * sizeof(real_t)) != 0, "a different seed changed nothing");
    free(a.params);
    free(b.params);
}
END_TEST

/* A dataset that fails on the last rank once training reaches step 2, standing in for a corrupt shard
 * that only one rank reads. */
typedef struct {
    Dataset base, *inner;
    const Trainer *trainer;
    int fail_here;
} FailingData;

static int64_t failing_size(const Dataset *ds, Split split) {
    const FailingData *f = ds->impl;
    return f->inner->size(f->inner, split);
}

static PeftcStatus failing_get(const Dataset *ds, Split split, int64_t id, int32_t *tok, int32_t *tgt, int T) {
    const FailingData *f = ds->impl;
    if (f->fail_here && split == SPLIT_TRAIN && f->trainer->step == 2)
        return PEFTC_ERR(PEFTC_EFORMAT, "test shard: example %lld is corrupt", (long long)id);
    return f->inner->get(f->inner, split, id, tok, tgt, T);
}

START_TEST(a_failing_rank_stops_every_rank) {
    Session s;
    RunConfig cfg = small_config("lora", 2, 1);
    ck_assert_int_eq(session_open(&s, &cfg, world), PEFTC_OK);
    int last = comm_rank(world) == comm_size(world) - 1;
    FailingData f = {.inner = s.data, .trainer = &s.trainer, .fail_here = last};
    f.base = *s.data;
    f.base.size = failing_size;
    f.base.get = failing_get;
    f.base.impl = &f;
    s.trainer.data = &f.base;
    StepStats st;
    PeftcStatus r1 = trainer_step(&s.trainer, &st), r2 = trainer_step(&s.trainer, &st);
    PeftcStatus r3 = trainer_step(&s.trainer, &st); /* every rank must leave here, none may hang */
    session_close(&s);
    ck_assert_int_eq(r1, PEFTC_OK);
    ck_assert_int_eq(r2, PEFTC_OK);
    if (last) {
        ck_assert_int_eq(r3, PEFTC_EFORMAT);
        ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "corrupt"));
    } else {
        ck_assert_int_eq(r3, PEFTC_ECOMM);
        ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "other rank"));
    }
}
END_TEST

int main(int argc, char **argv) {
    if (comm_init(&world, &argc, &argv) != PEFTC_OK) {
        fprintf(stderr, "mpi_train: %s\n", peftc_err_msg());
        return EXIT_FAILURE;
    }
    backend_cpu_set_threads(1);
    Suite *s = suite_create("mpi_train");
    TCase *tc = tcase_create("data_parallel");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, lora_n_ranks_equal_one_rank_with_accumulation);
    tcase_add_test(tc, full_n_ranks_equal_one_rank_with_accumulation);
    tcase_add_test(tc, gmt_n_ranks_equal_one_rank_with_accumulation);
    tcase_add_test(tc, slora_family_n_ranks_equal_one_rank_with_accumulation);
    tcase_add_test(tc, gmt_mask_identical_on_every_rank);
    tcase_add_test(tc, same_seed_is_bit_identical);
    tcase_add_test(tc, a_failing_rank_stops_every_rank);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, comm_rank(world) == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    /* Every rank must learn whether any failed, or a failing rank 0 would pass on the others. */
    PeftcStatus st = comm_agree(world, failed ? PEFTC_EINVAL : PEFTC_OK);
    comm_free(world);
    return st == PEFTC_OK ? EXIT_SUCCESS : EXIT_FAILURE;
}
