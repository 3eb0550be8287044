/* Packed rows (data.packing), in double precision.
 *
 * Ops: attention with segment ids against a direct masked softmax and central differences, and equal
 * to running each segment of a row as its own sequence (outputs, log-sum-exps and dq, dk, dv); RoPE
 * with positions against the angles computed here, undone by its backward, and its gradient.
 * Model: K examples of different lengths as K unpacked rows and as the packer's fewer rows give the same
 * summed loss, target count and every gradient (LoRA with dropout, and full fine-tuning), while the
 * same packed rows without their segment ids do not. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/method.h"
#include "core/models/llama/llama.h"
#include "core/train/packing.h"
#include "tests/grad_testutil.h"
#include "tests/method_testutil.h"
#include "tests/model_testutil.h"

static void setup(void) {
    be = backend_cpu();
    BackendNeed need = {.B = 8, .T = 24, .NH = 4};
    ck_assert_int_eq(be->reserve(be, &need), PEFTC_OK);
}

/* ======================= attention ======================= */

enum { AB = 2, AT = 21, ANH = 4, ANKV = 2, AHD = 8 };

/* Row 0: examples of 7, 9 and 3 tokens, then 2 of padding in a segment of its own (as the packer lays
 * rows out); row 1: interleaved ids, since the op's contract does not need segments to be contiguous. */
static int32_t att_seg[AB * AT];
static const int row0_cuts[] = {0, 7, 16, 19, AT};

static void make_segments(void) {
    for (int t = 0; t < AT; t++) {
        att_seg[t] = t < 7 ? 0 : t < 16 ? 1 : t < 19 ? 2 : 3;
        att_seg[AT + t] = (t * 7) % 3;
    }
}

typedef struct {
    real_t *q, *k, *v, *out, *att, *R; /* q, out, R (B,T,NH,HD); k, v (B,T,NKV,HD); att (B,NH,T) */
    const int32_t *seg;                /* (B,T) or NULL */
    int B, T;
} Att;

static double att_loss(void *p) {
    Att *c = p;
    be->attention_fwd(be, c->out, c->att, c->q, c->k, c->v, c->seg, c->B, c->T, ANH, ANKV, AHD);
    return dot(c->out, c->R, (size_t)c->B * c->T * ANH * AHD);
}

static Att att_new(int B, int T, const int32_t *seg, uint64_t key) {
    size_t nq = (size_t)B * T * ANH * AHD, nkv = (size_t)B * T * ANKV * AHD;
    return (Att){rrand(nq, key, -1.5, 1.5), rrand(nkv, key + 1, -1.5, 1.5), rrand(nkv, key + 2, -1, 1), rbuf(nq),
                 rbuf((size_t)B * ANH * T),  rrand(nq, key + 3, -1, 1),     seg, B, T};
}

static void att_free(Att *c) { free(c->q), free(c->k), free(c->v), free(c->out), free(c->att), free(c->R); }

/* Query t of row b against key s: visible iff s <= t in the same segment. */
static int visible(const Att *c, int b, int s, int t) {
    return s <= t && (!c->seg || c->seg[(size_t)b * c->T + s] == c->seg[(size_t)b * c->T + t]);
}

/* Row (b,h,t) of the forward and its log-sum-exp against a direct masked softmax. */
static void att_ref_row(const Att *c, int b, int h, int t) {
    int T = c->T, g = h / (ANH / ANKV);
    const real_t *qt = c->q + (((size_t)b * T + t) * ANH + h) * AHD;
    double p[AT], mx = -INFINITY, sum = 0;
    for (int s = 0; s < T; s++) {
        const real_t *ks = c->k + (((size_t)b * T + s) * ANKV + g) * AHD; /* (HD) */
        p[s] = visible(c, b, s, t) ? dot(qt, ks, AHD) / sqrt(AHD) : -INFINITY;
        mx = fmax(mx, p[s]);
    }
    for (int s = 0; s < T; s++) sum += (p[s] = exp(p[s] - mx));
    ck_assert_double_eq_tol(c->att[((size_t)b * ANH + h) * T + t], mx + log(sum), 1e-12);
    for (int d = 0; d < AHD; d++) {
        double o = 0;
        for (int s = 0; s < T; s++) o += p[s] / sum * c->v[(((size_t)b * T + s) * ANKV + g) * AHD + d];
        ck_assert_double_eq_tol(c->out[(((size_t)b * T + t) * ANH + h) * AHD + d], o, 1e-12);
    }
}

START_TEST(attention_segments_forward_and_gradient) {
    make_segments();
    Att c = att_new(AB, AT, att_seg, 10);
    att_loss(&c);
    for (int b = 0; b < AB; b++)
        for (int h = 0; h < ANH; h++)
            for (int t = 0; t < AT; t++) att_ref_row(&c, b, h, t);
    size_t nq = (size_t)AB * AT * ANH * AHD, nkv = (size_t)AB * AT * ANKV * AHD;
    Grad gq = grad_new(nq, 14), gk = grad_new(nkv, 15), gv = grad_new(nkv, 16);
    be->attention_bwd(be, gq.g, gk.g, gv.g, c.R, c.att, c.q, c.k, c.v, att_seg, AB, AT, ANH, ANKV, AHD);
    gc(att_loss, &c, c.q, grad_added(&gq), nq, "attention q with segments");
    gc(att_loss, &c, c.k, grad_added(&gk), nkv, "attention k with segments");
    gc(att_loss, &c, c.v, grad_added(&gv), nkv, "attention v with segments");
    grad_free(&gq), grad_free(&gk), grad_free(&gv);
    att_free(&c);
}
END_TEST

/* rows [a, b) of one (T, width) row of src into dst (b - a, width) */
static void copy_rows(real_t *dst, const real_t *src, int a, int b, int width) {
    memcpy(dst, src + (size_t)a * width, (size_t)(b - a) * width * sizeof(real_t));
}

static void expect_rows(const real_t *packed, const real_t *alone, int a, int b, int width, const char *what) {
    for (size_t i = 0; i < (size_t)(b - a) * width; i++)
        ck_assert_msg(fabs(packed[(size_t)a * width + i] - alone[i]) <= 1e-12, "%s: position %d differs: %g vs %g",
                      what, a + (int)(i / width), packed[(size_t)a * width + i], alone[i]);
}

/* Segment [a, b) of row 0 run as a sequence of its own gives what the packed call gave it. */
static void check_segment_alone(const Att *p, const real_t *dq, const real_t *dk, const real_t *dv, int a, int b) {
    int n = b - a, QW = ANH * AHD, KW = ANKV * AHD;
    Att s = att_new(1, n, NULL, 90);
    copy_rows(s.q, p->q, a, b, QW), copy_rows(s.k, p->k, a, b, KW), copy_rows(s.v, p->v, a, b, KW);
    copy_rows(s.R, p->R, a, b, QW);
    att_loss(&s);
    real_t *sq = rbuf((size_t)n * QW), *sk = rbuf((size_t)n * KW), *sv = rbuf((size_t)n * KW);
    be->attention_bwd(be, sq, sk, sv, s.R, s.att, s.q, s.k, s.v, NULL, 1, n, ANH, ANKV, AHD);
    expect_rows(p->out, s.out, a, b, QW, "out");
    for (int h = 0; h < ANH; h++)
        for (int t = 0; t < n; t++)
            ck_assert_double_eq_tol(p->att[(size_t)h * p->T + a + t], s.att[(size_t)h * n + t], 1e-12);
    expect_rows(dq, sq, a, b, QW, "dq");
    expect_rows(dk, sk, a, b, KW, "dk");
    expect_rows(dv, sv, a, b, KW, "dv");
    free(sq), free(sk), free(sv);
    att_free(&s);
}

START_TEST(attention_segments_equal_separate_sequences) {
    make_segments();
    Att c = att_new(AB, AT, att_seg, 20);
    att_loss(&c);
    size_t nq = (size_t)AB * AT * ANH * AHD, nkv = (size_t)AB * AT * ANKV * AHD;
    real_t *dq = rbuf(nq), *dk = rbuf(nkv), *dv = rbuf(nkv);
    be->attention_bwd(be, dq, dk, dv, c.R, c.att, c.q, c.k, c.v, att_seg, AB, AT, ANH, ANKV, AHD);
    for (int i = 0; i + 1 < (int)(sizeof row0_cuts / sizeof row0_cuts[0]); i++)
        check_segment_alone(&c, dq, dk, dv, row0_cuts[i], row0_cuts[i + 1]);
    free(dq), free(dk), free(dv);
    att_free(&c);
}
END_TEST

/* ======================= RoPE ======================= */

enum { RB = 2, RT = 6, RNH = 3, RHD = 8 };
static const int32_t rope_pos[RB * RT] = {0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2, 3};

typedef struct {
    real_t *x, *y, *R, *ct, *st; /* x, y, R (B,T,NH,HD); ct, st (T, HD/2) */
} Rope;

static double rope_loss(void *p) {
    Rope *c = p;
    size_t n = (size_t)RB * RT * RNH * RHD;
    memcpy(c->y, c->x, n * sizeof(real_t));
    be->rope_fwd(be, c->y, c->ct, c->st, rope_pos, RB, RT, RNH, RHD);
    return dot(c->y, c->R, n);
}

START_TEST(rope_positions) {
    size_t n = (size_t)RB * RT * RNH * RHD, nt = (size_t)RT * (RHD / 2);
    double theta = 50.0; /* small: every pair turns visibly */
    Rope c = {rrand(n, 30, -1, 1), rbuf(n), rrand(n, 31, -1, 1), rbuf(nt), rbuf(nt)};
    rope_tables(c.ct, c.st, RT, RHD, theta);
    rope_loss(&c);
    for (int bt = 0; bt < RB * RT; bt++)
        for (int h = 0; h < RNH; h++)
            for (int i = 0; i < RHD / 2; i++) {
                size_t o = ((size_t)bt * RNH + h) * RHD;
                double a = rope_pos[bt] * pow(theta, -2.0 * i / RHD), x1 = c.x[o + i], x2 = c.x[o + i + RHD / 2];
                ck_assert_double_eq_tol(c.y[o + i], x1 * cos(a) - x2 * sin(a), 1e-14);
                ck_assert_double_eq_tol(c.y[o + i + RHD / 2], x2 * cos(a) + x1 * sin(a), 1e-14);
            }
    real_t *g = rbuf(n);
    memcpy(g, c.y, n * sizeof(real_t));
    be->rope_bwd(be, g, c.ct, c.st, rope_pos, RB, RT, RNH, RHD);
    for (size_t i = 0; i < n; i++) ck_assert_double_eq_tol(g[i], c.x[i], 1e-14);
    memcpy(g, c.R, n * sizeof(real_t));
    be->rope_bwd(be, g, c.ct, c.st, rope_pos, RB, RT, RNH, RHD); /* in place, by contract */
    gc(rope_loss, &c, c.x, g, n, "rope x with positions");
    free(g), free(c.x), free(c.y), free(c.R), free(c.ct), free(c.st);
}
END_TEST

/* ======================= the model ======================= */

/* K examples of different lengths; example k has LENS[k] positions of tokens and next-token targets,
 * the first target ignored (a prompt) and the last trained. */
enum { K = 5, MT = 8 };
static const int LENS[K] = {7, 3, 5, 2, 4};

static PeftcStatus ex_get(const Dataset *ds, Split split, int64_t id, int32_t *tokens, int32_t *targets, int T) {
    (void)ds, (void)split;
    for (int t = 0; t < T; t++) {
        int in = t < LENS[id];
        tokens[t] = in ? (int32_t)(rng_u64(rng_key(3, (uint64_t)id), (uint64_t)t) % 19) : 0;
        targets[t] = in && t > 0 ? (int32_t)(rng_u64(rng_key(4, (uint64_t)id), (uint64_t)t) % 19) : PEFTC_IGNORE_INDEX;
    }
    return PEFTC_OK;
}

static int ex_span(const Dataset *ds, Split split, int64_t id, int T) {
    (void)ds, (void)split;
    return LENS[id] < T ? LENS[id] : T;
}

static int64_t ex_size(const Dataset *ds, Split split) {
    (void)ds;
    return split == SPLIT_TRAIN ? K : 0;
}

static Dataset examples = {.name = "five", .size = ex_size, .get = ex_get, .span = ex_span};

/* A batch of R rows: the K examples one per row, or the packer's windows. */
typedef struct {
    int R;
    int32_t tok[K * MT], tgt[K * MT], seg[K * MT], pos[K * MT];
    int64_t sample[K * MT];
    uint64_t keys[K * MT];
} Batch;

/* Dropout keyed by (example, position in it), as the trainer keys it, so both layouts draw alike. */
static void key_rows(Batch *b) {
    for (int i = 0; i < b->R * MT; i++) b->keys[i] = rng_key(rng_key(77, (uint64_t)b->sample[i]), (uint64_t)b->pos[i]);
}

static void unpacked_batch(Batch *b) {
    b->R = K;
    for (int k = 0; k < K; k++) {
        ck_assert_int_eq(ex_get(&examples, SPLIT_TRAIN, k, b->tok + k * MT, b->tgt + k * MT, MT), PEFTC_OK);
        for (int t = 0; t < MT; t++) b->seg[k * MT + t] = 0, b->pos[k * MT + t] = t, b->sample[k * MT + t] = k;
    }
    key_rows(b);
}

static void packed_batch(Batch *b) {
    Packing p;
    ck_assert_int_eq(packing_build(&p, &examples, SPLIT_TRAIN, K, MT), PEFTC_OK);
    ck_assert_int_eq(p.n, 3); /* 7 | 5 3 | 4 2: three rows instead of five */
    b->R = (int)p.n;
    for (int w = 0; w < b->R; w++)
        ck_assert_int_eq(packing_fill_row(&p, &examples, SPLIT_TRAIN, w, b->tok + w * MT, b->tgt + w * MT,
                                          b->seg + w * MT, b->pos + w * MT, b->sample + w * MT),
                         PEFTC_OK);
    packing_free(&p);
    key_rows(b);
}

typedef struct {
    double loss;
    int64_t n_valid;
    real_t *grads; /* (arena numel) */
} PassResult;

/* Forward and backward of batch b with layout seg, pos (both NULL, or (R, MT) each) from zeroed
 * gradients. */
static PassResult run_pass(LlamaModel *m, Arena *a, const Batch *b, const int32_t *seg, const int32_t *pos) {
    PassResult r = {0, 0, rbuf(a->numel)};
    ck_assert_int_eq(llama_reserve(m, b->R, MT), PEFTC_OK);
    a->be->zero(a->be, a->grads, a->numel);
    ck_assert_int_eq(llama_forward(m, b->tok, b->tgt, seg, pos, b->keys, 1, b->R, MT, &r.loss, &r.n_valid), PEFTC_OK);
    llama_backward(m, b->tok, b->tgt, b->keys, 1);
    memcpy(r.grads, a->grads, a->numel * sizeof(real_t));
    return r;
}

/* Packed equals unpacked for every arena tensor; the same packed rows with one segment per row change
 * the loss, so the comparison is not vacuous. (Positions running on across a row's examples would not:
 * RoPE scores depend only on t - s, which a shift within a segment keeps; restarting them matches the
 * unpacked rows' rounding and keeps every position inside the tables.) */
static void expect_packed_equal(MethodConfig mc) {
    LlamaModel m;
    Arena a;
    LlamaConfig cfg = tu_tiny_config(0, 1);
    ck_assert_int_eq(llama_create(&m, backend_cpu(), &cfg, 11, 0.3), PEFTC_OK);
    arena_init(&a, backend_cpu());
    ck_assert_int_eq(method_attach(&m.base, &a, &mc), PEFTC_OK);
    ck_assert_int_eq(arena_finalize(&a), PEFTC_OK);
    ck_assert_int_eq(method_init(&m.base, &a, &mc, 3), PEFTC_OK);
    if (mc.desc == method_find("lora")) tu_fill_uniform(a.params, a.numel, 99, -0.5, 0.5); /* B != 0 */
    Batch u, p;
    unpacked_batch(&u);
    packed_batch(&p);
    PassResult ru = run_pass(&m, &a, &u, NULL, NULL), rp = run_pass(&m, &a, &p, p.seg, p.pos);
    ck_assert_int_eq(rp.n_valid, ru.n_valid);
    ck_assert_double_eq_tol(rp.loss, ru.loss, 1e-12 * fabs(ru.loss));
    for (int i = 0; i < a.n_entries; i++) {
        const ArenaEntry *e = &a.entries[i];
        double scale = maxabs(ru.grads + e->offset, e->numel);
        ck_assert_msg(scale > 0, "%s: zero gradient", e->name);
        for (size_t j = 0; j < e->numel; j++)
            ck_assert_msg(fabs(rp.grads[e->offset + j] - ru.grads[e->offset + j]) <= 1e-11 * scale,
                          "%s[%zu]: packed %.15g, unpacked %.15g", e->name, j, rp.grads[e->offset + j],
                          ru.grads[e->offset + j]);
    }
    int32_t one_seg[K * MT] = {0};
    PassResult no_seg = run_pass(&m, &a, &p, one_seg, p.pos);
    ck_assert_double_gt(fabs(no_seg.loss - ru.loss), 1e-6);
    free(ru.grads), free(rp.grads), free(no_seg.grads);
    llama_free(&m);
    arena_free(&a);
}

START_TEST(model_lora_packed_equals_unpacked) {
    MethodConfig mc = tu_method("lora");
    *tu_lora(&mc) = (LoraConfig){.r = 2, .alpha = 4, .dropout = 0.2};
    tu_targets(&mc, LORA_T_ALL);
    expect_packed_equal(mc);
}
END_TEST

START_TEST(model_full_packed_equals_unpacked) { expect_packed_equal(tu_method("full")); }
END_TEST

int main(void) {
    Suite *s = suite_create("grad_packing");
    TCase *tc = tcase_create("packing");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, attention_segments_forward_and_gradient);
    tcase_add_test(tc, attention_segments_equal_separate_sequences);
    tcase_add_test(tc, rope_positions);
    tcase_add_test(tc, model_lora_packed_equals_unpacked);
    tcase_add_test(tc, model_full_packed_equals_unpacked);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
