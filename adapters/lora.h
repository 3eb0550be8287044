/* LoRA: y = x W^T + s * (drop(x) A^T) B^T, A (r,in) kaiming-uniform(a=sqrt 5), B (out,r) zero,
 * s = alpha/r (or alpha/sqrt(r) with rsLoRA). Dropout applies to the LoRA input only. */
#ifndef PEFTC_LORA_H
#define PEFTC_LORA_H

#include "adapters/method.h"
#include "core/nn/adapter.h"

/* Bits of LoraConfig.targets. */
enum {
    LORA_T_Q = 1 << 0, LORA_T_K = 1 << 1, LORA_T_V = 1 << 2, LORA_T_O = 1 << 3,
    LORA_T_GATE = 1 << 4, LORA_T_UP = 1 << 5, LORA_T_DOWN = 1 << 6,
    LORA_T_ALL = (1 << 7) - 1
};

typedef struct {
    int r;
    double alpha;
    double dropout;
    int rslora;
    unsigned targets; /* LORA_T_* bits */
} LoraConfig;

/* Parses "q,k,v,o,gate,up,down" (any subset, comma or space separated, short or HF names) or
 * "all-linear" against the LLaMA family's list: lora.targets' check when a configuration is read, before
 * any model exists; attaching resolves the text against the model's own family (model_target_mask). */
PeftcStatus lora_parse_targets(const char *s, unsigned *out);
double lora_scale(const LoraConfig *c);

/* Creates a LoRA adapter for `base` and attaches nothing; the caller sets base->adapter. */
PeftcStatus lora_create(Adapter **out, const Backend *be, const Linear *base, const LoraConfig *cfg,
                        int group);

/* ---- the lora.* keys, shared by every LoRA-shaped method (adapters/lora_method.c) ---- */

typedef struct {
    LoraConfig lora;      /* r, alpha, dropout, rslora; targets parsed from `targets` by the finish */
    char targets[128];    /* lora.targets as written */
    double lr;            /* lora.lr: the adapters' peak lr; 0 = optim.lr */
    char init_from[512];  /* lora.init_from: a PEFT folder to start from (methods with loads_peft) */
} LoraSettings;

extern const MethodSection lora_section;
LoraSettings *lora_settings(MethodSettings *s);
const LoraSettings *lora_settings_c(const MethodSettings *s);
/* The peak lr of the adapters' group: lora.lr, or optim.lr when it is 0. */
double lora_group_lr(const MethodConfig *mc);
/* An AdapterMaker for method_attach_each: lora_create with cfg a LoraConfig and the adapter in group. */
PeftcStatus lora_maker(Adapter **out, const Backend *be, const Linear *l, const void *cfg, int group, int unused);
/* Resolves lora.targets against m's family into lora.targets' bits; every LoRA-shaped method's attach
 * calls it first. */
PeftcStatus lora_resolve_targets(const Model *m, MethodConfig *mc);

#endif
