/* AdamW on one span of the arena, in float with the constants of core/backend/cpu/cpu_adamw.c (folded on
 * the host in double, then rounded), so both backends take the same steps up to rounding. */
#include <math.h>

#include "core/backend/cuda/cuda_ops.h"

static __global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n, float b1, float b2,
                                    float step, float eps, float rbc2, float decay) {
    /* p, g, m, v (n) */
    GRID_STRIDE(i, n) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step * mi / (sqrtf(vi) * rbc2 + eps);
    }
}

void cuda_adamw(const Backend *be, real_t *p, const real_t *g, real_t *m, real_t *v, size_t n, double lr, double wd,
                double b1, double b2, double eps, double bc1, double bc2) {
    CudaState *cu = cuda_enter(be);
    if (!n) return;
    float step = (float)(lr / bc1), rbc2 = (float)(1.0 / sqrt(bc2)), decay = (float)(1.0 - lr * wd);
    adamw_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(p, g, m, v, n, (float)b1, (float)b2,
                                                                          step, (float)eps, rbc2, decay);
    CUDA_CHECK_LAUNCH(cu, adamw_kernel);
}
