/* The Method contract: one descriptor per fine-tuning method, in the method's own file, listed once in
 * adapters/registry.c. A descriptor carries everything a run needs of its method:
 *
 *   keys        the sections of configuration keys it reads (MethodSection: names, types, defaults,
 *               help), stored opaquely in MethodSettings so a new method adds keys without touching
 *               the run configuration;
 *   validate    cross-key checks at configuration time;
 *   attach/init which tensors train (adapters on the model's linear layers, or base tensors) and
 *               their initial values;
 *   prepare     optional phases before the main run (RoSA: warm-up, collect, mask, restart);
 *   grad_hook   optional edit of each step's reduced gradient (GMT);
 *   state       named structural state a checkpoint stores and a resume must find again;
 *   export      what the run leaves behind (a PEFT adapter, a sparse file).
 *
 * Use: method_attach() (registers tensors), arena_finalize(), method_init(), model_reserve(), train,
 * method_detach(). Nothing outside adapters/ compares method kinds or names: it asks the descriptor. */
#ifndef PEFTC_METHOD_H
#define PEFTC_METHOD_H

#include "comm/comm.h"
#include "core/base/setting.h"
#include "core/models/model.h"
#include "core/nn/arena.h"
#include "core/train/checkpoint.h"
#include "core/train/trainer.h"

#define METHOD_SECTION_BYTES 2048
#define METHOD_SECTIONS_MAX 12

/* One section's settings, whatever its struct: sections are registered at run time. */
typedef struct {
    _Alignas(16) unsigned char bytes[METHOD_SECTION_BYTES];
} SectionStore;

/* Every method section's settings of a run: the registry's section i at sec[i]. Plain bytes, so a run
 * configuration copies and compares by value. */
typedef struct {
    SectionStore sec[METHOD_SECTIONS_MAX];
} MethodSettings;

/* What configuration-time checks may know of the rest of the run. */
typedef struct {
    const char *out_dir;   /* output.dir */
    int64_t train_steps;   /* train.steps */
    int on_cpu;            /* train.device is the CPU */
    int quantized_base;    /* model.quantized */
} MethodEnv;

typedef struct MethodDesc MethodDesc;

/* A group of keys "<name>.<leaf>" with its settings struct; several methods may read one section. */
typedef struct MethodSection {
    const char *name;          /* the key prefix, e.g. "lora" */
    const char *help;          /* one line for --help */
    const SettingKey *keys;    /* (n_keys) full names "lora.r"; offsets into the settings struct */
    int n_keys;
    size_t size;               /* bytes of the settings struct (<= METHOD_SECTION_BYTES) */
    /* Optional: cross-key checks and derived fields once every key is set, for a run of method d
     * (called whether or not d reads the section: keys that only matter to readers are checked only
     * then, but a key that d would silently ignore may be refused). */
    PeftcStatus (*finish)(void *settings, const MethodDesc *d, const MethodEnv *env);
} MethodSection;

/* A method as one run holds it: the descriptor, every section's settings, the optimizer's base
 * learning rate and decay, and the method's own per-run state (attach makes it, detach frees it). */
typedef struct {
    const MethodDesc *desc;
    MethodSettings settings;
    double lr;            /* optim.lr: the default peak lr of the method's groups */
    double weight_decay;  /* optim.weight_decay */
    void *state;
    int found_earlier;    /* init found what an earlier run of the method left (RoSA: its mask file) */
} MethodConfig;

/* Receives one piece of checkpoint state; owns `data` (malloc'd) from the call on, success or not. */
typedef PeftcStatus (*MethodStateSink)(void *user, const char *name, CkptKind kind, void *data, size_t n);

struct MethodDesc {
    const char *name;                      /* method.name */
    const char *help;                      /* a few words for method.name's help */
    const MethodSection *const *sections;  /* the key sections it reads, NULL-terminated */
    int trains_base;                       /* every base tensor trains (needs a dense base) */
    int loads_peft;                        /* lora.init_from may start it from a PEFT adapter */

    /* Optional: configuration-time checks across keys (its sections' finish already ran). */
    PeftcStatus (*validate)(const MethodSettings *s, const MethodEnv *env);
    /* Registers what trains in the arena: adapters attached to the model's linear layers, or base
     * tensors. May read files named by its keys (and update its settings from them). */
    PeftcStatus (*attach)(Model *m, Arena *a, MethodConfig *mc);
    /* After arena_finalize: initial values, keyed by seed. */
    PeftcStatus (*init)(Model *m, Arena *a, MethodConfig *mc, uint64_t seed);
    /* Optional: fills *h with the trainer's gradient hook; `a` is finalized and initialised. */
    PeftcStatus (*grad_hook)(MethodConfig *mc, const Arena *a, GradHook *h);
    /* Optional: phases before the main run, driving the trainer (collective: every rank calls it).
     * Setting *restart asks the caller to rebuild the run (model, method, optimizer, schedule) and
     * train from step 0; the rebuilt run's prepare must then have nothing left to do. report (cap
     * bytes) receives a line for rank 0 to print, or stays empty. */
    PeftcStatus (*prepare)(MethodConfig *mc, Model *m, Trainer *t, Comm *comm, int *restart, char *report,
                           size_t cap);
    /* Optional: the state a checkpoint stores beside the arena and a resume must rebuild identically. */
    PeftcStatus (*state)(const MethodConfig *mc, const Model *m, MethodStateSink sink, void *user);
    /* Optional: writes the trained result into folder dir; base_name names the base model in it. A
     * method that trains the base writes a GGUF file carrying base_name's metadata when dir ends in
     * ".gguf" (the caller asks for one when the base is a GGUF file). */
    PeftcStatus (*export)(const MethodConfig *mc, const Model *m, const char *dir, const char *base_name);
    /* Optional: frees mc->state. */
    void (*release)(MethodConfig *mc);

    /* Backend ops only this method's adapters call, never a model's passes (RoSA: the CSR ops); a
     * backend may lack them. needs_ops says whether a run uses them (NULL: whenever the method runs). */
    const BackendOp *ops;
    int n_ops;
    int (*needs_ops)(const MethodConfig *mc);
};

/* ---- the registry (adapters/registry.c) ---- */

/* Every method, in registry order; *n receives the count. */
const MethodDesc *const *method_registry(int *n);
/* Method names in registry order, NULL-terminated: what method.name accepts. */
const char *const *method_names(void);
/* The method called `name`, or NULL. */
const MethodDesc *method_find(const char *name);
/* Every distinct section the registered methods read, in registry order; *n receives the count. */
const MethodSection *const *method_sections(int *n);
/* Index of `sec` among method_sections(), or -1. */
int method_section_index(const MethodSection *sec);

/* ---- settings ---- */

/* sec's settings struct inside s. */
void *method_section_settings(MethodSettings *s, const MethodSection *sec);
const void *method_section_settings_c(const MethodSettings *s, const MethodSection *sec);
/* Every key of every section at its default (the same text defaults the configuration applies). */
PeftcStatus method_settings_defaults(MethodSettings *s);
/* 1 if the method reads section sec. */
int method_reads(const MethodDesc *d, const MethodSection *sec);
/* Runs the finish of every section for a run of d, then d's validate. */
PeftcStatus method_finish(const MethodDesc *d, MethodSettings *s, const MethodEnv *env);

/* A run's MethodConfig for method `name` with every key at its default (tests, benchmarks). */
PeftcStatus method_config_defaults(MethodConfig *mc, const char *name, double lr);

/* Every backend op a run of mc calls, into ops (BACKEND_OP_COUNT); returns how many: all but the ops
 * some method claims as its own (MethodDesc.ops), plus mc's own when its run needs them. For
 * backend_require(). */
int method_backend_ops(const MethodConfig *mc, BackendOp *ops);

/* ---- a run's method ---- */

PeftcStatus method_attach(Model *m, Arena *arena, MethodConfig *mc);
PeftcStatus method_init(Model *m, Arena *arena, MethodConfig *mc, uint64_t seed);
/* Folds every attached adapter into its base weight (W += delta); adapters stay attached. A quantized
 * base weight (Linear.qW) cannot take a delta and is left alone: saving such a model is refused. */
void method_merge(Model *m);
/* Destroys the adapters attached to m and the method's state (mc may be NULL: adapters only). */
void method_detach(Model *m, MethodConfig *mc);

/* ---- shared by the methods' files ---- */

/* Makes one adapter for layer l with the method's configuration cfg and arena groups. */
typedef PeftcStatus (*AdapterMaker)(Adapter **out, const Backend *be, const Linear *l, const void *cfg, int group,
                                    int group2);
/* Attaches make(...) to every linear layer of m whose target bit is in `targets`, registering its
 * tensors in the arena. */
PeftcStatus method_attach_each(Model *m, Arena *arena, unsigned targets, AdapterMaker make, const void *cfg,
                               int group, int group2);
/* Calls every attached adapter's init. */
PeftcStatus method_init_adapters(Model *m, Arena *arena, uint64_t seed);

#endif
