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

/* {HF, llama.cpp} names of a block's tensors ("backbone.layers.N." / "blk.N."). */
static const char *const layer_names[][2] = {
    {"norm.weight", "attn_norm.weight"},       {"mixer.in_proj.weight", "ssm_in.weight"},
    {"mixer.in_proj.bias", "ssm_in.bias"},      {"mixer.conv1d.weight", "ssm_conv1d.weight"},
    {"mixer.conv1d.bias", "ssm_conv1d.bias"},   {"mixer.x_proj.weight", "ssm_x.weight"},
    {"mixer.dt_proj.weight", "ssm_dt.weight"},  {"mixer.dt_proj.bias", "ssm_dt.bias"},
    {"mixer.A_log", "ssm_a"},                   {"mixer.D", "ssm_d"},
    {"mixer.out_proj.weight", "ssm_out.weight"}, {"mixer.out_proj.bias", "ssm_out.bias"}};
static const char *const top_names[][2] = {
    {"backbone.embeddings.weight", "token_embd.weight"}, {"backbone.norm_f.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"}};

/* `name` looked up in column `from` (0 = HF, 1 = llama.cpp), its column 1 - from into out (n); 0 when the
 * family has no such tensor ("backbone.layers.3.mixer.in_proj.weight" <-> "blk.3.ssm_in.weight"). */
static int translate(const char *name, int from, char *out, size_t n) {
    static const char *const prefix[2] = {"backbone.layers.", "blk."};
    for (size_t i = 0; i < sizeof top_names / sizeof top_names[0]; i++)
        if (!strcmp(name, top_names[i][from])) return snprintf(out, n, "%s", top_names[i][1 - from]) > 0;
    const char *rest;
    int layer = model_block_index(name, prefix[from], &rest);
    if (layer < 0) return 0;
    for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++)
        if (!strcmp(rest, layer_names[i][from]))
            return snprintf(out, n, "%s%d.%s", prefix[1 - from], layer, layer_names[i][1 - from]) > 0;
    return 0;
}

static int gguf_name_of(const char *hf, char *out, size_t n) { return translate(hf, 0, out, n); }

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

PeftcStatus mamba_gguf_tensor(const Model *m, const char *name, ModelGgufTensor *where, real_t *out) {
    char hf[128];
    *where = (ModelGgufTensor){.ref = -1, .ne = {1, 1, 1, 1}};
    if (!translate(name, 1, hf, sizeof hf)) return PEFTC_OK;
    int i = model_find_ref(m, hf);
    if (i < 0) return PEFTC_OK; /* e.g. the head of a tied model */
    const Shape *sh = &m->refs[i].shape;
    int conv = strstr(hf, ".conv1d.weight") != NULL; /* (D, 1, K), which llama.cpp stores as ne {K, D} */
    where->ref = i;
    for (int d = sh->ndim - 1; d >= 0; d--)
        if (!(conv && d == 1)) where->ne[where->n_dims++] = sh->dim[d];
    if (!out) return PEFTC_OK;
    PEFTC_TRY(model_ref_read(m, i, out));
    if (strstr(hf, ".A_log")) /* the file holds A itself, as fill_ref reads it */
        for (int64_t k = 0; k < shape_numel(sh); k++) out[k] = (real_t)-exp((double)out[k]);
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
