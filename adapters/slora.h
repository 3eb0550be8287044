/* The three-matrix LoRA family of arXiv 2502.14482 (METHODS.md section 2):
 *
 *   y = x W^T + s * drop(x) A^T N^T B^T,   A (r,in), N (r,r), B (out,r), s = alpha/r (alpha/sqrt r rsLoRA)
 *
 * SLoRA:   A kaiming-uniform(a=sqrt 5) = U(+-1/sqrt in), N = U(+-1/sqrt r), B = 0; A, N, B train.
 * NLoRA:   B = W[:, :r], A = W[:r, :], N = W[:r, :r] (core "block", the official code) or its
 *          Moore-Penrose pseudo-inverse (core "pinv", the paper-figure reading); W is not modified;
 *          A, N, B train. Needs r <= min(in, out).
 * IntTune: NLoRA init with A and B frozen (adapter-owned, not in the arena); only N trains.
 *
 * Arena entries "<module>.slora_A" (r,in), "<module>.slora_N" (r,r), "<module>.slora_B" (out,r), all
 * with weight decay. Export is PEFT LoRA with N folded into B: lora_A = A, lora_B = B N, so a PEFT
 * loader with the same alpha and r reproduces the layer. */
#ifndef PEFTC_SLORA_H
#define PEFTC_SLORA_H

#include "core/nn/adapter.h"
#include "adapters/lora.h"

typedef enum { SLORA_INIT_SLORA = 0, SLORA_INIT_NLORA = 1 } SloraInit;
typedef enum { NLORA_CORE_BLOCK = 0, NLORA_CORE_PINV = 1 } NloraCore;

typedef struct {
    int r;
    double alpha;
    double dropout;
    int rslora;
    SloraInit init;
    NloraCore core;   /* NLoRA init only */
    int train_ab;     /* 1: A, N, B all train (SLoRA, NLoRA); 0: IntTune, only N trains */
    unsigned targets; /* LORA_T_* bits, as LoraConfig */
} SloraConfig;

/* Names indexed by SloraInit / NloraCore, NULL-terminated: what configurations spell. */
extern const char *const slora_init_names[];
extern const char *const nlora_core_names[];

/* Creates an adapter for `base` and attaches nothing; the caller sets base->adapter, then registers.
 * EINVAL for r < 1, dropout outside [0,1), NLoRA with r > min(in, out) (naming the module), or
 * IntTune with the SLoRA init (its frozen B = 0 would keep N from ever training). */
PeftcStatus slora_create(Adapter **out, const Backend *be, const Linear *base, const SloraConfig *cfg, int group);

double slora_scale(const SloraConfig *cfg);

/* Trainable parameters per adapted (in, out) layer: r*(in+out) + r*r, or r*r for IntTune. */
int64_t slora_param_count(const SloraConfig *cfg, int in, int out);

#endif
