/* KV-cache inference: the cache and its work buffers, prefill of one row, batched decode.
 *
 * Both passes run the training forward's layer (RMSNorm, q/k/v through linear_forward so adapters take
 * part, RoPE, attention, o_proj, SwiGLU MLP) on a few rows, but attention reads keys and values from the
 * cache instead of from the rows themselves: prefill writes its n rows' k/v at the row's next positions
 * and runs each query against the cache up to itself; decode writes one k/v per active row. Everything
 * is a backend call, so another backend runs this file unchanged. */
#include "core/models/llama/generate.h"

#include <stdlib.h>
#include <string.h>

#include "core/models/carve.h"
#include "core/nn/adapter.h"

/* Prefill goes in chunks of at most this many tokens. Each query only reads the cache, so chunks give
 * the same result as one pass, and the work buffers stay small when S is long. */
#define GEN_PREFILL_CHUNK 256

typedef struct {
    const Backend *be;
    int L, C, I, NH, NKV, HD, V;  /* the model shape the cache was made for */
    int R;                        /* rows one pass holds: max(B, min(S, GEN_PREFILL_CHUNK)) */
    real_t *x, *r2, *ln;          /* (R,C) residual entering a layer, after attention, normed */
    real_t *rstd;                 /* (R) */
    real_t *q, *atty;             /* (R,NH*HD) q after RoPE, attention output */
    real_t *k, *v;                /* (R,NKV*HD) */
    real_t *gate, *up, *act;      /* (R,I) */
    real_t *logits;               /* (B,V) */
    real_t *rope_cos, *rope_sin;  /* (S,HD/2) */
    real_t *scratch;              /* (R,cols) adapter scratch */
    uint8_t *mask_scratch;        /* (R,cols) */
    uint64_t *key_scratch;        /* (R) */
    int cols;
    void *block;                  /* backend allocation holding every buffer above */
    int *rows;                    /* (B) host: cache row of each active decode row, ascending */
    int32_t *tok;                 /* (B) host: their tokens */
    int *lens;                    /* (R) host: positions each query row attends to */
} GenWork;

static PeftcStatus work_alloc(GenWork *w, int B, int S) {
    size_t R = (size_t)w->R, C = w->C, I = w->I, QD = (size_t)w->NH * w->HD, KVD = (size_t)w->NKV * w->HD;
    size_t F = sizeof(real_t), half = (size_t)w->HD / 2, cols = (size_t)w->cols;
    Carve plan[] = {
        {(void **)&w->x, R * C * F},         {(void **)&w->r2, R * C * F},      {(void **)&w->ln, R * C * F},
        {(void **)&w->rstd, R * F},          {(void **)&w->q, R * QD * F},      {(void **)&w->atty, R * QD * F},
        {(void **)&w->k, R * KVD * F},       {(void **)&w->v, R * KVD * F},     {(void **)&w->gate, R * I * F},
        {(void **)&w->up, R * I * F},        {(void **)&w->act, R * I * F},
        {(void **)&w->logits, (size_t)B * w->V * F},
        {(void **)&w->rope_cos, (size_t)S * half * F}, {(void **)&w->rope_sin, (size_t)S * half * F},
        {(void **)&w->scratch, R * cols * F}, {(void **)&w->mask_scratch, R * cols},
        {(void **)&w->key_scratch, R * sizeof(uint64_t)},
    };
    size_t total;
    void *block = carve_alloc(w->be, plan, sizeof plan / sizeof plan[0], &total);
    w->rows = calloc((size_t)B + R, sizeof(int));
    w->tok = calloc((size_t)B, sizeof(int32_t));
    if (!block || !w->rows || !w->tok) {
        w->be->free(w->be, block);
        return PEFTC_ERR(PEFTC_ENOMEM, "kv cache: cannot allocate %zu bytes of work buffers for B=%d S=%d", total, B, S);
    }
    w->block = block;
    w->lens = w->rows + B;
    return PEFTC_OK;
}

static void work_shape(GenWork *w, const LlamaModel *m, int B, int S) {
    const LlamaConfig *c = &m->cfg;
    w->be = m->base.be;
    w->L = c->layers, w->C = c->hidden, w->I = c->intermediate, w->NH = c->heads, w->NKV = c->kv_heads;
    w->HD = c->head_dim, w->V = c->vocab;
    int chunk = S < GEN_PREFILL_CHUNK ? S : GEN_PREFILL_CHUNK, QD = w->NH * w->HD;
    w->R = B > chunk ? B : chunk;
    /* Adapter scratch holds one row of any linear layer's input. */
    w->cols = w->C > w->I ? w->C : w->I;
    w->cols = QD > w->cols ? QD : w->cols;
}

PeftcStatus kv_create(KvCache *c, const LlamaModel *m, int B, int S) {
    memset(c, 0, sizeof *c);
    if (B < 1 || S < 1) return PEFTC_ERR(PEFTC_EINVAL, "kv cache: rows B (%d) and capacity S (%d) must be >= 1", B, S);
    PEFTC_TRY(llama_check_window(&m->cfg, S));
    GenWork *w = calloc(1, sizeof *w);
    if (!w) return PEFTC_ERR(PEFTC_ENOMEM, "kv cache: out of memory");
    work_shape(w, m, B, S);
    c->work = w;
    c->B = B;
    c->S = S;
    size_t n = (size_t)w->L * B * S * w->NKV * w->HD;
    c->len = calloc((size_t)B, sizeof *c->len);
    c->k = m->base.be->alloc(m->base.be, n * sizeof(real_t));
    c->v = m->base.be->alloc(m->base.be, n * sizeof(real_t));
    if (!c->len || !c->k || !c->v) {
        kv_free(c);
        return PEFTC_ERR(PEFTC_ENOMEM, "kv cache: cannot allocate 2 x %zu bytes for B=%d S=%d", n * sizeof(real_t), B, S);
    }
    BackendNeed need = {.S = S, .bf16 = m->base.bf16}; /* attention over up to S cached positions */
    PeftcStatus st = work_alloc(w, B, S);
    if (st == PEFTC_OK) st = m->base.be->reserve(m->base.be, &need);
    if (st == PEFTC_OK) st = model_reserve_adapters(&m->base, w->R);
    if (st != PEFTC_OK) {
        kv_free(c);
        return st;
    }
    st = llama_rope_tables(m, w->rope_cos, w->rope_sin, S);
    if (st != PEFTC_OK) kv_free(c);
    return st;
}

void kv_free(KvCache *c) {
    GenWork *w = c->work;
    if (w) {
        w->be->free(w->be, c->k);
        w->be->free(w->be, c->v);
        w->be->free(w->be, w->block);
        free(w->rows);
        free(w->tok);
        free(w);
    }
    free(c->len);
    memset(c, 0, sizeof *c);
}

void kv_reset_row(KvCache *c, int b) {
    if (b >= 0 && b < c->B) c->len[b] = 0;
}

/* Layer l's cache slot (l, b, pos) in kv (L,B,S,NKV*HD). */
static real_t *kv_at(real_t *kv, const KvCache *c, int l, int b, int pos) {
    const GenWork *w = c->work;
    return kv + (((size_t)l * c->B + b) * c->S + pos) * (size_t)w->NKV * w->HD;
}

static PeftcStatus check_use(const LlamaModel *m, const KvCache *c) {
    const GenWork *w = c->work;
    const LlamaConfig *g = &m->cfg;
    if (!w) return PEFTC_ERR(PEFTC_ESTATE, "kv cache: used before kv_create (or after kv_free)");
    if (w->L != g->layers || w->C != g->hidden || w->I != g->intermediate || w->NH != g->heads ||
        w->NKV != g->kv_heads || w->HD != g->head_dim || w->V != g->vocab || w->be != m->base.be)
        return PEFTC_ERR(PEFTC_ESTATE, "kv cache: made for a model of %d layers, hidden %d, heads %d/%d, vocab %d, "
                         "used with one of %d layers, hidden %d, heads %d/%d, vocab %d (or another backend)",
                         w->L, w->C, w->NH, w->NKV, w->V, g->layers, g->hidden, g->heads, g->kv_heads, g->vocab);
    return PEFTC_OK;
}

static StepCtx work_ctx(const LlamaModel *m, const GenWork *w) {
    /* Inference: no dropout, so no row keys; the scratch is still valid for adapters that want it. */
    return (StepCtx){0, NULL, w->scratch, w->mask_scratch, w->key_scratch, w->cols, m->base.bf16};
}

/* ln = rmsnorm(x); q, k, v (before RoPE) of the first R rows. */
static void attn_inputs(const LlamaModel *m, GenWork *w, const LlamaLayer *Ly, const StepCtx *ctx, int R) {
    const Backend *be = m->base.be;
    be->rmsnorm_fwd(be, w->ln, w->rstd, w->x, Ly->ln1_w, R, w->C, (real_t)m->cfg.rms_eps);
    linear_forward(be, &Ly->q, ctx, w->q, w->ln, R);
    linear_forward(be, &Ly->k, ctx, w->k, w->ln, R);
    linear_forward(be, &Ly->v, ctx, w->v, w->ln, R);
}

/* r2 = x + o(atty); x = r2 + down(silu(gate(ln2)) * up(ln2)) with ln2 = rmsnorm(r2), over R rows. */
static void attn_out_mlp(const LlamaModel *m, GenWork *w, const LlamaLayer *Ly, const StepCtx *ctx, int R) {
    const Backend *be = m->base.be;
    size_t RC = (size_t)R * w->C;
    linear_forward(be, &Ly->o, ctx, w->r2, w->atty, R);
    be->axpy(be, w->r2, w->x, 1, RC);
    be->rmsnorm_fwd(be, w->ln, w->rstd, w->r2, Ly->ln2_w, R, w->C, (real_t)m->cfg.rms_eps);
    linear_forward(be, &Ly->gate, ctx, w->gate, w->ln, R);
    linear_forward(be, &Ly->up, ctx, w->up, w->ln, R);
    be->swiglu_fwd(be, w->act, w->gate, w->up, (size_t)R * w->I);
    linear_forward(be, &Ly->down, ctx, w->x, w->act, R);
    be->axpy(be, w->x, w->r2, 1, RC);
}

/* w->logits (R,V) = lm_head(rmsnorm(x)) for the R rows starting at x. */
static void lm_head(const LlamaModel *m, GenWork *w, const real_t *x, int R) {
    const Backend *be = m->base.be;
    be->rmsnorm_fwd(be, w->ln, w->rstd, x, m->lnf_w, R, w->C, (real_t)m->cfg.rms_eps);
    llama_head(m, w->logits, w->ln, R, 0);
}

static PeftcStatus check_tokens(const int32_t *tok, int n, int V, const char *what) {
    for (int i = 0; i < n; i++)
        if (tok[i] < 0 || tok[i] >= V)
            return PEFTC_ERR(PEFTC_EINVAL, "generate: %s token id %d at index %d is outside the vocabulary [0, %d)", what,
                             tok[i], i, V);
    return PEFTC_OK;
}

/* n <= R tokens of row b at positions len[b].. : through every layer, k/v appended to the cache. */
static void prefill_chunk(const LlamaModel *m, KvCache *c, int b, const int32_t *tok, int n) {
    GenWork *w = c->work;
    const Backend *be = m->base.be;
    StepCtx ctx = work_ctx(m, w);
    int pos0 = c->len[b], half = w->HD / 2, QD = w->NH * w->HD, KVD = w->NKV * w->HD;
    const real_t *cs = w->rope_cos + (size_t)pos0 * half, *sn = w->rope_sin + (size_t)pos0 * half; /* (n,HD/2) */
    for (int i = 0; i < n; i++) w->lens[i] = pos0 + i + 1; /* causal: query i sees itself and before */
    llama_embed(m, w->x, tok, n);
    for (int l = 0; l < w->L; l++) {
        const LlamaLayer *Ly = &m->layers[l];
        attn_inputs(m, w, Ly, &ctx, n);
        be->rope_fwd(be, w->q, cs, sn, NULL, 1, n, w->NH, w->HD);
        be->rope_fwd(be, w->k, cs, sn, NULL, 1, n, w->NKV, w->HD);
        be->copy(be, kv_at(c->k, c, l, b, pos0), w->k, (size_t)n * KVD);
        be->copy(be, kv_at(c->v, c, l, b, pos0), w->v, (size_t)n * KVD);
        const real_t *kc = kv_at(c->k, c, l, b, 0), *vc = kv_at(c->v, c, l, b, 0); /* (1,S,KVD) */
        for (int i = 0; i < n; i++)
            be->attention_decode(be, w->atty + (size_t)i * QD, w->q + (size_t)i * QD, kc, vc, &w->lens[i], 1, c->S,
                                 w->NH, w->NKV, w->HD);
        attn_out_mlp(m, w, Ly, &ctx, n);
    }
    c->len[b] = pos0 + n;
}

PeftcStatus gen_prefill(LlamaModel *m, KvCache *c, int b, const int32_t *tokens, int n, real_t *logits) {
    PEFTC_TRY(check_use(m, c));
    GenWork *w = c->work;
    if (b < 0 || b >= c->B) return PEFTC_ERR(PEFTC_EINVAL, "generate: prefill of row %d, the cache has rows [0, %d)", b, c->B);
    if (n < 1) return PEFTC_ERR(PEFTC_EINVAL, "generate: prefill of row %d needs at least one token, got %d", b, n);
    if (n > c->S - c->len[b])
        return PEFTC_ERR(PEFTC_EINVAL, "generate: row %d holds %d positions; %d more exceed the cache capacity S=%d", b,
                         c->len[b], n, c->S);
    PEFTC_TRY(check_tokens(tokens, n, w->V, "prompt"));
    PEFTC_TRY(model_reserve_adapters(&m->base, w->R));
    int chunk = 0;
    for (int done = 0; done < n; done += chunk) {
        chunk = n - done < w->R ? n - done : w->R;
        prefill_chunk(m, c, b, tokens + done, chunk);
    }
    lm_head(m, w, w->x + (size_t)(chunk - 1) * w->C, 1); /* only the last position is asked for */
    m->base.be->download(m->base.be, logits, w->logits, (size_t)w->V * sizeof(real_t)); /* the caller samples on the host */
    return m->base.be->status(m->base.be);
}

/* RoPE at each active row's own position, then its k/v into the cache at that position. */
static void decode_rope_append(const LlamaModel *m, KvCache *c, int l, int Ra) {
    GenWork *w = c->work;
    const Backend *be = m->base.be;
    int half = w->HD / 2, QD = w->NH * w->HD, KVD = w->NKV * w->HD;
    for (int i = 0; i < Ra; i++) {
        int b = w->rows[i], pos = c->len[b];
        const real_t *cs = w->rope_cos + (size_t)pos * half, *sn = w->rope_sin + (size_t)pos * half; /* (1,HD/2) */
        be->rope_fwd(be, w->q + (size_t)i * QD, cs, sn, NULL, 1, 1, w->NH, w->HD);
        be->rope_fwd(be, w->k + (size_t)i * KVD, cs, sn, NULL, 1, 1, w->NKV, w->HD);
        be->copy(be, kv_at(c->k, c, l, b, pos), w->k + (size_t)i * KVD, (size_t)KVD);
        be->copy(be, kv_at(c->v, c, l, b, pos), w->v + (size_t)i * KVD, (size_t)KVD);
    }
}

/* The op reads consecutive cache rows, so each run of consecutive active rows is one call: a single
 * call when every row is active. */
static void decode_attention(const LlamaModel *m, KvCache *c, int l, int Ra) {
    GenWork *w = c->work;
    size_t QD = (size_t)w->NH * w->HD;
    for (int i0 = 0, i1; i0 < Ra; i0 = i1) {
        for (i1 = i0 + 1; i1 < Ra && w->rows[i1] == w->rows[i1 - 1] + 1; i1++) {}
        m->base.be->attention_decode(m->base.be, w->atty + i0 * QD, w->q + i0 * QD, kv_at(c->k, c, l, w->rows[i0], 0),
                                kv_at(c->v, c, l, w->rows[i0], 0), w->lens + i0, i1 - i0, c->S, w->NH, w->NKV,
                                w->HD);
    }
}

/* Lists the active rows in w->rows / w->tok / w->lens; returns how many, or -1 with the error set. */
static int gather_active(KvCache *c, const int32_t *tokens, const uint8_t *active, PeftcStatus *st) {
    GenWork *w = c->work;
    int Ra = 0;
    for (int b = 0; b < c->B; b++) {
        if (active && !active[b]) continue;
        if (c->len[b] >= c->S) {
            *st = PEFTC_ERR(PEFTC_EINVAL, "generate: decode of row %d, which already holds the cache capacity S=%d", b,
                            c->S);
            return -1;
        }
        if ((*st = check_tokens(&tokens[b], 1, w->V, "decode")) != PEFTC_OK) return -1;
        w->rows[Ra] = b;
        w->tok[Ra] = tokens[b];
        w->lens[Ra++] = c->len[b] + 1;
    }
    return Ra;
}

PeftcStatus gen_decode(LlamaModel *m, KvCache *c, const int32_t *tokens, const uint8_t *active, real_t *logits) {
    PEFTC_TRY(check_use(m, c));
    GenWork *w = c->work;
    const Backend *be = m->base.be;
    PeftcStatus st = PEFTC_OK;
    int Ra = gather_active(c, tokens, active, &st);
    if (Ra <= 0) return st;
    PEFTC_TRY(model_reserve_adapters(&m->base, w->R));
    StepCtx ctx = work_ctx(m, w);
    llama_embed(m, w->x, w->tok, Ra);
    for (int l = 0; l < w->L; l++) {
        attn_inputs(m, w, &m->layers[l], &ctx, Ra);
        decode_rope_append(m, c, l, Ra);
        decode_attention(m, c, l, Ra);
        attn_out_mlp(m, w, &m->layers[l], &ctx, Ra);
    }
    lm_head(m, w, w->x, Ra);
    for (int i = 0; i < Ra; i++) {
        be->download(be, logits + (size_t)w->rows[i] * w->V, w->logits + (size_t)i * w->V, (size_t)w->V * sizeof(real_t));
        c->len[w->rows[i]]++;
    }
    return be->status(be);
}

/* ---- batch generation ---- */
