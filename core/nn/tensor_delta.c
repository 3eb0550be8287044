#include "core/nn/tensor_delta.h"

void tensor_delta_apply(const Backend *be, const TensorDelta *d, real_t *out, const real_t *base) {
    be->copy(be, out, base, (size_t)d->pat.rows * (size_t)d->pat.cols);
    be->csr_add_dense(be, out, d->pat.row_ptr, d->pat.col_idx, d->values, d->pat.rows, d->pat.cols, 1);
}

void tensor_delta_backward(const Backend *be, const TensorDelta *d, const real_t *dout) {
    if (d->dvalues) be->csr_gather(be, d->dvalues, dout, d->pat.row_ptr, d->pat.col_idx, d->pat.rows, d->pat.cols, 1);
}
