#include "core/models/mamba/mamba_gen.h"

#include <stdlib.h>
#include <string.h>

#include "core/models/carve.h"
#include "core/nn/adapter.h"

/* Prefill goes in chunks of at most this many tokens; the carried state makes chunks exact. */
#define MAMBA_PREFILL_CHUNK 256

struct MambaGen {
    const Backend *be;
    int B, R, L;           /* rows; rows one pass holds (max(B, chunk)); layers */
    int cols;              /* adapter scratch columns */
    size_t conv_n, ssm_n;  /* values of one row's conv window (K-1)D and SSM state DN */
    real_t *conv, *ssm;    /* (L, B, K-1, D), (L, B, D, N) every row's state */
    real_t *wconv, *wssm;  /* (L, B, ...) the active rows' states gathered for a decode step */
    MambaSlices s;         /* one layer's work buffers for R rows (x and out swap between layers) */
    real_t *logits;        /* (B, V) */
    real_t *scratch;       /* (R, cols) */
    uint8_t *mask_scratch; /* (R, cols) */
    uint64_t *key_scratch; /* (R) host */
    void *block;
    int *rows;             /* (B) host: the active rows of a decode step */
    int32_t *tok;          /* (B) host */
};

static PeftcStatus work_alloc(MambaGen *g, const MambaConfig *c) {
    size_t R = (size_t)g->R, H = c->hidden, D = c->inner, XD = (size_t)c->dt_rank + 2 * (size_t)c->state;
    size_t F = sizeof(real_t), L = c->layers, states = L * g->B;
    Carve plan[] = {
        {(void **)&g->conv, states * g->conv_n * F}, {(void **)&g->ssm, states * g->ssm_n * F},
        {(void **)&g->wconv, states * g->conv_n * F}, {(void **)&g->wssm, states * g->ssm_n * F},
        {(void **)&g->s.x, R * H * F},         {(void **)&g->s.out, R * H * F},  {(void **)&g->s.ln, R * H * F},
        {(void **)&g->s.rstd, R * F},          {(void **)&g->s.xz, R * 2 * D * F}, {(void **)&g->s.cpre, R * D * F},
        {(void **)&g->s.u, R * D * F},         {(void **)&g->s.xdbl, R * XD * F}, {(void **)&g->s.dtlow, R * c->dt_rank * F},
        {(void **)&g->s.dt, R * D * F},        {(void **)&g->s.y, R * D * F},
        {(void **)&g->logits, (size_t)g->B * c->vocab * F},
        {(void **)&g->scratch, R * g->cols * F}, {(void **)&g->mask_scratch, R * g->cols},
    };
    size_t total;
    void *block = carve_alloc(g->be, plan, sizeof plan / sizeof plan[0], &total);
    g->rows = calloc((size_t)g->B, sizeof *g->rows);
    g->tok = calloc((size_t)g->B, sizeof *g->tok);
    g->key_scratch = calloc(R, sizeof *g->key_scratch);
    if (!block || !g->rows || !g->tok || !g->key_scratch) {
        g->be->free(g->be, block);
        return PEFTC_ERR(PEFTC_ENOMEM, "generation: cannot allocate %zu bytes of mamba state for B=%d", total, g->B);
    }
    g->block = block;
    return PEFTC_OK;
}

PeftcStatus mamba_gen_create(MambaGen **out, MambaModel *m, int B) {
    if (B < 1) return PEFTC_ERR(PEFTC_EINVAL, "generation: rows B (%d) must be >= 1", B);
    const MambaConfig *c = &m->cfg;
    MambaGen *g = calloc(1, sizeof *g);
    if (!g) return PEFTC_ERR(PEFTC_ENOMEM, "generation: out of memory");
    g->be = m->base.be;
    g->B = B;
    g->L = c->layers;
    g->R = B > MAMBA_PREFILL_CHUNK ? B : MAMBA_PREFILL_CHUNK;
    g->conv_n = (size_t)(c->conv - 1) * c->inner;
    g->ssm_n = (size_t)c->inner * c->state;
    int cols = c->hidden > 2 * c->inner ? c->hidden : 2 * c->inner;
    g->cols = c->dt_rank + 2 * c->state > cols ? c->dt_rank + 2 * c->state : cols;
    PeftcStatus st = work_alloc(g, c);
    BackendNeed need = {.bf16 = m->base.bf16};
    if (st == PEFTC_OK) st = g->be->reserve(g->be, &need);
    if (st == PEFTC_OK) st = model_reserve_adapters(&m->base, g->R);
    if (st != PEFTC_OK) {
        mamba_gen_free(g);
        return st;
    }
    *out = g;
    return PEFTC_OK;
}

void mamba_gen_free(MambaGen *g) {
    if (!g) return;
    if (g->be) g->be->free(g->be, g->block);
    free(g->rows);
    free(g->tok);
    free(g->key_scratch);
    free(g);
}

static real_t *conv_at(const MambaGen *g, real_t *base, int l, int b) { return base + ((size_t)l * g->B + b) * g->conv_n; }
static real_t *ssm_at(const MambaGen *g, real_t *base, int l, int b) { return base + ((size_t)l * g->B + b) * g->ssm_n; }

void mamba_gen_reset_row(MambaGen *g, int b) {
    if (b < 0 || b >= g->B) return;
    for (int l = 0; l < g->L; l++) {
        g->be->zero(g->be, conv_at(g, g->conv, l, b), g->conv_n);
        g->be->zero(g->be, ssm_at(g, g->ssm, l, b), g->ssm_n);
    }
}

static StepCtx gen_ctx(const MambaModel *m, const MambaGen *g) {
    /* Inference: no dropout, so no row keys; the scratch is still valid for adapters that want it. */
    return (StepCtx){0, NULL, g->scratch, g->mask_scratch, g->key_scratch, g->cols, m->base.bf16};
}

/* Every layer over the Bp rows of T tokens in g->s.x, whose states are rows b0.. of conv and ssm (L, B,
 * ...). Returns the buffer holding the stream after the last layer (x and out swap per layer). */
static real_t *run_layers(MambaModel *m, MambaGen *g, real_t *conv, real_t *ssm, int b0, int Bp, int T) {
    StepCtx ctx = gen_ctx(m, g);
    MambaSlices s = g->s;
    for (int l = 0; l < m->cfg.layers; l++) {
        mamba_layer_forward(m, l, &s, Bp, T, &ctx, conv_at(g, conv, l, b0), ssm_at(g, ssm, l, b0));
        real_t *t = s.x;
        s.x = s.out;
        s.out = t;
    }
    return s.x;
}

static PeftcStatus check_use(const MambaModel *m, const MambaGen *g) {
    if (!g || g->be != m->base.be || g->L != m->cfg.layers || g->conv_n != (size_t)(m->cfg.conv - 1) * m->cfg.inner ||
        g->ssm_n != (size_t)m->cfg.inner * m->cfg.state)
        return PEFTC_ERR(PEFTC_ESTATE, "generation: the mamba state was made for another model or backend");
    return PEFTC_OK;
}

PeftcStatus mamba_gen_prefill(MambaModel *m, MambaGen *g, int b, const int32_t *tokens, int n, real_t *logits) {
    PEFTC_TRY(check_use(m, g));
    const MambaConfig *c = &m->cfg;
    if (b < 0 || b >= g->B || n < 1)
        return PEFTC_ERR(PEFTC_EINVAL, "generation: prefill of row %d (of %d) with %d tokens", b, g->B, n);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab)
            return PEFTC_ERR(PEFTC_EINVAL, "generation: token id %d is outside the vocabulary [0, %d)", tokens[i], c->vocab);
    PEFTC_TRY(model_reserve_adapters(&m->base, g->R));
    const Backend *be = m->base.be;
    real_t *last = NULL;
    int T = 0;
    for (int off = 0; off < n; off += T) {
        T = n - off < MAMBA_PREFILL_CHUNK ? n - off : MAMBA_PREFILL_CHUNK;
        be->embedding_fwd(be, g->s.x, tokens + off, m->wte, T, c->hidden);
        last = run_layers(m, g, g->conv, g->ssm, b, 1, T); /* the state carries into the next chunk */
    }
    mamba_head(m, g->logits, g->s.ln, g->s.rstd, last + (size_t)(T - 1) * c->hidden, 1);
    be->download(be, logits, g->logits, (size_t)c->vocab * sizeof(real_t));
    return be->status(be);
}

/* The active rows' states into (dir 0) or back from (dir 1) the gathered work states. */
static void move_states(MambaModel *m, MambaGen *g, int n, int dir) {
    const Backend *be = m->base.be;
    for (int l = 0; l < g->L; l++)
        for (int k = 0; k < n; k++) {
            real_t *cs = conv_at(g, g->conv, l, g->rows[k]), *cw = conv_at(g, g->wconv, l, k);
            real_t *ss = ssm_at(g, g->ssm, l, g->rows[k]), *sw = ssm_at(g, g->wssm, l, k);
            be->copy(be, dir ? cs : cw, dir ? cw : cs, g->conv_n);
            be->copy(be, dir ? ss : sw, dir ? sw : ss, g->ssm_n);
        }
}

PeftcStatus mamba_gen_decode(MambaModel *m, MambaGen *g, const int32_t *tokens, const uint8_t *active,
                             real_t *logits) {
    PEFTC_TRY(check_use(m, g));
    const MambaConfig *c = &m->cfg;
    const Backend *be = m->base.be;
    int n = 0;
    for (int b = 0; b < g->B; b++) {
        if (active && !active[b]) continue;
        if (tokens[b] < 0 || tokens[b] >= c->vocab)
            return PEFTC_ERR(PEFTC_EINVAL, "generation: token id %d of row %d is outside the vocabulary [0, %d)",
                             tokens[b], b, c->vocab);
        g->rows[n] = b;
        g->tok[n++] = tokens[b];
    }
    if (!n) return PEFTC_OK;
    PEFTC_TRY(model_reserve_adapters(&m->base, g->R));
    move_states(m, g, n, 0);
    be->embedding_fwd(be, g->s.x, g->tok, m->wte, n, c->hidden);
    real_t *last = run_layers(m, g, g->wconv, g->wssm, 0, n, 1);
    move_states(m, g, n, 1);
    mamba_head(m, g->logits, g->s.ln, g->s.rstd, last, n);
    for (int k = 0; k < n; k++)
        be->download(be, logits + (size_t)g->rows[k] * c->vocab, g->logits + (size_t)k * c->vocab,
                     (size_t)c->vocab * sizeof(real_t));
    return be->status(be);
}
