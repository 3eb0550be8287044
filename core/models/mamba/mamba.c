/* Mamba model construction: configuration checks, the base-weight layout with HF names, and its
 * initialisation. */
#include "core/models/mamba/mamba.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/rng.h"
#include "core/base/str.h"
#include "core/nn/adapter.h"

PeftcStatus mamba_config_check(const MambaConfig *c) {
    if (c->hidden < 1 || c->inner < 1 || c->state < 1 || c->conv < 1 || c->dt_rank < 1 || c->layers < 1 ||
        c->vocab < 1)
        return PEFTC_ERR(PEFTC_EINVAL, "model: mamba hidden, inner, state, conv, dt_rank, layers and vocab must be >= 1");
    if (!(c->eps > 0)) return PEFTC_ERR(PEFTC_EINVAL, "model: mamba layer_norm_epsilon must be > 0");
    return PEFTC_OK;
}

int64_t mamba_param_count(const MambaConfig *c) {
    int64_t H = c->hidden, D = c->inner, N = c->state, K = c->conv, R = c->dt_rank, V = c->vocab;
    int64_t layer = H + 2 * D * H + D * K + (R + 2 * N) * D + D * R + D + D * N + D + H * D;
    layer += (c->conv_bias ? D : 0) + (c->proj_bias ? 2 * D + H : 0);
    return V * H + c->layers * layer + H + (c->tie_embeddings ? 0 : V * H);
}

const ModelTarget mamba_targets[MAMBA_N_TARGETS] = {
    {"in_proj", "in_proj", "ssm_in", 0},
    {"x_proj", "x_proj", "ssm_x", 0},
    {"dt_proj", "dt_proj", "ssm_dt", 0},
    {"out_proj", "out_proj", "ssm_out", 1},
};

int mamba_linear_count(const MambaModel *m) { return m->base.n_linears; }
Linear *mamba_linear(MambaModel *m, int i) { return m->base.linears[i]; }

static void add_linear(MambaModel *m, Linear *l, int layer, int target, int in, int out, int bias) {
    char name[128];
    snprintf(l->name, sizeof l->name, "backbone.layers.%d.mixer.%s", layer, mamba_targets[target].hf);
    l->target = target;
    l->layer = layer;
    l->in = in;
    l->out = out;
    m->base.linears[m->base.n_linears++] = l;
    snprintf(name, sizeof name, "%s.weight", l->name);
    model_add_ref(&m->base, name, shape2(out, in), &l->W, &l->dW, 1);
    if (bias) {
        snprintf(name, sizeof name, "%s.bias", l->name);
        model_add_ref(&m->base, name, shape1(out), &l->b, &l->db, 0);
    }
}

/* Every base tensor in the order of HF's state dict; pointers are assigned afterwards. A_log and D are
 * not decayed, as mamba_ssm marks them (_no_weight_decay). */
static void build_refs(MambaModel *m) {
    const MambaConfig *c = &m->cfg;
    int H = c->hidden, D = c->inner, N = c->state, K = c->conv, R = c->dt_rank;
    char name[128];
    model_add_ref(&m->base, "backbone.embeddings.weight", shape2(c->vocab, H), &m->wte, &m->dwte, 0);
    for (int i = 0; i < c->layers; i++) {
        MambaLayer *Ly = &m->layers[i];
#define MIXER(leaf) (snprintf(name, sizeof name, "backbone.layers.%d.mixer.%s", i, leaf), name)
        add_linear(m, &Ly->in_proj, i, 0, H, 2 * D, c->proj_bias);
        model_add_ref(&m->base, MIXER("conv1d.weight"), (Shape){3, {D, 1, K}}, &Ly->conv_w, &Ly->dconv_w, 1);
        if (c->conv_bias) model_add_ref(&m->base, MIXER("conv1d.bias"), shape1(D), &Ly->conv_b, &Ly->dconv_b, 0);
        add_linear(m, &Ly->x_proj, i, 1, D, R + 2 * N, 0);
        add_linear(m, &Ly->dt_proj, i, 2, R, D, 1);
        model_add_ref(&m->base, MIXER("A_log"), shape2(D, N), &Ly->A_log, &Ly->dA_log, 0);
        model_add_ref(&m->base, MIXER("D"), shape1(D), &Ly->Dskip, &Ly->dDskip, 0);
        add_linear(m, &Ly->out_proj, i, 3, D, H, c->proj_bias);
#undef MIXER
        snprintf(name, sizeof name, "backbone.layers.%d.norm.weight", i);
        model_add_ref(&m->base, name, shape1(H), &Ly->norm_w, &Ly->dnorm_w, 0);
    }
    model_add_ref(&m->base, "backbone.norm_f.weight", shape1(H), &m->normf_w, &m->dnormf_w, 0);
    if (!c->tie_embeddings) model_add_ref(&m->base, "lm_head.weight", shape2(c->vocab, H), &m->lm_head, &m->dlm_head, 0);
}

/* Value i of tensor r at init: what MambaForCausalLM's _init_weights sets, matrices N(0, std). */
static real_t init_value(const ParamRef *r, const MambaConfig *c, uint64_t key, size_t i, double std) {
    if (str_ends_with(r->name, "norm.weight") || str_ends_with(r->name, "norm_f.weight") || str_ends_with(r->name, ".D")) return 1;
    if (str_ends_with(r->name, "A_log")) return (real_t)log((double)(i % (size_t)c->state) + 1);
    if (str_ends_with(r->name, "dt_proj.bias")) { /* inverse softplus of dt, log-uniform in [1e-3, 0.1] */
        double dt = exp(rng_uniform(key, i) * (log(0.1) - log(1e-3)) + log(1e-3));
        dt = dt < 1e-4 ? 1e-4 : dt;
        return (real_t)(dt + log(-expm1(-dt)));
    }
    if (str_ends_with(r->name, ".bias")) return 0;
    return (real_t)(std * rng_normal(key, i));
}

static PeftcStatus init_ref(const Backend *be, const ParamRef *r, const MambaConfig *c, uint64_t seed, double std) {
    if (std < 0) return PEFTC_OK; /* a loader fills every tensor next (alloc zero-fills) */
    size_t n = (size_t)shape_numel(&r->shape);
    real_t *p = backend_host_begin(be, *r->data, n);
    if (!p) return PEFTC_ERR(PEFTC_ENOMEM, "model: no host memory to initialise %s", r->name);
    uint64_t key = rng_key_str(seed, r->name);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) p[i] = init_value(r, c, key, i, std);
    backend_host_done(be, *r->data, p, n);
    return PEFTC_OK;
}

static PeftcStatus alloc_base(MambaModel *m, const Backend *be) {
    size_t total = 0;
    for (int i = 0; i < m->base.n_refs; i++) total += ((size_t)shape_numel(&m->base.refs[i].shape) * sizeof(real_t) + 63) & ~(size_t)63;
    m->mem = be->alloc(be, total);
    if (!m->mem) return PEFTC_ERR(PEFTC_ENOMEM, "model: cannot allocate %zu bytes of mamba weights", total);
    char *p = m->mem;
    for (int i = 0; i < m->base.n_refs; i++) {
        *m->base.refs[i].data = (real_t *)p;
        p += ((size_t)shape_numel(&m->base.refs[i].shape) * sizeof(real_t) + 63) & ~(size_t)63;
    }
    return PEFTC_OK;
}

PeftcStatus mamba_create(MambaModel *m, const Backend *be, const MambaConfig *cfg, uint64_t seed, double init_std) {
    memset(m, 0, sizeof *m);
    PEFTC_TRY(mamba_config_check(cfg));
    m->cfg = *cfg;
    mamba_model_init(&m->base, be, &m->cfg);
    int per_layer = 12; /* norm, in_proj (w, b), conv (w, b), x_proj, dt_proj (w, b), A_log, D, out_proj (w, b) */
    m->layers = calloc((size_t)cfg->layers, sizeof *m->layers);
    m->base.refs = calloc((size_t)(cfg->layers * per_layer + 3), sizeof *m->base.refs);
    m->base.linears = calloc((size_t)cfg->layers * MAMBA_N_TARGETS, sizeof *m->base.linears);
    if (!m->layers || !m->base.refs || !m->base.linears) {
        mamba_free(m);
        return PEFTC_ERR(PEFTC_ENOMEM, "model: out of memory for %d mamba layers", cfg->layers);
    }
    build_refs(m);
    PeftcStatus st = alloc_base(m, be);
    for (int i = 0; i < m->base.n_refs && st == PEFTC_OK; i++) st = init_ref(be, &m->base.refs[i], cfg, seed, init_std);
    if (st != PEFTC_OK) mamba_free(m);
    return st;
}

void mamba_free(MambaModel *m) {
    for (int i = 0; m->base.linears && i < mamba_linear_count(m); i++) {
        Linear *l = mamba_linear(m, i);
        if (l->adapter) l->adapter->ops->destroy(l->adapter);
    }
    if (m->base.be) {
        m->base.be->free(m->base.be, m->mem);
        m->base.be->free(m->base.be, m->A_eff);
        m->base.be->free(m->base.be, m->acts.resid); /* every activation lives in the block starting at resid */
        free(m->acts.key_scratch);
    }
    free(m->layers);
    free(m->base.refs);
    free(m->base.linears);
    memset(m, 0, sizeof *m);
}

PeftcStatus mamba_copy_weights(MambaModel *dst, const MambaModel *src) {
    if (src->base.be->device != DEV_CPU)
        return PEFTC_ERR(PEFTC_EINVAL, "model: weights can be copied from host memory only, not from %s", src->base.be->name);
    if (dst->base.n_refs != src->base.n_refs)
        return PEFTC_ERR(PEFTC_EINVAL, "model: copying weights between mamba models of different shapes");
    for (int i = 0; i < src->base.n_refs; i++) {
        const ParamRef *s = &src->base.refs[i], *d = &dst->base.refs[i];
        if (strcmp(s->name, d->name) != 0 || !shape_equal(&s->shape, &d->shape))
            return PEFTC_ERR(PEFTC_EINVAL, "model: tensor %s has no counterpart %s", s->name, d->name);
        dst->base.be->upload(dst->base.be, *d->data, *s->data, (size_t)shape_numel(&s->shape) * sizeof(real_t));
    }
    return dst->base.be->status(dst->base.be);
}

PeftcStatus mamba_set_A_delta(MambaModel *m, int l, const TensorDelta *d) {
    const MambaConfig *c = &m->cfg;
    if (l < 0 || l >= c->layers) return PEFTC_ERR(PEFTC_EINVAL, "model: mamba has no layer %d", l);
    if (d && (d->pat.rows != c->inner || d->pat.cols != c->state))
        return PEFTC_ERR(PEFTC_EINVAL, "model: a delta of shape (%d, %d) on A_log (%d, %d) of layer %d", d->pat.rows,
                         d->pat.cols, c->inner, c->state, l);
    if (d && !m->A_eff) {
        size_t n = (size_t)c->inner * c->state;
        m->A_eff = m->base.be->alloc(m->base.be, 2 * n * sizeof(real_t));
        if (!m->A_eff) return PEFTC_ERR(PEFTC_ENOMEM, "model: no memory for the effective A_log of a delta");
        m->dA_eff = m->A_eff + n;
    }
    m->layers[l].A_delta = d;
    return PEFTC_OK;
}

void mamba_merge_A_deltas(MambaModel *m) {
    const Backend *be = m->base.be;
    for (int l = 0; l < m->cfg.layers; l++) {
        const TensorDelta *d = m->layers[l].A_delta;
        if (!d) continue;
        be->csr_add_dense(be, m->layers[l].A_log, d->pat.row_ptr, d->pat.col_idx, d->values, d->pat.rows,
                          d->pat.cols, 1);
        m->layers[l].A_delta = NULL;
    }
}
