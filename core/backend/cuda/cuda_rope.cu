/* Rotary position embedding, HF rotate-half layout (element i pairs with i + HD/2), in place, as in
 * core/backend/cpu/cpu_rope.c. The cos/sin tables are device memory (backend_rope_tables uploads them). */
#include "core/backend/cuda/cuda_ops.h"

/* One thread per (b,t,h,i) pair, i < HD/2; dir = -1 negates the sine, rotating back by the same
 * angle (the backward of an orthogonal map). */
static __global__ void rope_kernel(float *x, const float *ctab, const float *stab, size_t npairs, int T, int NH,
                                   int HD, int half, float dir) {
    /* x (B,T,NH,HD), ctab, stab (T,HD/2) */
    for (size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x; p < npairs; p += (size_t)gridDim.x * blockDim.x) {
        size_t vec = p / half; /* flat (b,t,h) */
        int i = (int)(p % half);
        int t = (int)((vec / NH) % T);
        float *v = x + vec * HD; /* (HD) */
        float c = ctab[(size_t)t * half + i], si = dir * stab[(size_t)t * half + i];
        float x1 = v[i], x2 = v[i + half];
        v[i] = x1 * c - x2 * si;
        v[i + half] = x2 * c + x1 * si;
    }
}

static void rope_apply(CudaState *cu, real_t *x, const real_t *ctab, const real_t *stab, int B, int T, int NH, int HD,
                       float dir) {
    int half = HD / 2;
    size_t npairs = (size_t)B * T * NH * half;
    if (!npairs) return;
    rope_kernel<<<cuda_grid(npairs, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(x, ctab, stab, npairs, T, NH, HD,
                                                                              half, dir);
    CUDA_CHECK_LAUNCH(cu, rope_kernel);
}

void cuda_rope_fwd(const Backend *be, real_t *x, const real_t *ctab, const real_t *stab, int B, int T, int NH,
                   int HD) {
    rope_apply(cuda_enter(be), x, ctab, stab, B, T, NH, HD, 1.0f);
}

void cuda_rope_bwd(const Backend *be, real_t *dx, const real_t *ctab, const real_t *stab, int B, int T, int NH,
                   int HD) {
    rope_apply(cuda_enter(be), dx, ctab, stab, B, T, NH, HD, -1.0f);
}
