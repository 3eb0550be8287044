/* PEFT-format LoRA adapters on disk: what HF PEFT, vLLM and llama.cpp load.
 *
 * Folder: adapter_config.json (peft_type LORA, r, lora_alpha, target_modules, use_rslora, ...) and
 * adapter_model.safetensors with base_model.model.<module>.lora_A.weight (r,in) / .lora_B.weight (out,r).
 * GGUF LoRA (llama.cpp): general.type=adapter, adapter.type=lora, adapter.lora.alpha, tensors
 * <gguf base name>.lora_a (ne [in,r]) / .lora_b (ne [r,out]). */
#ifndef PEFTC_PEFT_IO_H
#define PEFTC_PEFT_IO_H

#include "core/models/model.h"
#include "adapters/lora.h"

/* Writes the LoRA adapters attached to m as a PEFT folder (created if missing; files written
 * atomically). base_name goes to base_model_name_or_path. Tensors stored as F32. */
PeftcStatus peft_save(const Model *m, const LoraConfig *cfg, const char *base_name, const char *dir);

/* Reads a PEFT folder's adapter_config.json into cfg (r, alpha, rslora, targets, dropout). */
PeftcStatus peft_read_config(const char *dir, LoraConfig *cfg);

/* peft_read_config, also giving target_modules as comma-separated text in targets (cap bytes;
 * "all-linear" stays as it is) for resolving against a model's own list of layer kinds. */
PeftcStatus peft_read_config_targets(const char *dir, LoraConfig *cfg, char *targets, size_t cap);

/* Copies a PEFT folder's tensors into the arena entries of the LoRA adapters attached to m (created with the same config):
 * every adapted module must have both tensors with the expected shapes and every tensor in the file
 * must belong to an adapted module; errors name the file and tensor. */
PeftcStatus peft_load(Model *m, Arena *arena, const char *dir);

/* Splits "base_model.model.<module>.lora_A.weight" (or PEFT's in-memory ".lora_A.default.weight") into
 * module and which (0 = A, 1 = B). Returns 0 for any other name. */
int peft_split_name(const char *name, char *module, size_t cap, int *which);

/* Writes the attached LoRA adapters as a llama.cpp GGUF LoRA adapter file. */
PeftcStatus peft_save_gguf(const Model *m, const LoraConfig *cfg, const char *path);

#endif
