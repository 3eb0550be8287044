/* Mamba-1's selective scan, as transformers' MambaMixer.slow_forward computes it, with a backward whose
 * memory stays linear in T.
 *
 * Lanes: CPU_SSM_LANES consecutive channels (b, d0 .. d0+LANES-1) walk time together, channel d in
 * lane d - d0. (B,T,D) tensors keep d innermost, so a step's dt, u, z, dy of the group are one
 * contiguous run, and every per-state update is a loop over lanes that vectorises. A group of the
 * last channels of D that is not full pads its lanes with zero inputs, which contribute exactly zero
 * and are never written back. The N states go through in blocks of CPU_SSM_NBLK held on the stack
 * (Mamba's N = 16 is one block), y collecting each block's share, so the forward needs no scratch for
 * the state however large N is. Each channel's arithmetic is the one-channel recurrence's, in the
 * same order, and exp is libm's expf computed lane-wise (exp_lanes), so the forward's results are
 * those of a channel-at-a-time loop over libm calls.
 *
 * Saved state: the forward keeps only the state at the start of each chunk of CPU_SSM_CHUNK steps,
 * saved (B, nchunks, N, D), d innermost as the CUDA kernels want it for coalescing. The backward walks
 * a group's chunks in reverse: it takes the chunk's per-step inputs (softplus, the gates) once, then
 * for each block of states recomputes the chunk's states and decays from the saved start into a stack
 * tile, and carries the adjoint g_t = C_t dy'_t + exp(delta_{t+1} A) g_{t+1} back through it
 * (REFERENCE.md 2.3), as the official CUDA kernel does. A and g carry across chunks in the scratch.
 *
 * Reductions: dB and dC sum over d, dA_log and dDskip over b. The backward's units are (b, a group of
 * CPU_SSM_DGROUP channels); a unit adds its lane groups in order into double partial sums of its own
 * (in the shared scratch), each group's lanes summed in float in a fixed order, and a second pass adds
 * the partials in a fixed order, so results do not depend on the thread count. dA sums over time in
 * float within a chunk and in double across chunks. Every other gradient element belongs to one
 * channel. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <tgmath.h> /* exp, log1p on real_t pick the float versions in the float build */

#include "core/backend/cpu/cpu_ops.h"

#define LANES CPU_SSM_LANES
_Static_assert(LANES % 4 == 0 && CPU_SSM_DGROUP % LANES == 0,
               "CPU_SSM_LANES: a multiple of 4 dividing CPU_SSM_DGROUP");

/* torch's softplus threshold: softplus(x) = x above it, where log1p(exp(x)) equals x to rounding
 * anyway and exp would overflow soon after. */
#define SOFTPLUS_LINEAR ((real_t)20)

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

/* A group of channels: sequence b, channels [d0, d0+nd), nd <= LANES. */
typedef struct {
    int b, d0, nd;
} Lanes;

static Lanes lanes_at(const SsmIn *in, int b, int d0) {
    Lanes c = {b, d0, in->D - d0 < LANES ? in->D - d0 : LANES};
    return c;
}

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

/* ---- lanes ---- */

/* v (LANES) = the group's nd channels at p (contiguous), the padded lanes zero. */
static inline void lanes_get(real_t *v, const real_t *p, int nd) {
    if (nd == LANES) {
        memcpy(v, p, sizeof(real_t) * LANES);
        return;
    }
    for (int l = 0; l < LANES; l++) v[l] = l < nd ? p[l] : 0;
}

/* p (nd, contiguous) = v's first nd lanes. */
static inline void lanes_put(real_t *p, const real_t *v, int nd) { memcpy(p, v, sizeof(real_t) * nd); }

/* p (nd, contiguous) += v's first nd lanes. A full group runs a loop of constant length, which
 * vectorises. */
static inline void lanes_add(real_t *restrict p, const real_t *restrict v, int nd) {
    if (nd == LANES)
        for (int l = 0; l < LANES; l++) p[l] += v[l];
    else
        for (int l = 0; l < nd; l++) p[l] += v[l];
}

/* d[j] += the sum of p[j]'s lanes, j < nn, in a fixed order: lanes l, l+4, l+8, ... first, then the
 * four results in pairs. Whole blocks at once (rows nn.. of p zero), so that the sums vectorise
 * across rows: one row's lanes at a time is a chain of scalar adds. p (NBLK, LANES) is overwritten. */
static inline void lanes_sums_add(double *d, real_t (*p)[LANES], int nn) {
    /* d (nn) */
    real_t s[CPU_SSM_NBLK]; /* (NBLK) */
    for (int k = 1; k < LANES / 4; k++)
        for (int j = 0; j < CPU_SSM_NBLK; j++)
            for (int l = 0; l < 4; l++) p[j][l] += p[j][4 * k + l];
    for (int j = 0; j < CPU_SSM_NBLK; j++) s[j] = (p[j][0] + p[j][2]) + (p[j][1] + p[j][3]);
    if (nn == CPU_SSM_NBLK) /* a full block: a loop of constant length, which vectorises */
        for (int j = 0; j < CPU_SSM_NBLK; j++) d[j] += s[j];
    else
        for (int j = 0; j < nn; j++) d[j] += s[j];
}

#ifdef PEFTC_REAL_DOUBLE
/* y = exp(x) over the lanes: libm's, the reference precision the double build is tested at. */
static inline void exp_lanes(real_t *restrict y, const real_t *restrict x) {
    /* y, x (LANES) */
    for (int l = 0; l < LANES; l++) y[l] = exp(x[l]);
}
#else
/* 2^(i/32) as bits, less i << 47 so that adding k << 47 for k = 32 q + i makes 2^(k/32). */
static const uint64_t exp2_32[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};

/* y = expf(x) over the lanes, in arithmetic that vectorises: as libm calls the decays' exps took more
 * than half of the scan. The algorithm is Arm's optimized-routines expf (MIT), the one glibc and musl
 * use, so the results are libm's: checked on every float in [-105, 105], they equal glibc 2.36's expf
 * but for 2 (whose FMA build rounds its polynomial differently). In double: k = round(32 x / ln 2),
 * 2^(k/32) from the table and the exponent bits, 2^(r/32) for the remainder |r| <= 1/2 by a cubic.
 * |x| is clamped to 104 first, past which expf is 0 or inf anyway, so that k stays in range; NaN
 * passes through. The clamp works on the bits: a float compare-and-select would keep GCC from
 * vectorising the loop without -fno-trapping-math. */
static inline void exp_lanes(float *restrict y, const float *restrict x) {
    /* y, x (LANES) */
    for (int l = 0; l < LANES; l++) {
        uint32_t bits, mag; /* x's, |x|'s */
        memcpy(&bits, &x[l], sizeof bits);
        mag = bits & 0x7fffffffu;
        mag = ((mag > 0x42d00000u) & (mag <= 0x7f800000u)) ? 0x42d00000u : mag; /* 104.0f; NaN above inf */
        bits = (bits & 0x80000000u) | mag;
        float xc; /* x clamped */
        memcpy(&xc, &bits, sizeof xc);
        double z = (double)xc * (0x1.71547652b82fep+0 * 32); /* 32 x / ln 2 */
        double kd = z + 0x1.8p52;                            /* rounded to an integer, k in the low bits */
        uint64_t k;
        memcpy(&k, &kd, sizeof k);
        double r = z - (kd - 0x1.8p52);
        uint64_t sbits = exp2_32[k % 32] + (k << 47); /* 2^(k/32): 0x1.8p52's own bits shift out */
        double s;
        memcpy(&s, &sbits, sizeof s);
        double p = 0x1.c6af84b912394p-5 / 32 / 32 / 32 * r + 0x1.ebfce50fac4f3p-3 / 32 / 32;
        double q = 0x1.62e42ff0c52d6p-1 / 32 * r + 1;
        y[l] = (float)((p * (r * r) + q) * s);
    }
}
#endif

/* s = sigmoid(x) = 1 / (1 + exp(-x)) over the lanes, as cpu_sigmoid. */
static inline void sigmoid_lanes(real_t *restrict s, const real_t *restrict x) {
    /* s, x (LANES) */
    real_t m[LANES], e[LANES]; /* (LANES) -x, exp(-x) */
    for (int l = 0; l < LANES; l++) m[l] = -x[l];
    exp_lanes(e, m);
    for (int l = 0; l < LANES; l++) s[l] = (real_t)1 / ((real_t)1 + e[l]);
}

/* y = softplus(x) over the lanes, torch's (beta 1, threshold 20). log1p stays a libm call: it runs
 * once per step and channel, against the N exps of the decays. */
static inline void softplus_lanes(real_t *restrict y, const real_t *restrict x) {
    /* y, x (LANES) */
    real_t e[LANES]; /* (LANES) */
    exp_lanes(e, x);
    for (int l = 0; l < LANES; l++) y[l] = x[l] > SOFTPLUS_LINEAR ? x[l] : log1p(e[l]);
}

/* A[j][l] = -exp(A_log) of state n0+j, channel d0+l (zero in padded lanes: their states stay zero). */
static void lanes_A(const SsmIn *in, Lanes c, int n0, int nn, real_t (*A)[LANES]) {
    /* A (nn, LANES) */
    for (int j = 0; j < nn; j++)
        for (int l = 0; l < LANES; l++)
            A[j][l] = l < c.nd ? -exp(in->A_log[(size_t)(c.d0 + l) * in->N + n0 + j]) : 0;
}

/* decay[j][l] = exp(delta[l] A[j][l]): the step's state decays. */
static inline void lanes_decay(int nn, const real_t *delta, const real_t (*A)[LANES], real_t (*decay)[LANES]) {
    /* delta (LANES); A, decay (nn, LANES) */
    for (int j = 0; j < nn; j++) {
        real_t x[LANES]; /* (LANES) */
        for (int l = 0; l < LANES; l++) x[l] = delta[l] * A[j][l];
        exp_lanes(decay[j], x);
    }
}

/* One state's update over the lanes: h_t = decay h_{t-1} + du B_t(n). */
static inline void state_next(real_t *restrict h, const real_t *restrict h_prev, const real_t *restrict decay,
                              const real_t *restrict du, real_t bn) {
    /* h, h_prev, decay, du (LANES) */
    for (int l = 0; l < LANES; l++) h[l] = decay[l] * h_prev[l] + du[l] * bn;
}

/* ---- forward ---- */

/* Step t's y of group c, into y (B,T,D): y = Dskip u + acc for the first block of states, y + acc for
 * the others, and the last block multiplies by silu(z). */
static void fwd_output(const SsmIn *in, Lanes c, size_t r, const real_t *u, const real_t *acc, int first, int last,
                       real_t *y) {
    /* u, acc (LANES) */
    real_t v[LANES]; /* (LANES) */
    real_t *yr = y + r * in->D + c.d0; /* (nd) */
    if (first) {
        lanes_get(v, in->Dskip + c.d0, c.nd);
        for (int l = 0; l < LANES; l++) v[l] *= u[l];
    } else {
        lanes_get(v, yr, c.nd);
    }
    for (int l = 0; l < LANES; l++) v[l] += acc[l];
    if (last) {
        real_t z[LANES], s[LANES]; /* (LANES) */
        lanes_get(z, in->z + r * in->ldz + c.d0, c.nd);
        sigmoid_lanes(s, z);
        for (int l = 0; l < LANES; l++) v[l] *= z[l] * s[l]; /* silu(z) */
    }
    lanes_put(yr, v, c.nd);
}

/* Group c, states [n0, n0+nn): runs the recurrence from h (or zero), adds sum_n C_t h_t to y (see
 * fwd_output), stores each chunk's start state in saved and the last state back in h. */
static void scan_fwd_block(const SsmIn *in, Lanes c, int n0, int nn, real_t *y, real_t *saved, real_t *h) {
    /* y (B,T,D); saved (B,nchunks,N,D) or NULL; h (B,D,N) or NULL */
    int D = in->D, N = in->N;
    real_t A[CPU_SSM_NBLK][LANES], hs[CPU_SSM_NBLK][LANES], decay[CPU_SSM_NBLK][LANES]; /* (nn, LANES) */
    real_t *hb = h ? h + ((size_t)c.b * D + c.d0) * N + n0 : NULL; /* (nd, N) from state n0 */
    lanes_A(in, c, n0, nn, A);
    for (int j = 0; j < nn; j++)
        for (int l = 0; l < LANES; l++) hs[j][l] = hb && l < c.nd ? hb[(size_t)l * N + j] : 0;
    for (int t = 0; t < in->T; t++) {
        if (saved && t % CPU_SSM_CHUNK == 0)
            for (int j = 0; j < nn; j++)
                lanes_put(saved + saved_at(in, c.b, t / CPU_SSM_CHUNK, n0 + j, c.d0), hs[j], c.nd);
        size_t r = row_of(in, c.b, t);
        real_t x[LANES], u[LANES], delta[LANES], du[LANES], acc[LANES] = {0}; /* (LANES) */
        lanes_get(x, in->dt + r * D + c.d0, c.nd);
        lanes_get(u, in->u + r * D + c.d0, c.nd);
        softplus_lanes(delta, x);
        for (int l = 0; l < LANES; l++) du[l] = delta[l] * u[l];
        lanes_decay(nn, delta, (const real_t (*)[LANES])A, decay);
        const real_t *Bt = in->Bm + r * in->ldbc + n0, *Ct = in->Cm + r * in->ldbc + n0; /* (nn) */
        for (int j = 0; j < nn; j++) {
            real_t bn = Bt[j], cn = Ct[j];
            for (int l = 0; l < LANES; l++) {
                hs[j][l] = decay[j][l] * hs[j][l] + du[l] * bn;
                acc[l] += cn * hs[j][l];
            }
        }
        fwd_output(in, c, r, u, acc, n0 == 0, n0 + nn == N, y);
    }
    for (int j = 0; hb && j < nn; j++)
        for (int l = 0; l < c.nd; l++) hb[(size_t)l * N + j] = hs[j][l];
}

/* Group c: every block of states, or with no states y = Dskip u silu(z) alone. */
static void scan_fwd_lanes(const SsmIn *in, Lanes c, real_t *y, real_t *saved, real_t *h) {
    /* y (B,T,D); saved (B,nchunks,N,D) or NULL; h (B,D,N) or NULL */
    for (int n0 = 0; n0 < in->N; n0 += CPU_SSM_NBLK)
        scan_fwd_block(in, c, n0, in->N - n0 < CPU_SSM_NBLK ? in->N - n0 : CPU_SSM_NBLK, y, saved, h);
    for (int t = 0; in->N <= 0 && t < in->T; t++) {
        size_t r = row_of(in, c.b, t);
        real_t u[LANES], acc[LANES] = {0}; /* (LANES) */
        lanes_get(u, in->u + r * in->D + c.d0, c.nd);
        fwd_output(in, c, r, u, acc, 1, 1, y);
    }
}

void cpu_ssm_scan_fwd(const Backend *be, real_t *y, real_t *saved, real_t *h, const real_t *u, const real_t *dt,
                      const real_t *A_log, const real_t *Bm, const real_t *Cm, int ldbc, const real_t *Dskip,
                      const real_t *z, int ldz, int B, int T, int D, int N) {
    /* y (B,T,D); saved (ssm_scan_saved) or NULL; h (B,D,N) or NULL; the inputs as in SsmIn */
    (void)be;
    SsmIn in = {u, dt, A_log, Bm, Cm, Dskip, z, ldbc, ldz, B, T, D, N};
    int groups = (D + LANES - 1) / LANES;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * T * D * N >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int grp = 0; grp < groups; grp++) scan_fwd_lanes(&in, lanes_at(&in, b, grp * LANES), y, saved, h);
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

/* A chunk's per-step values of a group, each (t1-t0, LANES), taken once for all blocks of states. */
typedef struct {
    real_t delta[CPU_SSM_CHUNK][LANES]; /* softplus(dt) */
    real_t gdt[CPU_SSM_CHUNK][LANES];   /* softplus'(dt) */
    real_t u[CPU_SSM_CHUNK][LANES];
    real_t du[CPU_SSM_CHUNK][LANES];    /* delta u: the input's weight into the state */
    real_t dy[CPU_SSM_CHUNK][LANES];
    real_t dyp[CPU_SSM_CHUNK][LANES];   /* dy silu(z): the gradient of y before the gate */
    real_t sgz[CPU_SSM_CHUNK][LANES];   /* silu'(z) */
} ChunkIn;

/* A chunk's recomputed states of one block of states, for its group. */
typedef struct {
    real_t h[CPU_SSM_CHUNK + 1][CPU_SSM_NBLK][LANES]; /* h_{t0-1} .. h_{t1-1} */
    real_t decay[CPU_SSM_CHUNK][CPU_SSM_NBLK][LANES]; /* exp(delta_t A), t in [t0, t1) */
} ChunkStates;

/* A step's sums over the states, per lane, that the channel's own gradients take. */
typedef struct {
    real_t du[LANES];     /* sum_n g B */
    real_t ddelta[LANES]; /* sum_n g (B u + A decay h_{t-1}) */
    real_t y[LANES];      /* sum_n C h: y before the skip and the gate */
} StepSums;

/* Chunk [t0, t1)'s per-step values of group c (see ChunkIn). */
static void chunk_inputs(const SsmBwd *w, Lanes c, int t0, int t1, ChunkIn *ci) {
    const SsmIn *in = &w->in;
    int D = in->D;
    for (int t = t0; t < t1; t++) {
        size_t r = row_of(in, c.b, t);
        int i = t - t0;
        real_t x[LANES], z[LANES], sx[LANES], sz[LANES]; /* (LANES) dt, z, their sigmoids */
        lanes_get(x, in->dt + r * D + c.d0, c.nd);
        lanes_get(ci->u[i], in->u + r * D + c.d0, c.nd);
        lanes_get(ci->dy[i], w->dy + r * D + c.d0, c.nd);
        lanes_get(z, in->z + r * in->ldz + c.d0, c.nd);
        softplus_lanes(ci->delta[i], x);
        sigmoid_lanes(sx, x);
        sigmoid_lanes(sz, z);
        for (int l = 0; l < LANES; l++) {
            ci->du[i][l] = ci->delta[i][l] * ci->u[i][l];
            ci->dyp[i][l] = ci->dy[i][l] * (z[l] * sz[l]);
            ci->sgz[i][l] = sz[l] + z[l] * sz[l] * ((real_t)1 - sz[l]);
        }
        for (int l = 0; l < LANES; l++) ci->gdt[i][l] = x[l] > SOFTPLUS_LINEAR ? (real_t)1 : sx[l];
    }
}

/* States [n0, n0+nn) of group c through chunk [t0, t1), from the saved start state. */
static void chunk_states(const SsmBwd *w, Lanes c, int n0, int nn, int t0, int t1, const real_t (*A)[LANES],
                         const ChunkIn *ci, ChunkStates *cs) {
    /* A (nn, LANES) */
    const SsmIn *in = &w->in;
    for (int j = 0; j < nn; j++)
        lanes_get(cs->h[0][j], w->saved + saved_at(in, c.b, t0 / CPU_SSM_CHUNK, n0 + j, c.d0), c.nd);
    for (int t = t0; t < t1; t++) {
        int i = t - t0;
        const real_t *Bt = in->Bm + row_of(in, c.b, t) * in->ldbc + n0; /* (nn) */
        lanes_decay(nn, ci->delta[i], A, cs->decay[i]);
        for (int j = 0; j < nn; j++) state_next(cs->h[i + 1][j], cs->h[i][j], cs->decay[i][j], ci->du[i], Bt[j]);
    }
}

/* Step i of the chunk, state n (j of the block), over the lanes: g = C dy' + g_next becomes this step's
 * adjoint, then decays to the previous step's g_next; the step's terms go into the sums s and dA, and
 * the lanes' terms of dB, dC of (t, n) into pb, pc. */
static inline void adjoint_step(real_t *restrict g, real_t *restrict dA, StepSums *restrict s, real_t *restrict pb,
                                real_t *restrict pc, const ChunkIn *ci, const ChunkStates *cs, int i, int j,
                                const real_t *restrict A, real_t bn, real_t cn) {
    /* g, dA, pb, pc, A (LANES): state n's */
    const real_t *hp = cs->h[i][j], *hc = cs->h[i + 1][j], *dc = cs->decay[i][j];          /* (LANES) */
    const real_t *dyp = ci->dyp[i], *u = ci->u[i], *du = ci->du[i], *delta = ci->delta[i]; /* (LANES) */
    for (int l = 0; l < LANES; l++) {
        real_t gl = cn * dyp[l] + g[l];
        s->y[l] += cn * hc[l];
        pc[l] = dyp[l] * hc[l];
        pb[l] = gl * du[l];
        s->du[l] += gl * bn;
        s->ddelta[l] += gl * (bn * u[l] + A[l] * dc[l] * hp[l]);
        dA[l] += gl * delta[l] * dc[l] * hp[l];
        g[l] = dc[l] * gl;
    }
}

/* Carries the adjoint g (nn, LANES) of group c, states [n0, n0+nn), back through chunk [t0, t1),
 * adding the block's terms to the step sums (t1-t0), dB, dC and dA. On entry g holds
 * exp(delta_{t1} A) g_{t1} (zero past the end); on return the same for t0. */
static void chunk_bwd(const SsmBwd *w, Lanes c, int n0, int nn, int t0, int t1, const real_t (*A)[LANES],
                      real_t (*g)[LANES], const ChunkIn *ci, const ChunkStates *cs, StepSums *sums) {
    /* A, g (nn, LANES); sums (t1-t0) */
    const SsmIn *in = &w->in;
    int N = in->N;
    real_t dA[CPU_SSM_NBLK][LANES] = {{0}}; /* (nn, LANES) the chunk's sum_t g_t delta_t decay_t h_{t-1} */
    real_t pb[CPU_SSM_NBLK][LANES] = {{0}}, pc[CPU_SSM_NBLK][LANES] = {{0}}; /* (NBLK, LANES) a step's */
    for (int t = t1 - 1; t >= t0; t--) {
        size_t r = row_of(in, c.b, t);
        const real_t *Bt = in->Bm + r * in->ldbc + n0, *Ct = in->Cm + r * in->ldbc + n0; /* (nn) */
        for (int j = 0; j < nn; j++)
            adjoint_step(g[j], dA[j], &sums[t - t0], pb[j], pc[j], ci, cs, t - t0, j, A[j], Bt[j], Ct[j]);
        lanes_sums_add(w->pB + (size_t)t * N + n0, pb, nn);
        lanes_sums_add(w->pC + (size_t)t * N + n0, pc, nn);
    }
    /* Float within the chunk, double across chunks: 64 terms lose little, T terms could lose more. */
    for (int j = 0; j < nn; j++)
        for (int l = 0; l < c.nd; l++) w->pA[(size_t)(c.d0 + l) * N + n0 + j] += dA[j][l];
}

/* The chunk's gradients of the group's own elements: du, ddt, dz, with the D skip's terms, and the
 * skip's dy' u into pD (LANES). Each element takes its terms in the order a channel-at-a-time loop
 * did: skip first, then the states'. */
static void chunk_outputs(const SsmBwd *w, Lanes c, int t0, int t1, const ChunkIn *ci, const StepSums *sums,
                          double *pD) {
    /* sums (t1-t0) */
    const SsmIn *in = &w->in;
    real_t dsk[LANES]; /* (LANES) Dskip */
    lanes_get(dsk, in->Dskip + c.d0, c.nd);
    for (int t = t0; t < t1; t++) {
        int i = t - t0;
        const real_t *u = ci->u[i], *dy = ci->dy[i], *dyp = ci->dyp[i], *sgz = ci->sgz[i]; /* (LANES) */
        const StepSums *s = &sums[i];
        size_t r = row_of(in, c.b, t);
        real_t skip[LANES], v[LANES]; /* (LANES) the skip's term and the states' */
        for (int l = 0; l < LANES; l++) pD[l] += (double)dyp[l] * u[l];
        if (w->du) {
            for (int l = 0; l < LANES; l++) {
                skip[l] = dsk[l] * dyp[l];
                v[l] = s->du[l] * ci->delta[i][l];
            }
            lanes_add(w->du + r * in->D + c.d0, skip, c.nd);
            lanes_add(w->du + r * in->D + c.d0, v, c.nd);
        }
        if (w->ddt) {
            for (int l = 0; l < LANES; l++) v[l] = s->ddelta[l] * ci->gdt[i][l];
            lanes_add(w->ddt + r * in->D + c.d0, v, c.nd);
        }
        if (w->dz) {
            for (int l = 0; l < LANES; l++) {
                skip[l] = dsk[l] * u[l] * dy[l] * sgz[l];
                v[l] = s->y[l] * dy[l] * sgz[l];
            }
            lanes_add(w->dz + r * in->ldz + c.d0, skip, c.nd);
            lanes_add(w->dz + r * in->ldz + c.d0, v, c.nd);
        }
    }
}

/* Group c: every chunk in reverse, each block of states within a chunk. lane (2, N, LANES): room for
 * the group's A and its adjoint g, which carry across chunks. */
static void scan_bwd_lanes(const SsmBwd *w, Lanes c, real_t *lane) {
    const SsmIn *in = &w->in;
    int N = in->N;
    real_t (*A)[LANES] = (real_t (*)[LANES])lane, (*g)[LANES] = (real_t (*)[LANES])(lane + (size_t)N * LANES);
    ChunkIn ci;
    ChunkStates cs;
    StepSums sums[CPU_SSM_CHUNK]; /* (t1-t0) */
    double pD[LANES] = {0};       /* (LANES) */
    lanes_A(in, c, 0, N, A);
    memset(g, 0, sizeof(real_t) * N * LANES);
    for (int l = 0; l < c.nd; l++)
        for (int n = 0; n < N; n++) w->pA[(size_t)(c.d0 + l) * N + n] = 0.0;
    for (int ch = nchunks_of(in->T) - 1; ch >= 0; ch--) {
        int t0 = ch * CPU_SSM_CHUNK, t1 = t0 + CPU_SSM_CHUNK < in->T ? t0 + CPU_SSM_CHUNK : in->T;
        chunk_inputs(w, c, t0, t1, &ci);
        memset(sums, 0, sizeof sums);
        for (int n0 = 0; n0 < N; n0 += CPU_SSM_NBLK) {
            int nn = N - n0 < CPU_SSM_NBLK ? N - n0 : CPU_SSM_NBLK;
            chunk_states(w, c, n0, nn, t0, t1, (const real_t (*)[LANES])(A + n0), &ci, &cs);
            chunk_bwd(w, c, n0, nn, t0, t1, (const real_t (*)[LANES])(A + n0), g + n0, &ci, &cs, sums);
        }
        chunk_outputs(w, c, t0, t1, &ci, sums, pD);
    }
    for (int l = 0; l < c.nd; l++) w->pD[c.d0 + l] = pD[l];
}

static int groups_of(int D) { return (D + CPU_SSM_DGROUP - 1) / CPU_SSM_DGROUP; }
static int lane_groups_of(int D) { return (D + LANES - 1) / LANES; }

size_t cpu_ssm_bwd_scratch(int B, int T, int D, int N) {
    if (B <= 0 || T <= 0 || D <= 0 || N <= 0) return 0;
    return 2 * (size_t)B * groups_of(D) * T * N + (size_t)B * D * N + (size_t)B * D +
           2 * (size_t)B * lane_groups_of(D) * N * LANES;
}

/* The partial sums in the shared scratch (cpu_ssm_bwd_scratch doubles), and each group of lanes'
 * carried A and g (real_t, in room for as many doubles). */
typedef struct {
    double *pB, *pC; /* (B, groups, T, N) */
    double *pA;      /* (B, D, N) */
    double *pD;      /* (B, D) */
    real_t *lane;    /* (B, lane groups, 2, N, LANES) */
} SsmParts;

static SsmParts parts_of(const SsmIn *in, double *part) {
    size_t bc = (size_t)in->B * groups_of(in->D) * in->T * in->N, bdn = (size_t)in->B * in->D * in->N;
    SsmParts P = {part, part + bc, part + 2 * bc, part + 2 * bc + bdn,
                  (real_t *)(part + 2 * bc + bdn + (size_t)in->B * in->D)};
    return P;
}

/* Unit (b, group): its groups of lanes in order, into partials of its own. */
static void scan_bwd_unit(SsmBwd w, SsmParts P, int b, int grp) {
    const SsmIn *in = &w.in;
    size_t tn = (size_t)in->T * in->N, slice = ((size_t)b * groups_of(in->D) + grp) * tn;
    w.pB = P.pB + slice;
    w.pC = P.pC + slice;
    w.pA = P.pA + (size_t)b * in->D * in->N;
    w.pD = P.pD + (size_t)b * in->D;
    for (size_t i = 0; i < tn; i++) w.pB[i] = w.pC[i] = 0.0;
    int d1 = (grp + 1) * CPU_SSM_DGROUP < in->D ? (grp + 1) * CPU_SSM_DGROUP : in->D;
    for (int d0 = grp * CPU_SSM_DGROUP; d0 < d1; d0 += LANES) {
        size_t lg = (size_t)b * lane_groups_of(in->D) + d0 / LANES;
        scan_bwd_lanes(&w, lanes_at(in, b, d0), P.lane + lg * 2 * in->N * LANES);
    }
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
