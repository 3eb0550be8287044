/* HF model folders: config.json + model.safetensors, or shards listed in model.safetensors.index.json.
 *
 * Accepted architectures are those whose math is this trainer's decoder: "llama" (attention_bias gives
 * q/k/v/o biases), "mistral" and "qwen2" (q/k/v biases), with RoPE scaling of the types rope_scaling.h
 * lists. A sliding attention window is kept as a limit: sequences up to the window are computed
 * exactly (llama_check_window). Anything else in config.json that would change what the model
 * computes (other activations, MLP biases, partial or dynamic RoPE) is refused with the file and key
 * named, rather than loaded and silently ignored. */
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
#include "core/models/hf_rope.h"
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

static PeftcStatus refuse(const HfCfg *c, const char *key, const char *why) {
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s\": %s", c->path, key, why);
}

/* The sliding window (0 = none) some layer applies: Mistral's whenever sliding_window is set, Qwen2's
 * when use_sliding_window is and a layer from max_window_layers on (or a "sliding_attention" entry of
 * layer_types) uses it. */
static PeftcStatus read_window(const HfCfg *c, const HfArch *arch, int *window) {
    *window = 0;
    int is_mistral = strcmp(arch->type, "mistral") == 0, is_qwen2 = strcmp(arch->type, "qwen2") == 0;
    if (!is_mistral && !is_qwen2) return PEFTC_OK;
    int w, use = 1, layers, max_window;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, "sliding_window");
    if (cJSON_IsNull(v)) return PEFTC_OK;
    PEFTC_TRY(hf_cfg_int(c, "sliding_window", 4096, &w)); /* both classes' default */
    if (is_qwen2) {
        PEFTC_TRY(hf_cfg_bool(c, "use_sliding_window", 0, &use));
        PEFTC_TRY(hf_cfg_int(c, "num_hidden_layers", -1, &layers));
        PEFTC_TRY(hf_cfg_int(c, "max_window_layers", 28, &max_window));
        use = use && max_window < layers;
    }
    const cJSON *types = hf_cfg_item(c, "layer_types");
    if (is_qwen2 && types) {
        use = 0;
        cJSON_ArrayForEach(v, types) use |= cJSON_IsString(v) && strcmp(v->valuestring, "sliding_attention") == 0;
    }
    *window = use ? w : 0;
    return PEFTC_OK;
}

/* Options that would make HF compute something this decoder does not. */
static PeftcStatus check_math(const HfCfg *c) {
    const cJSON *v = hf_cfg_item(c, "hidden_act");
    if (v && !(cJSON_IsString(v) && strcmp(v->valuestring, "silu") == 0))
        return refuse(c, "hidden_act", "only \"silu\" (SwiGLU) is supported");
    int flag;
    PEFTC_TRY(hf_cfg_bool(c, "mlp_bias", 0, &flag));
    if (flag) return refuse(c, "mlp_bias", "MLP biases are not supported (expected false)");
    cJSON_ArrayForEach(v, hf_cfg_item(c, "layer_types")) {
        if (!cJSON_IsString(v) || (strcmp(v->valuestring, "full_attention") != 0 &&
                                   strcmp(v->valuestring, "sliding_attention") != 0))
            return refuse(c, "layer_types", "only \"full_attention\" and \"sliding_attention\" layers are supported");
    }
    return PEFTC_OK;
}

static PeftcStatus parse_config(const HfCfg *c, LlamaConfig *cfg, ModelInfo *info) {
    const HfArch *arch = NULL;
    PEFTC_TRY(find_arch(c, &arch));
    LlamaConfig k = {.qkv_bias = arch->qkv_bias, .gguf_qwen2 = strcmp(arch->type, "qwen2") == 0};
    int ctx;
    PEFTC_TRY(hf_cfg_int(c, "hidden_size", -1, &k.hidden));
    PEFTC_TRY(hf_cfg_int(c, "intermediate_size", -1, &k.intermediate));
    PEFTC_TRY(hf_cfg_int(c, "num_hidden_layers", -1, &k.layers));
    PEFTC_TRY(hf_cfg_int(c, "num_attention_heads", -1, &k.heads));
    PEFTC_TRY(hf_cfg_int(c, "num_key_value_heads", arch->kv_required ? -1 : k.heads, &k.kv_heads));
    PEFTC_TRY(hf_cfg_int(c, "head_dim", 0, &k.head_dim));
    PEFTC_TRY(hf_cfg_int(c, "vocab_size", -1, &k.vocab));
    PEFTC_TRY(hf_cfg_int(c, "max_position_embeddings", 0, &ctx));
    PEFTC_TRY(hf_rope_read(c, ctx, &k.rope_theta, &k.rope_scaling));
    PEFTC_TRY(hf_cfg_num(c, hf_cfg_item(c, "rms_norm_eps"), "rms_norm_eps", 1e-6, &k.rms_eps));
    PEFTC_TRY(hf_cfg_bool(c, "tie_word_embeddings", 0, &k.tie_embeddings));
    if (strcmp(arch->type, "llama") == 0) { /* Mistral's class has no such key; Qwen2's biases are fixed */
        PEFTC_TRY(hf_cfg_bool(c, "attention_bias", 0, &k.o_bias));
        k.qkv_bias = k.o_bias;
    }
    PEFTC_TRY(read_window(c, arch, &k.sliding_window));
    PEFTC_TRY(check_math(c));
    if (llama_config_check(&k) != PEFTC_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", peftc_err_msg());
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: the sizes it gives are not a valid model: %s", c->path, why);
    }
    *cfg = k;
    snprintf(info->arch, sizeof info->arch, "%s", arch->type);
    llama_describe(&k, info->features, sizeof info->features);
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
    /* bias: 1 present with q/k/v biases, 2 with an o_proj bias */
    const struct { const char *name; Shape shape; int bias; } per_layer[] = {
        {"input_layernorm.weight", {1, {C}}, 0}, {"self_attn.q_proj.weight", {2, {q, C}}, 0},
        {"self_attn.q_proj.bias", {1, {q}}, 1}, {"self_attn.k_proj.weight", {2, {kv, C}}, 0},
        {"self_attn.k_proj.bias", {1, {kv}}, 1}, {"self_attn.v_proj.weight", {2, {kv, C}}, 0},
        {"self_attn.v_proj.bias", {1, {kv}}, 1}, {"self_attn.o_proj.weight", {2, {C, q}}, 0},
        {"self_attn.o_proj.bias", {1, {C}}, 2},
        {"post_attention_layernorm.weight", {1, {C}}, 0}, {"mlp.gate_proj.weight", {2, {I, C}}, 0},
        {"mlp.up_proj.weight", {2, {I, C}}, 0}, {"mlp.down_proj.weight", {2, {C, I}}, 0}};
    for (int l = 0; l < c->layers; l++)
        for (size_t k = 0; k < sizeof per_layer / sizeof per_layer[0]; k++) {
            if ((per_layer[k].bias == 1 && !c->qkv_bias) || (per_layer[k].bias == 2 && !c->o_bias)) continue;
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
             cfg->o_bias ? "q/k/v/o biases" : cfg->qkv_bias ? "q/k/v biases only" : "no biases");
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

/* The HF class that makes transformers build this exact model: LLaMA's attention_bias gives q, k, v and
 * o biases; q/k/v biases alone are Qwen2's; a sliding window without biases is Mistral's. */
static const HfArch *arch_of(const LlamaConfig *c) {
    if (c->qkv_bias && !c->o_bias) return &hf_archs[2];
    return &hf_archs[c->sliding_window && !c->o_bias ? 1 : 0];
}

static void add_window(cJSON *j, const HfArch *arch, const LlamaConfig *c) {
    if (strcmp(arch->type, "qwen2") == 0) {
        cJSON_AddBoolToObject(j, "use_sliding_window", c->sliding_window > 0);
        cJSON_AddNumberToObject(j, "max_window_layers", c->sliding_window ? 0 : c->layers);
    }
    if (strcmp(arch->type, "llama") == 0) return;
    if (c->sliding_window) cJSON_AddNumberToObject(j, "sliding_window", c->sliding_window);
    else cJSON_AddNullToObject(j, "sliding_window");
}

static cJSON *config_json(const LlamaConfig *c, int st_dtype) {
    const HfArch *arch = arch_of(c);
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
    hf_rope_write(j, &c->rope_scaling, c->rope_theta);
    cJSON_AddNumberToObject(j, "rms_norm_eps", c->rms_eps);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_embeddings);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    if (strcmp(arch->type, "llama") == 0) cJSON_AddBoolToObject(j, "attention_bias", c->o_bias);
    add_window(j, arch, c);
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
    PEFTC_TRY(hf_rope_writable(&m->cfg.rope_scaling, dir));
    return hf_save_folder(dir, m->base.refs, m->base.n_refs, st_dtype, config_json(&m->cfg, st_dtype));
}
