/* The run configuration: YAML file + dotted-key overrides, every key typed, documented and checked.
 *
 * Keys are dotted paths ("lora.r", "train.accum"). On the command line a key may also be given by its
 * last component alone ("accum=2") when no other key ends the same way. */
#ifndef PEFTC_CONFIG_H
#define PEFTC_CONFIG_H

#include <stdio.h>

#include "../adapters/method.h"
#include "../core/llama.h"
#include "../core/trainer.h"
#include "../datasets/synthetic.h"

typedef struct {
    /* model.* */
    LlamaConfig model;
    double init_std;        /* model.init_std */
    uint64_t model_seed;    /* model.seed */
    /* method.* */
    MethodKind method;      /* method.name */
    /* lora.* */
    LoraConfig lora;        /* r, alpha, dropout, rslora; targets parsed from lora_targets */
    char lora_targets[128]; /* lora.targets */
    double lora_lr;         /* lora.lr: 0 means optim.lr */
    /* train.*, optim.*, sched.* */
    TrainConfig train;      /* adamw and sched live inside */
    double lr;              /* optim.lr */
    double weight_decay;    /* optim.weight_decay */
    /* data.* */
    SynConfig data;
    /* output.* */
    char out_dir[512];      /* output.dir */
    int64_t log_every;      /* output.log_every */
    int threads;            /* train.threads: 0 = the node's cores shared among its local ranks */
} RunConfig;

/* Built-in defaults: a small LLaMA-shaped model learning the synthetic task with LoRA. */
void config_defaults(RunConfig *c);

/* Applies a YAML file (nested mappings; sequences of scalars are joined with commas). Unknown keys,
 * ill-typed values and out-of-range values fail with a message naming the file, line and key. */
PeftcStatus config_load_yaml(RunConfig *c, const char *path);

/* Applies one "key=value" override; the message names the key (and the candidates when ambiguous). */
PeftcStatus config_apply_override(RunConfig *c, const char *kv);

/* Cross-field checks (kv_heads divides heads, the task fits seq_len, ...) and derived fields (parsed
 * LoRA targets, schedule total = train.steps). Call after all overrides. */
PeftcStatus config_finish(RunConfig *c);

/* Writes the resolved configuration as YAML that config_load_yaml reads back to the same values. */
PeftcStatus config_write_yaml(const RunConfig *c, FILE *f);

/* Lists every key with its type, default and a one-line description. */
void config_print_help(FILE *f);

#endif
