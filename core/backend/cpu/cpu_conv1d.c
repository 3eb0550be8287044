/* Mamba's causal depthwise conv1d: every channel d convolved over time with its own K taps.
 *
 * Rows (b, t) are independent in the forward and in dx, so threads split rows and the channel loop
 * runs innermost over contiguous memory. dw and db sum over every row: threads own column blocks and
 * add the rows in order, as bias_bwd does, so the sums do not depend on the thread count. */
#include <string.h>

#include "core/backend/cpu/cpu_ops.h"

/* One output row: o = bias + sum_k w[:,k] * (input at s = t-K+1+k), inputs before t = 0 from the
 * carried state sb, or zero without one. */
static void conv_row(real_t *o, const real_t *xb, int ldx, const real_t *sb, const real_t *w, const real_t *bias,
                     int t, int D, int K) {
    /* o (D); xb (T,D; ldx) this sequence's inputs; sb (K-1,D) or NULL; w (D,K); bias (D) or NULL */
    for (int d = 0; d < D; d++) o[d] = bias ? bias[d] : 0;
    for (int k = 0; k < K; k++) {
        int s = t - K + 1 + k;
        const real_t *in = s >= 0 ? xb + (size_t)s * ldx : sb ? sb + (size_t)(K - 1 + s) * D : NULL; /* (D) */
        if (!in) continue;
        for (int d = 0; d < D; d++) o[d] += w[(size_t)d * K + k] * in[d];
    }
}

/* The state after T more inputs: the last K-1 inputs, oldest first. Row i is input T-(K-1)+i, which
 * for a short call (T < K-1) is still old state row T+i > i: going up, every row is read before it is
 * overwritten. */
static void conv_shift_state(real_t *sb, const real_t *xb, int ldx, int T, int D, int K) {
    /* sb (K-1,D) in/out; xb (T,D; ldx) */
    if (T <= 0) return;
    for (int i = 0; i < K - 1; i++) {
        int s = T - (K - 1) + i;
        const real_t *src = s >= 0 ? xb + (size_t)s * ldx : sb + (size_t)(T + i) * D; /* (D) */
        memcpy(sb + (size_t)i * D, src, (size_t)D * sizeof(real_t));
    }
}

void cpu_conv1d_fwd(const Backend *be, real_t *out, const real_t *x, int ldx, const real_t *w, const real_t *b,
                    real_t *state, int B, int T, int D, int K) {
    /* out (B,T,D); x (B,T,D; ldx); w (D,K); b (D) or NULL; state (B,K-1,D) or NULL */
    (void)be;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * T * D * K >= CPU_PAR_MIN)
    for (int bb = 0; bb < B; bb++)
        for (int t = 0; t < T; t++)
            conv_row(out + ((size_t)bb * T + t) * D, x + (size_t)bb * T * ldx, ldx,
                     state ? state + (size_t)bb * (K - 1) * D : NULL, w, b, t, D, K);
    /* After every row: the rows above read the old state. */
    if (state)
        for (int bb = 0; bb < B; bb++)
            conv_shift_state(state + (size_t)bb * (K - 1) * D, x + (size_t)bb * T * ldx, ldx, T, D, K);
}

/* dx row s += sum_k w[:,k] * dout row s+K-1-k: the outputs input s fed. */
static void conv_dx_row(real_t *dxr, const real_t *doutb, const real_t *w, int s, int T, int D, int K) {
    /* dxr (D); doutb (T,D) this sequence's output gradients; w (D,K) */
    for (int k = 0; k < K; k++) {
        int t = s + K - 1 - k;
        if (t >= T) continue;
        const real_t *g = doutb + (size_t)t * D; /* (D) */
        for (int d = 0; d < D; d++) dxr[d] += w[(size_t)d * K + k] * g[d];
    }
}

/* acc[d-d0] = sum over rows (b, t >= shift) of dout[b,t,d] * x[b,t-shift,d], or of dout alone when x is
 * NULL; in double, rows in order. */
static void conv_col_sums(double *acc, const real_t *dout, const real_t *x, int ldx, int shift, int B, int T, int D,
                          int d0, int d1) {
    /* acc (d1-d0); dout (B,T,D); x (B,T,D; ldx) or NULL */
    for (int d = d0; d < d1; d++) acc[d - d0] = 0.0;
    for (int bb = 0; bb < B; bb++)
        for (int t = shift; t < T; t++) {
            const real_t *g = dout + ((size_t)bb * T + t) * D; /* (D) */
            if (!x) {
                for (int d = d0; d < d1; d++) acc[d - d0] += g[d];
                continue;
            }
            const real_t *in = x + ((size_t)bb * T + t - shift) * ldx; /* (D) */
            for (int d = d0; d < d1; d++) acc[d - d0] += (double)g[d] * (double)in[d];
        }
}

void cpu_conv1d_bwd(const Backend *be, real_t *dx, real_t *dw, real_t *db, const real_t *dout, const real_t *x,
                    int ldx, const real_t *w, int B, int T, int D, int K) {
    /* dx (B,T,D; ldx) or NULL; dw (D,K) or NULL; db (D) or NULL; dout (B,T,D); x (B,T,D; ldx); w (D,K).
     * Zero initial state: inputs before t = 0 contributed nothing and receive nothing. */
    (void)be;
    int par = (size_t)B * T * D * K >= CPU_PAR_MIN;
    if (dx) {
#pragma omp parallel for collapse(2) schedule(static) if (par)
        for (int bb = 0; bb < B; bb++)
            for (int s = 0; s < T; s++)
                conv_dx_row(dx + ((size_t)bb * T + s) * ldx, dout + (size_t)bb * T * D, w, s, T, D, K);
    }
    if (!dw && !db) return;
    int nblk = (D + CPU_COL_BLOCK - 1) / CPU_COL_BLOCK;
#pragma omp parallel for schedule(static) if (par)
    for (int blk = 0; blk < nblk; blk++) {
        int d0 = blk * CPU_COL_BLOCK, d1 = d0 + CPU_COL_BLOCK < D ? d0 + CPU_COL_BLOCK : D;
        double acc[CPU_COL_BLOCK]; /* (d1-d0) */
        /* Tap k reads the input K-1-k steps back. */
        for (int k = 0; dw && k < K; k++) {
            conv_col_sums(acc, dout, x, ldx, K - 1 - k, B, T, D, d0, d1);
            for (int d = d0; d < d1; d++) dw[(size_t)d * K + k] += (real_t)acc[d - d0];
        }
        if (!db) continue;
        conv_col_sums(acc, dout, NULL, 0, 0, B, T, D, d0, d1);
        for (int d = d0; d < d1; d++) db[d] += (real_t)acc[d - d0];
    }
}
