/* HF MambaForCausalLM folders: config.json (model_type "mamba") and safetensors with the tensor names of
 * transformers' state dict. Options that change what the model computes are refused by key. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/models/hf_folder.h"
#include "core/models/mamba/mamba_formats.h"

/* time_step_rank: an integer, or "auto" (ceil(hidden / 16), as MambaConfig resolves it). */
static PeftcStatus dt_rank_of(const HfCfg *c, int hidden, int *out) {
    const cJSON *v = hf_cfg_item(c, "time_step_rank");
    if (!v || (cJSON_IsString(v) && strcmp(v->valuestring, "auto") == 0)) {
        *out = (hidden + 15) / 16;
        return PEFTC_OK;
    }
    return hf_cfg_int(c, "time_step_rank", -1, out);
}

static PeftcStatus parse_config(const HfCfg *c, MambaConfig *k) {
    static const char *const types[] = {"mamba"}, *const classes[] = {"MambaForCausalLM"};
    int arch;
    PEFTC_TRY(hf_cfg_arch(c, types, classes, 1, &arch));
    memset(k, 0, sizeof *k);
    PEFTC_TRY(hf_cfg_int(c, "hidden_size", -1, &k->hidden));
    PEFTC_TRY(hf_cfg_int(c, "num_hidden_layers", -1, &k->layers));
    PEFTC_TRY(hf_cfg_int(c, "vocab_size", -1, &k->vocab));
    PEFTC_TRY(hf_cfg_int(c, "state_size", 16, &k->state));
    PEFTC_TRY(hf_cfg_int(c, "conv_kernel", 4, &k->conv));
    double expand;
    PEFTC_TRY(hf_cfg_num(c, hf_cfg_item(c, "expand"), "expand", 2, &expand));
    k->inner = (int)(expand * k->hidden); /* int(expand * hidden_size), as MambaConfig computes it */
    PEFTC_TRY(dt_rank_of(c, k->hidden, &k->dt_rank));
    PEFTC_TRY(hf_cfg_num(c, hf_cfg_item(c, "layer_norm_epsilon"), "layer_norm_epsilon", 1e-5, &k->eps));
    PEFTC_TRY(hf_cfg_bool(c, "use_bias", 0, &k->proj_bias));
    PEFTC_TRY(hf_cfg_bool(c, "use_conv_bias", 1, &k->conv_bias));
    PEFTC_TRY(hf_cfg_bool(c, "tie_word_embeddings", 1, &k->tie_embeddings));
    const cJSON *act = hf_cfg_item(c, "hidden_act");
    if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"hidden_act\": only \"silu\" is supported", c->path);
    if (mamba_config_check(k) != PEFTC_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", peftc_err_msg());
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: the sizes it gives are not a valid model: %s", c->path, why);
    }
    return PEFTC_OK;
}

PeftcStatus mamba_hf_config(const char *dir, MambaConfig *cfg, ModelInfo *info) {
    ModelInfo local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    HfCfg c;
    PEFTC_TRY(hf_cfg_open(&c, dir));
    PeftcStatus st = parse_config(&c, cfg);
    hf_cfg_close(&c);
    PEFTC_TRY(st);
    snprintf(info->arch, sizeof info->arch, "mamba");
    return hf_folder_identity(dir, info->path, sizeof info->path, info->name, sizeof info->name, &info->content_hash);
}

/* Every tensor config.json implies, present with its shape, checked before the model is allocated, so
 * sizes the files cannot back are refused before memory is taken for them. */
static PeftcStatus check_sizes(const HfWeights *w, const MambaConfig *c) {
    int64_t H = c->hidden, D = c->inner, N = c->state, K = c->conv, R = c->dt_rank, V = c->vocab;
    PEFTC_TRY(hf_weights_expect(w, "backbone.embeddings.weight", (Shape){2, {V, H}}));
    const struct { const char *name; Shape shape; int when; } per_layer[] = {
        {"norm.weight", {1, {H}}, 1},          {"mixer.in_proj.weight", {2, {2 * D, H}}, 1},
        {"mixer.in_proj.bias", {1, {2 * D}}, 2}, {"mixer.conv1d.weight", {3, {D, 1, K}}, 1},
        {"mixer.conv1d.bias", {1, {D}}, 3},    {"mixer.x_proj.weight", {2, {R + 2 * N, D}}, 1},
        {"mixer.dt_proj.weight", {2, {D, R}}, 1}, {"mixer.dt_proj.bias", {1, {D}}, 1},
        {"mixer.A_log", {2, {D, N}}, 1},       {"mixer.D", {1, {D}}, 1},
        {"mixer.out_proj.weight", {2, {H, D}}, 1}, {"mixer.out_proj.bias", {1, {H}}, 2}};
    for (int l = 0; l < c->layers; l++)
        for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0]; i++) {
            int when = per_layer[i].when;
            if ((when == 2 && !c->proj_bias) || (when == 3 && !c->conv_bias)) continue;
            char name[128];
            snprintf(name, sizeof name, "backbone.layers.%d.%s", l, per_layer[i].name);
            PEFTC_TRY(hf_weights_expect(w, name, per_layer[i].shape));
        }
    PEFTC_TRY(hf_weights_expect(w, "backbone.norm_f.weight", (Shape){1, {H}}));
    if (!c->tie_embeddings) PEFTC_TRY(hf_weights_expect(w, "lm_head.weight", (Shape){2, {V, H}}));
    return PEFTC_OK;
}

static PeftcStatus load_from(MambaModel *m, const Backend *be, const MambaConfig *cfg, HfWeights *w) {
    PEFTC_TRY(hf_weights_map(w));
    PEFTC_TRY(check_sizes(w, cfg));
    PEFTC_TRY(mamba_create(m, be, cfg, 0, -1.0));
    char described[96];
    snprintf(described, sizeof described, "%d layers, %s, %s", cfg->layers,
             cfg->proj_bias ? "in/out_proj biases" : "no in/out_proj biases",
             cfg->conv_bias ? "a conv bias" : "no conv bias");
    PEFTC_TRY(hf_weights_no_extras(w, m->base.refs, m->base.n_refs, "backbone.layers.", NULL, described));
    return hf_weights_fill(w, m->base.refs, m->base.n_refs);
}

PeftcStatus mamba_hf_load(MambaModel *m, const Backend *be, const char *dir, ModelInfo *info) {
    memset(m, 0, sizeof *m);
    if (be->device != DEV_CPU)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: the HF loader fills host memory; backend '%s' is not on the CPU", dir,
                         be->name);
    MambaConfig cfg;
    PEFTC_TRY(mamba_hf_config(dir, &cfg, info));
    HfWeights w;
    PEFTC_TRY(hf_weights_open(&w, dir));
    PeftcStatus st = load_from(m, be, &cfg, &w);
    hf_weights_close(&w);
    if (st != PEFTC_OK) mamba_free(m);
    return st;
}

static cJSON *config_json(const MambaConfig *c, int st_dtype) {
    static const char *cls = "MambaForCausalLM";
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "architectures", cJSON_CreateStringArray(&cls, 1));
    cJSON_AddStringToObject(j, "model_type", "mamba");
    cJSON_AddNumberToObject(j, "hidden_size", c->hidden);
    cJSON_AddNumberToObject(j, "intermediate_size", c->inner);
    cJSON_AddNumberToObject(j, "expand", (double)c->inner / c->hidden);
    cJSON_AddNumberToObject(j, "state_size", c->state);
    cJSON_AddNumberToObject(j, "conv_kernel", c->conv);
    cJSON_AddNumberToObject(j, "time_step_rank", c->dt_rank);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->layers);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab);
    cJSON_AddNumberToObject(j, "layer_norm_epsilon", c->eps);
    cJSON_AddBoolToObject(j, "use_bias", c->proj_bias);
    cJSON_AddBoolToObject(j, "use_conv_bias", c->conv_bias);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_embeddings);
    cJSON_AddBoolToObject(j, "residual_in_fp32", 1);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddStringToObject(j, "torch_dtype", hf_torch_dtype(st_dtype));
    return j;
}

PeftcStatus mamba_save_hf(const MambaModel *m, const char *dir, int st_dtype) {
    if (!m->base.be || m->base.be->device != DEV_CPU)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: the HF writer reads host memory; the model is not on the CPU", dir);
    return hf_save_folder(dir, m->base.refs, m->base.n_refs, st_dtype, config_json(&m->cfg, st_dtype));
}
