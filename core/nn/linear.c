#include "core/nn/linear.h"

#include <stdlib.h>

#include "core/base/bf16.h"
#include "core/nn/adapter.h"

/* A quantized W is expanded into the shared scratch just before each read. */
static void expand(const Backend *be, const Linear *l) {
    if (l->qW) qweight_expand(l->qW, be, l->W);
}

void nn_matmul(const Backend *be, const StepCtx *ctx, real_t *C, const real_t *A, const real_t *B, int M, int N, int K,
               int transA, int transB, real_t alpha, real_t beta) {
    if (ctx->bf16) be->matmul_bf16(be, C, A, DT_REAL, B, DT_REAL, M, N, K, transA, transB, alpha, beta);
    else be->matmul(be, C, A, B, M, N, K, transA, transB, alpha, beta);
}

void nn_weight_matmul(const Backend *be, int bf16, real_t *C, const real_t *A, const real_t *W, const uint16_t *Wb,
                      int M, int N, int K, int transW, real_t beta) {
    if (Wb) be->matmul_bf16(be, C, A, DT_REAL, Wb, DT_BF16, M, N, K, 0, transW, 1, beta);
    else if (bf16) be->matmul_bf16(be, C, A, DT_REAL, W, DT_REAL, M, N, K, 0, transW, 1, beta);
    else be->matmul(be, C, A, W, M, N, K, 0, transW, 1, beta);
}

void linear_forward(const Backend *be, const Linear *l, const StepCtx *ctx, real_t *y, const real_t *x, int R) {
    expand(be, l);
    nn_weight_matmul(be, ctx->bf16, y, x, l->W, l->Wb, R, l->out, l->in, 1, 0); /* y = x W^T */
    if (l->b) be->bias_fwd(be, y, l->b, R, l->out);
    if (l->adapter) l->adapter->ops->forward(l->adapter, ctx, y, x, R);
}

void linear_backward(const Backend *be, const Linear *l, const StepCtx *ctx, real_t *dx, const real_t *dy,
                     const real_t *x, int R) {
    if (l->adapter) l->adapter->ops->backward(l->adapter, ctx, dx, dy, x, R);
    if (dx) {
        expand(be, l);
        nn_weight_matmul(be, ctx->bf16, dx, dy, l->W, l->Wb, R, l->in, l->out, 0, 1); /* dx += dy W */
    }
    if (l->dW) nn_matmul(be, ctx, l->dW, dy, x, l->out, l->in, R, 1, 0, 1, 1);   /* dW += dy^T x */
    if (l->db) be->bias_bwd(be, l->db, dy, R, l->out);
}

PeftcStatus linear_weight_dense(const Backend *be, const Linear *l, real_t *host_out) {
    size_t n = (size_t)l->out * (size_t)l->in;
    if (l->qW) { /* through the shared scratch: the blocks are backend memory */
        qweight_expand(l->qW, be, l->W);
        be->download(be, host_out, l->W, n * sizeof *host_out);
        return be->status(be);
    }
    if (l->Wb) {
        uint16_t *h = malloc(n * sizeof *h);
        if (!h) return PEFTC_ERR(PEFTC_ENOMEM, "%s: no memory to read its bf16 weight", l->name);
        be->download(be, h, l->Wb, n * sizeof *h);
        for (size_t i = 0; i < n; i++) host_out[i] = (real_t)bf16_to_f32(h[i]);
        free(h);
        return be->status(be);
    }
    be->download(be, host_out, l->W, n * sizeof *host_out);
    return be->status(be);
}
