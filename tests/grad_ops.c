/* Gradient checks of every CPU backend op, in double precision.
 *
 * For each backward: L = sum(out * R) for a fixed random R, and the analytic gradient from the op's
 * backward is compared with central finite differences of the forward at every input entry. The
 * analytic gradient is always computed into a buffer pre-filled with random values that are then
 * subtracted, so a backward that overwrites instead of accumulating fails the same check.
 * Forwards are compared with naive reference loops (finite differences cannot see a forward that is
 * consistently wrong), and the structural properties are tested directly: causality, normalised
 * probabilities, ignore-index rows, dropout masks as functions of the row key, RoPE orthogonality,
 * bit-identical reruns across thread counts. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend/backend.h"
#include "tests/grad_testutil.h"
#include "tests/testutil.h"

/* Op scratch for the largest shapes below: attention over T = 80, cross-entropy over B*T = 160 rows. */
static void setup(void) {
    be = backend_cpu();
    BackendNeed need = {.B = 2, .T = 80};
    ck_assert_int_eq(be->reserve(be, &need), PEFTC_OK);
}

/* ======================= matmul ======================= */

typedef struct {
    real_t *A, *B, *C0, *C, *R; /* A (M,K)|(K,M), B (K,N)|(N,K), C0, C, R (M,N) */
    int M, N, K, tA, tB;
    real_t alpha, beta;
} MatmulCtx;

static double matmul_loss(void *p) {
    MatmulCtx *c = p;
    memcpy(c->C, c->C0, (size_t)c->M * c->N * sizeof(real_t));
    be->matmul(be, c->C, c->A, c->B, c->M, c->N, c->K, c->tA, c->tB, c->alpha, c->beta);
    return dot(c->C, c->R, (size_t)c->M * c->N);
}

/* C = alpha op(A) op(B) + beta C0 against a triple loop. */
static void matmul_ref_check(MatmulCtx *c) {
    int M = c->M, N = c->N, K = c->K;
    matmul_loss(c);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++) {
                double a = c->tA ? c->A[(size_t)k * M + i] : c->A[(size_t)i * K + k];
                double b = c->tB ? c->B[(size_t)j * K + k] : c->B[(size_t)k * N + j];
                s += a * b;
            }
            double ref = c->alpha * s + c->beta * c->C0[(size_t)i * N + j];
            ck_assert_double_eq_tol(c->C[(size_t)i * N + j], ref, 1e-12);
        }
}

START_TEST(test_matmul) {
    int tA = _i & 1, tB = (_i >> 1) & 1, M = 5, N = 7, K = 6;
    size_t nA = (size_t)M * K, nB = (size_t)K * N, nC = (size_t)M * N;
    MatmulCtx c = {rrand(nA, 1, -1, 1), rrand(nB, 2, -1, 1), rrand(nC, 3, -1, 1), rbuf(nC),
                   rrand(nC, 4, -1, 1), M, N, K, tA, tB, 0.7, 0.5};
    matmul_ref_check(&c);
    /* dL/dop(A) = alpha R op(B)^T and dL/dop(B) = alpha op(A)^T R, themselves computed with matmul in
     * the transposed layouts, accumulating with beta = 1. */
    Grad gA = grad_new(nA, 5), gB = grad_new(nB, 6);
    if (!tA) be->matmul(be, gA.g, c.R, c.B, M, K, N, 0, !tB, c.alpha, 1);
    else be->matmul(be, gA.g, c.B, c.R, K, M, N, tB, 1, c.alpha, 1);
    if (!tB) be->matmul(be, gB.g, c.A, c.R, K, N, M, !tA, 0, c.alpha, 1);
    else be->matmul(be, gB.g, c.R, c.A, N, K, M, 1, tA, c.alpha, 1);
    char what[64];
    snprintf(what, sizeof what, "matmul A (tA=%d tB=%d)", tA, tB);
    gc(matmul_loss, &c, c.A, grad_added(&gA), (size_t)M * K, what);
    snprintf(what, sizeof what, "matmul B (tA=%d tB=%d)", tA, tB);
    gc(matmul_loss, &c, c.B, grad_added(&gB), (size_t)K * N, what);
    /* beta: dL/dC0 = beta R */
    real_t *gC = rbuf((size_t)M * N);
    be->axpy(be, gC, c.R, c.beta, (size_t)M * N);
    snprintf(what, sizeof what, "matmul C0 (beta, tA=%d tB=%d)", tA, tB);
    gc(matmul_loss, &c, c.C0, gC, (size_t)M * N, what);
    grad_free(&gA);
    grad_free(&gB);
    free(c.A), free(c.B), free(c.C0), free(c.C), free(c.R), free(gC);
}
END_TEST

START_TEST(test_blas_like) {
    size_t n = 300000; /* several sumsq chunks */
    real_t *x = rrand(n, 10, -1, 1), *y = rrand(n, 11, -1, 1), *y2 = rbuf(n);
    memcpy(y2, y, n * sizeof(real_t));
    be->axpy(be, y, x, 0.25, n);
    for (size_t i = 0; i < n; i++) ck_assert_double_eq_tol(y[i], y2[i] + 0.25 * x[i], 1e-15);
    be->scale(be, y, -3.0, n);
    for (size_t i = 0; i < n; i++) ck_assert_double_eq_tol(y[i], -3.0 * (y2[i] + 0.25 * x[i]), 1e-14);
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    ck_assert_double_eq_tol(be->sumsq(be, x, n) / ss, 1.0, 1e-13);
    ck_assert_double_eq(be->sumsq(be, x, 0), 0.0);
    be->copy(be, y2, x, n);
    ck_assert_mem_eq(y2, x, n * sizeof(real_t));
    be->zero(be, y2, n);
    ck_assert_double_eq(maxabs(y2, n), 0.0);
    real_t *a = be->alloc(be, 1000 * sizeof(real_t));
    ck_assert_ptr_nonnull(a);
    ck_assert_double_eq(maxabs(a, 1000), 0.0);
    be->free(be, a);
    /* K = 0: C = beta C, without BLAS rejecting the zero leading dimension */
    real_t C[4] = {1, 2, 3, 4};
    be->matmul(be, C, x, x, 2, 2, 0, 0, 0, 1, 0.5);
    ck_assert_double_eq(C[3], 2.0);
    free(x), free(y), free(y2);
}
END_TEST

/* ======================= bias, embedding ======================= */

typedef struct {
    real_t *x, *b, *out, *R; /* x, out, R (BT,OC); b (OC) */
    int BT, OC;
} BiasCtx;

static double bias_loss(void *p) {
    BiasCtx *c = p;
    memcpy(c->out, c->x, (size_t)c->BT * c->OC * sizeof(real_t));
    be->bias_fwd(be, c->out, c->b, c->BT, c->OC);
    return dot(c->out, c->R, (size_t)c->BT * c->OC);
}

START_TEST(test_bias) {
    int BT = 9, OC = 150; /* OC spans several column blocks, one partial */
    size_t n = (size_t)BT * OC;
    BiasCtx c = {rrand(n, 20, -1, 1), rrand(OC, 21, -1, 1), rbuf(n), rrand(n, 22, -1, 1), BT, OC};
    bias_loss(&c);
    ck_assert_double_eq(c.out[3 * OC + 7], c.x[3 * OC + 7] + c.b[7]);
    Grad gb = grad_new(OC, 23);
    be->bias_bwd(be, gb.g, c.R, BT, OC);
    gc(bias_loss, &c, c.b, grad_added(&gb), OC, "bias b");
    be->bias_bwd(be, NULL, c.R, BT, OC);
    grad_free(&gb);
    free(c.x), free(c.b), free(c.out), free(c.R);
}
END_TEST

typedef struct {
    real_t *wte, *out, *R; /* wte (V,C); out, R (BT,C) */
    const int32_t *tok;    /* (BT) */
    int BT, C;
} EmbCtx;

static double emb_loss(void *p) {
    EmbCtx *c = p;
    be->embedding_fwd(be, c->out, c->tok, c->wte, c->BT, c->C);
    return dot(c->out, c->R, (size_t)c->BT * c->C);
}

START_TEST(test_embedding) {
    enum { BT = 9, V = 11, C = 70 };
    static const int32_t tok[BT] = {3, 0, 10, 3, 5, 3, 0, 7, 10}; /* repeats scatter into one row */
    EmbCtx c = {rrand((size_t)V * C, 30, -1, 1), rbuf((size_t)BT * C), rrand((size_t)BT * C, 31, -1, 1), tok,
                BT, C};
    emb_loss(&c);
    ck_assert_mem_eq(c.out + 2 * C, c.wte + 10 * C, C * sizeof(real_t));
    Grad g = grad_new((size_t)V * C, 32);
    be->embedding_bwd(be, g.g, c.R, tok, BT, C);
    grad_added(&g);
    for (int j = 0; j < C; j++) ck_assert_double_eq(g.g[1 * C + j], 0.0); /* token 1 never appears */
    gc(emb_loss, &c, c.wte, g.g, (size_t)V * C, "embedding wte");
    grad_free(&g);
    free(c.wte), free(c.out), free(c.R);
}
END_TEST

/* ======================= rmsnorm ======================= */

typedef struct {
    real_t *x, *w, *out, *rstd, *R; /* x, out, R (BT,C); w (C); rstd (BT) */
    int BT, C;
    real_t eps;
} NormCtx;

static double norm_loss(void *p) {
    NormCtx *c = p;
    be->rmsnorm_fwd(be, c->out, c->rstd, c->x, c->w, c->BT, c->C, c->eps);
    return dot(c->out, c->R, (size_t)c->BT * c->C);
}

START_TEST(test_rmsnorm) {
    int BT = 6, C = 70;
    size_t n = (size_t)BT * C;
    NormCtx c = {rrand(n, 40, -1, 1), rrand(C, 41, 0.5, 1.5), rbuf(n), rbuf(BT), rrand(n, 42, -1, 1),
                 BT, C, 1e-5};
    norm_loss(&c);
    for (int r = 0; r < BT; r++) { /* forward against the definition */
        double ss = 0.0;
        for (int j = 0; j < C; j++) ss += c.x[r * C + j] * c.x[r * C + j];
        double rs = 1.0 / sqrt(ss / C + 1e-5);
        ck_assert_double_eq_tol(c.rstd[r], rs, 1e-12);
        for (int j = 0; j < C; j++)
            ck_assert_double_eq_tol(c.out[r * C + j], c.x[r * C + j] * rs * c.w[j], 1e-12);
    }
    Grad gx = grad_new(n, 43), gw = grad_new(C, 44);
    be->rmsnorm_bwd(be, gx.g, gw.g, c.R, c.x, c.w, c.rstd, BT, C);
    gc(norm_loss, &c, c.x, grad_added(&gx), n, "rmsnorm inp");
    gc(norm_loss, &c, c.w, grad_added(&gw), C, "rmsnorm w");
    grad_free(&gx);
    grad_free(&gw);
    free(c.x), free(c.w), free(c.out), free(c.rstd), free(c.R);
}
END_TEST

/* ======================= rope ======================= */

typedef struct {
    real_t *x, *y, *R, *ct, *st; /* x, y, R (B,T,NH,HD); ct, st (T,HD/2) */
    int B, T, NH, HD;
} RopeCtx;

static double rope_loss(void *p) {
    RopeCtx *c = p;
    size_t n = (size_t)c->B * c->T * c->NH * c->HD;
    memcpy(c->y, c->x, n * sizeof(real_t));
    be->rope_fwd(be, c->y, c->ct, c->st, NULL, c->B, c->T, c->NH, c->HD);
    return dot(c->y, c->R, n);
}

static RopeCtx rope_ctx(int B, int T, int NH, int HD, double theta, uint64_t key) {
    size_t n = (size_t)B * T * NH * HD, nt = (size_t)T * (HD / 2);
    RopeCtx c = {rrand(n, key, -1, 1), rbuf(n), rrand(n, key + 1, -1, 1), rbuf(nt), rbuf(nt), B, T, NH, HD};
    rope_tables(c.ct, c.st, T, HD, theta);
    return c;
}

static void rope_free(RopeCtx *c) { free(c->x), free(c->y), free(c->R), free(c->ct), free(c->st); }

START_TEST(test_rope_grad) {
    RopeCtx c = rope_ctx(2, 6, 3, 8, 50.0, 50); /* small theta: every pair rotates visibly */
    size_t n = (size_t)2 * 6 * 3 * 8;
    real_t *g = rbuf(n);
    memcpy(g, c.R, n * sizeof(real_t));
    be->rope_bwd(be, g, c.ct, c.st, NULL, 2, 6, 3, 8); /* in place, by contract not an accumulation */
    gc(rope_loss, &c, c.x, g, n, "rope x");
    free(g);
    rope_free(&c);
}
END_TEST

START_TEST(test_rope_props) {
    int B = 2, T = 6, NH = 3, HD = 8, half = HD / 2;
    double theta = 10000.0;
    RopeCtx c = rope_ctx(B, T, NH, HD, theta, 55);
    size_t n = (size_t)B * T * NH * HD;
    rope_loss(&c);
    /* HF rotate-half against angles computed here: pair (i, i + HD/2) at angle t * theta^(-2i/HD) */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < half; i++) {
                    size_t o = (((size_t)b * T + t) * NH + h) * HD;
                    double a = t * pow(theta, -2.0 * i / HD), x1 = c.x[o + i], x2 = c.x[o + i + half];
                    ck_assert_double_eq_tol(c.y[o + i], x1 * cos(a) - x2 * sin(a), 1e-14);
                    ck_assert_double_eq_tol(c.y[o + i + half], x2 * cos(a) + x1 * sin(a), 1e-14);
                }
    /* position 0 is the identity; norms are preserved; backward undoes forward */
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)b * T * NH * HD;
        ck_assert_mem_eq(c.y + o, c.x + o, (size_t)NH * HD * sizeof(real_t));
    }
    ck_assert_double_eq_tol(be->sumsq(be, c.y, n), be->sumsq(be, c.x, n), 1e-12);
    be->rope_bwd(be, c.y, c.ct, c.st, NULL, B, T, NH, HD);
    for (size_t i = 0; i < n; i++) ck_assert_double_eq_tol(c.y[i], c.x[i], 1e-14);
    rope_free(&c);
}
END_TEST

/* ======================= attention ======================= */

typedef struct {
    real_t *q, *k, *v, *out, *att, *R; /* q, out, R (B,T,NH,HD); k, v (B,T,NKV,HD); att (B,NH,T) */
    int B, T, NH, NKV, HD;
} AttnCtx;

static double attn_loss(void *p) {
    AttnCtx *c = p;
    be->attention_fwd(be, c->out, c->att, c->q, c->k, c->v, NULL, c->B, c->T, c->NH, c->NKV, c->HD);
    return dot(c->out, c->R, (size_t)c->B * c->T * c->NH * c->HD);
}

static AttnCtx attn_ctx(int B, int T, int NH, int NKV, int HD, uint64_t key) {
    size_t nq = (size_t)B * T * NH * HD, nkv = (size_t)B * T * NKV * HD;
    AttnCtx c = {rrand(nq, key, -1.5, 1.5), rrand(nkv, key + 1, -1.5, 1.5), rrand(nkv, key + 2, -1, 1),
                 rbuf(nq), rbuf(be->attention_saved(be, B, T, NH)), rrand(nq, key + 3, -1, 1), B, T, NH, NKV, HD};
    return c;
}

static void attn_free(AttnCtx *c) {
    free(c->q), free(c->k), free(c->v), free(c->out), free(c->att), free(c->R);
}

/* The forward against a direct per-(b,h,t) softmax. */
static void attn_ref_check(AttnCtx *c) {
    int B = c->B, T = c->T, NH = c->NH, NKV = c->NKV, HD = c->HD;
    attn_loss(c);
    double *p = malloc((size_t)T * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const real_t *qt = c->q + (((size_t)b * T + t) * NH + h) * HD;
                double mx = -INFINITY, sum = 0.0;
                for (int s = 0; s <= t; s++) {
                    const real_t *ks = c->k + (((size_t)b * T + s) * NKV + h / (NH / NKV)) * HD;
                    p[s] = dot(qt, ks, HD) / sqrt(HD);
                    mx = fmax(mx, p[s]);
                }
                for (int s = 0; s <= t; s++) sum += (p[s] = exp(p[s] - mx));
                for (int d = 0; d < HD; d++) {
                    double o = 0.0;
                    for (int s = 0; s <= t; s++)
                        o += p[s] / sum * c->v[(((size_t)b * T + s) * NKV + h / (NH / NKV)) * HD + d];
                    ck_assert_double_eq_tol(c->out[(((size_t)b * T + t) * NH + h) * HD + d], o, 1e-12);
                }
            }
    free(p);
}

static void attn_gradcheck(int B, int T, int NH, int NKV, int HD, uint64_t key) {
    AttnCtx c = attn_ctx(B, T, NH, NKV, HD, key);
    attn_ref_check(&c);
    size_t nq = (size_t)B * T * NH * HD, nkv = (size_t)B * T * NKV * HD;
    Grad gq = grad_new(nq, key + 4), gk = grad_new(nkv, key + 5), gv = grad_new(nkv, key + 6);
    attn_loss(&c);
    be->attention_bwd(be, gq.g, gk.g, gv.g, c.R, c.att, c.q, c.k, c.v, NULL, B, T, NH, NKV, HD);
    char what[64];
    snprintf(what, sizeof what, "attention q (T=%d NH=%d NKV=%d)", T, NH, NKV);
    gc(attn_loss, &c, c.q, grad_added(&gq), nq, what);
    snprintf(what, sizeof what, "attention k (T=%d NH=%d NKV=%d)", T, NH, NKV);
    gc(attn_loss, &c, c.k, grad_added(&gk), nkv, what);
    snprintf(what, sizeof what, "attention v (T=%d NH=%d NKV=%d)", T, NH, NKV);
    gc(attn_loss, &c, c.v, grad_added(&gv), nkv, what);
    /* NULL gradients are skipped and do not change the others */
    real_t *gv2 = rbuf(nkv);
    be->attention_bwd(be, NULL, NULL, gv2, c.R, c.att, c.q, c.k, c.v, NULL, B, T, NH, NKV, HD);
    for (size_t i = 0; i < nkv; i++) ck_assert_double_eq_tol(gv2[i], gv.g[i], 1e-12);
    free(gv2);
    grad_free(&gq), grad_free(&gk), grad_free(&gv);
    attn_free(&c);
}

START_TEST(test_attention_mha) { attn_gradcheck(2, 7, 3, 3, 8, 60); }
END_TEST
START_TEST(test_attention_gqa) { attn_gradcheck(2, 7, 6, 2, 8, 70); }
END_TEST
START_TEST(test_attention_mqa_tiled) { attn_gradcheck(1, 70, 2, 1, 4, 80); } /* T spans two row tiles */
END_TEST

START_TEST(test_attention_props) {
    int B = 2, T = 70, NH = 4, NKV = 2, HD = 8;
    AttnCtx c = attn_ctx(B, T, NH, NKV, HD, 90);
    attn_loss(&c);
    /* what the backward gets: the log-sum-exp of every causal row of scaled scores, computed here
     * directly in double */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const real_t *qr = c.q + (((size_t)b * T + t) * NH + h) * HD;
                double mx = -INFINITY, sc[70];
                for (int u = 0; u <= t; u++) {
                    const real_t *kr = c.k + (((size_t)b * T + u) * NKV + h / (NH / NKV)) * HD;
                    sc[u] = 0;
                    for (int d = 0; d < HD; d++) sc[u] += (double)qr[d] * (double)kr[d];
                    sc[u] /= sqrt((double)HD);
                    mx = sc[u] > mx ? sc[u] : mx;
                }
                double sum = 0;
                for (int u = 0; u <= t; u++) sum += exp(sc[u] - mx);
                ck_assert_double_eq_tol(c.att[((size_t)b * NH + h) * T + t], mx + log(sum), 1e-12);
            }
    /* causal: changing the last token's k and v leaves every earlier output bit-identical */
    size_t nq = (size_t)B * T * NH * HD;
    real_t *before = rbuf(nq);
    memcpy(before, c.out, nq * sizeof(real_t));
    for (int b = 0; b < B; b++)
        for (int j = 0; j < NKV * HD; j++) {
            c.k[((size_t)b * T + T - 1) * NKV * HD + j] += 3.0;
            c.v[((size_t)b * T + T - 1) * NKV * HD + j] -= 2.0;
        }
    attn_loss(&c);
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)b * T * NH * HD;
        ck_assert_mem_eq(c.out + o, before + o, (size_t)(T - 1) * NH * HD * sizeof(real_t));
        ck_assert(memcmp(c.out + o + (size_t)(T - 1) * NH * HD, before + o + (size_t)(T - 1) * NH * HD,
                         (size_t)NH * HD * sizeof(real_t)) != 0);
    }
    free(before);
    attn_free(&c);
}
END_TEST

/* ======================= swiglu ======================= */

typedef struct {
    real_t *gate, *up, *out, *R; /* (n) */
    size_t n;
} SwigluCtx;

static double swiglu_loss(void *p) {
    SwigluCtx *c = p;
    be->swiglu_fwd(be, c->out, c->gate, c->up, c->n);
    return dot(c->out, c->R, c->n);
}

START_TEST(test_swiglu) {
    size_t n = 60;
    SwigluCtx c = {rrand(n, 100, -5, 5), rrand(n, 101, -1, 1), rbuf(n), rrand(n, 102, -1, 1), n};
    c.gate[0] = -800; /* exp overflow must give silu -> 0, not NaN */
    swiglu_loss(&c);
    for (size_t i = 0; i < n; i++)
        ck_assert_double_eq_tol(c.out[i], c.gate[i] / (1 + exp(-c.gate[i])) * c.up[i], 1e-14);
    Grad gg = grad_new(n, 103), gu = grad_new(n, 104);
    be->swiglu_bwd(be, gg.g, gu.g, c.R, c.gate, c.up, n);
    gc(swiglu_loss, &c, c.gate, grad_added(&gg), n, "swiglu gate");
    gc(swiglu_loss, &c, c.up, grad_added(&gu), n, "swiglu up");
    be->swiglu_bwd(be, NULL, gu.g, c.R, c.gate, c.up, n);
    grad_free(&gg), grad_free(&gu);
    free(c.gate), free(c.up), free(c.out), free(c.R);
}
END_TEST

/* ======================= cross-entropy ======================= */

enum { XBT = 7, XV = 13 };
static const int32_t xent_targets[XBT] = {4, PEFTC_IGNORE_INDEX, 0, 12, PEFTC_IGNORE_INDEX, 7, 4};

typedef struct {
    real_t *logits, *probs; /* (BT,V) */
    real_t scale;
} XentCtx;

static double xent_loss(void *p) {
    XentCtx *c = p;
    int64_t nv = 0;
    return c->scale * be->xent_fwd(be, c->probs, c->logits, xent_targets, XBT, XV, &nv);
}

START_TEST(test_xent) {
    size_t n = (size_t)XBT * XV;
    XentCtx c = {rrand(n, 110, -3, 3), rbuf(n), 0.37};
    int64_t nv = -1;
    double L = be->xent_fwd(be, c.probs, c.logits, xent_targets, XBT, XV, &nv);
    ck_assert_int_eq(nv, 5);
    double ref = 0.0; /* sum over valid rows of logsumexp - logit[target] */
    for (int r = 0; r < XBT; r++) {
        double s = 0.0;
        for (int j = 0; j < XV; j++) s += exp(c.logits[r * XV + j]);
        for (int j = 0; j < XV; j++)
            ck_assert_double_eq_tol(c.probs[r * XV + j], exp(c.logits[r * XV + j]) / s, 1e-14);
        if (xent_targets[r] != PEFTC_IGNORE_INDEX) ref += log(s) - c.logits[r * XV + xent_targets[r]];
    }
    ck_assert_double_eq_tol(L, ref, 1e-12);
    Grad g = grad_new(n, 111);
    be->xent_bwd(be, g.g, c.probs, xent_targets, XBT, XV, c.scale);
    grad_added(&g);
    for (int j = 0; j < XV; j++) ck_assert_double_eq(g.g[1 * XV + j], 0.0); /* ignored rows: nothing */
    gc(xent_loss, &c, c.logits, g.g, n, "xent logits");
    /* Aliased: probs in place over logits, then dlogits over probs, gives the same gradient with the
     * ignored rows cleared rather than left holding probabilities. */
    real_t *buf = rbuf(n);
    memcpy(buf, c.logits, n * sizeof(real_t));
    ck_assert_double_eq_tol(be->xent_fwd(be, buf, buf, xent_targets, XBT, XV, &nv), L, 1e-13);
    be->xent_bwd(be, buf, buf, xent_targets, XBT, XV, c.scale);
    for (size_t i = 0; i < n; i++) ck_assert_double_eq_tol(buf[i], g.g[i], 1e-13);
    free(buf);
    grad_free(&g);
    free(c.logits), free(c.probs);
}
END_TEST

START_TEST(test_xent_stable) {
    /* logits far outside exp's range: max subtraction keeps everything finite */
    real_t logits[2 * 3] = {1000, 999, 998, -1000, -1001, -1003}, probs[6];
    int32_t tgt[2] = {1, 0};
    int64_t nv = 0;
    double L = be->xent_fwd(be, probs, logits, tgt, 2, 3, &nv);
    double l0 = log(1 + exp(-1) + exp(-2)), ref = (l0 + 1) + log(1 + exp(-1) + exp(-3));
    ck_assert_double_eq_tol(L, ref, 1e-12);
    ck_assert_int_eq(nv, 2);
    int32_t none[2] = {PEFTC_IGNORE_INDEX, PEFTC_IGNORE_INDEX};
    ck_assert_double_eq(be->xent_fwd(be, probs, logits, none, 2, 3, &nv), 0.0);
    ck_assert_int_eq(nv, 0);
}
END_TEST

/* ======================= dropout ======================= */

typedef struct {
    real_t *x, *out, *R; /* (R,C) */
    uint8_t *mask;       /* (R,C) */
    const uint64_t *keys;
    int Rr, C;
    real_t p;
} DropCtx;

static double drop_loss(void *p) {
    DropCtx *c = p;
    be->dropout_fwd(be, c->out, c->mask, c->x, c->keys, c->Rr, c->C, c->p);
    return dot(c->out, c->R, (size_t)c->Rr * c->C);
}

START_TEST(test_dropout) {
    enum { R = 5, C = 40 };
    static const uint64_t keys[R] = {11, 22, 33, 44, 55};
    size_t n = (size_t)R * C;
    DropCtx c = {rrand(n, 120, -1, 1), rbuf(n), rrand(n, 121, -1, 1), malloc(n), keys, R, C, 0.3};
    drop_loss(&c);
    Grad g = grad_new(n, 122);
    be->dropout_bwd(be, g.g, c.R, c.mask, R, C, c.p);
    gc(drop_loss, &c, c.x, grad_added(&g), n, "dropout inp (p=0.3)");
    drop_loss(&c); /* the probes left out from a perturbed x */
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t bits = rng_stream_u64(keys[i / C], (i % C) >> 1) >> (32 * (i % 2)); /* C is even */
        int drop = (bits & 0xFFFFFFFFu) < (uint64_t)((double)0.3f * 4294967296.0);
        ck_assert_int_eq(c.mask[i], !drop);
        ck_assert_double_eq_tol(c.out[i], drop ? 0.0 : c.x[i] / 0.7, 1e-15);
        dropped += drop;
    }
    ck_assert(dropped > n / 10 && dropped < n / 2);
    grad_free(&g);
    free(c.x), free(c.out), free(c.R), free(c.mask);
}
END_TEST

START_TEST(test_dropout_props) {
    enum { C = 64 };
    uint64_t keys[3] = {7, 99, 7}; /* rows 0 and 2 share a key */
    uint64_t key_alone[1] = {7};
    real_t *x = rrand(3 * C, 130, -1, 1), *y = rbuf(3 * C), *y1 = rbuf(C);
    uint8_t m[3 * C], m1[C];
    be->dropout_fwd(be, y, m, x, keys, 3, C, 0.5);
    be->dropout_fwd(be, y1, m1, x, key_alone, 1, C, 0.5); /* same key at another row position */
    ck_assert_mem_eq(m, m + 2 * C, C);
    ck_assert_mem_eq(m, m1, C);
    ck_assert(memcmp(m, m + C, C) != 0);
    be->dropout_fwd(be, y, m, x, keys, 3, C, 0.0); /* p = 0: identity, mask all ones */
    ck_assert_mem_eq(y, x, 3 * C * sizeof(real_t));
    for (int i = 0; i < 3 * C; i++) ck_assert_int_eq(m[i], 1);
    real_t *g = rbuf(3 * C);
    be->dropout_bwd(be, g, x, m, 3, C, 0.0);
    ck_assert_mem_eq(g, x, 3 * C * sizeof(real_t));
    free(x), free(y), free(y1), free(g);

    /* The drop rate is p: 64 x 1001 draws (odd width: draws are shared by pairs of columns) give a
     * standard error of 0.0018, so 0.01 is over 5 sigma. */
    enum { RR = 64, CC = 1001 };
    uint64_t rk[RR];
    for (int r = 0; r < RR; r++) rk[r] = rng_key(3, (uint64_t)r);
    real_t *xs = rrand(RR * CC, 131, -1, 1), *ys = rbuf(RR * CC);
    uint8_t *ms = malloc(RR * CC);
    be->dropout_fwd(be, ys, ms, xs, rk, RR, CC, 0.3);
    size_t dropped = 0;
    for (int i = 0; i < RR * CC; i++) dropped += !ms[i];
    ck_assert_double_eq_tol((double)dropped / (RR * CC), 0.3, 0.01);
    free(xs), free(ys), free(ms);
}
END_TEST

/* ======================= determinism ======================= */

/* Every op with a reduction or a parallel loop, at sizes where the loops actually split. */
typedef struct {
    real_t *out[9];
    size_t n[9];
    double loss, ss;
} DetRun;

static DetRun det_run(void) {
    enum { B = 2, T = 80, NH = 4, NKV = 2, HD = 16, C = 200, V = 1000 };
    size_t nq = (size_t)B * T * NH * HD, nkv = (size_t)B * T * NKV * HD, nc = (size_t)B * T * C;
    DetRun r = {{0}, {nq, nkv, nkv, (size_t)B * NH * T, nc, C, (size_t)V * C, (size_t)B * T * V, 160 * 240},
                0, 0};
    for (int i = 0; i < 9; i++) r.out[i] = rbuf(r.n[i]);
    AttnCtx a = attn_ctx(B, T, NH, NKV, HD, 140);
    attn_loss(&a);
    be->attention_bwd(be, r.out[0], r.out[1], r.out[2], a.R, a.att, a.q, a.k, a.v, NULL, B, T, NH, NKV, HD);
    memcpy(r.out[3], a.att, r.n[3] * sizeof(real_t));
    real_t *x = rrand(nc, 141, -1, 1), *w = rrand(C, 142, 0.5, 1.5), *y = rbuf(nc), *rs = rbuf(B * T);
    be->rmsnorm_fwd(be, y, rs, x, w, B * T, C, 1e-5);
    be->rmsnorm_bwd(be, r.out[4], r.out[5], y, x, w, rs, B * T, C);
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((i * 7) % 13); /* heavy repeats */
    be->embedding_bwd(be, r.out[6], x, tok, B * T, C);
    real_t *logits = rrand(r.n[7], 143, -4, 4);
    int32_t tgt[B * T];
    for (int i = 0; i < B * T; i++) tgt[i] = i % 5 == 0 ? PEFTC_IGNORE_INDEX : (i * 31) % V;
    int64_t nv;
    r.loss = be->xent_fwd(be, r.out[7], logits, tgt, B * T, V, &nv);
    be->xent_bwd(be, r.out[7], r.out[7], tgt, B * T, V, 0.01);
    r.ss = be->sumsq(be, logits, r.n[7]);
    be->matmul(be, r.out[8], x, logits, B * T, 240, C, 0, 1, 1, 0); /* big enough for OpenBLAS to thread */
    attn_free(&a);
    free(x), free(w), free(y), free(rs), free(logits);
    return r;
}

static void det_compare_free(DetRun *a, DetRun *b) {
    for (int i = 0; i < 9; i++) {
        ck_assert_msg(memcmp(a->out[i], b->out[i], a->n[i] * sizeof(real_t)) == 0, "output %d differs", i);
        free(a->out[i]), free(b->out[i]);
    }
    ck_assert(memcmp(&a->loss, &b->loss, sizeof(double)) == 0);
    ck_assert(memcmp(&a->ss, &b->ss, sizeof(double)) == 0);
}

START_TEST(test_deterministic) {
    backend_cpu_set_threads(2);
    DetRun a = det_run(), b = det_run();
    det_compare_free(&a, &b);
    backend_cpu_set_threads(1); /* and the same bits with one thread */
    DetRun c = det_run();
    backend_cpu_set_threads(2);
    DetRun d = det_run();
    det_compare_free(&c, &d);
    backend_cpu_set_threads(0);
}
END_TEST

static Suite *ops_suite(void) {
    Suite *s = suite_create("grad_ops");
    struct {
        const char *name;
        const TTest *tests[6];
    } cases[] = {
        {"blas", {test_blas_like}},
        {"bias_embedding", {test_bias, test_embedding}},
        {"rmsnorm", {test_rmsnorm}},
        {"rope", {test_rope_grad, test_rope_props}},
        {"attention",
         {test_attention_mha, test_attention_gqa, test_attention_mqa_tiled, test_attention_props}},
        {"swiglu", {test_swiglu}},
        {"xent", {test_xent, test_xent_stable}},
        {"dropout", {test_dropout, test_dropout_props}},
        {"determinism", {test_deterministic}},
    };
    TCase *mm = tcase_create("matmul");
    tcase_add_checked_fixture(mm, setup, NULL);
    tcase_add_loop_test(mm, test_matmul, 0, 4); /* the four transpose combinations */
    suite_add_tcase(s, mm);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, NULL);
        for (int j = 0; j < 6 && cases[i].tests[j]; j++) tcase_add_test(tc, cases[i].tests[j]);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void) {
    return tu_run_suite(ops_suite());
}
