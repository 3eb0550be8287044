#include "linear.h"

#include "../adapters/adapter.h"

void linear_forward(const Backend *be, const Linear *l, const StepCtx *ctx, real_t *y, const real_t *x, int R) {
    be->matmul(y, x, l->W, R, l->out, l->in, 0, 1, 1, 0); /* y = x W^T */
    if (l->b) be->bias_fwd(y, l->b, R, l->out);
    if (l->adapter) l->adapter->ops->forward(l->adapter, ctx, y, x, R);
}

void linear_backward(const Backend *be, const Linear *l, const StepCtx *ctx, real_t *dx, const real_t *dy,
                     const real_t *x, int R) {
    if (l->adapter) l->adapter->ops->backward(l->adapter, ctx, dx, dy, x, R);
    if (dx) be->matmul(dx, dy, l->W, R, l->in, l->out, 0, 0, 1, 1);       /* dx += dy W */
    if (l->dW) be->matmul(l->dW, dy, x, l->out, l->in, R, 1, 0, 1, 1);    /* dW += dy^T x */
    if (l->db) be->bias_bwd(l->db, dy, R, l->out);
}
