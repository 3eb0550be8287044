/* Batch generation over any model family: prefill each prompt, then decode the live rows together,
 * sampling every token with sample.c. */
#include "core/models/generate.h"

#include <stdlib.h>

typedef struct {
    const SamplerConfig *sc;
    int V, max_new, n_stop;
    const int32_t *stop;  /* (n_stop) */
    int32_t **out;        /* (B) x (max_new) */
    int *out_n;           /* (B) */
    int32_t *last;        /* (B) token each live row feeds to the next decode step */
    uint8_t *live;        /* (B) */
    GenTokenFn on_token;
    void *user;
} GenRun;

/* Samples row b's next token from its logits (V) and records it; a stop id or the max_new-th token
 * ends the row. */
static PeftcStatus take_token(GenRun *g, int b, const real_t *logits) {
    int n = g->sc->vocab_limit > 0 && g->sc->vocab_limit < g->V ? g->sc->vocab_limit : g->V;
    int id = gen_sample(g->sc, logits, n, (uint64_t)b, (uint64_t)g->out_n[b]);
    if (id < 0) return PEFTC_ERR(PEFTC_ENOMEM, "generate: cannot allocate the sampler's %d-entry buffer", g->V);
    for (int i = 0; i < g->n_stop; i++)
        if (g->stop[i] == id) {
            g->live[b] = 0;
            return PEFTC_OK;
        }
    g->out[b][g->out_n[b]++] = id;
    g->last[b] = id;
    if (b == 0 && g->on_token) g->on_token(g->user, id);
    if (g->out_n[b] == g->max_new) g->live[b] = 0;
    return PEFTC_OK;
}

static PeftcStatus check_generate(const SamplerConfig *sc, int B, const int32_t *const *ids, const int *n, int max_new,
                                  int n_stop) {
    if (B < 1) return PEFTC_ERR(PEFTC_EINVAL, "generate: batch size must be >= 1, got %d", B);
    if (max_new < 0) return PEFTC_ERR(PEFTC_EINVAL, "generate: max_new must be >= 0, got %d", max_new);
    if (n_stop < 0) return PEFTC_ERR(PEFTC_EINVAL, "generate: n_stop must be >= 0, got %d", n_stop);
    if (!(sc->temperature >= 0)) return PEFTC_ERR(PEFTC_EINVAL, "sampler.temperature must be >= 0, got %g", sc->temperature);
    if (!(sc->top_p > 0 && sc->top_p <= 1)) return PEFTC_ERR(PEFTC_EINVAL, "sampler.top_p must be in (0, 1], got %g", sc->top_p);
    if (sc->top_k < 0) return PEFTC_ERR(PEFTC_EINVAL, "sampler.top_k must be >= 0 (0 = off), got %d", sc->top_k);
    for (int b = 0; b < B; b++)
        if (!ids[b] || n[b] < 1) return PEFTC_ERR(PEFTC_EINVAL, "generate: prompt %d is empty (n = %d)", b, n[b]);
    return PEFTC_OK;
}

/* Prefills every row and takes its first token, then decodes the live rows together until none is left. */
static PeftcStatus generate_rows(Model *m, GenState *c, int B, GenRun *g, const int32_t *const *ids, const int *n,
                                 real_t *logits) {
    for (int b = 0; b < B; b++) {
        g->live[b] = 1;
        PEFTC_TRY(m->ops->gen_prefill(m, c, b, ids[b], n[b], logits + (size_t)b * g->V));
        PEFTC_TRY(take_token(g, b, logits + (size_t)b * g->V));
    }
    for (;;) {
        int live = 0;
        for (int b = 0; b < B; b++) live |= g->live[b];
        if (!live) return PEFTC_OK;
        PEFTC_TRY(m->ops->gen_decode(m, c, g->last, g->live, logits));
        for (int b = 0; b < B; b++)
            if (g->live[b]) PEFTC_TRY(take_token(g, b, logits + (size_t)b * g->V));
    }
}

PeftcStatus gen_generate(Model *m, const SamplerConfig *sc, int B, const int32_t *const *ids, const int *n,
                         int max_new, const int32_t *stop, int n_stop, int32_t **out, int *out_n,
                         GenTokenFn on_token, void *user) {
    PEFTC_TRY(check_generate(sc, B, ids, n, max_new, n_stop));
    int max_n = 0;
    for (int b = 0; b < B; b++) {
        out_n[b] = 0;
        max_n = n[b] > max_n ? n[b] : max_n;
    }
    if (max_new == 0) return PEFTC_OK;
    GenState *c;
    /* The last sampled token is never fed back, so max_n + max_new - 1 positions would do; one spare
     * keeps the bound obvious. */
    PEFTC_TRY(m->ops->gen_create(m, B, max_n + max_new, &c));
    GenRun g = {sc, m->vocab, max_new, n_stop, stop, out, out_n, calloc((size_t)B, sizeof(int32_t)),
                calloc((size_t)B, 1), on_token, user};
    real_t *logits = malloc((size_t)B * m->vocab * sizeof *logits); /* (B,V) */
    PeftcStatus st = PEFTC_OK;
    if (!g.last || !g.live || !logits)
        st = PEFTC_ERR(PEFTC_ENOMEM, "generate: out of memory for %d rows of %d logits", B, m->vocab);
    if (st == PEFTC_OK) st = generate_rows(m, c, B, &g, ids, n, logits);
    free(logits);
    free(g.last);
    free(g.live);
    m->ops->gen_free(c);
    return st;
}
