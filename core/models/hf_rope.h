/* RoPE settings in an HF config.json: rope_theta, and rope_scaling (transformers 4) or
 * rope_parameters (transformers 5, which also carries rope_theta), read into a RopeScaling and written
 * back as transformers 5 does. */
#ifndef PEFTC_HF_ROPE_H
#define PEFTC_HF_ROPE_H

#include <cjson/cJSON.h>

#include "core/models/hf_folder.h"
#include "core/nn/rope_scaling.h"

/* *theta and *out from c; max_pos is max_position_embeddings (0 = absent), the default of
 * original_max_position_embeddings as in transformers. Types other than default, linear, llama3 and
 * yarn, and partial rotary factors, are refused with the key named. */
PeftcStatus hf_rope_read(const HfCfg *c, int max_pos, double *theta, RopeScaling *out);

/* Adds rope_theta and rope_scaling (null when r is default) to the config object j. A factors table
 * has no HF form: the caller refuses it first (hf_rope_writable). */
void hf_rope_write(cJSON *j, const RopeScaling *r, double theta);
/* Whether r can be written as an HF config; else an error naming dir. */
PeftcStatus hf_rope_writable(const RopeScaling *r, const char *dir);

#endif
