/* LLaMA in bf16: the frozen matmul weights converted once, and the embedding and LM head that read
 * them. The layers' projections go through linear.c, which reads Linear.Wb. */
#include <stdlib.h>

#include "core/models/llama/llama.h"

void llama_embed(const LlamaModel *m, real_t *out, const int32_t *tok, int n) {
    /* out (n,C), tok (n) host */
    const Backend *be = m->base.be;
    if (m->wte_b) be->embedding_fwd_bf16(be, out, tok, m->wte_b, n, m->cfg.hidden);
    else be->embedding_fwd(be, out, tok, m->wte, n, m->cfg.hidden);
}

void llama_head(const LlamaModel *m, real_t *out, const real_t *x, int R, int bwd) {
    /* !bwd: out (R,V), x (R,C); bwd: out (R,C), x (R,V); head (V,C) */
    const Backend *be = m->base.be;
    int V = m->cfg.vocab, C = m->cfg.hidden, tied = m->cfg.tie_embeddings;
    const uint16_t *hb = tied ? m->wte_b : m->lm_head_b;
    const real_t *h = tied ? m->wte : m->lm_head;
    int N = bwd ? C : V, K = bwd ? V : C;
    if (hb) be->matmul_bf16(be, out, x, DT_REAL, hb, DT_BF16, R, N, K, 0, !bwd, 1, 0);
    else if (m->base.bf16) be->matmul_bf16(be, out, x, DT_REAL, h, DT_REAL, R, N, K, 0, !bwd, 1, 0);
    else be->matmul(be, out, x, h, R, N, K, 0, !bwd, 1, 0);
}

/* A frozen dense weight the passes multiply by: what use_bf16 converts. */
typedef struct {
    real_t **w;          /* the model's pointer to it; NULL afterwards */
    const uint16_t **wb; /* where its bf16 copy's address goes */
    size_t n;
} Conv;

/* Every tensor to convert into list (room for 7 L + 2); returns how many. */
static int conversions(LlamaModel *m, Conv *list) {
    int n = 0;
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (!l->dW && !l->qW && l->W) list[n++] = (Conv){&l->W, &l->Wb, (size_t)l->out * (size_t)l->in};
    }
    size_t vc = (size_t)m->cfg.vocab * (size_t)m->cfg.hidden;
    if (!m->dwte && m->wte) list[n++] = (Conv){&m->wte, &m->wte_b, vc};
    if (!m->cfg.tie_embeddings && !m->dlm_head && m->lm_head) list[n++] = (Conv){&m->lm_head, &m->lm_head_b, vc};
    return n;
}

/* The fp32 tensors still read from base_mem (norms, biases, anything not converted) moved into a block
 * of their own, and base_mem freed: what bf16 saves only materialises once the old block is gone.
 * Trainable tensors live in the arena and are not touched. */
static PeftcStatus compact(LlamaModel *m, size_t old_n) {
    const Backend *be = m->base.be;
    real_t *lo = m->base_mem, *hi = m->base_mem + old_n;
    size_t keep = 0;
    for (int i = 0; i < m->base.n_refs; i++) {
        real_t *p = *m->base.refs[i].data;
        if (p && p >= lo && p < hi) keep += (size_t)shape_numel(&m->base.refs[i].shape);
    }
    real_t *mem = keep ? be->alloc(be, keep * sizeof(real_t)) : NULL;
    if (keep && !mem) return PEFTC_ERR(PEFTC_ENOMEM, "model: cannot allocate %zu bytes of fp32 base tensors", keep * 4);
    size_t off = 0;
    for (int i = 0; i < m->base.n_refs; i++) {
        real_t **p = m->base.refs[i].data;
        if (!*p || *p < lo || *p >= hi) continue;
        size_t n = (size_t)shape_numel(&m->base.refs[i].shape);
        be->copy(be, mem + off, *p, n);
        *p = mem + off;
        off += n;
    }
    be->free(be, m->base_mem);
    m->base_mem = mem;
    return be->status(be);
}

/* Elements base_mem was allocated with (llama_create): every tensor but the quantized ones. */
static size_t base_mem_numel(const LlamaModel *m) {
    size_t n = 0;
    for (int i = 0; i < m->base.n_refs; i++)
        if (!m->base.refs[i].quantized) n += (size_t)shape_numel(&m->base.refs[i].shape);
    return n;
}

PeftcStatus llama_use_bf16(Model *base) {
    LlamaModel *m = llama_of(base);
    const Backend *be = base->be;
    if (base->bf16) return PEFTC_OK;
    Conv *list = malloc(((size_t)llama_linear_count(m) + 2) * sizeof *list);
    if (!list) return PEFTC_ERR(PEFTC_ENOMEM, "model: out of memory");
    int n = conversions(m, list);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += list[i].n;
    m->base_bf16 = total ? be->alloc(be, total * sizeof(uint16_t)) : NULL;
    if (total && !m->base_bf16) {
        free(list);
        return PEFTC_ERR(PEFTC_ENOMEM, "model: cannot allocate %zu bytes for the bf16 base weights", total * 2);
    }
    size_t old_n = base_mem_numel(m), off = 0;
    for (int i = 0; i < n; i++) {
        be->to_bf16(be, m->base_bf16 + off, *list[i].w, list[i].n);
        *list[i].wb = m->base_bf16 + off;
        *list[i].w = NULL;
        off += list[i].n;
    }
    free(list);
    base->bf16 = 1;
    return m->base_mem ? compact(m, old_n) : be->status(be);
}
