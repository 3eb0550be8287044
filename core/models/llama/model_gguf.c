/* LLaMA-family weights from GGUF: `llama.*` or `qwen2.*` hyperparameters, llama.cpp tensor names
 * mapped to HF ones, and dequantization from the map straight into the model's base weights; or, for
 * a quantized base, the projection weights' blocks copied as they are (whatever their type,
 * F32/F16/BF16 included). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/models/llama/gguf_layout.h"
#include "core/models/llama/model_formats.h"
#include "core/formats/quant.h"

static int str_is(GgufStr s, const char *lit) { return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0; }

/* The file and the prefix of its hyperparameter keys: its general.architecture, llama or qwen2. */
typedef struct {
    const GgufFile *g;
    const char *arch;
} Hp;

static void key_of(const Hp *h, const char *suffix, char *key, size_t n) { snprintf(key, n, "%s.%s", h->arch, suffix); }

/* A required (dflt < 0) or optional positive hyperparameter `<arch>.<suffix>`. */
static PeftcStatus hparam(const Hp *h, const char *suffix, int64_t dflt, int *out) {
    char key[128];
    key_of(h, suffix, key, sizeof key);
    uint32_t v;
    if (dflt < 0) PEFTC_TRY(gguf_get_u32(h->g, key, &v));
    else PEFTC_TRY(gguf_get_u32_or(h->g, key, (uint32_t)dflt, &v));
    if (v < 1 || v > 1u << 30)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: metadata '%s' is %u, expected 1..%u", h->g->file.path, key, v, 1u << 30);
    *out = (int)v;
    return PEFTC_OK;
}

/* A required (dflt < 0) or optional float hyperparameter `<arch>.<suffix>`: finite and > 0, since an
 * infinite RoPE base or a NaN epsilon would only show up later as NaN losses. */
static PeftcStatus fparam(const Hp *h, const char *suffix, float dflt, double *out) {
    char key[128];
    key_of(h, suffix, key, sizeof key);
    float v;
    if (dflt < 0) PEFTC_TRY(gguf_get_f32(h->g, key, &v));
    else PEFTC_TRY(gguf_get_f32_or(h->g, key, dflt, &v));
    if (!isfinite(v) || !(v > 0))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: metadata '%s' is %g, expected a finite number > 0", h->g->file.path, key,
                         (double)v);
    *out = v;
    return PEFTC_OK;
}

/* Metadata `<arch>.<suffix>` of any type, or NULL. */
static const GgufKV *hp_find(const Hp *h, const char *suffix) {
    char key[128];
    key_of(h, suffix, key, sizeof key);
    return gguf_find(h->g, key);
}

static PeftcStatus hp_f32_or(const Hp *h, const char *suffix, float dflt, float *out) {
    char key[128];
    key_of(h, suffix, key, sizeof key);
    return gguf_get_f32_or(h->g, key, dflt, out);
}

/* Features llama.cpp expresses in metadata that would change the math here. */
static PeftcStatus refuse_unsupported(const Hp *h) {
    char key[128];
    key_of(h, "expert_count", key, sizeof key);
    uint32_t experts;
    PEFTC_TRY(gguf_get_u32_or(h->g, key, 0, &experts));
    if (experts > 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s is %u: mixture-of-experts models are not supported", h->g->file.path,
                         key, experts);
    return PEFTC_OK;
}

/* llama.cpp's rope_freqs tensor (what its converter writes for LLaMA-3.1 scaling): one F32 divisor per
 * rotated pair. */
static PeftcStatus read_freq_factors(const GgufFile *g, int HD, RopeScaling *r) {
    const GgufTensor *t = gguf_tensor(g, "rope_freqs.weight");
    if (t->type != GGML_F32 || t->n_dims != 1 || t->ne[0] != HD / 2 || HD / 2 > ROPE_MAX_PAIRS)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor 'rope_freqs.weight' must be F32 with %d values (one per rotated "
                         "pair of the head size %d)", g->file.path, HD / 2, HD);
    r->type = ROPE_FACTORS;
    r->n_factors = HD / 2;
    memcpy(r->factors, t->data, (size_t)r->n_factors * sizeof(float));
    return PEFTC_OK;
}

/* <arch>.rope.scaling.* as llama.cpp reads them: linear divides the frequencies by the factor (also
 * the older rope.scale_linear); yarn ramps between 32 and 1 rotations over original_context_length
 * and scales cos and sin by attn_factor (1 when absent) x (0.1 ln factor + 1), which is transformers'
 * default attention factor. */
static PeftcStatus read_rope_scaling(const Hp *h, int HD, RopeScaling *r) {
    const char *path = h->g->file.path;
    memset(r, 0, sizeof *r);
    GgufStr t = {"none", 4};
    char key[128];
    key_of(h, "rope.scaling.type", key, sizeof key);
    if (gguf_find(h->g, key)) PEFTC_TRY(gguf_get_str(h->g, key, &t));
    float factor, legacy, attn;
    PEFTC_TRY(hp_f32_or(h, "rope.scale_linear", 1.0f, &legacy));
    PEFTC_TRY(hp_f32_or(h, "rope.scaling.factor", legacy, &factor));
    int has_freqs = gguf_tensor(h->g, "rope_freqs.weight") != NULL;
    if (str_is(t, "none") && legacy != 1.0f) t = (GgufStr){"linear", 6};
    if (has_freqs && !str_is(t, "none"))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: both tensor 'rope_freqs.weight' and %s '%.*s': only one RoPE scaling at a "
                         "time is supported", path, key, (int)t.len, t.ptr);
    if (has_freqs) return read_freq_factors(h->g, HD, r);
    if (str_is(t, "none")) return PEFTC_OK;
    r->factor = factor;
    if (str_is(t, "linear")) {
        r->type = ROPE_LINEAR;
        return PEFTC_OK;
    }
    if (!str_is(t, "yarn"))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s is '%.*s': supported are none, linear and yarn (and LLaMA-3 scaling "
                         "as a rope_freqs tensor)", path, key, (int)t.len, t.ptr);
    int ctx;
    PEFTC_TRY(hparam(h, "rope.scaling.original_context_length", -1, &ctx));
    PEFTC_TRY(hp_f32_or(h, "rope.scaling.attn_factor", 1.0f, &attn));
    *r = (RopeScaling){.type = ROPE_YARN, .factor = factor, .original_ctx = ctx, .beta_fast = 32, .beta_slow = 1,
                       .truncate = 1, .attn_factor = attn * rope_yarn_mscale(factor, 1)};
    return PEFTC_OK;
}

static PeftcStatus read_vocab(const Hp *h, int *vocab) {
    if (hp_find(h, "vocab_size")) return hparam(h, "vocab_size", -1, vocab);
    const GgufKV *tokens = gguf_find(h->g, "tokenizer.ggml.tokens");
    if (tokens && tokens->type == GGUF_ARRAY && tokens->count >= 1 && tokens->count <= 1u << 30) {
        *vocab = (int)tokens->count;
        return PEFTC_OK;
    }
    const GgufTensor *emb = gguf_tensor(h->g, "token_embd.weight");
    if (emb && emb->n_dims == 2 && emb->ne[1] >= 1 && emb->ne[1] <= 1 << 30) {
        *vocab = (int)emb->ne[1];
        return PEFTC_OK;
    }
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: cannot tell the vocabulary size: no %s.vocab_size, no "
                     "tokenizer.ggml.tokens and no 2-D token_embd.weight", h->g->file.path, h->arch);
}

/* head_dim from attention.key_length or hidden / heads; rope.dimension_count must cover all of it. */
static PeftcStatus read_head_dim(const Hp *h, LlamaConfig *c) {
    const char *path = h->g->file.path, *a = h->arch;
    if (hp_find(h, "attention.key_length")) {
        PEFTC_TRY(hparam(h, "attention.key_length", -1, &c->head_dim));
    } else {
        if (c->hidden % c->heads)
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s.embedding_length (%d) is not a multiple of %s.attention.head_count "
                             "(%d) and %s.attention.key_length is absent", path, a, c->hidden, a, c->heads, a);
        c->head_dim = c->hidden / c->heads;
    }
    int vdim, rdim;
    PEFTC_TRY(hparam(h, "attention.value_length", c->head_dim, &vdim));
    if (vdim != c->head_dim)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s.attention.value_length is %d, expected the key length %d", path, a,
                         vdim, c->head_dim);
    PEFTC_TRY(hparam(h, "rope.dimension_count", c->head_dim, &rdim));
    if (rdim != c->head_dim)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s.rope.dimension_count is %d, expected the head size %d (partial RoPE is "
                         "not supported)", path, a, rdim, c->head_dim);
    return PEFTC_OK;
}

static PeftcStatus read_hparams(const Hp *h, LlamaConfig *c) {
    const GgufFile *g = h->g;
    memset(c, 0, sizeof *c);
    c->gguf_qwen2 = strcmp(h->arch, "qwen2") == 0;
    PEFTC_TRY(hparam(h, "block_count", -1, &c->layers));
    PEFTC_TRY(hparam(h, "embedding_length", -1, &c->hidden));
    PEFTC_TRY(hparam(h, "feed_forward_length", -1, &c->intermediate));
    PEFTC_TRY(hparam(h, "attention.head_count", -1, &c->heads));
    PEFTC_TRY(hparam(h, "attention.head_count_kv", c->heads, &c->kv_heads));
    PEFTC_TRY(read_head_dim(h, c));
    PEFTC_TRY(read_vocab(h, &c->vocab));
    PEFTC_TRY(fparam(h, "rope.freq_base", 10000.0f, &c->rope_theta));
    PEFTC_TRY(fparam(h, "attention.layer_norm_rms_epsilon", -1.0f, &c->rms_eps));
    c->tie_embeddings = gguf_tensor(g, "output.weight") == NULL;
    c->qkv_bias = gguf_tensor(g, "blk.0.attn_q.bias") != NULL;
    c->o_bias = gguf_tensor(g, "blk.0.attn_output.bias") != NULL;
    PEFTC_TRY(read_rope_scaling(h, c->head_dim, &c->rope_scaling));
    PeftcStatus st = llama_config_check(c);
    if (st != PEFTC_OK) { /* the check's message names fields, not the file */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", peftc_err_msg());
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s", g->file.path, msg);
    }
    return PEFTC_OK;
}

/* llama.cpp's architectures this decoder computes: "llama" (LLaMA, Mistral, SmolLM, ...: Q/K rows
 * permuted for interleaved RoPE) and "qwen2" (Qwen2 / Qwen2.5: NEOX RoPE, rows as HF has them). */
static const char *const gguf_archs[] = {"llama", "qwen2"};

PeftcStatus model_gguf_config(const GgufFile *g, LlamaConfig *cfg, ModelInfo *info) {
    GgufStr arch;
    PEFTC_TRY(gguf_get_str(g, "general.architecture", &arch));
    Hp h = {g, NULL};
    for (size_t i = 0; i < sizeof gguf_archs / sizeof gguf_archs[0]; i++)
        if (str_is(arch, gguf_archs[i])) h.arch = gguf_archs[i];
    if (!h.arch)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: general.architecture is '%.*s', expected 'llama' or 'qwen2' (the "
                         "LLaMA-family decoders; 'mamba' files load as Mamba)", g->file.path,
                         (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    PEFTC_TRY(refuse_unsupported(&h));
    PEFTC_TRY(read_hparams(&h, cfg));
    if (info) {
        model_gguf_info(g, h.arch, info);
        llama_describe(cfg, info->features, sizeof info->features);
    }
    return PEFTC_OK;
}

/* ---- tensors ---- */

/* Rows [r0, r1) of one tensor: the unit of parallel work. */
typedef struct {
    const GgufTensor *t;
    real_t *out; /* (rows, cols) */
    int64_t r0, r1, cols;
    int hd;      /* > 0: rows are un-permuted by llama_hf_row */
} RowJob;

enum { JOB_ROWS = 64 };

static void run_job(const RowJob *j) {
    size_t rb = ggml_row_bytes(j->t->type, j->cols);
    for (int64_t r = j->r0; r < j->r1; r++)
        ggml_dequantize(j->t->type, j->t->data + (size_t)r * rb,
                        j->out + (j->hd ? llama_hf_row(r, j->hd) : r) * j->cols, j->cols);
}

/* A 1-D bias of a Q or K projection: one row in the file, so un-permuted element by element. */
static PeftcStatus dequant_bias_permuted(const GgufTensor *t, real_t *out, int64_t n, int hd) {
    real_t *tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp) return PEFTC_ERR(PEFTC_ENOMEM, "out of memory for tensor '%s'", t->name);
    ggml_dequantize(t->type, t->data, tmp, n);
    for (int64_t i = 0; i < n; i++) out[llama_hf_row(i, hd)] = tmp[i];
    free(tmp);
    return PEFTC_OK;
}

static void ne_str(const int64_t *ne, int n_dims, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)ne[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

/* The GGUF tensor for ref: present, of a readable type, with ne = the HF shape reversed. */
static PeftcStatus find_tensor(const GgufFile *g, const ParamRef *ref, const GgufTensor **out) {
    const char *path = g->file.path;
    char name[128];
    if (!llama_gguf_name(ref->name, name, sizeof name))
        return PEFTC_ERR(PEFTC_EINVAL, "%s: no GGUF name for model tensor '%s'", path, ref->name);
    const GgufTensor *t = gguf_tensor(g, name);
    if (!t) return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' (%s) is missing", path, name, ref->name);
    int64_t want[4] = {1, 1, 1, 1};
    int nd = ref->shape.ndim;
    for (int i = 0; i < nd; i++) want[i] = ref->shape.dim[nd - 1 - i];
    int ok = t->n_dims >= nd;
    for (int i = 0; i < 4 && ok; i++) ok = t->ne[i] == want[i]; /* extra trailing dimensions must be 1 */
    if (!ok) {
        char got[96], exp[96], hfs[64];
        ne_str(t->ne, t->n_dims, got, sizeof got);
        ne_str(want, nd, exp, sizeof exp);
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has shape %s, expected %s (%s is %s)", path, name, got, exp,
                         ref->name, shape_str(&ref->shape, hfs, sizeof hfs));
    }
    if (!ggml_type_supported(t->type))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has type %s, which cannot be dequantized (supported: F32 F16 "
                         "BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K)", path, name, ggml_type_name(t->type));
    *out = t;
    return PEFTC_OK;
}

/* Appends the row chunks of one tensor to jobs (sized for every row of the model by the caller). */
static int add_jobs(RowJob *jobs, int n, const GgufTensor *t, real_t *out, int64_t rows, int64_t cols, int hd) {
    for (int64_t r = 0; r < rows; r += JOB_ROWS)
        jobs[n++] = (RowJob){t, out, r, r + JOB_ROWS < rows ? r + JOB_ROWS : rows, cols, hd};
    return n;
}

/* A projection weight kept quantized: its rows of blocks copied out of the map (which closes after
 * loading), Q/K rows moved to their HF place whole, since a row is a whole number of blocks. */
static PeftcStatus keep_blocks(LlamaModel *m, int qi, const GgufTensor *t, const ParamRef *ref, int hd,
                               const char *path) {
    Linear *l = llama_linear(m, qi);
    if (ref->data != &l->W) /* refs list the linears in llama_linear order */
        return PEFTC_ERR(PEFTC_ESTATE, "model: quantized tensor %s is not the weight of %s", ref->name, l->name);
    QWeight *q = &m->qweights[qi];
    char what[896];
    snprintf(what, sizeof what, "%s: tensor '%s' (%s)", path, t->name, ref->name);
    PEFTC_TRY(qweight_alloc(q, m->base.be, t->type, l->out, l->in, what));
    l->qW = q; /* freed with the model from here on */
    size_t rb = qweight_row_bytes(q);
    uint8_t *host = malloc(q->nbytes ? q->nbytes : 1);
    if (!host) return PEFTC_ERR(PEFTC_ENOMEM, "%s: no host memory to stage %zu bytes of blocks", what, q->nbytes);
    for (int64_t r = 0; r < l->out; r++)
        memcpy(host + (size_t)(hd ? llama_hf_row(r, hd) : r) * rb, t->data + (size_t)r * rb, rb);
    m->base.be->upload(m->base.be, q->blocks, host, q->nbytes);
    free(host);
    return m->base.be->status(m->base.be);
}

/* Every tensor is found and checked first (permuted biases, a few numbers each, are filled on the way);
 * then one parallel region dequantizes all of them in chunks of rows: one region per tensor would wake
 * the threads some 300 times, and dynamic scheduling keeps a thread that loses its core to another
 * process from holding the others up. */
static PeftcStatus fill_weights(LlamaModel *m, const GgufFile *g) {
    int64_t total_rows = 0;
    for (int i = 0; i < m->base.n_refs; i++) {
        const Shape *sh = &m->base.refs[i].shape;
        total_rows += shape_numel(sh) / sh->dim[sh->ndim - 1];
    }
    RowJob *jobs = malloc((size_t)(total_rows / JOB_ROWS + m->base.n_refs + 1) * sizeof *jobs);
    if (!jobs) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory planning the dequantization", g->file.path);
    int n = 0, qi = 0;
    PeftcStatus st = PEFTC_OK;
    for (int i = 0; i < m->base.n_refs && st == PEFTC_OK; i++) {
        const ParamRef *ref = &m->base.refs[i];
        const GgufTensor *t = NULL;
        st = find_tensor(g, ref, &t);
        if (st != PEFTC_OK) break;
        int hd = llama_gguf_permuted_heads(&m->cfg, ref->name) ? m->cfg.head_dim : 0;
        int64_t cols = ref->shape.dim[ref->shape.ndim - 1], rows = shape_numel(&ref->shape) / cols;
        if (ref->quantized) st = keep_blocks(m, qi++, t, ref, hd, g->file.path);
        else if (hd && ref->shape.ndim == 1) st = dequant_bias_permuted(t, *ref->data, cols, hd);
        else n = add_jobs(jobs, n, t, *ref->data, rows, cols, hd);
    }
    if (st == PEFTC_OK) {
        #pragma omp parallel for schedule(dynamic, 1)
        for (int i = 0; i < n; i++) run_job(&jobs[i]);
    }
    free(jobs);
    return st;
}

/* Tensor `name` is in the file with ne = {ne0, ne1} (ne1 = 1 for a vector) and a type that loads. */
static PeftcStatus expect_tensor(const GgufFile *g, const LlamaConfig *c, const char *name, int64_t ne0,
                                 int64_t ne1) {
    const char *arch = c->gguf_qwen2 ? "qwen2" : "llama";
    const GgufTensor *t = gguf_tensor(g, name);
    if (!t)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' is missing (the metadata's %s.* sizes imply it)",
                         g->file.path, name, arch);
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
        char got[96];
        ne_str(t->ne, t->n_dims, got, sizeof got);
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has shape %s, expected [%lld, %lld] from the %s.* metadata",
                         g->file.path, name, got, (long long)ne0, (long long)ne1, arch);
    }
    if (!ggml_type_supported(t->type))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has type %s, which cannot be dequantized (supported: F32 F16 "
                         "BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K)", g->file.path, name, ggml_type_name(t->type));
    return PEFTC_OK;
}

/* Every tensor the hyperparameters imply is in the file with their sizes, checked before the model is
 * allocated: the tensors lie inside the file, so a block_count, width or vocabulary that the file
 * cannot back is refused at once instead of after allocating (and zeroing) memory for it. */
static PeftcStatus check_tensors(const GgufFile *g, const LlamaConfig *c) {
    int64_t C = c->hidden, I = c->intermediate, V = c->vocab;
    int64_t q = (int64_t)c->heads * c->head_dim, kv = (int64_t)c->kv_heads * c->head_dim;
    PEFTC_TRY(expect_tensor(g, c, "token_embd.weight", C, V));
    PEFTC_TRY(expect_tensor(g, c, "output_norm.weight", C, 1));
    if (!c->tie_embeddings) PEFTC_TRY(expect_tensor(g, c, "output.weight", C, V));
    static const struct { const char *name; int in, out; } per_layer[] = {
        /* in/out: 0 = hidden, 1 = intermediate, 2 = q width, 3 = kv width, 4 = 1 (a vector) */
        {"attn_norm.weight", 0, 4}, {"ffn_norm.weight", 0, 4}, {"attn_q.weight", 0, 2}, {"attn_k.weight", 0, 3},
        {"attn_v.weight", 0, 3}, {"attn_output.weight", 2, 0}, {"ffn_gate.weight", 0, 1}, {"ffn_up.weight", 0, 1},
        {"ffn_down.weight", 1, 0}, {"attn_q.bias", 2, 4}, {"attn_k.bias", 3, 4}, {"attn_v.bias", 3, 4},
        {"attn_output.bias", 0, 4}};
    const int64_t size[] = {C, I, q, kv, 1};
    for (int l = 0; l < c->layers; l++)
        for (int k = 0; k < 13; k++) {
            if ((k >= 9 && k < 12 && !c->qkv_bias) || (k == 12 && !c->o_bias)) continue;
            char name[96];
            snprintf(name, sizeof name, "blk.%d.%s", l, per_layer[k].name);
            PEFTC_TRY(expect_tensor(g, c, name, size[per_layer[k].in], size[per_layer[k].out]));
        }
    return PEFTC_OK;
}

static PeftcStatus load(LlamaModel *m, const Backend *be, const char *path, ModelInfo *info, QuantMode quantized) {
    memset(m, 0, sizeof *m);
    if (be->device != DEV_CPU) /* weights are written in place; a device backend would need an upload */
        return PEFTC_ERR(PEFTC_EINVAL, "%s: loading GGUF weights is supported on the CPU backend only, not '%s'",
                         path, be->name);
    GgufFile g;
    PEFTC_TRY(gguf_open(&g, path));
    LlamaConfig cfg;
    ModelInfo local;
    PeftcStatus st = model_gguf_config(&g, &cfg, info ? info : &local);
    cfg.quantized = quantized;
    if (st == PEFTC_OK) st = check_tensors(&g, &cfg);
    if (st == PEFTC_OK) st = llama_create(m, be, &cfg, 0, -1.0);
    if (st == PEFTC_OK) {
        st = fill_weights(m, &g);
        if (st != PEFTC_OK) llama_free(m);
    }
    gguf_close(&g);
    return st;
}

PeftcStatus model_gguf_load(LlamaModel *m, const Backend *be, const char *path, ModelInfo *info) {
    return load(m, be, path, info, QUANT_NONE);
}

PeftcStatus model_gguf_load_quantized(LlamaModel *m, const Backend *be, const char *path, ModelInfo *info) {
    return load(m, be, path, info, QUANT_BLOCKS);
}
