/* LLaMA's base tensors as llama.cpp's GGUF files lay them out: tensor names and the Q/K row order.
 * One table for both directions, so the loader (model_gguf.c) and the writer's op (gguf_tensor) cannot
 * drift apart. */
#ifndef PEFTC_LLAMA_GGUF_LAYOUT_H
#define PEFTC_LLAMA_GGUF_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "core/models/llama/llama.h"

/* llama.cpp's name of the HF tensor `hf` ("model.layers.3.self_attn.q_proj.weight" ->
 * "blk.3.attn_q.weight") into out (n); 0 when it has none. */
int llama_gguf_name(const char *hf, char *out, size_t n);
/* The HF name of llama.cpp's tensor `gguf` into out (n); 0 when the family has no such tensor. */
int llama_hf_name(const char *gguf, char *out, size_t n);

/* HF row of GGUF row r in a Q or K projection of head size hd: llama.cpp stores each head's rows as
 * (hd/2, 2) pairs (interleaved RoPE) where HF has (2, hd/2) halves (rotate-half). */
int64_t llama_hf_row(int64_t r, int hd);
/* Heads whose rows (or bias elements) the GGUF file holds in that interleaved order for HF tensor `hf`
 * (q: heads, k: kv_heads), or 0: other tensors, and every tensor of a file llama.cpp calls qwen2,
 * which keeps HF's order. */
int llama_gguf_permuted_heads(const LlamaConfig *c, const char *hf);

/* ModelOps.gguf_tensor of the LLaMA family (model.h). */
PeftcStatus llama_gguf_tensor(const Model *m, const char *name, ModelGgufTensor *where, real_t *out);

#endif
