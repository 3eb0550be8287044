#include "core/base/ggml_blocks.h"

#include <math.h>

/* out[0..n) from the blocks at s: F32/F16/BF16 element by element, the block types 32 at a time, each
 * loop specialised to its type. */
#define EXPAND_FLOAT(VALUE)                                                                                  \
    for (int64_t i = 0; i < n; i++) out[i] = (real_t)VALUE(s, (size_t)i)
#define EXPAND_GROUPS(GROUP, BE)                                                                             \
    for (int64_t i = 0; i < n / (BE); i++)                                                                   \
        for (int k = 0; k < (BE) / 32; k++) GROUP(s + (size_t)i * bb, k, out + i * (BE) + 32 * k)

void ggml_dequantize(GgmlType t, const void *src, real_t *out, int64_t n) {
    const uint8_t *s = src;
    size_t bb = ggml_block_bytes(t);
    switch ((int)t) {
    case GGML_F32: EXPAND_FLOAT(ggml_value_f32); break;
    case GGML_F16: EXPAND_FLOAT(ggml_value_f16); break;
    case GGML_BF16: EXPAND_FLOAT(ggml_value_bf16); break;
    case GGML_Q4_0: EXPAND_GROUPS(ggml_group_q4_0, 32); break;
    case GGML_Q4_1: EXPAND_GROUPS(ggml_group_q4_1, 32); break;
    case GGML_Q5_0: EXPAND_GROUPS(ggml_group_q5_0, 32); break;
    case GGML_Q5_1: EXPAND_GROUPS(ggml_group_q5_1, 32); break;
    case GGML_Q8_0: EXPAND_GROUPS(ggml_group_q8_0, 32); break;
    case GGML_Q4_K: EXPAND_GROUPS(ggml_group_q4_k, 256); break;
    case GGML_Q5_K: EXPAND_GROUPS(ggml_group_q5_k, 256); break;
    case GGML_Q6_K: EXPAND_GROUPS(ggml_group_q6_k, 256); break;
    default: /* callers check ggml_type_supported(); NaN makes a missed check visible at once */
        for (int64_t i = 0; i < n; i++) out[i] = (real_t)NAN;
    }
}
