#include "core/nn/linear.h"

#include "core/nn/adapter.h"

/* A quantized W is expanded into the shared scratch just before each read (CPU: scratch is host memory). */
static void expand(const Linear *l) {
    if (l->qW) qweight_dequantize(l->qW, l->W);
}

void linear_forward(const Backend *be, const Linear *l, const StepCtx *ctx, real_t *y, const real_t *x, int R) {
    expand(l);
    be->matmul(be, y, x, l->W, R, l->out, l->in, 0, 1, 1, 0); /* y = x W^T */
    if (l->b) be->bias_fwd(be, y, l->b, R, l->out);
    if (l->adapter) l->adapter->ops->forward(l->adapter, ctx, y, x, R);
}

void linear_backward(const Backend *be, const Linear *l, const StepCtx *ctx, real_t *dx, const real_t *dy,
                     const real_t *x, int R) {
    if (l->adapter) l->adapter->ops->backward(l->adapter, ctx, dx, dy, x, R);
    if (dx) {
        expand(l);
        be->matmul(be, dx, dy, l->W, R, l->in, l->out, 0, 0, 1, 1);       /* dx += dy W */
    }
    if (l->dW) be->matmul(be, l->dW, dy, x, l->out, l->in, R, 1, 0, 1, 1);    /* dW += dy^T x */
    if (l->db) be->bias_bwd(be, l->db, dy, R, l->out);
}

PeftcStatus linear_weight_dense(const Backend *be, const Linear *l, real_t *host_out) {
    if (l->qW) {
        qweight_dequantize(l->qW, host_out);
        return PEFTC_OK;
    }
    be->download(be, host_out, l->W, (size_t)l->out * (size_t)l->in * sizeof *host_out);
    return be->status(be);
}
