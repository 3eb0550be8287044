/* LLaMA in bf16: the frozen matmul weights converted once, and the embedding and LM head that read
 * them. The layers' projections go through linear.c, which reads Linear.Wb. */
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
    nn_weight_matmul(be, m->base.bf16, out, x, h, hb, R, bwd ? C : V, bwd ? V : C, !bwd, 0);
}

/* Where the bf16 copy of the tensor at *data goes when the passes multiply by it: a layer's Wb, or the
 * embedding's or head's; NULL for the tensors that stay fp32 (norms, biases). */
static const uint16_t **bf16_slot(LlamaModel *m, real_t **data) {
    for (int i = 0; i < llama_linear_count(m); i++) {
        Linear *l = llama_linear(m, i);
        if (data == &l->W) return &l->Wb;
    }
    if (data == &m->wte) return &m->wte_b;
    if (data == &m->lm_head) return &m->lm_head_b;
    return NULL;
}

/* Tensor by tensor, each fp32 block freed as soon as its bf16 copy is made: the conversion never holds
 * more than the fp32 base and one tensor's copy. Trainable tensors (a gradient pointer set: they live
 * in the arena) and quantized ones (their blocks stay) are left as they are. */
PeftcStatus llama_use_bf16(Model *base) {
    LlamaModel *m = llama_of(base);
    const Backend *be = base->be;
    if (base->bf16) return PEFTC_OK;
    for (int i = 0; i < base->n_refs; i++) {
        const ParamRef *r = &base->refs[i];
        const uint16_t **slot = bf16_slot(m, r->data);
        if (!slot || r->quantized || *r->grad || !*r->data) continue;
        size_t n = (size_t)shape_numel(&r->shape);
        uint16_t *h = be->alloc(be, n * sizeof *h);
        if (!h) return PEFTC_ERR(PEFTC_ENOMEM, "model: cannot allocate %zu bytes for %s in bf16", n * 2, r->name);
        be->to_bf16(be, h, *r->data, n);
        PEFTC_TRY(be->status(be));
        m->bf16_own[i] = h;
        *slot = h;
        if (*r->data == m->base_own[i]) { /* not moved into the arena: its own block, no longer read */
            be->free(be, m->base_own[i]);
            m->base_own[i] = NULL;
        }
        *r->data = NULL;
    }
    base->bf16 = 1;
    return PEFTC_OK;
}
