/* GGUF parsing. A cursor walks the map and checks every length against the bytes left before reading,
 * so no field, however corrupt, can make a read run past the end of the map. */
#include "core/formats/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/formats/quant.h"

typedef struct {
    const uint8_t *base;
    size_t size, pos;
    const char *path;
} Cursor;

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static size_t left(const Cursor *c) { return c->size - c->pos; }

/* `what` names the field, e.g. "the value of key 'llama.block_count'". */
static PeftcStatus need(const Cursor *c, uint64_t n, const char *what) {
    if (n > left(c))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: truncated: %s needs %llu bytes at offset %zu, the file has %zu bytes",
                         c->path, what, (unsigned long long)n, c->pos, c->size);
    return PEFTC_OK;
}

static PeftcStatus rd_u32(Cursor *c, uint32_t *v, const char *what) {
    PEFTC_TRY(need(c, 4, what));
    *v = le32(c->base + c->pos);
    c->pos += 4;
    return PEFTC_OK;
}

static PeftcStatus rd_u64(Cursor *c, uint64_t *v, const char *what) {
    PEFTC_TRY(need(c, 8, what));
    *v = le64(c->base + c->pos);
    c->pos += 8;
    return PEFTC_OK;
}

static PeftcStatus rd_str(Cursor *c, GgufStr *s, const char *what) {
    uint64_t len;
    PEFTC_TRY(rd_u64(c, &len, what));
    PEFTC_TRY(need(c, len, what));
    s->ptr = (const char *)c->base + c->pos;
    s->len = len;
    c->pos += (size_t)len;
    return PEFTC_OK;
}

static const char *gguf_type_name(GgufType t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* Bytes of one value of a fixed-size type; 0 for string, array and unknown types. */
static size_t fixed_size(GgufType t) {
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

static PeftcStatus rd_type(Cursor *c, GgufType *t, const char *what) {
    uint32_t v;
    PEFTC_TRY(rd_u32(c, &v, what));
    if (v > GGUF_F64)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s has unknown value type %u (expected 0..12)", c->path, what, v);
    *t = (GgufType)v;
    return PEFTC_OK;
}

/* Skips `count` values of type t (not an array) after checking they fit. */
static PeftcStatus skip_values(Cursor *c, GgufType t, uint64_t count, const char *what) {
    size_t sz = fixed_size(t);
    if (sz) {
        if (count > left(c) / sz)
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s holds %llu %s values, more than the %zu bytes left can hold",
                             c->path, what, (unsigned long long)count, gguf_type_name(t), left(c));
        c->pos += (size_t)count * sz;
        return PEFTC_OK;
    }
    if (count > left(c) / 8) /* every string takes at least its 8-byte length */
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s holds %llu strings, more than the %zu bytes left can hold", c->path,
                         what, (unsigned long long)count, left(c));
    GgufStr s;
    for (uint64_t i = 0; i < count; i++) PEFTC_TRY(rd_str(c, &s, what));
    return PEFTC_OK;
}

static PeftcStatus read_kv(Cursor *c, GgufKV *kv, int64_t index) {
    char what[160];
    snprintf(what, sizeof what, "the key of metadata entry %lld", (long long)index);
    PEFTC_TRY(rd_str(c, &kv->key, what));
    snprintf(what, sizeof what, "the value of key '%.*s'", (int)(kv->key.len > 100 ? 100 : kv->key.len), kv->key.ptr);
    PEFTC_TRY(rd_type(c, &kv->type, what));
    kv->count = 1;
    if (kv->type == GGUF_ARRAY) {
        PEFTC_TRY(rd_type(c, &kv->elem_type, what));
        if (kv->elem_type == GGUF_ARRAY)
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s is an array of arrays, which is not supported", c->path, what);
        PEFTC_TRY(rd_u64(c, &kv->count, what));
        kv->raw = c->base + c->pos;
        PEFTC_TRY(skip_values(c, kv->elem_type, kv->count, what));
    } else {
        kv->raw = c->base + c->pos;
        PEFTC_TRY(skip_values(c, kv->type, 1, what));
    }
    kv->nbytes = (uint64_t)(c->base + c->pos - kv->raw);
    return PEFTC_OK;
}

static int cmp_kv_key(const void *a, const void *b) {
    const GgufKV *x = *(const GgufKV *const *)a, *y = *(const GgufKV *const *)b;
    uint64_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
    int r = n ? memcmp(x->key.ptr, y->key.ptr, (size_t)n) : 0;
    return r ? r : (x->key.len > y->key.len) - (x->key.len < y->key.len);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const GgufTensor *const *)a)->name, (*(const GgufTensor *const *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const GgufTensor *x = *(const GgufTensor *const *)a, *y = *(const GgufTensor *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* *order = pointers to the n items sorted with cmp (the caller frees it): duplicate and overlap checks
 * then compare neighbours only, so a file with millions of entries cannot make them quadratic. */
static PeftcStatus sorted_view(const void *items, size_t item_size, int64_t n, int (*cmp)(const void *, const void *),
                               const void ***order) {
    *order = malloc((size_t)(n ? n : 1) * sizeof **order);
    if (!*order) return PEFTC_ERR(PEFTC_ENOMEM, "out of memory sorting %lld GGUF entries", (long long)n);
    for (int64_t i = 0; i < n; i++) (*order)[i] = (const uint8_t *)items + (size_t)i * item_size;
    qsort(*order, (size_t)n, sizeof **order, cmp);
    return PEFTC_OK;
}

static PeftcStatus check_unique_keys(const GgufFile *g) {
    const void **o;
    PEFTC_TRY(sorted_view(g->kv, sizeof *g->kv, g->n_kv, cmp_kv_key, &o));
    for (int64_t i = 0; i + 1 < g->n_kv; i++) {
        if (cmp_kv_key(&o[i], &o[i + 1]) == 0) {
            const GgufKV *kv = o[i];
            PeftcStatus st = PEFTC_ERR(PEFTC_EFORMAT, "%s: metadata key '%.*s' appears more than once", g->file.path,
                                       (int)(kv->key.len > 100 ? 100 : kv->key.len), kv->key.ptr);
            free(o);
            return st;
        }
    }
    free(o);
    return PEFTC_OK;
}

static PeftcStatus read_alignment(GgufFile *g) {
    g->alignment = 32;
    const GgufKV *kv = gguf_find(g, "general.alignment");
    if (!kv) return PEFTC_OK;
    if (kv->type != GGUF_U32)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: general.alignment has type %s, expected u32", g->file.path,
                         gguf_type_name(kv->type));
    uint32_t a = le32(kv->raw);
    if (a == 0 || (a & (a - 1)))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: general.alignment is %u, expected a power of two", g->file.path, a);
    g->alignment = a;
    return PEFTC_OK;
}

/* Name, dimensions and type; the byte size follows from them. */
static PeftcStatus read_tensor_shape(Cursor *c, GgufTensor *t, int64_t index) {
    char what[200];
    GgufStr name;
    snprintf(what, sizeof what, "the name of tensor %lld", (long long)index);
    PEFTC_TRY(rd_str(c, &name, what));
    if (name.len >= sizeof t->name || memchr(name.ptr, 0, (size_t)name.len))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor %lld has a name of %llu bytes, expected at most %zu without NUL",
                         c->path, (long long)index, (unsigned long long)name.len, sizeof t->name - 1);
    memcpy(t->name, name.ptr, (size_t)name.len);
    snprintf(what, sizeof what, "the info of tensor '%s'", t->name);
    uint32_t n_dims;
    PEFTC_TRY(rd_u32(c, &n_dims, what));
    if (n_dims > 4)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has %u dimensions, expected at most 4", c->path, t->name, n_dims);
    t->n_dims = (int)n_dims;
    int64_t numel = 1;
    for (int d = 0; d < 4; d++) {
        uint64_t ne = 1;
        if (d < t->n_dims) PEFTC_TRY(rd_u64(c, &ne, what));
        if (ne > (uint64_t)INT64_MAX || (ne && numel > INT64_MAX / (int64_t)ne))
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': dimension %d (%llu) makes the element count overflow",
                             c->path, t->name, d, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
        numel *= (int64_t)ne;
    }
    uint32_t type;
    PEFTC_TRY(rd_u32(c, &type, what));
    t->type = (GgmlType)type;
    int be = ggml_block_elems(t->type);
    if (!be)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has unknown ggml type %u", c->path, t->name, type);
    if (t->ne[0] % be)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' of type %s has rows of %lld elements, expected a multiple of %d",
                         c->path, t->name, ggml_type_name(t->type), (long long)t->ne[0], be);
    uint64_t blocks = (uint64_t)(numel / be), bb = ggml_block_bytes(t->type);
    if (blocks > UINT64_MAX / bb)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' byte size overflows", c->path, t->name);
    t->nbytes = blocks * bb;
    return PEFTC_OK;
}

static PeftcStatus read_tensor_info(Cursor *c, GgufTensor *t, int64_t index, uint64_t alignment) {
    PEFTC_TRY(read_tensor_shape(c, t, index));
    char what[200];
    snprintf(what, sizeof what, "the offset of tensor '%s'", t->name);
    PEFTC_TRY(rd_u64(c, &t->offset, what));
    if (t->offset % alignment)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has offset %llu, expected a multiple of the alignment %llu",
                         c->path, t->name, (unsigned long long)t->offset, (unsigned long long)alignment);
    return PEFTC_OK;
}

/* Every tensor inside the data section, none overlapping another. */
static PeftcStatus place_tensors(GgufFile *g, size_t data_start) {
    const char *path = g->file.path;
    uint64_t data_size = g->file.size - data_start;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        GgufTensor *t = &g->tensors[i];
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return PEFTC_ERR(PEFTC_EFORMAT,
                             "%s: tensor '%s' (%llu bytes at data offset %llu) runs past the end of the file (data "
                             "section of %llu bytes)",
                             path, t->name, (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                             (unsigned long long)data_size);
        t->data = g->file.data + data_start + t->offset;
    }
    const void **o;
    PEFTC_TRY(sorted_view(g->tensors, sizeof *g->tensors, g->n_tensors, cmp_tensor_offset, &o));
    PeftcStatus st = PEFTC_OK;
    for (int64_t i = 0; i + 1 < g->n_tensors && st == PEFTC_OK; i++) {
        const GgufTensor *a = o[i], *b = o[i + 1];
        if (a->offset + a->nbytes > b->offset)
            st = PEFTC_ERR(PEFTC_EFORMAT, "%s: tensors '%s' and '%s' overlap in the data section", path, a->name,
                           b->name);
    }
    free(o);
    return st;
}

static PeftcStatus check_unique_tensors(const GgufFile *g) {
    const void **o;
    PEFTC_TRY(sorted_view(g->tensors, sizeof *g->tensors, g->n_tensors, cmp_tensor_name, &o));
    PeftcStatus st = PEFTC_OK;
    for (int64_t i = 0; i + 1 < g->n_tensors && st == PEFTC_OK; i++)
        if (cmp_tensor_name(&o[i], &o[i + 1]) == 0)
            st = PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' appears more than once", g->file.path,
                           ((const GgufTensor *)o[i])->name);
    free(o);
    return st;
}

static PeftcStatus read_header(Cursor *c, GgufFile *g, uint64_t *n_tensors, uint64_t *n_kv) {
    PEFTC_TRY(need(c, 4, "the magic"));
    if (memcmp(c->base, "GGUF", 4) != 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: not a GGUF file (the first 4 bytes are not \"GGUF\")", c->path);
    c->pos = 4;
    PEFTC_TRY(rd_u32(c, &g->version, "the version"));
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0 && g->version)
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: big-endian GGUF is not supported", c->path);
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: GGUF version %u is not supported (expected 2 or 3)", c->path, g->version);
    }
    PEFTC_TRY(rd_u64(c, n_tensors, "the tensor count"));
    PEFTC_TRY(rd_u64(c, n_kv, "the metadata count"));
    /* The smallest metadata entry takes 13 bytes and the smallest tensor info 24. */
    if (*n_kv > left(c) / 13 || *n_tensors > left(c) / 24)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: header claims %llu metadata entries and %llu tensors, more than the %zu "
                         "bytes of the file can hold", c->path, (unsigned long long)*n_kv,
                         (unsigned long long)*n_tensors, c->size);
    return PEFTC_OK;
}

/* items (cap entries of `size` bytes) doubled, the new part zeroed; NULL (items untouched) when out of
 * memory. The header's counts are only bounded by the file size, and an entry in memory is up to 8
 * times its smallest form on disk, so the arrays grow with the entries actually read rather than being
 * sized by a count up front. */
static void *grown(void *items, int64_t *cap, size_t size) {
    int64_t n = *cap ? 2 * *cap : 64;
    uint8_t *p = realloc(items, (size_t)n * size);
    if (!p) return NULL;
    memset(p + (size_t)*cap * size, 0, (size_t)(n - *cap) * size);
    *cap = n;
    return p;
}

static PeftcStatus parse(GgufFile *g) {
    Cursor c = {g->file.data, g->file.size, 0, g->file.path};
    uint64_t n_tensors, n_kv;
    int64_t cap_kv = 0, cap_tensors = 0;
    PEFTC_TRY(read_header(&c, g, &n_tensors, &n_kv));
    for (; g->n_kv < (int64_t)n_kv; g->n_kv++) {
        GgufKV *kv = g->n_kv < cap_kv ? g->kv : grown(g->kv, &cap_kv, sizeof *g->kv);
        if (!kv) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for metadata entry %lld", c.path, (long long)g->n_kv);
        g->kv = kv;
        PEFTC_TRY(read_kv(&c, &g->kv[g->n_kv], g->n_kv));
    }
    PEFTC_TRY(check_unique_keys(g));
    PEFTC_TRY(read_alignment(g));
    for (; g->n_tensors < (int64_t)n_tensors; g->n_tensors++) {
        GgufTensor *t = g->n_tensors < cap_tensors ? g->tensors : grown(g->tensors, &cap_tensors, sizeof *g->tensors);
        if (!t) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for tensor info %lld", c.path, (long long)g->n_tensors);
        g->tensors = t;
        PEFTC_TRY(read_tensor_info(&c, &g->tensors[g->n_tensors], g->n_tensors, g->alignment));
    }
    PEFTC_TRY(check_unique_tensors(g));
    size_t data_start = c.pos + (size_t)((g->alignment - c.pos % g->alignment) % g->alignment);
    if (n_tensors && data_start > c.size)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: truncated: the data section should start at offset %zu, the file has "
                         "%zu bytes", c.path, data_start, c.size);
    return place_tensors(g, n_tensors ? data_start : c.size);
}

PeftcStatus gguf_open(GgufFile *g, const char *path) {
    memset(g, 0, sizeof *g);
    PEFTC_TRY(mapped_open(&g->file, path));
    PeftcStatus st = parse(g);
    if (st != PEFTC_OK) gguf_close(g);
    return st;
}

void gguf_close(GgufFile *g) {
    mapped_close(&g->file);
    free(g->kv);
    free(g->tensors);
    memset(g, 0, sizeof *g);
}

const GgufKV *gguf_find(const GgufFile *g, const char *key) {
    size_t n = strlen(key);
    for (int64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.len == n && memcmp(g->kv[i].key.ptr, key, n) == 0) return &g->kv[i];
    return NULL;
}

const GgufTensor *gguf_tensor(const GgufFile *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

/* ---- typed access ---- */

static PeftcStatus wrong_type(const GgufFile *g, const char *key, const GgufKV *kv, const char *expected) {
    if (kv->type == GGUF_ARRAY)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: metadata '%s' is an array of %s, expected %s", g->file.path, key,
                         gguf_type_name(kv->elem_type), expected);
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: metadata '%s' has type %s, expected %s", g->file.path, key,
                     gguf_type_name(kv->type), expected);
}

static PeftcStatus lookup(const GgufFile *g, const char *key, const GgufKV **kv) {
    *kv = gguf_find(g, key);
    if (!*kv) return PEFTC_ERR(PEFTC_EFORMAT, "%s: metadata key '%s' is missing", g->file.path, key);
    return PEFTC_OK;
}

/* Integer value of any integer type as sign + magnitude; returns 0 if kv is not an integer. */
static int int_value(GgufType t, const uint8_t *p, int *neg, uint64_t *mag) {
    int64_t s;
    *neg = 0;
    switch (t) {
    case GGUF_U8: *mag = p[0]; return 1;
    case GGUF_U16: *mag = (uint64_t)(p[0] | p[1] << 8); return 1;
    case GGUF_U32: *mag = le32(p); return 1;
    case GGUF_U64: *mag = le64(p); return 1;
    case GGUF_I8: s = (int8_t)p[0]; break;
    case GGUF_I16: s = (int16_t)(uint16_t)(p[0] | p[1] << 8); break;
    case GGUF_I32: s = (int32_t)le32(p); break;
    case GGUF_I64: s = (int64_t)le64(p); break;
    default: return 0;
    }
    *neg = s < 0;
    *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return 1;
}

PeftcStatus gguf_get_u32(const GgufFile *g, const char *key, uint32_t *out) {
    const GgufKV *kv;
    PEFTC_TRY(lookup(g, key, &kv));
    int neg;
    uint64_t mag;
    if (kv->type == GGUF_ARRAY || !int_value(kv->type, kv->raw, &neg, &mag)) return wrong_type(g, key, kv, "an integer");
    if (neg || mag > UINT32_MAX)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: metadata '%s' is %s%llu, expected a value in 0..%u", g->file.path, key,
                         neg ? "-" : "", (unsigned long long)mag, UINT32_MAX);
    *out = (uint32_t)mag;
    return PEFTC_OK;
}

PeftcStatus gguf_get_f32(const GgufFile *g, const char *key, float *out) {
    const GgufKV *kv;
    PEFTC_TRY(lookup(g, key, &kv));
    if (kv->type == GGUF_F32) {
        uint32_t u = le32(kv->raw);
        memcpy(out, &u, sizeof *out);
    } else if (kv->type == GGUF_F64) {
        uint64_t u = le64(kv->raw);
        double d;
        memcpy(&d, &u, sizeof d);
        *out = (float)d;
    } else {
        return wrong_type(g, key, kv, "f32");
    }
    return PEFTC_OK;
}

PeftcStatus gguf_get_bool(const GgufFile *g, const char *key, int *out) {
    const GgufKV *kv;
    PEFTC_TRY(lookup(g, key, &kv));
    if (kv->type != GGUF_BOOL) return wrong_type(g, key, kv, "bool");
    *out = kv->raw[0] != 0;
    return PEFTC_OK;
}

PeftcStatus gguf_get_str(const GgufFile *g, const char *key, GgufStr *out) {
    const GgufKV *kv;
    PEFTC_TRY(lookup(g, key, &kv));
    if (kv->type != GGUF_STRING) return wrong_type(g, key, kv, "string");
    out->len = le64(kv->raw);
    out->ptr = (const char *)kv->raw + 8;
    return PEFTC_OK;
}

PeftcStatus gguf_get_u32_or(const GgufFile *g, const char *key, uint32_t dflt, uint32_t *out) {
    if (!gguf_find(g, key)) {
        *out = dflt;
        return PEFTC_OK;
    }
    return gguf_get_u32(g, key, out);
}

PeftcStatus gguf_get_f32_or(const GgufFile *g, const char *key, float dflt, float *out) {
    if (!gguf_find(g, key)) {
        *out = dflt;
        return PEFTC_OK;
    }
    return gguf_get_f32(g, key, out);
}

PeftcStatus gguf_get_bool_or(const GgufFile *g, const char *key, int dflt, int *out) {
    if (!gguf_find(g, key)) {
        *out = dflt;
        return PEFTC_OK;
    }
    return gguf_get_bool(g, key, out);
}

PeftcStatus gguf_get_str_array(const GgufFile *g, const char *key, GgufStr **items, uint64_t *count) {
    const GgufKV *kv;
    *items = NULL;
    *count = 0;
    PEFTC_TRY(lookup(g, key, &kv));
    if (kv->type != GGUF_ARRAY || kv->elem_type != GGUF_STRING) return wrong_type(g, key, kv, "an array of strings");
    GgufStr *s = malloc((size_t)(kv->count ? kv->count : 1) * sizeof *s);
    if (!s) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for %llu strings of '%s'", g->file.path,
                             (unsigned long long)kv->count, key);
    const uint8_t *p = kv->raw; /* lengths were checked against the file by gguf_open */
    for (uint64_t i = 0; i < kv->count; i++) {
        s[i].len = le64(p);
        s[i].ptr = (const char *)p + 8;
        p += 8 + s[i].len;
    }
    *items = s;
    *count = kv->count;
    return PEFTC_OK;
}

PeftcStatus gguf_get_i32_array(const GgufFile *g, const char *key, int32_t **items, uint64_t *count) {
    const GgufKV *kv;
    *items = NULL;
    *count = 0;
    PEFTC_TRY(lookup(g, key, &kv));
    if (kv->type != GGUF_ARRAY || (kv->elem_type != GGUF_I32 && kv->elem_type != GGUF_U32))
        return wrong_type(g, key, kv, "an array of i32");
    int32_t *v = malloc((size_t)(kv->count ? kv->count : 1) * sizeof *v);
    if (!v) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for %llu values of '%s'", g->file.path,
                             (unsigned long long)kv->count, key);
    for (uint64_t i = 0; i < kv->count; i++) {
        uint32_t u = le32(kv->raw + 4 * i);
        if (kv->elem_type == GGUF_U32 && u > INT32_MAX) {
            free(v);
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: metadata '%s'[%llu] is %u, expected at most %d", g->file.path, key,
                             (unsigned long long)i, u, INT32_MAX);
        }
        v[i] = (int32_t)u;
    }
    *items = v;
    *count = kv->count;
    return PEFTC_OK;
}
