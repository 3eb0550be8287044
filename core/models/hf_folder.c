#include "core/models/hf_folder.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/base/str.h"
#include "core/formats/json_file.h"

PeftcStatus hf_join(char *out, size_t n, const char *dir, const char *name) {
    if (snprintf(out, n, "%s/%s", dir, name) >= (int)n)
        return PEFTC_ERR(PEFTC_EINVAL, "path too long: '%.64s.../%s'", dir, name);
    return PEFTC_OK;
}

int hf_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

void hf_folder_name(const char *dir, char *out, size_t n) {
    char cwd[1024];
    const char *p = dir;
    if ((strcmp(dir, ".") == 0 || strcmp(dir, "./") == 0) && getcwd(cwd, sizeof cwd)) p = cwd;
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && p[start - 1] != '/') start--;
    snprintf(out, n, "%.*s", (int)(len - start), p + start);
}

/* ---- config.json ---- */

PeftcStatus hf_cfg_open(HfCfg *c, const char *dir) {
    memset(c, 0, sizeof *c);
    PEFTC_TRY(hf_join(c->path, sizeof c->path, dir, HF_CONFIG));
    if (!hf_is_file(c->path))
        return PEFTC_ERR(PEFTC_EIO, "%s: not found; an HF model folder holds %s and %s", c->path, HF_CONFIG, HF_SINGLE);
    return json_read_object(c->path, &c->root);
}

void hf_cfg_close(HfCfg *c) {
    cJSON_Delete(c->root);
    c->root = NULL;
}

const cJSON *hf_cfg_item(const HfCfg *c, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, key);
    return cJSON_IsNull(v) ? NULL : v;
}

PeftcStatus hf_cfg_int(const HfCfg *c, const char *key, int dflt, int *out) {
    const cJSON *v = hf_cfg_item(c, key);
    if (!v) {
        if (dflt < 0) return PEFTC_ERR(PEFTC_EFORMAT, "%s: missing key \"%s\" (expected a positive integer)", c->path, key);
        *out = dflt;
        return PEFTC_OK;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (!(d >= 1 && d <= INT_MAX && d == floor(d)))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s\" must be a positive integer", c->path, key);
    *out = (int)d;
    return PEFTC_OK;
}

PeftcStatus hf_cfg_num(const HfCfg *c, const cJSON *v, const char *key, double dflt, double *out) {
    if (!v) {
        *out = dflt;
        return PEFTC_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite(v->valuedouble))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s\" must be a positive number", c->path, key);
    *out = v->valuedouble;
    return PEFTC_OK;
}

PeftcStatus hf_cfg_bool(const HfCfg *c, const char *key, int dflt, int *out) {
    const cJSON *v = hf_cfg_item(c, key);
    if (!v) {
        *out = dflt;
        return PEFTC_OK;
    }
    if (!cJSON_IsBool(v)) return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s\" must be true or false", c->path, key);
    *out = cJSON_IsTrue(v);
    return PEFTC_OK;
}

PeftcStatus hf_cfg_arch(const HfCfg *c, const char *const *types, const char *const *classes, int n, int *out) {
    const cJSON *mt = hf_cfg_item(c, "model_type");
    for (int i = 0; cJSON_IsString(mt) && i < n; i++)
        if (strcmp(mt->valuestring, types[i]) == 0) {
            *out = i;
            return PEFTC_OK;
        }
    if (cJSON_IsString(mt))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: model_type \"%s\" is not one this loader reads", c->path, mt->valuestring);
    const cJSON *a;
    cJSON_ArrayForEach(a, hf_cfg_item(c, "architectures")) {
        for (int i = 0; cJSON_IsString(a) && i < n; i++)
            if (strcmp(a->valuestring, classes[i]) == 0) {
                *out = i;
                return PEFTC_OK;
            }
    }
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: no \"model_type\" and no supported \"architectures\" entry; expected "
                     "model_type \"%s\" or architectures [\"%s\"]", c->path, types[0], classes[0]);
}

/* ---- weight files ---- */

void hf_weights_close(HfWeights *w) {
    for (int i = 0; i < w->n_mapped; i++) st_close(&w->sf[i]);
    free(w->sf);
    for (int i = 0; i < w->n_files; i++) free(w->files[i]);
    free(w->files);
    cJSON_Delete(w->index);
    memset(w, 0, sizeof *w);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static PeftcStatus shard_path(const HfWeights *w, const cJSON *e, char *out, size_t n) {
    const char *s = cJSON_IsString(e) ? e->valuestring : NULL;
    if (!s || !s[0] || strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: weight_map[\"%s\"] must be the file name of a shard in the same folder",
                         w->index_path, e->string);
    return hf_join(out, n, w->dir, s);
}

/* The distinct shard files named by the index's weight_map. */
static PeftcStatus list_shards(HfWeights *w) {
    w->weight_map = cJSON_GetObjectItemCaseSensitive(w->index, "weight_map");
    int n = cJSON_GetArraySize(w->weight_map);
    if (!cJSON_IsObject(w->weight_map) || n == 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: expected a non-empty \"weight_map\" object {tensor name: shard file}",
                         w->index_path);
    w->files = calloc((size_t)n, sizeof *w->files);
    if (!w->files) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", w->index_path);
    const cJSON *e;
    cJSON_ArrayForEach(e, w->weight_map) {
        char path[1024];
        PEFTC_TRY(shard_path(w, e, path, sizeof path));
        if (!(w->files[w->n_files] = strdup(path))) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", w->index_path);
        w->n_files++;
    }
    qsort(w->files, (size_t)w->n_files, sizeof *w->files, cmp_str);
    int u = 0;
    for (int i = 0; i < w->n_files; i++) {
        if (u && strcmp(w->files[u - 1], w->files[i]) == 0) free(w->files[i]);
        else w->files[u++] = w->files[i];
    }
    w->n_files = u;
    return PEFTC_OK;
}

PeftcStatus hf_weights_open(HfWeights *w, const char *dir) {
    memset(w, 0, sizeof *w);
    char single[1024];
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    PEFTC_TRY(hf_join(single, sizeof single, dir, HF_SINGLE));
    PEFTC_TRY(hf_join(w->index_path, sizeof w->index_path, dir, HF_INDEX));
    PeftcStatus st;
    if (hf_is_file(single)) {
        w->files = calloc(1, sizeof *w->files);
        if (!w->files || !(w->files[0] = strdup(single))) st = PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", single);
        else w->n_files = 1, st = PEFTC_OK;
    } else if (hf_is_file(w->index_path)) {
        st = json_read_object(w->index_path, &w->index);
        if (st == PEFTC_OK) st = list_shards(w);
    } else {
        st = PEFTC_ERR(PEFTC_EIO, "%s: no %s or %s; expected the weights of an HF model folder", dir, HF_SINGLE,
                       HF_INDEX);
    }
    if (st != PEFTC_OK) hf_weights_close(w);
    return st;
}

PeftcStatus hf_weights_map(HfWeights *w) {
    w->sf = calloc((size_t)w->n_files, sizeof *w->sf);
    if (!w->sf) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", w->dir);
    while (w->n_mapped < w->n_files) {
        PEFTC_TRY(st_open(&w->sf[w->n_mapped], w->files[w->n_mapped]));
        w->n_mapped++;
    }
    return PEFTC_OK;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* It changes with any tensor's name, dtype, shape or placement, and costs no data reads. */
PeftcStatus hf_weights_hash(const HfWeights *w, uint64_t *out) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < w->n_files; i++) {
        MappedFile f;
        PEFTC_TRY(mapped_open(&f, w->files[i]));
        uint64_t n = 0, size = f.size;
        for (int b = 7; b >= 0 && size >= 8; b--) n = n << 8 | f.data[b];
        int ok = size >= 8 && n <= size - 8;
        if (ok) h = fnv1a(fnv1a(h, f.data, 8 + (size_t)n), &size, sizeof size);
        mapped_close(&f);
        if (!ok)
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: not a safetensors file (header length runs past the end of the "
                             "%llu-byte file)", w->files[i], (unsigned long long)size);
    }
    *out = h;
    return PEFTC_OK;
}

PeftcStatus hf_weights_find(const HfWeights *w, const char *name, const Shape *want, const char *why,
                            const StFile **file, const StTensor **t) {
    char shape[96];
    shape_str(want, shape, sizeof shape);
    int fi = 0;
    if (w->index) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(w->weight_map, name);
        if (!e)
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' is missing from weight_map; expected shape %s%s",
                             w->index_path, name, shape, why);
        char path[1024];
        PEFTC_TRY(shard_path(w, e, path, sizeof path));
        char *key = path;
        char **hit = bsearch(&key, w->files, (size_t)w->n_files, sizeof *w->files, cmp_str);
        if (!hit) return PEFTC_ERR(PEFTC_EFORMAT, "%s: shard '%s' was not opened", w->index_path, path);
        fi = (int)(hit - w->files);
    }
    if (fi >= w->n_mapped) return PEFTC_ERR(PEFTC_ESTATE, "%s: weight files not mapped (hf_weights_map)", w->dir);
    *file = &w->sf[fi];
    if (!(*t = st_find(*file, name)))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' is missing; expected shape %s%s", w->sf[fi].file.path, name,
                         shape, why);
    return PEFTC_OK;
}

/* Why a missing tensor is needed, for the one whose presence depends on a config flag. */
static const char *needed_because(const char *name) {
    return strcmp(name, "lm_head.weight") == 0 ? " (tie_word_embeddings is false, so the model needs its own LM head)"
                                               : "";
}

PeftcStatus hf_weights_expect(const HfWeights *w, const char *name, Shape shape) {
    const StFile *file;
    const StTensor *t;
    PEFTC_TRY(hf_weights_find(w, name, &shape, needed_because(name), &file, &t));
    if (!shape_equal(&t->shape, &shape)) {
        char got[96], want[96];
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has shape %s, expected %s from config.json", file->file.path,
                         name, shape_str(&t->shape, got, sizeof got), shape_str(&shape, want, sizeof want));
    }
    return PEFTC_OK;
}

PeftcStatus hf_weights_fill(const HfWeights *w, const ParamRef *refs, int n_refs) {
    for (int i = 0; i < n_refs; i++) {
        const ParamRef *r = &refs[i];
        const StFile *file = NULL;
        const StTensor *t = NULL;
        PEFTC_TRY(hf_weights_find(w, r->name, &r->shape, needed_because(r->name), &file, &t));
        PEFTC_TRY(st_read_real(file, t, &r->shape, *r->data));
    }
    return PEFTC_OK;
}

PeftcStatus hf_weights_no_extras(const HfWeights *w, const ParamRef *refs, int n_refs, const char *prefix,
                                 const char *skip_suffix, const char *described) {
    const char **names = malloc((size_t)(n_refs ? n_refs : 1) * sizeof *names);
    if (!names) return PEFTC_ERR(PEFTC_ENOMEM, "model: out of memory");
    for (int i = 0; i < n_refs; i++) names[i] = refs[i].name;
    qsort(names, (size_t)n_refs, sizeof *names, cmp_str);
    PeftcStatus st = PEFTC_OK;
    size_t np = strlen(prefix);
    for (int f = 0; f < w->n_mapped && st == PEFTC_OK; f++) {
        for (int i = 0; i < w->sf[f].n_tensors && st == PEFTC_OK; i++) {
            const char *name = w->sf[f].tensors[i].name;
            if (strncmp(name, prefix, np) != 0 || (skip_suffix && str_ends_with(name, skip_suffix))) continue;
            if (!bsearch(&name, names, (size_t)n_refs, sizeof *names, cmp_str))
                st = PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has no place in the model config.json describes (%s); "
                               "loading without it would compute a different model", w->sf[f].file.path, name,
                               described);
        }
    }
    free(names);
    return st;
}

PeftcStatus hf_folder_identity(const char *dir, char *path, size_t path_cap, char *name, size_t name_cap,
                               uint64_t *hash) {
    HfWeights w;
    PEFTC_TRY(hf_weights_open(&w, dir));
    PeftcStatus st = hf_weights_hash(&w, hash);
    hf_weights_close(&w);
    snprintf(path, path_cap, "%s", dir);
    hf_folder_name(dir, name, name_cap);
    return st;
}

/* ---- writing ---- */

const char *hf_torch_dtype(int st_dtype) {
    return st_dtype == ST_F16 ? "float16" : st_dtype == ST_BF16 ? "bfloat16" : "float32";
}

static PeftcStatus save_weights(const char *dir, const ParamRef *refs, int n_refs, int st_dtype) {
    char path[1024];
    PEFTC_TRY(hf_join(path, sizeof path, dir, HF_SINGLE));
    StWriter *w = st_writer_new();
    if (!w) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", path);
    PeftcStatus st = PEFTC_OK;
    for (int i = 0; i < n_refs && st == PEFTC_OK; i++)
        st = st_writer_add(w, refs[i].name, (StDType)st_dtype, &refs[i].shape, *refs[i].data);
    if (st == PEFTC_OK) st = st_write(w, path);
    st_writer_free(w);
    return st;
}

static PeftcStatus save_config(const char *dir, cJSON *config) {
    char path[1024];
    PEFTC_TRY(hf_join(path, sizeof path, dir, HF_CONFIG));
    char *text = config ? cJSON_Print(config) : NULL;
    if (!text) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", path);
    PeftcStatus st = fs_write_atomic(path, text, strlen(text));
    free(text);
    return st;
}

PeftcStatus hf_save_folder(const char *dir, const ParamRef *refs, int n_refs, int st_dtype, cJSON *config) {
    PeftcStatus st = PEFTC_OK;
    if (st_dtype != ST_F32 && st_dtype != ST_F16 && st_dtype != ST_BF16)
        st = PEFTC_ERR(PEFTC_EINVAL, "%s: save dtype %d, expected ST_F32, ST_F16 or ST_BF16", dir, st_dtype);
    if (st == PEFTC_OK) st = fs_mkdir_p(dir);
    if (st == PEFTC_OK) st = save_weights(dir, refs, n_refs, st_dtype);
    if (st == PEFTC_OK) st = save_config(dir, config);
    cJSON_Delete(config);
    return st;
}
