/* Softmax cross-entropy over the vocabulary with an ignore index, one block per row, with the
 * arithmetic of core/backend/cpu/cpu_softmax.c and cpu_xent.c: max-subtracted float exponentials summed in
 * double, loss = max + log(sum) - x[target]. */
#include "core/backend/cuda/cuda_ops.h"

/* Threads per row: wide rows (a vocabulary) get a full block; short ones (tests) a smaller one. */
static int xent_block(int V) { return V >= 8192 ? 1024 : CUDA_BLOCK; }

static __global__ void xent_fwd_kernel(float *probs, double *loss, const float *logits, const int32_t *targets,
                                       int V) {
    /* probs, logits (BT,V), may alias; loss (BT), targets (BT); block r owns row r. Every read of
     * logits happens before the first barrier (in block_max_f) or, in the exponential loop, in the
     * thread that then overwrites that element, so the in-place case is safe. */
    const float *x = logits + (size_t)blockIdx.x * V; /* (V) */
    float *p = probs + (size_t)blockIdx.x * V;        /* (V) */
    int tgt = targets[blockIdx.x];
    int valid = tgt >= 0 && tgt < V;
    double xt = threadIdx.x == 0 && valid ? (double)x[tgt] : 0.0;
    float mx = -INFINITY;
    for (int c = threadIdx.x; c < V; c += blockDim.x) mx = fmaxf(mx, x[c]);
    mx = block_max_f(mx);
    double sum = 0.0;
    for (int c = threadIdx.x; c < V; c += blockDim.x) {
        float e = expf(x[c] - mx);
        p[c] = e;
        sum += (double)e;
    }
    sum = block_sum_d(sum);
    float inv = (float)(1.0 / sum);
    for (int c = threadIdx.x; c < V; c += blockDim.x) p[c] *= inv;
    if (threadIdx.x == 0) loss[blockIdx.x] = valid ? (double)mx + log(sum) - xt : 0.0;
}

static __global__ void loss_sum_kernel(double *total, const double *loss, int n) {
    /* total (1), loss (n); one block. Ignored rows hold 0. */
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += loss[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) *total = s;
}

/* Counts valid rows; 0 after recording an error if a target is neither valid nor ignored. */
static int count_valid(CudaState *cu, const int32_t *targets, int BT, int V, int64_t *n_valid) {
    int64_t nv = 0;
    for (int r = 0; r < BT; r++) {
        if (targets[r] == PEFTC_IGNORE_INDEX) continue;
        if (targets[r] < 0 || targets[r] >= V) {
            CUDA_FAIL(cu, PEFTC_EINVAL, "xent: target %d at row %d is outside [0,%d) and not the ignore index %d",
                      (int)targets[r], r, V, PEFTC_IGNORE_INDEX);
            return 0;
        }
        nv++;
    }
    *n_valid = nv;
    return 1;
}

double cuda_xent_fwd(const Backend *be, real_t *probs, const real_t *logits, const int32_t *targets, int BT, int V,
                     int64_t *n_valid) {
    CudaState *cu = cuda_enter(be);
    /* probs (BT,V) may alias logits (BT,V); targets (BT) host memory */
    int64_t nv = 0;
    if (n_valid) *n_valid = 0;
    if (BT <= 0 || V <= 0 || !count_valid(cu, targets, BT, V, &nv)) return 0.0;
    const int32_t *tgt = (const int32_t *)cuda_stage(cu, CUDA_STAGE_TARGETS, targets, (size_t)BT * sizeof *targets);
    double *loss = (double *)cuda_scratch(cu, CUDA_SCRATCH_REDUCE, ((size_t)BT + 1) * sizeof(double));
    /* loss: total, then (BT) */
    if (!tgt || !loss) return 0.0;
    xent_fwd_kernel<<<BT, xent_block(V), 0, cu->stream>>>(probs, loss + 1, logits, tgt, V);
    CUDA_CHECK_LAUNCH(cu, xent_fwd_kernel);
    loss_sum_kernel<<<1, CUDA_BLOCK, 0, cu->stream>>>(loss, loss + 1, BT);
    CUDA_CHECK_LAUNCH(cu, loss_sum_kernel);
    double total = 0.0;
    cuda_download(be, &total, loss, sizeof total);
    if (n_valid) *n_valid = nv;
    return total;
}

static __global__ void xent_bwd_kernel(float *dlogits, const float *probs, const int32_t *targets, int V,
                                       float scale, int alias) {
    /* dlogits, probs (BT,V), may alias (then overwrite); targets (BT); block r owns row r */
    float *d = dlogits + (size_t)blockIdx.x * V;      /* (V) */
    const float *p = probs + (size_t)blockIdx.x * V;  /* (V) */
    int tgt = targets[blockIdx.x];
    if (tgt == PEFTC_IGNORE_INDEX) {
        /* Aliased, the row still holds probabilities, which are not a gradient: clear it. */
        if (alias)
            for (int c = threadIdx.x; c < V; c += blockDim.x) d[c] = 0.0f;
        return;
    }
    for (int c = threadIdx.x; c < V; c += blockDim.x) {
        float g = alias ? scale * p[c] : d[c] + scale * p[c];
        if (c == tgt) g -= scale;
        d[c] = g;
    }
}

void cuda_xent_bwd(const Backend *be, real_t *dlogits, const real_t *probs, const int32_t *targets, int BT, int V,
                   real_t scale) {
    CudaState *cu = cuda_enter(be);
    /* targets (BT) host memory */
    if (!dlogits || BT <= 0 || V <= 0) return;
    const int32_t *tgt = (const int32_t *)cuda_stage(cu, CUDA_STAGE_TARGETS, targets, (size_t)BT * sizeof *targets);
    if (!tgt) return;
    xent_bwd_kernel<<<BT, xent_block(V), 0, cu->stream>>>(dlogits, probs, tgt, V, scale, dlogits == probs);
    CUDA_CHECK_LAUNCH(cu, xent_bwd_kernel);
}
