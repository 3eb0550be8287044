/* Mamba-1's selective scan, as transformers' MambaMixer.slow_forward computes it, with a backward whose
 * memory stays linear in T.
 *
 * A channel (b, d) walks time on its own. Its N states go through in blocks of CPU_SSM_NBLK held on the
 * stack (Mamba's N = 16 is one block), y collecting each block's share, so neither pass needs scratch
 * for the state however large N is.
 *
 * Saved state: the forward keeps only the state at the start of each chunk of CPU_SSM_CHUNK steps,
 * saved (B, nchunks, N, D), d innermost as the CUDA kernels want it for coalescing. The backward walks a channel's chunks in reverse: it recomputes the chunk's
 * states and decays from the saved start into a stack tile, then carries the adjoint
 * g_t = C_t dy'_t + exp(delta_{t+1} A) g_{t+1} back through it (REFERENCE.md 2.3), as the official CUDA
 * kernel does.
 *
 * Reductions: dB and dC sum over d, dA_log and dDskip over b. The backward's units are (b, a group of
 * CPU_SSM_DGROUP channels); a unit adds its channels in order into partial sums of its own (double, in
 * the shared scratch) and a second pass adds the partials in a fixed order, so results do not depend
 * on the thread count. Every other gradient element belongs to one channel. */
#include <stdio.h>
#include <tgmath.h> /* exp, log1p on real_t pick the float versions in the float build */

#include "core/backend/cpu/cpu_ops.h"

/* torch's softplus (beta 1, threshold 20): the identity above 20, where log1p(exp(x)) equals x to
 * rounding anyway and exp would overflow soon after. */
static inline real_t softplus(real_t x) { return x > (real_t)20 ? x : log1p(exp(x)); }
static inline real_t softplus_grad(real_t x) { return x > (real_t)20 ? (real_t)1 : cpu_sigmoid(x); }

static inline real_t silu(real_t x) { return x * cpu_sigmoid(x); }
static inline real_t silu_grad(real_t x) {
    real_t s = cpu_sigmoid(x);
    return s + x * s * ((real_t)1 - s);
}

static int nchunks_of(int T) { return (T + CPU_SSM_CHUNK - 1) / CPU_SSM_CHUNK; }

/* The scan's inputs, as ssm_scan_fwd documents them. */
typedef struct {
    const real_t *u, *dt;     /* (B,T,D) */
    const real_t *A_log;      /* (D,N) */
    const real_t *Bm, *Cm;    /* (B,T,N; ldbc) */
    const real_t *Dskip;      /* (D) */
    const real_t *z;          /* (B,T,D; ldz) */
    int ldbc, ldz, B, T, D, N;
} SsmIn;

/* Row index of (b, t) in the (B,T,...) tensors. */
static inline size_t row_of(const SsmIn *in, int b, int t) { return (size_t)b * in->T + t; }

/* Where chunk c's start state of (b, d, n) lives in saved (B, nchunks, N, D). */
static inline size_t saved_at(const SsmIn *in, int b, int c, int n, int d) {
    return (((size_t)b * nchunks_of(in->T) + c) * in->N + n) * in->D + d;
}

size_t cpu_ssm_scan_saved(const Backend *be, int B, int T, int D, int N) {
    (void)be;
    return (size_t)B * nchunks_of(T) * N * D;
}

/* ---- forward ---- */

/* Channel (b, d), states [n0, n0+nn): runs the recurrence from h (or zero), adds sum_n C_t h_t to y,
 * stores each chunk's start state in saved and the last state back in h. */
static void scan_fwd_block(const SsmIn *in, int b, int d, int n0, int nn, real_t *y, real_t *saved, real_t *h) {
    /* y (B,T,D); saved (B,nchunks,N,D) or NULL; h (B,D,N) or NULL */
    int D = in->D, N = in->N;
    real_t A[CPU_SSM_NBLK], hs[CPU_SSM_NBLK]; /* (nn) */
    real_t *hb = h ? h + ((size_t)b * D + d) * N + n0 : NULL; /* (nn) */
    for (int j = 0; j < nn; j++) {
        A[j] = -exp(in->A_log[(size_t)d * N + n0 + j]);
        hs[j] = hb ? hb[j] : 0;
    }
    for (int t = 0; t < in->T; t++) {
        if (saved && t % CPU_SSM_CHUNK == 0)
            for (int j = 0; j < nn; j++) saved[saved_at(in, b, t / CPU_SSM_CHUNK, n0 + j, d)] = hs[j];
        size_t r = row_of(in, b, t);
        real_t delta = softplus(in->dt[r * D + d]), du = delta * in->u[r * D + d];
        const real_t *Bt = in->Bm + r * in->ldbc + n0, *Ct = in->Cm + r * in->ldbc + n0; /* (nn) */
        real_t acc = 0;
        for (int j = 0; j < nn; j++) {
            hs[j] = exp(delta * A[j]) * hs[j] + du * Bt[j];
            acc += Ct[j] * hs[j];
        }
        y[r * D + d] += acc;
    }
    for (int j = 0; hb && j < nn; j++) hb[j] = hs[j];
}

/* Channel (b, d): y = (sum_n C h + Dskip u) * silu(z), block by block of states. */
static void scan_fwd_channel(const SsmIn *in, int b, int d, real_t *y, real_t *saved, real_t *h) {
    /* y (B,T,D); saved (B,nchunks,N,D) or NULL; h (B,D,N) or NULL */
    int D = in->D;
    for (int t = 0; t < in->T; t++) {
        size_t r = row_of(in, b, t);
        y[r * D + d] = in->Dskip[d] * in->u[r * D + d];
    }
    for (int n0 = 0; n0 < in->N; n0 += CPU_SSM_NBLK) {
        int nn = in->N - n0 < CPU_SSM_NBLK ? in->N - n0 : CPU_SSM_NBLK;
        scan_fwd_block(in, b, d, n0, nn, y, saved, h);
    }
    for (int t = 0; t < in->T; t++) {
        size_t r = row_of(in, b, t);
        y[r * D + d] *= silu(in->z[r * in->ldz + d]);
    }
}

void cpu_ssm_scan_fwd(const Backend *be, real_t *y, real_t *saved, real_t *h, const real_t *u, const real_t *dt,
                      const real_t *A_log, const real_t *Bm, const real_t *Cm, int ldbc, const real_t *Dskip,
                      const real_t *z, int ldz, int B, int T, int D, int N) {
    /* y (B,T,D); saved (ssm_scan_saved) or NULL; h (B,D,N) or NULL; the inputs as in SsmIn */
    (void)be;
    SsmIn in = {u, dt, A_log, Bm, Cm, Dskip, z, ldbc, ldz, B, T, D, N};
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * T * D * N >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++) scan_fwd_channel(&in, b, d, y, saved, h);
}

/* ---- backward ---- */

/* One unit's view of the backward: the inputs, the gradients its channels own, and its partials. */
typedef struct {
    SsmIn in;
    const real_t *dy;      /* (B,T,D) */
    const real_t *saved;   /* (B,nchunks,N,D) */
    real_t *du, *ddt;      /* (B,T,D) or NULL */
    real_t *dz;            /* (B,T,D; ldz) or NULL */
    double *pB, *pC;       /* (T,N) this unit's sums over its channels of dB, dC */
    double *pA;            /* (D,N) this b's dA (not yet times A), the unit's channels' rows */
    double *pD;            /* (D) this b's dDskip, the unit's channels' entries */
} SsmBwd;

/* Chunk [t0, t1) of channel (b, d), states [n0, n0+nn): hs[i] = h_{t0-1+i} from the saved start state
 * and decay[i] = exp(delta_{t0+i} A), for i up to t1-t0. */
static void chunk_states(const SsmBwd *w, int b, int d, int n0, int nn, int t0, int t1, const real_t *A,
                         real_t (*hs)[CPU_SSM_NBLK], real_t (*decay)[CPU_SSM_NBLK]) {
    /* A (nn); hs (t1-t0+1, NBLK); decay (t1-t0, NBLK) */
    const SsmIn *in = &w->in;
    for (int j = 0; j < nn; j++) hs[0][j] = w->saved[saved_at(in, b, t0 / CPU_SSM_CHUNK, n0 + j, d)];
    for (int t = t0; t < t1; t++) {
        size_t r = row_of(in, b, t);
        real_t delta = softplus(in->dt[r * in->D + d]), du = delta * in->u[r * in->D + d];
        const real_t *Bt = in->Bm + r * in->ldbc + n0; /* (nn) */
        for (int j = 0; j < nn; j++) {
            decay[t - t0][j] = exp(delta * A[j]);
            hs[t - t0 + 1][j] = decay[t - t0][j] * hs[t - t0][j] + du * Bt[j];
        }
    }
}

/* Carries the adjoint g (nn) of channel (b, d), states [n0, n0+nn), back through chunk [t0, t1), adding
 * what the block contributes to every gradient. On entry g holds exp(delta_{t1} A) g_{t1} (zero past
 * the end); on return the same for t0. dA (nn) collects sum_t g_t delta_t decay_t h_{t-1}. */
static void chunk_bwd(const SsmBwd *w, int b, int d, int n0, int nn, int t0, int t1, const real_t *A, real_t *g,
                      double *dA, real_t (*hs)[CPU_SSM_NBLK], real_t (*decay)[CPU_SSM_NBLK]) {
    /* A, g, dA (nn); hs (t1-t0+1, NBLK), decay (t1-t0, NBLK) from chunk_states */
    const SsmIn *in = &w->in;
    int D = in->D, N = in->N;
    for (int t = t1 - 1; t >= t0; t--) {
        size_t r = row_of(in, b, t);
        real_t x = in->dt[r * D + d], delta = softplus(x), u = in->u[r * D + d], zt = in->z[r * in->ldz + d];
        real_t dy = w->dy[r * D + d], dyp = dy * silu(zt); /* dyp: the gradient of y before the gate */
        const real_t *Bt = in->Bm + r * in->ldbc + n0, *Ct = in->Cm + r * in->ldbc + n0; /* (nn) */
        const real_t *hp = hs[t - t0], *hc = hs[t - t0 + 1], *dc = decay[t - t0];  /* (nn) */
        double *pB = w->pB + (size_t)t * N + n0, *pC = w->pC + (size_t)t * N + n0; /* (nn) */
        real_t s_du = 0, s_ddelta = 0, s_y = 0;
        for (int j = 0; j < nn; j++) {
            real_t gj = Ct[j] * dyp + g[j];
            s_y += Ct[j] * hc[j];
            pC[j] += (double)dyp * hc[j];
            pB[j] += (double)gj * delta * u;
            s_du += gj * Bt[j];
            s_ddelta += gj * (Bt[j] * u + A[j] * dc[j] * hp[j]);
            dA[j] += (double)gj * delta * dc[j] * hp[j];
            g[j] = dc[j] * gj;
        }
        if (w->du) w->du[r * D + d] += s_du * delta;
        if (w->ddt) w->ddt[r * D + d] += s_ddelta * softplus_grad(x);
        if (w->dz) w->dz[r * in->ldz + d] += s_y * dy * silu_grad(zt);
    }
}

/* Channel (b, d), states [n0, n0+nn): every chunk in reverse. */
static void scan_bwd_block(const SsmBwd *w, int b, int d, int n0, int nn) {
    const SsmIn *in = &w->in;
    real_t A[CPU_SSM_NBLK], g[CPU_SSM_NBLK];           /* (nn) */
    double dA[CPU_SSM_NBLK];                           /* (nn) */
    real_t hs[CPU_SSM_CHUNK + 1][CPU_SSM_NBLK];        /* the chunk's states h_{t0-1} .. h_{t1-1} */
    real_t decay[CPU_SSM_CHUNK][CPU_SSM_NBLK];         /* exp(delta_t A), t in [t0, t1) */
    for (int j = 0; j < nn; j++) {
        A[j] = -exp(in->A_log[(size_t)d * in->N + n0 + j]);
        g[j] = 0;
        dA[j] = 0.0;
    }
    for (int c = nchunks_of(in->T) - 1; c >= 0; c--) {
        int t0 = c * CPU_SSM_CHUNK, t1 = t0 + CPU_SSM_CHUNK < in->T ? t0 + CPU_SSM_CHUNK : in->T;
        chunk_states(w, b, d, n0, nn, t0, t1, A, hs, decay);
        chunk_bwd(w, b, d, n0, nn, t0, t1, A, g, dA, hs, decay);
    }
    for (int j = 0; j < nn; j++) w->pA[(size_t)d * in->N + n0 + j] = dA[j];
}

/* Channel (b, d): the terms of the D skip (in du, dz, dDskip), then each block of states. */
static void scan_bwd_channel(const SsmBwd *w, int b, int d) {
    const SsmIn *in = &w->in;
    int D = in->D;
    double pD = 0.0;
    for (int t = 0; t < in->T; t++) {
        size_t r = row_of(in, b, t);
        real_t u = in->u[r * D + d], zt = in->z[r * in->ldz + d], dy = w->dy[r * D + d];
        real_t dyp = dy * silu(zt);
        pD += (double)dyp * u;
        if (w->du) w->du[r * D + d] += in->Dskip[d] * dyp;
        if (w->dz) w->dz[r * in->ldz + d] += in->Dskip[d] * u * dy * silu_grad(zt);
    }
    w->pD[d] = pD;
    for (int n0 = 0; n0 < in->N; n0 += CPU_SSM_NBLK)
        scan_bwd_block(w, b, d, n0, in->N - n0 < CPU_SSM_NBLK ? in->N - n0 : CPU_SSM_NBLK);
}

static int groups_of(int D) { return (D + CPU_SSM_DGROUP - 1) / CPU_SSM_DGROUP; }

size_t cpu_ssm_bwd_scratch(int B, int T, int D, int N) {
    if (B <= 0 || T <= 0 || D <= 0 || N <= 0) return 0;
    return 2 * (size_t)B * groups_of(D) * T * N + (size_t)B * D * N + (size_t)B * D;
}

/* The partial sums in the shared scratch (cpu_ssm_bwd_scratch doubles). */
typedef struct {
    double *pB, *pC; /* (B, groups, T, N) */
    double *pA;      /* (B, D, N) */
    double *pD;      /* (B, D) */
} SsmParts;

static SsmParts parts_of(const SsmIn *in, double *part) {
    size_t bc = (size_t)in->B * groups_of(in->D) * in->T * in->N, bdn = (size_t)in->B * in->D * in->N;
    SsmParts P = {part, part + bc, part + 2 * bc, part + 2 * bc + bdn};
    return P;
}

/* Unit (b, group): its channels in order, into partials of its own. */
static void scan_bwd_unit(SsmBwd w, SsmParts P, int b, int grp) {
    const SsmIn *in = &w.in;
    size_t tn = (size_t)in->T * in->N, slice = ((size_t)b * groups_of(in->D) + grp) * tn;
    w.pB = P.pB + slice;
    w.pC = P.pC + slice;
    w.pA = P.pA + (size_t)b * in->D * in->N;
    w.pD = P.pD + (size_t)b * in->D;
    for (size_t i = 0; i < tn; i++) w.pB[i] = w.pC[i] = 0.0;
    int d1 = (grp + 1) * CPU_SSM_DGROUP < in->D ? (grp + 1) * CPU_SSM_DGROUP : in->D;
    for (int d = grp * CPU_SSM_DGROUP; d < d1; d++) scan_bwd_channel(&w, b, d);
}

/* The partials into the shared gradients, each sum over groups (dB, dC) or over b (dA_log, dDskip)
 * in order. */
static void scan_bwd_reduce(const SsmIn *in, SsmParts P, real_t *dA_log, real_t *dB, real_t *dC, real_t *dDskip) {
    int B = in->B, T = in->T, D = in->D, N = in->N, G = groups_of(D);
    size_t tn = (size_t)T * N;
    const double *pB = P.pB, *pC = P.pC, *pA = P.pA, *pD = P.pD;
    int par = (size_t)B * T * N * G >= CPU_PAR_MIN;
#pragma omp parallel for collapse(2) schedule(static) if (par)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int n = 0; n < N; n++) {
                double sb = 0.0, sc = 0.0;
                for (int grp = 0; grp < G; grp++) {
                    size_t at = ((size_t)b * G + grp) * tn + (size_t)t * N + n;
                    sb += pB[at];
                    sc += pC[at];
                }
                size_t o = row_of(in, b, t) * in->ldbc + n;
                if (dB) dB[o] += (real_t)sb;
                if (dC) dC[o] += (real_t)sc;
            }
    for (int d = 0; d < D; d++) {
        for (int n = 0; dA_log && n < N; n++) {
            double s = 0.0;
            for (int b = 0; b < B; b++) s += pA[((size_t)b * D + d) * N + n];
            /* A = -exp(A_log), so dL/dA_log = dL/dA * A. */
            dA_log[(size_t)d * N + n] += (real_t)(s * -exp((double)in->A_log[(size_t)d * N + n]));
        }
        if (!dDskip) continue;
        double s = 0.0;
        for (int b = 0; b < B; b++) s += pD[(size_t)b * D + d];
        dDskip[d] += (real_t)s;
    }
}

void cpu_ssm_scan_bwd(const Backend *be, real_t *du, real_t *ddt, real_t *dA_log, real_t *dB, real_t *dC,
                      real_t *dDskip, real_t *dz, const real_t *dy, const real_t *saved, const real_t *u,
                      const real_t *dt, const real_t *A_log, const real_t *Bm, const real_t *Cm, int ldbc,
                      const real_t *Dskip, const real_t *z, int ldz, int B, int T, int D, int N) {
    /* gradients as documented in backend_ops.h; dy (B,T,D); saved (B,nchunks,N,D) from ssm_scan_fwd */
    if (!du && !ddt && !dA_log && !dB && !dC && !dDskip && !dz) return;
    if (B <= 0 || T <= 0 || D <= 0 || N <= 0) return;
    if (!saved) {
        cpu_fail(be, "cpu backend: ssm_scan_bwd needs the states ssm_scan_fwd saved, got saved = NULL");
        return;
    }
    char need[96];
    snprintf(need, sizeof need, "B, T, ssm_D, ssm_N covering %d, %d, %d, %d, that is", B, T, D, N);
    double *part = cpu_shared_scratch(be, cpu_ssm_bwd_scratch(B, T, D, N), "ssm_scan_bwd", need);
    if (!part) return;
    SsmBwd w = {{u, dt, A_log, Bm, Cm, Dskip, z, ldbc, ldz, B, T, D, N}, dy, saved, du, ddt, dz,
                NULL, NULL, NULL, NULL};
    int G = groups_of(D);
    SsmParts P = parts_of(&w.in, part);
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if ((size_t)B * T * D * N >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int grp = 0; grp < G; grp++) scan_bwd_unit(w, P, b, grp);
    scan_bwd_reduce(&w.in, P, dA_log, dB, dC, dDskip);
}
