/* A fixed-pattern sparse matrix in CSR form: what RoSA's sparse delta S (out, in) is. The pattern
 * (row offsets and column indices, int32) never changes once made; the values are trainable and live
 * in the arena, so the optimizer, the all-reduce and checkpoints see them like any other tensor.
 * Column indices are int32 with no 32767 cap (METHODS.md, "RoSA column index width"). */
#ifndef PEFTC_CSR_H
#define PEFTC_CSR_H

#include <stdint.h>

#include "core/backend/backend.h"
#include "core/base/status.h"

typedef struct {
    int rows, cols;   /* (out, in) */
    int64_t nnz;
    int32_t *row_ptr; /* (rows + 1) backend memory */
    int32_t *col_idx; /* (nnz) backend memory, ascending within each row */
} CsrPattern;

/* Builds a pattern from nnz flat indices (row * cols + col, host memory, any order, no duplicates) in
 * be's memory. nnz may be 0 (an all-zero delta). EINVAL naming `what` and the offending index on an
 * index out of range or a duplicate; *p is zeroed on any failure, so csr_free() is always safe. */
PeftcStatus csr_from_flat(CsrPattern *p, const Backend *be, int rows, int cols, const int64_t *flat, int64_t nnz,
                          const char *what);
void csr_free(CsrPattern *p, const Backend *be);

/* The k largest entries of score (n = rows*cols, host memory) by value as given (pass |acc| to rank
 * magnitudes; -0 and +0 are equal), ties to the lower flat index, as ascending flat indices in out (k
 * entries). Deterministic: every rank holding the same scores gets the same mask. O(n) by radix
 * selection, serial and reentrant, so callers may select several tensors in parallel. k = 0 writes
 * nothing; EINVAL if k > n or a score is NaN. */
PeftcStatus csr_topk_flat(const float *score, int64_t n, int64_t k, int64_t *out);

#endif
