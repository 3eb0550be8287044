/* The Mamba family's loaders and writer; model_load.c dispatches to mamba_open. */
#ifndef PEFTC_MAMBA_FORMATS_H
#define PEFTC_MAMBA_FORMATS_H

#include "core/formats/gguf.h"
#include "core/models/mamba/mamba.h"
#include "core/models/model_load.h"

/* HF folder (MambaForCausalLM): config.json + safetensors. */
PeftcStatus mamba_hf_config(const char *dir, MambaConfig *cfg, ModelInfo *info);
PeftcStatus mamba_hf_load(MambaModel *m, const Backend *be, const char *dir, ModelInfo *info);
/* config.json + model.safetensors that transformers' MambaForCausalLM loads as this model. */
PeftcStatus mamba_save_hf(const MambaModel *m, const char *dir, int st_dtype);

/* llama.cpp GGUF (general.architecture "mamba"): mamba_gguf.c. */
PeftcStatus mamba_gguf_load(MambaModel *m, const Backend *be, const char *path, ModelInfo *info);
PeftcStatus mamba_gguf_config(const char *path, MambaConfig *cfg);
/* ModelOps.gguf_tensor: the loader's inverse (A as -exp(A_log), the conv weight squeezed to (D, K)). */
PeftcStatus mamba_gguf_tensor(const Model *m, const char *name, ModelGgufTensor *where, real_t *out);

/* An HF folder or a GGUF file into a heap MambaModel behind the Model interface (model_free). */
PeftcStatus mamba_open(Model **out, const Backend *be, const char *path, QuantMode quantized, ModelInfo *info);
/* The shared part of a Mamba file's hyperparameters a launcher shows: layers, hidden, vocab. */
PeftcStatus mamba_read_config(const char *path, MambaConfig *cfg, ModelInfo *info);

#endif
