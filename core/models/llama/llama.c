/* LLaMA model construction: configuration checks, the base-weight layout and its HF names. */
#include "core/models/llama/llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/adapter.h"
#include "core/base/rng.h"

static int head_dim_of(const LlamaConfig *c) { return c->head_dim ? c->head_dim : c->hidden / c->heads; }

PeftcStatus llama_config_check(const LlamaConfig *c) {
    if (c->hidden < 1 || c->intermediate < 1 || c->layers < 1 || c->heads < 1 || c->kv_heads < 1 || c->vocab < 1)
        return PEFTC_ERR(PEFTC_EINVAL, "model: hidden, intermediate, layers, heads, kv_heads and vocab must be >= 1");
    if (c->heads % c->kv_heads)
        return PEFTC_ERR(PEFTC_EINVAL, "model.kv_heads (%d) must divide model.heads (%d)", c->kv_heads, c->heads);
    if (!c->head_dim && c->hidden % c->heads)
        return PEFTC_ERR(PEFTC_EINVAL, "model.hidden (%d) must be a multiple of model.heads (%d) when model.head_dim is 0",
                         c->hidden, c->heads);
    if (head_dim_of(c) % 2)
        return PEFTC_ERR(PEFTC_EINVAL, "model head_dim (%d) must be even: RoPE rotates pairs of halves", head_dim_of(c));
    if (!(c->rope_theta > 0) || !(c->rms_eps > 0))
        return PEFTC_ERR(PEFTC_EINVAL, "model.rope_theta and model.rms_eps must be > 0");
    if (c->sliding_window < 0) return PEFTC_ERR(PEFTC_EINVAL, "model sliding window (%d) must be >= 0", c->sliding_window);
    return rope_scaling_check(&c->rope_scaling, head_dim_of(c), "model");
}

void llama_describe(const LlamaConfig *c, char *out, size_t n) {
    int used = 0;
    out[0] = '\0';
    if (c->rope_scaling.type == ROPE_FACTORS)
        used += snprintf(out + used, n - (size_t)used, "rope frequency factors");
    else if (c->rope_scaling.type != ROPE_DEFAULT)
        used += snprintf(out + used, n - (size_t)used, "rope %s x%g", rope_type_name(c->rope_scaling.type),
                         c->rope_scaling.factor);
    if (c->qkv_bias && (size_t)used < n)
        used += snprintf(out + used, n - (size_t)used, "%s%s biases", used ? ", " : "", c->o_bias ? "q/k/v/o" : "q/k/v");
    if (c->sliding_window && (size_t)used < n)
        snprintf(out + used, n - (size_t)used, "%swindow %d", used ? ", " : "", c->sliding_window);
}

PeftcStatus llama_check_window(const LlamaConfig *c, int T) {
    if (!c->sliding_window || T <= c->sliding_window) return PEFTC_OK;
    return PEFTC_ERR(PEFTC_EINVAL, "model: sequences of %d tokens are longer than the model's sliding_window (%d); "
                     "within one window sliding-window attention is full causal attention, which is all this "
                     "trainer computes, so keep train.seq_len (and prompt plus generated tokens) <= %d",
                     T, c->sliding_window, c->sliding_window);
}

PeftcStatus llama_rope_tables(const LlamaModel *m, real_t *cos, real_t *sin, int T) {
    int HD = head_dim_of(&m->cfg);
    double inv_freq[HD / 2]; /* (HD/2) */
    rope_inv_freq(&m->cfg.rope_scaling, m->cfg.rope_theta, HD, inv_freq);
    return backend_rope_tables(m->base.be, cos, sin, T, HD / 2, inv_freq, rope_attn_scale(&m->cfg.rope_scaling));
}

int64_t llama_param_count(const LlamaConfig *c) {
    int64_t C = c->hidden, I = c->intermediate, V = c->vocab, HD = head_dim_of(c);
    int64_t q = c->heads * HD, kv = c->kv_heads * HD;
    int64_t layer = 2 * C + q * C + 2 * kv * C + C * q + 3 * I * C + (c->qkv_bias ? q + 2 * kv : 0) +
                    (c->o_bias ? C : 0);
    return V * C + c->layers * layer + C + (c->tie_embeddings ? 0 : V * C);
}

const ModelTarget llama_targets[LLAMA_N_TARGETS] = {
    {"q", "q_proj", "attn_q", 0},    {"k", "k_proj", "attn_k", 0},       {"v", "v_proj", "attn_v", 0},
    {"o", "o_proj", "attn_output", 0}, {"gate", "gate_proj", "ffn_gate", 0}, {"up", "up_proj", "ffn_up", 0},
    {"down", "down_proj", "ffn_down", 0},
};

/* target: index into llama_targets; rope_heads: heads of q or k, whose rows GGUF files permute. */
static void add_linear(LlamaModel *m, Linear *l, int layer, const char *parent, int target, int rope_heads,
                       int in, int out, int bias) {
    char name[128];
    snprintf(l->name, sizeof l->name, "model.layers.%d.%s.%s", layer, parent, llama_targets[target].hf);
    l->target = target;
    l->layer = layer;
    l->rope_heads = rope_heads;
    m->base.linears[m->base.n_linears++] = l;
    l->in = in;
    l->out = out;
    snprintf(name, sizeof name, "%s.weight", l->name);
    model_add_ref(&m->base, name, shape2(out, in), &l->W, &l->dW, 1);
    m->base.refs[m->base.n_refs - 1].quantized = m->cfg.quantized != QUANT_NONE;
    if (bias) {
        snprintf(name, sizeof name, "%s.bias", l->name);
        model_add_ref(&m->base, name, shape1(out), &l->b, &l->db, 0);
    }
}

/* Lists every base tensor with its HF name; pointers are assigned afterwards in list order. */
static void build_refs(LlamaModel *m) {
    const LlamaConfig *c = &m->cfg;
    int C = c->hidden, I = c->intermediate, HD = c->head_dim, q = c->heads * HD, kv = c->kv_heads * HD;
    char name[128];
    model_add_ref(&m->base, "model.embed_tokens.weight", shape2(c->vocab, C), &m->wte, &m->dwte, 0);
    for (int i = 0; i < c->layers; i++) {
        LlamaLayer *L = &m->layers[i];
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", i);
        model_add_ref(&m->base, name, shape1(C), &L->ln1_w, &L->dln1_w, 0);
        add_linear(m, &L->q, i, "self_attn", 0, c->gguf_qwen2 ? 0 : c->heads, C, q, c->qkv_bias);
        add_linear(m, &L->k, i, "self_attn", 1, c->gguf_qwen2 ? 0 : c->kv_heads, C, kv, c->qkv_bias);
        add_linear(m, &L->v, i, "self_attn", 2, 0, C, kv, c->qkv_bias);
        add_linear(m, &L->o, i, "self_attn", 3, 0, q, C, c->o_bias);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", i);
        model_add_ref(&m->base, name, shape1(C), &L->ln2_w, &L->dln2_w, 0);
        add_linear(m, &L->gate, i, "mlp", 4, 0, C, I, 0);
        add_linear(m, &L->up, i, "mlp", 5, 0, C, I, 0);
        add_linear(m, &L->down, i, "mlp", 6, 0, I, C, 0);
    }
    model_add_ref(&m->base, "model.norm.weight", shape1(C), &m->lnf_w, &m->dlnf_w, 0);
    if (!c->tie_embeddings) model_add_ref(&m->base, "lm_head.weight", shape2(c->vocab, C), &m->lm_head, &m->dlm_head, 0);
}

/* Norm weights start at 1 and biases at 0 (as in HF); matrices are N(0, std) keyed by name. */
static PeftcStatus init_ref(const Backend *be, const ParamRef *r, uint64_t seed, double std) {
    if (std < 0) return PEFTC_OK; /* a loader fills every tensor next (be->alloc zero-fills) */
    size_t n = (size_t)shape_numel(&r->shape);
    real_t *p = backend_host_begin(be, *r->data, n);
    if (!p) return PEFTC_ERR(PEFTC_ENOMEM, "model: no host memory to initialise %s", r->name);
    int is_norm = strstr(r->name, "norm.weight") != NULL, is_bias = strstr(r->name, ".bias") != NULL;
    uint64_t key = rng_key_str(seed, r->name);
    /* Each value depends only on (key, i), so threads cannot change the draw. */
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) p[i] = is_norm ? 1 : is_bias ? 0 : (real_t)(std * rng_normal(key, i));
    backend_host_done(be, *r->data, p, n);
    return PEFTC_OK;
}

/* The quantized layers' blocks come from a loader; here only their table and the one scratch that every
 * quantized linear expands its W into, sized for the largest. */
static PeftcStatus create_quantized(LlamaModel *m) {
    size_t most = 0;
    for (int i = 0; i < m->base.n_refs; i++)
        if (m->base.refs[i].quantized && (size_t)shape_numel(&m->base.refs[i].shape) > most)
            most = (size_t)shape_numel(&m->base.refs[i].shape);
    m->qweights = calloc((size_t)llama_linear_count(m), sizeof *m->qweights);
    m->wscratch = m->base.be->alloc(m->base.be, most * sizeof(real_t));
    if (!m->qweights || !m->wscratch)
        return PEFTC_ERR(PEFTC_ENOMEM, "model: cannot allocate the %zu-byte dequantization scratch",
                         most * sizeof(real_t));
    for (int i = 0; i < m->base.n_refs; i++)
        if (m->base.refs[i].quantized) *m->base.refs[i].data = m->wscratch;
    return PEFTC_OK;
}

static PeftcStatus check_quantized(const LlamaConfig *cfg, double init_std) {
    if (cfg->quantized == QUANT_NONE) return PEFTC_OK;
    if ((unsigned)cfg->quantized > QUANT_NF4)
        return PEFTC_ERR(PEFTC_EINVAL, "model: model.quantized has no mode %d", (int)cfg->quantized);
    if (init_std >= 0)
        return PEFTC_ERR(PEFTC_EINVAL, "model: a quantized base (model.quantized=%s) comes from a file (a GGUF "
                         "file's blocks, or an HF folder quantized to NF4); a random model has no weights to keep "
                         "quantized", quant_mode_names[cfg->quantized]);
    return PEFTC_OK;
}

PeftcStatus llama_create(LlamaModel *m, const Backend *be, const LlamaConfig *cfg, uint64_t seed, double init_std) {
    memset(m, 0, sizeof *m);
    PEFTC_TRY(llama_config_check(cfg));
    PEFTC_TRY(check_quantized(cfg, init_std));
    m->cfg = *cfg;
    m->cfg.head_dim = head_dim_of(cfg);
    llama_model_init(&m->base, be, &m->cfg);
    int per_layer = 2 + 7 + (cfg->qkv_bias ? 3 : 0) + (cfg->o_bias ? 1 : 0);
    m->layers = calloc((size_t)cfg->layers, sizeof *m->layers);
    m->base.refs = calloc((size_t)(cfg->layers * per_layer + 3), sizeof *m->base.refs);
    m->base.linears = calloc((size_t)cfg->layers * LLAMA_N_TARGETS, sizeof *m->base.linears);
    if (!m->layers || !m->base.refs || !m->base.linears) {
        llama_free(m);
        return PEFTC_ERR(PEFTC_ENOMEM, "model: out of memory for %d layers", cfg->layers);
    }
    build_refs(m);
    m->base_own = calloc((size_t)m->base.n_refs, sizeof *m->base_own);
    m->bf16_own = calloc((size_t)m->base.n_refs, sizeof *m->bf16_own);
    if (!m->base_own || !m->bf16_own) {
        llama_free(m);
        return PEFTC_ERR(PEFTC_ENOMEM, "model: out of memory for %d tensors", m->base.n_refs);
    }
    for (int i = 0; i < m->base.n_refs; i++) {
        const ParamRef *r = &m->base.refs[i];
        if (r->quantized) continue;
        size_t bytes = (size_t)shape_numel(&r->shape) * sizeof(real_t);
        m->base_own[i] = be->alloc(be, bytes);
        if (!m->base_own[i]) {
            llama_free(m);
            return PEFTC_ERR(PEFTC_ENOMEM, "model: cannot allocate %zu bytes for %s", bytes, r->name);
        }
        *r->data = m->base_own[i];
    }
    if (cfg->quantized != QUANT_NONE) {
        PeftcStatus st = create_quantized(m);
        if (st != PEFTC_OK) {
            llama_free(m);
            return st;
        }
    }
    for (int i = 0; i < m->base.n_refs; i++) {
        PeftcStatus st = init_ref(be, &m->base.refs[i], seed, init_std);
        if (st != PEFTC_OK) {
            llama_free(m);
            return st;
        }
    }
    return PEFTC_OK;
}

/* Quantized tensor qi (its index among the quantized ones, which is its linear's index): src's blocks,
 * host memory, uploaded into a QWeight of dst's that its linear expands from then on. */
static PeftcStatus copy_blocks(LlamaModel *dst, const LlamaModel *src, int qi, const char *name) {
    const QWeight *q = &src->qweights[qi];
    QWeight *d = &dst->qweights[qi];
    if (!q->blocks) return PEFTC_ERR(PEFTC_ESTATE, "model: quantized tensor %s has no blocks to copy", name);
    PEFTC_TRY(qweight_alloc(d, dst->base.be, q->type, q->rows, q->cols, name));
    llama_linear(dst, qi)->qW = d;
    dst->base.be->upload(dst->base.be, d->blocks, q->blocks, q->nbytes);
    return PEFTC_OK;
}

PeftcStatus llama_copy_weights(LlamaModel *dst, const LlamaModel *src) {
    if (src->base.be->device != DEV_CPU)
        return PEFTC_ERR(PEFTC_EINVAL, "model: weights can be copied from host memory only, not from %s", src->base.be->name);
    if (dst->base.n_refs != src->base.n_refs)
        return PEFTC_ERR(PEFTC_EINVAL, "model: copying weights between models of different shapes");
    int qi = 0;
    for (int i = 0; i < src->base.n_refs; i++) {
        const ParamRef *s = &src->base.refs[i], *d = &dst->base.refs[i];
        if (strcmp(s->name, d->name) != 0 || !shape_equal(&s->shape, &d->shape))
            return PEFTC_ERR(PEFTC_EINVAL, "model: tensor %s has no counterpart %s", s->name, d->name);
        if (s->quantized != d->quantized)
            return PEFTC_ERR(PEFTC_EINVAL, "model: tensor %s is kept quantized in one model and dense in the other; "
                             "both must have the same model.quantized", s->name);
        if (s->quantized) {
            PEFTC_TRY(copy_blocks(dst, src, qi++, s->name));
            continue;
        }
        dst->base.be->upload(dst->base.be, *d->data, *s->data, (size_t)shape_numel(&s->shape) * sizeof(real_t));
    }
    return dst->base.be->status(dst->base.be);
}

size_t llama_dense_bytes(const LlamaConfig *c) { return (size_t)llama_param_count(c) * sizeof(real_t); }

size_t llama_base_bytes(const LlamaModel *m) {
    size_t bytes = 0, scratch = 0;
    for (int i = 0; i < m->base.n_refs; i++) {
        size_t n = (size_t)shape_numel(&m->base.refs[i].shape) * sizeof(real_t);
        if (!m->base.refs[i].quantized) bytes += *m->base.refs[i].data ? n : n / sizeof(real_t) * 2; /* bf16 */
        else if (n > scratch) scratch = n;
    }
    for (int i = 0; m->qweights && i < llama_linear_count(m); i++) bytes += m->qweights[i].nbytes;
    return bytes + scratch;
}

int llama_linear_count(const LlamaModel *m) { return m->base.n_linears; }

Linear *llama_linear(LlamaModel *m, int i) { return m->base.linears[i]; }

void llama_free(LlamaModel *m) {
    for (int i = 0; m->layers && i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (l->adapter) l->adapter->ops->destroy(l->adapter);
    }
    if (m->base.be) {
        for (int i = 0; m->base_own && m->bf16_own && i < m->base.n_refs; i++) {
            m->base.be->free(m->base.be, m->base_own[i]);
            m->base.be->free(m->base.be, m->bf16_own[i]);
        }
        m->base.be->free(m->base.be, m->wscratch);
        m->base.be->free(m->base.be, m->acts.resid); /* every activation lives in the block starting at resid */
        free(m->acts.key_scratch);  /* but the row keys, which are host memory */
    }
    for (int i = 0; m->qweights && i < llama_linear_count(m); i++) qweight_free(&m->qweights[i], m->base.be);
    free(m->qweights);
    free(m->layers);
    free(m->base_own);
    free(m->bf16_own);
    free(m->base.refs);
    free(m->base.linears);
    memset(m, 0, sizeof *m);
}
