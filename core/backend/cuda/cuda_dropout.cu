/* Inverted dropout with the masks of core/backend/cpu/cpu_dropout.c, bit for bit: element (r,c) is dropped
 * iff the c-th 32-bit draw of stream row_keys[r] is below (float)p * 2^32, each 64-bit splitmix draw
 * serving elements 2j (low half) and 2j+1 (high half). The mixing is core/base/rng.c's, ported. */
#include "core/backend/cuda/cuda_ops.h"

/* rng_mix64 of core/base/rng.c (splitmix64 finaliser), same constants. */
static __device__ __forceinline__ uint64_t dev_rng_mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* rng_stream_u64 of core/base/rng.h: the i-th value of the splitmix64 stream seeded with key. */
static __device__ __forceinline__ uint64_t dev_rng_stream_u64(uint64_t key, uint64_t i) {
    return dev_rng_mix64(key + i * 0x9E3779B97F4A7C15ull);
}

/* 1/(1-p) for kept values; p >= 1 drops everything, and the zero avoids an inf * 0 = NaN. */
static float keep_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

/* One thread per pair of columns (2j, 2j+1) of a row: one draw each. */
static __global__ void dropout_fwd_kernel(float *out, uint8_t *mask, const float *inp, const uint64_t *row_keys,
                                          int C, size_t npairs, uint64_t thr, float s) {
    /* out, mask, inp (R,C), row_keys (R); npairs = R * ceil(C/2) */
    size_t row_pairs = ((size_t)C + 1) / 2;
    GRID_STRIDE(q, npairs) {
        size_t r = q / row_pairs, j = q % row_pairs;
        uint64_t bits = dev_rng_stream_u64(row_keys[r], (uint64_t)j);
        for (int h = 0; h < 2; h++) {
            size_t c = 2 * j + (size_t)h;
            if (c >= (size_t)C) break;
            size_t i = r * (size_t)C + c;
            uint8_t keep = (bits & 0xFFFFFFFFu) >= thr;
            bits >>= 32;
            mask[i] = keep;
            out[i] = keep ? inp[i] * s : 0.0f;
        }
    }
}

void cuda_dropout_fwd(const Backend *be, real_t *out, uint8_t *mask, const real_t *inp, const uint64_t *row_keys,
                      int R, int C, real_t p) {
    CudaState *cu = cuda_enter(be);
    /* row_keys (R) host memory */
    size_t n = (size_t)R * C;
    if (!n) return;
    if (p <= 0) {
        cuda_copy(be, out, inp, n);
        CUDA_CHECK(cu, cudaMemsetAsync(mask, 1, n, cu->stream));
        return;
    }
    /* The threshold comes from (float)p, as on the CPU, so every build draws the same masks. */
    uint64_t thr = (uint64_t)((double)(float)p * 4294967296.0);
    const uint64_t *keys = (const uint64_t *)cuda_stage(cu, CUDA_STAGE_KEYS, row_keys, (size_t)R * sizeof *row_keys);
    if (!keys) return;
    size_t npairs = (size_t)R * (((size_t)C + 1) / 2);
    dropout_fwd_kernel<<<cuda_grid(npairs, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(out, mask, inp, keys, C,
                                                                                     npairs, thr, keep_scale(p));
    CUDA_CHECK_LAUNCH(cu, dropout_fwd_kernel);
}

static __global__ void dropout_bwd_kernel(float *dinp, const float *dout, const uint8_t *mask, size_t n, float s) {
    /* dinp, dout, mask (n) */
    GRID_STRIDE(i, n)
        if (mask[i]) dinp[i] += dout[i] * s;
}

void cuda_dropout_bwd(const Backend *be, real_t *dinp, const real_t *dout, const uint8_t *mask, int R, int C,
                      real_t p) {
    CudaState *cu = cuda_enter(be);
    size_t n = (size_t)R * C;
    if (!dinp || !n) return;
    float s = p <= 0 ? 1.0f : keep_scale(p);
    dropout_bwd_kernel<<<cuda_grid(n, CUDA_BLOCK), CUDA_BLOCK, 0, cu->stream>>>(dinp, dout, mask, n, s);
    CUDA_CHECK_LAUNCH(cu, dropout_bwd_kernel);
}
