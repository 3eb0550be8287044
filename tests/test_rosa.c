/* RoSA / SpA in the shipped float build: parameter counts, the adapted layer against a dense W+S (with
 * plain LoRA on top, dropout included), plain LoRA before a mask, merge, gradient collection against the
 * frozen weight's gradient from full fine-tuning, top-k masks with ties, mask and export round trips, and
 * errors. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/full.h"
#include "core/models/llama/llama.h"
#include "adapters/method.h"
#include "adapters/rosa.h"
#include "core/nn/csr.h"
#include "core/base/rng.h"
#include "tests/method_testutil.h"
#include "tests/testutil.h"

enum { B = 2, T = 8, R = 4, NLIN = 14 };

static const LlamaConfig cfg = {.hidden = 32, .intermediate = 48, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 40,
                                .rope_theta = 10000, .rms_eps = 1e-5, .tie_embeddings = 1};

static RosaConfig rc_of(int r, double dropout, double density) {
    return (RosaConfig){.lora = {.r = r, .alpha = 8, .dropout = dropout, .targets = LORA_T_ALL}, .density = density};
}

/* A model with RoSA on every linear, and each layer's mask as ascending flat indices. */
typedef struct {
    LlamaModel m;
    Arena a;
    int64_t *flat[NLIN]; /* NULL until net_mask */
    int64_t nnz[NLIN];
} Net;

/* What the integrator's method code will do: attach, register (two groups), finalize, init, reserve. */
static void net_open(Net *n, const RosaConfig *rc) {
    memset(n, 0, sizeof *n);
    ck_assert_int_eq(llama_create(&n->m, backend_cpu(), &cfg, 1, 0.1), PEFTC_OK);
    arena_init(&n->a, backend_cpu());
    int lg, sg;
    ck_assert_int_eq(arena_group(&n->a, "lora", 7e-4, 0, &lg), PEFTC_OK);
    ck_assert_int_eq(arena_group(&n->a, "sparse", 2e-4, 0, &sg), PEFTC_OK);
    for (int i = 0; i < llama_linear_count(&n->m); i++) {
        Linear *l = llama_linear(&n->m, i);
        Adapter *ad;
        ck_assert_int_eq(rosa_create(&ad, n->m.base.be, l, rc, lg, sg), PEFTC_OK);
        l->adapter = ad;
        ck_assert_int_eq(ad->ops->register_params(ad, &n->a), PEFTC_OK);
    }
    ck_assert_int_eq(arena_finalize(&n->a), PEFTC_OK);
    for (int i = 0; i < llama_linear_count(&n->m); i++) {
        Linear *l = llama_linear(&n->m, i);
        ck_assert_int_eq(l->adapter->ops->init(l->adapter, &n->a, l, 5), PEFTC_OK);
    }
    ck_assert_int_eq(llama_reserve(&n->m, B, T), PEFTC_OK);
}

/* Random masks (the top-k of uniform scores), handed to rosa_set_mask in descending order. */
static void net_mask(Net *n, const RosaConfig *rc, uint64_t seed) {
    for (int i = 0; i < llama_linear_count(&n->m); i++) {
        Linear *l = llama_linear(&n->m, i);
        int64_t cells = (int64_t)l->out * l->in, k = n->nnz[i] = rosa_nnz(rc, l->in, l->out);
        float *score = malloc((size_t)cells * sizeof *score);
        int64_t *rev = malloc((size_t)k * sizeof *rev);
        n->flat[i] = malloc((size_t)k * sizeof *n->flat[i]);
        for (int64_t j = 0; j < cells; j++) score[j] = (float)rng_uniform(rng_key_str(seed, l->name), (uint64_t)j);
        ck_assert_int_eq(csr_topk_flat(score, cells, k, n->flat[i]), PEFTC_OK);
        for (int64_t j = 0; j < k; j++) rev[j] = n->flat[i][k - 1 - j];
        ck_assert_int_eq(rosa_set_mask(l->adapter, rev, k), PEFTC_OK);
        ck_assert(rosa_has_mask(l->adapter));
        free(score);
        free(rev);
    }
}

static void net_close(Net *n) {
    method_detach(&n->m.base, NULL);
    llama_free(&n->m);
    arena_free(&n->a);
    for (int i = 0; i < NLIN; i++) free(n->flat[i]);
}

static int entry_of(const Arena *a, const char *module, const char *suffix) {
    char name[ARENA_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", module, suffix);
    int h = arena_find(a, name);
    ck_assert_msg(h >= 0, "no arena entry %s", name);
    return h;
}

/* Every entry whose name ends in `suffix` gets uniform values keyed by its name. */
static void fill_by_name(Arena *a, const char *suffix, uint64_t seed) {
    size_t ls = strlen(suffix);
    for (int e = 0; e < a->n_entries; e++) {
        const ArenaEntry *en = &a->entries[e];
        size_t ln = strlen(en->name);
        if (ln >= ls && strcmp(en->name + ln - ls, suffix) == 0)
            tu_fill_uniform(a->params + en->offset, en->numel, rng_key_str(seed, en->name), -0.3, 0.3);
    }
}

/* Micro-batch mb: tokens, targets (a few ignored, more in mb 1) and dropout row keys. */
static void batch(int mb, int32_t *tok, int32_t *tgt, uint64_t *keys) {
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)(rng_u64(30 + mb, i) % (uint64_t)cfg.vocab);
        tgt[i] = i % (4 - mb) == 1 ? PEFTC_IGNORE_INDEX : (int32_t)(rng_u64(40 + mb, i) % (uint64_t)cfg.vocab);
        keys[i] = rng_key(50 + mb, (uint64_t)i);
    }
}

/* Training forward of micro-batch mb; returns the summed loss (probabilities stay in acts.logits). */
static double train_forward(LlamaModel *m, int mb) {
    int32_t tok[B * T], tgt[B * T];
    uint64_t keys[B * T];
    batch(mb, tok, tgt, keys);
    double loss;
    int64_t nv;
    ck_assert_int_eq(llama_forward(m, tok, tgt, NULL, NULL, keys, 1, B, T, &loss, &nv), PEFTC_OK);
    return loss;
}

static void train_backward(LlamaModel *m, int mb) {
    int32_t tok[B * T], tgt[B * T];
    uint64_t keys[B * T];
    batch(mb, tok, tgt, keys);
    llama_backward(m, tok, tgt, keys, 1);
}

static real_t *eval_logits(LlamaModel *m) {
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(rng_u64(4, i) % (uint64_t)cfg.vocab);
    ck_assert_int_eq(llama_forward(m, tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    size_t n = (size_t)B * T * cfg.vocab;
    real_t *out = malloc(n * sizeof *out);
    memcpy(out, m->acts.logits, n * sizeof *out);
    return out;
}

/* max |x - y| / max(1, max |y|) */
static double rel_diff(const real_t *x, const real_t *y, size_t n) {
    double worst = 0, scale = 1;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)x[i] - y[i]));
        scale = fmax(scale, fabs((double)y[i]));
    }
    return worst / scale;
}

/* ref's W += S of every layer of n, scattered by hand from the masks and the arena's values. */
static void add_s_by_hand(Net *n, LlamaModel *ref) {
    for (int i = 0; i < llama_linear_count(&n->m); i++) {
        const Linear *l = llama_linear(&n->m, i);
        const real_t *v = arena_param(&n->a, entry_of(&n->a, l->name, "rosa_values"));
        real_t *W = llama_linear(ref, i)->W;
        for (int64_t j = 0; j < n->nnz[i]; j++) W[n->flat[i][j]] += v[j];
    }
}

START_TEST(param_counts_follow_formula) {
    RosaConfig c = rc_of(16, 0, 0.006);
    ck_assert_int_eq(rosa_nnz(&c, 4096, 4096), 100663); /* floor(100663.296) */
    ck_assert_int_eq(rosa_param_count(&c, 4096, 11008), 16 * (4096 + 11008) + 270532);
    c.density = 0.29; /* 0.29 * 100 = 28.999999999999996 in double: the reference's int(d * numel) = 28 */
    ck_assert_int_eq(rosa_nnz(&c, 10, 10), 28);
    c.density = 1;
    ck_assert_int_eq(rosa_nnz(&c, 10, 7), 70);
    c.density = 0;
    ck_assert_int_eq(rosa_param_count(&c, 10, 7), 16 * 17);
    int64_t lora = 0; /* LLaMA-2-7B, all-linear: METHODS.md's 2,498,560 per rank */
    for (int l = 0; l < 32; l++) lora += 4 * rosa_param_count(&c, 4096, 4096) + 2 * rosa_param_count(&c, 4096, 11008) +
                                         rosa_param_count(&c, 11008, 4096);
    ck_assert_int_eq(lora, 2498560LL * 16);
    const int rs[3] = {R, 0, R};
    const double ds[3] = {0.1, 0.1, 0};
    for (int k = 0; k < 3; k++) {
        Net n;
        RosaConfig rc = rc_of(rs[k], 0, ds[k]);
        net_open(&n, &rc);
        int64_t want = 0, entries = 0;
        for (int i = 0; i < llama_linear_count(&n.m); i++) {
            const Linear *l = llama_linear(&n.m, i);
            want += rosa_param_count(&rc, l->in, l->out);
            entries += (rs[k] ? 2 : 0) + (rosa_nnz(&rc, l->in, l->out) ? 1 : 0);
        }
        ck_assert_int_eq(n.a.n_entries, entries);
        ck_assert_int_eq((int64_t)arena_trainable(&n.a), want);
        int h = arena_find(&n.a, "model.layers.1.mlp.down_proj.rosa_values");
        ck_assert_int_eq(h >= 0, ds[k] > 0);
        if (h >= 0) {
            ck_assert_int_eq(n.a.entries[h].numel, (size_t)(0.1 * 48 * 32));
            ck_assert_str_eq(n.a.groups[n.a.entries[h].group].name, "sparse");
        }
        h = arena_find(&n.a, "model.layers.0.self_attn.k_proj.lora_B");
        ck_assert_int_eq(h >= 0, rs[k] > 0);
        if (h >= 0) ck_assert_str_eq(n.a.groups[n.a.entries[h].group].name, "lora");
        net_close(&n);
    }
}
END_TEST

/* RoSA in training mode equals plain LoRA (same A, B, dropout masks) on a model whose W is W + S: so S
 * sees the undropped input, and the LoRA gradients, which flow through dx = dy (W + S), agree too. */
static void check_dense_equivalence(int r, double dropout) {
    RosaConfig rc = rc_of(r, dropout, 0.1);
    Net n;
    net_open(&n, &rc);
    net_mask(&n, &rc, 7);
    tu_fill_uniform(n.a.params, n.a.numel, 3, -0.3, 0.3);
    LlamaModel ref;
    Arena ra;
    ck_assert_int_eq(llama_create(&ref, backend_cpu(), &cfg, 1, 0.1), PEFTC_OK);
    arena_init(&ra, backend_cpu());
    int group;
    ck_assert_int_eq(arena_group(&ra, "lora", 1e-3, 0, &group), PEFTC_OK);
    if (r) {
        for (int i = 0; i < llama_linear_count(&ref); i++) {
            Linear *l = llama_linear(&ref, i);
            ck_assert_int_eq(lora_create(&l->adapter, ref.base.be, l, &rc.lora, group), PEFTC_OK);
            ck_assert_int_eq(l->adapter->ops->register_params(l->adapter, &ra), PEFTC_OK);
        }
        ck_assert_int_eq(arena_finalize(&ra), PEFTC_OK);
        for (int i = 0; i < llama_linear_count(&ref); i++)
            ck_assert_int_eq(llama_linear(&ref, i)->adapter->ops->init(llama_linear(&ref, i)->adapter, &ra,
                                                                        llama_linear(&ref, i), 5), PEFTC_OK);
        for (int e = 0; e < ra.n_entries; e++) /* A, B by name */
            memcpy(ra.params + ra.entries[e].offset, arena_param(&n.a, arena_find(&n.a, ra.entries[e].name)),
                   ra.entries[e].numel * sizeof(real_t));
    }
    ck_assert_int_eq(llama_reserve(&ref, B, T), PEFTC_OK);
    double without_s = train_forward(&ref, 0);
    add_s_by_hand(&n, &ref);
    double want = train_forward(&ref, 0), got = train_forward(&n.m, 0);
    ck_assert_msg(fabs(without_s - want) > 2e-3 * fabs(want), "S changes the loss too little to test (%g vs %g)",
                  without_s, want);
    ck_assert_msg(fabs(got - want) <= 1e-5 * fabs(want), "RoSA loss %.9g, dense W+S %.9g", got, want);
    size_t np = (size_t)B * T * cfg.vocab;
    ck_assert_double_le(rel_diff(n.m.acts.logits, ref.acts.logits, np), 1e-5);
    train_backward(&n.m, 0);
    train_forward(&ref, 0);
    train_backward(&ref, 0);
    for (int e = 0; e < ra.n_entries; e++) {
        const ArenaEntry *en = &ra.entries[e];
        const real_t *g = arena_grad(&n.a, arena_find(&n.a, en->name));
        double d = rel_diff(g, ra.grads + en->offset, en->numel);
        ck_assert_msg(d <= 1e-4, "%s: gradient differs from LoRA on W+S by %g", en->name, d);
    }
    method_detach(&ref.base, NULL);
    llama_free(&ref);
    arena_free(&ra);
    net_close(&n);
}

START_TEST(adapted_layer_is_dense_w_plus_s) {
    check_dense_equivalence(R, 0.3);
    check_dense_equivalence(0, 0); /* SpA */
}
END_TEST

/* Before a mask, RoSA is plain LoRA: the same A from init, the same loss and LoRA gradients, and the
 * values neither move the output nor get a gradient. Once the mask is set they do. */
START_TEST(no_mask_is_plain_lora) {
    RosaConfig rc = rc_of(R, 0.2, 0.1);
    Net n;
    net_open(&n, &rc);
    Net lo = {0};
    ck_assert_int_eq(llama_create(&lo.m, backend_cpu(), &cfg, 1, 0.1), PEFTC_OK);
    MethodConfig mc = tu_method("lora");
    *tu_lora(&mc) = rc.lora;
    arena_init(&lo.a, backend_cpu());
    ck_assert_int_eq(method_attach(&lo.m.base, &lo.a, &mc), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(&lo.a), PEFTC_OK);
    ck_assert_int_eq(method_init(&lo.m.base, &lo.a, &mc, 5), PEFTC_OK);
    ck_assert_int_eq(llama_reserve(&lo.m, B, T), PEFTC_OK);
    fill_by_name(&n.a, ".lora_B", 9);
    fill_by_name(&lo.a, ".lora_B", 9);
    fill_by_name(&n.a, ".rosa_values", 10); /* no mask: must not matter */
    double got = train_forward(&n.m, 1), want = train_forward(&lo.m, 1);
    ck_assert_double_le(fabs(got - want), 1e-6 * fabs(want));
    train_backward(&n.m, 1);
    train_backward(&lo.m, 1);
    for (int e = 0; e < lo.a.n_entries; e++) {
        const ArenaEntry *en = &lo.a.entries[e];
        int h = arena_find(&n.a, en->name);
        ck_assert_int_ge(h, 0);
        if (strstr(en->name, ".lora_A"))
            ck_assert(memcmp(arena_param(&n.a, h), lo.a.params + en->offset, en->numel * sizeof(real_t)) == 0);
        ck_assert_double_le(rel_diff(arena_grad(&n.a, h), lo.a.grads + en->offset, en->numel), 1e-6);
    }
    for (int e = 0; e < n.a.n_entries; e++)
        if (strstr(n.a.entries[e].name, ".rosa_values"))
            ck_assert_double_eq(n.a.be->sumsq(n.a.be, n.a.grads + n.a.entries[e].offset, n.a.entries[e].numel), 0);
    net_mask(&n, &rc, 8);
    n.a.be->zero(n.a.be, n.a.grads, n.a.numel);
    ck_assert_double_gt(fabs(train_forward(&n.m, 1) - want), 1e-3 * fabs(want));
    train_backward(&n.m, 1);
    for (int e = 0; e < n.a.n_entries; e++)
        ck_assert_msg(n.a.be->sumsq(n.a.be, n.a.grads + n.a.entries[e].offset, n.a.entries[e].numel) > 0, "%s: no gradient",
                      n.a.entries[e].name);
    net_close(&lo);
    net_close(&n);
}
END_TEST

static void check_merge(int r) {
    RosaConfig rc = rc_of(r, 0.1, 0.1);
    Net n;
    net_open(&n, &rc);
    net_mask(&n, &rc, 11);
    tu_fill_uniform(n.a.params, n.a.numel, 12, -0.3, 0.3);
    Adapter *saved[NLIN];
    for (int i = 0; i < NLIN; i++) saved[i] = llama_linear(&n.m, i)->adapter, llama_linear(&n.m, i)->adapter = NULL;
    real_t *base = eval_logits(&n.m);
    for (int i = 0; i < NLIN; i++) llama_linear(&n.m, i)->adapter = saved[i];
    real_t *with = eval_logits(&n.m);
    size_t np = (size_t)B * T * cfg.vocab;
    ck_assert_double_gt(rel_diff(base, with, np), 1e-2);
    method_merge(&n.m.base);
    method_detach(&n.m.base, NULL);
    real_t *merged = eval_logits(&n.m);
    double d = rel_diff(merged, with, np);
    ck_assert_msg(d <= 1e-5, "merged logits differ by %g (r = %d)", d, r);
    free(base);
    free(with);
    free(merged);
    net_close(&n);
}

START_TEST(merge_gives_same_logits) {
    check_merge(R);
    check_merge(0);
}
END_TEST

/* Micro-batches of one step add into the same gradients: two backward passes give twice one. */
START_TEST(backward_accumulates) {
    RosaConfig rc = rc_of(R, 0.1, 0.1);
    Net n;
    net_open(&n, &rc);
    net_mask(&n, &rc, 13);
    tu_fill_uniform(n.a.params, n.a.numel, 14, -0.3, 0.3);
    real_t *once = malloc(n.a.numel * sizeof *once);
    for (int pass = 0; pass < 2; pass++) {
        train_forward(&n.m, 0);
        train_backward(&n.m, 0);
        if (!pass) memcpy(once, n.a.grads, n.a.numel * sizeof *once);
    }
    for (int e = 0; e < n.a.n_entries; e++) {
        const ArenaEntry *en = &n.a.entries[e];
        double worst = 0, mx = 0;
        for (size_t i = en->offset; i < en->offset + en->numel; i++) {
            worst = fmax(worst, fabs((double)n.a.grads[i] - 2.0 * once[i]));
            mx = fmax(mx, fabs((double)once[i]));
        }
        ck_assert_msg(mx > 0 && worst <= 1e-5 * mx, "%s: second backward gave %g off twice the first (max %g)",
                      en->name, worst, mx);
    }
    free(once);
    net_close(&n);
}
END_TEST

/* sel (k ascending flat indices) is the top k of score(n) with ties to the lower index. */
static void check_is_topk(const float *score, int64_t n, const int64_t *sel, int64_t k, const char *what) {
    char *in = calloc((size_t)n, 1);
    float lo = INFINITY;
    for (int64_t j = 0; j < k; j++) {
        ck_assert(j == 0 || sel[j] > sel[j - 1]);
        in[sel[j]] = 1;
        lo = fminf(lo, score[sel[j]]);
    }
    int64_t last_tied_in = -1;
    for (int64_t i = 0; i < n; i++)
        if (in[i] && score[i] == lo) last_tied_in = i;
    for (int64_t i = 0; i < n; i++) {
        if (in[i]) continue;
        ck_assert_msg(score[i] <= lo, "%s: unselected %lld scores %g above the selected minimum %g", what,
                      (long long)i, score[i], lo);
        if (score[i] == lo)
            ck_assert_msg(i > last_tied_in, "%s: tie at %lld lost to a higher index", what, (long long)i);
    }
    free(in);
}

/* The collected sums against G^T X of each micro-batch taken independently: the frozen weight's own
 * gradient dW from full fine-tuning of the same model with W + s B A (the collection runs after LoRA
 * warm-up: the Fisher is measured at W + BA), summed over two micro-batches with different token
 * counts; squared for mean_squared. mean_squared collects in one begin/end, mean in one per micro-batch
 * (a collection spanning steps). Then the mask is the top-k of the collected means. */
static void check_collection(RosaAccum mode) {
    RosaConfig rc = rc_of(R, 0, 0.05);
    Net n;
    net_open(&n, &rc);
    fill_by_name(&n.a, ".lora_A", 15);
    fill_by_name(&n.a, ".lora_B", 16);
    LlamaModel f;
    Arena fa;
    ck_assert_int_eq(llama_create(&f, backend_cpu(), &cfg, 1, 0.1), PEFTC_OK);
    for (int i = 0; i < NLIN; i++) { /* no mask yet: merge adds s B A only */
        Adapter *ad = llama_linear(&n.m, i)->adapter;
        ad->ops->merge(ad, llama_linear(&f, i)->W);
    }
    arena_init(&fa, backend_cpu());
    ck_assert_int_eq(full_attach(&f.base, &fa, 1e-3, 0), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(&fa), PEFTC_OK);
    ck_assert_int_eq(full_init(&f.base, &fa), PEFTC_OK);
    ck_assert_int_eq(llama_reserve(&f, B, T), PEFTC_OK);
    double *ref[NLIN];
    real_t *shared = backend_cpu()->alloc(backend_cpu(), (size_t)cfg.intermediate * cfg.hidden * sizeof(real_t));
    for (int i = 0; i < NLIN; i++) {
        const Linear *l = llama_linear(&n.m, i);
        ref[i] = calloc((size_t)l->out * l->in, sizeof *ref[i]);
        if (mode == ROSA_ACC_MEAN_SQUARED)
            ck_assert_int_eq(rosa_collect_begin(l->adapter, mode, i % 2 ? shared : NULL), PEFTC_OK);
    }
    for (int mb = 0; mb < 2; mb++) {
        for (int i = 0; i < NLIN && mode == ROSA_ACC_MEAN; i++)
            ck_assert_int_eq(rosa_collect_begin(llama_linear(&n.m, i)->adapter, mode, i % 2 ? shared : NULL), PEFTC_OK);
        train_forward(&n.m, mb);
        train_backward(&n.m, mb);
        for (int i = 0; i < NLIN && mode == ROSA_ACC_MEAN; i++) rosa_collect_end(llama_linear(&n.m, i)->adapter);
        fa.be->zero(fa.be, fa.grads, fa.numel);
        train_forward(&f, mb);
        train_backward(&f, mb);
        for (int i = 0; i < NLIN; i++) {
            const Linear *l = llama_linear(&f, i);
            for (size_t j = 0; j < (size_t)l->out * l->in; j++)
                ref[i][j] += mode == ROSA_ACC_MEAN ? l->dW[j] : (double)l->dW[j] * l->dW[j];
        }
    }
    for (int i = 0; i < NLIN; i++) {
        Adapter *ad = llama_linear(&n.m, i)->adapter;
        rosa_collect_end(ad);
        int64_t count, cells = (int64_t)ad->out * ad->in;
        float *acc = rosa_accumulator(ad, &count);
        ck_assert_ptr_nonnull(acc);
        ck_assert_int_eq(count, 2);
        double worst = 0, mx = 0;
        for (int64_t j = 0; j < cells; j++) {
            worst = fmax(worst, fabs(acc[j] - ref[i][j]));
            mx = fmax(mx, fabs(ref[i][j]));
        }
        ck_assert_msg(mx > 0 && worst <= 1e-4 * mx, "%s (%s): collected sum off by %g (max %g)", ad->name,
                      rosa_accum_names[mode], worst, mx);
        float *score = malloc((size_t)cells * sizeof *score);
        for (int64_t j = 0; j < cells; j++) score[j] = fabsf(acc[j] / 2.0f);
        ck_assert_int_eq(rosa_mask_from_accumulator(ad, count), PEFTC_OK);
        ck_assert_ptr_null(rosa_accumulator(ad, &count));
        int64_t k = rosa_nnz(&rc, ad->in, ad->out), *sel = malloc((size_t)k * sizeof *sel);
        ck_assert_int_eq(rosa_mask_flat(ad, sel), PEFTC_OK);
        check_is_topk(score, cells, sel, k, ad->name);
        free(score);
        free(sel);
        free(ref[i]);
    }
    backend_cpu()->free(backend_cpu(), shared);
    llama_free(&f);
    arena_free(&fa);
    net_close(&n);
}

START_TEST(collection_matches_full_finetuning) {
    check_collection(ROSA_ACC_MEAN_SQUARED);
    check_collection(ROSA_ACC_MEAN);
}
END_TEST

/* A (16, 32) layer outside any model: nnz = floor(5/512 * 512) = 5. */
static Linear toy_linear(void) {
    Linear l = {.name = "toy.k_proj", .target = 1, .in = 32, .out = 16};
    return l;
}

static Adapter *toy_adapter(const Linear *l, int r) {
    RosaConfig rc = rc_of(r, 0, 5.0 / 512);
    Adapter *a;
    ck_assert_int_eq(rosa_create(&a, backend_cpu(), l, &rc, 0, 0), PEFTC_OK);
    return a;
}

/* Hand-made sums: mean ranks |sum| / count, both modes break ties by the lower flat index. */
START_TEST(mask_from_accumulator_topk_and_ties) {
    Linear l = toy_linear();
    Adapter *a = toy_adapter(&l, 0);
    ck_assert_int_eq(rosa_collect_begin(a, ROSA_ACC_MEAN, NULL), PEFTC_OK);
    int64_t count;
    float *acc = rosa_accumulator(a, &count);
    ck_assert_int_eq(count, 0);
    const int64_t idx[] = {7, 100, 3, 200, 300, 450, 50, 400};
    const float val[] = {-9, 9, 4, 4, -4, 4, 1, -20};
    for (int i = 0; i < 8; i++) acc[idx[i]] = val[i];
    ck_assert_int_eq(rosa_mask_from_accumulator(a, 2), PEFTC_OK);
    int64_t got[5];
    ck_assert_int_eq(rosa_mask_flat(a, got), PEFTC_OK);
    const int64_t want[5] = {3, 7, 100, 200, 400}; /* 300 and 450 tie with 3 and 200 and lose */
    for (int i = 0; i < 5; i++) ck_assert_int_eq(got[i], want[i]);
    ck_assert_ptr_null(rosa_accumulator(a, &count));
    ck_assert_int_eq(rosa_collect_begin(a, ROSA_ACC_MEAN, NULL), PEFTC_ESTATE);
    a->ops->destroy(a);

    a = toy_adapter(&l, 0);
    ck_assert_int_eq(rosa_collect_begin(a, ROSA_ACC_MEAN_SQUARED, NULL), PEFTC_OK);
    acc = rosa_accumulator(a, &count);
    for (int i = 5; i <= 10; i++) acc[i] = 3;
    acc[511] = 3;
    acc[0] = 2.999f;
    rosa_collect_end(a);
    ck_assert_int_eq(rosa_mask_from_accumulator(a, 1), PEFTC_OK);
    ck_assert_int_eq(rosa_mask_flat(a, got), PEFTC_OK);
    for (int i = 0; i < 5; i++) ck_assert_int_eq(got[i], 5 + i);
    a->ops->destroy(a);
}
END_TEST

static void assert_err(PeftcStatus got, PeftcStatus want, const char *needle) {
    ck_assert_int_eq(got, want);
    ck_assert_msg(strstr(peftc_err_msg(), needle), "message '%s' lacks '%s'", peftc_err_msg(), needle);
}

START_TEST(mask_and_collection_errors) {
    Linear l = toy_linear();
    Adapter *a = toy_adapter(&l, R);
    int64_t four[4] = {1, 2, 3, 4}, dup[5] = {1, 2, 3, 4, 2}, far[5] = {1, 2, 3, 4, 512}, ok[5] = {9, 1, 40, 33, 2};
    assert_err(rosa_set_mask(a, four, 4), PEFTC_EINVAL, "toy.k_proj");
    assert_err(rosa_set_mask(a, four, 4), PEFTC_EINVAL, "expected 5");
    assert_err(rosa_set_mask(a, dup, 5), PEFTC_EINVAL, "listed twice");
    assert_err(rosa_set_mask(a, far, 5), PEFTC_EINVAL, "outside [0, 512)");
    ck_assert(!rosa_has_mask(a));
    assert_err(rosa_mask_flat(a, four), PEFTC_ESTATE, "no mask");
    assert_err(rosa_mask_from_accumulator(a, 1), PEFTC_ESTATE, "rosa_collect_begin");
    ck_assert_int_eq(rosa_collect_begin(a, ROSA_ACC_MEAN_SQUARED, NULL), PEFTC_OK);
    assert_err(rosa_collect_begin(a, ROSA_ACC_MEAN_SQUARED, NULL), PEFTC_ESTATE, "already collecting");
    rosa_collect_end(a);
    assert_err(rosa_collect_begin(a, ROSA_ACC_MEAN, NULL), PEFTC_EINVAL, "mean_squared");
    assert_err(rosa_collect_begin(a, (RosaAccum)7, NULL), PEFTC_EINVAL, "mode");
    assert_err(rosa_mask_from_accumulator(a, 0), PEFTC_EINVAL, "at least 1");
    int64_t count;
    rosa_accumulator(a, &count)[33] = NAN;
    assert_err(rosa_mask_from_accumulator(a, 1), PEFTC_EINVAL, "row 1, column 1 is NaN");
    ck_assert_int_eq(rosa_set_mask(a, ok, 5), PEFTC_OK); /* a mask drops the (spoilt) sum */
    ck_assert_ptr_null(rosa_accumulator(a, &count));
    assert_err(rosa_set_mask(a, ok, 5), PEFTC_ESTATE, "already has a mask");
    assert_err(rosa_collect_begin(a, ROSA_ACC_MEAN, NULL), PEFTC_ESTATE, "already has its mask");
    int32_t rp[17], ci[5];
    real_t v[5];
    assert_err(rosa_export_sparse(a, rp, ci, v), PEFTC_ESTATE, "before init");
    a->ops->destroy(a);

    Adapter *lo;
    LoraConfig lc = {.r = 2, .alpha = 4};
    ck_assert_int_eq(lora_create(&lo, backend_cpu(), &l, &lc, 0), PEFTC_OK);
    ck_assert(!rosa_is(lo) && !rosa_has_mask(lo));
    assert_err(rosa_set_mask(lo, ok, 5), PEFTC_EINVAL, "not a RoSA adapter");
    assert_err(rosa_collect_begin(lo, ROSA_ACC_MEAN, NULL), PEFTC_EINVAL, "not a RoSA adapter");
    ck_assert_ptr_null(rosa_accumulator(lo, &count));
    lo->ops->destroy(lo);
}
END_TEST

START_TEST(config_errors_name_the_problem) {
    Linear l = toy_linear();
    Adapter *a;
    RosaConfig rc = rc_of(-1, 0, 0.1);
    assert_err(rosa_create(&a, backend_cpu(), &l, &rc, 0, 0), PEFTC_EINVAL, "lora.r must be >= 0");
    const double bad[3] = {-0.1, 1.5, NAN};
    for (int i = 0; i < 3; i++) {
        rc = rc_of(R, 0, bad[i]);
        assert_err(rosa_create(&a, backend_cpu(), &l, &rc, 0, 0), PEFTC_EINVAL, "rosa.density");
    }
    rc = rc_of(0, 0, 0);
    assert_err(rosa_create(&a, backend_cpu(), &l, &rc, 0, 0), PEFTC_EINVAL, "toy.k_proj nothing to train");
    rc = rc_of(R, 1, 0.1);
    assert_err(rosa_create(&a, backend_cpu(), &l, &rc, 0, 0), PEFTC_EINVAL, "dropout");
    Backend no_csr = *backend_cpu();
    no_csr.csr_sddmm = NULL;
    rc = rc_of(R, 0, 0.1);
    assert_err(rosa_create(&a, &no_csr, &l, &rc, 0, 0), PEFTC_EINVAL,
               "rosa: the cpu backend lacks csr_sddmm (needed by rosa.density 0.1)");
    rc.density = 0; /* RoSA without S is LoRA, which any backend runs */
    ck_assert_int_eq(rosa_create(&a, &no_csr, &l, &rc, 0, 0), PEFTC_OK);
    a->ops->destroy(a);
    rc = rc_of(0, 1, 0.1); /* SpA has no dropout to check */
    ck_assert_int_eq(rosa_create(&a, backend_cpu(), &l, &rc, 0, 0), PEFTC_OK);
    ck_assert(rosa_is(a));
    ck_assert_str_eq(a->ops->kind, "rosa");
    a->ops->destroy(a);
    ck_assert_str_eq(rosa_accum_names[ROSA_ACC_MEAN_SQUARED], "mean_squared");
    ck_assert_str_eq(rosa_accum_names[ROSA_ACC_MEAN], "mean");
    ck_assert_ptr_null(rosa_accum_names[2]);
}
END_TEST

typedef struct {
    int n;
    char names[2][160];
} Names;

static PeftcStatus name_sink(void *user, const char *name, const Tensor *t) {
    (void)t;
    Names *s = user;
    ck_assert_int_lt(s->n, 2);
    snprintf(s->names[s->n++], sizeof s->names[0], "%s", name);
    return PEFTC_OK;
}

/* The mask survives a trip through flat indices (a mask file); rosa_export_sparse gives the same
 * pattern as CSR with the arena's values; export_tensors yields the LoRA pair only (none for SpA). */
START_TEST(mask_flat_and_export_round_trip) {
    Linear l = toy_linear();
    for (int r = 0; r <= R; r += R) {
        Adapter *src = toy_adapter(&l, r), *dst = toy_adapter(&l, r);
        Arena ar;
        int group;
        arena_init(&ar, backend_cpu());
        ck_assert_int_eq(arena_group(&ar, "rosa", 1e-3, 0, &group), PEFTC_OK); /* index 0, as toy_adapter says */
        ck_assert_int_eq(src->ops->register_params(src, &ar), PEFTC_OK);
        ck_assert_int_eq(arena_finalize(&ar), PEFTC_OK);
        ck_assert_int_eq(src->ops->init(src, &ar, &l, 1), PEFTC_OK);
        const int64_t shuffled[5] = {511, 40, 33, 9, 64};
        int64_t flat[5], again[5];
        ck_assert_int_eq(rosa_set_mask(src, shuffled, 5), PEFTC_OK);
        ck_assert_int_eq(rosa_mask_flat(src, flat), PEFTC_OK);
        const int64_t sorted[5] = {9, 33, 40, 64, 511};
        for (int i = 0; i < 5; i++) ck_assert_int_eq(flat[i], sorted[i]);
        ck_assert_int_eq(rosa_set_mask(dst, flat, 5), PEFTC_OK);
        ck_assert_int_eq(rosa_mask_flat(dst, again), PEFTC_OK);
        ck_assert(memcmp(flat, again, sizeof flat) == 0);
        const real_t *values = arena_param(&ar, arena_find(&ar, "toy.k_proj.rosa_values"));
        tu_fill_uniform((real_t *)values, 5, 3, -1, 1);
        int32_t rp[17], ci[5];
        real_t v[5];
        ck_assert_int_eq(rosa_export_sparse(src, rp, ci, v), PEFTC_OK);
        ck_assert_int_eq(rp[0], 0);
        ck_assert_int_eq(rp[16], 5);
        for (int row = 0; row < 16; row++)
            for (int32_t j = rp[row]; j < rp[row + 1]; j++) ck_assert_int_eq((int64_t)row * 32 + ci[j], flat[j]);
        ck_assert(memcmp(v, values, sizeof v) == 0);
        Names s = {0};
        ck_assert_int_eq(src->ops->export_tensors(src, name_sink, &s), PEFTC_OK);
        ck_assert_int_eq(s.n, r ? 2 : 0);
        if (r) {
            ck_assert_str_eq(s.names[0], "base_model.model.toy.k_proj.lora_A.weight");
            ck_assert_str_eq(s.names[1], "base_model.model.toy.k_proj.lora_B.weight");
        }
        src->ops->destroy(src);
        dst->ops->destroy(dst);
        arena_free(&ar);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("rosa");
    TCase *tc = tcase_create("rosa");
    tcase_add_test(tc, param_counts_follow_formula);
    tcase_add_test(tc, adapted_layer_is_dense_w_plus_s);
    tcase_add_test(tc, no_mask_is_plain_lora);
    tcase_add_test(tc, merge_gives_same_logits);
    tcase_add_test(tc, backward_accumulates);
    tcase_add_test(tc, collection_matches_full_finetuning);
    tcase_add_test(tc, mask_from_accumulator_topk_and_ties);
    tcase_add_test(tc, mask_and_collection_errors);
    tcase_add_test(tc, config_errors_name_the_problem);
    tcase_add_test(tc, mask_flat_and_export_round_trip);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
