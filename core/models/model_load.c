/* model_load.h's entry points: the file's format (GGUF or HF folder) and family (its architecture
 * name) choose the loader. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/base/str.h"
#include "core/formats/json_file.h"
#include "core/models/llama/model_formats.h"
#include "core/models/mamba/mamba_formats.h"

typedef enum { SRC_GGUF, SRC_HF } ModelSource;

#define EXPECTED "expected a GGUF file or an HF model folder (config.json + model.safetensors)"

static PeftcStatus classify(const char *path, ModelSource *src) {
    struct stat sb;
    if (stat(path, &sb) != 0) return PEFTC_ERR(PEFTC_EIO, "model '%s': %s; " EXPECTED, path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        *src = SRC_HF;
        return PEFTC_OK;
    }
    char magic[4] = {0};
    FILE *f = S_ISREG(sb.st_mode) ? fopen(path, "rb") : NULL;
    size_t got = f ? fread(magic, 1, 4, f) : 0;
    if (f) fclose(f);
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) {
        *src = SRC_GGUF;
        return PEFTC_OK;
    }
    const char *hint = str_ends_with(path, ".safetensors")
                           ? "; for safetensors weights give the folder that holds them and their config.json" : "";
    return PEFTC_ERR(PEFTC_EFORMAT, "model '%s' is neither a folder nor a file starting with \"GGUF\"; " EXPECTED "%s",
                     path, hint);
}

static void note_source(ModelInfo *info, const char *path, ModelSource src) {
    snprintf(info->path, sizeof info->path, "%s", path);
    info->is_gguf = src == SRC_GGUF;
}

PeftcStatus model_read_config(const char *path, LlamaConfig *cfg, ModelInfo *info) {
    ModelInfo local;
    if (!info) info = &local;
    ModelSource src;
    PEFTC_TRY(classify(path, &src));
    PeftcStatus st;
    if (src == SRC_HF) {
        st = model_hf_config(path, cfg, info);
    } else {
        GgufFile g;
        PEFTC_TRY(gguf_open(&g, path));
        st = model_gguf_config(&g, cfg, info);
        gguf_close(&g);
    }
    if (st == PEFTC_OK) note_source(info, path, src);
    return st;
}

PeftcStatus llama_load(LlamaModel *m, const Backend *be, const char *path, ModelInfo *info) {
    memset(m, 0, sizeof *m); /* llama_free() is safe on m whatever happens */
    ModelInfo local;
    if (!info) info = &local;
    ModelSource src;
    PEFTC_TRY(classify(path, &src));
    PeftcStatus st = src == SRC_HF ? model_hf_load(m, be, path, info) : model_gguf_load(m, be, path, info);
    if (st == PEFTC_OK) note_source(info, path, src);
    return st;
}

PeftcStatus llama_load_quantized(LlamaModel *m, const Backend *be, const char *path, QuantMode mode,
                                 ModelInfo *info) {
    if (mode == QUANT_NONE) return llama_load(m, be, path, info);
    memset(m, 0, sizeof *m);
    ModelInfo local;
    if (!info) info = &local;
    ModelSource src;
    PEFTC_TRY(classify(path, &src));
    if (src == SRC_HF && mode == QUANT_BLOCKS)
        return PEFTC_ERR(PEFTC_EINVAL, "model '%s' is an HF folder: model.quantized=true keeps a GGUF file's quantized "
                         "blocks, so it needs model.path to be a GGUF file; set model.quantized=nf4 to quantize the "
                         "folder's weights to NF4 at load (or false for the dense base)", path);
    if (src == SRC_GGUF && mode == QUANT_NF4)
        return PEFTC_ERR(PEFTC_EINVAL, "model '%s' is a GGUF file: model.quantized=nf4 quantizes an HF folder's "
                         "weights at load, while a GGUF file's projection weights are already in ggml blocks: set "
                         "model.quantized=true to keep them as they are (or false for the dense base)", path);
    if (mode != QUANT_BLOCKS && mode != QUANT_NF4)
        return PEFTC_ERR(PEFTC_EINVAL, "model '%s': model.quantized has no mode %d", path, (int)mode);
    PEFTC_TRY(src == SRC_HF ? model_hf_load_nf4(m, be, path, info) : model_gguf_load_quantized(m, be, path, info));
    note_source(info, path, src);
    return PEFTC_OK;
}

static uint64_t gguf_fnv1a(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* FNV-1a over the header (metadata and tensor infos: names, shapes, types, offsets) and, of every
 * tensor's data, the first, middle and last 4 KiB: any re-quantisation or edit of the weights changes
 * the header or those samples, and the hash costs milliseconds instead of a read of the whole file. */
static uint64_t content_hash(const GgufFile *g) {
    size_t header = g->file.size;
    if (g->n_tensors) header = (size_t)(g->tensors[0].data - g->file.data) - (size_t)g->tensors[0].offset;
    uint64_t h = gguf_fnv1a(0xcbf29ce484222325ull, g->file.data, header);
    const size_t win = 4096;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const GgufTensor *t = &g->tensors[i];
        if (t->nbytes <= 3 * win) {
            h = gguf_fnv1a(h, t->data, (size_t)t->nbytes);
            continue;
        }
        size_t mid = ((size_t)t->nbytes / 2) & ~(win - 1);
        h = gguf_fnv1a(h, t->data, win);
        h = gguf_fnv1a(h, t->data + mid, win);
        h = gguf_fnv1a(h, t->data + t->nbytes - win, win);
    }
    return h;
}

void model_gguf_info(const GgufFile *g, const char *arch, ModelInfo *info) {
    memset(info, 0, sizeof *info);
    snprintf(info->path, sizeof info->path, "%s", g->file.path);
    info->is_gguf = 1;
    snprintf(info->arch, sizeof info->arch, "%s", arch);
    GgufStr name;
    if (gguf_find(g, "general.name") && gguf_get_str(g, "general.name", &name) == PEFTC_OK) {
        int n = (int)(name.len < sizeof info->name ? name.len : sizeof info->name - 1);
        snprintf(info->name, sizeof info->name, "%.*s", n, name.ptr);
    } else {
        const char *slash = strrchr(g->file.path, '/');
        snprintf(info->name, sizeof info->name, "%.*s", (int)sizeof info->name - 1, slash ? slash + 1 : g->file.path);
    }
    uint32_t ctx = 0;
    char key[64];
    snprintf(key, sizeof key, "%s.context_length", arch);
    if (gguf_get_u32_or(g, key, 0, &ctx) != PEFTC_OK) ctx = 0; /* informative only */
    info->context_length = ctx;
    info->content_hash = content_hash(g);
}

/* ---------------------------------------------------------------- families */

typedef struct {
    const char *const *names; /* GGUF general.architecture and HF model_type values it reads */
    PeftcStatus (*load)(Model **out, const Backend *be, const char *path, QuantMode quantized, ModelInfo *info);
} ModelFamily;

/* The first family also takes files whose architecture no family names: its loader's error then says
 * what it expected. */
static const ModelFamily families[] = {
    {(const char *const[]){"llama", "mistral", "qwen2", NULL}, llama_open},
    {(const char *const[]){"mamba", NULL}, mamba_open},
};

/* The architecture name a file declares, or "" when it cannot be read here (the loader reports why). */
static void file_arch(const char *path, ModelSource src, char *arch, size_t cap) {
    arch[0] = '\0';
    if (src == SRC_GGUF) {
        GgufFile g;
        GgufStr s;
        if (gguf_open(&g, path) != PEFTC_OK) {
            peftc_err_clear(); /* the loader opens it again and says what is wrong */
            return;
        }
        if (gguf_get_str(&g, "general.architecture", &s) == PEFTC_OK)
            snprintf(arch, cap, "%.*s", (int)(s.len < cap ? s.len : cap - 1), s.ptr);
        gguf_close(&g);
        return;
    }
    char file[600];
    cJSON *j;
    snprintf(file, sizeof file, "%s/config.json", path);
    if (json_read_object(file, &j) != PEFTC_OK) {
        peftc_err_clear();
        return;
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (cJSON_IsString(mt)) snprintf(arch, cap, "%s", mt->valuestring);
    cJSON_Delete(j);
}

static const ModelFamily *family_of(const char *arch) {
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        for (const char *const *n = families[i].names; *n; n++)
            if (strcmp(*n, arch) == 0) return &families[i];
    return &families[0];
}

const char *model_file_family(const char *path) {
    ModelSource src;
    char arch[64];
    if (classify(path, &src) != PEFTC_OK) {
        peftc_err_clear(); /* the loader reports it */
        return families[0].names[0];
    }
    file_arch(path, src, arch, sizeof arch);
    return family_of(arch)->names[0];
}

PeftcStatus model_load(Model **out, const Backend *be, const char *path, QuantMode quantized, ModelInfo *info) {
    ModelSource src;
    char arch[64];
    *out = NULL;
    PEFTC_TRY(classify(path, &src));
    file_arch(path, src, arch, sizeof arch);
    return family_of(arch)->load(out, be, path, quantized, info);
}

void model_free(Model *m) {
    if (!m) return;
    m->ops->destroy(m);
    free(m);
}
