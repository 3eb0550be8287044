#include "core/nn/csr.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- building a pattern ---- */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sorted host copy of flat(nnz); csr_topk_flat's output is already ascending, so the sort is skipped
 * then. NULL when out of memory. */
static int64_t *sorted_copy(const int64_t *flat, int64_t nnz) {
    int64_t *s = malloc((size_t)(nnz ? nnz : 1) * sizeof *s);
    if (!s) return NULL;
    if (nnz) memcpy(s, flat, (size_t)nnz * sizeof *s);
    int sorted = 1;
    for (int64_t i = 1; i < nnz && sorted; i++) sorted = s[i - 1] < s[i];
    if (!sorted) qsort(s, (size_t)nnz, sizeof *s, cmp_i64);
    return s;
}

/* Range and uniqueness of the sorted indices s(nnz): checking the ends and the neighbours covers all. */
static PeftcStatus check_flat(const int64_t *s, int64_t nnz, int rows, int cols, const char *what) {
    int64_t numel = (int64_t)rows * cols;
    for (int64_t i = 0; i < nnz; i++) {
        if (s[i] < 0 || s[i] >= numel)
            return PEFTC_ERR(PEFTC_EINVAL, "%s: flat index %lld is outside [0, %lld) for a (%d, %d) matrix", what,
                             (long long)s[i], (long long)numel, rows, cols);
        if (i > 0 && s[i] == s[i - 1])
            return PEFTC_ERR(PEFTC_EINVAL, "%s: flat index %lld (row %lld, col %lld) is listed twice", what,
                             (long long)s[i], (long long)(s[i] / cols), (long long)(s[i] % cols));
    }
    return PEFTC_OK;
}

/* row_ptr(rows+1), col_idx(nnz) on the host from the sorted, checked indices s(nnz). */
static void fill_csr(int32_t *row_ptr, int32_t *col_idx, const int64_t *s, int64_t nnz, int rows, int cols) {
    int64_t j = 0;
    row_ptr[0] = 0;
    for (int r = 0; r < rows; r++) {
        int64_t end = (int64_t)(r + 1) * cols;
        for (; j < nnz && s[j] < end; j++) col_idx[j] = (int32_t)(s[j] - (int64_t)r * cols);
        row_ptr[r + 1] = (int32_t)j;
    }
}

/* Allocates p's arrays in backend memory and uploads the host ones. */
static PeftcStatus upload_csr(CsrPattern *p, const Backend *be, const int32_t *row_ptr, const int32_t *col_idx,
                              const char *what) {
    size_t rp_bytes = ((size_t)p->rows + 1) * sizeof(int32_t);
    /* At least one element, so an empty pattern still gets a pointer every backend's alloc accepts. */
    size_t ci_bytes = (size_t)(p->nnz ? p->nnz : 1) * sizeof(int32_t);
    p->row_ptr = be->alloc(be, rp_bytes);
    p->col_idx = be->alloc(be, ci_bytes);
    if (!p->row_ptr || !p->col_idx) {
        csr_free(p, be);
        return PEFTC_ERR(PEFTC_ENOMEM, "%s: out of %s memory for a sparse pattern of %lld nonzeros", what, be->name,
                         (long long)p->nnz);
    }
    be->upload(be, p->row_ptr, row_ptr, rp_bytes);
    if (p->nnz) be->upload(be, p->col_idx, col_idx, (size_t)p->nnz * sizeof(int32_t));
    return PEFTC_OK;
}

PeftcStatus csr_from_flat(CsrPattern *p, const Backend *be, int rows, int cols, const int64_t *flat, int64_t nnz,
                          const char *what) {
    memset(p, 0, sizeof *p);
    if (rows < 1 || cols < 1)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: sparse pattern shape (%d, %d) must be positive", what, rows, cols);
    /* row_ptr is int32, so the count must fit it (and cannot exceed the matrix). */
    if (nnz < 0 || nnz > INT32_MAX || nnz > (int64_t)rows * cols)
        return PEFTC_ERR(PEFTC_EINVAL, "%s: %lld nonzeros for a (%d, %d) matrix (int32 offsets allow at most %d)",
                         what, (long long)nnz, rows, cols, INT32_MAX);
    int64_t *s = sorted_copy(flat, nnz);
    int32_t *row_ptr = malloc(((size_t)rows + 1) * sizeof *row_ptr);
    int32_t *col_idx = malloc((size_t)(nnz ? nnz : 1) * sizeof *col_idx);
    PeftcStatus st = PEFTC_OK;
    if (!s || !row_ptr || !col_idx)
        st = PEFTC_ERR(PEFTC_ENOMEM, "%s: out of host memory building a pattern of %lld nonzeros", what,
                       (long long)nnz);
    if (st == PEFTC_OK) st = check_flat(s, nnz, rows, cols, what);
    if (st == PEFTC_OK) {
        fill_csr(row_ptr, col_idx, s, nnz, rows, cols);
        p->rows = rows;
        p->cols = cols;
        p->nnz = nnz;
        st = upload_csr(p, be, row_ptr, col_idx, what);
    }
    free(s);
    free(row_ptr);
    free(col_idx);
    return st;
}

void csr_free(CsrPattern *p, const Backend *be) {
    if (p->row_ptr) be->free(be, p->row_ptr);
    if (p->col_idx) be->free(be, p->col_idx);
    memset(p, 0, sizeof *p);
}

/* ---- top-k selection ----
 * Radix selection on keys that order like the float values: O(n) always, no copy of the scores, and
 * integer comparisons give a total order whatever the values, so every rank agrees bit for bit. */

enum { RADIX_BITS = 11 }; /* three passes over 32 bits with a 16 KiB count table on the stack */

/* An unsigned key ordered like the value: negatives have all bits flipped (larger magnitude = smaller
 * key), non-negatives get the sign bit set. -0 is folded onto +0 first because the two compare equal,
 * and equal values must tie (to the lower index). NaN is rejected before keys are taken. */
static inline uint32_t score_key(float v) {
    uint32_t b;
    if (v == 0.0f) v = 0.0f;
    memcpy(&b, &v, sizeof b);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/* The key of the k-th largest score, 1 <= k <= n; *n_above receives how many keys are strictly larger. */
static uint32_t kth_largest_key(const float *score, int64_t n, int64_t k, int64_t *n_above) {
    uint32_t prefix = 0, prefix_mask = 0;
    int64_t above = 0, count[1 << RADIX_BITS];
    for (int hi = 32; hi > 0;) {
        int width = hi < RADIX_BITS ? hi : RADIX_BITS, shift = hi - width;
        uint32_t digit_mask = (1u << width) - 1;
        memset(count, 0, sizeof count);
        for (int64_t i = 0; i < n; i++) {
            uint32_t key = score_key(score[i]);
            if ((key & prefix_mask) == prefix) count[(key >> shift) & digit_mask]++;
        }
        /* The keys sharing the prefix number at least k - above, so this stops at a digit. */
        uint32_t d = digit_mask;
        while (above + count[d] < k) above += count[d--];
        prefix |= d << shift;
        prefix_mask |= digit_mask << shift;
        hi = shift;
    }
    *n_above = above;
    return prefix;
}

PeftcStatus csr_topk_flat(const float *score, int64_t n, int64_t k, int64_t *out) {
    if (n < 0 || k < 0 || k > n)
        return PEFTC_ERR(PEFTC_EINVAL, "top-k selection: k = %lld must be in [0, %lld], the number of scores",
                         (long long)k, (long long)n);
    if (k == 0) return PEFTC_OK;
    for (int64_t i = 0; i < n; i++)
        if (isnan(score[i]))
            return PEFTC_ERR(PEFTC_EINVAL, "top-k selection: score %lld of %lld is NaN", (long long)i,
                             (long long)n);
    int64_t above;
    uint32_t t = kth_largest_key(score, n, k, &above);
    int64_t ties = k - above, m = 0; /* threshold-equal entries still to take, lowest index first */
    for (int64_t i = 0; i < n && m < k; i++) {
        uint32_t key = score_key(score[i]);
        if (key > t || (key == t && ties > 0)) {
            if (key == t) ties--;
            out[m++] = i;
        }
    }
    return PEFTC_OK;
}
