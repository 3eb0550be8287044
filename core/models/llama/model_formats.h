/* The LLaMA family's loaders and writer, per format; model_load.c dispatches to llama_load*. */
#ifndef PEFTC_MODEL_FORMATS_H
#define PEFTC_MODEL_FORMATS_H

#include "core/formats/gguf.h"
#include "core/models/hf_folder.h"
#include "core/models/model_load.h"

/* GGUF (core/models/llama/model_gguf.c) */
PeftcStatus model_gguf_config(const GgufFile *g, LlamaConfig *cfg, ModelInfo *info);
PeftcStatus model_gguf_load(LlamaModel *m, const Backend *be, const char *path, ModelInfo *info);
/* The same with cfg.quantized = QUANT_BLOCKS: projection weights stay in their blocks. */
PeftcStatus model_gguf_load_quantized(LlamaModel *m, const Backend *be, const char *path, ModelInfo *info);

/* HF folder (core/models/llama/model_hf.c) */
PeftcStatus model_hf_config(const char *dir, LlamaConfig *cfg, ModelInfo *info);
PeftcStatus model_hf_load(LlamaModel *m, const Backend *be, const char *dir, ModelInfo *info);
/* The same with cfg.quantized = QUANT_NF4: projection weights quantized to NF4 as they are read. */
PeftcStatus model_hf_load_nf4(LlamaModel *m, const Backend *be, const char *dir, ModelInfo *info);
/* Every base tensor of m (a CPU model created with QUANT_NF4) from w's mapped files: the projections
 * into NF4, one at a time (core/models/llama/model_hf_nf4.c). */
PeftcStatus model_hf_fill_nf4(LlamaModel *m, const HfWeights *w);

/* Fills m (a LlamaModel on the caller's memory) from a GGUF file or HF folder. */
PeftcStatus llama_load(LlamaModel *m, const Backend *be, const char *path, ModelInfo *info);
/* The same keeping the projection weights quantized as mode says: QUANT_BLOCKS keeps a GGUF file's
 * blocks, QUANT_NF4 quantizes an HF folder's weights; each refuses the other kind of file, naming the
 * mode that fits it. QUANT_NONE is llama_load. */
PeftcStatus llama_load_quantized(LlamaModel *m, const Backend *be, const char *path, QuantMode mode,
                                 ModelInfo *info);

/* llama_load_quantized into a heap LlamaModel behind the Model interface (model_free). */
PeftcStatus llama_open(Model **out, const Backend *be, const char *path, QuantMode quantized, ModelInfo *info);

/* Writes the model's base weights as an HF folder: config.json + model.safetensors (dtype F32, F16 or
 * BF16 via StDType). Used by `peftc merge`. */
PeftcStatus model_save_hf(const LlamaModel *m, const char *dir, int st_dtype);

#endif
