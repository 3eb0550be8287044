/* Gradient checks of the Mamba ops (conv1d, SiLU, copy_2d, the selective scan), in double precision.
 *
 * As in grad_ops.c: L = sum(out * R) for a fixed random R; every backward accumulates into buffers
 * pre-filled with random values that are subtracted again before the finite-difference comparison.
 * The scan runs over T = 2 chunks + 5 steps (the chunk length read back from ssm_scan_saved), B = 2,
 * with more states than one stack block holds, so the backward recomputes full chunks, a short one
 * and several blocks. Forwards are compared with naive double loops, and what generation relies on is
 * tested directly: a sequence run in pieces that carry the conv state and the scan state equals one
 * run. Then: NULL gradients, bit-identical reruns across thread counts, and the scratch contract. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend/backend.h"
#include "tests/grad_testutil.h"
#include "tests/testutil.h"

/* The determinism test's shape: 3 groups of channels and 2 blocks of states on the CPU. */
enum { DET_B = 2, DET_T = 70, DET_D = 130, DET_N = 20 };
/* The gradient checks' shape: N above the CPU's 16-state block. */
enum { GB = 2, GD = 4, GN = 18 };

/* Steps per saved chunk, read from the op: ssm_scan_saved(1, T, 1, 1) counts chunks of T steps. */
static int chunk_len(void) {
    int T = 1;
    while (be->ssm_scan_saved(be, 1, T + 1, 1, 1) == be->ssm_scan_saved(be, 1, T, 1, 1)) T++;
    return T;
}

static int grad_T(void) { return 2 * chunk_len() + 5; }

static void setup(void) {
    be = backend_cpu();
    BackendNeed need = {.B = 2, .T = grad_T() > DET_T ? grad_T() : DET_T, .ssm_D = DET_D, .ssm_N = DET_N};
    ck_assert_int_eq(be->reserve(be, &need), PEFTC_OK);
}

/* Rows [t0, t1) of every sequence of a (B,T,cols; ld) tensor into part (B, t1-t0, cols; ld): how a
 * test feeds a sequence to the ops in pieces. */
static void rows_take(real_t *part, const real_t *full, int B, int T, int t0, int t1, int ld) {
    for (int b = 0; b < B; b++)
        be->copy_2d(be, part + (size_t)b * (t1 - t0) * ld, ld, full + ((size_t)b * T + t0) * ld, ld, t1 - t0, ld);
}

/* The inverse: part's rows back into rows [t0, t1) of every sequence of full. */
static void rows_put(real_t *full, const real_t *part, int B, int T, int t0, int t1, int ld) {
    for (int b = 0; b < B; b++)
        be->copy_2d(be, full + ((size_t)b * T + t0) * ld, ld, part + (size_t)b * (t1 - t0) * ld, ld, t1 - t0, ld);
}

static void expect_near(const real_t *got, const real_t *want, size_t n, double tol, const char *what) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)got[i] - (double)want[i]) / fmax(1.0, fabs((double)want[i])));
    printf("  %-40s max err %.2e\n", what, worst);
    ck_assert_msg(worst <= tol, "%s: max error %.3g > %.1g", what, worst, tol);
}

/* ======================= conv1d ======================= */

enum { CB = 2, CT = 14, CD = 5, CK = 4, CLDX = 2 * CD + 1 };

typedef struct {
    real_t *x;    /* (CB,CT,CD; CLDX) */
    real_t *w;    /* (CD,CK) */
    real_t *bias; /* (CD) */
    real_t *out;  /* (CB,CT,CD) */
    real_t *R;    /* (CB,CT,CD) loss weights */
} ConvCtx;

static ConvCtx conv_ctx(uint64_t key) {
    size_t nx = (size_t)CB * CT * CLDX, no = (size_t)CB * CT * CD;
    ConvCtx c = {rrand(nx, key, -1, 1), rrand((size_t)CD * CK, key + 1, -1, 1), rrand(CD, key + 2, -1, 1),
                 rbuf(no), rrand(no, key + 3, -1, 1)};
    return c;
}

static void conv_free(ConvCtx *c) { free(c->x), free(c->w), free(c->bias), free(c->out), free(c->R); }

static double conv_loss(void *p) {
    ConvCtx *c = p;
    be->conv1d_fwd(be, c->out, c->x, CLDX, c->w, c->bias, NULL, CB, CT, CD, CK);
    return dot(c->out, c->R, (size_t)CB * CT * CD);
}

/* out against the definition, inputs before t = 0 taken from state0 (B,K-1,D) or zero. */
static void conv_ref_check(const ConvCtx *c, const real_t *state0) {
    for (int b = 0; b < CB; b++)
        for (int t = 0; t < CT; t++)
            for (int d = 0; d < CD; d++) {
                double s = c->bias[d];
                for (int k = 0; k < CK; k++) {
                    int src = t - CK + 1 + k;
                    double in = src >= 0 ? c->x[((size_t)b * CT + src) * CLDX + d]
                                : state0 ? state0[((size_t)b * (CK - 1) + CK - 1 + src) * CD + d] : 0.0;
                    s += c->w[d * CK + k] * in;
                }
                ck_assert_double_eq_tol(c->out[((size_t)b * CT + t) * CD + d], s, 1e-12);
            }
}

START_TEST(test_conv1d_grad) {
    ConvCtx c = conv_ctx(10);
    conv_loss(&c);
    conv_ref_check(&c, NULL);
    Grad gx = grad_new((size_t)CB * CT * CLDX, 11), gw = grad_new((size_t)CD * CK, 12), gb = grad_new(CD, 13);
    be->conv1d_bwd(be, gx.g, gw.g, gb.g, c.R, c.x, CLDX, c.w, CB, CT, CD, CK);
    gc(conv_loss, &c, c.x, grad_added(&gx), gx.n, "conv1d x (ldx > D)");
    gc(conv_loss, &c, c.w, grad_added(&gw), gw.n, "conv1d w");
    gc(conv_loss, &c, c.bias, grad_added(&gb), gb.n, "conv1d b");
    /* NULL gradients are skipped and do not change the others. */
    Grad gx2 = grad_new(gx.n, 11);
    be->conv1d_bwd(be, gx2.g, NULL, NULL, c.R, c.x, CLDX, c.w, CB, CT, CD, CK);
    ck_assert_mem_eq(grad_added(&gx2), gx.g, gx.n * sizeof(real_t));
    grad_free(&gx), grad_free(&gx2), grad_free(&gw), grad_free(&gb);
    conv_free(&c);
}
END_TEST

/* Pieces of 2, 1, 4, 1 and 6 steps (shorter than K-1 and longer) carrying the state, from a non-zero
 * starting state, equal one call; the state then holds the last K-1 inputs. */
START_TEST(test_conv1d_state) {
    ConvCtx c = conv_ctx(20);
    size_t ns = (size_t)CB * (CK - 1) * CD;
    real_t *state0 = rrand(ns, 21, -1, 1), *state = rbuf(ns), *full = rbuf((size_t)CB * CT * CD);
    memcpy(state, state0, ns * sizeof(real_t));
    be->conv1d_fwd(be, c.out, c.x, CLDX, c.w, c.bias, state, CB, CT, CD, CK);
    conv_ref_check(&c, state0);
    memcpy(full, c.out, (size_t)CB * CT * CD * sizeof(real_t));
    for (int b = 0; b < CB; b++)
        for (int i = 0; i < CK - 1; i++)
            ck_assert_mem_eq(state + ((size_t)b * (CK - 1) + i) * CD, c.x + ((size_t)b * CT + CT - CK + 1 + i) * CLDX,
                             CD * sizeof(real_t));
    const int pieces[] = {2, 1, 4, 1, 6};
    real_t *xp = rbuf((size_t)CB * CT * CLDX), *op = rbuf((size_t)CB * CT * CD);
    memcpy(state, state0, ns * sizeof(real_t));
    memset(c.out, 0, (size_t)CB * CT * CD * sizeof(real_t));
    for (int i = 0, t0 = 0; i < 5; t0 += pieces[i++]) {
        int t1 = t0 + pieces[i];
        rows_take(xp, c.x, CB, CT, t0, t1, CLDX);
        be->conv1d_fwd(be, op, xp, CLDX, c.w, c.bias, state, CB, t1 - t0, CD, CK);
        rows_put(c.out, op, CB, CT, t0, t1, CD);
    }
    expect_near(c.out, full, (size_t)CB * CT * CD, 1e-14, "conv1d in pieces vs one call");
    free(state0), free(state), free(full), free(xp), free(op);
    conv_free(&c);
}
END_TEST

/* ======================= SiLU, copy_2d ======================= */

typedef struct {
    real_t *x, *out, *R; /* (n) each */
    size_t n;
} SiluCtx;

static double silu_loss(void *p) {
    SiluCtx *c = p;
    be->silu_fwd(be, c->out, c->x, c->n);
    return dot(c->out, c->R, c->n);
}

START_TEST(test_silu) {
    const size_t n = 257;
    SiluCtx c = {rrand(n, 30, -8, 8), rbuf(n), rrand(n, 31, -1, 1), n};
    c.x[0] = -800; /* e^-x overflows: the limit 0, not NaN */
    silu_loss(&c);
    for (size_t i = 0; i < n; i++) ck_assert_double_eq_tol(c.out[i], c.x[i] / (1 + exp(-c.x[i])), 1e-15);
    Grad gx = grad_new(n, 32);
    be->silu_bwd(be, gx.g, c.R, c.x, n);
    gc(silu_loss, &c, c.x, grad_added(&gx), n, "silu x");
    /* in place (out recomputed: the last finite difference left a perturbed entry in it) */
    silu_loss(&c);
    real_t *y = rbuf(n);
    memcpy(y, c.x, n * sizeof(real_t));
    be->silu_fwd(be, y, y, n);
    ck_assert_mem_eq(y, c.out, n * sizeof(real_t));
    free(c.x), free(c.out), free(c.R), free(y);
    grad_free(&gx);
}
END_TEST

/* A column block of a wider tensor into another, every value outside the block left as it was. */
START_TEST(test_copy_2d) {
    enum { ROWS = 7, COLS = 3, LDS = 11, LDD = 5 };
    real_t *src = rrand(ROWS * LDS, 40, -1, 1), *dst = rrand(ROWS * LDD, 41, -1, 1), *before = rbuf(ROWS * LDD);
    memcpy(before, dst, ROWS * LDD * sizeof(real_t));
    be->copy_2d(be, dst + 1, LDD, src + 6, LDS, ROWS, COLS);
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < LDD; c++) {
            int in = c >= 1 && c < 1 + COLS;
            ck_assert(dst[r * LDD + c] == (in ? src[r * LDS + 6 + c - 1] : before[r * LDD + c]));
        }
    be->copy_2d(be, dst, LDD, src, LDS, 0, COLS); /* nothing to do */
    free(src), free(dst), free(before);
}
END_TEST

/* ======================= selective scan ======================= */

typedef struct {
    int B, T, D, N, ldbc, ldz;
    real_t *u, *dt;   /* (B,T,D) */
    real_t *A_log;    /* (D,N) */
    real_t *Bm, *Cm;  /* (B,T,N; ldbc) */
    real_t *Dskip;    /* (D) */
    real_t *z;        /* (B,T,D; ldz) */
    real_t *y, *R;    /* (B,T,D): output, loss weights */
    real_t *saved;    /* (ssm_scan_saved) */
} ScanCtx;

static ScanCtx scan_ctx(int B, int T, int D, int N, uint64_t key) {
    ScanCtx c = {B, T, D, N, N + 3, D + 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    size_t btd = (size_t)B * T * D, bc = (size_t)B * T * c.ldbc;
    c.u = rrand(btd, key, -1, 1);
    c.dt = rrand(btd, key + 1, -3, 1); /* softplus in (0.05, 1.3): the range Mamba's dt init gives */
    c.A_log = rrand((size_t)D * N, key + 2, -0.5, 1.5);
    c.Bm = rrand(bc, key + 3, -1, 1);
    c.Cm = rrand(bc, key + 4, -1, 1);
    c.Dskip = rrand(D, key + 5, 0.5, 1.5);
    c.z = rrand((size_t)B * T * c.ldz, key + 6, -2, 2);
    c.y = rbuf(btd);
    c.R = rrand(btd, key + 7, -1, 1);
    c.saved = rbuf(be->ssm_scan_saved(be, B, T, D, N));
    return c;
}

static void scan_free(ScanCtx *c) {
    real_t *all[] = {c->u, c->dt, c->A_log, c->Bm, c->Cm, c->Dskip, c->z, c->y, c->R, c->saved};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

static double scan_loss(void *p) {
    ScanCtx *c = p;
    be->ssm_scan_fwd(be, c->y, c->saved, NULL, c->u, c->dt, c->A_log, c->Bm, c->Cm, c->ldbc, c->Dskip, c->z, c->ldz,
                     c->B, c->T, c->D, c->N);
    return dot(c->y, c->R, (size_t)c->B * c->T * c->D);
}

/* The recurrence written out in double, state (B,D,N) from h0 or zero, into y and hT. */
static void scan_ref(const ScanCtx *c, const real_t *h0, double *y, double *hT) {
    int D = c->D, N = c->N;
    for (int b = 0; b < c->B; b++)
        for (int d = 0; d < D; d++) {
            double *h = hT + ((size_t)b * D + d) * N;
            for (int n = 0; n < N; n++) h[n] = h0 ? h0[((size_t)b * D + d) * N + n] : 0.0;
            for (int t = 0; t < c->T; t++) {
                size_t r = (size_t)b * c->T + t;
                double x = c->dt[r * D + d], delta = x > 20 ? x : log1p(exp(x)), u = c->u[r * D + d], s = 0;
                for (int n = 0; n < N; n++) {
                    double A = -exp((double)c->A_log[(size_t)d * N + n]);
                    h[n] = exp(delta * A) * h[n] + delta * c->Bm[r * c->ldbc + n] * u;
                    s += c->Cm[r * c->ldbc + n] * h[n];
                }
                double zt = c->z[r * c->ldz + d];
                y[r * D + d] = (s + c->Dskip[d] * u) * zt / (1 + exp(-zt));
            }
        }
}

static void scan_ref_check(ScanCtx *c, const real_t *h0, const real_t *hT) {
    size_t btd = (size_t)c->B * c->T * c->D, bdn = (size_t)c->B * c->D * c->N;
    double *y = malloc(btd * sizeof *y), *h = malloc(bdn * sizeof *h);
    ck_assert(y && h);
    scan_ref(c, h0, y, h);
    for (size_t i = 0; i < btd; i++) ck_assert_double_eq_tol(c->y[i], y[i], 1e-12 * fmax(1, fabs(y[i])));
    for (size_t i = 0; hT && i < bdn; i++) ck_assert_double_eq_tol(hT[i], h[i], 1e-12 * fmax(1, fabs(h[i])));
    free(y), free(h);
}

/* Against the written-out recurrence, from zero and from a given state (returned in h). */
START_TEST(test_scan_forward) {
    ScanCtx c = scan_ctx(GB, grad_T(), GD, GN, 50);
    c.dt[3] = 25;    /* softplus is the identity above 20 */
    c.dt[7] = 1e-3;  /* and near 0 */
    scan_loss(&c);
    scan_ref_check(&c, NULL, NULL);
    size_t bdn = (size_t)GB * GD * GN;
    real_t *h0 = rrand(bdn, 51, -1, 1), *h = rbuf(bdn);
    memcpy(h, h0, bdn * sizeof(real_t));
    be->ssm_scan_fwd(be, c.y, NULL, h, c.u, c.dt, c.A_log, c.Bm, c.Cm, c.ldbc, c.Dskip, c.z, c.ldz, GB, c.T, GD, GN);
    scan_ref_check(&c, h0, h);
    free(h0), free(h);
    scan_free(&c);
}
END_TEST

/* Every input's gradient, accumulated onto random starting values. */
START_TEST(test_scan_grad) {
    ScanCtx c = scan_ctx(GB, grad_T(), GD, GN, 60);
    int T = c.T;
    /* Special dt values: far above softplus's threshold, and around 0. */
    c.dt[5] = 25;
    c.dt[(size_t)T * GD + 2] = 0;
    c.dt[9] = 1e-4;
    c.dt[(size_t)(T - 1) * GD + 1] = -1e-4;
    scan_loss(&c);
    size_t btd = (size_t)GB * T * GD, bc = (size_t)GB * T * c.ldbc, bz = (size_t)GB * T * c.ldz;
    Grad gu = grad_new(btd, 61), gdt = grad_new(btd, 62), gA = grad_new((size_t)GD * GN, 63);
    Grad gB = grad_new(bc, 64), gC = grad_new(bc, 65), gD = grad_new(GD, 66), gz = grad_new(bz, 67);
    be->ssm_scan_bwd(be, gu.g, gdt.g, gA.g, gB.g, gC.g, gD.g, gz.g, c.R, c.saved, c.u, c.dt, c.A_log, c.Bm, c.Cm,
                     c.ldbc, c.Dskip, c.z, c.ldz, GB, T, GD, GN);
    ck_assert_int_eq(be->status(be), PEFTC_OK);
    /* Every entry (padding columns included: their gradient must stay zero) but of Bm and Cm, whose
     * probes are spread over 1500 entries. */
    gc(scan_loss, &c, c.u, grad_added(&gu), btd, "scan u");
    gc(scan_loss, &c, c.dt, grad_added(&gdt), btd, "scan dt (incl. > 20 and ~0)");
    gc(scan_loss, &c, c.A_log, grad_added(&gA), gA.n, "scan A_log");
    gc_probe(scan_loss, &c, c.Bm, grad_added(&gB), bc, 1500, "scan Bm (ldbc > N)");
    gc_probe(scan_loss, &c, c.Cm, grad_added(&gC), bc, 1500, "scan Cm (ldbc > N)");
    gc(scan_loss, &c, c.Dskip, grad_added(&gD), GD, "scan Dskip");
    gc(scan_loss, &c, c.z, grad_added(&gz), bz, "scan z (ldz > D)");
    Grad *all[] = {&gu, &gdt, &gA, &gB, &gC, &gD, &gz};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) grad_free(all[i]);
    scan_free(&c);
}
END_TEST

/* Generation: the sequence in two pieces carrying h (the first crossing a chunk boundary) equals one
 * call, and so does a piece of one step. */
START_TEST(test_scan_pieces) {
    ScanCtx c = scan_ctx(GB, grad_T(), GD, GN, 70);
    int T = c.T, D = GD, ld = c.ldbc, lz = c.ldz;
    size_t btd = (size_t)GB * T * D, bdn = (size_t)GB * D * GN;
    real_t *h = rbuf(bdn), *full = rbuf(btd), *hfull = rbuf(bdn);
    be->ssm_scan_fwd(be, full, NULL, hfull, c.u, c.dt, c.A_log, c.Bm, c.Cm, ld, c.Dskip, c.z, lz, GB, T, D, GN);
    const int cuts[] = {0, chunk_len() + 3, T - 1, T};
    ScanCtx p = scan_ctx(GB, T, D, GN, 71); /* buffers for the pieces */
    for (int i = 0; i < 3; i++) {
        int t0 = cuts[i], t1 = cuts[i + 1];
        rows_take(p.u, c.u, GB, T, t0, t1, D);
        rows_take(p.dt, c.dt, GB, T, t0, t1, D);
        rows_take(p.Bm, c.Bm, GB, T, t0, t1, ld);
        rows_take(p.Cm, c.Cm, GB, T, t0, t1, ld);
        rows_take(p.z, c.z, GB, T, t0, t1, lz);
        be->ssm_scan_fwd(be, p.y, NULL, h, p.u, p.dt, c.A_log, p.Bm, p.Cm, ld, c.Dskip, p.z, lz, GB, t1 - t0, D, GN);
        rows_put(c.y, p.y, GB, T, t0, t1, D);
    }
    expect_near(c.y, full, btd, 1e-13, "scan in 3 pieces carrying h vs one call");
    expect_near(h, hfull, bdn, 1e-13, "scan final state, pieces vs one call");
    free(h), free(full), free(hfull);
    scan_free(&p);
    scan_free(&c);
}
END_TEST

/* The backward of one gradient alone (the others NULL) gives the same bits as with all of them. */
START_TEST(test_scan_null_grads) {
    ScanCtx c = scan_ctx(GB, grad_T(), GD, GN, 80);
    scan_loss(&c);
    size_t btd = (size_t)GB * c.T * GD, bc = (size_t)GB * c.T * c.ldbc, bz = (size_t)GB * c.T * c.ldz;
    size_t n[7] = {btd, btd, (size_t)GD * GN, bc, bc, GD, bz};
    real_t *all[7], *one[7];
    for (int i = 0; i < 7; i++) all[i] = rbuf(n[i]), one[i] = rbuf(n[i]);
    be->ssm_scan_bwd(be, all[0], all[1], all[2], all[3], all[4], all[5], all[6], c.R, c.saved, c.u, c.dt, c.A_log,
                     c.Bm, c.Cm, c.ldbc, c.Dskip, c.z, c.ldz, GB, c.T, GD, GN);
    for (int i = 0; i < 7; i++) {
        real_t *g[7] = {NULL};
        g[i] = one[i];
        be->ssm_scan_bwd(be, g[0], g[1], g[2], g[3], g[4], g[5], g[6], c.R, c.saved, c.u, c.dt, c.A_log, c.Bm, c.Cm,
                         c.ldbc, c.Dskip, c.z, c.ldz, GB, c.T, GD, GN);
        ck_assert_msg(memcmp(one[i], all[i], n[i] * sizeof(real_t)) == 0, "gradient %d alone differs", i);
    }
    for (int i = 0; i < 7; i++) free(all[i]), free(one[i]);
    scan_free(&c);
}
END_TEST

/* ======================= determinism, memory, scratch ======================= */

/* All seven scan gradients and conv1d's, at a size where the loops split across threads. */
static real_t **det_run(size_t *n) {
    ScanCtx c = scan_ctx(DET_B, DET_T, DET_D, DET_N, 90);
    scan_loss(&c);
    size_t btd = (size_t)DET_B * DET_T * DET_D, bc = (size_t)DET_B * DET_T * c.ldbc;
    size_t sizes[9] = {btd, btd, (size_t)DET_D * DET_N, bc, bc, DET_D, (size_t)DET_B * DET_T * c.ldz,
                       (size_t)DET_D * CK, DET_D};
    real_t **g = calloc(9, sizeof *g);
    ck_assert_ptr_nonnull(g);
    for (int i = 0; i < 9; i++) n[i] = sizes[i], g[i] = rbuf(sizes[i]);
    be->ssm_scan_bwd(be, g[0], g[1], g[2], g[3], g[4], g[5], g[6], c.R, c.saved, c.u, c.dt, c.A_log, c.Bm, c.Cm,
                     c.ldbc, c.Dskip, c.z, c.ldz, DET_B, DET_T, DET_D, DET_N);
    real_t *w = rrand((size_t)DET_D * CK, 91, -1, 1);
    be->conv1d_bwd(be, NULL, g[7], g[8], c.R, c.u, DET_D, w, DET_B, DET_T, DET_D, CK);
    free(w);
    scan_free(&c);
    return g;
}

START_TEST(test_deterministic) {
    size_t n[9];
    backend_cpu_set_threads(1);
    real_t **a = det_run(n);
    backend_cpu_set_threads(2);
    real_t **b = det_run(n), **c = det_run(n);
    backend_cpu_set_threads(0);
    for (int i = 0; i < 9; i++) {
        ck_assert_msg(memcmp(a[i], b[i], n[i] * sizeof(real_t)) == 0, "gradient %d: 1 thread vs 2 differ", i);
        ck_assert_msg(memcmp(b[i], c[i], n[i] * sizeof(real_t)) == 0, "gradient %d: reruns differ", i);
        free(a[i]), free(b[i]), free(c[i]);
    }
    free(a), free(b), free(c);
}
END_TEST

/* Saved states grow with T / chunk, not with T: at Mamba's N = 16 they are a quarter of the (B,T,D)
 * activations, against 16 times for every step's state. */
START_TEST(test_scan_saved_size) {
    int L = chunk_len();
    ck_assert_int_ge(L, 16);
    ck_assert_uint_eq(be->ssm_scan_saved(be, 2, 3 * L + 1, 8, 16), (size_t)2 * 4 * 16 * 8);
    ck_assert_uint_eq(be->ssm_scan_saved(be, 2, 0, 8, 16), 0);
    size_t big = be->ssm_scan_saved(be, 4, 4096, 1536, 16);
    ck_assert(big * 16 <= (size_t)4 * 4096 * 1536 * 16);
}
END_TEST

/* A backward beyond what reserve() sized records an error, writes nothing, and status() clears it. */
START_TEST(test_scan_scratch) {
    Backend *own = NULL;
    ck_assert_int_eq(backend_cpu_create(&own), PEFTC_OK);
    const Backend *saved_be = be;
    be = own;
    ScanCtx c = scan_ctx(GB, grad_T(), GD, GN, 100);
    scan_loss(&c);
    BackendNeed small = {.B = 1, .T = 8, .ssm_D = GD, .ssm_N = GN};
    ck_assert_int_eq(own->reserve(own, &small), PEFTC_OK);
    real_t *du = rbuf((size_t)GB * c.T * GD);
    own->ssm_scan_bwd(own, du, NULL, NULL, NULL, NULL, NULL, NULL, c.R, c.saved, c.u, c.dt, c.A_log, c.Bm, c.Cm,
                      c.ldbc, c.Dskip, c.z, c.ldz, GB, c.T, GD, GN);
    ck_assert_int_eq(own->status(own), PEFTC_ESTATE);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "ssm_scan_bwd"));
    ck_assert_double_eq(maxabs(du, (size_t)GB * c.T * GD), 0);
    ck_assert_int_eq(own->status(own), PEFTC_OK);
    BackendNeed enough = {.B = GB, .T = c.T, .ssm_D = GD, .ssm_N = GN};
    ck_assert_int_eq(own->reserve(own, &enough), PEFTC_OK);
    own->ssm_scan_bwd(own, du, NULL, NULL, NULL, NULL, NULL, NULL, c.R, c.saved, c.u, c.dt, c.A_log, c.Bm, c.Cm,
                      c.ldbc, c.Dskip, c.z, c.ldz, GB, c.T, GD, GN);
    ck_assert_int_eq(own->status(own), PEFTC_OK);
    ck_assert(maxabs(du, (size_t)GB * c.T * GD) > 0);
    free(du);
    scan_free(&c);
    be = saved_be;
    backend_free(own);
}
END_TEST

static Suite *ssm_suite(void) {
    Suite *s = suite_create("grad_ssm");
    struct {
        const char *name;
        const TTest *tests[6];
    } cases[] = {
        {"conv1d", {test_conv1d_grad, test_conv1d_state}},
        {"silu_copy", {test_silu, test_copy_2d}},
        {"scan", {test_scan_forward, test_scan_grad, test_scan_pieces, test_scan_null_grads}},
        {"contract", {test_deterministic, test_scan_saved_size, test_scan_scratch}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_set_timeout(tc, 300);
        for (int j = 0; j < 6 && cases[i].tests[j]; j++) tcase_add_test(tc, cases[i].tests[j]);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void) {
    return tu_run_suite(ssm_suite());
}
