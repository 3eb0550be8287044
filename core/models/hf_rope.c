/* RoPE settings in config.json, read with transformers' precedence and defaults (modeling_rope_utils:
 * standardize_rope_params and the _compute_*_parameters functions). */
#include "core/models/hf_rope.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A key of a rope object, NULL when absent or null. */
static const cJSON *field(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(v) ? NULL : v;
}

/* obj.key as a positive number named "<where>.<key>" in errors; dflt when absent. */
static PeftcStatus num(const HfCfg *c, const char *where, const cJSON *obj, const char *key, double dflt, double *out) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", where, key);
    return hf_cfg_num(c, field(obj, key), name, dflt, out);
}

/* transformers 5 gives rope_scaling, when set, precedence over rope_parameters. */
static PeftcStatus rope_object(const HfCfg *c, const cJSON **obj, const char **where) {
    static const char *keys[] = {"rope_scaling", "rope_parameters"};
    *obj = NULL;
    for (int k = 0; k < 2 && !*obj; k++) {
        const cJSON *v = hf_cfg_item(c, keys[k]);
        if (v && !cJSON_IsObject(v))
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s\" must be an object or null", c->path, keys[k]);
        if (v && v->child) {
            *obj = v;
            *where = keys[k];
        }
    }
    return PEFTC_OK;
}

static PeftcStatus read_type(const HfCfg *c, const cJSON *obj, const char *where, RopeType *type) {
    static const RopeType types[] = {ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3, ROPE_YARN};
    const cJSON *t = field(obj, "rope_type");
    if (!t) t = field(obj, "type");
    if (!t) {
        *type = ROPE_DEFAULT;
        return PEFTC_OK;
    }
    for (int i = 0; cJSON_IsString(t) && i < 4; i++)
        if (strcmp(t->valuestring, rope_type_name(types[i])) == 0) {
            *type = types[i];
            return PEFTC_OK;
        }
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s.rope_type\" is %s%s%s: supported are \"default\", \"linear\", \"llama3\" "
                     "and \"yarn\" (dynamic and longrope scalings change with the sequence length and are not "
                     "implemented)", c->path, where, cJSON_IsString(t) ? "\"" : "",
                     cJSON_IsString(t) ? t->valuestring : "not a string", cJSON_IsString(t) ? "\"" : "");
}

/* original_max_position_embeddings: a top-level key wins (Phi-3's convention), then the rope object's,
 * then max_position_embeddings. */
static PeftcStatus read_original_ctx(const HfCfg *c, const cJSON *obj, const char *where, int max_pos, int *out) {
    double v;
    PEFTC_TRY(hf_cfg_num(c, hf_cfg_item(c, "original_max_position_embeddings"), "original_max_position_embeddings",
                         0, &v));
    if (v == 0) PEFTC_TRY(num(c, where, obj, "original_max_position_embeddings", max_pos, &v));
    if (!(v >= 1 && v <= 1 << 30 && v == floor(v)))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: RoPE scaling needs original_max_position_embeddings (in \"%s\" or "
                         "max_position_embeddings) as a positive integer", c->path, where);
    *out = (int)v;
    return PEFTC_OK;
}

/* YaRN's defaults: attention factor from the factor (and DeepSeek's
 * mscale / mscale_all_dim pair), ramp between 32 and 1 rotations, truncated. */
static PeftcStatus read_yarn(const HfCfg *c, const cJSON *obj, const char *where, RopeScaling *r) {
    double mscale, mscale_all;
    PEFTC_TRY(num(c, where, obj, "mscale", 0, &mscale));
    PEFTC_TRY(num(c, where, obj, "mscale_all_dim", 0, &mscale_all));
    double dflt = mscale > 0 && mscale_all > 0
        ? rope_yarn_mscale(r->factor, mscale) / rope_yarn_mscale(r->factor, mscale_all)
        : rope_yarn_mscale(r->factor, 1);
    PEFTC_TRY(num(c, where, obj, "attention_factor", dflt, &r->attn_factor));
    PEFTC_TRY(num(c, where, obj, "beta_fast", 32, &r->beta_fast));
    PEFTC_TRY(num(c, where, obj, "beta_slow", 1, &r->beta_slow));
    const cJSON *t = field(obj, "truncate");
    if (t && !cJSON_IsBool(t))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s.truncate\" must be true or false", c->path, where);
    r->truncate = t ? cJSON_IsTrue(t) : 1;
    return PEFTC_OK;
}

PeftcStatus hf_rope_read(const HfCfg *c, int max_pos, double *theta, RopeScaling *r) {
    memset(r, 0, sizeof *r);
    PEFTC_TRY(hf_cfg_num(c, hf_cfg_item(c, "rope_theta"), "rope_theta", 10000.0, theta));
    const cJSON *obj;
    const char *where = NULL;
    PEFTC_TRY(rope_object(c, &obj, &where));
    if (!obj) return PEFTC_OK;
    PEFTC_TRY(num(c, where, obj, "rope_theta", *theta, theta));
    double partial;
    PEFTC_TRY(num(c, where, obj, "partial_rotary_factor", 1.0, &partial));
    if (partial != 1.0)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s.partial_rotary_factor\" is %g: partial RoPE is not supported "
                         "(expected 1)", c->path, where, partial);
    PEFTC_TRY(read_type(c, obj, where, &r->type));
    if (r->type == ROPE_DEFAULT) return PEFTC_OK;
    if (r->type != ROPE_LINEAR) PEFTC_TRY(read_original_ctx(c, obj, where, max_pos, &r->original_ctx));
    double dflt_factor = r->type == ROPE_YARN && max_pos > 0 ? (double)max_pos / r->original_ctx : -1;
    PEFTC_TRY(num(c, where, obj, "factor", dflt_factor, &r->factor));
    if (r->factor < 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s\" of type \"%s\" needs \"factor\"", c->path, where,
                         rope_type_name(r->type));
    if (r->type == ROPE_LLAMA3) {
        PEFTC_TRY(num(c, where, obj, "low_freq_factor", -1, &r->low_freq_factor));
        PEFTC_TRY(num(c, where, obj, "high_freq_factor", -1, &r->high_freq_factor));
    }
    if (r->type == ROPE_YARN) PEFTC_TRY(read_yarn(c, obj, where, r));
    return PEFTC_OK; /* values are checked against the head size with the rest of the configuration */
}

PeftcStatus hf_rope_writable(const RopeScaling *r, const char *dir) {
    if (r->type != ROPE_FACTORS) return PEFTC_OK;
    return PEFTC_ERR(PEFTC_EINVAL, "%s: the model's RoPE frequencies come from a GGUF rope_freqs table, which an HF "
                     "config.json cannot express (write a GGUF instead)", dir);
}

void hf_rope_write(cJSON *j, const RopeScaling *r, double theta) {
    cJSON_AddNumberToObject(j, "rope_theta", theta);
    if (r->type == ROPE_DEFAULT || r->type == ROPE_FACTORS) {
        cJSON_AddNullToObject(j, "rope_scaling");
        return;
    }
    cJSON *o = cJSON_AddObjectToObject(j, "rope_scaling");
    cJSON_AddStringToObject(o, "rope_type", rope_type_name(r->type));
    cJSON_AddNumberToObject(o, "factor", r->factor);
    if (r->type == ROPE_LINEAR) return;
    cJSON_AddNumberToObject(o, "original_max_position_embeddings", r->original_ctx);
    if (r->type == ROPE_LLAMA3) {
        cJSON_AddNumberToObject(o, "low_freq_factor", r->low_freq_factor);
        cJSON_AddNumberToObject(o, "high_freq_factor", r->high_freq_factor);
        return;
    }
    cJSON_AddNumberToObject(o, "attention_factor", r->attn_factor);
    cJSON_AddNumberToObject(o, "beta_fast", r->beta_fast);
    cJSON_AddNumberToObject(o, "beta_slow", r->beta_slow);
    cJSON_AddBoolToObject(o, "truncate", r->truncate);
}
