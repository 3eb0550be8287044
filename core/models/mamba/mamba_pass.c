/* Mamba forward and backward passes and the activation memory they use. */
#include <stdlib.h>
#include <string.h>

#include "core/models/carve.h"
#include "core/models/mamba/mamba.h"
#include "core/nn/adapter.h"

/* Adapter scratch holds one row of any projection's input or output: the widest of H, 2D and R + 2N. */
static int scratch_cols(const MambaConfig *c) {
    int cols = c->hidden > 2 * c->inner ? c->hidden : 2 * c->inner;
    return c->dt_rank + 2 * c->state > cols ? c->dt_rank + 2 * c->state : cols;
}

static size_t saved_per_layer(const MambaModel *m, int B, int T) {
    return m->base.be->ssm_scan_saved(m->base.be, B, T, m->cfg.inner, m->cfg.state);
}

/* Every activation of one (B, T) in one allocation. */
static PeftcStatus acts_alloc(MambaModel *m, int B, int T) {
    const MambaConfig *c = &m->cfg;
    MambaActs *a = &m->acts;
    size_t BT = (size_t)B * T, H = c->hidden, D = c->inner, L = c->layers, V = c->vocab;
    size_t XD = (size_t)c->dt_rank + 2 * (size_t)c->state, R = c->dt_rank, F = sizeof(real_t);
    size_t cols = (size_t)scratch_cols(c);
    Carve plan[] = {
        {(void **)&a->resid, (L + 1) * BT * H * F}, {(void **)&a->ln, L * BT * H * F},
        {(void **)&a->rstd, L * BT * F},            {(void **)&a->xz, L * BT * 2 * D * F},
        {(void **)&a->cpre, L * BT * D * F},        {(void **)&a->u, L * BT * D * F},
        {(void **)&a->xdbl, L * BT * XD * F},       {(void **)&a->dtlow, L * BT * R * F},
        {(void **)&a->dt, L * BT * D * F},          {(void **)&a->saved, L * saved_per_layer(m, B, T) * F},
        {(void **)&a->y, L * BT * D * F},           {(void **)&a->lnf, BT * H * F},
        {(void **)&a->rstdf, BT * F},               {(void **)&a->logits, BT * V * F},
        {(void **)&a->dresid, BT * H * F},          {(void **)&a->dln, BT * H * F},
        {(void **)&a->dxz, BT * 2 * D * F},         {(void **)&a->dcpre, BT * D * F},
        {(void **)&a->du, BT * D * F},              {(void **)&a->ddt, BT * D * F},
        {(void **)&a->dy, BT * D * F},              {(void **)&a->dxdbl, BT * XD * F},
        {(void **)&a->ddtlow, BT * R * F},          {(void **)&a->scratch, BT * cols * F},
        {(void **)&a->mask_scratch, BT * cols},
    };
    size_t total;
    void *block = carve_alloc(m->base.be, plan, sizeof plan / sizeof plan[0], &total);
    if (!block) return PEFTC_ERR(PEFTC_ENOMEM, "model: cannot allocate %zu bytes of activations for B=%d T=%d", total, B, T);
    a->key_scratch = malloc(BT * sizeof(uint64_t));
    if (!a->key_scratch) {
        m->base.be->free(m->base.be, block);
        memset(a, 0, sizeof *a); /* its pointers were into the block */
        return PEFTC_ERR(PEFTC_ENOMEM, "model: cannot allocate %zu row keys", BT);
    }
    a->B = B;
    a->T = T;
    a->scratch_cols = (int)cols;
    return PEFTC_OK;
}

PeftcStatus mamba_reserve(MambaModel *m, int B, int T) {
    if (m->acts.B != B || m->acts.T != T) {
        m->base.be->free(m->base.be, m->acts.resid);
        free(m->acts.key_scratch);
        memset(&m->acts, 0, sizeof m->acts);
        PEFTC_TRY(acts_alloc(m, B, T));
    }
    BackendNeed need = {.B = B, .T = T, .ssm_D = m->cfg.inner, .ssm_N = m->cfg.state, .bf16 = m->base.bf16};
    PEFTC_TRY(m->base.be->reserve(m->base.be, &need));
    return model_reserve_adapters(&m->base, B * T);
}

static StepCtx make_ctx(MambaModel *m, const uint64_t *row_keys, int training) {
    MambaActs *a = &m->acts;
    return (StepCtx){training && row_keys, row_keys,     a->scratch,  a->mask_scratch,
                     a->key_scratch,       a->scratch_cols, m->base.bf16};
}

static MambaSlices layer_slices(const MambaModel *m, int l) {
    const MambaConfig *c = &m->cfg;
    const MambaActs *a = &m->acts;
    size_t BT = (size_t)a->B * a->T, H = c->hidden, D = c->inner, L = (size_t)l;
    size_t XD = (size_t)c->dt_rank + 2 * (size_t)c->state, R = c->dt_rank;
    return (MambaSlices){
        .x = a->resid + L * BT * H,   .ln = a->ln + L * BT * H,      .rstd = a->rstd + L * BT,
        .xz = a->xz + L * BT * 2 * D, .cpre = a->cpre + L * BT * D,  .u = a->u + L * BT * D,
        .xdbl = a->xdbl + L * BT * XD, .dtlow = a->dtlow + L * BT * R, .dt = a->dt + L * BT * D,
        .saved = a->saved + L * saved_per_layer(m, a->B, a->T),        .y = a->y + L * BT * D,
        .out = a->resid + (L + 1) * BT * H,
    };
}

void mamba_layer_forward(MambaModel *m, int l, const MambaSlices *s, int B, int T, const StepCtx *ctx,
                         real_t *conv_state, real_t *ssm_state) {
    const MambaConfig *c = &m->cfg;
    const Backend *be = m->base.be;
    MambaLayer *Ly = &m->layers[l];
    int BT = B * T, H = c->hidden, D = c->inner, N = c->state, R = c->dt_rank, XD = R + 2 * N;
    be->rmsnorm_fwd(be, s->ln, s->rstd, s->x, Ly->norm_w, BT, H, (real_t)c->eps);
    linear_forward(be, &Ly->in_proj, ctx, s->xz, s->ln, BT);
    be->conv1d_fwd(be, s->cpre, s->xz, 2 * D, Ly->conv_w, Ly->conv_b, conv_state, B, T, D, c->conv);
    be->silu_fwd(be, s->u, s->cpre, (size_t)BT * D);
    linear_forward(be, &Ly->x_proj, ctx, s->xdbl, s->u, BT);
    be->copy_2d(be, s->dtlow, R, s->xdbl, XD, BT, R);
    linear_forward(be, &Ly->dt_proj, ctx, s->dt, s->dtlow, BT);
    const real_t *A = Ly->A_log;
    if (Ly->A_delta) {
        tensor_delta_apply(be, Ly->A_delta, m->A_eff, Ly->A_log);
        A = m->A_eff;
    }
    be->ssm_scan_fwd(be, s->y, s->saved, ssm_state, s->u, s->dt, A, s->xdbl + R, s->xdbl + R + N, XD,
                     Ly->Dskip, s->xz + D, 2 * D, B, T, D, N);
    linear_forward(be, &Ly->out_proj, ctx, s->out, s->y, BT);
    be->axpy(be, s->out, s->x, 1, (size_t)BT * H);
}

void mamba_head(MambaModel *m, real_t *logits, real_t *lnf, real_t *rstd, const real_t *x, int R) {
    const MambaConfig *c = &m->cfg;
    const Backend *be = m->base.be;
    be->rmsnorm_fwd(be, lnf, rstd, x, m->normf_w, R, c->hidden, (real_t)c->eps);
    const real_t *head = c->tie_embeddings ? m->wte : m->lm_head;
    nn_weight_matmul(be, m->base.bf16, logits, lnf, head, NULL, R, c->vocab, c->hidden, 1, 0); /* (R,V) */
}

PeftcStatus mamba_forward(MambaModel *m, const int32_t *tokens, const int32_t *targets, const uint64_t *row_keys,
                          int training, int B, int T, double *loss_sum, int64_t *n_valid) {
    const MambaConfig *c = &m->cfg;
    MambaActs *a = &m->acts;
    PEFTC_TRY(model_check_batch(a->B, a->T, B, T, tokens, targets, c->vocab));
    StepCtx ctx = make_ctx(m, row_keys, training);
    int BT = B * T;
    m->base.be->embedding_fwd(m->base.be, a->resid, tokens, m->wte, BT, c->hidden);
    for (int l = 0; l < c->layers; l++) {
        MambaSlices s = layer_slices(m, l);
        mamba_layer_forward(m, l, &s, B, T, &ctx, NULL, NULL);
    }
    mamba_head(m, a->logits, a->lnf, a->rstdf, a->resid + (size_t)c->layers * BT * c->hidden, BT);
    if (!targets) return PEFTC_OK;
    *loss_sum = m->base.be->xent_fwd(m->base.be, a->logits, a->logits, targets, BT, c->vocab, n_valid);
    return PEFTC_OK;
}

/* The scan and everything after the conv: on entry a->dy holds d(y); leaves d(u) in a->du and d(xz)'s
 * z half in a->dxz. */
static void ssm_backward(MambaModel *m, int l, const MambaSlices *s, const StepCtx *ctx) {
    const MambaConfig *c = &m->cfg;
    const Backend *be = m->base.be;
    MambaActs *a = &m->acts;
    MambaLayer *Ly = &m->layers[l];
    int B = a->B, T = a->T, BT = B * T, D = c->inner, N = c->state, R = c->dt_rank, XD = R + 2 * N;
    be->zero(be, a->du, (size_t)BT * D);
    be->zero(be, a->ddt, (size_t)BT * D);
    be->zero(be, a->dxdbl, (size_t)BT * XD);
    be->zero(be, a->dxz, (size_t)BT * 2 * D);
    /* A delta'd A_log is recomputed (one layer's buffer serves all) and its gradient taken whole */
    const real_t *A = Ly->A_log;
    real_t *dA = Ly->dA_log;
    if (Ly->A_delta) {
        tensor_delta_apply(be, Ly->A_delta, m->A_eff, Ly->A_log);
        be->zero(be, m->dA_eff, (size_t)D * N);
        A = m->A_eff;
        dA = m->dA_eff;
    }
    be->ssm_scan_bwd(be, a->du, a->ddt, dA, a->dxdbl + R, a->dxdbl + R + N, Ly->dDskip, a->dxz + D, a->dy,
                     s->saved, s->u, s->dt, A, s->xdbl + R, s->xdbl + R + N, XD, Ly->Dskip, s->xz + D, 2 * D,
                     B, T, D, N);
    if (Ly->A_delta) {
        tensor_delta_backward(be, Ly->A_delta, m->dA_eff);
        if (Ly->dA_log) be->axpy(be, Ly->dA_log, m->dA_eff, 1, (size_t)D * N);
    }
    be->zero(be, a->ddtlow, (size_t)BT * R);
    linear_backward(be, &Ly->dt_proj, ctx, a->ddtlow, a->ddt, s->dtlow, BT);
    be->copy_2d(be, a->dxdbl, XD, a->ddtlow, R, BT, R);
    linear_backward(be, &Ly->x_proj, ctx, a->du, a->dxdbl, s->u, BT);
}

/* On entry a->dresid holds d(resid[l+1]); on exit d(resid[l]). need_dx = 0 skips the input gradient. */
static void layer_backward(MambaModel *m, int l, const StepCtx *ctx, int need_dx) {
    const MambaConfig *c = &m->cfg;
    const Backend *be = m->base.be;
    MambaActs *a = &m->acts;
    MambaLayer *Ly = &m->layers[l];
    int B = a->B, T = a->T, BT = B * T, H = c->hidden, D = c->inner;
    MambaSlices s = layer_slices(m, l);
    be->zero(be, a->dy, (size_t)BT * D);
    linear_backward(be, &Ly->out_proj, ctx, a->dy, a->dresid, s.y, BT);
    ssm_backward(m, l, &s, ctx);
    be->zero(be, a->dcpre, (size_t)BT * D);
    be->silu_bwd(be, a->dcpre, a->du, s.cpre, (size_t)BT * D);
    be->conv1d_bwd(be, a->dxz, Ly->dconv_w, Ly->dconv_b, a->dcpre, s.xz, 2 * D, Ly->conv_w, B, T, D, c->conv);
    real_t *dln = need_dx ? a->dln : NULL;
    if (dln) be->zero(be, dln, (size_t)BT * H);
    linear_backward(be, &Ly->in_proj, ctx, dln, a->dxz, s.ln, BT);
    if (dln) be->rmsnorm_bwd(be, a->dresid, Ly->dnorm_w, dln, s.x, Ly->norm_w, s.rstd, BT, H); /* += d x */
}

void mamba_backward(MambaModel *m, const int32_t *tokens, const int32_t *targets, const uint64_t *row_keys,
                    real_t loss_scale) {
    const MambaConfig *c = &m->cfg;
    const Backend *be = m->base.be;
    MambaActs *a = &m->acts;
    int BT = a->B * a->T, H = c->hidden, V = c->vocab;
    StepCtx ctx = make_ctx(m, row_keys, 1);
    (void)targets;
    be->xent_bwd(be, a->logits, a->logits, targets, BT, V, loss_scale);
    const real_t *head = c->tie_embeddings ? m->wte : m->lm_head;
    real_t *dhead = c->tie_embeddings ? m->dwte : m->dlm_head;
    nn_weight_matmul(be, m->base.bf16, a->dln, a->logits, head, NULL, BT, H, V, 0, 0); /* dlnf (BT,H) */
    if (dhead) nn_matmul(be, &ctx, dhead, a->logits, a->lnf, V, H, BT, 1, 0, 1, 1);    /* (V,H) */
    be->zero(be, a->dresid, (size_t)BT * H);
    be->rmsnorm_bwd(be, a->dresid, m->dnormf_w, a->dln, a->resid + (size_t)c->layers * BT * H, m->normf_w, a->rstdf,
                    BT, H);
    for (int l = c->layers - 1; l >= 0; l--) {
        int need_dx = l > 0 || m->dwte || m->layers[0].dnorm_w;
        layer_backward(m, l, &ctx, need_dx);
    }
    if (m->dwte) be->embedding_bwd(be, m->dwte, a->dresid, tokens, BT, H);
}
