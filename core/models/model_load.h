/* One entry point for pretrained weights: a GGUF file or an HF model folder, dispatched to the family
 * the file names. The LLaMA family (core/models/llama/):
 *
 * GGUF: hyperparameters from the `llama.*` metadata, tensors by GGUF name (blk.N.attn_q.weight ...)
 * mapped to the HF names of the model, dequantized straight from the memory map into the model's base
 * weights, with llama.cpp's Q/K row permutation undone so RoPE is HF's rotate-half.
 * HF folder: config.json + model.safetensors, or shards listed in model.safetensors.index.json. */
#ifndef PEFTC_MODEL_LOAD_H
#define PEFTC_MODEL_LOAD_H

#include "core/formats/gguf.h"
#include "core/models/llama/llama.h"

typedef struct {
    char path[512];      /* what was loaded */
    int is_gguf;
    char arch[32];       /* "llama" */
    char name[128];      /* general.name or the folder's name */
    int64_t context_length; /* max positions the model was trained for (0 if unknown) */
    char features[96];      /* what the start-up line adds, e.g. "rope llama3 x8, q/k/v/o biases"; or "" */
    uint64_t content_hash;  /* stable across copies of the same weights: GGUF: the header plus samples of
                               every tensor's data; HF: each weight file's header and size */
} ModelInfo;

/* A GGUF model file's ModelInfo (path, name, arch, context length from "<arch>.context_length", and a
 * content hash over the header and samples of every tensor). */
void model_gguf_info(const GgufFile *g, const char *arch, ModelInfo *info);

/* The family a file's architecture names ("llama", "mamba"); "llama" when it names none peftc knows
 * (that loader then says what it expected). */
const char *model_file_family(const char *path);

/* Reads only the hyperparameters (cheap) of a LLaMA-family file: GGUF metadata or config.json. */
PeftcStatus model_read_config(const char *path, LlamaConfig *cfg, ModelInfo *info);

/* Creates *out on `be` with the weights of `path`, in the family the file names (GGUF
 * general.architecture, HF model_type or architectures). Every base tensor must be present with the
 * expected shape; errors name the file, the tensor and what was expected. quantized (QLoRA / QRoSA):
 * the adaptable layers keep a GGUF file's ggml blocks (QUANT_BLOCKS) or an HF folder's weights
 * quantized to NF4 at load (QUANT_NF4) (core/nn/qweight.h), dequantized per layer during each pass;
 * loaded on the CPU backend (a device model takes them through empty_like and copy_weights). Release
 * with model_free. */
PeftcStatus model_load(Model **out, const Backend *be, const char *path, QuantMode quantized, ModelInfo *info);

#endif
