/* Dequantization of ggml block formats (core/base/ggml_blocks.h) and conversion of 16-bit floats. */
#ifndef PEFTC_QUANT_H
#define PEFTC_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/bf16.h"
#include "core/base/ggml_blocks.h"
#include "core/base/real.h"
#include "core/base/status.h"

/* f16 both ways (round to nearest even); bf16's pair is in core/base/bf16.h. */
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

#endif
