/* Chooses what trains: attaches adapters to the model's linear layers (LoRA) or makes every base
 * tensor trainable (full fine-tuning), registering the trainable tensors in the arena.
 *
 * Use: method_attach() (registers), arena_finalize(), method_init() (initial values, and for full
 * fine-tuning moves the base weights into the arena), llama_reserve() (sizes adapters too), train,
 * method_detach(). */
#ifndef PEFTC_METHOD_H
#define PEFTC_METHOD_H

#include "../core/arena.h"
#include "../core/llama.h"
#include "lora.h"

typedef enum { METHOD_LORA = 0, METHOD_FULL = 1 } MethodKind;

typedef struct {
    MethodKind kind;
    LoraConfig lora;
    double lr;            /* peak lr of the method's main group */
    double weight_decay;
} MethodConfig;

/* Names indexed by MethodKind, NULL-terminated: what configurations spell. */
extern const char *const method_names[];

PeftcStatus method_attach(LlamaModel *m, Arena *arena, const MethodConfig *mc);
PeftcStatus method_init(LlamaModel *m, Arena *arena, const MethodConfig *mc, uint64_t seed);
/* Folds every attached adapter into its base weight (W += delta); adapters stay attached. */
void method_merge(LlamaModel *m);
void method_detach(LlamaModel *m);

#endif
