/* train.precision=bf16: the bf16 bits, the CPU's matmul_bf16 against a double-precision reference over
 * bf16-rounded operands (every transpose and operand type, tiled operands), and a whole model in bf16
 * against fp32 on the transformers fixture (tiny LLaMA + PEFT LoRA): logits, loss and every LoRA
 * gradient within bf16 tolerances, base weights held in bf16. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/bf16.h"
#include "core/models/llama/llama.h"
#include "launch/session.h"
#include "tests/method_testutil.h"
#include "tests/session_testutil.h"
#include "tests/testutil.h"

/* The op rounds as f32_to_bf16 does (whose ties, NaNs and overflow test_quant checks), on every
 * element, and widening is exact. */
START_TEST(to_bf16_rounds_each_element) {
    enum { N = 4099 };
    const Backend *be = backend_cpu();
    real_t *x = malloc(N * sizeof *x);
    uint16_t *h = malloc(N * sizeof *h);
    tu_fill_uniform(x, N, 5, -300, 300);
    x[0] = FLT_MAX, x[1] = -INFINITY, x[2] = NAN, x[3] = 1e-40f; /* overflow, inf, NaN, subnormal */
    be->to_bf16(be, h, x, N);
    ck_assert_uint_eq(h[0], 0x7f80);
    ck_assert_uint_eq(h[1], 0xff80);
    ck_assert(isnan(bf16_to_f32(h[2])));
    for (int i = 3; i < N; i++) {
        ck_assert_uint_eq(h[i], f32_to_bf16(x[i]));
        if (i > 3) ck_assert(fabs(bf16_to_f32(h[i]) - x[i]) <= fabs(x[i]) * (1.0 / 256)); /* normal numbers */
    }
    free(x), free(h);
}
END_TEST

START_TEST(embedding_lookup_widens) {
    enum { V = 7, C = 5, BT = 4 };
    const Backend *be = backend_cpu();
    real_t w[V * C], out[BT * C];
    uint16_t wb[V * C];
    tu_fill_uniform(w, V * C, 9, -2, 2);
    be->to_bf16(be, wb, w, V * C);
    const int32_t tok[BT] = {3, 0, 6, 3};
    be->embedding_fwd_bf16(be, out, tok, wb, BT, C);
    for (int r = 0; r < BT; r++)
        for (int c = 0; c < C; c++) ck_assert(out[r * C + c] == bf16_to_f32(wb[tok[r] * C + c]));
}
END_TEST

/* An operand as matmul_bf16 receives it: real_t values, and their bf16 bits. */
typedef struct {
    real_t *r;
    uint16_t *h;
} Op;

static Op op_make(size_t n, uint64_t key) {
    Op o = {malloc(n * sizeof(real_t)), malloc(n * sizeof(uint16_t))};
    tu_fill_uniform(o.r, n, key, -1, 1);
    backend_cpu()->to_bf16(backend_cpu(), o.h, o.r, n);
    return o;
}

static void op_free(Op *o) { free(o->r), free(o->h); }

typedef struct {
    int M, N, K, tA, tB;
    double alpha, beta;
} Mm;

static float a_at(const Op *a, const Mm *p, int i, int k) {
    return bf16_to_f32(a->h[p->tA ? (size_t)k * p->M + i : (size_t)i * p->K + k]);
}

static float b_at(const Op *b, const Mm *p, int k, int j) {
    return bf16_to_f32(b->h[p->tB ? (size_t)j * p->K + k : (size_t)k * p->N + j]);
}

/* Entry (i,j) of alpha bf16(A) bf16(B) + beta C0 in double; *mag receives the sum of the terms'
 * magnitudes, the scale of fp32 rounding in any order of summation. */
static double ref_entry(const Op *a, const Op *b, const real_t *C0, const Mm *p, int i, int j, double *mag) {
    double s = 0, m = 0;
    for (int k = 0; k < p->K; k++) {
        double t = (double)a_at(a, p, i, k) * (double)b_at(b, p, k, j);
        s += t;
        m += fabs(t);
    }
    *mag = fabs(p->alpha) * m + fabs(p->beta * C0[(size_t)i * p->N + j]);
    return p->alpha * s + p->beta * C0[(size_t)i * p->N + j];
}

/* matmul_bf16 with operand types ta, tb on problem p, checked at every entry (stride 1) or a sample.
 * With short sums (small K) it must also differ from the fp32 product of the unrounded operands by
 * bf16's input rounding; over long ones the rounding errors average out below fp32's own. */
static void check_mm(const Mm *p, DType ta, DType tb, int stride) {
    const Backend *be = backend_cpu();
    BackendNeed need = {.bf16 = 1};
    ck_assert_int_eq(be->reserve(be, &need), PEFTC_OK);
    size_t nc = (size_t)p->M * p->N;
    Op a = op_make((size_t)p->M * p->K, 11), b = op_make((size_t)p->K * p->N, 12);
    real_t *C0 = malloc(nc * sizeof *C0), *C = malloc(nc * sizeof *C), *F = malloc(nc * sizeof *F);
    tu_fill_uniform(C0, nc, 13, -1, 1);
    memcpy(C, C0, nc * sizeof *C);
    memcpy(F, C0, nc * sizeof *F);
    be->matmul_bf16(be, C, ta == DT_BF16 ? (const void *)a.h : a.r, ta, tb == DT_BF16 ? (const void *)b.h : b.r, tb,
                    p->M, p->N, p->K, p->tA, p->tB, (real_t)p->alpha, (real_t)p->beta);
    ck_assert_int_eq(be->status(be), PEFTC_OK);
    be->matmul(be, F, a.r, b.r, p->M, p->N, p->K, p->tA, p->tB, (real_t)p->alpha, (real_t)p->beta);
    double worst = 0, off_fp32 = 0;
    for (size_t e = 0; e < nc; e += (size_t)stride) {
        int i = (int)(e / (size_t)p->N), j = (int)(e % (size_t)p->N);
        double mag, want = ref_entry(&a, &b, C0, p, i, j, &mag);
        worst = fmax(worst, fabs(C[e] - want) / mag);
        off_fp32 = fmax(off_fp32, fabs(F[e] - want) / mag);
    }
    /* fp32 sums of K terms: a few K x 2^-24 at worst, far below bf16's 2^-8 input rounding, which
     * the fp32 matmul of the unrounded operands shows. */
    ck_assert_msg(worst < 1e-5, "M %d N %d K %d tA %d tB %d types %d/%d: rel err %.3g", p->M, p->N, p->K, p->tA, p->tB,
                  (int)ta, (int)tb, worst);
    if (p->K < 100) ck_assert_msg(off_fp32 > 1e-4, "the fp32 product is as close (%.3g): the operands were not rounded", off_fp32);
    op_free(&a), op_free(&b);
    free(C0), free(C), free(F);
}

START_TEST(matmul_matches_rounded_reference) {
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++) {
            Mm p = {37, 29, 45, tA, tB, 0.5, 1.0};
            check_mm(&p, DT_REAL, DT_REAL, 1);
            check_mm(&p, DT_REAL, DT_BF16, 1);
            check_mm(&p, DT_BF16, DT_BF16, 1);
            Mm q = {64, 48, 16, tA, tB, 1.0, 0.0}; /* beta 0: C's old values must not leak in */
            check_mm(&q, DT_REAL, DT_BF16, 1);
        }
}
END_TEST

/* Operands past one 4M-element tile on both sides: A's rows and B's columns go in several tiles. */
START_TEST(matmul_tiles_large_operands) {
    Mm p = {300, 260, 40000, 0, 1, 1.0, 1.0};
    check_mm(&p, DT_REAL, DT_BF16, 97);
    Mm q = {300, 260, 40000, 1, 0, 2.0, 0.0};
    check_mm(&q, DT_REAL, DT_REAL, 89);
}
END_TEST

/* logits (BT,V), mean loss and every LoRA gradient of one pass over the fixture batch. */
typedef struct {
    real_t *logits, *grads;
    double loss;
} Pass;

static Pass run_pass(Session *s, const int32_t *tok, const int32_t *tgt, int B, int T) {
    LlamaModel *m = llama_of(s->model);
    ck_assert_int_eq(llama_reserve(m, B, T), PEFTC_OK);
    size_t nl = (size_t)B * T * m->cfg.vocab, ng = s->arena.numel;
    Pass p = {malloc(nl * sizeof(real_t)), malloc(ng * sizeof(real_t)), 0};
    int64_t nv;
    ck_assert_int_eq(llama_forward(m, tok, NULL, NULL, NULL, NULL, 0, B, T, NULL, NULL), PEFTC_OK);
    memcpy(p.logits, m->acts.logits, nl * sizeof(real_t));
    memset(s->arena.grads, 0, ng * sizeof(real_t));
    ck_assert_int_eq(llama_forward(m, tok, tgt, NULL, NULL, NULL, 1, B, T, &p.loss, &nv), PEFTC_OK);
    llama_backward(m, tok, tgt, NULL, (real_t)(1.0 / (double)nv));
    ck_assert_int_eq(s->model->be->status(s->model->be), PEFTC_OK);
    p.loss /= (double)nv;
    memcpy(p.grads, s->arena.grads, ng * sizeof(real_t));
    return p;
}

static double rel_err(const real_t *a, const real_t *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / fmax(s, 1e-300);
}

START_TEST(model_in_bf16_tracks_fp32) {
    enum { B = 2, T = 12 };
    static Session s;
    tu_open_hf_tiny(&s, PEFTC_FIXTURE_DIR "/hf_tiny_lora");
    LlamaModel *m = llama_of(s.model);
    int V = m->cfg.vocab;
    int32_t tok[B * T], tgt[B * T];
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)((i * 37 + 11) % V);
        tgt[i] = i % 5 == 0 ? PEFTC_IGNORE_INDEX : (int32_t)((i * 53 + 7) % V);
    }
    size_t fp32_bytes = s.model->ops->base_bytes(s.model);
    Pass f = run_pass(&s, tok, tgt, B, T);
    ck_assert_int_eq(s.model->ops->use_bf16(s.model), PEFTC_OK);
    Pass h = run_pass(&s, tok, tgt, B, T);

    /* The base is held in bf16: every projection and the (tied) embedding, the norms stay fp32. */
    for (int i = 0; i < s.model->n_linears; i++) ck_assert(s.model->linears[i]->Wb && !s.model->linears[i]->W);
    ck_assert(m->wte_b && !m->wte && m->layers[0].ln1_w);
    /* and the layers' matmul inputs were kept for the backward in bf16 */
    ck_assert(m->acts.lowp && m->acts.saved16);
    size_t bf16_bytes = s.model->ops->base_bytes(s.model);
    ck_assert_msg(bf16_bytes < fp32_bytes * 0.51, "base %zu bytes in bf16, %zu in fp32", bf16_bytes, fp32_bytes);

    /* bf16 keeps 8 bits of mantissa: each matmul input moves by up to 2^-9 (2e-3) relative. Through
     * the fixture's two layers and its head that stays within 5e-2 (max-norm relative) of fp32 for the
     * logits and every LoRA gradient (measured: 1.9e-2 and 4.5e-2 at worst) and within 2e-3 for the
     * mean loss (2.8e-4). A wrong transpose or operand is off by O(1); an unrounded one is exact. */
    double el = rel_err(h.logits, f.logits, (size_t)B * T * V), eg = 0;
    printf("bf16 vs fp32: logits %.2e, loss %.8f vs %.8f (%.2e relative)\n", el, h.loss, f.loss,
           fabs(h.loss - f.loss) / f.loss);
    for (int i = 0; i < s.arena.n_entries; i++) {
        const ArenaEntry *en = &s.arena.entries[i];
        size_t off = en->offset;
        double e = rel_err(h.grads + off, f.grads + off, en->numel);
        ck_assert_msg(e < 5e-2, "%s: bf16 gradient off fp32 by %.3g relative", en->name, e);
        eg = fmax(eg, e);
    }
    printf("worst LoRA gradient %.2e\n", eg);

    ck_assert_msg(el < 5e-2 && el > 1e-6, "logits off by %.3g", el);
    ck_assert_msg(fabs(h.loss - f.loss) < 2e-3 * f.loss && h.loss != f.loss, "loss %.8f, fp32 %.8f", h.loss, f.loss);
    free(f.logits), free(f.grads), free(h.logits), free(h.grads);
    session_close(&s);
}
END_TEST

static Suite *bf16_suite(void) {
    Suite *s = suite_create("bf16");
    TCase *tc = tcase_create("bf16");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, to_bf16_rounds_each_element);
    tcase_add_test(tc, embedding_lookup_widens);
    tcase_add_test(tc, matmul_matches_rounded_reference);
    tcase_add_test(tc, matmul_tiles_large_operands);
    tcase_add_test(tc, model_in_bf16_tracks_fp32);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(bf16_suite()); }
