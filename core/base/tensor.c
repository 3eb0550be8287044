#include "core/base/tensor.h"

#include <stdio.h>

int64_t shape_numel(const Shape *s) {
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= s->dim[i];
    return n;
}

int shape_equal(const Shape *a, const Shape *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dim[i] != b->dim[i]) return 0;
    return 1;
}

char *shape_str(const Shape *s, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < s->ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)s->dim[i]);
    if (used < n) snprintf(buf + used, n - used, ")");
    return buf;
}

PeftcStatus shape_check(const Shape *s, const char *what) {
    if (s->ndim < 0 || s->ndim > TENSOR_MAX_DIMS)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: %d dimensions, expected 0..%d", what, s->ndim, TENSOR_MAX_DIMS);
    for (int i = 0; i < s->ndim; i++)
        if (s->dim[i] < 1)
            return PEFTC_ERR(PEFTC_EINVAL, "%s: dimension %d is %lld, expected >= 1", what, i, (long long)s->dim[i]);
    return PEFTC_OK;
}

static const size_t dtype_sizes[DT_COUNT] = {[DT_F32] = 4, [DT_F64] = 8, [DT_F16] = 2, [DT_BF16] = 2, [DT_I32] = 4};

size_t dtype_size(DType t) { return (unsigned)t < DT_COUNT ? dtype_sizes[t] : 0; }
