/* The CPU backend's memory, BLAS wrappers and thread control; cpu_instance.c has the instances.
 *
 * OpenBLAS brings its own thread pool (the Debian default is the pthread build) and the elementwise
 * ops use OpenMP; the two are never nested: a BLAS call is made either from serial code (BLAS threads)
 * or from an OpenMP region bracketed by cpu_blas_single_begin/end (BLAS single-threaded). */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend/backend.h"
#include "core/backend/cpu/cpu_ops.h"

/* openblas_get_parallel() values (cblas.h documents them only in prose). */
#define CPU_OPENBLAS_PTHREAD 1

/* Chunk for parallel memset/memcpy/axpy: big enough that a chunk amortises the fork, small enough
 * that gradients of every size get spread over the threads. */
#define CPU_MEM_CHUNK (1u << 18)

/* sumsq's chunks per parallel region: 256 partial sums (2 KiB) on the stack cover 16M elements, so the
 * extra fork per batch is lost in the work. */
#define CPU_SUMSQ_BATCH 256

static int imax(int a, int b) { return a > b ? a : b; }

void cpu_gemm(int transA, int transB, int M, int N, int K, real_t alpha, const real_t *A, int lda,
              const real_t *B, int ldb, real_t beta, real_t *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    /* BLAS rejects leading dimensions < 1, which K == 0 (a degenerate C = beta*C) would produce. */
    lda = imax(lda, 1);
    ldb = imax(ldb, 1);
    enum CBLAS_TRANSPOSE ta = transA ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = transB ? CblasTrans : CblasNoTrans;
    if (M == 1) {
        /* One row (a decode step): OpenBLAS's gemm would repack all of B for it, 5x slower than gemv.
         * C(1,N) = A(1,K) op(B): gemv over B's rows, stepping through A by its stride. */
        int incA = transA ? lda : 1;
        enum CBLAS_TRANSPOSE tv = transB ? CblasNoTrans : CblasTrans;
        int rows = transB ? N : K, cols = transB ? K : N;
#ifdef PEFTC_REAL_DOUBLE
        cblas_dgemv(CblasRowMajor, tv, rows, cols, alpha, B, ldb, A, incA, beta, C, 1);
#else
        cblas_sgemv(CblasRowMajor, tv, rows, cols, alpha, B, ldb, A, incA, beta, C, 1);
#endif
        return;
    }
#ifdef PEFTC_REAL_DOUBLE
    cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

int cpu_blas_single_begin(void) {
    /* Only the pthread build runs its pool under an OpenMP region; the OpenMP build already goes
     * single-threaded there, and its openblas_set_num_threads would also change OpenMP's count. */
    if (openblas_get_parallel() != CPU_OPENBLAS_PTHREAD) return 0;
    int saved = openblas_get_num_threads();
    if (saved > 1) openblas_set_num_threads(1);
    return saved;
}

void cpu_blas_single_end(int saved) {
    if (saved > 1) openblas_set_num_threads(saved);
}

void cpu_matmul(const Backend *be, real_t *C, const real_t *A, const real_t *B, int M, int N, int K, int transA,
                int transB, real_t alpha, real_t beta) {
    /* C (M,N); A (M,K) or (K,M) if transA; B (K,N) or (N,K) if transB; all dense row-major. */
    (void)be;
    cpu_gemm(transA, transB, M, N, K, alpha, A, transA ? M : K, B, transB ? K : N, beta, C, N);
}

void cpu_axpy(const Backend *be, real_t *y, const real_t *x, real_t alpha, size_t n) {
    /* y (n), x (n). An OpenMP loop rather than BLAS axpy: memory-bound either way, and size_t n has
     * no 2^31 limit. */
    (void)be;
#pragma omp parallel for schedule(static) if (n > CPU_MEM_CHUNK)
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

void cpu_scale(const Backend *be, real_t *x, real_t alpha, size_t n) {
    /* x (n) */
    (void)be;
#pragma omp parallel for schedule(static) if (n > CPU_MEM_CHUNK)
    for (size_t i = 0; i < n; i++) x[i] *= alpha;
}

double cpu_sumsq(const Backend *be, const real_t *x, size_t n) {
    /* x (n). Fixed chunks summed in order, so the result is the same for every thread count. The
     * chunks' partial sums go through a stack batch at a time, added to s in chunk order as they
     * come: the same additions in the same order as over one array of all of them, with no scratch
     * to size for the longest x (the whole arena, for the gradient norm). */
    (void)be;
    size_t nchunks = (n + CPU_FLAT_CHUNK - 1) / CPU_FLAT_CHUNK;
    if (nchunks <= 1) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
        return s;
    }
    double s = 0.0;
    for (size_t c0 = 0; c0 < nchunks; c0 += CPU_SUMSQ_BATCH) {
        size_t c1 = c0 + CPU_SUMSQ_BATCH < nchunks ? c0 + CPU_SUMSQ_BATCH : nchunks;
        double part[CPU_SUMSQ_BATCH]; /* (c1-c0) partial sums of chunks c0.. */
#pragma omp parallel for schedule(static)
        for (size_t c = c0; c < c1; c++) {
            size_t lo = c * CPU_FLAT_CHUNK, hi = lo + CPU_FLAT_CHUNK < n ? lo + CPU_FLAT_CHUNK : n;
            double sc = 0.0;
            for (size_t i = lo; i < hi; i++) sc += (double)x[i] * (double)x[i];
            part[c - c0] = sc;
        }
        for (size_t c = c0; c < c1; c++) s += part[c - c0];
    }
    return s;
}

/* ---- memory ---- */

void *cpu_alloc(const Backend *be, size_t bytes) {
    /* 64-byte alignment for BLAS and vector loads; zero-filled as the contract says. */
    (void)be;
    size_t rounded = ((bytes ? bytes : 1) + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    memset(p, 0, rounded);
    return p;
}

void cpu_free(const Backend *be, void *p) {
    (void)be;
    free(p);
}

void cpu_zero(const Backend *be, real_t *x, size_t n) {
    /* x (n). Parallel chunks: zeroing all gradients each step is bandwidth-bound. */
    (void)be;
    size_t nchunks = (n + CPU_MEM_CHUNK - 1) / CPU_MEM_CHUNK;
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (size_t c = 0; c < nchunks; c++) {
        size_t lo = c * CPU_MEM_CHUNK, len = lo + CPU_MEM_CHUNK < n ? CPU_MEM_CHUNK : n - lo;
        memset(x + lo, 0, len * sizeof(real_t));
    }
}

/* Host and backend memory are the same memory. */
void cpu_upload(const Backend *be, void *dst, const void *host_src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, host_src, bytes);
}

void cpu_download(const Backend *be, void *host_dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(host_dst, src, bytes);
}

void cpu_copy(const Backend *be, real_t *dst, const real_t *src, size_t n) {
    /* dst (n), src (n); must not overlap. */
    (void)be;
    if (dst == src) return;
    size_t nchunks = (n + CPU_MEM_CHUNK - 1) / CPU_MEM_CHUNK;
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (size_t c = 0; c < nchunks; c++) {
        size_t lo = c * CPU_MEM_CHUNK, len = lo + CPU_MEM_CHUNK < n ? CPU_MEM_CHUNK : n - lo;
        memcpy(dst + lo, src + lo, len * sizeof(real_t));
    }
}

void cpu_copy_2d(const Backend *be, real_t *dst, int ld_dst, const real_t *src, int ld_src, int rows, int cols) {
    /* dst (rows, cols; ld_dst), src (rows, cols; ld_src); must not overlap. */
    (void)be;
    if (rows <= 0 || cols <= 0) return;
#pragma omp parallel for schedule(static) if ((size_t)rows * (size_t)cols > CPU_MEM_CHUNK)
    for (int r = 0; r < rows; r++)
        memcpy(dst + (size_t)r * ld_dst, src + (size_t)r * ld_src, (size_t)cols * sizeof(real_t));
}

void backend_cpu_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}
