/* NF4 on the host: quantizing a frozen base weight once at load (model.quantized=nf4), and expanding it
 * back. The buffer's layout and the values' arithmetic are in core/base/nf4_blocks.h.
 *
 * The quantizer computes what bitsandbytes' quantize_4bit(quant_type="nf4", blocksize=64,
 * compress_statistics=True) computes on the GPU:
 *   - each 64-value block's absmax a (the largest |x|), and each value's code the nearest NF4 code to
 *     x * (1 / a): the first code whose midpoint with the next is >= x * (1 / a), as dQuantizeNF4's
 *     comparisons `x > midpoint` pick it (a value on a midpoint takes the lower code);
 *   - offset = the mean of the a; per 256 blocks, absmax2 = the largest |a - offset|, and each block's
 *     qabsmax the nearest entry of the dynamic map to (a - offset) * (1 / absmax2), found as the CUDA
 *     kernel's binary search finds it (a value on a midpoint takes the entry of even index).
 * Two choices where bitsandbytes' own backends disagree: an absmax below 1e-38 is taken as 1e-38 (as
 * its CPU backend does), so an all-zero block's values take the code of 0 and dequantize to exactly 0
 * (the CUDA kernel's 1 / 0 gives them code -1 and the block's small nonzero scale); and the offset is
 * the mean summed in double and rounded once, the same for any thread count (torch's float sums may
 * differ from it in the last bit). */
#ifndef PEFTC_NF4_H
#define PEFTC_NF4_H

#include <stdint.h>

#include "core/base/nf4_blocks.h"
#include "core/base/real.h"
#include "core/base/status.h"

/* buf (nf4_bytes(n) bytes) = w (n values, flat) in NF4. A value that is not finite is refused, naming
 * `what` (the tensor) and its flat index. */
PeftcStatus nf4_quantize(const real_t *w, int64_t n, uint8_t *buf, const char *what);

/* out = the values of first-level blocks b0 .. b1-1 of the n held in buf (host memory): out[0] is
 * value 64 * b0. */
void nf4_dequantize_blocks(const uint8_t *buf, int64_t n, int64_t b0, int64_t b1, real_t *out);

/* The NF4 code (0..15) of x, a value already divided by its block's absmax. */
int nf4_nearest_code(float x);
/* The dynamic-map index (0..255) of x, a value already divided by its group's absmax2. */
int nf4_nearest_dynamic(float x);

#endif
