#include "core/models/llama/gguf_layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* {HF, llama.cpp} names: the model-wide tensors, then those of block N ("model.layers.N." / "blk.N."). */
static const char *const top[][2] = {
    {"model.embed_tokens.weight", "token_embd.weight"}, {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"}};
static const char *const layer[][2] = {
    {"input_layernorm.weight", "attn_norm.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},   {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.weight", "attn_k.weight"},   {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.weight", "attn_v.weight"},   {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"}, {"self_attn.o_proj.bias", "attn_output.bias"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},        {"mlp.down_proj.weight", "ffn_down.weight"}};

/* Looks `name` up in column `from` (0 = HF, 1 = llama.cpp) and writes its column 1 - from. */
static int translate(const char *name, int from, char *out, size_t n) {
    static const char *const prefix[2] = {"model.layers.", "blk."};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (strcmp(name, top[i][from]) == 0) return snprintf(out, n, "%s", top[i][1 - from]) > 0;
    const char *rest;
    int idx = model_block_index(name, prefix[from], &rest);
    if (idx < 0) return 0;
    for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++)
        if (strcmp(rest, layer[i][from]) == 0)
            return snprintf(out, n, "%s%d.%s", prefix[1 - from], idx, layer[i][1 - from]) > 0;
    return 0;
}

int llama_gguf_name(const char *hf, char *out, size_t n) { return translate(hf, 0, out, n); }

int llama_hf_name(const char *gguf, char *out, size_t n) { return translate(gguf, 1, out, n); }

int64_t llama_hf_row(int64_t r, int hd) {
    int64_t h = r / hd, rem = r % hd;
    return h * hd + (rem % 2) * (hd / 2) + rem / 2;
}

int llama_gguf_permuted_heads(const LlamaConfig *c, const char *hf) {
    if (c->gguf_qwen2) return 0;
    if (strstr(hf, ".self_attn.q_proj.")) return c->heads;
    if (strstr(hf, ".self_attn.k_proj.")) return c->kv_heads;
    return 0;
}

PeftcStatus llama_gguf_tensor(const Model *m, const char *name, ModelGgufTensor *where, real_t *out) {
    char hf[128];
    *where = (ModelGgufTensor){.ref = -1, .ne = {1, 1, 1, 1}};
    if (!llama_hf_name(name, hf, sizeof hf)) return PEFTC_OK;
    int i = model_find_ref(m, hf);
    if (i < 0) return PEFTC_OK; /* e.g. the bias of a model without biases */
    const Shape *sh = &m->refs[i].shape;
    where->ref = i;
    where->n_dims = sh->ndim; /* an HF (out, in) matrix is ne {in, out} with the same bytes */
    for (int d = 0; d < sh->ndim; d++) where->ne[d] = sh->dim[sh->ndim - 1 - d];
    if (!out) return PEFTC_OK;
    const LlamaConfig *c = &llama_of_const(m)->cfg;
    if (!llama_gguf_permuted_heads(c, hf)) return model_ref_read(m, i, out);
    int64_t numel = shape_numel(sh), cols = sh->ndim == 2 ? sh->dim[1] : 1, rows = numel / cols;
    real_t *hf_order = malloc((size_t)numel * sizeof *hf_order); /* (rows, cols) */
    if (!hf_order) return PEFTC_ERR(PEFTC_ENOMEM, "model: out of memory reading tensor '%s'", hf);
    PeftcStatus st = model_ref_read(m, i, hf_order);
    /* a bias is a column of one-element rows: the same move, element by element */
    for (int64_t r = 0; st == PEFTC_OK && r < rows; r++)
        memcpy(out + r * cols, hf_order + llama_hf_row(r, c->head_dim) * cols, (size_t)cols * sizeof *out);
    free(hf_order);
    return st;
}
