/* The host compute type.
 *
 * The CPU code is written once against real_t. The product builds it as float; the gradient-check
 * tests build the very same sources a second time with PEFTC_REAL_DOUBLE so finite differences can be
 * taken in double precision on the code that actually ships. */
#ifndef PEFTC_REAL_H
#define PEFTC_REAL_H

#include <stdint.h>

#ifdef PEFTC_REAL_DOUBLE
typedef double real_t;
#define PEFTC_REAL_NAME "f64"
#else
typedef float real_t;
#define PEFTC_REAL_NAME "f32"
#endif

/* Target id that contributes no loss (prompt tokens, padding). Same value as PyTorch/HF. */
#define PEFTC_IGNORE_INDEX (-100)

#endif
