/* Per-method checkpoint state (see ckpt_state.h). */
#include "launch/ckpt_state.h"

#include <stdlib.h>
#include <string.h>


#define MAX_BLOBS 4096

static PeftcStatus add(CkptState *st, const char *name, CkptKind kind, void *data, size_t n) {
    if (st->n == MAX_BLOBS) return PEFTC_ERR(PEFTC_EINVAL, "checkpoint: more than %d state entries", MAX_BLOBS);
    char *copy = strdup(name);
    if (!copy) return PEFTC_ERR(PEFTC_ENOMEM, "checkpoint: out of memory for state '%s'", name);
    st->owned[st->n] = data;
    st->blobs[st->n++] = (CkptBlob){copy, kind, data, n};
    return PEFTC_OK;
}

/* The sink the method's state() fills: the state takes ownership of data. */
static PeftcStatus take(void *user, const char *name, CkptKind kind, void *data, size_t n) {
    PeftcStatus st = add(user, name, kind, data, n);
    if (st != PEFTC_OK) free(data);
    return st;
}

PeftcStatus ckpt_state_gather(const Session *s, CkptState *out) {
    memset(out, 0, sizeof *out);
    out->blobs = calloc(MAX_BLOBS, sizeof *out->blobs);
    out->owned = calloc(MAX_BLOBS, sizeof *out->owned);
    if (!out->blobs || !out->owned) {
        ckpt_state_free(out);
        return PEFTC_ERR(PEFTC_ENOMEM, "checkpoint: out of memory for the method state");
    }
    const MethodDesc *d = s->method.desc;
    PeftcStatus r = d->state ? d->state(&s->method, s->model, take, out) : PEFTC_OK;
    if (r != PEFTC_OK) ckpt_state_free(out);
    return r;
}

void ckpt_state_free(CkptState *st) {
    for (int i = 0; i < st->n; i++) {
        free((void *)st->blobs[i].name);
        free(st->owned[i]);
    }
    free(st->blobs);
    free(st->owned);
    memset(st, 0, sizeof *st);
}

PeftcStatus ckpt_state_check(const Session *s, const char *path) {
    CkptState now;
    PEFTC_TRY(ckpt_state_gather(s, &now));
    PeftcStatus r = PEFTC_OK;
    for (int i = 0; i < now.n && r == PEFTC_OK; i++) {
        const CkptBlob *b = &now.blobs[i];
        void *stored = NULL;
        size_t n = 0;
        r = ckpt_read_blob(path, b->name, b->kind, &stored, &n);
        if (r == PEFTC_OK && (n != b->n || memcmp(stored, b->data, n * ckpt_kind_size(b->kind)) != 0))
            r = PEFTC_ERR(PEFTC_EINVAL, "checkpoint '%s': /state/%s differs from this run's (%s)", path, b->name,
                          b->kind == CKPT_U8 ? "another eigenlora.basis file" : "other RoSA masks in rosa.mask_path");
        free(stored);
    }
    ckpt_state_free(&now);
    return r;
}
