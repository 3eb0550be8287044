/* model_load.h's entry points: a GGUF file goes to model_gguf_*, a folder to model_hf_*. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/models/llama/model_formats.h"

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
    size_t n = strlen(path);
    const char *hint = n >= 12 && strcmp(path + n - 12, ".safetensors") == 0
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

PeftcStatus model_load(LlamaModel *m, const Backend *be, const char *path, ModelInfo *info) {
    memset(m, 0, sizeof *m); /* llama_free() is safe on m whatever happens */
    ModelInfo local;
    if (!info) info = &local;
    ModelSource src;
    PEFTC_TRY(classify(path, &src));
    PeftcStatus st = src == SRC_HF ? model_hf_load(m, be, path, info) : model_gguf_load(m, be, path, info);
    if (st == PEFTC_OK) note_source(info, path, src);
    return st;
}

PeftcStatus model_load_quantized(LlamaModel *m, const Backend *be, const char *path, ModelInfo *info) {
    memset(m, 0, sizeof *m);
    ModelInfo local;
    if (!info) info = &local;
    ModelSource src;
    PEFTC_TRY(classify(path, &src));
    if (src != SRC_GGUF)
        return PEFTC_ERR(PEFTC_EINVAL, "model '%s' is an HF folder: model.quantized=true keeps a GGUF file's quantized "
                         "blocks, so it needs model.path to be a GGUF file (or set model.quantized=false)", path);
    PEFTC_TRY(model_gguf_load_quantized(m, be, path, info));
    note_source(info, path, src);
    return PEFTC_OK;
}
