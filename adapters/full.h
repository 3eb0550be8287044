/* Full fine-tuning as a trainable-set policy: every base tensor of the model becomes an arena tensor
 * with a gradient. Not a layer adapter; later masked methods (GMT) build on it. */
#ifndef PEFTC_FULL_H
#define PEFTC_FULL_H

#include "adapters/method.h"
#include "core/nn/arena.h"
#include "core/models/model.h"

PeftcStatus full_attach(Model *m, Arena *arena, double lr, double weight_decay);
/* After arena_finalize: copies each base tensor into the arena and points the model at the arena's
 * parameter and gradient. */
PeftcStatus full_init(Model *m, Arena *arena);

/* Full fine-tuning's descriptor functions, for every method that trains the whole base: the check
 * (name: its method.name), attach and init. */
PeftcStatus full_validate(const MethodSettings *s, const MethodEnv *env, const char *name);
PeftcStatus full_method_attach(Model *m, Arena *a, MethodConfig *mc);
PeftcStatus full_method_init(Model *m, Arena *a, MethodConfig *mc, uint64_t seed);
/* The trained model in fp32: a GGUF file carrying the metadata of base_name (the GGUF file the model
 * was loaded from) when dir ends in ".gguf", else an HF folder in dir (the family's writer). */
PeftcStatus full_method_export(const MethodConfig *mc, const Model *m, const char *dir, const char *base_name);

#endif
