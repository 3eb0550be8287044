/* A linear layer y = x W^T + b with an optional adapter attached.
 *
 * The base weight is either frozen (dW == NULL) or an arena tensor (full fine-tuning). An adapter adds
 * its own contribution in forward and accumulates its own gradients in backward; the layer does not
 * know which method it is. */
#ifndef PEFTC_LINEAR_H
#define PEFTC_LINEAR_H

#include "backend.h"
#include "stepctx.h"

typedef struct Adapter Adapter;

typedef struct {
    char name[96];  /* HF module path, e.g. "model.layers.0.self_attn.q_proj" */
    const char *short_name; /* target name: q k v o gate up down */
    int in, out;
    real_t *W;      /* (out,in) */
    real_t *dW;     /* (out,in) or NULL when frozen */
    real_t *b, *db; /* (out) or NULL */
    Adapter *adapter; /* NULL or one attached adapter */
} Linear;

/* y(R,out) = x(R,in) W^T + b + adapter(x) */
void linear_forward(const Backend *be, const Linear *l, const StepCtx *ctx, real_t *y, const real_t *x, int R);
/* dx(R,in) += dy W^T-path (skipped if dx NULL); dW, db, adapter grads += their parts. */
void linear_backward(const Backend *be, const Linear *l, const StepCtx *ctx, real_t *dx, const real_t *dy,
                     const real_t *x, int R);

#endif
