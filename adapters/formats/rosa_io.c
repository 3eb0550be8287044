#include "adapters/formats/rosa_io.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/backend/backend.h"
#include "core/formats/safetensors.h"
#include "adapters/rosa.h"

static void tensor_name(char *buf, size_t n, const Adapter *a, const char *part) {
    snprintf(buf, n, "base_model.model.%s.rosa_S.%s", a->name, part);
}

static PeftcStatus add_layer(StWriter *w, const Adapter *a, const char *path) {
    if (!rosa_has_mask(a)) return PEFTC_ERR(PEFTC_ESTATE, "%s: RoSA layer %s has no mask yet", path, a->name);
    size_t nnz = (size_t)rosa_layer_nnz(a);
    int32_t *row_ptr = malloc((size_t)(a->out + 1) * sizeof *row_ptr), *col_idx = malloc((nnz ? nnz : 1) * 4);
    real_t *values = malloc((nnz ? nnz : 1) * sizeof *values);
    PeftcStatus st = row_ptr && col_idx && values
                         ? rosa_export_sparse(a, row_ptr, col_idx, values)
                         : PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for %zu nonzeros of %s", path, nnz, a->name);
    char name[256];
    Shape rp = shape1(a->out + 1), nz = shape1((int64_t)nnz);
    tensor_name(name, sizeof name, a, "row_ptr");
    if (st == PEFTC_OK) st = st_writer_add_i32(w, name, &rp, row_ptr);
    tensor_name(name, sizeof name, a, "col_idx");
    if (st == PEFTC_OK) st = st_writer_add_i32(w, name, &nz, col_idx);
    tensor_name(name, sizeof name, a, "values");
    if (st == PEFTC_OK) st = st_writer_add(w, name, ST_F32, &nz, values);
    free(row_ptr);
    free(col_idx);
    free(values);
    return st;
}

PeftcStatus rosa_save_sparse(const Model *m, const char *path) {
    StWriter *w = st_writer_new();
    if (!w) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for the writer", path);
    PeftcStatus st = st_writer_meta(w, "format", "peftc-rosa");
    for (int i = 0; i < m->n_linears && st == PEFTC_OK; i++) {
        const Linear *l = m->linears[i];
        if (l->adapter && rosa_is(l->adapter)) st = add_layer(w, l->adapter, path);
    }
    if (st == PEFTC_OK) st = st_write(w, path);
    st_writer_free(w);
    return st;
}

static const StTensor *need(const StFile *f, const Adapter *a, const char *part) {
    char name[256];
    tensor_name(name, sizeof name, a, part);
    const StTensor *t = st_find(f, name);
    if (!t) PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' is missing (RoSA layer %s)", f->file.path, name, a->name);
    return t;
}

/* row_ptr runs from 0 to nnz without decreasing: checked in full before any col_idx is placed by it. */
static PeftcStatus check_row_ptr(const StFile *f, const Adapter *a, const int32_t *row_ptr, int64_t nnz) {
    if (row_ptr[0] != 0 || row_ptr[a->out] != nnz)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: RoSA layer %s: row_ptr must run from 0 to nnz %lld, got %d to %d",
                         f->file.path, a->name, (long long)nnz, row_ptr[0], row_ptr[a->out]);
    for (int r = 0; r < a->out; r++)
        if (row_ptr[r] > row_ptr[r + 1])
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: RoSA layer %s: row_ptr decreases at row %d (%d then %d)",
                             f->file.path, a->name, r, row_ptr[r], row_ptr[r + 1]);
    return PEFTC_OK;
}

/* One layer: the pattern as flat indices row * in + col, then the mask (and values). */
static PeftcStatus load_layer(const StFile *f, Adapter *a, Arena *arena, int with_values) {
    const StTensor *trp = need(f, a, "row_ptr"), *tci = trp ? need(f, a, "col_idx") : NULL;
    if (!trp || !tci) return PEFTC_EFORMAT;
    int64_t nnz = tci->shape.ndim == 1 ? tci->shape.dim[0] : -1;
    /* The count is the layer's (rosa.density), so a file made for another density is refused here,
     * before anything is sized by it. */
    if (nnz != rosa_layer_nnz(a))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has %lld entries, expected a 1-D list of the %lld non-zeros "
                         "of RoSA layer %s (a mask made with another rosa.density?)", f->file.path, tci->name,
                         (long long)(tci->shape.ndim == 1 ? nnz : shape_numel(&tci->shape)),
                         (long long)rosa_layer_nnz(a), a->name);
    Shape rp = shape1(a->out + 1), nz = shape1(nnz);
    int32_t *row_ptr = malloc((size_t)(a->out + 1) * sizeof *row_ptr), *col = malloc((size_t)(nnz > 0 ? nnz : 1) * 4);
    int64_t *flat = malloc((size_t)(nnz > 0 ? nnz : 1) * sizeof *flat);
    PeftcStatus st = row_ptr && col && flat ? PEFTC_OK
                                            : PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for RoSA layer %s",
                                                        f->file.path, a->name);
    if (st == PEFTC_OK) st = st_read_i32(f, trp, &rp, row_ptr);
    if (st == PEFTC_OK) st = st_read_i32(f, tci, &nz, col);
    if (st == PEFTC_OK) st = check_row_ptr(f, a, row_ptr, nnz);
    for (int r = 0; st == PEFTC_OK && r < a->out; r++)
        for (int32_t j = row_ptr[r]; j < row_ptr[r + 1]; j++) {
            if (col[j] < 0 || col[j] >= a->in) {
                st = PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s'[%d] = %d is outside the %d columns of RoSA layer %s",
                               f->file.path, tci->name, j, col[j], a->in, a->name);
                break;
            }
            flat[j] = (int64_t)r * a->in + col[j];
        }
    if (st == PEFTC_OK && (st = rosa_set_mask(a, flat, nnz)) == PEFTC_EINVAL) {
        /* what is left for it to refuse (a repeated column) is the file's content */
        char msg[384];
        snprintf(msg, sizeof msg, "%s", peftc_err_msg());
        st = PEFTC_ERR(PEFTC_EFORMAT, "%s: %s", f->file.path, msg);
    }
    if (st == PEFTC_OK && with_values) {
        char entry[ARENA_NAME_MAX];
        snprintf(entry, sizeof entry, "%s.rosa_values", a->name);
        int h = arena_find(arena, entry);
        const StTensor *tv = need(f, a, "values");
        real_t *dst = h >= 0 ? arena_param(arena, h) : NULL, *host = dst ? backend_host_begin(arena->be, dst, (size_t)nnz) : NULL;
        if (!tv) st = PEFTC_EFORMAT;
        else if (nnz > 0 && !host) st = PEFTC_ERR(PEFTC_ESTATE, "%s: the arena has no %s", f->file.path, entry);
        else if (nnz > 0) {
            st = st_read_real(f, tv, &nz, host);
            if (st == PEFTC_OK) backend_host_done(arena->be, dst, host, (size_t)nnz);
            else if (host != dst) free(host);
        }
    }
    free(row_ptr);
    free(col);
    free(flat);
    return st;
}

PeftcStatus rosa_load_sparse(Model *m, Arena *arena, const char *path, int with_values) {
    StFile f;
    PEFTC_TRY(st_open(&f, path));
    PeftcStatus st = PEFTC_OK;
    for (int i = 0; i < m->n_linears && st == PEFTC_OK; i++) {
        Linear *l = m->linears[i];
        if (l->adapter && rosa_is(l->adapter)) st = load_layer(&f, l->adapter, arena, with_values);
    }
    st_close(&f);
    return st;
}
