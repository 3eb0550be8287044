/* Mamba on the GPU: the causal depthwise conv1d and the selective scan, fp32, the same algorithm and
 * saved-state layout as core/backend/cpu/cpu_conv1d.c and cpu_ssm.c (read those for the derivation).
 *
 * Scan forward: one thread per channel (b, d), consecutive threads on consecutive d so every (B,T,D)
 * access is coalesced and a row's B_t, C_t are broadcasts. The states go in blocks of SSM_NBLK kept in
 * registers; only each chunk's start state is saved, saved (B, nchunks, N, D).
 *
 * Scan backward: one warp per unit (b, group of 32 channels), a lane per channel. Each chunk, in
 * reverse, is recomputed from its saved start into a tile in global scratch (a column per lane, so the
 * accesses coalesce), then the adjoint runs back through it. dB and dC sum over d: per (t, n) the warp
 * adds its 32 lanes with an xor butterfly and lane 0 writes the group's partial; dA_log and dDskip sum
 * over b through per-b partials. Two small kernels then add the partials in a fixed order. No atomics:
 * reruns are bit-identical. */
#include "core/backend/cuda/cuda_ops.h"

#define SSM_CHUNK 64 /* steps between saved states, as on the CPU */
#define SSM_NBLK 16  /* states in registers at a time: Mamba's N = 16 in one block */
#define SSM_BWD_WARPS 4
#define SSM_BWD_THREADS (SSM_BWD_WARPS * 32)

/* dw/db tiles: 32 channels by CONV_ROWS row strides, as bias_bwd. */
#define CONV_COLS 32
#define CONV_ROWS 32

/* ---- conv1d ---- */

static __global__ void conv1d_fwd_kernel(float *out, const float *x, int ldx, const float *w, const float *bias,
                                         const float *state, int B, int T, int D, int K) {
    /* out (B,T,D); x (B,T,D; ldx); w (D,K); bias (D) or NULL; state (B,K-1,D) or NULL */
    GRID_STRIDE(i, (size_t)B * T * D) {
        size_t r = i / (size_t)D;
        int d = (int)(i % (size_t)D), b = (int)(r / (size_t)T), t = (int)(r % (size_t)T);
        float acc = bias ? bias[d] : 0.0f;
        for (int k = 0; k < K; k++) {
            int s = t - K + 1 + k;
            if (s >= 0) acc += w[(size_t)d * K + k] * x[((size_t)b * T + s) * ldx + d];
            else if (state) acc += w[(size_t)d * K + k] * state[((size_t)b * (K - 1) + K - 1 + s) * D + d];
        }
        out[i] = acc;
    }
}

/* The state after T inputs, one thread per (b, d) going up its K-1 rows: row i takes input T-(K-1)+i,
 * or old row T+i > i for a short call, read before anything overwrites it. */
static __global__ void conv1d_state_kernel(float *state, const float *x, int ldx, int B, int T, int D, int K) {
    /* state (B,K-1,D) in/out; x (B,T,D; ldx) */
    GRID_STRIDE(i, (size_t)B * D) {
        int b = (int)(i / (size_t)D), d = (int)(i % (size_t)D);
        float *sb = state + (size_t)b * (K - 1) * D + d;
        for (int r = 0; r < K - 1; r++) {
            int s = T - (K - 1) + r;
            sb[(size_t)r * D] = s >= 0 ? x[((size_t)b * T + s) * ldx + d] : sb[(size_t)(T + r) * D];
        }
    }
}

void cuda_conv1d_fwd(const Backend *be, real_t *out, const real_t *x, int ldx, const real_t *w, const real_t *b,
                     real_t *state, int B, int T, int D, int K) {
    CudaState *cu = cuda_enter(be);
    size_t n = (size_t)B * T * D;
    if (!n) return;
    conv1d_fwd_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(out, x, ldx, w, b, state, B, T, D, K);
    CUDA_CHECK_LAUNCH(cu, conv1d_fwd_kernel);
    if (!state || K < 2) return;
    /* Stream order: every output has read the old state first. */
    size_t nc = (size_t)B * D;
    conv1d_state_kernel<<<cuda_grid(nc, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(state, x, ldx, B, T, D, K);
    CUDA_CHECK_LAUNCH(cu, conv1d_state_kernel);
}

static __global__ void conv1d_dx_kernel(float *dx, int ldx, const float *dout, const float *w, int B, int T, int D,
                                        int K) {
    /* dx (B,T,D; ldx) += sum_k w[d,k] dout[b, s+K-1-k, d]; dout (B,T,D); w (D,K) */
    GRID_STRIDE(i, (size_t)B * T * D) {
        size_t r = i / (size_t)D;
        int d = (int)(i % (size_t)D), b = (int)(r / (size_t)T), s = (int)(r % (size_t)T);
        float acc = 0.0f;
        for (int k = 0; k < K; k++) {
            int t = s + K - 1 - k;
            if (t < T) acc += w[(size_t)d * K + k] * dout[((size_t)b * T + t) * D + d];
        }
        dx[r * ldx + d] += acc;
    }
}

/* Block (channels [32 bx, +32), tap k = by; k == K is the bias): thread (x, y) sums rows y, y+CONV_ROWS, ...
 * in double, row y = 0 adds the partials in order. Every output has one owner: no atomics. */
static __global__ void conv1d_dw_kernel(float *dw, float *db, const float *dout, const float *x, int ldx, int B,
                                        int T, int D, int K) {
    /* dw (D,K) or NULL; db (D) or NULL; dout (B,T,D); x (B,T,D; ldx) */
    __shared__ double part[CONV_ROWS][CONV_COLS + 1];
    int d = blockIdx.x * CONV_COLS + threadIdx.x, k = blockIdx.y, shift = K - 1 - k;
    float *dst = k == K ? db : dw;
    if (!dst) return; /* the same for the whole block */
    double acc = 0.0;
    if (d < D)
        for (int r = threadIdx.y; r < B * T; r += CONV_ROWS) {
            int t = r % T;
            double g = dout[(size_t)r * D + d];
            if (k == K) acc += g;
            else if (t >= shift) acc += g * (double)x[((size_t)r - shift) * ldx + d];
        }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y != 0 || d >= D) return;
    double s = 0.0;
    for (int y = 0; y < CONV_ROWS; y++) s += part[y][threadIdx.x];
    if (k == K) db[d] += (float)s;
    else dw[(size_t)d * K + k] += (float)s;
}

void cuda_conv1d_bwd(const Backend *be, real_t *dx, real_t *dw, real_t *db, const real_t *dout, const real_t *x,
                     int ldx, const real_t *w, int B, int T, int D, int K) {
    CudaState *cu = cuda_enter(be);
    size_t n = (size_t)B * T * D;
    if (!n) return;
    if (dx) {
        conv1d_dx_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(dx, ldx, dout, w, B, T, D, K);
        CUDA_CHECK_LAUNCH(cu, conv1d_dx_kernel);
    }
    if (!dw && !db) return;
    dim3 grid((unsigned)((D + CONV_COLS - 1) / CONV_COLS), (unsigned)(K + 1)), block(CONV_COLS, CONV_ROWS);
    conv1d_dw_kernel<<<grid, block, 0, cu->stream>>>(dw, db, dout, x, ldx, B, T, D, K);
    CUDA_CHECK_LAUNCH(cu, conv1d_dw_kernel);
}

/* ---- selective scan ---- */

/* The scan's inputs, as ssm_scan_fwd documents them. */
typedef struct {
    const float *u, *dt;  /* (B,T,D) */
    const float *A_log;   /* (D,N) */
    const float *Bm, *Cm; /* (B,T,N; ldbc) */
    const float *Dskip;   /* (D) */
    const float *z;       /* (B,T,D; ldz) */
    int ldbc, ldz, B, T, D, N;
} SsmArgs;

/* torch's softplus (threshold 20) and its derivative. */
static __device__ __forceinline__ float ssm_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
static __device__ __forceinline__ float ssm_softplus_grad(float x) { return x > 20.0f ? 1.0f : cuda_sigmoidf(x); }
static __device__ __forceinline__ float ssm_silu_grad(float x) {
    float s = cuda_sigmoidf(x);
    return s + x * s * (1.0f - s);
}

static __host__ __device__ __forceinline__ int ssm_nchunks(int T) { return (T + SSM_CHUNK - 1) / SSM_CHUNK; }

/* Where chunk c's start state of (b, d, n) lives in saved (B, nchunks, N, D). */
static __device__ __forceinline__ size_t ssm_saved_at(const SsmArgs &a, int b, int c, int n, int d) {
    return (((size_t)b * ssm_nchunks(a.T) + c) * a.N + n) * a.D + d;
}

size_t cuda_ssm_scan_saved(const Backend *be, int B, int T, int D, int N) {
    (void)be;
    return (size_t)B * ssm_nchunks(T) * N * D;
}

/* Channel (b, d), states [n0, n0+nn): the recurrence from h (or zero), adding sum_n C_t h_t to y. */
static __device__ __forceinline__ void ssm_fwd_block(const SsmArgs &a, int b, int d, int n0, int nn, float *y,
                                                     float *saved, float *h) {
    /* y (B,T,D); saved (B,nchunks,N,D) or NULL; h (B,D,N) or NULL */
    float A[SSM_NBLK], hs[SSM_NBLK];
    float *hb = h ? h + ((size_t)b * a.D + d) * a.N + n0 : NULL; /* (nn) */
#pragma unroll
    for (int j = 0; j < SSM_NBLK; j++) {
        A[j] = j < nn ? -expf(a.A_log[(size_t)d * a.N + n0 + j]) : 0.0f;
        hs[j] = j < nn && hb ? hb[j] : 0.0f;
    }
    for (int t = 0; t < a.T; t++) {
        if (saved && t % SSM_CHUNK == 0) {
#pragma unroll
            for (int j = 0; j < SSM_NBLK; j++)
                if (j < nn) saved[ssm_saved_at(a, b, t / SSM_CHUNK, n0 + j, d)] = hs[j];
        }
        size_t r = (size_t)b * a.T + t;
        float delta = ssm_softplus(a.dt[r * a.D + d]), du = delta * a.u[r * a.D + d], acc = 0.0f;
        const float *Bt = a.Bm + r * a.ldbc + n0, *Ct = a.Cm + r * a.ldbc + n0; /* (nn) */
#pragma unroll
        for (int j = 0; j < SSM_NBLK; j++) {
            if (j >= nn) break;
            hs[j] = expf(delta * A[j]) * hs[j] + du * Bt[j];
            acc += Ct[j] * hs[j];
        }
        y[r * a.D + d] += acc;
    }
#pragma unroll
    for (int j = 0; j < SSM_NBLK; j++)
        if (hb && j < nn) hb[j] = hs[j];
}

static __global__ void ssm_fwd_kernel(float *y, float *saved, float *h, SsmArgs a) {
    GRID_STRIDE(i, (size_t)a.B * a.D) {
        int b = (int)(i / (size_t)a.D), d = (int)(i % (size_t)a.D);
        for (int t = 0; t < a.T; t++) {
            size_t r = (size_t)b * a.T + t;
            y[r * a.D + d] = a.Dskip[d] * a.u[r * a.D + d];
        }
        for (int n0 = 0; n0 < a.N; n0 += SSM_NBLK)
            ssm_fwd_block(a, b, d, n0, min(SSM_NBLK, a.N - n0), y, saved, h);
        for (int t = 0; t < a.T; t++) {
            size_t r = (size_t)b * a.T + t;
            float zt = a.z[r * a.ldz + d];
            y[r * a.D + d] *= zt * cuda_sigmoidf(zt);
        }
    }
}

void cuda_ssm_scan_fwd(const Backend *be, real_t *y, real_t *saved, real_t *h, const real_t *u, const real_t *dt,
                       const real_t *A_log, const real_t *Bm, const real_t *Cm, int ldbc, const real_t *Dskip,
                       const real_t *z, int ldz, int B, int T, int D, int N) {
    CudaState *cu = cuda_enter(be);
    size_t n = (size_t)B * D;
    if (!n || T <= 0) return;
    SsmArgs a = {u, dt, A_log, Bm, Cm, Dskip, z, ldbc, ldz, B, T, D, N};
    ssm_fwd_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(y, saved, h, a);
    CUDA_CHECK_LAUNCH(cu, ssm_fwd_kernel);
}

/* ---- scan backward ---- */

static __host__ __device__ __forceinline__ int ssm_groups(int D) { return (D + 31) / 32; }

/* The recomputed chunk: (SSM_CHUNK+1, SSM_NBLK) states per lane of every unit. */
size_t cuda_ssm_tile_bytes(int B, int D) {
    return (size_t)(SSM_CHUNK + 1) * SSM_NBLK * (size_t)B * ssm_groups(D) * 32 * sizeof(float);
}

/* pB, pC (B, groups, T, N); pA (B, D, N); pD (B, D). */
size_t cuda_ssm_part_bytes(int B, int T, int D, int N) {
    return (2 * (size_t)B * ssm_groups(D) * T * N + (size_t)B * D * N + (size_t)B * D) * sizeof(float);
}

typedef struct {
    SsmArgs a;
    const float *dy;    /* (B,T,D) */
    const float *saved; /* (B,nchunks,N,D) */
    float *du, *ddt;    /* (B,T,D) or NULL */
    float *dz;          /* (B,T,D; ldz) or NULL */
    float *tile;        /* (SSM_CHUNK+1, SSM_NBLK, lanes): lanes = B * groups * 32 */
    float *pB, *pC;     /* (B, groups, T, N) */
    float *pA;          /* (B, D, N) */
    float *pD;          /* (B, D) */
} SsmBwdArgs;

/* A lane's view: its channel, whether it is a real one (lanes past D read channel D-1 and write
 * nothing, but take part in every shuffle), its tile column. */
typedef struct {
    int b, d, lane, active;
    size_t unit;
    float *tile; /* this lane's column; entry (i, j) at [(i * SSM_NBLK + j) * stride] */
    size_t stride;
} SsmLane;

static __device__ __forceinline__ float warp_sum_f(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* hs(i) = h_{t0-1+i} for i in [0, t1-t0], from the saved start of chunk t0 / SSM_CHUNK. */
static __device__ __forceinline__ void ssm_chunk_states(const SsmBwdArgs &w, const SsmLane &L, int n0, int nn,
                                                        int t0, int t1, const float *A) {
    /* A (nn) */
    const SsmArgs &a = w.a;
    for (int j = 0; j < nn; j++)
        L.tile[(size_t)j * L.stride] = w.saved[ssm_saved_at(a, L.b, t0 / SSM_CHUNK, n0 + j, L.d)];
    for (int t = t0; t < t1; t++) {
        size_t r = (size_t)L.b * a.T + t, i = (size_t)(t - t0) * SSM_NBLK;
        float delta = ssm_softplus(a.dt[r * a.D + L.d]), du = delta * a.u[r * a.D + L.d];
        const float *Bt = a.Bm + r * a.ldbc + n0; /* (nn) */
#pragma unroll
        for (int j = 0; j < SSM_NBLK; j++) {
            if (j >= nn) break;
            float *hp = L.tile + (i + j) * L.stride, *hc = hp + SSM_NBLK * L.stride;
            *hc = expf(delta * A[j]) * *hp + du * Bt[j];
        }
    }
}

/* The adjoint g back through chunk [t0, t1) (on entry exp(delta_{t1} A) g_{t1}, on return the same at
 * t0), adding the block's share of every gradient; dA collects sum_t g_t delta_t decay_t h_{t-1}. */
static __device__ __forceinline__ void ssm_chunk_bwd(const SsmBwdArgs &w, const SsmLane &L, int n0, int nn, int t0,
                                                     int t1, const float *A, float *g, double *dA) {
    /* A, g, dA (nn), in registers once inlined */
    const SsmArgs &a = w.a;
    int G = ssm_groups(a.D);
    for (int t = t1 - 1; t >= t0; t--) {
        size_t r = (size_t)L.b * a.T + t, i = (size_t)(t - t0) * SSM_NBLK;
        float x = a.dt[r * a.D + L.d], delta = ssm_softplus(x), u = a.u[r * a.D + L.d];
        float zt = a.z[r * a.ldz + L.d], dy = L.active ? w.dy[r * a.D + L.d] : 0.0f;
        float dyp = dy * zt * cuda_sigmoidf(zt); /* the gradient of y before the gate */
        const float *Bt = a.Bm + r * a.ldbc + n0, *Ct = a.Cm + r * a.ldbc + n0; /* (nn) */
        size_t part = (((size_t)L.b * G + L.unit % G) * a.T + t) * a.N + n0;
        float s_du = 0.0f, s_ddelta = 0.0f, s_y = 0.0f;
#pragma unroll
        for (int j = 0; j < SSM_NBLK; j++) {
            if (j >= nn) break;
            float hp = L.tile[(i + j) * L.stride], hc = L.tile[(i + SSM_NBLK + j) * L.stride];
            float dc = expf(delta * A[j]), gj = Ct[j] * dyp + g[j];
            s_y += Ct[j] * hc;
            float sc = warp_sum_f(dyp * hc), sb = warp_sum_f(gj * delta * u);
            if (L.lane == 0) {
                w.pC[part + j] = sc;
                w.pB[part + j] = sb;
            }
            s_du += gj * Bt[j];
            s_ddelta += gj * (Bt[j] * u + A[j] * dc * hp);
            dA[j] += (double)gj * delta * dc * hp;
            g[j] = dc * gj;
        }
        if (!L.active) continue;
        if (w.du) w.du[r * a.D + L.d] += s_du * delta;
        if (w.ddt) w.ddt[r * a.D + L.d] += s_ddelta * ssm_softplus_grad(x);
        if (w.dz) w.dz[r * a.ldz + L.d] += s_y * dy * ssm_silu_grad(zt);
    }
}

/* The D-skip terms of one lane's channel: du, dz, and this b's dDskip. */
static __device__ void ssm_bwd_skip(const SsmBwdArgs &w, const SsmLane &L) {
    const SsmArgs &a = w.a;
    double pD = 0.0;
    for (int t = 0; t < a.T; t++) {
        size_t r = (size_t)L.b * a.T + t;
        float u = a.u[r * a.D + L.d], zt = a.z[r * a.ldz + L.d], dy = w.dy[r * a.D + L.d];
        float dyp = dy * zt * cuda_sigmoidf(zt);
        pD += (double)dyp * u;
        if (w.du) w.du[r * a.D + L.d] += a.Dskip[L.d] * dyp;
        if (w.dz) w.dz[r * a.ldz + L.d] += a.Dskip[L.d] * u * dy * ssm_silu_grad(zt);
    }
    w.pD[(size_t)L.b * a.D + L.d] = (float)pD;
}

static __global__ void __launch_bounds__(SSM_BWD_THREADS) ssm_bwd_kernel(SsmBwdArgs w) {
    const SsmArgs &a = w.a;
    int G = ssm_groups(a.D);
    size_t unit = (size_t)blockIdx.x * SSM_BWD_WARPS + threadIdx.x / 32;
    if (unit >= (size_t)a.B * G) return; /* the whole warp */
    SsmLane L;
    L.lane = threadIdx.x % 32;
    L.unit = unit;
    L.b = (int)(unit / G);
    L.d = (int)(unit % G) * 32 + L.lane;
    L.active = L.d < a.D;
    if (!L.active) L.d = a.D - 1;
    L.stride = (size_t)a.B * G * 32;
    L.tile = w.tile + unit * 32 + L.lane;
    if (L.active) ssm_bwd_skip(w, L);
    for (int n0 = 0; n0 < a.N; n0 += SSM_NBLK) {
        int nn = min(SSM_NBLK, a.N - n0);
        float A[SSM_NBLK], g[SSM_NBLK];
        double dA[SSM_NBLK];
#pragma unroll
        for (int j = 0; j < SSM_NBLK; j++) {
            A[j] = j < nn ? -expf(a.A_log[(size_t)L.d * a.N + n0 + j]) : 0.0f;
            g[j] = 0.0f;
            dA[j] = 0.0;
        }
        for (int c = ssm_nchunks(a.T) - 1; c >= 0; c--) {
            int t0 = c * SSM_CHUNK, t1 = min(t0 + SSM_CHUNK, a.T);
            ssm_chunk_states(w, L, n0, nn, t0, t1, A);
            ssm_chunk_bwd(w, L, n0, nn, t0, t1, A, g, dA);
        }
#pragma unroll
        for (int j = 0; j < SSM_NBLK; j++)
            if (L.active && j < nn) w.pA[((size_t)L.b * a.D + L.d) * a.N + n0 + j] = (float)dA[j];
    }
}

/* dB, dC (B,T,N; ldbc) += the groups' partials, summed in group order; one thread per (b, t, n). */
static __global__ void ssm_reduce_bc_kernel(float *dB, float *dC, const float *pB, const float *pC, int B, int T,
                                            int N, int G, int ldbc) {
    size_t tn = (size_t)T * N;
    GRID_STRIDE(i, (size_t)B * tn) {
        size_t b = i / tn, at = i % tn, r = i / (size_t)N;
        double sb = 0.0, sc = 0.0;
        for (int grp = 0; grp < G; grp++) {
            sb += pB[(b * G + grp) * tn + at];
            sc += pC[(b * G + grp) * tn + at];
        }
        if (dB) dB[r * ldbc + i % N] += (float)sb;
        if (dC) dC[r * ldbc + i % N] += (float)sc;
    }
}

/* dA_log (D,N) += A * sum_b pA, dDskip (D) += sum_b pD, b in order; one thread per entry. */
static __global__ void ssm_reduce_ad_kernel(float *dA_log, float *dDskip, const float *A_log, const float *pA,
                                            const float *pD, int B, int D, int N) {
    size_t dn = (size_t)D * N;
    GRID_STRIDE(i, dn + D) {
        int is_a = i < dn;
        if (is_a ? !dA_log : !dDskip) continue;
        double s = 0.0;
        for (int b = 0; b < B; b++) s += is_a ? pA[b * dn + i] : pD[(size_t)b * D + (i - dn)];
        /* A = -exp(A_log): dL/dA_log = dL/dA * A */
        if (is_a) dA_log[i] += (float)(s * -exp((double)A_log[i]));
        else dDskip[i - dn] += (float)s;
    }
}

void cuda_ssm_scan_bwd(const Backend *be, real_t *du, real_t *ddt, real_t *dA_log, real_t *dB, real_t *dC,
                       real_t *dDskip, real_t *dz, const real_t *dy, const real_t *saved, const real_t *u,
                       const real_t *dt, const real_t *A_log, const real_t *Bm, const real_t *Cm, int ldbc,
                       const real_t *Dskip, const real_t *z, int ldz, int B, int T, int D, int N) {
    CudaState *cu = cuda_enter(be);
    if (!du && !ddt && !dA_log && !dB && !dC && !dDskip && !dz) return;
    if (B <= 0 || T <= 0 || D <= 0 || N <= 0) return;
    if (!saved) {
        CUDA_FAIL(cu, PEFTC_EINVAL, "ssm_scan_bwd needs the states ssm_scan_fwd saved, got saved = NULL");
        return;
    }
    float *tile = (float *)cuda_scratch(cu, CUDA_SCRATCH_SSM_TILE, cuda_ssm_tile_bytes(B, D));
    float *part = (float *)cuda_scratch(cu, CUDA_SCRATCH_SSM_PART, cuda_ssm_part_bytes(B, T, D, N));
    if (!tile || !part) return;
    int G = ssm_groups(D);
    size_t bc = (size_t)B * G * T * N;
    SsmBwdArgs w = {{u, dt, A_log, Bm, Cm, Dskip, z, ldbc, ldz, B, T, D, N}, dy, saved, du, ddt, dz, tile,
                    part, part + bc, part + 2 * bc, part + 2 * bc + (size_t)B * D * N};
    size_t units = (size_t)B * G;
    unsigned blocks = (unsigned)((units + SSM_BWD_WARPS - 1) / SSM_BWD_WARPS);
    ssm_bwd_kernel<<<blocks, SSM_BWD_THREADS, 0, cu->stream>>>(w);
    CUDA_CHECK_LAUNCH(cu, ssm_bwd_kernel);
    if (dB || dC) {
        size_t n = (size_t)B * T * N;
        ssm_reduce_bc_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(dB, dC, w.pB, w.pC, B, T, N, G,
                                                                                     ldbc);
        CUDA_CHECK_LAUNCH(cu, ssm_reduce_bc_kernel);
    }
    if (dA_log || dDskip) {
        size_t n = (size_t)D * N + D;
        ssm_reduce_ad_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(dA_log, dDskip, A_log, w.pA,
                                                                                     w.pD, B, D, N);
        CUDA_CHECK_LAUNCH(cu, ssm_reduce_ad_kernel);
    }
}
