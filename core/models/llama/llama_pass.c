/* LLaMA forward and backward passes and the activation memory they use. */
#include <stdlib.h>
#include <string.h>

#include "core/models/carve.h"
#include "core/nn/adapter.h"
#include "core/models/llama/llama.h"

/* Values per row of the block a bf16 run keeps per layer: ln1 (C), atty (QD), ln2 (C), act (I). */
static size_t lowp_width(const LlamaModel *m) {
    const LlamaConfig *c = &m->cfg;
    return 2 * (size_t)c->hidden + (size_t)c->heads * c->head_dim + (size_t)c->intermediate;
}

/* Every activation of one (B,T) in one allocation: sizes are fixed for the run, so there is nothing
 * to gain from separate blocks and one free releases all. */
static PeftcStatus acts_alloc(LlamaModel *m, int B, int T, int cols) {
    const LlamaConfig *c = &m->cfg;
    LlamaActs *a = &m->acts;
    size_t BT = (size_t)B * T, C = c->hidden, I = c->intermediate, L = c->layers, V = c->vocab;
    size_t QD = (size_t)c->heads * c->head_dim, KVD = (size_t)c->kv_heads * c->head_dim;
    size_t R = sizeof(real_t), DX = C > QD ? C : QD;
    /* A bf16 run keeps one layer of ln1, atty, ln2, act in fp32 (one block from ln1, in that order, so
     * atty, ln2 and act carve nothing of their own: Ls = 0) and every layer's in bf16 (saved16); an
     * fp32 run keeps every layer's in fp32. */
    int lowp = m->base.bf16;
    size_t W = lowp_width(m), Ls = lowp ? 0 : L;
    Carve plan[] = {
        {(void **)&a->resid, (L + 1) * BT * C * R}, {(void **)&a->ln1, (lowp ? BT * W : L * BT * C) * R},
        {(void **)&a->saved16, lowp ? L * BT * W * sizeof(uint16_t) : 0},
        {(void **)&a->rstd1, L * BT * R},           {(void **)&a->q, L * BT * QD * R},
        {(void **)&a->k, L * BT * KVD * R},         {(void **)&a->v, L * BT * KVD * R},
        {(void **)&a->att, L * m->base.be->attention_saved(m->base.be, B, T, c->heads) * R},
        {(void **)&a->atty, Ls * BT * QD * R},      {(void **)&a->resid2, L * BT * C * R},
        {(void **)&a->ln2, Ls * BT * C * R},        {(void **)&a->rstd2, L * BT * R},
        {(void **)&a->gate, L * BT * I * R},        {(void **)&a->up, L * BT * I * R},
        {(void **)&a->act, Ls * BT * I * R},        {(void **)&a->lnf, BT * C * R},
        {(void **)&a->rstdf, BT * R},               {(void **)&a->logits, BT * V * R},
        {(void **)&a->dresid, BT * C * R},          {(void **)&a->dx, BT * DX * R},
        {(void **)&a->dq, BT * QD * R},             {(void **)&a->dk, BT * KVD * R},
        {(void **)&a->dv, BT * KVD * R},            {(void **)&a->dgate, BT * I * R},
        {(void **)&a->dup, BT * I * R},             {(void **)&a->dact, BT * I * R},
        {(void **)&a->scratch, BT * cols * R},      {(void **)&a->rope_cos, (size_t)T * c->head_dim / 2 * R},
        {(void **)&a->rope_sin, (size_t)T * c->head_dim / 2 * R},
        {(void **)&a->mask_scratch, BT * cols},
    };
    size_t total;
    void *block = carve_alloc(m->base.be, plan, sizeof plan / sizeof plan[0], &total);
    if (!block) return PEFTC_ERR(PEFTC_ENOMEM, "model: cannot allocate %zu bytes of activations for B=%d T=%d", total, B, T);
    /* Row keys, segment ids and positions are index arrays, host memory on every backend (backend.h). */
    a->key_scratch = malloc(BT * (sizeof(uint64_t) + 2 * sizeof(int32_t)));
    if (!a->key_scratch) {
        m->base.be->free(m->base.be, block);
        memset(a, 0, sizeof *a); /* its pointers were into the block */
        return PEFTC_ERR(PEFTC_ENOMEM, "model: cannot allocate %zu row keys and positions", BT);
    }
    a->seg = (int32_t *)(a->key_scratch + BT);
    a->pos = a->seg + BT;
    if (lowp) { /* one contiguous layer, converted in one call each way */
        a->atty = a->ln1 + BT * C;
        a->ln2 = a->atty + BT * QD;
        a->act = a->ln2 + BT * C;
    }
    a->lowp = lowp;
    a->B = B;
    a->T = T;
    a->scratch_cols = cols;
    return llama_rope_tables(m, a->rope_cos, a->rope_sin, T);
}

/* Adapter scratch holds one row of any linear layer's input: the widest of C, I and NH*HD. */
static int scratch_cols(const LlamaConfig *c) {
    int QD = c->heads * c->head_dim, cols = c->hidden > c->intermediate ? c->hidden : c->intermediate;
    return QD > cols ? QD : cols;
}

PeftcStatus llama_reserve(LlamaModel *m, int B, int T) {
    PEFTC_TRY(llama_check_window(&m->cfg, T));
    if (m->acts.B != B || m->acts.T != T || m->acts.lowp != m->base.bf16) {
        m->base.be->free(m->base.be, m->acts.resid);
        free(m->acts.key_scratch);
        memset(&m->acts, 0, sizeof m->acts);
        PEFTC_TRY(acts_alloc(m, B, T, scratch_cols(&m->cfg)));
    }
    /* The backend's op scratch for passes of this shape (attention backward, the loss). */
    BackendNeed need = {.B = B, .T = T, .NH = m->cfg.heads, .bf16 = m->base.bf16};
    PEFTC_TRY(m->base.be->reserve(m->base.be, &need));
    return model_reserve_adapters(&m->base, B * T);
}

static StepCtx make_ctx(LlamaModel *m, const uint64_t *row_keys, int training) {
    LlamaActs *a = &m->acts;
    return (StepCtx){training && row_keys, row_keys,     a->scratch,  a->mask_scratch,
                     a->key_scratch,       a->scratch_cols, m->base.bf16};
}

static real_t *dlm_head_of(const LlamaModel *m) { return m->cfg.tie_embeddings ? m->dwte : m->dlm_head; }

/* Layer l's slices of the activation buffers: what its forward writes and its backward reads. */
typedef struct {
    real_t *x;            /* (BT,C) residual stream entering the layer */
    real_t *ln1, *ln2;    /* (BT,C) */
    real_t *rstd1, *rstd2; /* (BT) */
    real_t *q;            /* (B,T,NH,HD) after RoPE */
    real_t *k, *v;        /* (B,T,NKV,HD), k after RoPE */
    real_t *att;          /* (attention_saved(B,T,NH)) */
    real_t *atty;         /* (BT,NH*HD) */
    real_t *r2;           /* (BT,C) residual after attention */
    real_t *gate, *up, *act; /* (BT,I) */
    real_t *out;          /* (BT,C) residual stream leaving the layer */
} LayerSlices;

static LayerSlices layer_slices(const LlamaModel *m, int l) {
    const LlamaConfig *c = &m->cfg;
    const LlamaActs *a = &m->acts;
    size_t BT = (size_t)a->B * a->T, C = c->hidden, I = c->intermediate, L = (size_t)l;
    size_t QD = (size_t)c->heads * c->head_dim, KVD = (size_t)c->kv_heads * c->head_dim;
    size_t Lw = a->lowp ? 0 : L; /* lowp: ln1, atty, ln2, act are the one working layer */
    return (LayerSlices){
        .x = a->resid + L * BT * C,       .ln1 = a->ln1 + Lw * BT * C,  .ln2 = a->ln2 + Lw * BT * C,
        .rstd1 = a->rstd1 + L * BT,       .rstd2 = a->rstd2 + L * BT,   .q = a->q + L * BT * QD,
        .k = a->k + L * BT * KVD,         .v = a->v + L * BT * KVD,
        .att = a->att + L * m->base.be->attention_saved(m->base.be, a->B, a->T, c->heads),
        .atty = a->atty + Lw * BT * QD,   .r2 = a->resid2 + L * BT * C, .gate = a->gate + L * BT * I,
        .up = a->up + L * BT * I,         .act = a->act + Lw * BT * I,  .out = a->resid + (L + 1) * BT * C,
    };
}

/* Layer l's bf16 copy of that block, (BT, lowp_width). */
static uint16_t *lowp_saved(const LlamaModel *m, int l) {
    return m->acts.saved16 + (size_t)l * (size_t)m->acts.B * m->acts.T * lowp_width(m);
}

static void layer_forward(LlamaModel *m, int l, const StepCtx *ctx) {
    const LlamaConfig *c = &m->cfg;
    const Backend *be = m->base.be;
    LlamaActs *a = &m->acts;
    LlamaLayer *L = &m->layers[l];
    int B = a->B, T = a->T, BT = B * T, C = c->hidden, I = c->intermediate, HD = c->head_dim;
    LayerSlices s = layer_slices(m, l);
    be->rmsnorm_fwd(be, s.ln1, s.rstd1, s.x, L->ln1_w, BT, C, (real_t)c->rms_eps);
    linear_forward(be, &L->q, ctx, s.q, s.ln1, BT);
    linear_forward(be, &L->k, ctx, s.k, s.ln1, BT);
    linear_forward(be, &L->v, ctx, s.v, s.ln1, BT);
    const int32_t *seg = a->packed ? a->seg : NULL, *pos = a->packed ? a->pos : NULL; /* (B,T) */
    be->rope_fwd(be, s.q, a->rope_cos, a->rope_sin, pos, B, T, c->heads, HD);
    be->rope_fwd(be, s.k, a->rope_cos, a->rope_sin, pos, B, T, c->kv_heads, HD);
    be->attention_fwd(be, s.atty, s.att, s.q, s.k, s.v, seg, B, T, c->heads, c->kv_heads, HD);
    linear_forward(be, &L->o, ctx, s.r2, s.atty, BT);
    be->axpy(be, s.r2, s.x, 1, (size_t)BT * C);
    be->rmsnorm_fwd(be, s.ln2, s.rstd2, s.r2, L->ln2_w, BT, C, (real_t)c->rms_eps);
    linear_forward(be, &L->gate, ctx, s.gate, s.ln2, BT);
    linear_forward(be, &L->up, ctx, s.up, s.ln2, BT);
    be->swiglu_fwd(be, s.act, s.gate, s.up, (size_t)BT * I);
    linear_forward(be, &L->down, ctx, s.out, s.act, BT);
    be->axpy(be, s.out, s.r2, 1, (size_t)BT * C);
    if (a->lowp) be->to_bf16(be, lowp_saved(m, l), s.ln1, lowp_width(m) * BT);
}

/* Keeps a pass's packed layout (seg, pos (BT) or both NULL) for its forward and backward. Positions
 * index the RoPE tables' T rows. */
static PeftcStatus set_layout(LlamaActs *a, const int32_t *seg, const int32_t *pos, int BT, int T) {
    a->packed = 0;
    if (!seg && !pos) return PEFTC_OK;
    if (!seg || !pos)
        return PEFTC_ERR(PEFTC_EINVAL, "model: a packed batch needs both segment ids and positions, got only %s",
                         seg ? "segment ids" : "positions");
    for (int i = 0; i < BT; i++)
        if (pos[i] < 0 || pos[i] >= T)
            return PEFTC_ERR(PEFTC_EINVAL, "model: position %d at token %d is outside [0, T=%d)", pos[i], i, T);
    memcpy(a->seg, seg, (size_t)BT * sizeof *seg);
    memcpy(a->pos, pos, (size_t)BT * sizeof *pos);
    a->packed = 1;
    return PEFTC_OK;
}

PeftcStatus llama_forward(LlamaModel *m, const int32_t *tokens, const int32_t *targets, const int32_t *seg,
                          const int32_t *pos, const uint64_t *row_keys, int training, int B, int T, double *loss_sum,
                          int64_t *n_valid) {
    const LlamaConfig *c = &m->cfg;
    LlamaActs *a = &m->acts;
    PEFTC_TRY(model_check_batch(a->B, a->T, B, T, tokens, targets, c->vocab));
    PEFTC_TRY(set_layout(a, seg, pos, B * T, T));
    StepCtx ctx = make_ctx(m, row_keys, training);
    int BT = B * T, C = c->hidden;
    llama_embed(m, a->resid, tokens, BT);
    for (int l = 0; l < c->layers; l++) layer_forward(m, l, &ctx);
    m->base.be->rmsnorm_fwd(m->base.be, a->lnf, a->rstdf, a->resid + (size_t)c->layers * BT * C, m->lnf_w, BT, C, (real_t)c->rms_eps);
    llama_head(m, a->logits, a->lnf, BT, 0); /* (BT,V) */
    if (!targets) return PEFTC_OK;
    *loss_sum = m->base.be->xent_fwd(m->base.be, a->logits, a->logits, targets, BT, c->vocab, n_valid);
    return PEFTC_OK;
}

/* On entry a->dresid holds d(resid[l+1]); on exit d(resid[l]). need_dx = 0 skips the input gradient
 * (the layer-0 case when nothing below it trains). */
static void layer_backward(LlamaModel *m, int l, const StepCtx *ctx, int need_dx) {
    const LlamaConfig *c = &m->cfg;
    const Backend *be = m->base.be;
    LlamaActs *a = &m->acts;
    LlamaLayer *L = &m->layers[l];
    int B = a->B, T = a->T, BT = B * T, C = c->hidden, I = c->intermediate, HD = c->head_dim;
    size_t QD = (size_t)c->heads * HD, KVD = (size_t)c->kv_heads * HD;
    LayerSlices s = layer_slices(m, l);
    real_t *dres = a->dresid; /* (BT,C) */
    real_t *dx = a->dx;       /* (BT,max(C,QD)) reused: dln2, then datty, then dln1 */
    if (a->lowp) be->from_bf16(be, s.ln1, lowp_saved(m, l), lowp_width(m) * BT);

    /* MLP: out = r2 + down(silu(gate) * up) */
    be->zero(be, a->dact, (size_t)BT * I);
    linear_backward(be, &L->down, ctx, a->dact, dres, s.act, BT);
    be->zero(be, a->dgate, (size_t)BT * I);
    be->zero(be, a->dup, (size_t)BT * I);
    be->swiglu_bwd(be, a->dgate, a->dup, a->dact, s.gate, s.up, (size_t)BT * I);
    be->zero(be, dx, (size_t)BT * C);
    linear_backward(be, &L->gate, ctx, dx, a->dgate, s.ln2, BT);
    linear_backward(be, &L->up, ctx, dx, a->dup, s.ln2, BT);
    be->rmsnorm_bwd(be, dres, L->dln2_w, dx, s.r2, L->ln2_w, s.rstd2, BT, C); /* dres = d r2 */

    /* attention: r2 = x + o(attn(rope(q(ln1)), rope(k(ln1)), v(ln1))) */
    be->zero(be, dx, (size_t)BT * QD);
    linear_backward(be, &L->o, ctx, dx, dres, s.atty, BT);
    be->zero(be, a->dq, (size_t)BT * QD);
    be->zero(be, a->dk, (size_t)BT * KVD);
    be->zero(be, a->dv, (size_t)BT * KVD);
    const int32_t *seg = a->packed ? a->seg : NULL, *pos = a->packed ? a->pos : NULL; /* (B,T) */
    be->attention_bwd(be, a->dq, a->dk, a->dv, dx, s.att, s.q, s.k, s.v, seg, B, T, c->heads, c->kv_heads, HD);
    be->rope_bwd(be, a->dq, a->rope_cos, a->rope_sin, pos, B, T, c->heads, HD);
    be->rope_bwd(be, a->dk, a->rope_cos, a->rope_sin, pos, B, T, c->kv_heads, HD);
    real_t *dln1 = need_dx ? dx : NULL;
    if (dln1) be->zero(be, dln1, (size_t)BT * C);
    linear_backward(be, &L->q, ctx, dln1, a->dq, s.ln1, BT);
    linear_backward(be, &L->k, ctx, dln1, a->dk, s.ln1, BT);
    linear_backward(be, &L->v, ctx, dln1, a->dv, s.ln1, BT);
    if (dln1) be->rmsnorm_bwd(be, dres, L->dln1_w, dln1, s.x, L->ln1_w, s.rstd1, BT, C); /* dres = d x */
}

void llama_backward(LlamaModel *m, const int32_t *tokens, const int32_t *targets, const uint64_t *row_keys,
                    real_t loss_scale) {
    const LlamaConfig *c = &m->cfg;
    const Backend *be = m->base.be;
    LlamaActs *a = &m->acts;
    int BT = a->B * a->T, C = c->hidden, V = c->vocab;
    StepCtx ctx = make_ctx(m, row_keys, 1);
    /* The probabilities become dlogits in place: they are not needed afterwards. */
    be->xent_bwd(be, a->logits, a->logits, targets, BT, V, loss_scale);
    llama_head(m, a->dx, a->logits, BT, 1); /* dlnf(BT,C) */
    if (dlm_head_of(m)) nn_matmul(be, &ctx, dlm_head_of(m), a->logits, a->lnf, V, C, BT, 1, 0, 1, 1); /* (V,C) */
    be->zero(be, a->dresid, (size_t)BT * C);
    be->rmsnorm_bwd(be, a->dresid, m->dlnf_w, a->dx, a->resid + (size_t)c->layers * BT * C, m->lnf_w, a->rstdf, BT, C);
    for (int l = c->layers - 1; l >= 0; l--) {
        /* Below layer 0 only the embedding (and layer 0's own norm) can use d(input). */
        int need_dx = l > 0 || m->dwte || m->layers[0].dln1_w;
        layer_backward(m, l, &ctx, need_dx);
    }
    if (m->dwte) be->embedding_bwd(be, m->dwte, a->dresid, tokens, BT, C);
}
