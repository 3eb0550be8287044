/* Checkpoint files (layout in checkpoint.h). */
#include "core/train/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/formats/h5util.h"
#include "core/base/mapped.h"

#define CKPT_FORMAT "peftc-checkpoint"
#define CKPT_DIMS TENSOR_MAX_DIMS

static hid_t real_type(void) { return sizeof(real_t) == 8 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT; }
static const char *real_name(void) { return sizeof(real_t) == 8 ? "float64" : "float32"; }

static hid_t kind_type(CkptKind k) {
    if (k == CKPT_I32) return H5T_NATIVE_INT32;
    if (k == CKPT_I64) return H5T_NATIVE_INT64;
    return k == CKPT_U8 ? H5T_NATIVE_UINT8 : real_type();
}
size_t ckpt_kind_size(CkptKind k) { return k == CKPT_I32 ? 4 : k == CKPT_I64 ? 8 : k == CKPT_U8 ? 1 : sizeof(real_t); }

static PeftcStatus write_meta(hid_t f, const char *path, const CkptMeta *m) {
    int64_t version = CKPT_VERSION, seed = (int64_t)m->seed, world = m->world;
    PEFTC_TRY(h5_attr_str(f, path, "format", CKPT_FORMAT));
    PEFTC_TRY(h5_attr_i64(f, path, "version", &version, 1));
    PEFTC_TRY(h5_attr_i64(f, path, "step", &m->step, 1));
    PEFTC_TRY(h5_attr_i64(f, path, "cursor", &m->cursor, 1));
    PEFTC_TRY(h5_attr_i64(f, path, "seed", &seed, 1));
    PEFTC_TRY(h5_attr_i64(f, path, "global_batch", &m->global_batch, 1));
    PEFTC_TRY(h5_attr_i64(f, path, "world", &world, 1));
    PEFTC_TRY(h5_attr_str(f, path, "method", m->method));
    PEFTC_TRY(h5_attr_str(f, path, "base_model", m->base_model));
    PEFTC_TRY(h5_attr_str(f, path, "base_hash", m->base_hash));
    return h5_attr_str(f, path, "config", m->config ? m->config : "");
}

/* The registry as attributes of /arena: names, offsets, numel, rank, dims. */
static PeftcStatus write_registry(hid_t f, const char *path, const Arena *a) {
    size_t n = (size_t)a->n_entries;
    char *names = calloc(n ? n : 1, ARENA_NAME_MAX);
    int64_t *ints = calloc((n ? n : 1) * (3 + CKPT_DIMS), sizeof *ints);
    int64_t *off = ints, *numel = ints + n, *rank = ints + 2 * n, *dims = ints + 3 * n;
    PeftcStatus st = !names || !ints ? PEFTC_ERR(PEFTC_ENOMEM, "checkpoint '%s': out of memory", path)
                                     : h5_make_groups(f, path, "/arena", strlen("/arena"));
    hid_t g = st == PEFTC_OK ? H5Gopen2(f, "/arena", H5P_DEFAULT) : -1;
    if (st == PEFTC_OK && g < 0) st = PEFTC_ERR(PEFTC_EIO, "checkpoint '%s': cannot open group '/arena'", path);
    for (size_t i = 0; st == PEFTC_OK && i < n; i++) {
        const ArenaEntry *e = &a->entries[i];
        snprintf(names + i * ARENA_NAME_MAX, ARENA_NAME_MAX, "%s", e->name);
        off[i] = (int64_t)e->offset;
        numel[i] = (int64_t)e->numel;
        rank[i] = e->shape.ndim;
        for (int d = 0; d < CKPT_DIMS; d++) dims[i * CKPT_DIMS + d] = d < e->shape.ndim ? e->shape.dim[d] : 0;
    }
    int64_t total = (int64_t)a->numel;
    if (st == PEFTC_OK) st = h5_attr_strs(g, path, "names", names, n, ARENA_NAME_MAX);
    if (st == PEFTC_OK) st = h5_attr_i64(g, path, "offsets", off, n);
    if (st == PEFTC_OK) st = h5_attr_i64(g, path, "numel", numel, n);
    if (st == PEFTC_OK) st = h5_attr_i64(g, path, "rank", rank, n);
    if (st == PEFTC_OK) st = h5_attr_i64(g, path, "dims", dims, n * CKPT_DIMS);
    if (st == PEFTC_OK) st = h5_attr_i64(g, path, "total", &total, 1);
    if (st == PEFTC_OK) st = h5_attr_str(g, path, "precision", real_name());
    if (g >= 0) H5Gclose(g);
    free(names);
    free(ints);
    return st;
}

/* One arena buffer as a dataset; device memory goes through a host copy. */
static PeftcStatus write_buffer(hid_t f, const char *path, const char *ds, const Arena *a, const real_t *buf) {
    const real_t *host = buf;
    if (a->be->device != DEV_CPU) {
        real_t *tmp = malloc((a->numel ? a->numel : 1) * sizeof *tmp);
        if (!tmp) return PEFTC_ERR(PEFTC_ENOMEM, "checkpoint '%s': no host memory for '%s'", path, ds);
        a->be->download(a->be, tmp, buf, a->numel * sizeof *tmp);
        host = tmp;
    }
    PeftcStatus st = h5_write_array(f, path, ds, real_type(), host, a->numel, sizeof(real_t));
    if (host != buf) free((void *)host);
    return st;
}

static PeftcStatus write_all(hid_t f, const char *path, const CkptMeta *m, const Arena *a, const CkptBlob *blobs,
                             int n_blobs) {
    PEFTC_TRY(write_meta(f, path, m));
    PEFTC_TRY(write_registry(f, path, a));
    PEFTC_TRY(write_buffer(f, path, "/arena/params", a, a->params));
    PEFTC_TRY(write_buffer(f, path, "/arena/m", a, a->m));
    PEFTC_TRY(write_buffer(f, path, "/arena/v", a, a->v));
    for (int i = 0; i < n_blobs; i++) {
        char ds[600];
        snprintf(ds, sizeof ds, "/state/%s", blobs[i].name);
        PEFTC_TRY(h5_write_array(f, path, ds, kind_type(blobs[i].kind), blobs[i].data, blobs[i].n,
                                 ckpt_kind_size(blobs[i].kind)));
    }
    return PEFTC_OK;
}

/* Bytes the file will hold, so the in-memory image is allocated once. */
static size_t expected_size(const Arena *a, const CkptBlob *blobs, int n_blobs) {
    size_t n = 3 * a->numel * sizeof(real_t) + (size_t)a->n_entries * (ARENA_NAME_MAX + 64) + (1 << 16);
    for (int i = 0; i < n_blobs; i++) n += blobs[i].n * ckpt_kind_size(blobs[i].kind) + 1024;
    return n;
}

PeftcStatus ckpt_write(const char *path, const CkptMeta *meta, const Arena *a, const CkptBlob *blobs, int n_blobs) {
    h5_quiet();
    /* Built in memory (see H5Image), then written to path.tmp and renamed: a failed write leaves the
     * previous checkpoint, no temporary and no open HDF5 object behind. */
    H5Image img;
    hid_t fapl = h5_image_fapl(&img, expected_size(a, blobs, n_blobs)), fcpl = h5_untimed(H5P_FILE_CREATE);
    /* Untimed objects, so a checkpoint of the same state is the same bytes (tests compare whole files). */
    hid_t f = fapl < 0 || fcpl < 0 ? -1 : H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (f < 0) return PEFTC_ERR(PEFTC_ENOMEM, "checkpoint '%s': HDF5 cannot create the file in memory", path);
    PeftcStatus st = write_all(f, path, meta, a, blobs, n_blobs);
    if (H5Fclose(f) < 0 && st == PEFTC_OK) st = PEFTC_ERR(PEFTC_ENOMEM, "checkpoint '%s': closing failed", path);
    if (st == PEFTC_OK) st = h5_image_finish(&img, path);
    if (st == PEFTC_OK) st = fs_write_atomic(path, img.buf, img.size);
    free(img.buf);
    return st;
}

/* Opens a checkpoint for reading and checks its format and version. */
static PeftcStatus open_ckpt(const char *path, hid_t *out) {
    h5_quiet();
    if (access(path, R_OK) != 0) return PEFTC_ERR(PEFTC_EIO, "cannot read checkpoint '%s': %s", path, strerror(errno));
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s' is not a readable HDF5 file (truncated or corrupt?)", path);
    char *format = NULL;
    int64_t version = 0;
    PeftcStatus st = h5_read_attr_str(f, path, "format", &format);
    if (st == PEFTC_OK && strcmp(format, CKPT_FORMAT) != 0)
        st = PEFTC_ERR(PEFTC_EFORMAT, "'%s' is not a peftc checkpoint (format '%s', expected '%s')", path, format,
                       CKPT_FORMAT);
    if (st == PEFTC_OK) st = h5_read_attr_i64(f, path, "version", &version, 1);
    if (st == PEFTC_OK && version != CKPT_VERSION)
        st = PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s' has version %lld; this peftc reads version %d", path,
                       (long long)version, CKPT_VERSION);
    free(format);
    if (st != PEFTC_OK) {
        H5Fclose(f);
        return st;
    }
    *out = f;
    return PEFTC_OK;
}

/* Copies an attribute string into a fixed buffer, refusing one that does not fit. */
static PeftcStatus read_fixed(hid_t f, const char *path, const char *name, char *dst, size_t cap) {
    char *s = NULL;
    PEFTC_TRY(h5_read_attr_str(f, path, name, &s));
    size_t n = strlen(s);
    if (n >= cap) {
        free(s);
        return PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': attribute '%s' is longer than %zu bytes", path, name,
                         cap - 1);
    }
    memcpy(dst, s, n + 1);
    free(s);
    return PEFTC_OK;
}

static PeftcStatus read_meta(hid_t f, const char *path, CkptMeta *m) {
    memset(m, 0, sizeof *m);
    int64_t seed = 0, world = 0;
    PEFTC_TRY(h5_read_attr_i64(f, path, "step", &m->step, 1));
    PEFTC_TRY(h5_read_attr_i64(f, path, "cursor", &m->cursor, 1));
    PEFTC_TRY(h5_read_attr_i64(f, path, "seed", &seed, 1));
    PEFTC_TRY(h5_read_attr_i64(f, path, "global_batch", &m->global_batch, 1));
    PEFTC_TRY(h5_read_attr_i64(f, path, "world", &world, 1));
    m->seed = (uint64_t)seed;
    m->world = (int)world;
    PEFTC_TRY(read_fixed(f, path, "method", m->method, sizeof m->method));
    PEFTC_TRY(read_fixed(f, path, "base_model", m->base_model, sizeof m->base_model));
    PEFTC_TRY(read_fixed(f, path, "base_hash", m->base_hash, sizeof m->base_hash));
    if (m->step < 0 || m->cursor < 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': negative step %lld or cursor %lld", path,
                         (long long)m->step, (long long)m->cursor);
    return h5_read_attr_str(f, path, "config", &m->config);
}

PeftcStatus ckpt_read_meta(const char *path, CkptMeta *meta) {
    hid_t f;
    PEFTC_TRY(open_ckpt(path, &f));
    PeftcStatus st = read_meta(f, path, meta);
    if (st != PEFTC_OK) ckpt_meta_free(meta);
    H5Fclose(f);
    return st;
}

void ckpt_meta_free(CkptMeta *meta) {
    free(meta->config);
    meta->config = NULL;
}

/* The stored registry must be the arena's, tensor by tensor. */
static PeftcStatus check_registry(hid_t f, const char *path, const Arena *a) {
    hid_t g = H5Gopen2(f, "arena", H5P_DEFAULT);
    if (g < 0) return PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': group '/arena' is missing", path);
    size_t n = (size_t)a->n_entries;
    char *names = calloc(n ? n : 1, ARENA_NAME_MAX), *prec = NULL;
    int64_t *ints = calloc((n ? n : 1) * (3 + CKPT_DIMS), sizeof *ints), total = -1;
    int64_t *off = ints, *numel = ints + n, *rank = ints + 2 * n, *dims = ints + 3 * n;
    PeftcStatus st = names && ints ? PEFTC_OK : PEFTC_ERR(PEFTC_ENOMEM, "checkpoint '%s': out of memory", path);
    if (st == PEFTC_OK) st = h5_read_attr_i64(g, path, "total", &total, 1);
    if (st == PEFTC_OK) st = h5_read_attr_str(g, path, "precision", &prec);
    if (st == PEFTC_OK && strcmp(prec, real_name()) != 0)
        st = PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s' holds %s values; this build trains in %s", path, prec,
                       real_name());
    if (st == PEFTC_OK && H5Aexists(g, "names") > 0) {
        hid_t at = H5Aopen(g, "names", H5P_DEFAULT), sp = at < 0 ? -1 : H5Aget_space(at);
        hssize_t count = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
        if (sp >= 0) H5Sclose(sp);
        if (at >= 0) H5Aclose(at);
        if (count != (hssize_t)n)
            st = PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s' holds %lld trainable tensors; this run has %zu (a different "
                           "method, rank or target list?)", path, (long long)count, n);
    }
    if (st == PEFTC_OK) st = h5_read_attr_strs(g, path, "names", names, n, ARENA_NAME_MAX);
    if (st == PEFTC_OK) st = h5_read_attr_i64(g, path, "offsets", off, n);
    if (st == PEFTC_OK) st = h5_read_attr_i64(g, path, "numel", numel, n);
    if (st == PEFTC_OK) st = h5_read_attr_i64(g, path, "rank", rank, n);
    if (st == PEFTC_OK) st = h5_read_attr_i64(g, path, "dims", dims, n * CKPT_DIMS);
    for (size_t i = 0; st == PEFTC_OK && i < n; i++) {
        const ArenaEntry *e = &a->entries[i];
        int same = strcmp(names + i * ARENA_NAME_MAX, e->name) == 0 && off[i] == (int64_t)e->offset &&
                   numel[i] == (int64_t)e->numel && rank[i] == e->shape.ndim;
        for (int d = 0; same && d < e->shape.ndim && d < CKPT_DIMS; d++)
            same = dims[i * CKPT_DIMS + d] == e->shape.dim[d];
        if (!same)
            st = PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': trainable tensor %zu is '%s' with %lld values; this run "
                           "expects '%s' with %zu (a different method or adapter configuration?)", path, i,
                           names + i * ARENA_NAME_MAX, (long long)numel[i], e->name, e->numel);
    }
    if (st == PEFTC_OK && total != (int64_t)a->numel)
        st = PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': arena of %lld values, expected %zu", path, (long long)total,
                       a->numel);
    free(names);
    free(ints);
    free(prec);
    H5Gclose(g);
    return st;
}

static PeftcStatus read_buffer(hid_t f, const char *path, const char *ds, Arena *a, real_t *dst) {
    real_t *host = backend_host_begin(a->be, dst, a->numel);
    if (!host) return PEFTC_ERR(PEFTC_ENOMEM, "checkpoint '%s': no host memory for '%s'", path, ds);
    PeftcStatus st = h5_read_array(f, path, ds, real_type(), host, a->numel, sizeof(real_t));
    backend_host_done(a->be, dst, host, a->numel);
    return st;
}

PeftcStatus ckpt_read_arena(const char *path, Arena *a) {
    hid_t f;
    PEFTC_TRY(open_ckpt(path, &f));
    PeftcStatus st = check_registry(f, path, a);
    if (st == PEFTC_OK) st = read_buffer(f, path, "/arena/params", a, a->params);
    if (st == PEFTC_OK) st = read_buffer(f, path, "/arena/m", a, a->m);
    if (st == PEFTC_OK) st = read_buffer(f, path, "/arena/v", a, a->v);
    H5Fclose(f);
    return st;
}

PeftcStatus ckpt_read_blob(const char *path, const char *name, CkptKind kind, void **out, size_t *n) {
    hid_t f;
    PEFTC_TRY(open_ckpt(path, &f));
    char ds[600];
    snprintf(ds, sizeof ds, "/state/%s", name);
    PeftcStatus st = h5_array_len(f, path, ds, kind_type(kind), n);
    void *buf = st == PEFTC_OK ? malloc(*n ? *n * ckpt_kind_size(kind) : 1) : NULL;
    if (st == PEFTC_OK && !buf) st = PEFTC_ERR(PEFTC_ENOMEM, "checkpoint '%s': no memory for '%s'", path, ds);
    if (st == PEFTC_OK) st = h5_read_array(f, path, ds, kind_type(kind), buf, *n, ckpt_kind_size(kind));
    H5Fclose(f);
    if (st != PEFTC_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return PEFTC_OK;
}

typedef struct {
    const char *path;
    PeftcStatus st;
} VerifyWalk;

/* Reads one dataset whole, in its own element type, and checks its CRC. */
static PeftcStatus verify_dataset(hid_t f, const char *path, const char *name) {
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT), ft = ds < 0 ? -1 : H5Dget_type(ds);
    hid_t nt = ft < 0 ? -1 : H5Tget_native_type(ft, H5T_DIR_ASCEND);
    if (ft >= 0) H5Tclose(ft);
    if (ds >= 0) H5Dclose(ds);
    if (nt < 0) return PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': dataset '%s' cannot be opened", path, name);
    size_t n = 0, elem = H5Tget_size(nt);
    PeftcStatus st = h5_array_len(f, path, name, nt, &n);
    void *buf = st == PEFTC_OK ? malloc(n && elem ? n * elem : 1) : NULL;
    if (st == PEFTC_OK && !buf) st = PEFTC_ERR(PEFTC_ENOMEM, "checkpoint '%s': no memory for '%s'", path, name);
    if (st == PEFTC_OK) st = h5_read_array(f, path, name, nt, buf, n, elem);
    free(buf);
    H5Tclose(nt);
    return st;
}

static herr_t visit(hid_t obj, const char *name, const H5O_info_t *info, void *op_data) {
    VerifyWalk *w = op_data;
    if (info->type != H5O_TYPE_DATASET) return 0;
    char full[600]; /* absolute, as the readers and the layout in checkpoint.h name datasets */
    snprintf(full, sizeof full, "/%s", name);
    w->st = verify_dataset(obj, w->path, full);
    return w->st == PEFTC_OK ? 0 : 1;
}

PeftcStatus ckpt_verify(const char *path) {
    hid_t f;
    PEFTC_TRY(open_ckpt(path, &f));
    CkptMeta m;
    PeftcStatus st = read_meta(f, path, &m);
    ckpt_meta_free(&m);
    VerifyWalk w = {path, PEFTC_OK};
    if (st == PEFTC_OK && H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, visit, &w, H5O_INFO_BASIC) < 0)
        st = w.st != PEFTC_OK ? w.st : PEFTC_ERR(PEFTC_EFORMAT, "checkpoint '%s': its objects cannot be listed", path);
    if (st == PEFTC_OK) st = w.st;
    H5Fclose(f);
    return st;
}

PeftcStatus ckpt_file_hash(const char *path, char *out, size_t cap) {
    MappedFile mf;
    PEFTC_TRY(mapped_open(&mf, path));
    uint32_t crc = h5_crc32(mf.data, mf.size);
    snprintf(out, cap, "crc32:%08x size:%zu", crc, mf.size);
    mapped_close(&mf);
    return PEFTC_OK;
}
