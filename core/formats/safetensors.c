/* safetensors reading: the header is validated with the reference parser's rules before any tensor is
 * handed out, so a truncated or hand-edited file gives EFORMAT naming the file and tensor, never a read
 * outside the map. */
#include "core/formats/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "core/formats/quant.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian and is read here as host-order values"
#endif

#define ST_MAX_HEADER 100000000ull
#define ST_MAX_EXACT 9007199254740992.0 /* 2^53: JSON numbers above this are not exact in a double */

typedef struct {
    const char *name;
    StDType type;
    int bits;
} DtypeInfo;

/* Every dtype the reference parser knows; those this code cannot convert open as ST_OTHER. */
static const DtypeInfo dtypes[] = {
    {"F64", ST_F64, 64},      {"F32", ST_F32, 32},         {"F16", ST_F16, 16},         {"BF16", ST_BF16, 16},
    {"I64", ST_I64, 64},      {"I32", ST_I32, 32},         {"I16", ST_OTHER, 16},       {"I8", ST_OTHER, 8},
    {"U64", ST_OTHER, 64},    {"U32", ST_OTHER, 32},       {"U16", ST_OTHER, 16},       {"U8", ST_OTHER, 8},
    {"BOOL", ST_OTHER, 8},    {"F8_E4M3", ST_OTHER, 8},    {"F8_E5M2", ST_OTHER, 8},    {"F8_E8M0", ST_OTHER, 8},
    {"C64", ST_OTHER, 64},    {"F4", ST_OTHER, 4},         {"F6_E2M3", ST_OTHER, 6},    {"F6_E3M2", ST_OTHER, 6},
};

const char *st_dtype_name(StDType t) {
    switch (t) {
    case ST_F32: return "F32";
    case ST_F16: return "F16";
    case ST_BF16: return "BF16";
    case ST_F64: return "F64";
    case ST_I32: return "I32";
    case ST_I64: return "I64";
    case ST_OTHER: break;
    }
    return "other";
}

static const DtypeInfo *dtype_lookup(const char *name) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, name) == 0) return &dtypes[i];
    return NULL;
}

/* A JSON number that is a non-negative integer a double holds exactly. */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0) || d > ST_MAX_EXACT || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* ---- header parsing ---- */

typedef struct {
    const char *path;
    uint64_t buf_size; /* bytes after the header */
} Ctx;

static PeftcStatus parse_shape(const Ctx *c, const char *name, const cJSON *js, Shape *s) {
    if (!cJSON_IsArray(js))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': \"shape\" must be an array of integers", c->path, name);
    int nd = cJSON_GetArraySize(js);
    if (nd > TENSOR_MAX_DIMS)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has %d dimensions; this reader supports at most %d", c->path,
                         name, nd, TENSOR_MAX_DIMS);
    s->ndim = nd;
    int i = 0;
    for (const cJSON *d = js->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_u64(d, &v))
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': shape[%d] must be an integer >= 0", c->path, name, i);
        s->dim[i] = (int64_t)v;
    }
    return PEFTC_OK;
}

/* Bytes taken by `s` elements of `bits` each, or an error when that is not a whole number of bytes or
 * not a 64-bit number (checked before multiplying, so huge shapes cannot overflow). */
static PeftcStatus span_bytes(const Ctx *c, const char *name, const Shape *s, int bits, uint64_t *out) {
    const uint64_t limit = UINT64_MAX / 64;
    uint64_t numel = 1;
    for (int i = 0; i < s->ndim; i++) {
        uint64_t d = (uint64_t)s->dim[i];
        if (d == 0) {
            numel = 0;
            break;
        }
        numel = numel > limit / d ? limit : numel * d;
    }
    if (numel >= limit) {
        char sb[96];
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' with shape %s has too many elements", c->path, name,
                         shape_str(s, sb, sizeof sb));
    }
    if (numel * (uint64_t)bits % 8)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': %llu elements of %d bits are not a whole number of bytes",
                         c->path, name, (unsigned long long)numel, bits);
    *out = numel * (uint64_t)bits / 8;
    return PEFTC_OK;
}

static PeftcStatus parse_offsets(const Ctx *c, const char *name, const cJSON *js, uint64_t *begin, uint64_t *end) {
    if (!cJSON_IsArray(js) || cJSON_GetArraySize(js) != 2 || !json_u64(js->child, begin) ||
        !json_u64(js->child->next, end))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': \"data_offsets\" must be [begin, end], two integers >= 0",
                         c->path, name);
    if (*begin > *end)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", c->path,
                         name, (unsigned long long)*begin, (unsigned long long)*end);
    if (*end > c->buf_size)
        return PEFTC_ERR(PEFTC_EFORMAT,
                         "%s: tensor '%s': data_offsets end %llu is past the end of the file (%llu data bytes)",
                         c->path, name, (unsigned long long)*end, (unsigned long long)c->buf_size);
    return PEFTC_OK;
}

static PeftcStatus parse_entry(const Ctx *c, const cJSON *e, const uint8_t *buf, StTensor *t) {
    const char *name = e->string;
    if (strlen(name) >= sizeof t->name)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor name '%.60s...' is longer than %zu bytes", c->path, name,
                         sizeof t->name - 1);
    snprintf(t->name, sizeof t->name, "%s", name);
    if (!cJSON_IsObject(e))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': expected an object with dtype, shape and data_offsets",
                         c->path, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(jd))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': \"dtype\" must be a string such as \"F32\"", c->path, name);
    const DtypeInfo *di = dtype_lookup(jd->valuestring);
    if (!di)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': unknown dtype \"%.32s\" (expected F64, F32, F16, BF16, "
                         "I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_*, ...)", c->path, name, jd->valuestring);
    t->dtype = di->type;
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", di->name);
    PEFTC_TRY(parse_shape(c, name, cJSON_GetObjectItemCaseSensitive(e, "shape"), &t->shape));
    uint64_t nbytes = 0, begin = 0, end = 0;
    PEFTC_TRY(parse_offsets(c, name, cJSON_GetObjectItemCaseSensitive(e, "data_offsets"), &begin, &end));
    PEFTC_TRY(span_bytes(c, name, &t->shape, di->bits, &nbytes));
    if (end - begin != nbytes) {
        char sb[96];
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': data_offsets span %llu bytes, expected %llu for %s %s",
                         c->path, name, (unsigned long long)(end - begin), (unsigned long long)nbytes, di->name,
                         shape_str(&t->shape, sb, sizeof sb));
    }
    t->data = buf + begin;
    t->nbytes = nbytes;
    return PEFTC_OK;
}

static PeftcStatus parse_meta(StFile *f, const Ctx *c, const cJSON *js) {
    if (cJSON_IsNull(js)) return PEFTC_OK;
    if (!cJSON_IsObject(js))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"__metadata__\" must be an object of strings", c->path);
    int n = cJSON_GetArraySize(js);
    f->meta_keys = calloc((size_t)n + 1, sizeof *f->meta_keys);
    f->meta_vals = calloc((size_t)n + 1, sizeof *f->meta_vals);
    if (!f->meta_keys || !f->meta_vals) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for metadata", c->path);
    for (const cJSON *e = js->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: __metadata__ key '%s': value must be a string", c->path, e->string);
        int i = f->n_meta++;
        f->meta_keys[i] = strdup(e->string);
        f->meta_vals[i] = strdup(e->valuestring);
        if (!f->meta_keys[i] || !f->meta_vals[i])
            return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for metadata", c->path);
    }
    return PEFTC_OK;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

static int by_offset(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    if (x->data != y->data) return x->data < y->data ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Tensors must cover [0, buf_size) exactly once, in some order. */
static PeftcStatus check_tiling(const StFile *f, const Ctx *c, const uint8_t *buf) {
    const StTensor **order = malloc(((size_t)f->n_tensors + 1) * sizeof *order);
    if (!order) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", c->path);
    for (int i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n_tensors, sizeof *order, by_offset);
    uint64_t at = 0;
    PeftcStatus st = PEFTC_OK;
    for (int i = 0; i < f->n_tensors && st == PEFTC_OK; i++) {
        uint64_t begin = (uint64_t)(order[i]->data - buf);
        if (begin > at)
            st = PEFTC_ERR(PEFTC_EFORMAT, "%s: data bytes [%llu, %llu) belong to no tensor (before '%s'); expected "
                           "tensors to follow each other without gaps", c->path, (unsigned long long)at,
                           (unsigned long long)begin, order[i]->name);
        else if (begin < at)
            st = PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' at data offset %llu overlaps tensor '%s' (ends at %llu)",
                           c->path, order[i]->name, (unsigned long long)begin, order[i - 1]->name,
                           (unsigned long long)at);
        at = begin + order[i]->nbytes;
    }
    free(order);
    if (st == PEFTC_OK && at != c->buf_size)
        st = PEFTC_ERR(PEFTC_EFORMAT, "%s: %llu trailing bytes after the last tensor; expected the file to end at "
                       "data offset %llu", c->path, (unsigned long long)(c->buf_size - at), (unsigned long long)at);
    return st;
}

static PeftcStatus parse_entries(StFile *f, const Ctx *c, const cJSON *root, const uint8_t *buf) {
    int n = cJSON_GetArraySize(root), n_meta = 0;
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    if (!f->tensors) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for %d tensors", c->path, n);
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (n_meta++) return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"__metadata__\" appears twice", c->path);
            PEFTC_TRY(parse_meta(f, c, e));
            continue;
        }
        PEFTC_TRY(parse_entry(c, e, buf, &f->tensors[f->n_tensors++]));
    }
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, by_name);
    for (int i = 1; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, f->tensors[i - 1].name) == 0)
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' appears twice in the header; expected unique names",
                             c->path, f->tensors[i].name);
    return check_tiling(f, c, buf);
}

static int json_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

static PeftcStatus parse_file(StFile *f, const char *path) {
    const uint8_t *d = f->file.data;
    size_t size = f->file.size;
    if (size < 8)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: file is %zu bytes; expected at least the 8-byte header length", path,
                         size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | d[i];
    if (n > ST_MAX_HEADER)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: header length %llu is over the limit of %llu bytes", path,
                         (unsigned long long)n, ST_MAX_HEADER);
    if (8 + n > size)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: header length %llu runs past the end of the file (%zu bytes); the file "
                         "is truncated or not safetensors", path, (unsigned long long)n, size);
    const char *json = (const char *)d + 8, *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)n, &end, 0);
    if (!root)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: header is not valid JSON (error near header byte %lld)", path,
                         end ? (long long)(end - json) : -1LL);
    PeftcStatus st = PEFTC_OK;
    while (end < json + n && json_space(*end)) end++;
    if (end != json + n)
        st = PEFTC_ERR(PEFTC_EFORMAT, "%s: unexpected bytes after the header's JSON at header byte %lld", path,
                       (long long)(end - json));
    else if (!cJSON_IsObject(root))
        st = PEFTC_ERR(PEFTC_EFORMAT, "%s: header must be a JSON object of tensors", path);
    else
        st = parse_entries(f, &(Ctx){path, size - 8 - n}, root, d + 8 + n);
    cJSON_Delete(root);
    return st;
}

PeftcStatus st_open(StFile *f, const char *path) {
    memset(f, 0, sizeof *f);
    PEFTC_TRY(mapped_open(&f->file, path));
    PeftcStatus st = parse_file(f, path);
    if (st != PEFTC_OK) st_close(f);
    return st;
}

void st_close(StFile *f) {
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->tensors);
    mapped_close(&f->file);
    memset(f, 0, sizeof *f);
}

const StTensor *st_find(const StFile *f, const char *name) {
    StTensor key;
    if (strlen(name) >= sizeof key.name || !f->n_tensors) return NULL;
    snprintf(key.name, sizeof key.name, "%s", name);
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, by_name);
}

/* ---- conversion to real_t ---- */

enum { CONVERT_CHUNK = 1 << 16 };

/* src may be unaligned inside the map, hence memcpy per element (compiled to plain loads). */
static void convert_range(StDType dt, const uint8_t *src, real_t *out, int64_t n) {
    switch (dt) {
    case ST_F32:
        for (int64_t i = 0; i < n; i++) {
            float v;
            memcpy(&v, src + 4 * i, 4);
            out[i] = (real_t)v;
        }
        break;
    case ST_F64:
        for (int64_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, src + 8 * i, 8);
            out[i] = (real_t)v;
        }
        break;
    case ST_F16:
    case ST_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            out[i] = (real_t)(dt == ST_F16 ? f16_to_f32(h) : bf16_to_f32(h));
        }
        break;
    default: break;
    }
}

PeftcStatus st_read_real(const StFile *f, const StTensor *t, const Shape *expect, real_t *out) {
    char got[96], want[96];
    if (expect && !shape_equal(&t->shape, expect))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has shape %s, expected %s", f->file.path, t->name,
                         shape_str(&t->shape, got, sizeof got), shape_str(expect, want, sizeof want));
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has dtype %s, expected F32, F16, BF16 or F64", f->file.path,
                         t->name, t->dtype_name);
    int64_t n = shape_numel(&t->shape), chunks = (n + CONVERT_CHUNK - 1) / CONVERT_CHUNK;
    size_t esz = t->dtype == ST_F64 ? 8 : t->dtype == ST_F32 ? 4 : 2;
    #pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t at = c * CONVERT_CHUNK, len = n - at < CONVERT_CHUNK ? n - at : CONVERT_CHUNK;
        convert_range(t->dtype, t->data + (size_t)at * esz, out + at, len);
    }
    return PEFTC_OK;
}

/* ---- writer ---- */

typedef struct {
    char *name;
    StDType dtype;
    Shape shape;
    uint8_t *bytes; /* (nbytes) already in the stored dtype */
    size_t nbytes;
} StEntry;

struct StWriter {
    StEntry *e;
    int n, cap;
    char **meta_keys, **meta_vals;
    int n_meta, meta_cap;
};

StWriter *st_writer_new(void) { return calloc(1, sizeof(StWriter)); }

void st_writer_free(StWriter *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].bytes);
    }
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_vals[i]);
    }
    free(w->e);
    free(w->meta_keys);
    free(w->meta_vals);
    free(w);
}

static size_t stored_size(StDType t) { return t == ST_F32 ? 4 : 2; }

static void encode_range(StDType dt, const real_t *x, uint8_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = (float)x[i];
        if (dt == ST_F32) {
            memcpy(dst + 4 * i, &v, 4);
        } else {
            uint16_t h = dt == ST_F16 ? f32_to_f16(v) : f32_to_bf16(v);
            memcpy(dst + 2 * i, &h, 2);
        }
    }
}

static void encode(StDType dt, const real_t *x, uint8_t *dst, int64_t n) {
    int64_t chunks = (n + CONVERT_CHUNK - 1) / CONVERT_CHUNK;
    #pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t at = c * CONVERT_CHUNK, len = n - at < CONVERT_CHUNK ? n - at : CONVERT_CHUNK;
        encode_range(dt, x + at, dst + (size_t)at * stored_size(dt), len);
    }
}

static PeftcStatus check_add(const StWriter *w, const char *name, StDType dtype, const Shape *shape,
                             const real_t *data) {
    if (!name || !name[0] || strlen(name) >= sizeof((StTensor *)0)->name || strcmp(name, "__metadata__") == 0)
        return PEFTC_ERR(PEFTC_EINVAL, "safetensors writer: tensor name '%.60s' must be 1..%zu bytes and not "
                         "__metadata__", name ? name : "(null)", sizeof((StTensor *)0)->name - 1);
    if (dtype != ST_F32 && dtype != ST_F16 && dtype != ST_BF16)
        return PEFTC_ERR(PEFTC_EINVAL, "safetensors writer: tensor '%s': dtype %s, expected F32, F16 or BF16", name,
                         st_dtype_name(dtype));
    if (shape->ndim < 0 || shape->ndim > TENSOR_MAX_DIMS)
        return PEFTC_ERR(PEFTC_EINVAL, "safetensors writer: tensor '%s': %d dimensions, expected 0..%d", name,
                         shape->ndim, TENSOR_MAX_DIMS);
    for (int i = 0; i < shape->ndim; i++)
        if (shape->dim[i] < 0)
            return PEFTC_ERR(PEFTC_EINVAL, "safetensors writer: tensor '%s': dimension %d is %lld, expected >= 0",
                             name, i, (long long)shape->dim[i]);
    if (!data && shape_numel(shape) > 0)
        return PEFTC_ERR(PEFTC_EINVAL, "safetensors writer: tensor '%s' has no data", name);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0)
            return PEFTC_ERR(PEFTC_EINVAL, "safetensors writer: tensor '%s' added twice", name);
    return PEFTC_OK;
}

/* Appends an entry of nbytes uninitialised bytes; the caller fills e->bytes. */
static PeftcStatus new_entry(StWriter *w, const char *name, StDType dtype, const Shape *shape, size_t nbytes,
                             StEntry **out) {
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        StEntry *e = realloc(w->e, (size_t)cap * sizeof *e);
        if (!e) return PEFTC_ERR(PEFTC_ENOMEM, "safetensors writer: out of memory for tensor '%s'", name);
        w->e = e;
        w->cap = cap;
    }
    StEntry *e = &w->e[w->n];
    *e = (StEntry){.name = strdup(name), .dtype = dtype, .shape = *shape, .nbytes = nbytes};
    e->bytes = malloc(e->nbytes ? e->nbytes : 1);
    if (!e->name || !e->bytes) {
        free(e->name);
        free(e->bytes);
        return PEFTC_ERR(PEFTC_ENOMEM, "safetensors writer: out of memory for tensor '%s' (%zu bytes)", name,
                         e->nbytes);
    }
    w->n++;
    *out = e;
    return PEFTC_OK;
}

PeftcStatus st_writer_add(StWriter *w, const char *name, StDType dtype, const Shape *shape, const real_t *data) {
    PEFTC_TRY(check_add(w, name, dtype, shape, data));
    int64_t n = shape_numel(shape);
    StEntry *e;
    PEFTC_TRY(new_entry(w, name, dtype, shape, (size_t)n * stored_size(dtype), &e));
    encode(dtype, data, e->bytes, n);
    return PEFTC_OK;
}

PeftcStatus st_writer_add_i32(StWriter *w, const char *name, const Shape *shape, const int32_t *data) {
    /* check_add's name and shape rules, with F32 standing in for the (equally sized) I32 */
    PEFTC_TRY(check_add(w, name, ST_F32, shape, (const real_t *)(const void *)data));
    size_t n = (size_t)shape_numel(shape);
    StEntry *e;
    PEFTC_TRY(new_entry(w, name, ST_I32, shape, n * sizeof(int32_t), &e));
    if (n) memcpy(e->bytes, data, n * sizeof(int32_t)); /* little-endian hosts only, as everywhere here */
    return PEFTC_OK;
}

PeftcStatus st_read_i32(const StFile *f, const StTensor *t, const Shape *expect, int32_t *out) {
    char a[64], b[64];
    if (t->dtype != ST_I32)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' is %s, expected I32", f->file.path, t->name, t->dtype_name);
    if (expect && !shape_equal(expect, &t->shape))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has shape %s, expected %s", f->file.path, t->name,
                         shape_str(&t->shape, a, sizeof a), shape_str(expect, b, sizeof b));
    if (t->nbytes) memcpy(out, t->data, t->nbytes);
    return PEFTC_OK;
}

static int meta_index(const StWriter *w, const char *key) {
    for (int i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta_keys[i], key) == 0) return i;
    return -1;
}

PeftcStatus st_writer_meta(StWriter *w, const char *key, const char *value) {
    if (!key || !key[0] || !value) return PEFTC_ERR(PEFTC_EINVAL, "safetensors writer: metadata needs a key and a value");
    char *v = strdup(value);
    if (!v) return PEFTC_ERR(PEFTC_ENOMEM, "safetensors writer: out of memory for metadata '%s'", key);
    int i = meta_index(w, key);
    if (i >= 0) {
        free(w->meta_vals[i]);
        w->meta_vals[i] = v;
        return PEFTC_OK;
    }
    if (w->n_meta == w->meta_cap) {
        int cap = w->meta_cap ? 2 * w->meta_cap : 4;
        char **k = realloc(w->meta_keys, (size_t)cap * sizeof *k);
        if (k) w->meta_keys = k;
        char **vs = k ? realloc(w->meta_vals, (size_t)cap * sizeof *vs) : NULL;
        if (vs) w->meta_vals = vs;
        if (!k || !vs) {
            free(v);
            return PEFTC_ERR(PEFTC_ENOMEM, "safetensors writer: out of memory for metadata '%s'", key);
        }
        w->meta_cap = cap;
    }
    w->meta_keys[w->n_meta] = strdup(key);
    if (!w->meta_keys[w->n_meta]) {
        free(v);
        return PEFTC_ERR(PEFTC_ENOMEM, "safetensors writer: out of memory for metadata '%s'", key);
    }
    w->meta_vals[w->n_meta++] = v;
    return PEFTC_OK;
}

/* A growing string for the header; `oom` makes every later append a no-op so callers check once. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = 2 * (b->n + n + 1);
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void buf_str(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_u64(Buf *b, uint64_t v) {
    char t[24];
    snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    buf_str(b, t);
}

static void buf_json(Buf *b, const char *s) {
    buf_str(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\', esc[1] = (char)ch, esc[2] = '\0';
            buf_str(b, esc);
        } else if (ch < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            buf_str(b, esc);
        } else {
            buf_put(b, s, 1);
        }
    }
    buf_str(b, "\"");
}

static void header_meta(Buf *b, const StWriter *w) {
    buf_str(b, "{\"__metadata__\":{");
    int first = 1;
    if (meta_index(w, "format") < 0) { /* what HF writes, and what transformers checks on load */
        buf_str(b, "\"format\":\"pt\"");
        first = 0;
    }
    for (int i = 0; i < w->n_meta; i++, first = 0) {
        if (!first) buf_str(b, ",");
        buf_json(b, w->meta_keys[i]);
        buf_str(b, ":");
        buf_json(b, w->meta_vals[i]);
    }
    buf_str(b, "}");
}

static void header_tensor(Buf *b, const StEntry *e, uint64_t begin) {
    buf_str(b, ",");
    buf_json(b, e->name);
    buf_str(b, ":{\"dtype\":\"");
    buf_str(b, st_dtype_name(e->dtype));
    buf_str(b, "\",\"shape\":[");
    for (int i = 0; i < e->shape.ndim; i++) {
        if (i) buf_str(b, ",");
        buf_u64(b, (uint64_t)e->shape.dim[i]);
    }
    buf_str(b, "],\"data_offsets\":[");
    buf_u64(b, begin);
    buf_str(b, ",");
    buf_u64(b, begin + e->nbytes);
    buf_str(b, "]}");
}

static int entry_by_name(const void *a, const void *b) {
    return strcmp(((const StEntry *)a)->name, ((const StEntry *)b)->name);
}

/* The JSON header, space-padded so the data buffer starts 8-byte aligned in the file. */
static PeftcStatus build_header(StWriter *w, Buf *b) {
    if (w->n) qsort(w->e, (size_t)w->n, sizeof *w->e, entry_by_name);
    header_meta(b, w);
    uint64_t at = 0;
    for (int i = 0; i < w->n; i++) {
        header_tensor(b, &w->e[i], at);
        at += w->e[i].nbytes;
    }
    buf_str(b, "}");
    while (!b->oom && b->n % 8) buf_str(b, " ");
    if (b->oom) return PEFTC_ERR(PEFTC_ENOMEM, "safetensors writer: out of memory for the header");
    if (b->n > ST_MAX_HEADER)
        return PEFTC_ERR(PEFTC_EINVAL, "safetensors writer: header of %zu bytes is over the format's limit of %llu",
                         b->n, ST_MAX_HEADER);
    return PEFTC_OK;
}

static PeftcStatus write_body(const StWriter *w, const Buf *b, FILE *f, const char *path) {
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)b->n >> (8 * i));
    if (fwrite(len, 1, 8, f) != 8 || fwrite(b->p, 1, b->n, f) != b->n)
        return PEFTC_ERR(PEFTC_EWRITE, "%s: cannot write the header", path);
    for (int i = 0; i < w->n; i++)
        if (w->e[i].nbytes && fwrite(w->e[i].bytes, 1, w->e[i].nbytes, f) != w->e[i].nbytes)
            return PEFTC_ERR(PEFTC_EWRITE, "%s: cannot write tensor '%s' (%zu bytes)", path, w->e[i].name,
                             w->e[i].nbytes);
    return PEFTC_OK;
}

PeftcStatus st_write(StWriter *w, const char *path) {
    Buf b = {0};
    PeftcStatus st = build_header(w, &b);
    FILE *f = NULL;
    if (st == PEFTC_OK) st = fs_atomic_open(path, &f);
    if (st == PEFTC_OK) st = fs_atomic_commit(path, f, write_body(w, &b, f, path));
    free(b.p);
    return st;
}
