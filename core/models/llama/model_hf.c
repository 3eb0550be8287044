/* HF model folders: config.json + model.safetensors, or shards listed in model.safetensors.index.json.
 *
 * Accepted architectures are those whose math is exactly this trainer's decoder: "llama" (no biases),
 * "mistral" without an effective sliding window, and "qwen2" (q/k/v biases, full attention). Anything
 * else in config.json that would change what the model computes (RoPE scaling, other activations, MLP
 * or o_proj biases) is refused with the file and key named, rather than loaded and silently ignored. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/formats/json_file.h"
#include "core/models/hf_folder.h"
#include "core/models/llama/model_formats.h"
#include "core/formats/safetensors.h"

typedef struct {
    const char *type, *cls;
    int qkv_bias;
    int kv_required; /* the class's default kv head count is not "= heads", so the key must be there */
} HfArch;

static const HfArch hf_archs[] = {
    {"llama", "LlamaForCausalLM", 0, 0},
    {"mistral", "MistralForCausalLM", 0, 1},
    {"qwen2", "Qwen2ForCausalLM", 1, 1},
};
enum { N_ARCHS = sizeof hf_archs / sizeof hf_archs[0] };

static PeftcStatus find_arch(const HfCfg *c, const HfArch **out) {
    const cJSON *mt = hf_cfg_item(c, "model_type");
    for (int i = 0; cJSON_IsString(mt) && i < N_ARCHS; i++)
        if (strcmp(mt->valuestring, hf_archs[i].type) == 0) {
            *out = &hf_archs[i];
            return PEFTC_OK;
        }
    if (cJSON_IsString(mt))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: model_type \"%s\" is not supported; expected \"llama\" (or \"mistral\", "
                         "\"qwen2\": the LLaMA-family decoders this trainer computes exactly)", c->path, mt->valuestring);
    const cJSON *a;
    cJSON_ArrayForEach(a, hf_cfg_item(c, "architectures")) {
        for (int i = 0; cJSON_IsString(a) && i < N_ARCHS; i++)
            if (strcmp(a->valuestring, hf_archs[i].cls) == 0) {
                *out = &hf_archs[i];
                return PEFTC_OK;
            }
    }
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: no \"model_type\" and no supported \"architectures\" entry; expected "
                     "model_type \"llama\" or architectures [\"LlamaForCausalLM\"]", c->path);
}

/* rope_scaling (and transformers 5's rope_parameters, which also carries rope_theta) may only say
 * "default": any other type rescales positions, which the RoPE tables here do not do. */
static PeftcStatus check_rope(const HfCfg *c, double *theta) {
    static const char *keys[] = {"rope_scaling", "rope_parameters"};
    for (int k = 0; k < 2; k++) {
        const cJSON *v = hf_cfg_item(c, keys[k]);
        if (!v) continue;
        if (!cJSON_IsObject(v)) return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s\" must be an object or null", c->path, keys[k]);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "rope_type");
        if (!t) t = cJSON_GetObjectItemCaseSensitive(v, "type");
        const char *type = cJSON_IsString(t) ? t->valuestring : NULL;
        if (!(type ? strcmp(type, "default") == 0 : k == 1))
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s\" asks for RoPE scaling (type \"%s\"); RoPE scaling is not "
                             "supported yet (expected null)", c->path, keys[k], type ? type : "?");
        PEFTC_TRY(hf_cfg_num(c, cJSON_GetObjectItemCaseSensitive(v, "rope_theta"), "rope_parameters.rope_theta", *theta,
                          theta));
    }
    return PEFTC_OK;
}

static PeftcStatus refuse(const HfCfg *c, const char *key, const char *why) {
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s\": %s", c->path, key, why);
}

/* Options that would make HF compute something this decoder does not. */
static PeftcStatus check_math(const HfCfg *c, const HfArch *arch, int ctx) {
    const cJSON *v = hf_cfg_item(c, "hidden_act");
    if (v && !(cJSON_IsString(v) && strcmp(v->valuestring, "silu") == 0))
        return refuse(c, "hidden_act", "only \"silu\" (SwiGLU) is supported");
    int flag;
    PEFTC_TRY(hf_cfg_bool(c, "mlp_bias", 0, &flag));
    if (flag) return refuse(c, "mlp_bias", "MLP biases are not supported (expected false)");
    if (!arch->qkv_bias) {
        PEFTC_TRY(hf_cfg_bool(c, "attention_bias", 0, &flag));
        if (flag) return refuse(c, "attention_bias", "true gives o_proj a bias as well, which this model does not "
                                "have (expected false; q/k/v-only biases are model_type \"qwen2\")");
    }
    if (strcmp(arch->type, "qwen2") == 0) {
        PEFTC_TRY(hf_cfg_bool(c, "use_sliding_window", 0, &flag));
        if (flag) return refuse(c, "use_sliding_window", "sliding-window attention is not supported (expected false)");
    }
    if (strcmp(arch->type, "mistral") == 0) {
        int window = 4096; /* MistralConfig's default when the key is absent */
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(c->root, "sliding_window");
        if (cJSON_IsNull(w)) window = 0;
        else PEFTC_TRY(hf_cfg_int(c, "sliding_window", window, &window));
        if (window && (ctx == 0 || window < ctx))
            return refuse(c, "sliding_window", "a window shorter than max_position_embeddings is not supported "
                          "(expected null)");
    }
    cJSON_ArrayForEach(v, hf_cfg_item(c, "layer_types")) {
        if (!cJSON_IsString(v) || strcmp(v->valuestring, "full_attention") != 0)
            return refuse(c, "layer_types", "only \"full_attention\" layers are supported");
    }
    return PEFTC_OK;
}

static PeftcStatus parse_config(const HfCfg *c, LlamaConfig *cfg, ModelInfo *info) {
    const HfArch *arch = NULL;
    PEFTC_TRY(find_arch(c, &arch));
    LlamaConfig k = {.qkv_bias = arch->qkv_bias};
    int ctx;
    PEFTC_TRY(hf_cfg_int(c, "hidden_size", -1, &k.hidden));
    PEFTC_TRY(hf_cfg_int(c, "intermediate_size", -1, &k.intermediate));
    PEFTC_TRY(hf_cfg_int(c, "num_hidden_layers", -1, &k.layers));
    PEFTC_TRY(hf_cfg_int(c, "num_attention_heads", -1, &k.heads));
    PEFTC_TRY(hf_cfg_int(c, "num_key_value_heads", arch->kv_required ? -1 : k.heads, &k.kv_heads));
    PEFTC_TRY(hf_cfg_int(c, "head_dim", 0, &k.head_dim));
    PEFTC_TRY(hf_cfg_int(c, "vocab_size", -1, &k.vocab));
    PEFTC_TRY(hf_cfg_int(c, "max_position_embeddings", 0, &ctx));
    PEFTC_TRY(hf_cfg_num(c, hf_cfg_item(c, "rope_theta"), "rope_theta", 10000.0, &k.rope_theta));
    PEFTC_TRY(hf_cfg_num(c, hf_cfg_item(c, "rms_norm_eps"), "rms_norm_eps", 1e-6, &k.rms_eps));
    PEFTC_TRY(hf_cfg_bool(c, "tie_word_embeddings", 0, &k.tie_embeddings));
    PEFTC_TRY(check_rope(c, &k.rope_theta));
    PEFTC_TRY(check_math(c, arch, ctx));
    if (llama_config_check(&k) != PEFTC_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", peftc_err_msg());
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: the sizes it gives are not a valid model: %s", c->path, why);
    }
    *cfg = k;
    snprintf(info->arch, sizeof info->arch, "%s", arch->type);
    info->context_length = ctx;
    return PEFTC_OK;
}

PeftcStatus model_hf_config(const char *dir, LlamaConfig *cfg, ModelInfo *info) {
    ModelInfo local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    HfCfg c;
    PEFTC_TRY(hf_cfg_open(&c, dir));
    PeftcStatus st = parse_config(&c, cfg, info);
    hf_cfg_close(&c);
    PEFTC_TRY(st);
    return hf_folder_identity(dir, info->path, sizeof info->path, info->name, sizeof info->name, &info->content_hash);
}

/* ---- loading ---- */

/* Every tensor config.json implies is in the weight files with its shape, checked before the model
 * is allocated: the tensors lie inside the files, so a layer count, width or vocabulary the files
 * cannot back is refused at once rather than after allocating memory for it. */
static PeftcStatus check_sizes(const HfWeights *w, const LlamaConfig *c) {
    int64_t C = c->hidden, I = c->intermediate, V = c->vocab, hd = c->head_dim ? c->head_dim : c->hidden / c->heads;
    int64_t q = c->heads * hd, kv = c->kv_heads * hd;
    /* in the model's own order, so the first tensor reported is the one loading would have met first */
    PEFTC_TRY(hf_weights_expect(w, "model.embed_tokens.weight", (Shape){2, {V, C}}));
    const struct { const char *name; Shape shape; int bias; } per_layer[] = {
        {"input_layernorm.weight", {1, {C}}, 0}, {"self_attn.q_proj.weight", {2, {q, C}}, 0},
        {"self_attn.q_proj.bias", {1, {q}}, 1}, {"self_attn.k_proj.weight", {2, {kv, C}}, 0},
        {"self_attn.k_proj.bias", {1, {kv}}, 1}, {"self_attn.v_proj.weight", {2, {kv, C}}, 0},
        {"self_attn.v_proj.bias", {1, {kv}}, 1}, {"self_attn.o_proj.weight", {2, {C, q}}, 0},
        {"post_attention_layernorm.weight", {1, {C}}, 0}, {"mlp.gate_proj.weight", {2, {I, C}}, 0},
        {"mlp.up_proj.weight", {2, {I, C}}, 0}, {"mlp.down_proj.weight", {2, {C, I}}, 0}};
    for (int l = 0; l < c->layers; l++)
        for (size_t k = 0; k < sizeof per_layer / sizeof per_layer[0]; k++) {
            if (per_layer[k].bias && !c->qkv_bias) continue;
            char name[128];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, per_layer[k].name);
            PEFTC_TRY(hf_weights_expect(w, name, per_layer[k].shape));
        }
    PEFTC_TRY(hf_weights_expect(w, "model.norm.weight", (Shape){1, {C}}));
    if (!c->tie_embeddings) PEFTC_TRY(hf_weights_expect(w, "lm_head.weight", (Shape){2, {V, C}}));
    return PEFTC_OK;
}

/* Extra tensors are ignored (tied lm_head, rotary buffers, other heads), except inside the decoder
 * layers: there they are parameters the model would drop, e.g. an o_proj bias or a 31st layer. */
static PeftcStatus load_from(LlamaModel *m, const Backend *be, const LlamaConfig *cfg, HfWeights *w) {
    PEFTC_TRY(hf_weights_map(w));
    PEFTC_TRY(check_sizes(w, cfg));
    PEFTC_TRY(llama_create(m, be, cfg, 0, -1.0));
    char described[64];
    snprintf(described, sizeof described, "%d layers, %s", cfg->layers,
             cfg->qkv_bias ? "q/k/v biases only" : "no biases");
    PEFTC_TRY(hf_weights_no_extras(w, m->base.refs, m->base.n_refs, "model.layers.", ".rotary_emb.inv_freq", described));
    if (cfg->quantized == QUANT_NF4) return model_hf_fill_nf4(m, w);
    return hf_weights_fill(w, m->base.refs, m->base.n_refs);
}

static PeftcStatus load(LlamaModel *m, const Backend *be, const char *dir, ModelInfo *info, QuantMode quantized) {
    memset(m, 0, sizeof *m);
    if (be->device != DEV_CPU)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: the HF loader fills host memory; backend '%s' is not on the CPU", dir,
                         be->name);
    ModelInfo local;
    if (!info) info = &local;
    LlamaConfig cfg;
    PEFTC_TRY(model_hf_config(dir, &cfg, info));
    cfg.quantized = quantized;
    HfWeights w;
    PEFTC_TRY(hf_weights_open(&w, dir));
    PeftcStatus st = load_from(m, be, &cfg, &w);
    hf_weights_close(&w);
    if (st != PEFTC_OK) llama_free(m);
    return st;
}

PeftcStatus model_hf_load(LlamaModel *m, const Backend *be, const char *dir, ModelInfo *info) {
    return load(m, be, dir, info, QUANT_NONE);
}

PeftcStatus model_hf_load_nf4(LlamaModel *m, const Backend *be, const char *dir, ModelInfo *info) {
    return load(m, be, dir, info, QUANT_NF4);
}

/* ---- saving ---- */

/* The HF config that makes transformers build this exact model: q/k/v biases need Qwen2's class, since
 * LLaMA's attention_bias would add an o_proj bias too. */
static cJSON *config_json(const LlamaConfig *c, int st_dtype) {
    const HfArch *arch = &hf_archs[c->qkv_bias ? 2 : 0];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "architectures", cJSON_CreateStringArray(&arch->cls, 1));
    cJSON_AddStringToObject(j, "model_type", arch->type);
    cJSON_AddNumberToObject(j, "hidden_size", c->hidden);
    cJSON_AddNumberToObject(j, "intermediate_size", c->intermediate);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->kv_heads);
    cJSON_AddNumberToObject(j, "head_dim", c->head_dim ? c->head_dim : c->hidden / c->heads);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab);
    cJSON_AddNumberToObject(j, "rope_theta", c->rope_theta);
    cJSON_AddNullToObject(j, "rope_scaling");
    cJSON_AddNumberToObject(j, "rms_norm_eps", c->rms_eps);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_embeddings);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    if (c->qkv_bias) cJSON_AddFalseToObject(j, "use_sliding_window");
    else cJSON_AddFalseToObject(j, "attention_bias");
    cJSON_AddFalseToObject(j, "mlp_bias");
    cJSON_AddStringToObject(j, "torch_dtype", hf_torch_dtype(st_dtype));
    return j;
}

PeftcStatus model_save_hf(const LlamaModel *m, const char *dir, int st_dtype) {
    if (!m->base.be || m->base.be->device != DEV_CPU)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: the HF writer reads host memory; the model is not on the CPU", dir);
    if (m->cfg.quantized != QUANT_NONE)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: the model's base is kept quantized (model.quantized=%s): load it dense "
                         "to write or merge into an HF folder", dir, quant_mode_names[m->cfg.quantized]);
    return hf_save_folder(dir, m->base.refs, m->base.n_refs, st_dtype, config_json(&m->cfg, st_dtype));
}
