#include "core/formats/gguf_write.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "core/formats/quant.h"

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} Buf;

typedef struct {
    char *key;
    Buf value; /* type tag and encoded value, as they appear after the key in the file */
} WKV;

typedef struct {
    char name[64];
    int n_dims;
    int64_t ne[4];
    GgmlType type;
    uint8_t *data; /* NULL for a deferred tensor: its bytes come from the fill callback while writing */
    size_t nbytes;
} WTensor;

struct GgufWriter {
    WKV *kv; int n_kv, cap_kv;
    WTensor *t; int n_t, cap_t;
};

static void put(Buf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

/* Explicit little-endian bytes: the format's byte order whatever the host's. */
static void put_u32(Buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}

static void put_u64(Buf *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

/* f's bits as 4 little-endian bytes at out. */
static void le_f32(uint8_t *out, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint8_t x[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    memcpy(out, x, 4);
}

static void put_f32(Buf *b, float f) {
    uint8_t x[4];
    le_f32(x, f);
    put(b, x, 4);
}

static void put_str(Buf *b, const char *s) {
    size_t n = strlen(s);
    put_u64(b, n);
    put(b, s, n);
}

GgufWriter *gguf_writer_new(void) { return calloc(1, sizeof(GgufWriter)); }

void gguf_writer_free(GgufWriter *w) {
    if (!w) return;
    for (int i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].value.p);
    }
    for (int i = 0; i < w->n_t; i++) free(w->t[i].data);
    free(w->kv);
    free(w->t);
    free(w);
}

/* Takes ownership of v's bytes whatever happens. */
static PeftcStatus set_kv(GgufWriter *w, const char *key, Buf v) {
    if (v.oom) {
        free(v.p);
        return PEFTC_ERR(PEFTC_ENOMEM, "gguf writer: out of memory for metadata '%s'", key);
    }
    for (int i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].value.p);
            w->kv[i].value = v;
            return PEFTC_OK;
        }
    }
    if (w->n_kv == w->cap_kv) {
        int cap = w->cap_kv ? 2 * w->cap_kv : 16;
        WKV *kv = realloc(w->kv, (size_t)cap * sizeof *kv);
        if (!kv) {
            free(v.p);
            return PEFTC_ERR(PEFTC_ENOMEM, "gguf writer: out of memory for metadata '%s'", key);
        }
        w->kv = kv;
        w->cap_kv = cap;
    }
    char *k = malloc(strlen(key) + 1);
    if (!k) {
        free(v.p);
        return PEFTC_ERR(PEFTC_ENOMEM, "gguf writer: out of memory for metadata '%s'", key);
    }
    strcpy(k, key);
    w->kv[w->n_kv++] = (WKV){k, v};
    return PEFTC_OK;
}

PeftcStatus gguf_writer_u32(GgufWriter *w, const char *key, uint32_t v) {
    Buf b = {0};
    put_u32(&b, GGUF_U32);
    put_u32(&b, v);
    return set_kv(w, key, b);
}

PeftcStatus gguf_writer_i32(GgufWriter *w, const char *key, int32_t v) {
    Buf b = {0};
    put_u32(&b, GGUF_I32);
    put_u32(&b, (uint32_t)v);
    return set_kv(w, key, b);
}

PeftcStatus gguf_writer_f32(GgufWriter *w, const char *key, float v) {
    Buf b = {0};
    put_u32(&b, GGUF_F32);
    put_f32(&b, v);
    return set_kv(w, key, b);
}

PeftcStatus gguf_writer_bool(GgufWriter *w, const char *key, int v) {
    Buf b = {0};
    uint8_t x = v != 0;
    put_u32(&b, GGUF_BOOL);
    put(&b, &x, 1);
    return set_kv(w, key, b);
}

PeftcStatus gguf_writer_str(GgufWriter *w, const char *key, const char *v) {
    Buf b = {0};
    put_u32(&b, GGUF_STRING);
    put_str(&b, v);
    return set_kv(w, key, b);
}

static void put_array_head(Buf *b, GgufType elem, uint64_t n) {
    put_u32(b, GGUF_ARRAY);
    put_u32(b, elem);
    put_u64(b, n);
}

PeftcStatus gguf_writer_str_array(GgufWriter *w, const char *key, const char *const *v, uint64_t n) {
    Buf b = {0};
    put_array_head(&b, GGUF_STRING, n);
    for (uint64_t i = 0; i < n; i++) put_str(&b, v[i]);
    return set_kv(w, key, b);
}

PeftcStatus gguf_writer_i32_array(GgufWriter *w, const char *key, const int32_t *v, uint64_t n) {
    Buf b = {0};
    put_array_head(&b, GGUF_I32, n);
    for (uint64_t i = 0; i < n; i++) put_u32(&b, (uint32_t)v[i]);
    return set_kv(w, key, b);
}

PeftcStatus gguf_writer_f32_array(GgufWriter *w, const char *key, const float *v, uint64_t n) {
    Buf b = {0};
    put_array_head(&b, GGUF_F32, n);
    for (uint64_t i = 0; i < n; i++) put_f32(&b, v[i]);
    return set_kv(w, key, b);
}

PeftcStatus gguf_writer_copy_kv(GgufWriter *w, const GgufKV *kv) {
    int shown = (int)(kv->key.len > 100 ? 100 : kv->key.len);
    if (memchr(kv->key.ptr, 0, (size_t)kv->key.len))
        return PEFTC_ERR(PEFTC_EINVAL, "gguf writer: metadata key '%.*s' holds a NUL byte, expected a C string", shown,
                         kv->key.ptr);
    char *key = malloc((size_t)kv->key.len + 1);
    if (!key) return PEFTC_ERR(PEFTC_ENOMEM, "gguf writer: out of memory for metadata '%.*s'", shown, kv->key.ptr);
    memcpy(key, kv->key.ptr, (size_t)kv->key.len);
    key[kv->key.len] = '\0';
    Buf b = {0};
    put_u32(&b, kv->type);
    if (kv->type == GGUF_ARRAY) {
        put_u32(&b, kv->elem_type);
        put_u64(&b, kv->count);
    }
    put(&b, kv->raw, (size_t)kv->nbytes); /* already little-endian: the format's order */
    PeftcStatus st = set_kv(w, key, b);
    free(key);
    return st;
}

/* Validates name and shape and reserves the tensor's slot with nbytes of (uninitialised) data, or
 * with none when deferred. */
static PeftcStatus new_tensor(GgufWriter *w, const char *name, GgmlType type, int n_dims, const int64_t *ne,
                              int deferred, WTensor **out) {
    WTensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    if (strlen(name) >= sizeof t.name)
        return PEFTC_ERR(PEFTC_EINVAL, "gguf writer: tensor name '%s' is longer than %zu bytes", name, sizeof t.name - 1);
    strcpy(t.name, name);
    if (n_dims < 1 || n_dims > 4)
        return PEFTC_ERR(PEFTC_EINVAL, "gguf writer: tensor '%s' has %d dimensions, expected 1..4", name, n_dims);
    int be = ggml_block_elems(type);
    if (!be) return PEFTC_ERR(PEFTC_EINVAL, "gguf writer: tensor '%s' has unknown ggml type %d", name, (int)type);
    int64_t numel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 1 || numel > INT64_MAX / ne[d])
            return PEFTC_ERR(PEFTC_EINVAL, "gguf writer: tensor '%s' dimension %d is %lld, expected >= 1 and a "
                             "representable element count", name, d, (long long)ne[d]);
        t.ne[d] = ne[d];
        numel *= ne[d];
    }
    if (ne[0] % be)
        return PEFTC_ERR(PEFTC_EINVAL, "gguf writer: tensor '%s' of type %s has rows of %lld, expected a multiple of %d",
                         name, ggml_type_name(type), (long long)ne[0], be);
    for (int i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return PEFTC_ERR(PEFTC_EINVAL, "gguf writer: tensor '%s' added twice", name);
    t.nbytes = (size_t)(numel / be) * ggml_block_bytes(type);
    if (w->n_t == w->cap_t) {
        int cap = w->cap_t ? 2 * w->cap_t : 16;
        WTensor *p = realloc(w->t, (size_t)cap * sizeof *p);
        if (!p) return PEFTC_ERR(PEFTC_ENOMEM, "gguf writer: out of memory for tensor '%s'", name);
        w->t = p;
        w->cap_t = cap;
    }
    t.data = deferred ? NULL : malloc(t.nbytes ? t.nbytes : 1);
    if (!deferred && !t.data)
        return PEFTC_ERR(PEFTC_ENOMEM, "gguf writer: out of memory for %zu bytes of '%s'", t.nbytes, name);
    w->t[w->n_t] = t;
    *out = &w->t[w->n_t++];
    return PEFTC_OK;
}

PeftcStatus gguf_writer_add_raw(GgufWriter *w, const char *name, GgmlType type, int n_dims, const int64_t *ne,
                                const void *data, size_t nbytes) {
    WTensor *t;
    PEFTC_TRY(new_tensor(w, name, type, n_dims, ne, 0, &t));
    if (t->nbytes != nbytes) {
        size_t want = t->nbytes;
        free(t->data);
        w->n_t--;
        return PEFTC_ERR(PEFTC_EINVAL, "gguf writer: tensor '%s' of type %s and its shape takes %zu bytes, got %zu",
                         name, ggml_type_name(type), want, nbytes);
    }
    memcpy(t->data, data, nbytes);
    return PEFTC_OK;
}

PeftcStatus gguf_writer_add_f32(GgufWriter *w, const char *name, int n_dims, const int64_t *ne, const float *data) {
    WTensor *t;
    PEFTC_TRY(new_tensor(w, name, GGML_F32, n_dims, ne, 0, &t));
    for (size_t i = 0; i < t->nbytes / 4; i++) le_f32(t->data + 4 * i, data[i]);
    return PEFTC_OK;
}

static PeftcStatus check_real_type(const char *name, GgmlType type) {
    if (type == GGML_F32 || type == GGML_F16 || type == GGML_BF16) return PEFTC_OK;
    return PEFTC_ERR(PEFTC_EINVAL, "gguf writer: tensor '%s': values can be stored as F32, F16 or BF16, not %s", name,
                     ggml_type_name(type));
}

void gguf_encode_real(GgmlType type, const real_t *v, size_t n, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        float f = (float)v[i];
        if (type == GGML_F32) {
            le_f32(out + 4 * i, f);
        } else {
            uint16_t h = type == GGML_F16 ? f32_to_f16(f) : f32_to_bf16(f);
            out[2 * i] = (uint8_t)h;
            out[2 * i + 1] = (uint8_t)(h >> 8);
        }
    }
}

PeftcStatus gguf_writer_add_real(GgufWriter *w, const char *name, GgmlType type, int n_dims, const int64_t *ne,
                                 const real_t *data) {
    PEFTC_TRY(check_real_type(name, type));
    WTensor *t;
    PEFTC_TRY(new_tensor(w, name, type, n_dims, ne, 0, &t));
    gguf_encode_real(type, data, t->nbytes / ggml_block_bytes(type), t->data);
    return PEFTC_OK;
}

PeftcStatus gguf_writer_add_deferred(GgufWriter *w, const char *name, GgmlType type, int n_dims, const int64_t *ne) {
    WTensor *t;
    return new_tensor(w, name, type, n_dims, ne, 1, &t);
}

static PeftcStatus alignment_of(const GgufWriter *w, uint64_t *align) {
    *align = 32;
    for (int i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment") != 0) continue;
        const uint8_t *v = w->kv[i].value.p;
        uint32_t type = (uint32_t)v[0] | (uint32_t)v[1] << 8, a = 0;
        if (type == GGUF_U32) a = (uint32_t)v[4] | (uint32_t)v[5] << 8 | (uint32_t)v[6] << 16 | (uint32_t)v[7] << 24;
        if (type != GGUF_U32 || a == 0 || (a & (a - 1)))
            return PEFTC_ERR(PEFTC_EINVAL, "gguf writer: general.alignment must be a u32 power of two");
        *align = a;
    }
    return PEFTC_OK;
}

static uint64_t pad_to(uint64_t n, uint64_t align) { return (align - n % align) % align; }

/* Everything before the data section, padded to the alignment. */
static void build_header(const GgufWriter *w, uint64_t align, Buf *h) {
    put(h, "GGUF", 4);
    put_u32(h, 3);
    put_u64(h, (uint64_t)w->n_t);
    put_u64(h, (uint64_t)w->n_kv);
    for (int i = 0; i < w->n_kv; i++) {
        put_str(h, w->kv[i].key);
        put(h, w->kv[i].value.p, w->kv[i].value.n);
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        const WTensor *t = &w->t[i];
        put_str(h, t->name);
        put_u32(h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(h, (uint64_t)t->ne[d]);
        put_u32(h, (uint32_t)t->type);
        put_u64(h, off);
        off += t->nbytes + pad_to(t->nbytes, align);
    }
    static const uint8_t zeros[256];
    for (uint64_t pad = pad_to(h->n, align); pad > 0;) {
        size_t k = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        put(h, zeros, k);
        pad -= k;
    }
}

static int write_padded(FILE *f, const void *p, size_t n, uint64_t align) {
    static const uint8_t zeros[256];
    if (n && fwrite(p, 1, n, f) != n) return 0;
    for (uint64_t pad = pad_to(n, align); pad > 0;) {
        size_t k = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        if (fwrite(zeros, 1, k, f) != k) return 0;
        pad -= k;
    }
    return 1;
}

/* Tensor t's bytes into f, padded: its own, or a deferred one's from fill through a buffer of its size. */
static PeftcStatus write_tensor(FILE *f, const WTensor *t, uint64_t align, GgufFill fill, void *user,
                                const char *path) {
    if (t->data) return write_padded(f, t->data, t->nbytes, align) ? PEFTC_OK
                                                                   : PEFTC_ERR(PEFTC_EWRITE, "cannot write '%s.tmp'", path);
    uint8_t *buf = malloc(t->nbytes ? t->nbytes : 1);
    if (!buf) return PEFTC_ERR(PEFTC_ENOMEM, "gguf writer: out of memory for %zu bytes of '%s'", t->nbytes, t->name);
    PeftcStatus st = fill(user, t->name, t->type, buf, t->nbytes);
    if (st == PEFTC_OK && !write_padded(f, buf, t->nbytes, align))
        st = PEFTC_ERR(PEFTC_EWRITE, "cannot write '%s.tmp'", path);
    free(buf);
    return st;
}

PeftcStatus gguf_writer_write(GgufWriter *w, const char *path) { return gguf_writer_write_filled(w, path, NULL, NULL); }

PeftcStatus gguf_writer_write_filled(GgufWriter *w, const char *path, GgufFill fill, void *user) {
    for (int i = 0; i < w->n_t && !fill; i++)
        if (!w->t[i].data)
            return PEFTC_ERR(PEFTC_EINVAL, "gguf writer: tensor '%s' was deferred, and '%s' is written without a fill",
                             w->t[i].name, path);
    uint64_t align;
    PEFTC_TRY(alignment_of(w, &align));
    Buf h = {0};
    build_header(w, align, &h);
    if (h.oom) {
        free(h.p);
        return PEFTC_ERR(PEFTC_ENOMEM, "gguf writer: out of memory building the header of '%s'", path);
    }
    FILE *f;
    PeftcStatus st = fs_atomic_open(path, &f);
    if (st != PEFTC_OK) {
        free(h.p);
        return st;
    }
    if (fwrite(h.p, 1, h.n, f) != h.n) st = PEFTC_ERR(PEFTC_EWRITE, "cannot write '%s.tmp'", path);
    free(h.p);
    /* The last tensor is padded too, as ggml's writer does: readers may round the file size up. */
    for (int i = 0; st == PEFTC_OK && i < w->n_t; i++) st = write_tensor(f, &w->t[i], align, fill, user, path);
    return fs_atomic_commit(path, f, st);
}
