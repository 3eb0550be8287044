/* Row-wise ops: bias, token embedding, RMSNorm.
 *
 * The reductions over rows (db, dw, the dwte scatter) are parallelised over column blocks: a thread
 * owns its columns outright and adds the rows in order, so there is no race and the sums do not depend
 * on the thread count. */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "core/backend/cpu/cpu_ops.h"

void cpu_bias_fwd(const Backend *be, real_t *out, const real_t *b, int BT, int OC) {
    /* out (BT,OC), b (OC) */
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)BT * OC >= CPU_PAR_MIN)
    for (int r = 0; r < BT; r++) {
        real_t *o = out + (size_t)r * OC; /* (OC) */
        for (int c = 0; c < OC; c++) o[c] += b[c];
    }
}

void cpu_bias_bwd(const Backend *be, real_t *db, const real_t *dout, int BT, int OC) {
    /* db (OC), dout (BT,OC) */
    (void)be;
    if (!db) return;
    int nblk = (OC + CPU_COL_BLOCK - 1) / CPU_COL_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)BT * OC >= CPU_PAR_MIN)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * CPU_COL_BLOCK, c1 = c0 + CPU_COL_BLOCK < OC ? c0 + CPU_COL_BLOCK : OC;
        double acc[CPU_COL_BLOCK] = {0}; /* (c1-c0): double so long row sums keep their precision */
        for (int r = 0; r < BT; r++) {
            const real_t *d = dout + (size_t)r * OC; /* (OC) */
            for (int c = c0; c < c1; c++) acc[c - c0] += d[c];
        }
        for (int c = c0; c < c1; c++) db[c] += (real_t)acc[c - c0];
    }
}

void cpu_embedding_fwd(const Backend *be, real_t *out, const int32_t *tokens, const real_t *wte, int BT, int C) {
    /* out (BT,C), tokens (BT) in [0,V), wte (V,C) */
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)BT * C >= CPU_PAR_MIN)
    for (int r = 0; r < BT; r++) {
        assert(tokens[r] >= 0); /* the upper bound V is not passed in */
        memcpy(out + (size_t)r * C, wte + (size_t)tokens[r] * C, (size_t)C * sizeof(real_t));
    }
}

void cpu_embedding_bwd(const Backend *be, real_t *dwte, const real_t *dout, const int32_t *tokens, int BT, int C) {
    /* dwte (V,C), dout (BT,C), tokens (BT). A token repeated in the batch scatters into the same dwte
     * row, so threads split the columns, never the rows. */
    (void)be;
    if (!dwte) return;
    int nblk = (C + CPU_COL_BLOCK - 1) / CPU_COL_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)BT * C >= CPU_PAR_MIN)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * CPU_COL_BLOCK, c1 = c0 + CPU_COL_BLOCK < C ? c0 + CPU_COL_BLOCK : C;
        for (int r = 0; r < BT; r++) {
            real_t *dw = dwte + (size_t)tokens[r] * C;  /* (C) */
            const real_t *d = dout + (size_t)r * C;     /* (C) */
            for (int c = c0; c < c1; c++) dw[c] += d[c];
        }
    }
}

void cpu_rmsnorm_fwd(const Backend *be, real_t *out, real_t *rstd, const real_t *inp, const real_t *w, int BT,
                     int C, real_t eps) {
    /* out (BT,C), rstd (BT), inp (BT,C), w (C). out may alias inp: each element is read before its
     * own write. */
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)BT * C >= CPU_PAR_MIN)
    for (int r = 0; r < BT; r++) {
        const real_t *x = inp + (size_t)r * C; /* (C) */
        real_t *o = out + (size_t)r * C;       /* (C) */
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)x[c] * (double)x[c];
        double rs = 1.0 / sqrt(ss / C + (double)eps);
        real_t s = (real_t)rs;
        for (int c = 0; c < C; c++) o[c] = x[c] * s * w[c];
        rstd[r] = s;
    }
}

/* dx = rstd * (w*g - x * rstd^2 * mean(w*g*x)), the gradient of x*rstd*w through rstd's dependence
 * on x; one row. */
static void rmsnorm_bwd_row(real_t *dx, const real_t *g, const real_t *x, const real_t *w, real_t rstd,
                            int C) {
    /* dx, g, x, w: (C) */
    double dot = 0.0;
    for (int c = 0; c < C; c++) dot += (double)g[c] * (double)w[c] * (double)x[c];
    double rs = (double)rstd;
    real_t k = (real_t)(rs * rs * rs * dot / C);
    for (int c = 0; c < C; c++) dx[c] += rstd * w[c] * g[c] - k * x[c];
}

void cpu_rmsnorm_bwd(const Backend *be, real_t *dinp, real_t *dw, const real_t *dout, const real_t *inp,
                     const real_t *w, const real_t *rstd, int BT, int C) {
    /* dinp (BT,C), dw (C), dout (BT,C), inp (BT,C), w (C), rstd (BT) */
    (void)be;
    if (dinp) {
#pragma omp parallel for schedule(static) if ((size_t)BT * C >= CPU_PAR_MIN)
        for (int r = 0; r < BT; r++)
            rmsnorm_bwd_row(dinp + (size_t)r * C, dout + (size_t)r * C, inp + (size_t)r * C, w, rstd[r], C);
    }
    if (dw) {
        /* dw[c] = sum over rows of g * x * rstd: a reduction over rows, so split by column block. */
        int nblk = (C + CPU_COL_BLOCK - 1) / CPU_COL_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)BT * C >= CPU_PAR_MIN)
        for (int blk = 0; blk < nblk; blk++) {
            int c0 = blk * CPU_COL_BLOCK, c1 = c0 + CPU_COL_BLOCK < C ? c0 + CPU_COL_BLOCK : C;
            double acc[CPU_COL_BLOCK] = {0}; /* (c1-c0) */
            for (int r = 0; r < BT; r++) {
                const real_t *g = dout + (size_t)r * C, *x = inp + (size_t)r * C; /* (C) */
                double rs = (double)rstd[r];
                for (int c = c0; c < c1; c++) acc[c - c0] += (double)g[c] * (double)x[c] * rs;
            }
            for (int c = c0; c < c1; c++) dw[c] += (real_t)acc[c - c0];
        }
    }
}
