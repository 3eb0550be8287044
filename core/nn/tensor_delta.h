/* A trainable additive delta on a base tensor that is not a linear layer's weight (Mamba's A_log under
 * SDT): the model computes with base + S, S a fixed-pattern CSR matrix over the tensor viewed as
 * (rows, cols) whose values live in the arena (a full pattern makes a dense delta). The model hands the
 * dense gradient of the effective tensor back through tensor_delta_backward. */
#ifndef PEFTC_TENSOR_DELTA_H
#define PEFTC_TENSOR_DELTA_H

#include "core/backend/backend.h"
#include "core/nn/csr.h"

typedef struct {
    CsrPattern pat;   /* (rows, cols) */
    real_t *values;   /* (nnz) arena parameters */
    real_t *dvalues;  /* (nnz) arena gradients, or NULL when frozen */
} TensorDelta;

/* out(rows*cols) = base + S */
void tensor_delta_apply(const Backend *be, const TensorDelta *d, real_t *out, const real_t *base);
/* dvalues += dout at the pattern (dout: the gradient of the effective tensor, (rows*cols)) */
void tensor_delta_backward(const Backend *be, const TensorDelta *d, const real_t *dout);

#endif
