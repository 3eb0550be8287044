/* RoPE frequency scaling: what an HF config's rope_scaling / rope_parameters or a GGUF file's
 * rope.scaling.* keys and rope_freqs tensor ask for, reduced to what the RoPE tables need: one inverse
 * frequency per rotated pair and one scale on cos and sin (YaRN's attention factor).
 *
 * The types follow transformers' definitions (modeling_rope_utils): linear divides every frequency by
 * the factor; llama3 divides only the low frequencies (wavelength above original_ctx / low_freq_factor)
 * and blends between the two bounds; yarn blends interpolated and original frequencies over a ramp
 * between the dimensions that turn beta_fast and beta_slow times in original_ctx positions, and scales
 * cos and sin; factors divides each frequency by its own factor (llama.cpp's rope_freqs tensor, which
 * is how its converter stores llama3 scaling). Dynamic scalings (dynamic NTK, longrope), whose
 * frequencies depend on the sequence length, are not among them. */
#ifndef PEFTC_ROPE_SCALING_H
#define PEFTC_ROPE_SCALING_H

#include "core/base/status.h"

typedef enum { ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3, ROPE_YARN, ROPE_FACTORS } RopeType;

/* Pairs a factors table can describe: head sizes up to 512. */
#define ROPE_MAX_PAIRS 256

typedef struct {
    RopeType type;
    double factor;                            /* linear, llama3, yarn: the context scale s (> 0) */
    double low_freq_factor, high_freq_factor; /* llama3: wavelength bounds as divisors of original_ctx */
    int original_ctx;                         /* llama3, yarn: the context length the base was trained on */
    double beta_fast, beta_slow;              /* yarn: the ramp's ends in rotations (HF: 32 and 1) */
    int truncate;                             /* yarn: ramp ends rounded outwards to whole dimensions */
    double attn_factor;                       /* yarn: the scale on cos and sin, already resolved */
    int n_factors;                            /* factors: HD/2 */
    float factors[ROPE_MAX_PAIRS];            /* factors: (n_factors) divisor of each pair's frequency */
} RopeScaling;

/* "default", "linear", "llama3", "yarn", "factors". */
const char *rope_type_name(RopeType t);

/* YaRN's attention factor for scale s and multiplier m: 0.1 m ln s + 1 (1 when s <= 1). */
double rope_yarn_mscale(double s, double m);

/* Whether r describes a valid scaling for heads of size HD; `what` (a file or key) leads the message. */
PeftcStatus rope_scaling_check(const RopeScaling *r, int HD, const char *what);

/* inv_freq (HD/2): pair i turns by t * inv_freq[i] at position t; theta is the RoPE base. */
void rope_inv_freq(const RopeScaling *r, double theta, int HD, double *inv_freq);

/* The factor cos and sin are multiplied by (1 unless yarn). */
double rope_attn_scale(const RopeScaling *r);

#endif
