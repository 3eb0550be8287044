/* HF model folders: config.json + model.safetensors, or shards listed in model.safetensors.index.json.
 *
 * Accepted architectures are those whose math is exactly this trainer's decoder: "llama" (no biases),
 * "mistral" without an effective sliding window, and "qwen2" (q/k/v biases, full attention). Anything
 * else in config.json that would change what the model computes (RoPE scaling, other activations, MLP
 * or o_proj biases) is refused with the file and key named, rather than loaded and silently ignored. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/formats/json_file.h"
#include "core/models/llama/model_formats.h"
#include "core/formats/safetensors.h"

#define HF_CONFIG "config.json"
#define HF_SINGLE "model.safetensors"
#define HF_INDEX "model.safetensors.index.json"

static PeftcStatus join(char *out, size_t n, const char *dir, const char *name) {
    if (snprintf(out, n, "%s/%s", dir, name) >= (int)n)
        return PEFTC_ERR(PEFTC_EINVAL, "path too long: '%.64s.../%s'", dir, name);
    return PEFTC_OK;
}

static int is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* ---- config.json ---- */

typedef struct {
    const char *path;
    const cJSON *root;
} Cfg;

static const cJSON *cfg_item(const Cfg *c, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, key);
    return cJSON_IsNull(v) ? NULL : v;
}

/* Positive integer; absent or null gives dflt, or an error when dflt < 0 (required key). */
static PeftcStatus cfg_int(const Cfg *c, const char *key, int dflt, int *out) {
    const cJSON *v = cfg_item(c, key);
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

static PeftcStatus cfg_num(const Cfg *c, const cJSON *v, const char *key, double dflt, double *out) {
    if (!v) {
        *out = dflt;
        return PEFTC_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite(v->valuedouble))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s\" must be a positive number", c->path, key);
    *out = v->valuedouble;
    return PEFTC_OK;
}

static PeftcStatus cfg_bool(const Cfg *c, const char *key, int dflt, int *out) {
    const cJSON *v = cfg_item(c, key);
    if (!v) {
        *out = dflt;
        return PEFTC_OK;
    }
    if (!cJSON_IsBool(v)) return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s\" must be true or false", c->path, key);
    *out = cJSON_IsTrue(v);
    return PEFTC_OK;
}

typedef struct {
    const char *type, *cls;
    int qkv_bias;
    int kv_required; /* the class's default kv head count is not "= heads", so the key must be there */
} HfArch;

static const HfArch hf_archs[] = {
    {"llama", "LlamaForCausalLM", 0, 0},
    {"mistral", "MistralForCausalLM", 0, 1},
    {"qwen2", "Qwen2ForCausalLM", 1, 1},
};
enum { N_ARCHS = sizeof hf_archs / sizeof hf_archs[0] };

static PeftcStatus find_arch(const Cfg *c, const HfArch **out) {
    const cJSON *mt = cfg_item(c, "model_type");
    for (int i = 0; cJSON_IsString(mt) && i < N_ARCHS; i++)
        if (strcmp(mt->valuestring, hf_archs[i].type) == 0) {
            *out = &hf_archs[i];
            return PEFTC_OK;
        }
    if (cJSON_IsString(mt))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: model_type \"%s\" is not supported; expected \"llama\" (or \"mistral\", "
                         "\"qwen2\": the LLaMA-family decoders this trainer computes exactly)", c->path, mt->valuestring);
    const cJSON *a;
    cJSON_ArrayForEach(a, cfg_item(c, "architectures")) {
        for (int i = 0; cJSON_IsString(a) && i < N_ARCHS; i++)
            if (strcmp(a->valuestring, hf_archs[i].cls) == 0) {
                *out = &hf_archs[i];
                return PEFTC_OK;
            }
    }
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: no \"model_type\" and no supported \"architectures\" entry; expected "
                     "model_type \"llama\" or architectures [\"LlamaForCausalLM\"]", c->path);
}

/* rope_scaling (and transformers 5's rope_parameters, which also carries rope_theta) may only say
 * "default": any other type rescales positions, which the RoPE tables here do not do. */
static PeftcStatus check_rope(const Cfg *c, double *theta) {
    static const char *keys[] = {"rope_scaling", "rope_parameters"};
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cfg_item(c, keys[k]);
        if (!v) continue;
        if (!cJSON_IsObject(v)) return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s\" must be an object or null", c->path, keys[k]);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "rope_type");
        if (!t) t = cJSON_GetObjectItemCaseSensitive(v, "type");
        const char *type = cJSON_IsString(t) ? t->valuestring : NULL;
        if (!(type ? strcmp(type, "default") == 0 : k == 1))
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s\" asks for RoPE scaling (type \"%s\"); RoPE scaling is not "
                             "supported yet (expected null)", c->path, keys[k], type ? type : "?");
        PEFTC_TRY(cfg_num(c, cJSON_GetObjectItemCaseSensitive(v, "rope_theta"), "rope_parameters.rope_theta", *theta,
                          theta));
    }
    return PEFTC_OK;
}

static PeftcStatus refuse(const Cfg *c, const char *key, const char *why) {
    return PEFTC_ERR(PEFTC_EFORMAT, "%s: \"%s\": %s", c->path, key, why);
}

/* Options that would make HF compute something this decoder does not. */
static PeftcStatus check_math(const Cfg *c, const HfArch *arch, int ctx) {
    const cJSON *v = cfg_item(c, "hidden_act");
    if (v && !(cJSON_IsString(v) && strcmp(v->valuestring, "silu") == 0))
        return refuse(c, "hidden_act", "only \"silu\" (SwiGLU) is supported");
    int flag;
    PEFTC_TRY(cfg_bool(c, "mlp_bias", 0, &flag));
    if (flag) return refuse(c, "mlp_bias", "MLP biases are not supported (expected false)");
    if (!arch->qkv_bias) {
        PEFTC_TRY(cfg_bool(c, "attention_bias", 0, &flag));
        if (flag) return refuse(c, "attention_bias", "true gives o_proj a bias as well, which this model does not "
                                "have (expected false; q/k/v-only biases are model_type \"qwen2\")");
    }
    if (strcmp(arch->type, "qwen2") == 0) {
        PEFTC_TRY(cfg_bool(c, "use_sliding_window", 0, &flag));
        if (flag) return refuse(c, "use_sliding_window", "sliding-window attention is not supported (expected false)");
    }
    if (strcmp(arch->type, "mistral") == 0) {
        int window = 4096; /* MistralConfig's default when the key is absent */
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(c->root, "sliding_window");
        if (cJSON_IsNull(w)) window = 0;
        else PEFTC_TRY(cfg_int(c, "sliding_window", window, &window));
        if (window && (ctx == 0 || window < ctx))
            return refuse(c, "sliding_window", "a window shorter than max_position_embeddings is not supported "
                          "(expected null)");
    }
    cJSON_ArrayForEach(v, cfg_item(c, "layer_types")) {
        if (!cJSON_IsString(v) || strcmp(v->valuestring, "full_attention") != 0)
            return refuse(c, "layer_types", "only \"full_attention\" layers are supported");
    }
    return PEFTC_OK;
}

static PeftcStatus parse_config(const Cfg *c, LlamaConfig *cfg, ModelInfo *info) {
    const HfArch *arch = NULL;
    PEFTC_TRY(find_arch(c, &arch));
    LlamaConfig k = {.qkv_bias = arch->qkv_bias};
    int ctx;
    PEFTC_TRY(cfg_int(c, "hidden_size", -1, &k.hidden));
    PEFTC_TRY(cfg_int(c, "intermediate_size", -1, &k.intermediate));
    PEFTC_TRY(cfg_int(c, "num_hidden_layers", -1, &k.layers));
    PEFTC_TRY(cfg_int(c, "num_attention_heads", -1, &k.heads));
    PEFTC_TRY(cfg_int(c, "num_key_value_heads", arch->kv_required ? -1 : k.heads, &k.kv_heads));
    PEFTC_TRY(cfg_int(c, "head_dim", 0, &k.head_dim));
    PEFTC_TRY(cfg_int(c, "vocab_size", -1, &k.vocab));
    PEFTC_TRY(cfg_int(c, "max_position_embeddings", 0, &ctx));
    PEFTC_TRY(cfg_num(c, cfg_item(c, "rope_theta"), "rope_theta", 10000.0, &k.rope_theta));
    PEFTC_TRY(cfg_num(c, cfg_item(c, "rms_norm_eps"), "rms_norm_eps", 1e-6, &k.rms_eps));
    PEFTC_TRY(cfg_bool(c, "tie_word_embeddings", 0, &k.tie_embeddings));
    PEFTC_TRY(check_rope(c, &k.rope_theta));
    PEFTC_TRY(check_math(c, arch, ctx));
    if (llama_config_check(&k) != PEFTC_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", peftc_err_msg());
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: the sizes it gives are not a valid model: %s", c->path, why);
    }
    *cfg = k;
    snprintf(info->arch, sizeof info->arch, "%s", arch->type);
    info->context_length = ctx;
    return PEFTC_OK;
}

/* ---- weight files ---- */

typedef struct {
    char index_path[1024];
    cJSON *index;             /* model.safetensors.index.json, or NULL for one model.safetensors */
    const cJSON *weight_map;  /* inside index */
    char **files;             /* (n_files) paths, sorted and unique */
    int n_files;
} HfWeights;

static void weights_close(HfWeights *w) {
    for (int i = 0; i < w->n_files; i++) free(w->files[i]);
    free(w->files);
    cJSON_Delete(w->index);
    memset(w, 0, sizeof *w);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static PeftcStatus shard_path(const HfWeights *w, const char *dir, const cJSON *e, char *out, size_t n) {
    const char *s = cJSON_IsString(e) ? e->valuestring : NULL;
    if (!s || !s[0] || strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: weight_map[\"%s\"] must be the file name of a shard in the same folder",
                         w->index_path, e->string);
    return join(out, n, dir, s);
}

/* The distinct shard files named by the index's weight_map. */
static PeftcStatus list_shards(HfWeights *w, const char *dir) {
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
        PEFTC_TRY(shard_path(w, dir, e, path, sizeof path));
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

/* model.safetensors wins over an index when both exist, as in transformers. */
static PeftcStatus weights_open(HfWeights *w, const char *dir) {
    memset(w, 0, sizeof *w);
    char single[1024];
    PEFTC_TRY(join(single, sizeof single, dir, HF_SINGLE));
    PEFTC_TRY(join(w->index_path, sizeof w->index_path, dir, HF_INDEX));
    PeftcStatus st;
    if (is_file(single)) {
        w->files = calloc(1, sizeof *w->files);
        if (!w->files || !(w->files[0] = strdup(single))) st = PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", single);
        else w->n_files = 1, st = PEFTC_OK;
    } else if (is_file(w->index_path)) {
        st = json_read_object(w->index_path, &w->index);
        if (st == PEFTC_OK) st = list_shards(w, dir);
    } else {
        st = PEFTC_ERR(PEFTC_EIO, "%s: no %s or %s; expected the weights of an HF model folder", dir, HF_SINGLE,
                       HF_INDEX);
    }
    if (st != PEFTC_OK) weights_close(w);
    return st;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* FNV-1a over each weight file's header (length and JSON) and size: it changes with any tensor's name,
 * dtype, shape or placement, costs no data reads, and is the same for every copy of the files. */
static PeftcStatus hash_weights(const HfWeights *w, uint64_t *out) {
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

/* The folder's last path component ("models/smol/" -> "smol"; "." -> the working folder's name). */
static void folder_name(const char *dir, char *out, size_t n) {
    char cwd[1024];
    const char *p = dir;
    if ((strcmp(dir, ".") == 0 || strcmp(dir, "./") == 0) && getcwd(cwd, sizeof cwd)) p = cwd;
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && p[start - 1] != '/') start--;
    snprintf(out, n, "%.*s", (int)(len - start), p + start);
}

PeftcStatus model_hf_config(const char *dir, LlamaConfig *cfg, ModelInfo *info) {
    ModelInfo local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    char path[1024];
    PEFTC_TRY(join(path, sizeof path, dir, HF_CONFIG));
    if (!is_file(path))
        return PEFTC_ERR(PEFTC_EIO, "%s: not found; an HF model folder holds %s and %s", path, HF_CONFIG, HF_SINGLE);
    cJSON *root;
    PEFTC_TRY(json_read_object(path, &root));
    PeftcStatus st = parse_config(&(Cfg){path, root}, cfg, info);
    cJSON_Delete(root);
    PEFTC_TRY(st);
    HfWeights w;
    PEFTC_TRY(weights_open(&w, dir));
    st = hash_weights(&w, &info->content_hash);
    weights_close(&w);
    snprintf(info->path, sizeof info->path, "%s", dir);
    folder_name(dir, info->name, sizeof info->name);
    return st;
}

/* ---- loading ---- */

static PeftcStatus locate(const HfWeights *w, const char *dir, const StFile *sf, const ParamRef *r,
                          const StFile **file, const StTensor **t) {
    char want[96];
    shape_str(&r->shape, want, sizeof want);
    const char *why = strcmp(r->name, "lm_head.weight") == 0 ? " (tie_word_embeddings is false, so the model needs "
                                                                "its own LM head)" : "";
    int fi = 0;
    if (w->index) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(w->weight_map, r->name);
        if (!e)
            return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' is missing from weight_map; expected shape %s%s",
                             w->index_path, r->name, want, why);
        char path[1024];
        PEFTC_TRY(shard_path(w, dir, e, path, sizeof path));
        char *key = path;
        char **hit = bsearch(&key, w->files, (size_t)w->n_files, sizeof *w->files, cmp_str);
        if (!hit) return PEFTC_ERR(PEFTC_EFORMAT, "%s: shard '%s' was not opened", w->index_path, path);
        fi = (int)(hit - w->files);
    }
    *file = &sf[fi];
    if (!(*t = st_find(*file, r->name)))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' is missing; expected shape %s%s", sf[fi].file.path, r->name,
                         want, why);
    return PEFTC_OK;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Extra tensors are ignored (tied lm_head, rotary buffers, other heads), except inside the decoder
 * layers: there they are parameters the model would drop, e.g. an o_proj bias or a 31st layer. */
static PeftcStatus check_extras(const LlamaModel *m, const StFile *sf, int n_files) {
    const char **names = malloc((size_t)m->base.n_refs * sizeof *names);
    if (!names) return PEFTC_ERR(PEFTC_ENOMEM, "model: out of memory");
    for (int i = 0; i < m->base.n_refs; i++) names[i] = m->base.refs[i].name;
    qsort(names, (size_t)m->base.n_refs, sizeof *names, cmp_str);
    PeftcStatus st = PEFTC_OK;
    for (int f = 0; f < n_files && st == PEFTC_OK; f++) {
        for (int i = 0; i < sf[f].n_tensors && st == PEFTC_OK; i++) {
            const char *name = sf[f].tensors[i].name;
            if (strncmp(name, "model.layers.", 13) != 0 || ends_with(name, ".rotary_emb.inv_freq")) continue;
            if (!bsearch(&name, names, (size_t)m->base.n_refs, sizeof *names, cmp_str))
                st = PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has no place in the model config.json describes (%d "
                               "layers, %s); loading without it would compute a different model", sf[f].file.path,
                               name, m->cfg.layers, m->cfg.qkv_bias ? "q/k/v biases only" : "no biases");
        }
    }
    free(names);
    return st;
}

static PeftcStatus fill_refs(LlamaModel *m, const HfWeights *w, const char *dir, const StFile *sf) {
    for (int i = 0; i < m->base.n_refs; i++) {
        const ParamRef *r = &m->base.refs[i];
        const StFile *file = NULL;
        const StTensor *t = NULL;
        PEFTC_TRY(locate(w, dir, sf, r, &file, &t));
        PEFTC_TRY(st_read_real(file, t, &r->shape, *r->data));
    }
    return PEFTC_OK;
}

/* One tensor the config implies: present (where the index says) with that shape. */
static PeftcStatus expect_tensor(const HfWeights *w, const char *dir, const StFile *sf, const char *name, Shape shape) {
    ParamRef r = {.shape = shape};
    snprintf(r.name, sizeof r.name, "%s", name);
    const StFile *file;
    const StTensor *t;
    PEFTC_TRY(locate(w, dir, sf, &r, &file, &t));
    if (!shape_equal(&t->shape, &shape)) {
        char got[96], want[96];
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: tensor '%s' has shape %s, expected %s from config.json", file->file.path,
                         name, shape_str(&t->shape, got, sizeof got), shape_str(&shape, want, sizeof want));
    }
    return PEFTC_OK;
}

/* Every tensor config.json implies is in the weight files with its shape, checked before the model
 * is allocated: the tensors lie inside the files, so a layer count, width or vocabulary the files
 * cannot back is refused at once rather than after allocating memory for it. */
static PeftcStatus check_sizes(const HfWeights *w, const char *dir, const StFile *sf, const LlamaConfig *c) {
    int64_t C = c->hidden, I = c->intermediate, V = c->vocab, hd = c->head_dim ? c->head_dim : c->hidden / c->heads;
    int64_t q = c->heads * hd, kv = c->kv_heads * hd;
    /* in the model's own order, so the first tensor reported is the one loading would have met first */
    PEFTC_TRY(expect_tensor(w, dir, sf, "model.embed_tokens.weight", (Shape){2, {V, C}}));
    const struct { const char *name; Shape shape; int bias; } per_layer[] = {
        {"input_layernorm.weight", {1, {C}}, 0}, {"self_attn.q_proj.weight", {2, {q, C}}, 0},
        {"self_attn.q_proj.bias", {1, {q}}, 1}, {"self_attn.k_proj.weight", {2, {kv, C}}, 0},
        {"self_attn.k_proj.bias", {1, {kv}}, 1}, {"self_attn.v_proj.weight", {2, {kv, C}}, 0},
        {"self_attn.v_proj.bias", {1, {kv}}, 1}, {"self_attn.o_proj.weight", {2, {C, q}}, 0},
        {"post_attention_layernorm.weight", {1, {C}}, 0}, {"mlp.gate_proj.weight", {2, {I, C}}, 0},
        {"mlp.up_proj.weight", {2, {I, C}}, 0}, {"mlp.down_proj.weight", {2, {C, I}}, 0}};
    for (int l = 0; l < c->layers; l++)
        for (size_t k = 0; k < sizeof per_layer / sizeof per_layer[0]; k++) {
            if (per_layer[k].bias && !c->qkv_bias) continue;
            char name[128];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, per_layer[k].name);
            PEFTC_TRY(expect_tensor(w, dir, sf, name, per_layer[k].shape));
        }
    PEFTC_TRY(expect_tensor(w, dir, sf, "model.norm.weight", (Shape){1, {C}}));
    if (!c->tie_embeddings) PEFTC_TRY(expect_tensor(w, dir, sf, "lm_head.weight", (Shape){2, {V, C}}));
    return PEFTC_OK;
}

static PeftcStatus load_from(LlamaModel *m, const Backend *be, const LlamaConfig *cfg, const HfWeights *w,
                             const char *dir) {
    StFile *sf = calloc((size_t)w->n_files, sizeof *sf);
    if (!sf) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", dir);
    int opened = 0;
    PeftcStatus st = PEFTC_OK;
    while (st == PEFTC_OK && opened < w->n_files) {
        st = st_open(&sf[opened], w->files[opened]);
        if (st == PEFTC_OK) opened++;
    }
    if (st == PEFTC_OK) st = check_sizes(w, dir, sf, cfg);
    if (st == PEFTC_OK) st = llama_create(m, be, cfg, 0, -1.0);
    if (st == PEFTC_OK) st = check_extras(m, sf, w->n_files);
    if (st == PEFTC_OK) st = fill_refs(m, w, dir, sf);
    for (int i = 0; i < opened; i++) st_close(&sf[i]);
    free(sf);
    return st;
}

PeftcStatus model_hf_load(LlamaModel *m, const Backend *be, const char *dir, ModelInfo *info) {
    memset(m, 0, sizeof *m);
    if (be->device != DEV_CPU)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: the HF loader fills host memory; backend '%s' is not on the CPU", dir,
                         be->name);
    ModelInfo local;
    if (!info) info = &local;
    LlamaConfig cfg;
    PEFTC_TRY(model_hf_config(dir, &cfg, info));
    HfWeights w;
    PEFTC_TRY(weights_open(&w, dir));
    PeftcStatus st = load_from(m, be, &cfg, &w, dir);
    weights_close(&w);
    if (st != PEFTC_OK) llama_free(m);
    return st;
}

/* ---- saving ---- */

static const char *torch_dtype(int st_dtype) {
    return st_dtype == ST_F16 ? "float16" : st_dtype == ST_BF16 ? "bfloat16" : "float32";
}

/* The HF config that makes transformers build this exact model: q/k/v biases need Qwen2's class, since
 * LLaMA's attention_bias would add an o_proj bias too. */
static cJSON *config_json(const LlamaConfig *c, int st_dtype) {
    const HfArch *arch = &hf_archs[c->qkv_bias ? 2 : 0];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "architectures", cJSON_CreateStringArray(&arch->cls, 1));
    cJSON_AddStringToObject(j, "model_type", arch->type);
    cJSON_AddNumberToObject(j, "hidden_size", c->hidden);
    cJSON_AddNumberToObject(j, "intermediate_size", c->intermediate);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->kv_heads);
    cJSON_AddNumberToObject(j, "head_dim", c->head_dim ? c->head_dim : c->hidden / c->heads);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab);
    cJSON_AddNumberToObject(j, "rope_theta", c->rope_theta);
    cJSON_AddNullToObject(j, "rope_scaling");
    cJSON_AddNumberToObject(j, "rms_norm_eps", c->rms_eps);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_embeddings);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    if (c->qkv_bias) cJSON_AddFalseToObject(j, "use_sliding_window");
    else cJSON_AddFalseToObject(j, "attention_bias");
    cJSON_AddFalseToObject(j, "mlp_bias");
    cJSON_AddStringToObject(j, "torch_dtype", torch_dtype(st_dtype));
    return j;
}

static PeftcStatus save_config(const LlamaModel *m, const char *dir, int st_dtype) {
    char path[1024];
    PEFTC_TRY(join(path, sizeof path, dir, HF_CONFIG));
    cJSON *j = config_json(&m->cfg, st_dtype);
    char *text = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!text) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", path);
    PeftcStatus st = fs_write_atomic(path, text, strlen(text));
    free(text);
    return st;
}

static PeftcStatus save_weights(const LlamaModel *m, const char *dir, int st_dtype) {
    char path[1024];
    PEFTC_TRY(join(path, sizeof path, dir, HF_SINGLE));
    StWriter *w = st_writer_new();
    if (!w) return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of memory", path);
    PeftcStatus st = PEFTC_OK;
    for (int i = 0; i < m->base.n_refs && st == PEFTC_OK; i++)
        st = st_writer_add(w, m->base.refs[i].name, (StDType)st_dtype, &m->base.refs[i].shape, *m->base.refs[i].data);
    if (st == PEFTC_OK) st = st_write(w, path);
    st_writer_free(w);
    return st;
}

PeftcStatus model_save_hf(const LlamaModel *m, const char *dir, int st_dtype) {
    if (st_dtype != ST_F32 && st_dtype != ST_F16 && st_dtype != ST_BF16)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: save dtype %d, expected ST_F32, ST_F16 or ST_BF16", dir, st_dtype);
    if (!m->base.be || m->base.be->device != DEV_CPU)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: the HF writer reads host memory; the model is not on the CPU", dir);
    if (m->cfg.quantized)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: the model's base is kept quantized (model.quantized=true): load it dense "
                         "to write or merge into an HF folder", dir);
    PEFTC_TRY(fs_mkdir_p(dir));
    /* Weights first: a folder whose config.json is new always has the matching weights beside it. */
    PEFTC_TRY(save_weights(m, dir, st_dtype));
    return save_config(m, dir, st_dtype);
}
