/* Tensors: shape, element type and the device their memory lives on.
 *
 * A Tensor describes memory it does not own: the model, the arena or a loader owns the bytes, and
 * every place that hands tensors around (the trainable registry, base-weight references, exporters)
 * uses this one description. Row-major, contiguous. */
#ifndef PEFTC_TENSOR_H
#define PEFTC_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/real.h"
#include "core/base/status.h"

#define TENSOR_MAX_DIMS 4

typedef enum { DT_F32 = 0, DT_F64, DT_F16, DT_BF16, DT_I32, DT_COUNT } DType;
typedef enum { DEV_CPU = 0, DEV_CUDA = 1 } Device;

#ifdef PEFTC_REAL_DOUBLE
#define DT_REAL DT_F64
#else
#define DT_REAL DT_F32
#endif

typedef struct {
    int ndim;
    int64_t dim[TENSOR_MAX_DIMS];
} Shape;

typedef struct {
    void *data;
    DType dtype;
    Device device;
    Shape shape;
} Tensor;

static inline Shape shape1(int64_t d0) { return (Shape){1, {d0}}; }
static inline Shape shape2(int64_t d0, int64_t d1) { return (Shape){2, {d0, d1}}; }

/* Product of the dimensions (1 for a scalar, ndim 0). */
int64_t shape_numel(const Shape *s);
int shape_equal(const Shape *a, const Shape *b);
/* "(576, 1536)" into buf; returns buf. */
char *shape_str(const Shape *s, char *buf, size_t n);
/* EINVAL naming `what` unless 0 <= ndim <= TENSOR_MAX_DIMS and every dimension is >= 1. */
PeftcStatus shape_check(const Shape *s, const char *what);

size_t dtype_size(DType t);

static inline size_t tensor_bytes(const Tensor *t) { return (size_t)shape_numel(&t->shape) * dtype_size(t->dtype); }

#endif
