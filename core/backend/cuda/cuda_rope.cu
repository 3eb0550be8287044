/* Rotary position embedding, HF rotate-half layout (element i pairs with i + HD/2), in place, as in
 * core/backend/cpu/cpu_rope.c. The cos/sin tables are device memory (backend_rope_tables uploads them);
 * positions, when given, are host memory staged here. */
#include "core/backend/cuda/cuda_ops.h"

/* One thread per (b,t,h,i) pair, i < HD/2; dir = -1 negates the sine, rotating back by the same
 * angle (the backward of an orthogonal map). The table row is pos[b,t] when pos is given, else t. */
static __global__ void rope_kernel(float *x, const float *ctab, const float *stab, const int *pos, size_t npairs,
                                   int T, int NH, int HD, int half, float dir) {
    /* x (B,T,NH,HD), ctab, stab (rows,HD/2), pos (B,T) or NULL */
    for (size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x; p < npairs; p += (size_t)gridDim.x * blockDim.x) {
        size_t vec = p / half; /* flat (b,t,h) */
        int i = (int)(p % half);
        size_t bt = vec / NH; /* flat (b,t) */
        size_t row = pos ? (size_t)pos[bt] : bt % T;
        float *v = x + vec * HD; /* (HD) */
        float c = ctab[row * half + i], si = dir * stab[row * half + i];
        float x1 = v[i], x2 = v[i + half];
        v[i] = x1 * c - x2 * si;
        v[i + half] = x2 * c + x1 * si;
    }
}

static void rope_apply(CudaState *cu, real_t *x, const real_t *ctab, const real_t *stab, const int32_t *pos, int B,
                       int T, int NH, int HD, float dir) {
    int half = HD / 2;
    size_t npairs = (size_t)B * T * NH * half;
    if (!npairs) return;
    const int *dpos = NULL; /* (B,T) device */
    if (pos && !(dpos = (const int *)cuda_stage(cu, CUDA_STAGE_POS, pos, (size_t)B * T * sizeof *pos))) return;
    rope_kernel<<<cuda_grid(npairs, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(x, ctab, stab, dpos, npairs, T, NH, HD,
                                                                              half, dir);
    CUDA_CHECK_LAUNCH(cu, rope_kernel);
}

void cuda_rope_fwd(const Backend *be, real_t *x, const real_t *ctab, const real_t *stab, const int32_t *pos, int B,
                   int T, int NH, int HD) {
    rope_apply(cuda_enter(be), x, ctab, stab, pos, B, T, NH, HD, 1.0f);
}

void cuda_rope_bwd(const Backend *be, real_t *dx, const real_t *ctab, const real_t *stab, const int32_t *pos, int B,
                   int T, int NH, int HD) {
    rope_apply(cuda_enter(be), dx, ctab, stab, pos, B, T, NH, HD, -1.0f);
}
