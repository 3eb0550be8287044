/* A linear layer y = x W^T + b with an optional adapter attached.
 *
 * The base weight is either frozen (dW == NULL) or an arena tensor (full fine-tuning). An adapter adds
 * its own contribution in forward and accumulates its own gradients in backward; the layer does not
 * know which method it is.
 *
 * A quantized base (qW != NULL) keeps W in its ggml blocks in backend memory; W then points at the
 * model's shared scratch, which linear_forward and linear_backward fill with the backend's dequantize
 * op right before the matmul that reads it. The scratch holds this layer's W only during one linear op: the next layer
 * overwrites it, so nothing may keep W across calls. Such a layer is frozen (dW NULL). */
#ifndef PEFTC_LINEAR_H
#define PEFTC_LINEAR_H

#include "core/backend/backend.h"
#include "core/nn/qweight.h"
#include "core/nn/stepctx.h"

typedef struct Adapter Adapter;

typedef struct {
    char name[96];  /* HF module path, e.g. "model.layers.0.self_attn.q_proj" */
    int target;     /* index of its kind in the model family's target list (ModelTarget) */
    int layer;      /* the block it belongs to */
    int rope_heads; /* heads whose output rows llama.cpp's GGUF permutes for RoPE (q, k); 0 = none */
    int in, out;
    real_t *W;      /* (out,in); with qW: the shared scratch, valid during one linear op; NULL with Wb */
    const uint16_t *Wb; /* (out,in) bf16 bits, or NULL: a frozen dense W kept in bf16 (train.precision=bf16) */
    const QWeight *qW; /* NULL = W is dense; else the blocks W is expanded from */
    real_t *dW;     /* (out,in) or NULL when frozen */
    real_t *b, *db; /* (out) or NULL */
    Adapter *adapter; /* NULL or one attached adapter */
} Linear;

/* The bit of l's kind in a target mask (bit i = the family's target i). */
static inline unsigned linear_target_bit(const Linear *l) { return 1u << l->target; }

/* C(M,N) = alpha op(A) op(B) + beta C, all real_t, in the step's precision: matmul, or matmul_bf16 when
 * ctx->bf16. For the matmuls adapters make inside a step. */
void nn_matmul(const Backend *be, const StepCtx *ctx, real_t *C, const real_t *A, const real_t *B, int M, int N, int K,
               int transA, int transB, real_t alpha, real_t beta);

/* C(M,N) = op(A) op(W) + beta C for a weight kept as fp32 W or, when Wb is set, as bf16 bits Wb (out,
 * in or its transpose as transW says): matmul_bf16 with the weight as it is kept when Wb is set or bf16
 * is 1, else matmul. A layer's projections and a model's LM head go through it. */
void nn_weight_matmul(const Backend *be, int bf16, real_t *C, const real_t *A, const real_t *W, const uint16_t *Wb,
                      int M, int N, int K, int transW, real_t beta);

/* y(R,out) = x(R,in) W^T + b + adapter(x) */
void linear_forward(const Backend *be, const Linear *l, const StepCtx *ctx, real_t *y, const real_t *x, int R);
/* dx(R,in) += dy W^T-path (skipped if dx NULL); dW, db, adapter grads += their parts. */
void linear_backward(const Backend *be, const Linear *l, const StepCtx *ctx, real_t *dx, const real_t *dy,
                     const real_t *x, int R);

/* W as dense values in host memory, host_out (out,in), whether W is dense on any backend or quantized.
 * For adapters that read the base weight once at init (NLoRA). */
PeftcStatus linear_weight_dense(const Backend *be, const Linear *l, real_t *host_out);

#endif
