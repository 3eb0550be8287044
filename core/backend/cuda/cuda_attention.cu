/* Causal grouped-query attention on the GPU, FlashAttention-2 style, fp32 throughout.
 *
 * The forward never forms the (T,T) matrix: it streams key tiles through shared memory with an
 * online softmax and saves one log-sum-exp per query row, LSE_t = log sum_s exp(scale q_t.k_s) (natural
 * log, of the scaled scores), in `att` (B,NH,T). The backward recomputes P = exp(scale q.k - LSE) from
 * it, tile by tile.
 *
 * Work layout shared by the three tiled kernels (ATT_THREADS = 4 warps per block):
 *  - A block owns ATT_ROWS = 16 rows of one (b, head): query rows (forward, dq) or key rows (dk/dv).
 *    Warp w owns rows [w*ATT_RPW, (w+1)*ATT_RPW) of them.
 *  - The other side streams through shared memory in tiles of 32, one element per lane: lane l owns
 *    key k0+l (forward, dq) or query i0+l (dk/dv). Each lane computes the dot products of its key (or
 *    query) against the warp's ATT_RPW rows, reading its own shared-memory row with float4 loads and
 *    the warp's rows as broadcasts.
 *  - Accumulations over the tile (P v, dS k, P dout, dS q) then go the other way: lane l owns head
 *    dimensions l, l+32, l+64, l+96 and loops over the 32 tile entries in order, reading the
 *    per-entry weights back from shared memory.
 *
 * Assumptions, checked on the host (att_args_ok): 1 <= HD <= ATT_MAX_HD = 128, NKV >= 1, NH % NKV == 0.
 * Any T >= 1 (partial tiles are zero-filled and masked). Head h reads kv head h / (NH/NKV), scale is
 * 1/sqrt(HD), row t sees keys s <= t, and with segment ids (packed rows, staged from the host) only those
 * of its own segment: the same semantics as core/backend/cpu/cpu_attention.c. The segment test sits
 * beside the causal one in each kernel; every tile is still visited.
 *
 * Determinism: no atomics. Every output element is written by exactly one thread, which sums its terms
 * in a fixed order (key tiles ascending; in dk/dv the group's query heads ascending, then query tiles
 * ascending), so reruns are bit-identical. Results differ from the CPU backend only by summation order.
 */
#include <math.h>
#include <stdio.h>

#include "core/backend/cuda/cuda_ops.h"

#define ATT_WARPS 4
#define ATT_THREADS (ATT_WARPS * 32)
#define ATT_RPW 4                        /* rows per warp */
#define ATT_ROWS (ATT_WARPS * ATT_RPW)   /* rows a block owns: 16 */
#define ATT_TILE 32                      /* streamed tile: one key (or query) per lane */
#define ATT_MAX_HD 128
#define ATT_DPL (ATT_MAX_HD / 32)        /* head dimensions per lane in the accumulations */
#define ATT_SMEM_DEFAULT (48 * 1024)     /* dynamic shared memory a kernel gets without opting in */

/* Threads for one decode block: 8 warps split the cached positions of one (b, h). */
#define DEC_WARPS 8
#define DEC_THREADS (DEC_WARPS * 32)

/* Shared-memory row stride in floats for a head of HD: HD rounded up to 4 (float4 rows, 16-byte
 * aligned), plus 4 when that is a multiple of 8 floats. With stride/4 odd, the 8 lanes of each float4
 * phase that read 8 different rows hit 8 different 16-byte bank groups: no bank conflicts. Columns
 * [HD, stride) are zero-filled, so dot products may run over the padded length (HD rounded up to 4). */
__host__ __device__ static inline int att_hdp(int HD) { return (HD + 3) & ~3; }
__host__ __device__ static inline int att_stride(int HD) {
    int p = att_hdp(HD);
    return (p / 4) % 2 ? p : p + 4;
}

__device__ static inline float warp_max(float x) {
    /* xor butterfly: every lane ends with the same value (max and + are commutative) */
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

__device__ static inline float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

/* dst (nrows, stride) <- rows [r0, r0+nrows) of one head of a (B,T,heads,HD) tensor, zero past T and
 * past HD. src points at (b, t=0, head, d=0); consecutive rows are ld = heads*HD floats apart. Called by
 * the whole block; the caller synchronises. */
__device__ static void load_rows(float *dst, const float *src, int ld, int r0, int nrows, int T, int HD, int stride) {
    for (int idx = threadIdx.x; idx < nrows * stride; idx += blockDim.x) {
        int r = idx / stride, d = idx % stride, t = r0 + r;
        dst[idx] = (t < T && d < HD) ? src[(size_t)t * ld + d] : 0.0f;
    }
}

/* s[r] = rows[r] . mine for the warp's ATT_RPW rows: `rows` (ATT_RPW, stride) is read as broadcasts,
 * `mine` (hdp) is this lane's own row. Both are zero-padded up to hdp, a multiple of 4. */
__device__ static inline void dot_rows(float s[ATT_RPW], const float *rows, const float *mine, int hdp, int stride) {
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) s[r] = 0.0f;
    for (int d = 0; d < hdp; d += 4) {
        float4 m = *(const float4 *)(mine + d);
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            float4 x = *(const float4 *)(rows + r * stride + d);
            s[r] += x.x * m.x + x.y * m.y + x.z * m.z + x.w * m.w;
        }
    }
}

/* acc[r][i] += sum over the tile's 32 entries j of w[r][j] * tile[j][lane + 32 i]: the accumulation
 * half of each step. w (ATT_RPW, ATT_TILE) is the warp's weights in shared memory (written by this warp
 * and published with __syncwarp), tile (ATT_TILE, stride). Dimensions >= HD are left alone. */
__device__ static inline void accum_tile(float acc[ATT_RPW][ATT_DPL], const float *w, const float *tile, int stride,
                                         int HD, int lane) {
    for (int j = 0; j < ATT_TILE; j++) {
        float wj[ATT_RPW];
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) wj[r] = w[r * ATT_TILE + j];
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) {
            int d = lane + 32 * i;
            if (d >= HD) break;
            float x = tile[j * stride + d];
#pragma unroll
            for (int r = 0; r < ATT_RPW; r++) acc[r][i] += wj[r] * x;
        }
    }
}

/* ---- forward ----
 * Grid (ceil(T/16), NH, B), ATT_THREADS threads. Block: query rows [q0, q0+16) of (b, h). Shared:
 * Qs (16, stride), Ks and Vs (32, stride) for the current key tile, Ps (4 warps, 4 rows, 32) the
 * probabilities of the tile. Key tiles run from 0 up to the block's last row (causal). Per row and
 * tile: m_new = max(m, tile max), the row's running output and sum are rescaled by exp(m - m_new).
 * The running sum is kept per lane (each lane's share of the keys) and reduced once at the end. */
__global__ void __launch_bounds__(ATT_THREADS)
attn_fwd_kernel(float *out, float *lse, const float *q, const float *k, const float *v, const int *seg, int T, int NH,
                int NKV, int HD, float scale) {
    /* out, q (B,T,NH,HD); k, v (B,T,NKV,HD); lse (B,NH,T); seg (B,T) or NULL */
    extern __shared__ float4 att_smem_f4[];
    int stride = att_stride(HD), hdp = att_hdp(HD);
    float *Qs = (float *)att_smem_f4, *Ks = Qs + ATT_ROWS * stride, *Vs = Ks + ATT_TILE * stride;
    float *Ps = Vs + ATT_TILE * stride;
    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * ATT_ROWS, g = h / (NH / NKV);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, ldq = NH * HD, ldkv = NKV * HD;
    const float *qb = q + (size_t)b * T * ldq + (size_t)h * HD;
    const float *kb = k + (size_t)b * T * ldkv + (size_t)g * HD, *vb = v + (size_t)b * T * ldkv + (size_t)g * HD;
    float *pw = Ps + warp * ATT_RPW * ATT_TILE; /* (ATT_RPW, ATT_TILE) this warp's */
    const int *sb = seg ? seg + (size_t)b * T : NULL; /* (T) or NULL */

    load_rows(Qs, qb, ldq, q0, ATT_ROWS, T, HD, stride);
    /* Row t sees keys [0, lim] of segment sq. Rows past T (never stored) act as row 0. A tile where a
     * row sees no key (all before its segment) leaves m at -inf: alpha and p are then taken as 1 and 0,
     * since exp(-inf - -inf) would be NaN. */
    int lim[ATT_RPW], sq[ATT_RPW];
    float m[ATT_RPW], l[ATT_RPW], o[ATT_RPW][ATT_DPL];
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        int t = q0 + warp * ATT_RPW + r;
        lim[r] = t < T ? t : 0;
        sq[r] = sb ? sb[lim[r]] : 0;
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) o[r][i] = 0.0f;
    }
    int kend = min(q0 + ATT_ROWS, T); /* keys [0, kend) are seen by some row of the block */
    for (int k0 = 0; k0 < kend; k0 += ATT_TILE) {
        __syncthreads(); /* the previous tile is consumed (and Qs is loaded, on the first pass) */
        load_rows(Ks, kb, ldkv, k0, ATT_TILE, T, HD, stride);
        load_rows(Vs, vb, ldkv, k0, ATT_TILE, T, HD, stride);
        __syncthreads();
        float s[ATT_RPW];
        dot_rows(s, Qs + warp * ATT_RPW * stride, Ks + lane * stride, hdp, stride);
        int key = k0 + lane, ks = sb && key < T ? sb[key] : 0;
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            float sr = key <= lim[r] && ks == sq[r] ? s[r] * scale : -INFINITY;
            float mn = fmaxf(m[r], warp_max(sr));
            int none = mn == -INFINITY;                  /* no key of this row seen yet */
            float alpha = none ? 1.0f : expf(m[r] - mn); /* 0 on the row's first seen tile, where m = -inf */
            float p = none ? 0.0f : expf(sr - mn);       /* 0 for masked keys */
            l[r] = l[r] * alpha + p;
            m[r] = mn;
            pw[r * ATT_TILE + lane] = p;
#pragma unroll
            for (int i = 0; i < ATT_DPL; i++) o[r][i] *= alpha;
        }
        __syncwarp();
        accum_tile(o, pw, Vs, stride, HD, lane);
    }
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        int t = q0 + warp * ATT_RPW + r; /* warp-uniform, so the whole warp takes the branch */
        if (t >= T) continue;
        float sum = warp_sum(l[r]);
        float *orow = out + ((size_t)b * T + t) * ldq + (size_t)h * HD;
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) {
            int d = lane + 32 * i;
            if (d < HD) orow[d] = o[r][i] / sum;
        }
        if (lane == 0) lse[((size_t)b * NH + h) * T + t] = m[r] + logf(sum);
    }
}

/* ---- backward, pass 1: D and dq ----
 * Grid (ceil(T/16), NH, B), ATT_THREADS threads; the forward's layout plus dOs (16, stride) for the
 * block's rows of dout. With P_ts = exp(scale q_t.k_s - LSE_t) and dP_ts = dout_t.v_s:
 *   sweep A:  D_t = sum_s P_ts dP_ts  (= dout_t . out_t, which is not passed in), stored to Dbuf for
 *             pass 2;
 *   sweep B:  dS_ts = P_ts (dP_ts - D_t),  dq_t += scale sum_s dS_ts k_s.
 * With dq NULL only sweep A runs. Masked and out-of-range keys get P = 0 exactly. */
__global__ void __launch_bounds__(ATT_THREADS)
attn_bwd_dq_kernel(float *dq, float *Dbuf, const float *dout, const float *lse, const float *q, const float *k,
                   const float *v, const int *seg, int T, int NH, int NKV, int HD, float scale) {
    /* dq, dout, q (B,T,NH,HD); k, v (B,T,NKV,HD); lse, Dbuf (B,NH,T); seg (B,T) or NULL */
    extern __shared__ float4 att_smem_f4[];
    int stride = att_stride(HD), hdp = att_hdp(HD);
    float *Qs = (float *)att_smem_f4, *dOs = Qs + ATT_ROWS * stride, *Ks = dOs + ATT_ROWS * stride;
    float *Vs = Ks + ATT_TILE * stride, *Ps = Vs + ATT_TILE * stride;
    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * ATT_ROWS, g = h / (NH / NKV);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, ldq = NH * HD, ldkv = NKV * HD;
    size_t qoff = (size_t)b * T * ldq + (size_t)h * HD, kvoff = (size_t)b * T * ldkv + (size_t)g * HD;
    const float *lse_h = lse + ((size_t)b * NH + h) * T;
    float *pw = Ps + warp * ATT_RPW * ATT_TILE;
    const int *sb = seg ? seg + (size_t)b * T : NULL; /* (T) or NULL */

    load_rows(Qs, q + qoff, ldq, q0, ATT_ROWS, T, HD, stride);
    load_rows(dOs, dout + qoff, ldq, q0, ATT_ROWS, T, HD, stride);
    int lim[ATT_RPW], sq[ATT_RPW];
    float L[ATT_RPW], D[ATT_RPW];
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        int t = q0 + warp * ATT_RPW + r;
        lim[r] = t < T ? t : -1; /* rows past T see no key: P = 0, D = 0, nothing stored */
        sq[r] = sb && t < T ? sb[t] : 0;
        L[r] = t < T ? lse_h[t] : 0.0f;
        D[r] = 0.0f;
    }
    const float *qw = Qs + warp * ATT_RPW * stride, *dow = dOs + warp * ATT_RPW * stride;
    int kend = min(q0 + ATT_ROWS, T);

    /* sweep A: each lane sums its keys' share of D, reduced across the warp afterwards */
    for (int k0 = 0; k0 < kend; k0 += ATT_TILE) {
        __syncthreads();
        load_rows(Ks, k + kvoff, ldkv, k0, ATT_TILE, T, HD, stride);
        load_rows(Vs, v + kvoff, ldkv, k0, ATT_TILE, T, HD, stride);
        __syncthreads();
        float s[ATT_RPW], dp[ATT_RPW];
        dot_rows(s, qw, Ks + lane * stride, hdp, stride);
        dot_rows(dp, dow, Vs + lane * stride, hdp, stride);
        int key = k0 + lane, ks = sb && key < T ? sb[key] : 0;
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            float p = key <= lim[r] && ks == sq[r] ? expf(s[r] * scale - L[r]) : 0.0f;
            D[r] += p * dp[r];
        }
    }
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        D[r] = warp_sum(D[r]);
        int t = q0 + warp * ATT_RPW + r;
        if (lane == 0 && t < T) Dbuf[((size_t)b * NH + h) * T + t] = D[r];
    }
    if (!dq) return; /* uniform over the grid: no thread is left waiting at a barrier */

    /* sweep B */
    float acc[ATT_RPW][ATT_DPL];
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++)
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) acc[r][i] = 0.0f;
    for (int k0 = 0; k0 < kend; k0 += ATT_TILE) {
        __syncthreads();
        load_rows(Ks, k + kvoff, ldkv, k0, ATT_TILE, T, HD, stride);
        load_rows(Vs, v + kvoff, ldkv, k0, ATT_TILE, T, HD, stride);
        __syncthreads();
        float s[ATT_RPW], dp[ATT_RPW];
        dot_rows(s, qw, Ks + lane * stride, hdp, stride);
        dot_rows(dp, dow, Vs + lane * stride, hdp, stride);
        int key = k0 + lane, ks = sb && key < T ? sb[key] : 0;
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            float p = key <= lim[r] && ks == sq[r] ? expf(s[r] * scale - L[r]) : 0.0f;
            pw[r * ATT_TILE + lane] = p * (dp[r] - D[r]);
        }
        __syncwarp();
        accum_tile(acc, pw, Ks, stride, HD, lane);
    }
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        int t = q0 + warp * ATT_RPW + r;
        if (t >= T) continue;
        float *row = dq + qoff + (size_t)t * ldq;
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) {
            int d = lane + 32 * i;
            if (d < HD) row[d] += scale * acc[r][i];
        }
    }
}

/* ---- backward, pass 2: dk and dv ----
 * Grid (ceil(T/16), NKV, B), ATT_THREADS threads. Block: key rows [k0, k0+16) of kv head g; warp w owns
 * keys k0 + 4w .. k0 + 4w + 3, kept in Ks, Vs (16, stride). For each query head of the group in order,
 * query tiles of 32 stream from i0 = k0 (earlier queries see none of these keys) to T: Qs, dOs
 * (32, stride), Ls, Ds (32) the tile's LSE and D. Lane l owns query i0+l:
 *   P_ij = exp(scale q_i.k_j - LSE_i) for i >= j (else 0),  dS_ij = P_ij (dout_i.v_j - D_i),
 *   dv_j += sum_i P_ij dout_i,  dk_j += scale sum_i dS_ij q_i.
 * The group's heads are summed in registers, so dk and dv are read and written once, by one thread
 * per element. */
__global__ void __launch_bounds__(ATT_THREADS)
attn_bwd_dkdv_kernel(float *dk, float *dv, const float *dout, const float *lse, const float *Dbuf, const float *q,
                     const float *k, const float *v, const int *seg, int T, int NH, int NKV, int HD, float scale) {
    /* dk, dv, k, v (B,T,NKV,HD); dout, q (B,T,NH,HD); lse, Dbuf (B,NH,T); seg (B,T) or NULL */
    extern __shared__ float4 att_smem_f4[];
    int stride = att_stride(HD), hdp = att_hdp(HD);
    float *Ks = (float *)att_smem_f4, *Vs = Ks + ATT_ROWS * stride, *Qs = Vs + ATT_ROWS * stride;
    float *dOs = Qs + ATT_TILE * stride, *Ls = dOs + ATT_TILE * stride, *Ds = Ls + ATT_TILE;
    float *Ps = Ds + ATT_TILE, *dSs = Ps + ATT_WARPS * ATT_RPW * ATT_TILE;
    int b = blockIdx.z, g = blockIdx.y, k0 = blockIdx.x * ATT_ROWS, group = NH / NKV;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, ldq = NH * HD, ldkv = NKV * HD;
    size_t kvoff = (size_t)b * T * ldkv + (size_t)g * HD;
    float *pw = Ps + warp * ATT_RPW * ATT_TILE, *dsw = dSs + warp * ATT_RPW * ATT_TILE;

    load_rows(Ks, k + kvoff, ldkv, k0, ATT_ROWS, T, HD, stride);
    load_rows(Vs, v + kvoff, ldkv, k0, ATT_ROWS, T, HD, stride);
    const float *kw = Ks + warp * ATT_RPW * stride, *vw = Vs + warp * ATT_RPW * stride;
    const int *sb = seg ? seg + (size_t)b * T : NULL; /* (T) or NULL */
    float adk[ATT_RPW][ATT_DPL], adv[ATT_RPW][ATT_DPL];
    int sk[ATT_RPW]; /* the segment of each of the warp's keys */
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        int j = k0 + warp * ATT_RPW + r;
        sk[r] = sb && j < T ? sb[j] : 0;
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) adk[r][i] = adv[r][i] = 0.0f;
    }

    for (int h = g * group; h < (g + 1) * group; h++) {
        size_t qoff = (size_t)b * T * ldq + (size_t)h * HD, roff = ((size_t)b * NH + h) * T;
        for (int i0 = k0; i0 < T; i0 += ATT_TILE) {
            __syncthreads(); /* the previous query tile is consumed (and Ks, Vs loaded, on the first pass) */
            load_rows(Qs, q + qoff, ldq, i0, ATT_TILE, T, HD, stride);
            load_rows(dOs, dout + qoff, ldq, i0, ATT_TILE, T, HD, stride);
            if (threadIdx.x < ATT_TILE) {
                int i = i0 + threadIdx.x;
                Ls[threadIdx.x] = i < T ? lse[roff + i] : 0.0f;
                Ds[threadIdx.x] = i < T ? Dbuf[roff + i] : 0.0f;
            }
            __syncthreads();
            float s[ATT_RPW], dp[ATT_RPW];
            dot_rows(s, kw, Qs + lane * stride, hdp, stride);
            dot_rows(dp, vw, dOs + lane * stride, hdp, stride);
            int i = i0 + lane, si = sb && i < T ? sb[i] : 0;
#pragma unroll
            for (int r = 0; r < ATT_RPW; r++) {
                int j = k0 + warp * ATT_RPW + r;
                float p = (i < T && i >= j && si == sk[r]) ? expf(s[r] * scale - Ls[lane]) : 0.0f;
                pw[r * ATT_TILE + lane] = p;
                dsw[r * ATT_TILE + lane] = p * (dp[r] - Ds[lane]);
            }
            __syncwarp();
            accum_tile(adv, pw, dOs, stride, HD, lane);
            accum_tile(adk, dsw, Qs, stride, HD, lane);
        }
    }
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        int j = k0 + warp * ATT_RPW + r;
        if (j >= T) continue;
        size_t row = kvoff + (size_t)j * ldkv;
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) {
            int d = lane + 32 * i;
            if (d >= HD) continue;
            if (dv) dv[row + d] += adv[r][i];
            if (dk) dk[row + d] += scale * adk[r][i];
        }
    }
}

/* ---- decode ----
 * Grid (NH, B), DEC_THREADS threads: one block per (b, h). Warp w takes cached positions w, w+8, ...
 * with an online softmax of its own (score by a warp reduction over dimensions, lane l owning
 * dimensions l + 32i); the 8 partial states (m, l, o) are then merged in warp order through shared
 * memory. len is the device copy of the host lengths, each in [0, S] (checked on the host). */
__global__ void __launch_bounds__(DEC_THREADS)
attn_decode_kernel(float *out, const float *q, const float *kc, const float *vc, const int *len, int S, int NH,
                   int NKV, int HD, float scale) {
    /* out, q (B,NH,HD); kc, vc (B,S,NKV,HD); len (B) */
    __shared__ float Ms[DEC_WARPS], Ls[DEC_WARPS], Os[DEC_WARPS][ATT_MAX_HD];
    int b = blockIdx.y, h = blockIdx.x, g = h / (NH / NKV), n = len[b];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, ldkv = NKV * HD;
    float *orow = out + ((size_t)b * NH + h) * HD;
    if (n == 0) {
        for (int d = threadIdx.x; d < HD; d += blockDim.x) orow[d] = 0.0f;
        return; /* n is block-uniform */
    }
    const float *qrow = q + ((size_t)b * NH + h) * HD;
    const float *kb = kc + (size_t)b * S * ldkv + (size_t)g * HD, *vb = vc + (size_t)b * S * ldkv + (size_t)g * HD;
    float qr[ATT_DPL], o[ATT_DPL], m = -INFINITY, l = 0.0f;
#pragma unroll
    for (int i = 0; i < ATT_DPL; i++) {
        int d = lane + 32 * i;
        qr[i] = d < HD ? qrow[d] : 0.0f;
        o[i] = 0.0f;
    }
    for (int p = warp; p < n; p += DEC_WARPS) {
        const float *kr = kb + (size_t)p * ldkv, *vr = vb + (size_t)p * ldkv;
        float part = 0.0f;
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) {
            int d = lane + 32 * i;
            if (d < HD) part += qr[i] * kr[d];
        }
        float s = warp_sum(part) * scale; /* identical on every lane */
        float mn = fmaxf(m, s), alpha = expf(m - mn), e = expf(s - mn);
        l = l * alpha + e;
        m = mn;
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) {
            int d = lane + 32 * i;
            if (d < HD) o[i] = o[i] * alpha + e * vr[d];
        }
    }
    /* A warp with no positions (n < 8) leaves m = -inf, l = 0, o = 0 and weighs 0 below. */
    if (lane == 0) {
        Ms[warp] = m;
        Ls[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < ATT_DPL; i++) {
        int d = lane + 32 * i;
        if (d < HD) Os[warp][d] = o[i];
    }
    __syncthreads();
    float M = Ms[0]; /* finite: warp 0 always has position 0 */
    for (int w = 1; w < DEC_WARPS; w++) M = fmaxf(M, Ms[w]);
    float den = 0.0f;
    for (int w = 0; w < DEC_WARPS; w++) den += Ls[w] * expf(Ms[w] - M);
    for (int d = threadIdx.x; d < HD; d += blockDim.x) {
        float num = 0.0f;
        for (int w = 0; w < DEC_WARPS; w++) num += Os[w][d] * expf(Ms[w] - M);
        orow[d] = num / den;
    }
}

/* ---- host side ---- */

/* Records an invalid-argument error naming the op and the offending shape; 0 if the shape is unusable. */
static int att_args_ok(CudaState *cu, const char *op, int NH, int NKV, int HD) {
    if (HD >= 1 && HD <= ATT_MAX_HD && NKV >= 1 && NH >= NKV && NH % NKV == 0) return 1;
    char what[160];
    snprintf(what, sizeof what, "%s: needs 1 <= HD <= %d and NH a multiple of NKV, got HD=%d NH=%d NKV=%d", op,
             ATT_MAX_HD, HD, NH, NKV);
    cuda_check_at(cu, cudaErrorInvalidValue, what, __FILE__, __LINE__);
    return 0;
}

static float att_scale(int HD) { return (float)(1.0 / sqrt((double)HD)); }

/* Dynamic shared memory past the default 48 KiB must be opted into per kernel (HD > 64 for the
 * backward kernels). 0 (error recorded) if the device refuses. */
static int att_smem_opt_in(CudaState *cu, const void *kernel, size_t bytes) {
    if (bytes <= ATT_SMEM_DEFAULT) return 1;
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    CUDA_CHECK(cu, e);
    return e == cudaSuccess;
}

size_t cuda_attention_saved(const Backend *be, int B, int T, int NH) {
    (void)be;
    return (size_t)B * NH * T;
}

/* The device copy of the host segment ids seg (B,T), or NULL for none; *ok = 0 when staging failed. */
static const int *att_segments(CudaState *cu, const int32_t *seg, int B, int T, int *ok) {
    const int *d = seg ? (const int *)cuda_stage(cu, CUDA_STAGE_SEG, seg, (size_t)B * T * sizeof *seg) : NULL;
    *ok = !seg || d;
    return d;
}

void cuda_attention_fwd(const Backend *be, real_t *out, real_t *att, const real_t *q, const real_t *k,
                        const real_t *v, const int32_t *seg, int B, int T, int NH, int NKV, int HD) {
    /* out, q (B,T,NH,HD); k, v (B,T,NKV,HD); att (B,NH,T) log-sum-exps; seg (B,T) host or NULL */
    CudaState *cu = cuda_enter(be);
    if (B <= 0 || T <= 0 || NH <= 0 || !att_args_ok(cu, "cuda_attention_fwd", NH, NKV, HD)) return;
    int ok;
    const int *dseg = att_segments(cu, seg, B, T, &ok);
    if (!ok) return;
    int stride = att_stride(HD);
    size_t smem = ((size_t)(ATT_ROWS + 2 * ATT_TILE) * stride + ATT_WARPS * ATT_RPW * ATT_TILE) * sizeof(float);
    if (!att_smem_opt_in(cu, (const void *)attn_fwd_kernel, smem)) return;
    dim3 grid((unsigned)((T + ATT_ROWS - 1) / ATT_ROWS), (unsigned)NH, (unsigned)B);
    attn_fwd_kernel<<<grid, ATT_THREADS, smem, cu->stream>>>(out, att, q, k, v, dseg, T, NH, NKV, HD, att_scale(HD));
    CUDA_CHECK_LAUNCH(cu, attn_fwd_kernel);
}

void cuda_attention_bwd(const Backend *be, real_t *dq, real_t *dk, real_t *dv, const real_t *dout,
                        const real_t *att, const real_t *q, const real_t *k, const real_t *v, const int32_t *seg,
                        int B, int T, int NH, int NKV, int HD) {
    /* dq, dout, q (B,T,NH,HD); dk, dv, k, v (B,T,NKV,HD); att (B,NH,T) log-sum-exps from the forward; seg
     * (B,T) host or NULL */
    CudaState *cu = cuda_enter(be);
    if (!dq && !dk && !dv) return;
    if (B <= 0 || T <= 0 || NH <= 0 || !att_args_ok(cu, "cuda_attention_bwd", NH, NKV, HD)) return;
    int ok;
    const int *dseg = att_segments(cu, seg, B, T, &ok);
    if (!ok) return;
    float *Dbuf = (float *)cuda_scratch(cu, CUDA_SCRATCH_ATTN0, (size_t)B * NH * T * sizeof(float)); /* (B,NH,T) */
    if (!Dbuf) return;
    int stride = att_stride(HD);
    float scale = att_scale(HD);
    size_t smem1 = ((size_t)(2 * ATT_ROWS + 2 * ATT_TILE) * stride + ATT_WARPS * ATT_RPW * ATT_TILE) * sizeof(float);
    size_t smem2 = ((size_t)(2 * ATT_ROWS + 2 * ATT_TILE) * stride + 2 * ATT_TILE +
                    2 * ATT_WARPS * ATT_RPW * ATT_TILE) * sizeof(float);
    if (!att_smem_opt_in(cu, (const void *)attn_bwd_dq_kernel, smem1)) return;
    if (!att_smem_opt_in(cu, (const void *)attn_bwd_dkdv_kernel, smem2)) return;
    unsigned tiles = (unsigned)((T + ATT_ROWS - 1) / ATT_ROWS);
    /* Pass 1 also produces D, which pass 2 reads: same stream, so it is complete before pass 2 starts. */
    attn_bwd_dq_kernel<<<dim3(tiles, (unsigned)NH, (unsigned)B), ATT_THREADS, smem1, cu->stream>>>(
        dq, Dbuf, dout, att, q, k, v, dseg, T, NH, NKV, HD, scale);
    CUDA_CHECK_LAUNCH(cu, attn_bwd_dq_kernel);
    if (!dk && !dv) return;
    attn_bwd_dkdv_kernel<<<dim3(tiles, (unsigned)NKV, (unsigned)B), ATT_THREADS, smem2, cu->stream>>>(
        dk, dv, dout, att, Dbuf, q, k, v, dseg, T, NH, NKV, HD, scale);
    CUDA_CHECK_LAUNCH(cu, attn_bwd_dkdv_kernel);
}

void cuda_attention_decode(const Backend *be, real_t *out, const real_t *q, const real_t *kc, const real_t *vc,
                           const int *len, int B, int S, int NH, int NKV, int HD) {
    /* out, q (B,NH,HD); kc, vc (B,S,NKV*HD); len (B) host */
    CudaState *cu = cuda_enter(be);
    if (B <= 0 || NH <= 0 || !att_args_ok(cu, "cuda_attention_decode", NH, NKV, HD)) return;
    for (int b = 0; b < B; b++) {
        if (len[b] < 0 || len[b] > S) {
            char what[128];
            snprintf(what, sizeof what, "cuda_attention_decode: len[%d] = %d is outside [0, S=%d]", b, len[b], S);
            cuda_check_at(cu, cudaErrorInvalidValue, what, __FILE__, __LINE__);
            return;
        }
    }
    const int *dlen = (const int *)cuda_stage(cu, CUDA_STAGE_LENS, len, (size_t)B * sizeof(int));
    if (!dlen) return;
    attn_decode_kernel<<<dim3((unsigned)NH, (unsigned)B), DEC_THREADS, 0, cu->stream>>>(out, q, kc, vc, dlen, S, NH,
                                                                                        NKV, HD, att_scale(HD));
    CUDA_CHECK_LAUNCH(cu, attn_decode_kernel);
}
