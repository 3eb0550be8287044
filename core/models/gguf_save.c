#include "core/models/gguf_save.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "core/base/str.h"
#include "core/formats/gguf.h"
#include "core/formats/gguf_write.h"

int gguf_file_type_of(GgmlType type) {
    switch (type) {
    case GGML_F32: return 0;
    case GGML_F16: return 1;
    case GGML_BF16: return 32;
    default: return -1;
    }
}

/* What llama.cpp's converter (conversion/base.py, prepare_tensors) stores in F32 whatever the output
 * type, as far as these families have it: vectors, norms, tensors not named *.weight (Mamba's ssm_a and
 * ssm_d) and the SSM conv weight, which its loaders and kernels expect in F32. */
static int kept_f32(const GgufTensor *t) {
    return t->n_dims <= 1 || str_ends_with(t->name, "_norm.weight") || !str_ends_with(t->name, ".weight") ||
           str_ends_with(t->name, ".ssm_conv1d.weight");
}

/* The dimensions of ne (n) other than 1, innermost first, into out; returns how many. */
static int squeeze(int n, const int64_t *ne, int64_t *out) {
    int k = 0;
    for (int d = 0; d < n; d++)
        if (ne[d] != 1) out[k++] = ne[d];
    return k;
}

/* The same elements in the same order: shapes equal once their 1s are dropped. */
static int same_layout(int na, const int64_t *a, int nb, const int64_t *b) {
    int64_t sa[4], sb[4];
    int ka = squeeze(na, a, sa), kb = squeeze(nb, b, sb);
    return ka == kb && memcmp(sa, sb, (size_t)ka * sizeof *sa) == 0;
}

static void ne_text(int n, const int64_t *ne, char *buf, size_t cap) {
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < n && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", d ? ", " : "", (long long)ne[d]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

static PeftcStatus check_arch(const GgufFile *g, const Model *m, const char *out_path) {
    GgufStr a;
    PEFTC_TRY(gguf_get_str(g, "general.architecture", &a));
    if (a.len == strlen(m->gguf_arch) && memcmp(a.ptr, m->gguf_arch, a.len) == 0) return PEFTC_OK;
    return PEFTC_ERR(PEFTC_EINVAL, "%s: general.architecture is '%.*s', expected '%s': the model to write to %s is a "
                     "llama.cpp '%s' model, and its base must be the GGUF file it was loaded from", g->file.path,
                     (int)(a.len > 64 ? 64 : a.len), a.ptr, m->gguf_arch, out_path, m->gguf_arch);
}

/* Every key of g in order with its bytes, general.file_type set for `type`. */
static PeftcStatus copy_metadata(GgufWriter *w, const GgufFile *g, GgmlType type) {
    static const char ftype_key[] = "general.file_type";
    uint32_t ftype = (uint32_t)gguf_file_type_of(type);
    int seen = 0;
    for (int64_t i = 0; i < g->n_kv; i++) {
        const GgufKV *kv = &g->kv[i];
        if (kv->key.len == strlen(ftype_key) && memcmp(kv->key.ptr, ftype_key, kv->key.len) == 0) {
            seen = 1;
            PEFTC_TRY(gguf_writer_u32(w, ftype_key, ftype));
        } else {
            PEFTC_TRY(gguf_writer_copy_kv(w, kv));
        }
    }
    return seen ? PEFTC_OK : gguf_writer_u32(w, ftype_key, ftype);
}

/* Base tensor t as m holds it now, or the base's own bytes when m has no such tensor. written (n_refs)
 * counts the model tensors written so far. */
static PeftcStatus write_tensor(GgufWriter *w, const Model *m, const char *base, const GgufTensor *t, GgmlType type,
                                int *written, const char *out_path) {
    ModelGgufTensor where;
    PEFTC_TRY(m->ops->gguf_tensor(m, t->name, &where, NULL));
    if (where.ref < 0) return gguf_writer_add_raw(w, t->name, t->type, t->n_dims, t->ne, t->data, (size_t)t->nbytes);
    const ParamRef *ref = &m->refs[where.ref];
    if (!same_layout(t->n_dims, t->ne, where.n_dims, where.ne)) {
        char got[96], want[96];
        ne_text(t->n_dims, t->ne, got, sizeof got);
        ne_text(where.n_dims, where.ne, want, sizeof want);
        return PEFTC_ERR(PEFTC_EINVAL, "%s: tensor '%s' has shape %s, expected %s (the model's %s, to be written to "
                         "%s): the base must be the GGUF file the model was loaded from", base, t->name, got, want,
                         ref->name, out_path);
    }
    if (written[where.ref]++)
        return PEFTC_ERR(PEFTC_ESTATE, "%s: tensor '%s' is the model's %s, which an earlier tensor already wrote to %s",
                         base, t->name, ref->name, out_path);
    /* its values are read and encoded while the file is written (fill_tensor), one tensor at a time */
    return gguf_writer_add_deferred(w, t->name, kept_f32(t) ? GGML_F32 : type, t->n_dims, t->ne);
}

/* GgufFill: model tensor `name`'s current values in the file's layout, encoded as `type`. */
static PeftcStatus fill_tensor(void *user, const char *name, GgmlType type, void *dst, size_t nbytes) {
    const Model *m = user;
    ModelGgufTensor where;
    size_t n = nbytes / ggml_block_bytes(type); /* F32, F16 or BF16: one element per block */
    real_t *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return PEFTC_ERR(PEFTC_ENOMEM, "out of memory for tensor '%s'", name);
    PeftcStatus st = m->ops->gguf_tensor(m, name, &where, v);
    if (st == PEFTC_OK) gguf_encode_real(type, v, n, dst);
    free(v);
    return st;
}

static PeftcStatus write_tensors(GgufWriter *w, const Model *m, const GgufFile *g, GgmlType type,
                                 const char *out_path) {
    int *written = calloc((size_t)(m->n_refs ? m->n_refs : 1), sizeof *written);
    if (!written) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", out_path);
    PeftcStatus st = PEFTC_OK;
    for (int64_t i = 0; i < g->n_tensors && st == PEFTC_OK; i++)
        st = write_tensor(w, m, g->file.path, &g->tensors[i], type, written, out_path);
    for (int i = 0; i < m->n_refs && st == PEFTC_OK; i++)
        if (!written[i])
            st = PEFTC_ERR(PEFTC_EINVAL, "%s: no tensor of the file is the model's %s, so %s would lack it: the base "
                           "must be the GGUF file the model was loaded from", g->file.path, m->refs[i].name, out_path);
    free(written);
    return st;
}

/* out_path's folder, made when missing (as the HF writer makes its folder). */
static PeftcStatus make_parent(const char *out_path) {
    char dir[1024];
    const char *slash = strrchr(out_path, '/');
    if (!slash || slash == out_path) return PEFTC_OK;
    if ((size_t)(slash - out_path) >= sizeof dir)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: the path is longer than %zu bytes", out_path, sizeof dir - 1);
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - out_path), out_path);
    return fs_mkdir_p(dir);
}

PeftcStatus model_save_gguf(const Model *m, const char *base_gguf, const char *out_path, GgmlType type) {
    if (gguf_file_type_of(type) < 0)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: a model saved from %s is written as F32, F16 or BF16, not %s", out_path,
                         base_gguf, ggml_type_name(type));
    if (m->quantized)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: the model's base is kept quantized (model.quantized): load %s dense "
                         "(model.quantized=false) to write it as GGUF", out_path, base_gguf);
    if (!m->ops->gguf_tensor)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: a %s model has no GGUF layout to be written in", out_path,
                         m->ops->family);
    GgufFile g;
    PEFTC_TRY(gguf_open(&g, base_gguf));
    GgufWriter *w = gguf_writer_new();
    PeftcStatus st = w ? check_arch(&g, m, out_path) : PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", out_path);
    if (st == PEFTC_OK) st = copy_metadata(w, &g, type);
    if (st == PEFTC_OK) st = write_tensors(w, m, &g, type, out_path);
    if (st == PEFTC_OK) st = make_parent(out_path);
    if (st == PEFTC_OK) st = gguf_writer_write_filled(w, out_path, fill_tensor, (void *)m);
    gguf_writer_free(w);
    gguf_close(&g);
    return st;
}
