#include "adapters/formats/base_deltas.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/safetensors.h"

#define SUFFIX ".delta"

struct BaseDeltas {
    StWriter *w;
};

PeftcStatus base_deltas_new(BaseDeltas **out) {
    BaseDeltas *d = calloc(1, sizeof *d);
    if (d) d->w = st_writer_new();
    if (!d || !d->w) {
        free(d);
        return PEFTC_ERR(PEFTC_ENOMEM, "base deltas: out of memory for the writer");
    }
    *out = d;
    return st_writer_meta(d->w, "format", "peftc-base-deltas");
}

PeftcStatus base_deltas_add(BaseDeltas *d, const ParamRef *ref, const real_t *delta) {
    char name[160];
    snprintf(name, sizeof name, "%s" SUFFIX, ref->name);
    return st_writer_add(d->w, name, ST_F32, &ref->shape, delta);
}

PeftcStatus base_deltas_write(BaseDeltas *d, const char *path) { return st_write(d->w, path); }

void base_deltas_free(BaseDeltas *d) {
    if (!d) return;
    st_writer_free(d->w);
    free(d);
}

static const ParamRef *find_ref(const Model *m, const char *name, size_t len) {
    for (int i = 0; i < m->n_refs; i++)
        if (strlen(m->refs[i].name) == len && !strncmp(m->refs[i].name, name, len)) return &m->refs[i];
    return NULL;
}

/* One tensor of the file onto its base tensor: base += delta, through host memory. */
static PeftcStatus apply_one(Model *m, const StFile *f, const StTensor *t) {
    size_t n = strlen(t->name), k = strlen(SUFFIX);
    const ParamRef *r = n > k && !strcmp(t->name + n - k, SUFFIX) ? find_ref(m, t->name, n - k) : NULL;
    if (!r || r->quantized)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' is not '<base tensor>%s' of a dense tensor of this %s model",
                         f->file.path, t->name, SUFFIX, m->ops->family);
    size_t numel = (size_t)shape_numel(&r->shape);
    real_t *delta = malloc(numel * sizeof *delta), *base = malloc(numel * sizeof *base);
    PeftcStatus st = delta && base ? st_read_real(f, t, &r->shape, delta)
                                   : PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for '%s'", f->file.path, t->name);
    if (st == PEFTC_OK) {
        m->be->download(m->be, base, *r->data, numel * sizeof *base);
        for (size_t i = 0; i < numel; i++) base[i] += delta[i];
        m->be->upload(m->be, *r->data, base, numel * sizeof *base);
        st = m->be->status(m->be);
    }
    free(delta);
    free(base);
    return st;
}

PeftcStatus base_deltas_apply(Model *m, const char *path) {
    StFile f;
    PEFTC_TRY(st_open(&f, path));
    PeftcStatus st = PEFTC_OK;
    for (int i = 0; i < f.n_tensors && st == PEFTC_OK; i++) st = apply_one(m, &f, &f.tensors[i]);
    st_close(&f);
    return st;
}
