#include "core/nn/qweight.h"

#include <string.h>

#include "core/base/nf4_blocks.h"

/* Whether rows of `cols` values of `type` can be held: any NF4, or whole blocks of a type with known
 * arithmetic. */
static int holds(GgmlType type, int cols) {
    if (type == GGML_NF4) return 1;
    int per_block = ggml_block_elems(type);
    return ggml_type_supported(type) && per_block >= 1 && cols % per_block == 0;
}

PeftcStatus qweight_alloc(QWeight *q, const Backend *be, GgmlType type, int rows, int cols, const char *what) {
    memset(q, 0, sizeof *q);
    if (!holds(type, cols))
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: type %s with %d columns cannot be kept in blocks (block size %d)", what,
                         ggml_type_name(type), cols, ggml_block_elems(type));
    size_t n = type == GGML_NF4 ? nf4_bytes((int64_t)rows * cols) : (size_t)rows * ggml_row_bytes(type, cols);
    q->blocks = be->alloc(be, n ? n : 1);
    if (!q->blocks)
        return PEFTC_ERR(PEFTC_ENOMEM, "%s: no %s memory for %zu bytes of quantized blocks", what, be->name, n);
    q->type = type;
    q->rows = rows;
    q->cols = cols;
    q->nbytes = n;
    return PEFTC_OK;
}

void qweight_free(QWeight *q, const Backend *be) {
    if (q->blocks) be->free(be, q->blocks);
    memset(q, 0, sizeof *q);
}

size_t qweight_row_bytes(const QWeight *q) { return ggml_row_bytes(q->type, q->cols); }

void qweight_expand(const QWeight *q, const Backend *be, real_t *out) {
    be->dequantize(be, out, q->blocks, q->type, q->rows, q->cols);
}
