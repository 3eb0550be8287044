/* SLoRA / NLoRA / IntTune in the shipped float build: parameter counts, the NLoRA init taken from W's
 * leading blocks (raw and pseudo-inverse core), the SLoRA init leaving the model unchanged, merge
 * equivalence, export as PEFT LoRA with N folded into B, and configuration errors. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/method.h"
#include "core/models/llama/llama.h"
#include "adapters/slora.h"
#include "core/base/rng.h"
#include "tests/model_testutil.h"
#include "tests/method_testutil.h"
#include "tests/testutil.h"

enum { B = 2, T = 8, R = 4 };

static const LlamaConfig cfg = {.hidden = 32, .intermediate = 48, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 40,
                                .rope_theta = 10000, .rms_eps = 1e-5, .tie_embeddings = 1};

static SloraConfig sc_of(SloraInit init, NloraCore core, int train_ab, unsigned targets) {
    return (SloraConfig){.r = R, .alpha = 8, .dropout = 0.1, .init = init, .core = core, .train_ab = train_ab,
                         .targets = targets};
}

/* What method.c does for LoRA, with slora_create: attach, register, finalize, init, reserve. */
static void attach(LlamaModel *m, Arena *a, const SloraConfig *sc) {
    arena_init(a, backend_cpu());
    int group;
    ck_assert_int_eq(arena_group(a, "slora", 1e-3, 0, &group), PEFTC_OK);
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (!(linear_target_bit(l) & sc->targets)) continue;
        Adapter *ad;
        ck_assert_int_eq(slora_create(&ad, m->base.be, l, sc, group), PEFTC_OK);
        l->adapter = ad;
        ck_assert_int_eq(ad->ops->register_params(ad, a), PEFTC_OK);
    }
    ck_assert_int_eq(arena_finalize(a), PEFTC_OK);
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (l->adapter) ck_assert_int_eq(l->adapter->ops->init(l->adapter, a, l, 5), PEFTC_OK);
    }
    ck_assert_int_eq(llama_reserve(m, B, T), PEFTC_OK);
}

static void open_model(LlamaModel *m, Arena *a, const SloraConfig *sc) {
    ck_assert_int_eq(llama_create(m, backend_cpu(), &cfg, 1, 0.1), PEFTC_OK);
    attach(m, a, sc);
}

static void close_model(LlamaModel *m, Arena *a) {
    method_detach(&m->base, NULL);
    llama_free(m);
    arena_free(a);
}

static const real_t *param(const Arena *a, const char *module, const char *which) {
    char name[ARENA_NAME_MAX];
    snprintf(name, sizeof name, "%s.slora_%s", module, which);
    int h = arena_find(a, name);
    ck_assert_msg(h >= 0, "no arena entry %s", name);
    return arena_param(a, h);
}

static real_t *base_logits(LlamaModel *m) {
    Adapter *saved[64];
    for (int i = 0; i < llama_linear_count(m); i++) {
        saved[i] = llama_linear(m, i)->adapter;
        llama_linear(m, i)->adapter = NULL;
    }
    real_t *out = tu_logits(m, B, T);
    for (int i = 0; i < llama_linear_count(m); i++) llama_linear(m, i)->adapter = saved[i];
    return out;
}

static double sum_entries(const Arena *a) {
    double n = 0;
    for (int i = 0; i < a->n_entries; i++) n += (double)a->entries[i].numel;
    return n;
}

START_TEST(param_counts_follow_formula) {
    SloraConfig c = sc_of(SLORA_INIT_SLORA, NLORA_CORE_BLOCK, 1, 0);
    ck_assert_int_eq(slora_param_count(&c, 32, 48), 4 * (32 + 48) + 16);
    c.train_ab = 0;
    ck_assert_int_eq(slora_param_count(&c, 32, 48), 16);
    c.r = 128;
    ck_assert_int_eq(224 * slora_param_count(&c, 4096, 11008), 3670016); /* the paper's "4M" on LLaMA-2-7B */
    unsigned targets = LORA_T_Q | LORA_T_V | LORA_T_DOWN;
    for (int ab = 1; ab >= 0; ab--) {
        LlamaModel m;
        Arena a;
        SloraConfig sc = sc_of(SLORA_INIT_NLORA, NLORA_CORE_BLOCK, ab, targets);
        open_model(&m, &a, &sc);
        double want = 0;
        int layers = 0;
        for (int i = 0; i < llama_linear_count(&m); i++) {
            const Linear *l = llama_linear(&m, i);
            if (!l->adapter) continue;
            want += (double)slora_param_count(&sc, l->in, l->out);
            layers++;
        }
        ck_assert_int_eq(layers, 3 * cfg.layers);
        ck_assert_int_eq(a.n_entries, (ab ? 3 : 1) * layers);
        ck_assert_double_eq(sum_entries(&a), want);
        if (!ab) ck_assert_double_eq(sum_entries(&a), layers * R * R);
        ck_assert_int_eq(arena_find(&a, "model.layers.1.mlp.down_proj.slora_A") >= 0, ab);
        ck_assert_int_ge(arena_find(&a, "model.layers.1.mlp.down_proj.slora_N"), 0);
        ck_assert_int_lt(arena_find(&a, "model.layers.0.self_attn.k_proj.slora_N"), 0);
        close_model(&m, &a);
    }
}
END_TEST

START_TEST(nlora_init_takes_w_blocks) {
    LlamaModel m, ref;
    Arena a;
    SloraConfig sc = sc_of(SLORA_INIT_NLORA, NLORA_CORE_BLOCK, 1, LORA_T_ALL);
    open_model(&m, &a, &sc);
    ck_assert_int_eq(llama_create(&ref, backend_cpu(), &cfg, 1, 0.1), PEFTC_OK); /* the same W, untouched */
    for (int i = 0; i < llama_linear_count(&m); i++) {
        const Linear *l = llama_linear(&m, i);
        const real_t *W = l->W;
        const real_t *A = param(&a, l->name, "A"), *N = param(&a, l->name, "N"), *Bm = param(&a, l->name, "B");
        for (int r = 0; r < R; r++)
            for (int c = 0; c < l->in; c++) ck_assert(A[r * l->in + c] == W[r * l->in + c]);
        for (int r = 0; r < R; r++)
            for (int c = 0; c < R; c++) ck_assert(N[r * R + c] == W[r * l->in + c]);
        for (int o = 0; o < l->out; o++)
            for (int c = 0; c < R; c++) ck_assert(Bm[o * R + c] == W[o * l->in + c]);
        ck_assert(memcmp(W, llama_linear(&ref, i)->W, (size_t)l->in * l->out * sizeof *W) == 0);
    }
    llama_free(&ref);
    close_model(&m, &a);
}
END_TEST

/* max |X Y Z - X| over (R,R) matrices, relative to max |X|. */
static double penrose_err(const real_t *X, const real_t *Y, const real_t *Z) {
    double worst = 0, scale = 0;
    for (int i = 0; i < R; i++)
        for (int j = 0; j < R; j++) {
            double v = 0;
            for (int k = 0; k < R; k++)
                for (int l = 0; l < R; l++) v += (double)X[i * R + k] * Y[k * R + l] * Z[l * R + j];
            worst = fmax(worst, fabs(v - X[i * R + j]));
            scale = fmax(scale, fabs(X[i * R + j]));
        }
    return worst / scale;
}

/* N = pinv(W[:r,:r]): both Penrose identities, on every layer and on a rank-deficient block, where a
 * plain inverse would blow up. */
START_TEST(nlora_pinv_is_pseudo_inverse) {
    LlamaModel m;
    Arena a;
    SloraConfig sc = sc_of(SLORA_INIT_NLORA, NLORA_CORE_PINV, 1, LORA_T_ALL);
    ck_assert_int_eq(llama_create(&m, backend_cpu(), &cfg, 1, 0.1), PEFTC_OK);
    real_t *Wq = m.layers[0].q.W; /* rows 0 and 1 of its block equal: rank R-1 */
    for (int c = 0; c < R; c++) Wq[cfg.hidden + c] = Wq[c];
    attach(&m, &a, &sc);
    for (int i = 0; i < llama_linear_count(&m); i++) {
        const Linear *l = llama_linear(&m, i);
        real_t blk[R * R];
        for (int r = 0; r < R; r++) memcpy(blk + r * R, l->W + (size_t)r * l->in, R * sizeof *blk);
        const real_t *P = param(&a, l->name, "N");
        double e1 = penrose_err(blk, P, blk), e2 = penrose_err(P, blk, P);
        ck_assert_msg(e1 < 1e-4 && e2 < 1e-4, "%s: N P N err %g, P N P err %g", l->name, e1, e2);
        ck_assert(param(&a, l->name, "A")[l->in] == l->W[l->in]); /* A, B stay the raw blocks */
        ck_assert(param(&a, l->name, "B")[R * (l->out - 1)] == l->W[(size_t)l->in * (l->out - 1)]);
    }
    close_model(&m, &a);
}
END_TEST

/* B = 0: the model computes exactly the base logits, and at step 0 only B gets a gradient. */
START_TEST(slora_init_keeps_base_model) {
    LlamaModel m;
    Arena a;
    SloraConfig sc = sc_of(SLORA_INIT_SLORA, NLORA_CORE_BLOCK, 1, LORA_T_ALL);
    open_model(&m, &a, &sc);
    const char *mod = "model.layers.1.mlp.down_proj";
    const real_t *A = param(&a, mod, "A"), *N = param(&a, mod, "N"), *Bm = param(&a, mod, "B");
    double ba = 1 / sqrt((double)cfg.intermediate), bn = 1 / sqrt((double)R), ma = 0, mn = 0;
    for (int i = 0; i < R * cfg.intermediate; i++) ma = fmax(ma, fabs(A[i]));
    for (int i = 0; i < R * R; i++) mn = fmax(mn, fabs(N[i]));
    ck_assert(ma <= ba && ma > 0.8 * ba);
    ck_assert(mn <= bn && mn > 0.3 * bn);
    for (int i = 0; i < cfg.hidden * R; i++) ck_assert(Bm[i] == 0);
    real_t *with = tu_logits(&m, B, T), *base = base_logits(&m);
    ck_assert(memcmp(with, base, (size_t)B * T * cfg.vocab * sizeof *with) == 0);
    int32_t tok[B * T], tgt[B * T];
    uint64_t keys[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = i % cfg.vocab, tgt[i] = (i + 3) % cfg.vocab, keys[i] = (uint64_t)i;
    double loss;
    int64_t nv;
    ck_assert_int_eq(llama_forward(&m, tok, tgt, NULL, NULL, keys, 1, B, T, &loss, &nv), PEFTC_OK);
    llama_backward(&m, tok, tgt, keys, 1);
    for (int e = 0; e < a.n_entries; e++) {
        double g = a.be->sumsq(a.be, a.grads + a.entries[e].offset, a.entries[e].numel);
        int is_b = strstr(a.entries[e].name, ".slora_B") != NULL;
        ck_assert_msg(is_b ? g > 0 : g == 0, "%s: gradient norm^2 %g at init", a.entries[e].name, g);
    }
    free(with);
    free(base);
    close_model(&m, &a);
}
END_TEST

static void check_merge(const SloraConfig *sc) {
    LlamaModel m;
    Arena a;
    open_model(&m, &a, sc);
    tu_fill_uniform(a.params, a.numel, 3, -0.3, 0.3);
    real_t *with = tu_logits(&m, B, T), *base = base_logits(&m);
    size_t n = (size_t)B * T * cfg.vocab;
    double diff_base = 0, worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) diff_base = fmax(diff_base, fabs((double)base[i] - with[i]));
    ck_assert_double_gt(diff_base, 1e-2); /* or the comparison below proves nothing */
    method_merge(&m.base);
    method_detach(&m.base, NULL);
    real_t *merged = tu_logits(&m, B, T);
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)merged[i] - with[i]));
        scale = fmax(scale, fabs((double)with[i]));
    }
    ck_assert_msg(worst <= 1e-5 * fmax(1, scale), "merged logits differ by %g (scale %g)", worst, scale);
    free(with);
    free(base);
    free(merged);
    llama_free(&m);
    arena_free(&a);
}

START_TEST(merge_gives_same_logits) {
    SloraConfig sc = sc_of(SLORA_INIT_SLORA, NLORA_CORE_BLOCK, 1, LORA_T_ALL);
    check_merge(&sc);
    sc = sc_of(SLORA_INIT_NLORA, NLORA_CORE_BLOCK, 0, LORA_T_ALL); /* IntTune: frozen A, B off the arena */
    sc.rslora = 1;
    check_merge(&sc);
}
END_TEST

typedef struct {
    int n;
    char names[2][160];
    Tensor t[2];
} Sink;

static PeftcStatus collect(void *user, const char *name, const Tensor *t) {
    Sink *s = user;
    ck_assert_int_lt(s->n, 2);
    ck_assert_int_eq(t->dtype, DT_REAL);
    ck_assert_int_eq(t->device, DEV_CPU);
    s->t[s->n] = *t;
    snprintf(s->names[s->n++], sizeof s->names[0], "%s", name);
    return PEFTC_OK;
}

/* lora_A = A, lora_B = B N, and s lora_B lora_A is exactly what merge adds to W. */
static void check_export(const SloraConfig *sc) {
    LlamaModel m;
    Arena a;
    open_model(&m, &a, sc);
    tu_fill_uniform(a.params, a.numel, 8, -0.3, 0.3);
    Linear *l = &m.layers[1].v;
    Sink s = {0};
    ck_assert_int_eq(l->adapter->ops->export_tensors(l->adapter, collect, &s), PEFTC_OK);
    ck_assert_int_eq(s.n, 2);
    ck_assert_str_eq(s.names[0], "base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight");
    ck_assert_str_eq(s.names[1], "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
    ck_assert(shape_equal(&s.t[0].shape, &(Shape){2, {R, l->in}}));
    ck_assert(shape_equal(&s.t[1].shape, &(Shape){2, {l->out, R}}));
    const real_t *Ae = s.t[0].data, *Be = s.t[1].data, *N = param(&a, l->name, "N");
    if (sc->train_ab) {
        const real_t *A = param(&a, l->name, "A"), *Bm = param(&a, l->name, "B");
        ck_assert(memcmp(Ae, A, (size_t)R * l->in * sizeof *A) == 0);
        for (int o = 0; o < l->out; o++)
            for (int j = 0; j < R; j++) {
                double v = 0;
                for (int k = 0; k < R; k++) v += (double)Bm[o * R + k] * N[k * R + j];
                ck_assert_double_eq_tol(Be[o * R + j], v, 1e-6);
            }
    }
    size_t nw = (size_t)l->out * l->in;
    real_t *W0 = malloc(nw * sizeof *W0);
    memcpy(W0, l->W, nw * sizeof *W0);
    double s_ = slora_scale(sc), worst = 0, mx = 0;
    real_t *Ac = malloc((size_t)R * l->in * sizeof *Ac), *Bc = malloc((size_t)l->out * R * sizeof *Bc);
    memcpy(Ac, Ae, (size_t)R * l->in * sizeof *Ac); /* the export buffer may be reused by merge */
    memcpy(Bc, Be, (size_t)l->out * R * sizeof *Bc);
    l->adapter->ops->merge(l->adapter, l->W);
    for (int o = 0; o < l->out; o++)
        for (int c = 0; c < l->in; c++) {
            double d = 0;
            for (int k = 0; k < R; k++) d += (double)Bc[o * R + k] * Ac[k * l->in + c];
            double got = (double)l->W[(size_t)o * l->in + c] - W0[(size_t)o * l->in + c];
            worst = fmax(worst, fabs(got - s_ * d));
            mx = fmax(mx, fabs(s_ * d));
        }
    ck_assert_double_gt(mx, 1e-3);
    ck_assert_msg(worst <= 1e-5 * mx, "merged delta differs from s B_exp A_exp by %g (max %g)", worst, mx);
    free(W0);
    free(Ac);
    free(Bc);
    close_model(&m, &a);
}

START_TEST(export_folds_n_into_b) {
    SloraConfig sc = sc_of(SLORA_INIT_SLORA, NLORA_CORE_BLOCK, 1, LORA_T_V | LORA_T_UP);
    check_export(&sc);
    sc = sc_of(SLORA_INIT_NLORA, NLORA_CORE_PINV, 0, LORA_T_V);
    check_export(&sc);
}
END_TEST

/* Micro-batches of one step add into the same gradients: two backward passes give twice one. */
START_TEST(backward_accumulates) {
    LlamaModel m;
    Arena a;
    SloraConfig sc = sc_of(SLORA_INIT_SLORA, NLORA_CORE_BLOCK, 1, LORA_T_ALL);
    open_model(&m, &a, &sc);
    tu_fill_uniform(a.params, a.numel, 6, -0.3, 0.3);
    int32_t tok[B * T], tgt[B * T];
    uint64_t keys[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = i % cfg.vocab, tgt[i] = (i + 5) % cfg.vocab, keys[i] = (uint64_t)i;
    real_t *once = malloc(a.numel * sizeof *once);
    for (int pass = 0; pass < 2; pass++) {
        double loss;
        int64_t nv;
        ck_assert_int_eq(llama_forward(&m, tok, tgt, NULL, NULL, keys, 1, B, T, &loss, &nv), PEFTC_OK);
        llama_backward(&m, tok, tgt, keys, 1);
        if (!pass) memcpy(once, a.grads, a.numel * sizeof *once);
    }
    for (int e = 0; e < a.n_entries; e++) {
        const ArenaEntry *en = &a.entries[e];
        double worst = 0, mx = 0;
        for (size_t i = en->offset; i < en->offset + en->numel; i++) {
            worst = fmax(worst, fabs((double)a.grads[i] - 2.0 * once[i]));
            mx = fmax(mx, fabs((double)once[i]));
        }
        ck_assert_msg(mx > 0 && worst <= 1e-5 * mx, "%s: second backward gave %g off twice the first (max %g)",
                      en->name, worst, mx);
    }
    free(once);
    close_model(&m, &a);
}
END_TEST

START_TEST(config_errors_name_the_problem) {
    LlamaModel m;
    ck_assert_int_eq(llama_create(&m, backend_cpu(), &cfg, 1, 0.1), PEFTC_OK);
    const Linear *k = &m.layers[0].k; /* (16, 32) */
    Adapter *ad;
    SloraConfig sc = sc_of(SLORA_INIT_NLORA, NLORA_CORE_BLOCK, 1, LORA_T_ALL);
    sc.r = 17;
    ck_assert_int_eq(slora_create(&ad, m.base.be, k, &sc, 0), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "model.layers.0.self_attn.k_proj"));
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "min(in, out) = 16"));
    sc.r = 16; /* the largest rank NLoRA allows there */
    ck_assert_int_eq(slora_create(&ad, m.base.be, k, &sc, 0), PEFTC_OK);
    ad->ops->destroy(ad);
    sc = sc_of(SLORA_INIT_SLORA, NLORA_CORE_BLOCK, 1, LORA_T_ALL);
    sc.r = 17; /* SLoRA has no such bound, like LoRA */
    ck_assert_int_eq(slora_create(&ad, m.base.be, k, &sc, 0), PEFTC_OK);
    ad->ops->destroy(ad);
    sc.train_ab = 0;
    ck_assert_int_eq(slora_create(&ad, m.base.be, k, &sc, 0), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "IntTune"));
    sc = sc_of(SLORA_INIT_SLORA, NLORA_CORE_BLOCK, 1, LORA_T_ALL);
    sc.r = 0;
    ck_assert_int_eq(slora_create(&ad, m.base.be, k, &sc, 0), PEFTC_EINVAL);
    sc.r = 4, sc.dropout = 1;
    ck_assert_int_eq(slora_create(&ad, m.base.be, k, &sc, 0), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "dropout"));
    ck_assert_str_eq(slora_init_names[SLORA_INIT_NLORA], "nlora");
    ck_assert_str_eq(nlora_core_names[NLORA_CORE_PINV], "pinv");
    ck_assert_ptr_null(nlora_core_names[2]);
    llama_free(&m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("slora");
    TCase *tc = tcase_create("slora");
    tcase_add_test(tc, param_counts_follow_formula);
    tcase_add_test(tc, nlora_init_takes_w_blocks);
    tcase_add_test(tc, nlora_pinv_is_pseudo_inverse);
    tcase_add_test(tc, slora_init_keeps_base_model);
    tcase_add_test(tc, merge_gives_same_logits);
    tcase_add_test(tc, export_folds_n_into_b);
    tcase_add_test(tc, backward_accumulates);
    tcase_add_test(tc, config_errors_name_the_problem);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
