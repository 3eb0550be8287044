/* The CPU backend's vtable, memory, BLAS wrappers and thread control.
 *
 * OpenBLAS brings its own thread pool (the Debian default is the pthread build) and the elementwise
 * ops use OpenMP; the two are never nested: a BLAS call is made either from serial code (BLAS threads)
 * or from an OpenMP region bracketed by cpu_blas_single_begin/end (BLAS single-threaded). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend/backend.h"
#include "core/backend/cpu/cpu_ops.h"

/* openblas_get_parallel() values (cblas.h documents them only in prose). */
#define CPU_OPENBLAS_PTHREAD 1

/* Chunk for parallel memset/memcpy/axpy: big enough that a chunk amortises the fork, small enough
 * that gradients of every size get spread over the threads. */
#define CPU_MEM_CHUNK (1u << 18)

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

void *cpu_scratch(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "peftc cpu backend: out of memory allocating %zu bytes of scratch\n", bytes);
        abort();
    }
    return p;
}

void cpu_matmul(real_t *C, const real_t *A, const real_t *B, int M, int N, int K, int transA, int transB,
                real_t alpha, real_t beta) {
    /* C (M,N); A (M,K) or (K,M) if transA; B (K,N) or (N,K) if transB; all dense row-major. */
    cpu_gemm(transA, transB, M, N, K, alpha, A, transA ? M : K, B, transB ? K : N, beta, C, N);
}

void cpu_axpy(real_t *y, const real_t *x, real_t alpha, size_t n) {
    /* y (n), x (n). An OpenMP loop rather than BLAS axpy: memory-bound either way, and size_t n has
     * no 2^31 limit. */
#pragma omp parallel for schedule(static) if (n > CPU_MEM_CHUNK)
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

void cpu_scale(real_t *x, real_t alpha, size_t n) {
    /* x (n) */
#pragma omp parallel for schedule(static) if (n > CPU_MEM_CHUNK)
    for (size_t i = 0; i < n; i++) x[i] *= alpha;
}

double cpu_sumsq(const real_t *x, size_t n) {
    /* x (n). Fixed chunks summed in order, so the result is the same for every thread count. */
    size_t nchunks = (n + CPU_FLAT_CHUNK - 1) / CPU_FLAT_CHUNK;
    if (nchunks <= 1) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
        return s;
    }
    double *part = cpu_scratch(nchunks * sizeof(double)); /* (nchunks) */
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nchunks; c++) {
        size_t lo = c * CPU_FLAT_CHUNK, hi = lo + CPU_FLAT_CHUNK < n ? lo + CPU_FLAT_CHUNK : n;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++) s += (double)x[i] * (double)x[i];
        part[c] = s;
    }
    double s = 0.0;
    for (size_t c = 0; c < nchunks; c++) s += part[c];
    free(part);
    return s;
}

/* ---- memory ---- */

static void *cpu_alloc(size_t bytes) {
    /* 64-byte alignment for BLAS and vector loads; zero-filled as the contract says. */
    size_t rounded = ((bytes ? bytes : 1) + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    memset(p, 0, rounded);
    return p;
}

static void cpu_free(void *p) { free(p); }

static void cpu_zero(real_t *x, size_t n) {
    /* x (n). Parallel chunks: zeroing all gradients each step is bandwidth-bound. */
    size_t nchunks = (n + CPU_MEM_CHUNK - 1) / CPU_MEM_CHUNK;
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (size_t c = 0; c < nchunks; c++) {
        size_t lo = c * CPU_MEM_CHUNK, len = lo + CPU_MEM_CHUNK < n ? CPU_MEM_CHUNK : n - lo;
        memset(x + lo, 0, len * sizeof(real_t));
    }
}

static void cpu_move(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
}

static void cpu_copy(real_t *dst, const real_t *src, size_t n) {
    /* dst (n), src (n); must not overlap. */
    if (dst == src) return;
    size_t nchunks = (n + CPU_MEM_CHUNK - 1) / CPU_MEM_CHUNK;
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (size_t c = 0; c < nchunks; c++) {
        size_t lo = c * CPU_MEM_CHUNK, len = lo + CPU_MEM_CHUNK < n ? CPU_MEM_CHUNK : n - lo;
        memcpy(dst + lo, src + lo, len * sizeof(real_t));
    }
}

/* ---- the vtable ---- */

/* CPU ops cannot fail after allocation (scratch exhaustion aborts with a message). */
static PeftcStatus cpu_status(void) { return PEFTC_OK; }

static const Backend cpu_backend = {
    .name = "cpu",
    .device = DEV_CPU,
    .status = cpu_status,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .upload = cpu_move,
    .download = cpu_move,
    .matmul = cpu_matmul,
    .axpy = cpu_axpy,
    .scale = cpu_scale,
    .sumsq = cpu_sumsq,
    .bias_fwd = cpu_bias_fwd,
    .bias_bwd = cpu_bias_bwd,
    .embedding_fwd = cpu_embedding_fwd,
    .embedding_bwd = cpu_embedding_bwd,
    .rmsnorm_fwd = cpu_rmsnorm_fwd,
    .rmsnorm_bwd = cpu_rmsnorm_bwd,
    .rope_fwd = cpu_rope_fwd,
    .rope_bwd = cpu_rope_bwd,
    .attention_saved = cpu_attention_saved,
    .attention_fwd = cpu_attention_fwd,
    .attention_bwd = cpu_attention_bwd,
    .attention_decode = cpu_attention_decode,
    .swiglu_fwd = cpu_swiglu_fwd,
    .swiglu_bwd = cpu_swiglu_bwd,
    .xent_fwd = cpu_xent_fwd,
    .xent_bwd = cpu_xent_bwd,
    .dropout_fwd = cpu_dropout_fwd,
    .dropout_bwd = cpu_dropout_bwd,
    .csr_add_dense = cpu_csr_add_dense,
    .csr_spmm = cpu_csr_spmm,
    .csr_spmm_t = cpu_csr_spmm_t,
    .csr_sddmm = cpu_csr_sddmm,
    .adamw = cpu_adamw,
};

const Backend *backend_cpu(void) { return &cpu_backend; }

void backend_cpu_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}
