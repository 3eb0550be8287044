/* The LLaMA family behind the Model interface: thin adapters from Model * to the llama_* functions. */
#include <stdlib.h>

#include "core/models/llama/generate.h"
#include "core/models/llama/gguf_layout.h"
#include "core/models/llama/llama.h"
#include "core/models/llama/model_formats.h"

struct GenState {
    KvCache kv;
};

static PeftcStatus op_reserve(Model *m, int B, int T) { return llama_reserve(llama_of(m), B, T); }

static PeftcStatus op_forward(Model *m, const int32_t *tokens, const int32_t *targets, const int32_t *seg,
                              const int32_t *pos, const uint64_t *row_keys, int training, int B, int T,
                              double *loss_sum, int64_t *n_valid) {
    return llama_forward(llama_of(m), tokens, targets, seg, pos, row_keys, training, B, T, loss_sum, n_valid);
}

static void op_backward(Model *m, const int32_t *tokens, const int32_t *targets, const uint64_t *row_keys,
                        real_t loss_scale) {
    llama_backward(llama_of(m), tokens, targets, row_keys, loss_scale);
}

static PeftcStatus op_gen_create(Model *m, int B, int S, GenState **out) {
    GenState *g = calloc(1, sizeof *g);
    if (!g) return PEFTC_ERR(PEFTC_ENOMEM, "generation: out of memory");
    PeftcStatus st = kv_create(&g->kv, llama_of(m), B, S);
    if (st != PEFTC_OK) {
        free(g);
        return st;
    }
    *out = g;
    return PEFTC_OK;
}

static void op_gen_reset_row(GenState *g, int b) { kv_reset_row(&g->kv, b); }

static PeftcStatus op_gen_prefill(Model *m, GenState *g, int b, const int32_t *tokens, int n, real_t *logits) {
    return gen_prefill(llama_of(m), &g->kv, b, tokens, n, logits);
}

static PeftcStatus op_gen_decode(Model *m, GenState *g, const int32_t *tokens, const uint8_t *active,
                                 real_t *logits) {
    return gen_decode(llama_of(m), &g->kv, tokens, active, logits);
}

static void op_gen_free(GenState *g) {
    if (!g) return;
    kv_free(&g->kv);
    free(g);
}

static int64_t op_param_count(const Model *m) { return llama_param_count(&llama_of_const(m)->cfg); }
static size_t op_base_bytes(const Model *m) { return llama_base_bytes(llama_of_const(m)); }
static size_t op_dense_bytes(const Model *m) { return llama_dense_bytes(&llama_of_const(m)->cfg); }

static PeftcStatus op_empty_like(const Model *m, const Backend *be, Model **out) {
    LlamaConfig c = llama_of_const(m)->cfg; /* quantized too: copy_weights copies the blocks */
    return llama_new(out, be, &c, 0, -1.0);
}

static PeftcStatus op_copy_weights(Model *dst, const Model *src) {
    if (src->ops != dst->ops)
        return PEFTC_ERR(PEFTC_EINVAL, "model: cannot copy %s weights into a %s model", src->ops->family,
                         dst->ops->family);
    return llama_copy_weights(llama_of(dst), llama_of_const(src));
}

static PeftcStatus op_save_hf(const Model *m, const char *dir, int st_dtype) {
    return model_save_hf(llama_of_const(m), dir, st_dtype);
}

static void op_destroy(Model *m) { llama_free(llama_of(m)); }

static const ModelOps llama_ops = {
    .family = "llama",
    .packs = 1,
    .reserve = op_reserve,
    .forward = op_forward,
    .backward = op_backward,
    .gen_create = op_gen_create,
    .gen_reset_row = op_gen_reset_row,
    .gen_prefill = op_gen_prefill,
    .gen_decode = op_gen_decode,
    .gen_free = op_gen_free,
    .param_count = op_param_count,
    .base_bytes = op_base_bytes,
    .dense_bytes = op_dense_bytes,
    .empty_like = op_empty_like,
    .copy_weights = op_copy_weights,
    .save_hf = op_save_hf,
    .gguf_tensor = llama_gguf_tensor,
    .use_bf16 = llama_use_bf16,
    .destroy = op_destroy,
};

void llama_model_init(Model *m, const Backend *be, const LlamaConfig *c) {
    m->ops = &llama_ops;
    m->be = be;
    m->gguf_arch = c->gguf_qwen2 ? "qwen2" : "llama";
    m->vocab = c->vocab;
    m->layers = c->layers;
    m->hidden = c->hidden;
    m->quantized = c->quantized != QUANT_NONE;
    m->targets = llama_targets;
    m->n_targets = LLAMA_N_TARGETS;
}

/* *out = m's Model once st says m was filled; otherwise m is released (llama_free is safe on a model
 * whose creation failed). */
static PeftcStatus adopt(Model **out, LlamaModel *m, PeftcStatus st) {
    if (st != PEFTC_OK) {
        llama_free(m);
        free(m);
        return st;
    }
    *out = &m->base;
    return PEFTC_OK;
}

PeftcStatus llama_new(Model **out, const Backend *be, const LlamaConfig *cfg, uint64_t seed, double init_std) {
    LlamaModel *m = calloc(1, sizeof *m);
    if (!m) return PEFTC_ERR(PEFTC_ENOMEM, "model: out of memory");
    return adopt(out, m, llama_create(m, be, cfg, seed, init_std));
}

PeftcStatus llama_open(Model **out, const Backend *be, const char *path, QuantMode quantized, ModelInfo *info) {
    LlamaModel *m = calloc(1, sizeof *m);
    if (!m) return PEFTC_ERR(PEFTC_ENOMEM, "model '%s': out of memory", path);
    return adopt(out, m, llama_load_quantized(m, be, path, quantized, info));
}
