/* EigenLoRAx (arXiv 2502.04700): y = x W^T + x C_A alpha_A alpha_B^T C_B^T.
 *
 * C_A (in,K) and C_B (out,K) are the frozen leading K columns of a basis built by eigen_build(); only
 * the loadings alpha_A (K,r) and alpha_B (K,r) train. No alpha/r scaling, no dropout.
 *   (a) trains   "<module>.eigen_alpha_A", "<module>.eigen_alpha_B" (K,r), weight decay on
 *   (b) init     alpha ~ U(-0.5, 0.5) keyed by (seed, arena name); or projection from a PEFT LoRA folder:
 *                alpha_A = C_A^T A^T, alpha_B = s C_B^T B, s = that adapter's lora scale (alpha/r, or
 *                alpha/sqrt r with rsLoRA), so that with a basis spanning A^T and B the delta is its s B A
 *   (c) forward  A_eff^T = C_A alpha_A (in,r), B_eff = C_B alpha_B (out,r), y += (x A_eff^T) B_eff^T
 *   (d) merge    W += B_eff A_eff
 *   (e) export   as PEFT LoRA: lora_A = (C_A alpha_A)^T (r,in), lora_B = C_B alpha_B (out,r); the saved
 *                config must carry lora_alpha = eigenlora_export_alpha() = r so that PEFT's scale is 1. */
#ifndef PEFTC_EIGENLORA_H
#define PEFTC_EIGENLORA_H

#include "core/nn/adapter.h"
#include "adapters/formats/eigen_basis.h"
#include "adapters/lora.h"

typedef struct {
    int r;                     /* columns of the loadings; any r >= 1 (the basis does not fix it) */
    int K;                     /* components used per side: 1 <= K <= the basis's k + k_rand */
    int init_projection;       /* 1: alpha from projection_from; 0: U(-0.5, 0.5) */
    char basis_path[512];      /* the eigen_build() file the caller opens and passes to eigenlora_create */
    char projection_from[512]; /* PEFT LoRA folder with rank r adapting every targeted module */
    unsigned targets;          /* LORA_T_* bits */
} EigenConfig;

/* Creates the adapter of one linear layer, copying the leading K columns of its components from the
 * basis into backend memory (the basis may be closed afterwards); attaches nothing: the caller sets
 * base->adapter. Errors name the basis file and tensor when the basis does not cover the layer. */
PeftcStatus eigenlora_create(Adapter **out, const Backend *be, const Linear *base, const EigenBasis *basis,
                             const EigenConfig *cfg, int group);

/* Trainable parameters per adapted module: 2 K r. */
int64_t eigenlora_param_count(const EigenConfig *c);

/* lora_alpha for the exported PEFT config: r, so that alpha / r = 1 (rsLoRA off). */
double eigenlora_export_alpha(const EigenConfig *c);

#endif
