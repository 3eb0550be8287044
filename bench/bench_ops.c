/* Milliseconds per call of the CPU backend's heavy ops at SmolLM2-135M's shape, and of the selective
 * scan at a small Mamba's (hidden 256: D = 512 channels, N = 16 states).
 *
 * usage: bench_ops [threads] [reps] [only]   (threads <= 0: all cores; default reps 5; only: run just the
 * benchmarks whose name contains this)
 * Prints the best and the mean of `reps` timed calls after one warm-up call. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend/backend.h"
#include "core/base/rng.h"

enum { B = 4, T = 256, C = 576, NH = 9, NKV = 3, HD = 64, I = 1536, V = 49152, BT = B * T };
/* The scan's shape: a Mamba with hidden 256 trained on micro-batches of 8 sequences of 256 tokens. */
enum { SB = 8, ST = 256, SD = 512, SN = 16 };

static const Backend *be;
static const char *only; /* run just the benchmarks whose name contains this, or all when NULL */

static real_t *buf(size_t n, uint64_t key, double scale) {
    real_t *p = be->alloc(be, n * sizeof(real_t));
    if (!p) {
        fprintf(stderr, "bench_ops: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (real_t)(scale * (2.0 * rng_uniform(key, i) - 1.0));
    return p;
}

typedef void (*bench_fn)(void *ctx);

static void bench(const char *name, bench_fn f, void *ctx, int reps, double gflop) {
    if (only && !strstr(name, only)) return;
    f(ctx); /* warm-up: first-touch pages, BLAS buffers, thread pools */
    double best = 1e30, total = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = omp_get_wtime();
        f(ctx);
        double dt = omp_get_wtime() - t0;
        best = dt < best ? dt : best;
        total += dt;
    }
    printf("%-44s best %9.3f ms   mean %9.3f ms", name, best * 1e3, total / reps * 1e3);
    if (gflop > 0) printf("   %6.1f GFLOP/s", gflop / best);
    printf("\n");
    fflush(stdout);
}

typedef struct {
    real_t *q, *k, *v, *out, *att, *dout, *dq, *dk, *dv; /* q-like (BT,NH*HD), kv-like (BT,NKV*HD) */
} AttnBuf;

static void attn_fwd(void *p) {
    AttnBuf *a = p;
    be->attention_fwd(be, a->out, a->att, a->q, a->k, a->v, NULL, B, T, NH, NKV, HD);
}

static void attn_fwd_bwd(void *p) {
    AttnBuf *a = p;
    attn_fwd(a);
    be->attention_bwd(be, a->dq, a->dk, a->dv, a->dout, a->att, a->q, a->k, a->v, NULL, B, T, NH, NKV, HD);
}

typedef struct {
    real_t *x, *W, *y; /* x (M,K), W (N,K), y (M,N) */
    int M, N, K;
} MatBuf;

static void mat_xwt(void *p) { /* the forward of a linear layer, y = x W^T */
    MatBuf *m = p;
    be->matmul(be, m->y, m->x, m->W, m->M, m->N, m->K, 0, 1, 1, 0);
}

static void mat_dw(void *p) { /* its weight gradient, dW(N,K) += dy^T x, with y as dy */
    MatBuf *m = p;
    be->matmul(be, m->W, m->y, m->x, m->N, m->K, m->M, 1, 0, 1, 1);
}

typedef struct {
    real_t *logits, *probs; /* (BT,V) */
    int32_t *targets;       /* (BT) */
} XentBuf;

static void xent_fwd_bwd(void *p) {
    XentBuf *x = p;
    int64_t nv;
    be->xent_fwd(be, x->probs, x->logits, x->targets, BT, V, &nv);
    be->xent_bwd(be, x->probs, x->probs, x->targets, BT, V, (real_t)(1.0 / (double)nv));
}

typedef struct {
    real_t *u, *dt, *z, *y, *dy; /* (SB,ST,SD) */
    real_t *du, *ddt, *dz;       /* (SB,ST,SD) */
    real_t *A_log, *dA_log;      /* (SD,SN) */
    real_t *bc, *dbc;            /* (SB,ST,2*SN): B's columns, then C's */
    real_t *Dskip, *dDskip;      /* (SD) */
    real_t *saved;               /* ssm_scan_saved(SB,ST,SD,SN) */
} ScanBuf;

static void scan_fwd(void *p) {
    ScanBuf *s = p;
    be->ssm_scan_fwd(be, s->y, s->saved, NULL, s->u, s->dt, s->A_log, s->bc, s->bc + SN, 2 * SN, s->Dskip, s->z,
                     SD, SB, ST, SD, SN);
}

static void scan_bwd(void *p) { /* the gradients of every input, as full fine-tuning asks */
    ScanBuf *s = p;
    be->ssm_scan_bwd(be, s->du, s->ddt, s->dA_log, s->dbc, s->dbc + SN, s->dDskip, s->dz, s->dy, s->saved, s->u,
                     s->dt, s->A_log, s->bc, s->bc + SN, 2 * SN, s->Dskip, s->z, SD, SB, ST, SD, SN);
}

/* Whether any of names (NULL-terminated) is to run: a section allocates its buffers only then. */
static int any_wanted(const char *const *names) {
    for (; *names; names++)
        if (!only || strstr(*names, only)) return 1;
    return 0;
}

static void bench_attention(int reps) {
    static const char *const names[] = {"attention fwd", "attention fwd+bwd", NULL};
    if (!any_wanted(names)) return;
    size_t nq = (size_t)BT * NH * HD, nkv = (size_t)BT * NKV * HD;
    size_t natt = (size_t)B * NH * T * T;
    AttnBuf a = {buf(nq, 1, 1), buf(nkv, 2, 1), buf(nkv, 3, 1), buf(nq, 0, 0), buf(natt, 0, 0),
                 buf(nq, 4, 1), buf(nq, 0, 0), buf(nkv, 0, 0), buf(nkv, 0, 0)};
    double attn_gf = 2.0 * B * NH * T * T * HD * 1e-9; /* one full T x T x HD product */
    bench(names[0], attn_fwd, &a, reps, 2 * attn_gf / 2);
    bench(names[1], attn_fwd_bwd, &a, reps, 6 * attn_gf / 2);
}

/* The matmuls, then cross-entropy on the LM head's logits. */
static void bench_matmul_xent(int reps) {
    static const char *const names[] = {"matmul x W^T  (BT,C) x (I,C)^T   [mlp up]",
                                        "matmul dW += dy^T x  (I,BT)x(BT,C)",
                                        "matmul x W^T  (BT,C) x (V,C)^T   [lm head]", "xent fwd+bwd (BT,V)", NULL};
    if (!any_wanted(names)) return;
    MatBuf up = {buf((size_t)BT * C, 5, 1), buf((size_t)I * C, 6, 0.05), buf((size_t)BT * I, 0, 0), BT, I, C};
    bench(names[0], mat_xwt, &up, reps, 2.0 * BT * I * C * 1e-9);
    bench(names[1], mat_dw, &up, reps, 2.0 * BT * I * C * 1e-9);
    MatBuf head = {up.x, buf((size_t)V * C, 7, 0.05), buf((size_t)BT * V, 0, 0), BT, V, C};
    bench(names[2], mat_xwt, &head, reps, 2.0 * BT * V * C * 1e-9);

    if (only && !strstr(names[3], only)) return;
    if (only && !strstr(names[2], only)) mat_xwt(&head); /* the logits its benchmark did not make */
    XentBuf x = {head.y, buf((size_t)BT * V, 0, 0), malloc(BT * sizeof(int32_t))};
    for (int i = 0; i < BT; i++) /* a quarter masked, as prompt tokens would be */
        x.targets[i] = i % 4 == 0 ? PEFTC_IGNORE_INDEX : (int32_t)(rng_u64(8, i) % V);
    bench(names[3], xent_fwd_bwd, &x, reps, 0);
}

static void bench_scan(int reps) {
    static const char *const names[] = {"ssm scan fwd (8,256,512) N=16", "ssm scan bwd (8,256,512) N=16", NULL};
    if (!any_wanted(names)) return;
    /* dt around Mamba's softplus inverse of its initial step sizes, A_log = log(1..N) as Mamba's init */
    size_t nu = (size_t)SB * ST * SD, nbc = (size_t)SB * ST * 2 * SN, nA = (size_t)SD * SN;
    ScanBuf s = {buf(nu, 9, 1), buf(nu, 10, 3), buf(nu, 11, 1), buf(nu, 0, 0), buf(nu, 12, 1),
                 buf(nu, 0, 0), buf(nu, 0, 0), buf(nu, 0, 0), buf(nA, 0, 0), buf(nA, 0, 0),
                 buf(nbc, 13, 1), buf(nbc, 0, 0), buf(SD, 14, 1), buf(SD, 0, 0),
                 buf(be->ssm_scan_saved(be, SB, ST, SD, SN), 0, 0)};
    for (size_t i = 0; i < nu; i++) s.dt[i] -= (real_t)4;
    for (size_t i = 0; i < nA; i++) s.A_log[i] = (real_t)log((double)(i % SN + 1));
    if (only && !strstr(names[0], only)) scan_fwd(&s); /* the saved states its benchmark did not make */
    bench(names[0], scan_fwd, &s, reps, 0);
    bench(names[1], scan_bwd, &s, reps, 0);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0, reps = argc > 2 ? atoi(argv[2]) : 5;
    only = argc > 3 ? argv[3] : NULL;
    be = backend_cpu();
    backend_cpu_set_threads(threads);
    /* attention backward, cross-entropy and scan backward scratch */
    BackendNeed need = {.B = (int)SB > (int)B ? SB : B, .T = (int)ST > (int)T ? ST : T, .NH = NH, .ssm_D = SD,
                        .ssm_N = SN};
    if (be->reserve(be, &need) != PEFTC_OK) return fprintf(stderr, "%s\n", peftc_err_msg()), 1;
    printf("peftc cpu backend (%s), %d threads, B=%d T=%d C=%d NH=%d NKV=%d HD=%d I=%d V=%d\n",
           PEFTC_REAL_NAME, omp_get_max_threads(), B, T, C, NH, NKV, HD, I, V);
    bench_attention(reps);
    bench_matmul_xent(reps);
    bench_scan(reps);
    return 0;
}
