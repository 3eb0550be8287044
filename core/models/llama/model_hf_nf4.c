/* An HF folder's base with its projection weights quantized to NF4 at load (model.quantized=nf4), as
 * bitsandbytes' Linear4bit quantizes them for QLoRA. One tensor at a time: each projection is read into
 * the model's dequantization scratch (host memory: the HF loader fills a CPU model), quantized into a
 * staging buffer and uploaded into its QWeight, so loading holds no more than one projection in fp32
 * beyond the NF4 base itself. Every other tensor is read as the dense loader reads it. */
#include <stdio.h>
#include <stdlib.h>

#include "core/base/nf4.h"
#include "core/models/hf_folder.h"
#include "core/models/llama/model_formats.h"

/* Reusable host staging for the quantized bytes, grown to the largest tensor. */
typedef struct {
    uint8_t *buf;
    size_t cap;
} Staging;

static PeftcStatus staging_fit(Staging *s, size_t n, const char *what) {
    if (n <= s->cap) return PEFTC_OK;
    uint8_t *p = realloc(s->buf, n);
    if (!p) return PEFTC_ERR(PEFTC_ENOMEM, "%s: no host memory to stage %zu bytes of NF4", what, n);
    s->buf = p;
    s->cap = n;
    return PEFTC_OK;
}

/* Projection qi (its linear's index; ref its weight): read, quantized, uploaded into m->qweights[qi]. */
static PeftcStatus quantize_one(LlamaModel *m, int qi, const ParamRef *ref, const StFile *file, const StTensor *t,
                                Staging *stage) {
    Linear *l = llama_linear(m, qi);
    if (ref->data != &l->W) /* refs list the linears in llama_linear order */
        return PEFTC_ERR(PEFTC_ESTATE, "model: quantized tensor %s is not the weight of %s", ref->name, l->name);
    char what[1200];
    snprintf(what, sizeof what, "%s: tensor '%s'", file->file.path, ref->name);
    PEFTC_TRY(st_read_real(file, t, &ref->shape, m->wscratch)); /* (out, in) */
    QWeight *q = &m->qweights[qi];
    PEFTC_TRY(qweight_alloc(q, m->base.be, GGML_NF4, l->out, l->in, what));
    l->qW = q; /* freed with the model from here on */
    PEFTC_TRY(staging_fit(stage, q->nbytes, what));
    PEFTC_TRY(nf4_quantize(m->wscratch, (int64_t)l->out * l->in, stage->buf, what));
    m->base.be->upload(m->base.be, q->blocks, stage->buf, q->nbytes);
    return m->base.be->status(m->base.be);
}

PeftcStatus model_hf_fill_nf4(LlamaModel *m, const HfWeights *w) {
    if (m->cfg.quantized != QUANT_NF4 || m->base.be->device != DEV_CPU)
        return PEFTC_ERR(PEFTC_ESTATE, "model: NF4 loading needs a CPU model created with model.quantized=nf4");
    Staging stage = {0};
    PeftcStatus st = PEFTC_OK;
    for (int i = 0, qi = 0; i < m->base.n_refs && st == PEFTC_OK; i++) {
        const ParamRef *r = &m->base.refs[i];
        const StFile *file = NULL;
        const StTensor *t = NULL;
        st = hf_weights_find(w, r->name, &r->shape, "", &file, &t);
        if (st != PEFTC_OK) break;
        st = r->quantized ? quantize_one(m, qi++, r, file, t, &stage) : st_read_real(file, t, &r->shape, *r->data);
    }
    free(stage.buf);
    return st;
}
