/* llama.cpp's GGUF `mamba` files: hyperparameters from the mamba.* keys, tensors by llama.cpp's names
 * (token_embd, blk.N.{attn_norm, ssm_in, ssm_conv1d, ssm_x, ssm_dt, ssm_a, ssm_d, ssm_out}, output_norm,
 * output), dequantized into the model. llama.cpp stores A as -exp(A_log) (ssm_a); the parameter trained
 * here is A_log, so it is read back as log(-a). The conv weight is stored squeezed, (D, K). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/ggml_blocks.h"
#include "core/formats/gguf.h"
#include "core/models/mamba/mamba_formats.h"

static PeftcStatus key_int(const GgufFile *g, const char *key, int *out) {
    uint32_t v;
    PEFTC_TRY(gguf_get_u32(g, key, &v));
    if (v < 1 || v > (1u << 30))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s is %u, expected a positive size", g->file.path, key, v);
    *out = (int)v;
    return PEFTC_OK;
}

static PeftcStatus gguf_config(const GgufFile *g, MambaConfig *c) {
    memset(c, 0, sizeof *c);
    PEFTC_TRY(key_int(g, "mamba.embedding_length", &c->hidden));
    PEFTC_TRY(key_int(g, "mamba.block_count", &c->layers));
    PEFTC_TRY(key_int(g, "mamba.ssm.inner_size", &c->inner));
    PEFTC_TRY(key_int(g, "mamba.ssm.state_size", &c->state));
    PEFTC_TRY(key_int(g, "mamba.ssm.conv_kernel", &c->conv));
    PEFTC_TRY(key_int(g, "mamba.ssm.time_step_rank", &c->dt_rank));
    float eps;
    PEFTC_TRY(gguf_get_f32_or(g, "mamba.attention.layer_norm_rms_epsilon", 1e-5f, &eps));
    c->eps = eps;
    int dt_b_c_rms;
    PEFTC_TRY(gguf_get_bool_or(g, "mamba.ssm.dt_b_c_rms", 0, &dt_b_c_rms));
    if (dt_b_c_rms)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: mamba.ssm.dt_b_c_rms is true (Falcon-Mamba's extra norms), which this "
                         "model does not compute", g->file.path);
    const GgufTensor *emb = gguf_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor 'token_embd.weight' is missing or not 2-D", g->file.path);
    c->vocab = (int)emb->ne[1];
    c->conv_bias = gguf_tensor(g, "blk.0.ssm_conv1d.bias") != NULL;
    c->proj_bias = gguf_tensor(g, "blk.0.ssm_in.bias") != NULL;
    c->tie_embeddings = gguf_tensor(g, "output.weight") == NULL;
    if (mamba_config_check(c) != PEFTC_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", peftc_err_msg());
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: the mamba.* sizes are not a valid model: %s", g->file.path, why);
    }
    return PEFTC_OK;
}

/* llama.cpp's name of base tensor `hf` ("backbone.layers.3.mixer.in_proj.weight" -> "blk.3.ssm_in.weight"). */
static int gguf_name_of(const char *hf, char *out, size_t n) {
    static const char *const map[][2] = {
        {"norm.weight", "attn_norm.weight"},       {"mixer.in_proj.weight", "ssm_in.weight"},
        {"mixer.in_proj.bias", "ssm_in.bias"},      {"mixer.conv1d.weight", "ssm_conv1d.weight"},
        {"mixer.conv1d.bias", "ssm_conv1d.bias"},   {"mixer.x_proj.weight", "ssm_x.weight"},
        {"mixer.dt_proj.weight", "ssm_dt.weight"},  {"mixer.dt_proj.bias", "ssm_dt.bias"},
        {"mixer.A_log", "ssm_a"},                   {"mixer.D", "ssm_d"},
        {"mixer.out_proj.weight", "ssm_out.weight"}, {"mixer.out_proj.bias", "ssm_out.bias"}};
    if (!strcmp(hf, "backbone.embeddings.weight")) return snprintf(out, n, "token_embd.weight") > 0;
    if (!strcmp(hf, "backbone.norm_f.weight")) return snprintf(out, n, "output_norm.weight") > 0;
    if (!strcmp(hf, "lm_head.weight")) return snprintf(out, n, "output.weight") > 0;
    int layer, used = 0;
    if (sscanf(hf, "backbone.layers.%d.%n", &layer, &used) != 1 || !used) return 0;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(hf + used, map[i][0])) return snprintf(out, n, "blk.%d.%s", layer, map[i][1]) > 0;
    return 0;
}

/* The tensor's dimensions without the 1s, against the model's: llama.cpp squeezes the conv weight. */
static int same_squeezed(const GgufTensor *t, const Shape *s) {
    int64_t a[4], b[TENSOR_MAX_DIMS];
    int na = 0, nb = 0;
    for (int i = t->n_dims - 1; i >= 0; i--)
        if (t->ne[i] != 1) a[na++] = t->ne[i];
    for (int i = 0; i < s->ndim; i++)
        if (s->dim[i] != 1) b[nb++] = s->dim[i];
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static PeftcStatus fill_ref(const GgufFile *g, const ParamRef *r) {
    char name[128], want[96];
    if (!gguf_name_of(r->name, name, sizeof name))
        return PEFTC_ERR(PEFTC_EINVAL, "%s: no GGUF name for model tensor '%s'", g->file.path, r->name);
    const GgufTensor *t = gguf_tensor(g, name);
    if (!t) return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' (%s) is missing", g->file.path, name, r->name);
    if (!same_squeezed(t, &r->shape))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' does not have the shape of %s %s", g->file.path, name, r->name,
                         shape_str(&r->shape, want, sizeof want));
    if (!ggml_type_supported(t->type))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has type %s, which cannot be dequantized", g->file.path,
                         name, ggml_type_name(t->type));
    int64_t n = shape_numel(&r->shape);
    ggml_dequantize(t->type, t->data, *r->data, n);
    int is_a = strstr(r->name, ".A_log") != NULL;
    for (int64_t i = 0; is_a && i < n; i++) {
        if (!((*r->data)[i] < 0))
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s[%lld] is %g; A = -exp(A_log) must be negative", g->file.path, name,
                             (long long)i, (double)(*r->data)[i]);
        (*r->data)[i] = (real_t)log(-(double)(*r->data)[i]);
    }
    return PEFTC_OK;
}

static PeftcStatus load_from(MambaModel *m, const Backend *be, const GgufFile *g, ModelInfo *info) {
    MambaConfig c;
    PEFTC_TRY(gguf_config(g, &c));
    PEFTC_TRY(mamba_create(m, be, &c, 0, -1.0));
    for (int i = 0; i < m->base.n_refs; i++) PEFTC_TRY(fill_ref(g, &m->base.refs[i]));
    if (info) model_gguf_info(g, "mamba", info);
    return PEFTC_OK;
}

PeftcStatus mamba_gguf_load(MambaModel *m, const Backend *be, const char *path, ModelInfo *info) {
    memset(m, 0, sizeof *m);
    if (be->device != DEV_CPU)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: the GGUF loader fills host memory; backend '%s' is not on the CPU", path,
                         be->name);
    GgufFile g;
    PEFTC_TRY(gguf_open(&g, path));
    PeftcStatus st = load_from(m, be, &g, info);
    gguf_close(&g);
    if (st != PEFTC_OK) mamba_free(m);
    return st;
}

PeftcStatus mamba_gguf_config(const char *path, MambaConfig *cfg) {
    GgufFile g;
    PEFTC_TRY(gguf_open(&g, path));
    PeftcStatus st = gguf_config(&g, cfg);
    gguf_close(&g);
    return st;
}
