/* The per-format halves of model_load.h (internal to core/): model_load.c dispatches on the path. */
#ifndef PEFTC_MODEL_FORMATS_H
#define PEFTC_MODEL_FORMATS_H

#include "core/formats/gguf.h"
#include "core/models/model_load.h"

/* GGUF (core/model_gguf.c) */
PeftcStatus model_gguf_config(const GgufFile *g, LlamaConfig *cfg, ModelInfo *info);
PeftcStatus model_gguf_load(LlamaModel *m, const Backend *be, const char *path, ModelInfo *info);
/* The same with cfg.quantized set: projection weights stay in their blocks (model_load_quantized). */
PeftcStatus model_gguf_load_quantized(LlamaModel *m, const Backend *be, const char *path, ModelInfo *info);

/* HF folder (core/model_hf.c) */
PeftcStatus model_hf_config(const char *dir, LlamaConfig *cfg, ModelInfo *info);
PeftcStatus model_hf_load(LlamaModel *m, const Backend *be, const char *dir, ModelInfo *info);

#endif
