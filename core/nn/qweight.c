#include "core/nn/qweight.h"

#include <stdlib.h>
#include <string.h>

#include "core/formats/quant.h"

PeftcStatus qweight_alloc(QWeight *q, GgmlType type, int rows, int cols, const char *what) {
    memset(q, 0, sizeof *q);
    int be = ggml_block_elems(type);
    if (!ggml_type_supported(type) || be < 1 || cols % be != 0)
        return PEFTC_ERR(PEFTC_EFORMAT, "%s: type %s with %d columns cannot be kept in blocks (block size %d)", what,
                         ggml_type_name(type), cols, be);
    size_t n = (size_t)rows * ggml_row_bytes(type, cols);
    q->blocks = malloc(n ? n : 1);
    if (!q->blocks) return PEFTC_ERR(PEFTC_ENOMEM, "%s: no host memory for %zu bytes of quantized blocks", what, n);
    q->type = type;
    q->rows = rows;
    q->cols = cols;
    q->nbytes = n;
    return PEFTC_OK;
}

void qweight_free(QWeight *q) {
    free(q->blocks);
    memset(q, 0, sizeof *q);
}

size_t qweight_row_bytes(const QWeight *q) { return ggml_row_bytes(q->type, q->cols); }

void qweight_dequantize(const QWeight *q, real_t *out) {
    size_t rb = qweight_row_bytes(q);
    #pragma omp parallel for schedule(static)
    for (int r = 0; r < q->rows; r++)
        ggml_dequantize(q->type, q->blocks + (size_t)r * rb, out + (size_t)r * q->cols, q->cols);
}
