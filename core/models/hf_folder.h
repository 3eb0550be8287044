/* What every family's HF folder loader and writer share: config.json readers, the weight files (one
 * model.safetensors, or shards listed in model.safetensors.index.json), finding and reading each base
 * tensor by its HF name, and writing a folder back. Errors name the file, the key or tensor, and what
 * was expected. */
#ifndef PEFTC_HF_FOLDER_H
#define PEFTC_HF_FOLDER_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "core/base/status.h"
#include "core/base/tensor.h"
#include "core/formats/safetensors.h"
#include "core/models/model.h"

#define HF_CONFIG "config.json"
#define HF_SINGLE "model.safetensors"
#define HF_INDEX "model.safetensors.index.json"

PeftcStatus hf_join(char *out, size_t n, const char *dir, const char *name);
int hf_is_file(const char *path);
/* The folder's last path component ("models/smol/" -> "smol"; "." -> the working folder's name). */
void hf_folder_name(const char *dir, char *out, size_t n);

/* ---- config.json ---- */
typedef struct {
    char path[1024];
    cJSON *root;
} HfCfg;

/* Reads dir/config.json (must be an object); hf_cfg_close frees it. */
PeftcStatus hf_cfg_open(HfCfg *c, const char *dir);
void hf_cfg_close(HfCfg *c);
/* The value of key, NULL when absent or null. */
const cJSON *hf_cfg_item(const HfCfg *c, const char *key);
/* Positive integer; absent or null gives dflt, or an error when dflt < 0 (required key). */
PeftcStatus hf_cfg_int(const HfCfg *c, const char *key, int dflt, int *out);
/* Positive finite number v (named key in errors); v NULL gives dflt. */
PeftcStatus hf_cfg_num(const HfCfg *c, const cJSON *v, const char *key, double dflt, double *out);
PeftcStatus hf_cfg_bool(const HfCfg *c, const char *key, int dflt, int *out);
/* model_type is one of types (n), or else an "architectures" entry is one of classes (n): its index. */
PeftcStatus hf_cfg_arch(const HfCfg *c, const char *const *types, const char *const *classes, int n, int *out);

/* ---- weight files ---- */
typedef struct {
    char dir[1024];
    char index_path[1024];
    cJSON *index;             /* model.safetensors.index.json, or NULL for one model.safetensors */
    const cJSON *weight_map;  /* inside index */
    char **files;             /* (n_files) paths, sorted and unique */
    int n_files;
    StFile *sf;               /* (n_files) opened by hf_weights_map, else NULL */
    int n_mapped;
} HfWeights;

/* Lists the folder's weight files (model.safetensors wins over an index, as in transformers). */
PeftcStatus hf_weights_open(HfWeights *w, const char *dir);
/* Opens (maps) every listed file, for the calls below that read tensors. */
PeftcStatus hf_weights_map(HfWeights *w);
void hf_weights_close(HfWeights *w);
/* FNV-1a over each weight file's header and size: stable across copies, no data read. */
PeftcStatus hf_weights_hash(const HfWeights *w, uint64_t *out);
/* The tensor `name` (where the index says): its file and entry; a missing one is an error naming
 * want (its expected shape) and why (appended; may be ""). */
PeftcStatus hf_weights_find(const HfWeights *w, const char *name, const Shape *want, const char *why,
                            const StFile **file, const StTensor **t);
/* name is present with exactly that shape (checked before a model is allocated). */
PeftcStatus hf_weights_expect(const HfWeights *w, const char *name, Shape shape);
/* Every ref read from its tensor (host memory), converted to real_t. */
PeftcStatus hf_weights_fill(const HfWeights *w, const ParamRef *refs, int n_refs);
/* A tensor whose name starts with prefix (the layers' part of the checkpoint) and is not one of refs
 * is a parameter the model would drop: refused, with `described` saying what the config describes. */
PeftcStatus hf_weights_no_extras(const HfWeights *w, const ParamRef *refs, int n_refs, const char *prefix,
                                 const char *skip_suffix, const char *described);

/* The folder's identity for ModelInfo: path, name (the folder's) and content hash; arch is the
 * caller's. */
PeftcStatus hf_folder_identity(const char *dir, char *path, size_t path_cap, char *name, size_t name_cap,
                               uint64_t *hash);

/* ---- writing ---- */
/* dir/model.safetensors with every ref (host memory) as st_dtype (F32, F16 or BF16), then
 * dir/config.json from config (consumed): a config.json that is new always has its weights beside it. */
PeftcStatus hf_save_folder(const char *dir, const ParamRef *refs, int n_refs, int st_dtype, cJSON *config);
/* "float32", "float16" or "bfloat16" for config.json's torch_dtype. */
const char *hf_torch_dtype(int st_dtype);

#endif
