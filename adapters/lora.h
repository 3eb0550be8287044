/* LoRA: y = x W^T + s * (drop(x) A^T) B^T, A (r,in) kaiming-uniform(a=sqrt 5), B (out,r) zero,
 * s = alpha/r (or alpha/sqrt(r) with rsLoRA). Dropout applies to the LoRA input only. */
#ifndef PEFTC_LORA_H
#define PEFTC_LORA_H

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

/* Parses "q,k,v,o,gate,up,down" (any subset, comma or space separated) or "all-linear". */
PeftcStatus lora_parse_targets(const char *s, unsigned *out);
/* Bit for a layer's short name ("q", "gate", ...), 0 if unknown. */
unsigned lora_target_bit(const char *short_name);
double lora_scale(const LoraConfig *c);

/* Creates a LoRA adapter for `base` and attaches nothing; the caller sets base->adapter. */
PeftcStatus lora_create(Adapter **out, const Backend *be, const Linear *base, const LoraConfig *cfg,
                        int group);

#endif
