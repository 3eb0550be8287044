/* The run configuration: YAML file + dotted-key overrides, every key typed, documented and checked.
 *
 * Keys are dotted paths ("lora.r", "train.accum"). On the command line a key may also be given by its
 * last component alone ("accum=2") when no other key ends the same way. */
#ifndef PEFTC_CONFIG_H
#define PEFTC_CONFIG_H

#include <stdio.h>

#include "adapters/method.h"
#include "core/models/llama/llama.h"
#include "core/models/mamba/mamba.h"
#include "core/train/trainer.h"
#include "datasets/sft.h"
#include "datasets/synthetic.h"

/* data.task: the built-in instruction tasks (text, need a pretrained model and its tokenizer) and the
 * digit-token tasks (any model, vocab >= SYN_VOCAB). */
typedef enum {
    DATA_ARITH = 0, DATA_RECORDS, DATA_SQL, /* in TaskKind order */
    DATA_COPY, DATA_REVERSE, DATA_ADD,      /* in SynTask order */
} DataTask;
extern const char *const data_task_names[]; /* indexed by DataTask, NULL-terminated */
extern const char *const device_names[];    /* indexed by Device, NULL-terminated */
/* train.precision: auto = bf16 where the hardware multiplies it natively (and the backend has the
 * bf16 ops), else fp32. */
typedef enum { PREC_AUTO = 0, PREC_FP32, PREC_BF16 } Precision;
typedef enum { FAMILY_LLAMA = 0, FAMILY_MAMBA } ModelFamilyKind;
extern const char *const family_names[]; /* indexed by ModelFamilyKind, NULL-terminated */
extern const char *const precision_names[]; /* indexed by Precision, NULL-terminated */
/* 1 for the digit-token tasks. */
int data_task_is_synthetic(DataTask t);

typedef struct {
    /* model.* */
    char model_path[512];   /* model.path: GGUF file or HF folder; "" = random LLaMA-shaped model */
    char tokenizer_path[512]; /* data.tokenizer: tokenizer.json (or a folder / GGUF holding one) for a model
                                 without its own, e.g. a random one being pretrained; "" = the model's */
    LlamaConfig model;      /* read from model.path when set */
    int model_family;       /* model.family: the random model's family (ModelFamilyKind) */
    MambaConfig mamba;      /* model.state, model.conv, model.dt_rank of a random Mamba (others from model) */
    int mamba_expand;       /* model.expand: a random Mamba's inner width / hidden */
    double init_std;        /* model.init_std */
    uint64_t model_seed;    /* model.seed */
    /* method.* and every method's own sections (lora.*, rosa.*, ...: adapters/) */
    int method;             /* method.name: index into method_registry() */
    MethodSettings methods; /* the keys of every method section */
    /* train.*, optim.*, sched.* */
    TrainConfig train;      /* adamw and sched live inside */
    double lr;              /* optim.lr */
    double weight_decay;    /* optim.weight_decay */
    /* data.* */
    DataTask task;          /* data.task (used when data.path is "") */
    SynConfig data;         /* the digit tasks; task derived from `task` */
    SftConfig sft;          /* files and built-in instruction tasks; seq_len = train.seq_len */
    /* eval.* */
    int em_examples;        /* eval.examples: held-out answers generated for exact match; 0 = off */
    int max_new_tokens;     /* eval.max_new_tokens */
    /* output.* */
    char out_dir[512];      /* output.dir */
    int save_adapter;       /* output.save_adapter: write <dir>/adapter (PEFT format) at the end */
    int64_t log_every;      /* output.log_every */
    int tensorboard;        /* output.tensorboard: event files in <dir>/tensorboard */
    /* checkpoint.* */
    int64_t ckpt_every;     /* checkpoint.every: steps between checkpoints; 0 = none */
    double ckpt_minutes;    /* checkpoint.minutes: wall minutes between checkpoints; 0 = none */
    int ckpt_keep;          /* checkpoint.keep */
    char ckpt_dir[512];     /* checkpoint.folder; "" = <out_dir>/checkpoints */
    char resume[512];       /* checkpoint.resume: "", "auto" or a checkpoint file */
    char ckpt_allow[512];   /* checkpoint.allow_changes: comma-separated keys a resume may change */
    int threads;            /* train.threads: 0 = the node's cores shared among its local ranks */
    Device device;          /* train.device: cpu, or cuda (one GPU per rank, by local rank) */
    Precision precision;    /* train.precision as given (auto stays auto: Session.bf16 is the outcome) */
} RunConfig;

/* The descriptor of method.name. */
const MethodDesc *config_method(const RunConfig *c);

/* Built-in defaults: LoRA on SmolLM2-135M-Instruct (models/, fetched by tools/fetch-model.sh) learning
 * the built-in `records` task. */
void config_defaults(RunConfig *c);

/* Applies a YAML file (nested mappings; sequences of scalars are joined with commas). Unknown keys,
 * ill-typed values and out-of-range values fail with a message naming the file, line and key. */
PeftcStatus config_load_yaml(RunConfig *c, const char *path);
/* The same from YAML text in memory (a checkpoint's stored configuration); `name` stands for the file
 * in messages. */
PeftcStatus config_load_yaml_text(RunConfig *c, const char *text, const char *name);

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
