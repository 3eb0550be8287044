/* The Mamba family behind the Model interface. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/models/mamba/mamba_formats.h"
#include "core/models/mamba/mamba_gen.h"

struct GenState {
    MambaGen *g;
};

static PeftcStatus op_reserve(Model *m, int B, int T) { return mamba_reserve(mamba_of(m), B, T); }

/* Packed rows are refused: the scan would carry each example's state into the next one in its row. */
static PeftcStatus op_forward(Model *m, const int32_t *tokens, const int32_t *targets, const int32_t *seg,
                              const int32_t *pos, const uint64_t *row_keys, int training, int B, int T,
                              double *loss_sum, int64_t *n_valid) {
    if (seg || pos)
        return PEFTC_ERR(PEFTC_EINVAL, "data.packing=true: a Mamba model cannot take packed rows (its recurrent scan "
                         "would carry state from one example into the next); set data.packing=false");
    return mamba_forward(mamba_of(m), tokens, targets, row_keys, training, B, T, loss_sum, n_valid);
}

static void op_backward(Model *m, const int32_t *tokens, const int32_t *targets, const uint64_t *row_keys,
                        real_t loss_scale) {
    mamba_backward(mamba_of(m), tokens, targets, row_keys, loss_scale);
}

/* S (positions per row) sizes nothing: the recurrent state does not grow with length. */
static PeftcStatus op_gen_create(Model *m, int B, int S, GenState **out) {
    (void)S;
    GenState *g = calloc(1, sizeof *g);
    if (!g) return PEFTC_ERR(PEFTC_ENOMEM, "generation: out of memory");
    PeftcStatus st = mamba_gen_create(&g->g, mamba_of(m), B);
    if (st != PEFTC_OK) {
        free(g);
        return st;
    }
    *out = g;
    return PEFTC_OK;
}

static void op_gen_reset_row(GenState *g, int b) { mamba_gen_reset_row(g->g, b); }

static PeftcStatus op_gen_prefill(Model *m, GenState *g, int b, const int32_t *tokens, int n, real_t *logits) {
    return mamba_gen_prefill(mamba_of(m), g->g, b, tokens, n, logits);
}

static PeftcStatus op_gen_decode(Model *m, GenState *g, const int32_t *tokens, const uint8_t *active,
                                 real_t *logits) {
    return mamba_gen_decode(mamba_of(m), g->g, tokens, active, logits);
}

static void op_gen_free(GenState *g) {
    if (!g) return;
    mamba_gen_free(g->g);
    free(g);
}

static int64_t op_param_count(const Model *m) { return mamba_param_count(&mamba_of_const(m)->cfg); }
static size_t op_dense_bytes(const Model *m) { return (size_t)op_param_count(m) * sizeof(real_t); }

static PeftcStatus op_empty_like(const Model *m, const Backend *be, Model **out) {
    return mamba_new(out, be, &mamba_of_const(m)->cfg, 0, -1.0);
}

static PeftcStatus op_copy_weights(Model *dst, const Model *src) {
    if (src->ops != dst->ops)
        return PEFTC_ERR(PEFTC_EINVAL, "model: cannot copy %s weights into a %s model", src->ops->family,
                         dst->ops->family);
    return mamba_copy_weights(mamba_of(dst), mamba_of_const(src));
}

static PeftcStatus op_save_hf(const Model *m, const char *dir, int st_dtype) {
    return mamba_save_hf(mamba_of_const(m), dir, st_dtype);
}

/* bf16 here means the matmuls' inputs are rounded to bf16 (autocast); the weights stay fp32. */
static PeftcStatus op_use_bf16(Model *m) {
    m->bf16 = 1;
    return PEFTC_OK;
}

static void op_destroy(Model *m) { mamba_free(mamba_of(m)); }

static const ModelOps mamba_ops = {
    .family = "mamba",
    .reserve = op_reserve,
    .forward = op_forward,
    .backward = op_backward,
    .gen_create = op_gen_create,
    .gen_reset_row = op_gen_reset_row,
    .gen_prefill = op_gen_prefill,
    .gen_decode = op_gen_decode,
    .gen_free = op_gen_free,
    .param_count = op_param_count,
    .base_bytes = op_dense_bytes,
    .dense_bytes = op_dense_bytes,
    .empty_like = op_empty_like,
    .copy_weights = op_copy_weights,
    .save_hf = op_save_hf,
    .gguf_tensor = mamba_gguf_tensor,
    .use_bf16 = op_use_bf16,
    .destroy = op_destroy,
};

void mamba_model_init(Model *m, const Backend *be, const MambaConfig *c) {
    m->ops = &mamba_ops;
    m->be = be;
    m->gguf_arch = "mamba";
    m->vocab = c->vocab;
    m->layers = c->layers;
    m->hidden = c->hidden;
    m->targets = mamba_targets;
    m->n_targets = MAMBA_N_TARGETS;
}

static PeftcStatus adopt(Model **out, MambaModel *m, PeftcStatus st) {
    if (st != PEFTC_OK) {
        mamba_free(m);
        free(m);
        return st;
    }
    *out = &m->base;
    return PEFTC_OK;
}

PeftcStatus mamba_new(Model **out, const Backend *be, const MambaConfig *cfg, uint64_t seed, double init_std) {
    MambaModel *m = calloc(1, sizeof *m);
    if (!m) return PEFTC_ERR(PEFTC_ENOMEM, "model: out of memory");
    return adopt(out, m, mamba_create(m, be, cfg, seed, init_std));
}

static int is_folder(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

PeftcStatus mamba_read_config(const char *path, MambaConfig *cfg, ModelInfo *info) {
    if (is_folder(path)) return mamba_hf_config(path, cfg, info);
    if (info) memset(info, 0, sizeof *info);
    return mamba_gguf_config(path, cfg);
}

PeftcStatus mamba_open(Model **out, const Backend *be, const char *path, QuantMode quantized, ModelInfo *info) {
    if (quantized != QUANT_NONE)
        return PEFTC_ERR(PEFTC_EINVAL, "model '%s' is a Mamba model: model.quantized=%s keeps a LLaMA model's "
                         "projection weights quantized; set model.quantized=false", path, quant_mode_names[quantized]);
    MambaModel *m = calloc(1, sizeof *m);
    if (!m) return PEFTC_ERR(PEFTC_ENOMEM, "model '%s': out of memory", path);
    return adopt(out, m, is_folder(path) ? mamba_hf_load(m, be, path, info) : mamba_gguf_load(m, be, path, info));
}
