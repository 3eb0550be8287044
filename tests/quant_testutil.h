/* Synthetic quantized bases, shared by the CPU and GPU suites (test_qlora, gpu_ops, gpu_model): ggml
 * blocks of random quants with finite scales, and a tiny LLaMA GGUF whose 14 projection weights cycle
 * through every block type peftc expands, so one model exercises each type's layout. The values are
 * what the blocks encode; nothing here quantizes. */
#ifndef PEFTC_QUANT_TESTUTIL_H
#define PEFTC_QUANT_TESTUTIL_H

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/ggml_types.h"
#include "core/base/rng.h"
#include "core/formats/gguf_write.h"
#include "core/formats/quant.h"

/* Every type the dequantize op supports, block types first. */
static const GgmlType tu_block_types[] = {GGML_Q4_0, GGML_Q4_1, GGML_Q5_0, GGML_Q5_1, GGML_Q8_0, GGML_Q4_K,
                                          GGML_Q5_K, GGML_Q6_K, GGML_F16,  GGML_BF16, GGML_F32};
enum { TU_N_BLOCK_TYPES = sizeof tu_block_types / sizeof tu_block_types[0] };

static inline void tu_put_f16(uint8_t *p, float v) {
    uint16_t h = f32_to_f16(v);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* out: rows x ggml_row_bytes(t, cols) bytes of random quants whose scales make values of roughly
 * |w| <= 0.1 (a usable random model), from stream `key`. */
static inline void tu_random_blocks(GgmlType t, int rows, int cols, uint64_t key, uint8_t *out) {
    size_t bb = ggml_block_bytes(t), nb = (size_t)rows * ggml_row_bytes(t, cols) / bb;
    for (size_t i = 0; i < nb * bb; i++) out[i] = (uint8_t)rng_u64(key, i);
    for (size_t i = 0; i < nb; i++) {
        uint8_t *b = out + i * bb;
        float u = (float)(0.5 + rng_uniform(key + 1, i)); /* scales vary block to block */
        switch ((int)t) {
        case GGML_Q4_0: tu_put_f16(b, 0.012f * u); break;
        case GGML_Q5_0: tu_put_f16(b, 0.006f * u); break;
        case GGML_Q8_0: tu_put_f16(b, 0.0008f * u); break;
        case GGML_Q4_1: tu_put_f16(b, 0.012f * u), tu_put_f16(b + 2, -0.09f * u); break;
        case GGML_Q5_1: tu_put_f16(b, 0.006f * u), tu_put_f16(b + 2, -0.09f * u); break;
        case GGML_Q4_K:
        case GGML_Q5_K: tu_put_f16(b, 0.0002f * u), tu_put_f16(b + 2, 0.0004f * u); break;
        case GGML_Q6_K: tu_put_f16(b + 208, 0.00002f * u); break;
        case GGML_F16: tu_put_f16(b, (float)(0.2 * rng_uniform(key + 2, i) - 0.1)); break;
        case GGML_BF16: {
            uint16_t h = f32_to_bf16((float)(0.2 * rng_uniform(key + 2, i) - 0.1));
            b[0] = (uint8_t)h, b[1] = (uint8_t)(h >> 8);
            break;
        }
        case GGML_F32: {
            float v = (float)(0.2 * rng_uniform(key + 2, i) - 0.1);
            memcpy(b, &v, sizeof v);
            break;
        }
        default: ck_abort_msg("tu_random_blocks: no scales known for %s", ggml_type_name(t));
        }
    }
}

/* Shape of the synthetic model: every projection's columns are a whole number of 256-element blocks. */
enum { TU_QL_HIDDEN = 256, TU_QL_FFN = 512, TU_QL_LAYERS = 2, TU_QL_HEADS = 4, TU_QL_KV = 2, TU_QL_VOCAB = 64 };

static inline void tu_add_f32(GgufWriter *w, const char *name, int64_t rows, int64_t cols, uint64_t key, double lo,
                              double hi) {
    size_t n = (size_t)(rows * cols);
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (float)(lo + (hi - lo) * rng_uniform(key, i));
    int64_t ne[2] = {cols, rows};
    ck_assert_int_eq(gguf_writer_add_f32(w, name, rows > 1 ? 2 : 1, ne, v), PEFTC_OK);
    free(v);
}

/* Writes the synthetic LLaMA to path: F32 embeddings and norms, projection i (q k v o gate up down,
 * layer-major) stored as tu_block_types[i % TU_N_BLOCK_TYPES]. */
static inline void tu_write_block_llama(const char *path) {
    static const char *const proj[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    const int hd = TU_QL_HIDDEN / TU_QL_HEADS;
    const int rows[7] = {TU_QL_HEADS * hd, TU_QL_KV * hd, TU_QL_KV * hd, TU_QL_HIDDEN, TU_QL_FFN, TU_QL_FFN,
                         TU_QL_HIDDEN};
    const int cols[7] = {TU_QL_HIDDEN, TU_QL_HIDDEN, TU_QL_HIDDEN, TU_QL_HEADS * hd, TU_QL_HIDDEN, TU_QL_HIDDEN,
                         TU_QL_FFN};
    GgufWriter *w = gguf_writer_new();
    struct { const char *key; uint32_t v; } u[] = {
        {"llama.block_count", TU_QL_LAYERS}, {"llama.embedding_length", TU_QL_HIDDEN},
        {"llama.feed_forward_length", TU_QL_FFN}, {"llama.attention.head_count", TU_QL_HEADS},
        {"llama.attention.head_count_kv", TU_QL_KV}, {"llama.context_length", 256},
        {"llama.rope.dimension_count", (uint32_t)hd}, {"llama.vocab_size", TU_QL_VOCAB}};
    ck_assert_int_eq(gguf_writer_str(w, "general.architecture", "llama"), PEFTC_OK);
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) ck_assert_int_eq(gguf_writer_u32(w, u[i].key, u[i].v), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_f32(w, "llama.rope.freq_base", 10000.0f), PEFTC_OK);
    ck_assert_int_eq(gguf_writer_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f), PEFTC_OK);
    tu_add_f32(w, "token_embd.weight", TU_QL_VOCAB, TU_QL_HIDDEN, 501, -0.1, 0.1);
    tu_add_f32(w, "output_norm.weight", 1, TU_QL_HIDDEN, 502, 0.8, 1.2);
    char name[64];
    for (int l = 0; l < TU_QL_LAYERS; l++) {
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        tu_add_f32(w, name, 1, TU_QL_HIDDEN, 510 + (uint64_t)l, 0.8, 1.2);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        tu_add_f32(w, name, 1, TU_QL_HIDDEN, 520 + (uint64_t)l, 0.8, 1.2);
        for (int p = 0; p < 7; p++) {
            GgmlType t = tu_block_types[(7 * l + p) % TU_N_BLOCK_TYPES];
            size_t n = (size_t)rows[p] * ggml_row_bytes(t, cols[p]);
            uint8_t *b = malloc(n);
            tu_random_blocks(t, rows[p], cols[p], 600 + 10 * (uint64_t)(7 * l + p), b);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, proj[p]);
            int64_t ne[2] = {cols[p], rows[p]};
            ck_assert_int_eq(gguf_writer_add_raw(w, name, t, 2, ne, b, n), PEFTC_OK);
            free(b);
        }
    }
    ck_assert_int_eq(gguf_writer_write(w, path), PEFTC_OK);
    gguf_writer_free(w);
}

#endif
