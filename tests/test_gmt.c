/* GMT: which gradient entries survive the mask (exact counts, largest |g|, lower index on ties), the
 * two AdamW conventions against plain AdamW, mask_ratio 0 as plain full fine-tuning bit for bit, and
 * a short training of a tiny random model through the trainer's gradient hook. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/full.h"
#include "core/models/llama/llama.h"
#include "adapters/gmt.h"
#include "core/train/optim.h"
#include "datasets/synthetic.h"
#include "tests/testutil.h"

/* ---- a small arena with tie-heavy gradients ---- */

enum { N_TENSORS = 4 };
static const int64_t tensor_numel[N_TENSORS] = {20, 7, 1, 2145};

static void make_arena(Arena *a, const Backend *be) {
    int group, h;
    arena_init(a, be);
    ck_assert_int_eq(arena_group(a, "base", 1e-2, 0.1, &group), PEFTC_OK);
    ck_assert_int_eq(arena_register(a, "w", shape2(4, 5), group, 1, &h), PEFTC_OK);
    ck_assert_int_eq(arena_register(a, "norm", shape1(7), group, 0, &h), PEFTC_OK);
    ck_assert_int_eq(arena_register(a, "one", shape1(1), group, 1, &h), PEFTC_OK);
    ck_assert_int_eq(arena_register(a, "big", shape2(33, 65), group, 1, &h), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(a), PEFTC_OK);
    tu_fill_uniform(a->params, a->numel, 11, -1, 1);
}

/* Magnitudes from a few levels (some a float ulp apart, so selection must resolve the lowest bits),
 * random signs, and signed zeros: most entries tie with many others. */
static void fill_tied_grads(real_t *g, size_t n, uint64_t key) {
    const real_t levels[] = {0.0f, 0.25f, 0.5f, 1.0f, nextafterf(1.0f, 2.0f), 3.0f, 1e-30f};
    for (size_t i = 0; i < n; i++) {
        real_t mag = levels[(size_t)(rng_uniform(key, 2 * i) * 7) % 7];
        g[i] = rng_uniform(key, 2 * i + 1) < 0.5 ? -mag : mag;
    }
}

/* Reference mask by sorting: (|g| descending, index ascending), first k kept. */
static const real_t *sort_g;
static int by_rank(const void *x, const void *y) {
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    double gi = fabs((double)sort_g[i]), gj = fabs((double)sort_g[j]);
    if (gi != gj) return gi > gj ? -1 : 1;
    return i < j ? -1 : 1;
}

static void reference_keep(uint8_t *keep, const real_t *g, size_t n, size_t k) {
    size_t *idx = malloc(n * sizeof *idx);
    for (size_t i = 0; i < n; i++) idx[i] = i;
    sort_g = g;
    qsort(idx, n, sizeof *idx, by_rank);
    memset(keep, 0, n);
    for (size_t r = 0; r < k; r++) keep[idx[r]] = 1;
    free(idx);
}

/* keep(a->numel): the arena pads between tensors; gmt leaves padding marked kept (its gradient is 0). */
static void reference_keep_arena(uint8_t *keep, const Arena *a, const GmtConfig *cfg) {
    memset(keep, 1, a->numel);
    for (int e = 0; e < a->n_entries; e++) {
        const ArenaEntry *en = &a->entries[e];
        reference_keep(keep + en->offset, a->grads + en->offset, en->numel,
                       (size_t)gmt_kept(cfg, (int64_t)en->numel));
    }
}

static void copy_state(Arena *dst, const Arena *src) {
    memcpy(dst->params, src->params, src->numel * sizeof(real_t));
    memcpy(dst->m, src->m, src->numel * sizeof(real_t));
    memcpy(dst->v, src->v, src->numel * sizeof(real_t));
}

static void assert_state_equal(const Arena *x, const Arena *y, const char *what) {
    size_t bytes = x->numel * sizeof(real_t);
    ck_assert_msg(memcmp(x->params, y->params, bytes) == 0, "%s: parameters differ", what);
    ck_assert_msg(memcmp(x->m, y->m, bytes) == 0, "%s: m differs", what);
    ck_assert_msg(memcmp(x->v, y->v, bytes) == 0, "%s: v differs", what);
}

static const AdamWConfig adamw = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .grad_clip = 0};

/* One optimizer step as the trainer runs it, without clipping. */
static void gmt_step(Gmt *g, Arena *a, int64_t step) {
    GradHook h = gmt_hook(g);
    ck_assert_int_eq(h.before_update(h.user, a), PEFTC_OK);
    optim_adamw_step(a, &adamw, step, 1.0);
    if (h.after_update) h.after_update(h.user, a);
}

START_TEST(kept_counts_and_config_checks) {
    GmtConfig c = {.mask_ratio = 0.5};
    ck_assert_int_eq(gmt_kept(&c, 7), 4);   /* floor(3.5) = 3 masked */
    ck_assert_int_eq(gmt_kept(&c, 8), 4);
    ck_assert_int_eq(gmt_kept(&c, 1), 1);
    c.mask_ratio = 0;
    ck_assert_int_eq(gmt_kept(&c, 2145), 2145);
    c.mask_ratio = 0.9;
    ck_assert_int_eq(gmt_kept(&c, 2145), 2145 - 1930); /* floor(1930.5) */
    c.mask_ratio = 0.999;
    ck_assert_int_eq(gmt_kept(&c, 7), 1);
    c.mask_ratio = 1 - 1e-16; /* just below 1: one entry still stays */
    ck_assert_int_eq(gmt_kept(&c, 3), 1);

    Arena a;
    make_arena(&a, backend_cpu());
    Gmt *g = NULL;
    const double bad[] = {1.0, -0.1, NAN, 2.0};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        c = (GmtConfig){.mask_ratio = bad[i]};
        ck_assert_int_eq(gmt_create(&g, &a, &c), PEFTC_EINVAL);
        ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "gmt.mask_ratio"));
        ck_assert_ptr_null(g);
    }
    c = (GmtConfig){.mask_ratio = 0.5, .update = (GmtUpdate)2};
    ck_assert_int_eq(gmt_create(&g, &a, &c), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "gmt.masked_update"));
    ck_assert_str_eq(gmt_update_names[GMT_ZERO], "zero");
    ck_assert_str_eq(gmt_update_names[GMT_SKIP], "skip");
    ck_assert_ptr_null(gmt_update_names[2]);
    arena_free(&a);
}
END_TEST

START_TEST(keeps_largest_lower_index_on_ties) {
    Arena a;
    int group, hw, hz;
    arena_init(&a, backend_cpu());
    ck_assert_int_eq(arena_group(&a, "base", 1e-2, 0, &group), PEFTC_OK);
    ck_assert_int_eq(arena_register(&a, "w", shape1(10), group, 1, &hw), PEFTC_OK);
    ck_assert_int_eq(arena_register(&a, "z", shape1(4), group, 1, &hz), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(&a), PEFTC_OK);
    /* |g| ranks: 3 (idx 1), 3 (idx 6), then 2 at 2, 3, 4, 8: keep five = {1, 6, 2, 3, 4}. */
    const real_t gw[10] = {1, -3, 2, -2, 2, 0, 3, -1, 2, 0.5f};
    const uint8_t want_w[10] = {0, 1, 1, 1, 1, 0, 1, 0, 0, 0};
    memcpy(arena_grad(&a, hw), gw, sizeof gw);
    /* All zero (one negative zero): the lower indices stay. */
    const real_t gz[4] = {0, -0.0f, 0, 0};
    memcpy(arena_grad(&a, hz), gz, sizeof gz);
    Gmt *g;
    GmtConfig c = {.mask_ratio = 0.5};
    ck_assert_int_eq(gmt_create(&g, &a, &c), PEFTC_OK);
    GradHook h = gmt_hook(g);
    ck_assert_ptr_null(h.after_update); /* zero needs nothing after the update */
    ck_assert_int_eq(h.before_update(h.user, &a), PEFTC_OK);
    const uint8_t *keep = gmt_keep_mask(g);
    for (int i = 0; i < 10; i++) {
        ck_assert_msg(keep[i] == want_w[i], "w[%d]: keep %d, want %d", i, keep[i], want_w[i]);
        real_t want = want_w[i] ? gw[i] : 0;
        ck_assert_msg(arena_grad(&a, hw)[i] == want, "w[%d]: grad %g, want %g", i, arena_grad(&a, hw)[i], want);
    }
    const uint8_t want_z[4] = {1, 1, 0, 0};
    ck_assert_mem_eq(keep + a.entries[hz].offset, want_z, 4);
    gmt_free(g);
    arena_free(&a);
}
END_TEST

START_TEST(mask_matches_sorting_reference) {
    const double ratios[] = {0.1, 0.25, 0.5, 0.9, 0.999};
    Arena a;
    make_arena(&a, backend_cpu());
    real_t *orig = malloc(a.numel * sizeof *orig);
    uint8_t *want = malloc(a.numel);
    for (size_t r = 0; r < sizeof ratios / sizeof *ratios; r++) {
        GmtConfig c = {.mask_ratio = ratios[r]};
        Gmt *g;
        ck_assert_int_eq(gmt_create(&g, &a, &c), PEFTC_OK);
        fill_tied_grads(a.grads, a.numel, 100 + r);
        memcpy(orig, a.grads, a.numel * sizeof *orig);
        reference_keep_arena(want, &a, &c);
        GradHook h = gmt_hook(g);
        ck_assert_int_eq(h.before_update(h.user, &a), PEFTC_OK);
        const uint8_t *keep = gmt_keep_mask(g);
        for (int e = 0; e < a.n_entries; e++) {
            const ArenaEntry *en = &a.entries[e];
            int64_t kept = 0;
            for (size_t i = 0; i < en->numel; i++) kept += keep[en->offset + i];
            ck_assert_int_eq(en->numel, tensor_numel[e]);
            ck_assert_msg(kept == gmt_kept(&c, tensor_numel[e]), "ratio %g, %s: kept %lld of %zu", ratios[r], en->name,
                          (long long)kept, en->numel);
        }
        for (size_t i = 0; i < a.numel; i++) {
            ck_assert_msg(keep[i] == want[i], "ratio %g, entry %zu (|g| %g): keep %d, reference %d", ratios[r], i,
                          fabs((double)orig[i]), keep[i], want[i]);
            real_t w = want[i] ? orig[i] : 0;
            ck_assert_msg(memcmp(&a.grads[i], &w, sizeof w) == 0 || (!want[i] && a.grads[i] == 0),
                          "ratio %g, entry %zu: grad %g, want %g", ratios[r], i, a.grads[i], w);
        }
        gmt_free(g);
    }
    free(orig);
    free(want);
    arena_free(&a);
}
END_TEST

START_TEST(zero_is_adamw_on_zeroed_gradients) {
    Arena a, ref;
    make_arena(&a, backend_cpu());
    make_arena(&ref, backend_cpu());
    GmtConfig c = {.mask_ratio = 0.5, .update = GMT_ZERO};
    Gmt *g;
    ck_assert_int_eq(gmt_create(&g, &a, &c), PEFTC_OK);
    uint8_t *keep = malloc(a.numel);
    real_t *before = malloc(a.numel * sizeof *before);
    int masked_moved = 0;
    for (int step = 1; step <= 3; step++) {
        fill_tied_grads(a.grads, a.numel, 200 + step);
        memcpy(ref.grads, a.grads, a.numel * sizeof(real_t));
        reference_keep_arena(keep, &ref, &c);
        for (size_t i = 0; i < a.numel; i++)
            if (!keep[i]) ref.grads[i] = 0;
        memcpy(before, a.params, a.numel * sizeof *before);
        gmt_step(g, &a, step);
        optim_adamw_step(&ref, &adamw, step, 1.0);
        assert_state_equal(&a, &ref, "zero vs AdamW on zeroed gradients");
        for (size_t i = 0; i < a.numel; i++) masked_moved += !keep[i] && a.params[i] != before[i];
    }
    /* The documented difference from skip: weight decay and momentum still move masked entries. */
    ck_assert_int_gt(masked_moved, 0);
    free(keep);
    free(before);
    gmt_free(g);
    arena_free(&a);
    arena_free(&ref);
}
END_TEST

START_TEST(skip_freezes_masked_entries) {
    Arena a, ref;
    make_arena(&a, backend_cpu());
    make_arena(&ref, backend_cpu());
    GmtConfig c = {.mask_ratio = 0.5, .update = GMT_SKIP};
    Gmt *g;
    ck_assert_int_eq(gmt_create(&g, &a, &c), PEFTC_OK);
    ck_assert_ptr_nonnull(gmt_hook(g).after_update);
    Arena snap;
    make_arena(&snap, backend_cpu());
    uint8_t *keep = malloc(a.numel);
    size_t frozen = 0, moved = 0;
    for (int step = 1; step <= 3; step++) {
        fill_tied_grads(a.grads, a.numel, 300 + step);
        memcpy(ref.grads, a.grads, a.numel * sizeof(real_t));
        reference_keep_arena(keep, &a, &c);
        copy_state(&ref, &a);
        copy_state(&snap, &a);
        gmt_step(g, &a, step);
        optim_adamw_step(&ref, &adamw, step, 1.0); /* the unmasked update, for the kept entries */
        for (size_t i = 0; i < a.numel; i++) {
            const Arena *want = keep[i] ? &ref : &snap;
            ck_assert_msg(memcmp(&a.params[i], &want->params[i], sizeof(real_t)) == 0 &&
                              memcmp(&a.m[i], &want->m[i], sizeof(real_t)) == 0 &&
                              memcmp(&a.v[i], &want->v[i], sizeof(real_t)) == 0,
                          "step %d entry %zu (%s): p/m/v %g/%g/%g, want %g/%g/%g", step, i, keep[i] ? "kept" : "masked",
                          a.params[i], a.m[i], a.v[i], want->params[i], want->m[i], want->v[i]);
            frozen += !keep[i];
            moved += keep[i] && a.params[i] != snap.params[i];
        }
    }
    ck_assert_uint_gt(frozen, 0);
    ck_assert_uint_gt(moved, 0);
    free(keep);
    gmt_free(g);
    arena_free(&a);
    arena_free(&ref);
    arena_free(&snap);
}
END_TEST

START_TEST(ratio_zero_is_plain_adamw) {
    for (int mode = GMT_ZERO; mode <= GMT_SKIP; mode++) {
        Arena a, ref;
        make_arena(&a, backend_cpu());
        make_arena(&ref, backend_cpu());
        GmtConfig c = {.mask_ratio = 0, .update = (GmtUpdate)mode};
        Gmt *g;
        ck_assert_int_eq(gmt_create(&g, &a, &c), PEFTC_OK);
        for (int step = 1; step <= 3; step++) {
            fill_tied_grads(a.grads, a.numel, 400 + step);
            memcpy(ref.grads, a.grads, a.numel * sizeof(real_t));
            gmt_step(g, &a, step);
            optim_adamw_step(&ref, &adamw, step, 1.0);
            ck_assert_mem_eq(a.grads, ref.grads, a.numel * sizeof(real_t));
            assert_state_equal(&a, &ref, gmt_update_names[mode]);
        }
        gmt_free(g);
        arena_free(&a);
        arena_free(&ref);
    }
}
END_TEST

START_TEST(only_the_cpu_backend) {
    Backend gpu = *backend_cpu(); /* host memory, but declared a device: GMT must refuse it */
    gpu.device = DEV_CUDA;
    gpu.name = "fake-device";
    Arena dev, host;
    make_arena(&dev, &gpu);
    make_arena(&host, backend_cpu());
    GmtConfig c = {.mask_ratio = 0.5};
    Gmt *g;
    ck_assert_int_eq(gmt_create(&g, &dev, &c), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "gmt runs on the CPU backend only for now"));
    ck_assert_int_eq(gmt_create(&g, &host, &c), PEFTC_OK);
    GradHook h = gmt_hook(g);
    ck_assert_int_eq(h.before_update(h.user, &dev), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "fake-device"));
    gmt_free(g);
    arena_free(&dev);
    arena_free(&host);
}
END_TEST

/* ---- through the trainer: a tiny random LLaMA on the reverse task, full fine-tuning ---- */

enum { STEPS = 16 };

static const LlamaConfig model_cfg = {.hidden = 32, .intermediate = 48, .layers = 2, .heads = 4, .kv_heads = 2,
                                      .vocab = SYN_VOCAB, .rope_theta = 10000, .rms_eps = 1e-5};

typedef struct {
    double loss[STEPS], gnorm[STEPS], eval[2];
    int n_eval;
    real_t *params;
    size_t numel;
} Curve;

/* Wraps GMT's hook to watch the gradient around it. */
typedef struct {
    GradHook inner;
    const Gmt *gmt;
    int n;
    double raw[STEPS], masked[STEPS], clipped[STEPS];
    size_t masked_nonzero; /* masked entries whose gradient reached AdamW nonzero */
} Probe;

static PeftcStatus probe_before(void *u, Arena *a) {
    Probe *p = u;
    p->raw[p->n] = optim_grad_norm(a);
    PEFTC_TRY(p->inner.before_update(p->inner.user, a));
    p->masked[p->n] = optim_grad_norm(a);
    return PEFTC_OK;
}

static void probe_after(void *u, Arena *a) {
    Probe *p = u;
    p->clipped[p->n] = optim_grad_norm(a); /* AdamW leaves the gradient as clipping left it */
    const uint8_t *keep = gmt_keep_mask(p->gmt);
    for (size_t i = 0; i < a->numel; i++) p->masked_nonzero += !keep[i] && a->grads[i] != 0;
    if (p->inner.after_update) p->inner.after_update(p->inner.user, a);
    p->n++;
}

static void on_step(void *u, const StepStats *s) {
    Curve *c = u;
    c->loss[s->step - 1] = s->loss;
    c->gnorm[s->step - 1] = s->grad_norm;
}

static void on_eval(void *u, const EvalStats *s) {
    Curve *c = u;
    c->eval[c->n_eval++ ? 1 : 0] = s->loss;
}

static TrainConfig train_config(void) {
    TrainConfig tc = {.steps = STEPS, .micro_batch = 4, .accum = 2, .seq_len = 16, .seed = 7, .eval_batches = 4};
    /* A clip below the gradient norms of this run, so clipping acts on every step and the order of
     * mask and clip shows. */
    tc.adamw = (AdamWConfig){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .grad_clip = 0.5};
    tc.sched = (Schedule){.type = SCHED_COSINE, .warmup = 2, .total = STEPS, .min_ratio = 0.1};
    return tc;
}

/* Full fine-tuning, with GMT when gcfg is given (watched by probe when that is given too). */
static void train(Curve *out, Comm *comm, const TrainConfig *tc, const GmtConfig *gcfg, Probe *probe) {
    LlamaModel m;
    Arena a;
    Dataset *data;
    Trainer t;
    Gmt *g = NULL;
    SynConfig sc = {.task = SYN_REVERSE, .min_digits = 2, .max_digits = 6, .seed = 3, .eval_percent = 10};
    ck_assert_int_le(syn_max_len(&sc), tc->seq_len);
    memset(out, 0, sizeof *out);
    ck_assert_int_eq(llama_create(&m, backend_cpu(), &model_cfg, 1, 0.1), PEFTC_OK);
    arena_init(&a, m.base.be);
    ck_assert_int_eq(full_attach(&m.base, &a, 3e-3, 0.01), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(&a), PEFTC_OK);
    ck_assert_int_eq(full_init(&m.base, &a), PEFTC_OK);
    ck_assert_int_eq(syn_dataset_create(&data, &sc), PEFTC_OK);
    ck_assert_msg(trainer_init(&t, tc, &m.base, &a, comm, data) == PEFTC_OK, "%s", peftc_err_msg());
    if (gcfg) {
        ck_assert_int_eq(gmt_create(&g, &a, gcfg), PEFTC_OK);
        GradHook h = gmt_hook(g);
        if (probe) {
            *probe = (Probe){.inner = h, .gmt = g};
            h = (GradHook){probe, probe_before, probe_after};
        }
        trainer_set_grad_hook(&t, &h);
    }
    TrainerHooks hooks = {out, on_step, on_eval};
    ck_assert_msg(trainer_run(&t, &hooks) == PEFTC_OK, "%s", peftc_err_msg());
    out->numel = a.numel;
    out->params = malloc(a.numel * sizeof(real_t));
    memcpy(out->params, a.params, a.numel * sizeof(real_t));
    gmt_free(g);
    trainer_free(&t);
    llama_free(&m);
    arena_free(&a);
    data->free(data);
}

static void assert_same_run(const Curve *x, const Curve *y, const char *what) {
    ck_assert_msg(memcmp(x->loss, y->loss, sizeof x->loss) == 0, "%s: loss curves differ", what);
    ck_assert_msg(memcmp(x->gnorm, y->gnorm, sizeof x->gnorm) == 0, "%s: grad norms differ", what);
    ck_assert_msg(memcmp(x->eval, y->eval, sizeof x->eval) == 0, "%s: held-out losses differ", what);
    ck_assert_msg(memcmp(x->params, y->params, x->numel * sizeof(real_t)) == 0, "%s: final weights differ", what);
}

/* The masked run: learns, reports the masked norm, clips after masking, feeds AdamW zeros. */
static void check_masked_run(const Curve *c, const Probe *p, const Curve *fft, double clip, const char *what) {
    ck_assert_msg(c->eval[1] < 0.9 * c->eval[0], "%s: held-out loss %g -> %g did not fall", what, c->eval[0],
                  c->eval[1]);
    ck_assert_msg(c->loss[STEPS - 1] < c->loss[0], "%s: train loss %g -> %g", what, c->loss[0], c->loss[STEPS - 1]);
    ck_assert_msg(memcmp(c->params, fft->params, c->numel * sizeof(real_t)) != 0, "%s: same weights as FFT", what);
    ck_assert_int_eq(p->n, STEPS);
    ck_assert_uint_eq(p->masked_nonzero, 0);
    int clipped = 0;
    for (int s = 0; s < STEPS; s++) {
        ck_assert_msg(c->gnorm[s] == p->masked[s], "%s step %d: reported norm %.9g, masked gradient's %.9g", what,
                      s + 1, c->gnorm[s], p->masked[s]);
        ck_assert_msg(p->masked[s] < p->raw[s], "%s step %d: mask kept the whole norm", what, s + 1);
        ck_assert_double_le_tol(p->clipped[s], fmin(clip, p->masked[s]), 1e-5);
        clipped += p->masked[s] > clip;
    }
    ck_assert_msg(clipped > 0, "%s: clipping never engaged, so the order of mask and clip went untested", what);
}

START_TEST(trains_through_the_trainer) {
    Comm *comm;
    ck_assert_msg(comm_init_self(&comm) == PEFTC_OK, "%s", peftc_err_msg());
    TrainConfig tc = train_config();
    Curve fft, run;
    train(&fft, comm, &tc, NULL, NULL);
    ck_assert_msg(fft.eval[1] < 0.9 * fft.eval[0], "FFT: held-out loss %g -> %g", fft.eval[0], fft.eval[1]);
    for (int mode = GMT_ZERO; mode <= GMT_SKIP; mode++) {
        GmtConfig none = {.mask_ratio = 0, .update = (GmtUpdate)mode};
        train(&run, comm, &tc, &none, NULL);
        assert_same_run(&run, &fft, "mask_ratio 0 vs no hook");
        free(run.params);
    }
    for (int mode = GMT_ZERO; mode <= GMT_SKIP; mode++) {
        GmtConfig half = {.mask_ratio = 0.5, .update = (GmtUpdate)mode};
        Probe probe;
        train(&run, comm, &tc, &half, &probe);
        check_masked_run(&run, &probe, &fft, tc.adamw.grad_clip, gmt_update_names[mode]);
        free(run.params);
    }
    free(fft.params);
    comm_free(comm);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gmt");
    TCase *tc = tcase_create("gmt");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, kept_counts_and_config_checks);
    tcase_add_test(tc, keeps_largest_lower_index_on_ties);
    tcase_add_test(tc, mask_matches_sorting_reference);
    tcase_add_test(tc, zero_is_adamw_on_zeroed_gradients);
    tcase_add_test(tc, skip_freezes_masked_entries);
    tcase_add_test(tc, ratio_zero_is_plain_adamw);
    tcase_add_test(tc, only_the_cpu_backend);
    tcase_add_test(tc, trains_through_the_trainer);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
