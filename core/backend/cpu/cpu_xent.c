/* Softmax cross-entropy over the vocabulary with an ignore index. */
#include <assert.h>

#include "core/backend/cpu/cpu_ops.h"

/* Softmax of one row into p (p may be x) and the row's loss -log p[tgt] = log(sum) + max - x[tgt]. */
static double xent_row(real_t *p, const real_t *x, int32_t tgt, int V) {
    /* p, x (V) */
    assert(tgt == PEFTC_IGNORE_INDEX || (tgt >= 0 && tgt < V));
    double xt = tgt == PEFTC_IGNORE_INDEX ? 0.0 : (double)x[tgt]; /* read before p overwrites x */
    double lse = cpu_softmax(p, x, V);
    return tgt == PEFTC_IGNORE_INDEX ? 0.0 : lse - xt;
}

double cpu_xent_fwd(const Backend *be, real_t *probs, const real_t *logits, const int32_t *targets, int BT, int V,
                    int64_t *n_valid) {
    /* probs (BT,V) may alias logits (BT,V); targets (BT) */
    if (n_valid) *n_valid = 0;
    double *loss = cpu_shared_scratch(be, (size_t)(BT > 0 ? BT : 0), "xent_fwd", "B * T"); /* (BT) row losses */
    if (!loss && BT > 0) return 0.0;
#pragma omp parallel for schedule(static) if ((size_t)BT * V >= CPU_PAR_MIN)
    for (int r = 0; r < BT; r++)
        loss[r] = xent_row(probs + (size_t)r * V, logits + (size_t)r * V, targets[r], V);
    /* Summed in row order after the loop, so the total is the same for every thread count. */
    double total = 0.0;
    int64_t nv = 0;
    for (int r = 0; r < BT; r++) {
        if (targets[r] == PEFTC_IGNORE_INDEX) continue;
        total += loss[r];
        nv++;
    }
    if (n_valid) *n_valid = nv;
    return total;
}

void cpu_xent_bwd(const Backend *be, real_t *dlogits, const real_t *probs, const int32_t *targets, int BT, int V,
                  real_t scale) {
    /* dlogits (BT,V) may alias probs (BT,V); targets (BT) */
    (void)be;
    if (!dlogits) return;
    int alias = dlogits == probs;
#pragma omp parallel for schedule(static) if ((size_t)BT * V >= CPU_PAR_MIN)
    for (int r = 0; r < BT; r++) {
        real_t *d = dlogits + (size_t)r * V;     /* (V) */
        const real_t *p = probs + (size_t)r * V; /* (V) */
        int32_t tgt = targets[r];
        if (tgt == PEFTC_IGNORE_INDEX) {
            /* Aliased, the row still holds probabilities, which are not a gradient: clear it. */
            if (alias)
                for (int i = 0; i < V; i++) d[i] = 0;
            continue;
        }
        if (alias)
            for (int i = 0; i < V; i++) d[i] = scale * p[i];
        else
            for (int i = 0; i < V; i++) d[i] += scale * p[i];
        d[tgt] -= scale;
    }
}
