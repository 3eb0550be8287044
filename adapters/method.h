/* Chooses what trains: attaches adapters to the model's linear layers (LoRA) or makes every base
 * tensor trainable (full fine-tuning), registering the trainable tensors in the arena.
 *
 * Use: method_attach() (registers), arena_finalize(), method_init() (initial values, and for full
 * fine-tuning moves the base weights into the arena), llama_reserve() (sizes adapters too), train,
 * method_detach(). */
#ifndef PEFTC_METHOD_H
#define PEFTC_METHOD_H

#include "core/nn/arena.h"
#include "core/models/llama/llama.h"
#include "adapters/eigenlora.h"
#include "adapters/gmt.h"
#include "adapters/lora.h"
#include "adapters/rosa.h"
#include "adapters/slora.h"

typedef enum {
    METHOD_LORA = 0, METHOD_FULL = 1, METHOD_GMT = 2,
    METHOD_SLORA = 3, METHOD_NLORA = 4, METHOD_INTTUNE = 5, /* three-matrix LoRA: s B N A */
    METHOD_EIGENLORA = 6,                                  /* loadings on a recycled principal subspace */
    METHOD_ROSA = 7, METHOD_SPA = 8,                       /* LoRA + Fisher-masked sparse delta; sparse only */
} MethodKind;

typedef struct {
    MethodKind kind;
    LoraConfig lora;
    GmtConfig gmt;        /* full fine-tuning with gradient masks: the trainer hook is gmt_hook() */
    NloraCore nlora_core; /* NLoRA / IntTune: N = W[:r,:r] (block) or its pseudo-inverse */
    EigenConfig eigen;    /* EigenLoRAx: basis file, K, init; r and targets come from lora */
    double rosa_density;  /* RoSA / SpA: nonzeros of S per layer = floor(density * out * in) */
    double sparse_lr;     /* RoSA / SpA: peak lr of the sparse values' group */
    double lr;            /* peak lr of the method's main group */
    double weight_decay;
} MethodConfig;

/* Names indexed by MethodKind, NULL-terminated: what configurations spell. */
extern const char *const method_names[];

/* Methods that attach adapters shaped like LoRA (rank, alpha, targets from LoraConfig) and export as a
 * PEFT LoRA adapter. */
int method_is_lora_shaped(MethodKind k);
/* RoSA or SpA. */
int method_is_rosa(MethodKind k);
/* Every backend op a run of this method calls, into ops (BACKEND_OP_COUNT); returns how many: all but
 * the sparse (CSR) ops, which only RoSA and SpA with rosa.density > 0 add. For backend_require(). */
int method_backend_ops(const MethodConfig *mc, BackendOp *ops);
/* The LoRA configuration a PEFT export of the method's adapters carries (EigenLoRAx has scale 1). */
LoraConfig method_export_config(const MethodConfig *mc);
/* The three-matrix configuration of SLoRA / NLoRA / IntTune from the LoRA keys and the preset. */
SloraConfig method_slora_config(const MethodConfig *mc);

PeftcStatus method_attach(LlamaModel *m, Arena *arena, const MethodConfig *mc);
PeftcStatus method_init(LlamaModel *m, Arena *arena, const MethodConfig *mc, uint64_t seed);
/* Folds every attached adapter into its base weight (W += delta); adapters stay attached. A quantized
 * base weight (Linear.qW) cannot take a delta and is left alone: model_save_hf refuses such a model. */
void method_merge(LlamaModel *m);
void method_detach(LlamaModel *m);

#endif
