/* PEFT LoRA folders (adapter_config.json + adapter_model.safetensors) and llama.cpp GGUF LoRA files.
 *
 * The arena holds the adapter state; saving goes through each adapter's export_tensors (PEFT names),
 * loading writes straight into the arena entries "<module>.lora_A" / "<module>.lora_B". */
#include "adapters/formats/peft_io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapters/lora.h"
#include "core/formats/gguf_write.h"
#include "core/formats/safetensors.h"
#include "core/nn/adapter.h"

#define PEFT_CONFIG "adapter_config.json"
#define PEFT_WEIGHTS "adapter_model.safetensors"
#define PEFT_LEGACY_WEIGHTS "adapter_model.bin"
#define PEFT_PREFIX "base_model.model."
#define PEFT_PATH_MAX 1024

static int has_lora(const Linear *l) { return l->adapter && strcmp(l->adapter->ops->kind, "lora") == 0; }

static PeftcStatus count_sink(void *user, const char *name, const Tensor *t) {
    (void)name, (void)t;
    ++*(int *)user;
    return PEFTC_OK;
}

/* Every adapter with a low-rank part exports it as a LoRA pair (three-matrix and subspace methods fold
 * into A and B), so such a module is saved; a sparse-only one (RoSA's with r = 0, as SDT puts on x_proj)
 * exports nothing and is not listed. Only plain LoRA adapters can be loaded back into. */
static int exports_lora(const Linear *l) {
    int n = 0;
    return l->adapter && l->adapter->ops->export_tensors(l->adapter, count_sink, &n) == PEFTC_OK && n > 0;
}

/* Union of the target bits (the family's target list) of the modules that carry an adapter. */
static unsigned adapted_targets(const Model *m) {
    unsigned bits = 0;
    for (int i = 0; i < m->n_linears; i++)
        if (exports_lora(m->linears[i])) bits |= linear_target_bit(m->linears[i]);
    return bits;
}

static PeftcStatus join_path(char *out, const char *dir, const char *file) {
    int n = snprintf(out, PEFT_PATH_MAX, "%s/%s", dir, file);
    if (n < 0 || n >= PEFT_PATH_MAX)
        return PEFTC_ERR(PEFTC_EINVAL, "adapter folder '%s': path longer than %d bytes", dir, PEFT_PATH_MAX - 1);
    return PEFTC_OK;
}

static PeftcStatus mkdir_p(const char *dir) {
    char buf[PEFT_PATH_MAX];
    if (!*dir) return PEFTC_ERR(PEFTC_EINVAL, "adapter folder: empty path");
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return PEFTC_ERR(PEFTC_EINVAL, "adapter folder '%s': path longer than %zu bytes", dir, sizeof buf - 1);
    for (char *p = buf + 1;; p++) {
        char c = *p;
        if (c != '/' && c != '\0') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return PEFTC_ERR(PEFTC_EWRITE, "adapter folder: cannot create '%s': %s", buf, strerror(errno));
        if (c == '\0') return PEFTC_OK;
        *p = c;
    }
}

/* path.tmp, fsync, rename: readers see the old file or the whole new one. */
static PeftcStatus write_atomic(const char *path, const char *text) {
    char tmp[PEFT_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return PEFTC_ERR(PEFTC_EWRITE, "cannot write '%s': %s", tmp, strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int err = errno;
        remove(tmp);
        return PEFTC_ERR(PEFTC_EWRITE, "cannot write '%s': %s", path, strerror(err));
    }
    return PEFTC_OK;
}

/* ---------------------------------------------------------------- saving */

typedef struct {
    StWriter *w;
    const char *path;
    int r;
    const Backend *be; /* where the adapters' tensors live */
} StSink;

static PeftcStatus st_sink(void *user, const char *name, const Tensor *t) {
    StSink *s = user;
    if (t->dtype != DT_REAL || t->device != s->be->device)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: tensor '%s' is not %s on the %s backend", s->path, name, PEFTC_REAL_NAME,
                         s->be->name);
    int is_a = strstr(name, ".lora_A.") != NULL;
    if (t->shape.ndim != 2 || t->shape.dim[is_a ? 0 : 1] != s->r)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: tensor '%s' has rank %lld but lora.r is %d", s->path, name,
                         (long long)t->shape.dim[is_a ? 0 : 1], s->r);
    if (t->device == DEV_CPU) return st_writer_add(s->w, name, ST_F32, &t->shape, t->data);
    size_t bytes = tensor_bytes(t);
    real_t *host = malloc(bytes);
    if (!host) return PEFTC_ERR(PEFTC_ENOMEM, "%s: no host memory to copy tensor '%s'", s->path, name);
    s->be->download(s->be, host, t->data, bytes);
    PeftcStatus st = s->be->status(s->be);
    if (st == PEFTC_OK) st = st_writer_add(s->w, name, ST_F32, &t->shape, host);
    free(host);
    return st;
}

static PeftcStatus save_tensors(const Model *m, int r, const char *path) {
    StSink s = {st_writer_new(), path, r, m->be};
    if (!s.w) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for the safetensors writer", path);
    PeftcStatus st = st_writer_meta(s.w, "format", "pt");
    for (int i = 0; i < m->n_linears && st == PEFTC_OK; i++) {
        const Linear *l = m->linears[i];
        if (exports_lora(l)) st = l->adapter->ops->export_tensors(l->adapter, st_sink, &s);
    }
    if (st == PEFTC_OK) st = st_write(s.w, path);
    st_writer_free(s.w);
    return st;
}

/* The HF module names of the targets, in the family's order. */
static cJSON *target_list(const Model *m, unsigned targets) {
    cJSON *list = cJSON_CreateArray();
    for (int j = 0; list && j < m->n_targets; j++) {
        if (!(targets & (1u << j))) continue;
        cJSON *s = cJSON_CreateString(m->targets[j].hf);
        if (!s || !cJSON_AddItemToArray(list, s)) {
            cJSON_Delete(s);
            cJSON_Delete(list);
            return NULL;
        }
    }
    return list;
}

/* The fields PEFT's LoraConfig writes, with the values that describe what this program trains. */
static cJSON *config_json(const Model *m, const LoraConfig *cfg, unsigned targets, const char *base_name) {
    cJSON *o = cJSON_CreateObject();
    cJSON *list = target_list(m, targets);
    int ok = o && list && cJSON_AddStringToObject(o, "peft_type", "LORA") &&
             cJSON_AddStringToObject(o, "task_type", "CAUSAL_LM") &&
             cJSON_AddStringToObject(o, "base_model_name_or_path", base_name ? base_name : "") &&
             cJSON_AddBoolToObject(o, "inference_mode", 1) && cJSON_AddNumberToObject(o, "r", cfg->r) &&
             cJSON_AddNumberToObject(o, "lora_alpha", cfg->alpha) &&
             cJSON_AddNumberToObject(o, "lora_dropout", cfg->dropout) &&
             cJSON_AddItemToObject(o, "target_modules", list);
    if (!ok) cJSON_Delete(list); /* not owned by o unless the add succeeded */
    ok = ok && cJSON_AddStringToObject(o, "bias", "none") && cJSON_AddBoolToObject(o, "fan_in_fan_out", 0) &&
         cJSON_AddBoolToObject(o, "use_rslora", cfg->rslora != 0) && cJSON_AddBoolToObject(o, "use_dora", 0) &&
         cJSON_AddNullToObject(o, "modules_to_save") && cJSON_AddBoolToObject(o, "init_lora_weights", 1) &&
         cJSON_AddNullToObject(o, "layers_to_transform") && cJSON_AddNullToObject(o, "layers_pattern") &&
         cJSON_AddObjectToObject(o, "rank_pattern") && cJSON_AddObjectToObject(o, "alpha_pattern") &&
         cJSON_AddNullToObject(o, "revision");
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static PeftcStatus save_config(const Model *m, const LoraConfig *cfg, unsigned targets, const char *base_name,
                               const char *path) {
    cJSON *o = config_json(m, cfg, targets, base_name);
    char *text = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!text) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory building the adapter config", path);
    PeftcStatus st = write_atomic(path, text);
    cJSON_free(text);
    return st;
}

PeftcStatus peft_save(const Model *m, const LoraConfig *cfg, const char *base_name, const char *dir) {
    unsigned targets = adapted_targets(m);
    if (!targets) return PEFTC_ERR(PEFTC_ESTATE, "PEFT adapter '%s': no LoRA adapter is attached to the model", dir);
    char path[PEFT_PATH_MAX];
    PEFTC_TRY(mkdir_p(dir));
    PEFTC_TRY(join_path(path, dir, PEFT_WEIGHTS));
    PEFTC_TRY(save_tensors(m, cfg->r, path));
    PEFTC_TRY(join_path(path, dir, PEFT_CONFIG));
    return save_config(m, cfg, targets, base_name, path);
}

/* ---------------------------------------------------------------- adapter_config.json */

static int json_set(const cJSON *item) { return item && !cJSON_IsNull(item); }

/* *out = the number at key, or dflt when absent or null (required: error instead). */
static PeftcStatus json_number(const cJSON *o, const char *path, const char *key, int required, double dflt,
                               double *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!json_set(it)) {
        if (required) return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s is missing (expected a number)", path, key);
        *out = dflt;
        return PEFTC_OK;
    }
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s must be a finite number", path, key);
    *out = it->valuedouble;
    return PEFTC_OK;
}

static PeftcStatus json_bool(const cJSON *o, const char *path, const char *key, int *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = 0;
    if (!json_set(it)) return PEFTC_OK;
    if (!cJSON_IsBool(it)) return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s must be true or false", path, key);
    *out = cJSON_IsTrue(it);
    return PEFTC_OK;
}

static PeftcStatus parse_targets(const cJSON *tm, const char *path, unsigned *out) {
    if (!json_set(tm))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: target_modules is missing (expected a list such as [\"q_proj\", "
                                        "\"v_proj\"] or \"all-linear\")", path);
    if (cJSON_IsString(tm)) {
        if (strcmp(tm->valuestring, "all-linear") == 0) {
            *out = LORA_T_ALL;
            return PEFTC_OK;
        }
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: target_modules as a regex is not supported (got \"%s\"); list the "
                                        "module names instead, e.g. [\"q_proj\", \"v_proj\"]", path, tm->valuestring);
    }
    if (!cJSON_IsArray(tm))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: target_modules must be a list of module names or \"all-linear\"", path);
    /* Each name must be a linear layer of a family peftc knows; which family is decided against the
     * model when the adapter is loaded (lora.init_from resolves the names again there). */
    unsigned bits = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, tm) {
        unsigned b = 0;
        if (!cJSON_IsString(it) || lora_parse_targets(it->valuestring, &b) != PEFTC_OK) {
            peftc_err_clear();
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: target_modules: '%s' is not supported (expected q_proj, k_proj, "
                                            "v_proj, o_proj, gate_proj, up_proj or down_proj on a LLaMA-family "
                                            "model; in_proj, x_proj, dt_proj or out_proj on a Mamba model)", path,
                             cJSON_IsString(it) ? it->valuestring : "(not a string)");
        }
        bits |= b;
    }
    if (!bits) return PEFTC_ERR(PEFTC_EFORMAT, "%s: target_modules is an empty list", path);
    *out = bits;
    return PEFTC_OK;
}

static PeftcStatus check_empty_pattern(const cJSON *o, const char *path, const char *key, const char *what) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!json_set(it) || (cJSON_IsObject(it) && !it->child)) return PEFTC_OK;
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: %s is not empty: per-module %s are not supported (every adapted module "
                                    "must use the same r and lora_alpha)", path, key, what);
}

/* Options that change which tensors exist or how they combine; loading such an adapter as plain LoRA
 * would silently compute something else. */
static PeftcStatus check_unsupported(const cJSON *o, const char *path) {
    int dora;
    PEFTC_TRY(json_bool(o, path, "use_dora", &dora));
    if (dora)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: use_dora is true: DoRA adapters are not supported (plain LoRA only)",
                         path);
    PEFTC_TRY(check_empty_pattern(o, path, "rank_pattern", "ranks"));
    PEFTC_TRY(check_empty_pattern(o, path, "alpha_pattern", "alphas"));
    if (json_set(cJSON_GetObjectItemCaseSensitive(o, "layers_to_transform")))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: layers_to_transform is set: adapting only some layers is not supported "
                                        "(expected null: every layer is adapted)", path);
    const cJSON *mts = cJSON_GetObjectItemCaseSensitive(o, "modules_to_save");
    if (json_set(mts) && !(cJSON_IsArray(mts) && !mts->child))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: modules_to_save is set: fully trained extra modules are not supported "
                                        "(expected null)", path);
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(o, "bias");
    if (json_set(bias) && !(cJSON_IsString(bias) && strcmp(bias->valuestring, "none") == 0))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: bias must be \"none\": trained biases are not supported", path);
    return PEFTC_OK;
}

static PeftcStatus parse_config(const cJSON *o, const char *path, LoraConfig *cfg) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "peft_type");
    if (!cJSON_IsString(type))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: peft_type is missing (expected \"LORA\")", path);
    if (strcmp(type->valuestring, "LORA") != 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: peft_type is \"%s\": only \"LORA\" adapters are supported", path,
                         type->valuestring);
    PEFTC_TRY(check_unsupported(o, path));
    LoraConfig c = {0};
    double r;
    PEFTC_TRY(json_number(o, path, "r", 1, 0, &r));
    if (r < 1 || r > 65536 || r != floor(r))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: r must be a whole number >= 1, got %g", path, r);
    c.r = (int)r;
    PEFTC_TRY(json_number(o, path, "lora_alpha", 0, 8, &c.alpha)); /* PEFT's default */
    PEFTC_TRY(json_number(o, path, "lora_dropout", 0, 0, &c.dropout));
    if (c.dropout < 0 || c.dropout >= 1)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: lora_dropout must be in [0, 1), got %g", path, c.dropout);
    PEFTC_TRY(json_bool(o, path, "use_rslora", &c.rslora));
    PEFTC_TRY(parse_targets(cJSON_GetObjectItemCaseSensitive(o, "target_modules"), path, &c.targets));
    *cfg = c;
    return PEFTC_OK;
}

static PeftcStatus read_text(const char *path, char **text, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return PEFTC_ERR(PEFTC_EIO, "cannot open '%s': %s", path, strerror(errno));
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size < 0 || size > (16L << 20) || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: cannot read it (unseekable or larger than 16 MiB)", path);
    }
    char *buf = malloc((size_t)size + 1);
    size_t got = buf ? fread(buf, 1, (size_t)size, f) : 0;
    fclose(f);
    if (!buf) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for %ld bytes", path, size);
    if (got != (size_t)size) {
        free(buf);
        return PEFTC_ERR(PEFTC_EIO, "cannot read '%s': short read", path);
    }
    *text = buf;
    *len = got;
    return PEFTC_OK;
}

/* adapter_config.json of folder dir as a JSON object in *out (path receives its path). */
static PeftcStatus read_config_json(const char *dir, char path[PEFT_PATH_MAX], cJSON **out) {
    PEFTC_TRY(join_path(path, dir, PEFT_CONFIG));
    char *text = NULL;
    size_t n = 0;
    PEFTC_TRY(read_text(path, &text, &n));
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    long at = end ? (long)(end - text) : -1;
    free(text);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: not a JSON object (parse error near byte %ld)", path, at);
    }
    *out = o;
    return PEFTC_OK;
}

/* target_modules as comma-separated text (a checked config: a string or a list of strings). */
static PeftcStatus target_names(const cJSON *o, const char *path, char *out, size_t cap) {
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(o, "target_modules"), *it;
    const cJSON *list = cJSON_IsArray(tm) ? tm : NULL;
    size_t used = 0;
    out[0] = '\0';
    if (cJSON_IsString(tm)) used = (size_t)snprintf(out, cap, "%s", tm->valuestring);
    cJSON_ArrayForEach(it, list)
        if (used < cap) used += (size_t)snprintf(out + used, cap - used, "%s%s", used ? "," : "", it->valuestring);
    if (used >= cap) return PEFTC_ERR(PEFTC_EFORMAT, "%s: target_modules longer than %zu bytes", path, cap - 1);
    return PEFTC_OK;
}

PeftcStatus peft_read_config_targets(const char *dir, LoraConfig *cfg, char *targets, size_t cap) {
    char path[PEFT_PATH_MAX];
    cJSON *o = NULL;
    PEFTC_TRY(read_config_json(dir, path, &o));
    PeftcStatus st = parse_config(o, path, cfg);
    if (st == PEFTC_OK && targets) st = target_names(o, path, targets, cap);
    cJSON_Delete(o);
    return st;
}

PeftcStatus peft_read_config(const char *dir, LoraConfig *cfg) { return peft_read_config_targets(dir, cfg, NULL, 0); }

/* ---------------------------------------------------------------- loading */

int peft_split_name(const char *name, char *module, size_t cap, int *which) {
    static const char *const suffix[4] = {".lora_A.weight", ".lora_B.weight", ".lora_A.default.weight",
                                          ".lora_B.default.weight"};
    size_t np = strlen(PEFT_PREFIX);
    if (strncmp(name, PEFT_PREFIX, np) != 0) return 0;
    const char *rest = name + np;
    size_t n = strlen(rest);
    for (int i = 0; i < 4; i++) {
        size_t ns = strlen(suffix[i]);
        if (n <= ns || n - ns >= cap || strcmp(rest + n - ns, suffix[i]) != 0) continue;
        memcpy(module, rest, n - ns);
        module[n - ns] = '\0';
        *which = i % 2;
        return 1;
    }
    return 0;
}

/* Index in m->linears of the linear named `module`, or -1. */
static int find_linear(const Model *m, const char *module, const Linear **out) {
    for (int i = 0; i < m->n_linears; i++)
        if (strcmp(m->linears[i]->name, module) == 0) {
            *out = m->linears[i];
            return i;
        }
    return -1;
}

static PeftcStatus load_tensor(const Model *m, Arena *arena, const StFile *f, const StTensor *t,
                               unsigned char *seen) {
    char module[ARENA_NAME_MAX - 8];
    int which;
    if (!peft_split_name(t->name, module, sizeof module, &which))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': unexpected name (expected %s<module>.lora_A.weight or "
                                        ".lora_B.weight)", f->file.path, t->name, PEFT_PREFIX);
    const Linear *l = NULL;
    int idx = find_linear(m, module, &l);
    if (idx < 0 || !has_lora(l))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': module %s %s", f->file.path, t->name, module,
                         idx < 0 ? "does not exist in the model"
                                 : "has no LoRA adapter in this run (check lora.targets)");
    if (seen[2 * idx + which]++)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s': module %s has a second lora_%c tensor", f->file.path,
                         t->name, module, which ? 'B' : 'A');
    char entry[ARENA_NAME_MAX];
    snprintf(entry, sizeof entry, "%s.lora_%c", module, which ? 'B' : 'A');
    int h = arena_find(arena, entry);
    if (h < 0)
        return PEFTC_ERR(PEFTC_ESTATE, "%s: tensor '%s': the arena has no entry %s (adapters attached to another "
                                       "arena?)", f->file.path, t->name, entry);
    size_t n = arena->entries[h].numel;
    real_t *dst = arena_param(arena, h), *host = backend_host_begin(arena->be, dst, n);
    if (!host) return PEFTC_ERR(PEFTC_ENOMEM, "%s: no host memory to read tensor '%s'", f->file.path, t->name);
    PeftcStatus st = st_read_real(f, t, &arena->entries[h].shape, host);
    if (st == PEFTC_OK) backend_host_done(arena->be, dst, host, n);
    else if (host != dst) free(host);
    return st;
}

static PeftcStatus check_complete(const Model *m, const char *path, const unsigned char *seen) {
    for (int i = 0; i < m->n_linears; i++) {
        const Linear *l = m->linears[i];
        if (!has_lora(l) || (seen[2 * i] && seen[2 * i + 1])) continue;
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s%s.lora_%c.weight' is missing (the run adapts %s)", path,
                         PEFT_PREFIX, l->name, seen[2 * i] ? 'B' : 'A', l->name);
    }
    return PEFTC_OK;
}

static PeftcStatus open_weights(const char *dir, StFile *f) {
    char path[PEFT_PATH_MAX], legacy[PEFT_PATH_MAX];
    PEFTC_TRY(join_path(path, dir, PEFT_WEIGHTS));
    PEFTC_TRY(join_path(legacy, dir, PEFT_LEGACY_WEIGHTS));
    if (access(path, F_OK) != 0 && access(legacy, F_OK) == 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: only %s is supported, not the legacy pickle %s (re-save the adapter "
                                        "with safe_serialization=True)", dir, PEFT_WEIGHTS, PEFT_LEGACY_WEIGHTS);
    return st_open(f, path);
}

PeftcStatus peft_load(Model *m, Arena *arena, const char *dir) {
    if (!arena->finalized)
        return PEFTC_ERR(PEFTC_ESTATE, "PEFT adapter '%s': the arena must be finalized before loading", dir);
    if (!adapted_targets(m))
        return PEFTC_ERR(PEFTC_ESTATE, "PEFT adapter '%s': no LoRA adapter is attached to the model", dir);
    StFile f;
    PEFTC_TRY(open_weights(dir, &f));
    unsigned char *seen = calloc((size_t)m->n_linears * 2 + 1, 1);
    PeftcStatus st = seen ? PEFTC_OK : PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", f.file.path);
    for (int i = 0; i < f.n_tensors && st == PEFTC_OK; i++) st = load_tensor(m, arena, &f, &f.tensors[i], seen);
    if (st == PEFTC_OK) st = check_complete(m, f.file.path, seen);
    free(seen);
    st_close(&f);
    return st;
}

/* ---------------------------------------------------------------- llama.cpp GGUF */

typedef struct {
    Tensor A, B; /* A (r,in), B (out,r) */
    int got;
} LoraPair;

static PeftcStatus pair_sink(void *user, const char *name, const Tensor *t) {
    LoraPair *p = user;
    if (t->device != DEV_CPU || t->dtype != DT_REAL)
        return PEFTC_ERR(PEFTC_EINVAL, "GGUF export: tensor '%s' is not in host memory as %s", name, PEFTC_REAL_NAME);
    int is_a = strstr(name, ".lora_A.") != NULL;
    *(is_a ? &p->A : &p->B) = *t;
    p->got |= is_a ? 1 : 2;
    return PEFTC_OK;
}

/* convert_hf_to_gguf.py reorders the rows of q and k inside each head, from HF's rotate-half pairs
 * (i, i + hd/2) to ggml's adjacent pairs (2i, 2i + 1), so llama.cpp's base weights differ from HF's
 * by that row permutation. Delta W = s B A permutes the same way through B's rows alone, which is
 * what convert_lora_to_gguf.py does. dst, src: (n_head*hd, r). */
static void permute_rows(real_t *dst, const real_t *src, int n_head, int hd, int r) {
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < hd / 2; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + (size_t)(h * hd + 2 * i + j) * r, src + (size_t)(h * hd + j * hd / 2 + i) * r,
                       (size_t)r * sizeof *dst);
}

/* Adds "blk.<layer>.<gguf>.weight.lora_a" ne [in, r] (the bytes of A (r,in)) and ".lora_b" ne [r, out]
 * (the bytes of B (out,r), rows permuted for q and k when n_head > 0). */
static PeftcStatus add_gguf_pair(GgufWriter *w, const LoraPair *p, const char *path, int layer, const char *gg,
                                 int n_head, int hd) {
    char name[64];
    int64_t r = p->A.shape.dim[0], in = p->A.shape.dim[1], out = p->B.shape.dim[0];
    snprintf(name, sizeof name, "blk.%d.%s.weight.lora_a", layer, gg);
    PEFTC_TRY(gguf_writer_add_real(w, name, GGML_F32, 2, (int64_t[]){in, r}, p->A.data));
    snprintf(name, sizeof name, "blk.%d.%s.weight.lora_b", layer, gg);
    if (!n_head) return gguf_writer_add_real(w, name, GGML_F32, 2, (int64_t[]){r, out}, p->B.data);
    if (out != (int64_t)n_head * hd)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: tensor '%s': %lld rows, expected %d heads x %d", path, name,
                         (long long)out, n_head, hd);
    real_t *perm = malloc((size_t)(out * r) * sizeof *perm);
    if (!perm) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for tensor '%s'", path, name);
    permute_rows(perm, p->B.data, n_head, hd, (int)r);
    PeftcStatus st = gguf_writer_add_real(w, name, GGML_F32, 2, (int64_t[]){r, out}, perm);
    free(perm);
    return st;
}

static PeftcStatus add_gguf_linear(GgufWriter *w, const Model *m, const Linear *l, int r, const char *path) {
    LoraPair p = {0};
    PEFTC_TRY(l->adapter->ops->export_tensors(l->adapter, pair_sink, &p));
    if (p.got != 3 || p.A.shape.dim[0] != r)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: layer %s: adapter rank differs from lora.r = %d", path, l->name, r);
    int hd = l->rope_heads ? l->out / l->rope_heads : 0;
    return add_gguf_pair(w, &p, path, l->layer, m->targets[l->target].gguf, l->rope_heads, hd);
}

/* llama.cpp scales an adapter by alpha / r (r read from the tensors); storing scale * r makes that
 * equal this run's scale, rsLoRA included. */
static PeftcStatus add_gguf_meta(GgufWriter *w, const Model *m, const LoraConfig *cfg) {
    PEFTC_TRY(gguf_writer_str(w, "general.architecture", m->gguf_arch));
    PEFTC_TRY(gguf_writer_str(w, "general.type", "adapter"));
    PEFTC_TRY(gguf_writer_str(w, "adapter.type", "lora"));
    return gguf_writer_f32(w, "adapter.lora.alpha", (float)(lora_scale(cfg) * cfg->r));
}

PeftcStatus peft_save_gguf(const Model *m, const LoraConfig *cfg, const char *path) {
    if (!adapted_targets(m))
        return PEFTC_ERR(PEFTC_ESTATE, "GGUF adapter '%s': no LoRA adapter is attached to the model", path);
    GgufWriter *w = gguf_writer_new();
    if (!w) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory for the GGUF writer", path);
    PeftcStatus st = add_gguf_meta(w, m, cfg);
    for (int i = 0; i < m->n_linears && st == PEFTC_OK; i++)
        if (exports_lora(m->linears[i])) st = add_gguf_linear(w, m, m->linears[i], cfg->r, path);
    if (st == PEFTC_OK) st = gguf_writer_write(w, path);
    gguf_writer_free(w);
    return st;
}
