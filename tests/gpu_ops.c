/* The CUDA backend against the CPU reference, op by op: the same random inputs go through both
 * backends and the outputs and accumulated gradients are compared with a tolerance chosen per op.
 *
 * Errors are measured as max |gpu - cpu| over the largest CPU value (outputs) or over the largest
 * CPU increment (gradients, which start at random non-zero values on both sides, so an op that
 * overwrites instead of accumulating misses by the starting values and fails). Needs a GPU: without
 * one it prints "SKIP: no GPU" and exits 0. */
#ifndef PEFTC_WITH_CUDA
#error "gpu_ops.c tests the CUDA backend; tests/CMakeLists.txt builds it only when PEFTC_CUDA is ON"
#endif

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend/backend.h"
#include "core/backend/cuda/cuda_backend.h"
#include "core/base/nf4.h"
#include "tests/gpu_testutil.h"
#include "tests/quant_testutil.h"
#include "core/base/rng.h"
#include "core/base/status.h"
#include "tests/testutil.h"

static const Backend *g_cpu, *g_gpu;
/* PEFTC_CUDA_TF32=1 lets cuBLAS round matmul inputs to 10-bit mantissas (TF32 eps 2^-11 = 4.9e-4). */
static int g_tf32;

/* Matmul: FP32 compute differs from OpenBLAS only in summation order, ~K*eps/sqrt(K) of the largest
 * entry for random data; TF32 inputs carry 4.9e-4 relative error each, which random signs average. */
static double matmul_tol(void) { return g_tf32 ? 2e-3 : 1e-5; }
/* Attention: our own fp32 kernels (no cuBLAS, so TF32 never applies); online softmax, a different
 * expf and another summation order change rounding only. */
#define ATTN_TOL 1e-4

/* One operand on both backends. */
typedef struct {
    size_t n;
    real_t *ref;  /* (n) host: the CPU backend's operand */
    real_t *init; /* (n) host: the starting values, to measure what an accumulating op added */
    real_t *dev;  /* (n) device: the CUDA backend's operand */
} Pair;

enum { OUT = 0, ACC = 1 }; /* compare against the largest value / the largest increment */

static void gpu_ok(const char *op) {
    PeftcStatus st = g_gpu->status(g_gpu);
    ck_assert_msg(st == PEFTC_OK, "%s: CUDA backend reported %s: %s", op, peftc_status_name(st), peftc_err_msg());
}

/* Uniform values in [lo, hi) from stream `key`, the same on both sides. */
static Pair pair_new(size_t n, uint64_t key, double lo, double hi) {
    Pair p = {n, malloc(n * sizeof(real_t)), malloc(n * sizeof(real_t)), g_gpu->alloc(g_gpu, n * sizeof(real_t))};
    ck_assert_msg(p.ref && p.init && p.dev, "out of memory for a pair of %zu values", n);
    tu_fill_uniform(p.ref, n, key, lo, hi);
    memcpy(p.init, p.ref, n * sizeof(real_t));
    g_gpu->upload(g_gpu, p.dev, p.ref, n * sizeof(real_t));
    gpu_ok("upload");
    return p;
}

/* Makes the device copy equal the CPU's current values (e.g. a CPU result fed to both backwards). */
static void pair_push(Pair *p) {
    memcpy(p->init, p->ref, p->n * sizeof(real_t));
    g_gpu->upload(g_gpu, p->dev, p->ref, p->n * sizeof(real_t));
    gpu_ok("upload");
}

static void pair_free(Pair *p) {
    free(p->ref);
    free(p->init);
    g_gpu->free(g_gpu, p->dev);
}

/* max |gpu - cpu| / scale, infinite on a NaN; a zero scale demands equality. */
static double pair_err(const Pair *p, int mode) {
    real_t *got = malloc(p->n * sizeof *got);
    ck_assert_ptr_nonnull(got);
    g_gpu->download(g_gpu, got, p->dev, p->n * sizeof *got);
    gpu_ok("download");
    double diff = 0, scale = 0;
    for (size_t i = 0; i < p->n; i++) {
        double base = mode == ACC ? (double)p->init[i] : 0.0;
        double d = fabs((double)got[i] - (double)p->ref[i]);
        if (isnan(d)) diff = INFINITY;
        diff = fmax(diff, d);
        scale = fmax(scale, fabs((double)p->ref[i] - base));
    }
    free(got);
    if (scale == 0) return diff == 0 ? 0 : INFINITY;
    return diff / scale;
}

static void expect_close(const Pair *p, int mode, double tol, const char *what) {
    double err = pair_err(p, mode);
    printf("  %-34s rel err %.2e (tol %.0e)\n", what, err, tol);
    ck_assert_msg(err <= tol, "%s: CUDA differs from CPU by %.3g of the largest %s (tolerance %.1g)", what, err,
                  mode == ACC ? "increment" : "value", tol);
}

static void expect_rel(double gpu, double cpu, double tol, const char *what) {
    double err = fabs(gpu - cpu) / fmax(fabs(cpu), 1e-30);
    printf("  %-34s rel err %.2e (tol %.0e)\n", what, err, tol);
    ck_assert_msg(err <= tol, "%s: CUDA %.9g, CPU %.9g (relative error %.3g, tolerance %.1g)", what, gpu, cpu, err,
                  tol);
}

/* ---- BLAS-like ---- */

static void matmul_case(int M, int N, int K, int ta, int tb, real_t alpha, real_t beta) {
    Pair A = pair_new((size_t)M * K, 1, -1, 1), B = pair_new((size_t)K * N, 2, -1, 1);
    Pair C = pair_new((size_t)M * N, 3, -1, 1); /* beta = 0 must ignore these, beta = 1 keep them */
    g_cpu->matmul(g_cpu, C.ref, A.ref, B.ref, M, N, K, ta, tb, alpha, beta);
    g_gpu->matmul(g_gpu, C.dev, A.dev, B.dev, M, N, K, ta, tb, alpha, beta);
    gpu_ok("matmul");
    char what[96];
    snprintf(what, sizeof what, "matmul %dx%dx%d t%d%d beta %g", M, N, K, ta, tb, (double)beta);
    expect_close(&C, beta != 0 ? ACC : OUT, matmul_tol(), what);
    pair_free(&A);
    pair_free(&B);
    pair_free(&C);
}

/* _i picks transA, transB. M = 1 is the shape of a decode step; N = 1 a matrix-vector product. */
START_TEST(matmul_all_transposes) {
    int ta = _i & 1, tb = _i >> 1;
    const int shapes[][3] = {{37, 29, 53}, {1, 29, 53}, {64, 1, 130}, {130, 70, 300}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        matmul_case(shapes[s][0], shapes[s][1], shapes[s][2], ta, tb, 1, 0);
        matmul_case(shapes[s][0], shapes[s][1], shapes[s][2], ta, tb, (real_t)0.5, 1);
    }
}
END_TEST

/* ---- bf16 ---- */

/* to_bf16 rounds identically on both sides (nearest even): the bits must match exactly. Returns the
 * device copy of a's bf16 bits; *host receives the CPU's. */
static uint16_t *bf16_pair(const Pair *a, uint16_t **host) {
    uint16_t *h = malloc(a->n * sizeof *h), *got = malloc(a->n * sizeof *got);
    uint16_t *d = g_gpu->alloc(g_gpu, a->n * sizeof *d);
    ck_assert(h && got && d);
    g_cpu->to_bf16(g_cpu, h, a->ref, a->n);
    g_gpu->to_bf16(g_gpu, d, a->dev, a->n);
    g_gpu->download(g_gpu, got, d, a->n * sizeof *got);
    gpu_ok("to_bf16");
    ck_assert_msg(!memcmp(h, got, a->n * sizeof *h), "to_bf16: CUDA's bits differ from the CPU's");
    free(got);
    *host = h;
    return d;
}

/* Both sides multiply the same bf16 values and sum in fp32: only the order of the sums differs, as
 * for the fp32 matmul (cuBLAS's bf16 tensor-core path keeps fp32 accumulators). */
static void matmul_bf16_case(int M, int N, int K, int ta, int tb, real_t alpha, real_t beta, int b_is_bf16) {
    Pair A = pair_new((size_t)M * K, 21, -1, 1), B = pair_new((size_t)K * N, 22, -1, 1);
    Pair C = pair_new((size_t)M * N, 23, -1, 1);
    uint16_t *bh = NULL, *bd = b_is_bf16 ? bf16_pair(&B, &bh) : NULL;
    DType tB = b_is_bf16 ? DT_BF16 : DT_REAL;
    g_cpu->matmul_bf16(g_cpu, C.ref, A.ref, DT_REAL, bh ? (const void *)bh : B.ref, tB, M, N, K, ta, tb, alpha, beta);
    g_gpu->matmul_bf16(g_gpu, C.dev, A.dev, DT_REAL, bd ? (const void *)bd : B.dev, tB, M, N, K, ta, tb, alpha, beta);
    gpu_ok("matmul_bf16");
    char what[96];
    snprintf(what, sizeof what, "matmul_bf16 %dx%dx%d t%d%d B %s", M, N, K, ta, tb, b_is_bf16 ? "bf16" : "f32");
    expect_close(&C, beta != 0 ? ACC : OUT, 1e-5, what);
    free(bh);
    g_gpu->free(g_gpu, bd);
    pair_free(&A), pair_free(&B), pair_free(&C);
}

START_TEST(matmul_bf16_all_transposes) {
    int ta = _i & 1, tb = _i >> 1;
    BackendNeed need = {.bf16 = 1};
    gpu_reserve_both(g_cpu, g_gpu, &need);
    matmul_bf16_case(37, 29, 53, ta, tb, 1, 0, 0);
    matmul_bf16_case(130, 70, 300, ta, tb, (real_t)0.5, 1, 1);
    matmul_bf16_case(1, 29, 53, ta, tb, 1, 0, 1);
}
END_TEST

START_TEST(embedding_bf16_lookup) {
    enum { V = 50, C = 24, BT = 9 };
    Pair w = pair_new((size_t)V * C, 31, -2, 2), out = pair_new((size_t)BT * C, 32, -1, 1);
    uint16_t *wh = NULL, *wd = bf16_pair(&w, &wh);
    const int32_t tok[BT] = {0, 49, 3, 3, 17, 0, 48, 1, 2};
    g_cpu->embedding_fwd_bf16(g_cpu, out.ref, tok, wh, BT, C);
    g_gpu->embedding_fwd_bf16(g_gpu, out.dev, tok, wd, BT, C);
    gpu_ok("embedding_fwd_bf16");
    expect_close(&out, OUT, 0, "embedding_fwd_bf16 (exact)");
    free(wh);
    g_gpu->free(g_gpu, wd);
    pair_free(&w), pair_free(&out);
}
END_TEST

/* ---- quantized base ---- */

/* Both sides expand the same blocks with the same code (core/base/ggml_blocks.h); the GPU compiler may
 * fuse d*q + m into one FMA, so values agree to about an ulp of the largest. Every output element starts
 * random, so one the kernel misses differs. A type the op does not support gives NaN on both. */
START_TEST(dequantize_every_type) {
    enum { ROWS = 7, COLS = 512 };
    for (int i = 0; i < TU_N_BLOCK_TYPES; i++) {
        GgmlType t = tu_block_types[i];
        size_t nb = (size_t)ROWS * ggml_row_bytes(t, COLS);
        uint8_t *h = malloc(nb), *d = g_gpu->alloc(g_gpu, nb);
        ck_assert(h && d);
        tu_random_blocks(t, ROWS, COLS, 900 + (uint64_t)i, h);
        g_gpu->upload(g_gpu, d, h, nb);
        Pair out = pair_new((size_t)ROWS * COLS, 70 + (uint64_t)i, -1, 1);
        g_cpu->dequantize(g_cpu, out.ref, h, t, ROWS, COLS);
        g_gpu->dequantize(g_gpu, out.dev, d, t, ROWS, COLS);
        gpu_ok("dequantize");
        char what[64];
        snprintf(what, sizeof what, "dequantize %s", ggml_type_name(t));
        expect_close(&out, OUT, 1e-6, what);
        pair_free(&out);
        free(h);
        g_gpu->free(g_gpu, d);
    }
    Pair nan_out = pair_new(64, 80, -1, 1);
    uint8_t *d = g_gpu->alloc(g_gpu, 256);
    g_gpu->dequantize(g_gpu, nan_out.dev, d, GGML_Q2_K, 1, 64);
    gpu_ok("dequantize Q2_K");
    real_t got[64];
    g_gpu->download(g_gpu, got, nan_out.dev, sizeof got);
    for (int i = 0; i < 64; i++) ck_assert_msg(isnan(got[i]), "dequantize of unsupported Q2_K: element %d is %g", i, (double)got[i]);
    pair_free(&nan_out);
    g_gpu->free(g_gpu, d);
}
END_TEST

/* NF4: the kernel computes each block's scale and each value with nf4_mul / nf4_add, which nvcc may not
 * fuse, so the GPU gives the CPU's bits. 33 x 129 values: blocks span rows, the last block is partial
 * and the last byte half used. */
START_TEST(dequantize_nf4_exact) {
    enum { ROWS = 33, COLS = 129 };
    size_t n = (size_t)ROWS * COLS, nb = nf4_bytes((int64_t)n);
    real_t *w = malloc(n * sizeof *w);
    uint8_t *h = malloc(nb), *d = g_gpu->alloc(g_gpu, nb);
    ck_assert(w && h && d);
    for (size_t i = 0; i < n; i++) w[i] = (real_t)(0.02 * rng_normal(rng_key(950, 1), i));
    ck_assert_int_eq(nf4_quantize(w, (int64_t)n, h, "gpu_ops"), PEFTC_OK);
    g_gpu->upload(g_gpu, d, h, nb);
    Pair out = pair_new(n, 91, -1, 1);
    g_cpu->dequantize(g_cpu, out.ref, h, GGML_NF4, ROWS, COLS);
    g_gpu->dequantize(g_gpu, out.dev, d, GGML_NF4, ROWS, COLS);
    gpu_ok("dequantize NF4");
    expect_close(&out, OUT, 0, "dequantize NF4 (exact)");
    pair_free(&out);
    free(w);
    free(h);
    g_gpu->free(g_gpu, d);
}
END_TEST

/* ---- CSR (RoSA's sparse delta) ---- */

/* Both sides sum each element's products in double in the same order: float rounding at the end only. */
START_TEST(csr_ops_match_cpu) {
    enum { ROWS = 40, COLS = 30, R = 17 };
    int32_t row_ptr[ROWS + 1], col_idx[ROWS * COLS];
    int nnz = 0;
    row_ptr[0] = 0;
    for (int i = 0; i < ROWS; i++) {
        for (int c = 0; c < COLS; c++) /* rows 5..9 empty, the rest about 1 in 5 */
            if ((i < 5 || i >= 10) && (i * 7 + c * 13) % 5 == 0) col_idx[nnz++] = c;
        row_ptr[i + 1] = nnz;
    }
    int32_t *rp = g_gpu->alloc(g_gpu, sizeof row_ptr), *ci = g_gpu->alloc(g_gpu, (size_t)nnz * sizeof *ci);
    g_gpu->upload(g_gpu, rp, row_ptr, sizeof row_ptr);
    g_gpu->upload(g_gpu, ci, col_idx, (size_t)nnz * sizeof *ci);
    BackendNeed need = {.nnz = nnz};
    gpu_reserve_both(g_cpu, g_gpu, &need);
    Pair val = pair_new((size_t)nnz, 41, -1, 1), W = pair_new((size_t)ROWS * COLS, 42, -1, 1);
    Pair x = pair_new((size_t)R * COLS, 43, -1, 1), y = pair_new((size_t)R * ROWS, 44, -1, 1);
    Pair dy = pair_new((size_t)R * ROWS, 45, -1, 1), dx = pair_new((size_t)R * COLS, 46, -1, 1);
    Pair dval = pair_new((size_t)nnz, 47, -1, 1), dgat = pair_new((size_t)nnz, 48, -1, 1);
    g_cpu->csr_add_dense(g_cpu, W.ref, row_ptr, col_idx, val.ref, ROWS, COLS, (real_t)0.5);
    g_gpu->csr_add_dense(g_gpu, W.dev, rp, ci, val.dev, ROWS, COLS, (real_t)0.5);
    g_cpu->csr_spmm(g_cpu, y.ref, x.ref, row_ptr, col_idx, val.ref, R, ROWS, COLS, 2);
    g_gpu->csr_spmm(g_gpu, y.dev, x.dev, rp, ci, val.dev, R, ROWS, COLS, 2);
    g_cpu->csr_spmm_t(g_cpu, dx.ref, dy.ref, row_ptr, col_idx, val.ref, R, ROWS, COLS, 2);
    g_gpu->csr_spmm_t(g_gpu, dx.dev, dy.dev, rp, ci, val.dev, R, ROWS, COLS, 2);
    g_cpu->csr_sddmm(g_cpu, dval.ref, dy.ref, x.ref, row_ptr, col_idx, R, ROWS, COLS, 2);
    g_gpu->csr_sddmm(g_gpu, dval.dev, dy.dev, x.dev, rp, ci, R, ROWS, COLS, 2);
    g_cpu->csr_gather(g_cpu, dgat.ref, W.ref, row_ptr, col_idx, ROWS, COLS, (real_t)-0.5);
    g_gpu->csr_gather(g_gpu, dgat.dev, W.dev, rp, ci, ROWS, COLS, (real_t)-0.5);
    gpu_ok("csr ops");
    expect_close(&W, ACC, 1e-6, "csr_add_dense");
    expect_close(&y, ACC, 1e-6, "csr_spmm");
    expect_close(&dx, ACC, 1e-5, "csr_spmm_t");
    expect_close(&dval, ACC, 1e-6, "csr_sddmm");
    expect_close(&dgat, ACC, 1e-6, "csr_gather"); /* one product and add per value */
    pair_free(&val), pair_free(&W), pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx), pair_free(&dval);
    pair_free(&dgat);
    g_gpu->free(g_gpu, rp), g_gpu->free(g_gpu, ci);
}
END_TEST

/* Elementwise products and sums round once per element, so the sides agree to a few ulps (FMA). */
START_TEST(axpy_scale_sumsq) {
    const size_t n = 100003;
    Pair x = pair_new(n, 10, -1, 1), y = pair_new(n, 11, -1, 1);
    g_cpu->axpy(g_cpu, y.ref, x.ref, (real_t)-0.75, n);
    g_gpu->axpy(g_gpu, y.dev, x.dev, (real_t)-0.75, n);
    gpu_ok("axpy");
    expect_close(&y, ACC, 1e-6, "axpy");
    g_cpu->scale(g_cpu, x.ref, (real_t)1.7, n);
    g_gpu->scale(g_gpu, x.dev, (real_t)1.7, n);
    gpu_ok("scale");
    expect_close(&x, OUT, 1e-6, "scale");
    /* A reduction over 1e5 squares: summation order only, the CPU's in double. */
    double cpu = g_cpu->sumsq(g_cpu, y.ref, n), gpu = g_gpu->sumsq(g_gpu, y.dev, n);
    gpu_ok("sumsq");
    expect_rel(gpu, cpu, 1e-5, "sumsq");
    pair_free(&x);
    pair_free(&y);
}
END_TEST

/* ---- bias, embedding, RMSNorm ---- */

START_TEST(bias_fwd_bwd) {
    enum { BT = 33, OC = 70 };
    Pair out = pair_new(BT * OC, 20, -1, 1), b = pair_new(OC, 21, -1, 1);
    Pair dout = pair_new(BT * OC, 22, -1, 1), db = pair_new(OC, 23, -1, 1);
    g_cpu->bias_fwd(g_cpu, out.ref, b.ref, BT, OC);
    g_gpu->bias_fwd(g_gpu, out.dev, b.dev, BT, OC);
    gpu_ok("bias_fwd");
    expect_close(&out, ACC, 1e-6, "bias_fwd (+=)"); /* one add per element */
    g_cpu->bias_bwd(g_cpu, db.ref, dout.ref, BT, OC);
    g_gpu->bias_bwd(g_gpu, db.dev, dout.dev, BT, OC);
    gpu_ok("bias_bwd");
    expect_close(&db, ACC, 1e-5, "bias_bwd"); /* a sum over 33 rows: order only */
    pair_free(&out);
    pair_free(&b);
    pair_free(&dout);
    pair_free(&db);
}
END_TEST

START_TEST(embedding_fwd_bwd) {
    enum { V = 50, C = 70, BT = 64 };
    int32_t tok[BT];
    for (int i = 0; i < BT; i++) tok[i] = (int32_t)(rng_u64(30, (uint64_t)i) % V);
    tok[1] = tok[0]; /* 64 draws from 50 repeat anyway; these make sure one row gets three */
    tok[BT - 1] = tok[0];
    Pair wte = pair_new((size_t)V * C, 31, -1, 1), out = pair_new((size_t)BT * C, 32, -1, 1);
    g_cpu->embedding_fwd(g_cpu, out.ref, tok, wte.ref, BT, C);
    g_gpu->embedding_fwd(g_gpu, out.dev, tok, wte.dev, BT, C);
    gpu_ok("embedding_fwd");
    expect_close(&out, OUT, 0, "embedding_fwd"); /* a gather: bit-exact */
    Pair dout = pair_new((size_t)BT * C, 33, -1, 1), dwte = pair_new((size_t)V * C, 34, -1, 1);
    g_cpu->embedding_bwd(g_cpu, dwte.ref, dout.ref, tok, BT, C);
    g_gpu->embedding_bwd(g_gpu, dwte.dev, dout.dev, tok, BT, C);
    gpu_ok("embedding_bwd");
    expect_close(&dwte, ACC, 1e-5, "embedding_bwd (repeated tokens)"); /* atomics reorder the adds */
    pair_free(&wte);
    pair_free(&out);
    pair_free(&dout);
    pair_free(&dwte);
}
END_TEST

/* Per-row sums of C squares or products: summation order and rsqrt rounding, ~1e-6. */
START_TEST(rmsnorm_fwd_bwd) {
    enum { BT = 33, C = 200 };
    Pair inp = pair_new(BT * C, 40, -2, 2), w = pair_new(C, 41, 0.5, 1.5);
    Pair out = pair_new(BT * C, 42, -1, 1), rstd = pair_new(BT, 43, -1, 1);
    g_cpu->rmsnorm_fwd(g_cpu, out.ref, rstd.ref, inp.ref, w.ref, BT, C, (real_t)1e-5);
    g_gpu->rmsnorm_fwd(g_gpu, out.dev, rstd.dev, inp.dev, w.dev, BT, C, (real_t)1e-5);
    gpu_ok("rmsnorm_fwd");
    expect_close(&out, OUT, 1e-5, "rmsnorm_fwd out");
    expect_close(&rstd, OUT, 1e-5, "rmsnorm_fwd rstd");
    pair_push(&rstd); /* both backwards read the same rstd */
    Pair dout = pair_new(BT * C, 44, -1, 1), dinp = pair_new(BT * C, 45, -1, 1), dw = pair_new(C, 46, -1, 1);
    /* Frozen norms pass dw = NULL; a NULL dinp is legal too. Each gradient ends up added twice. */
    g_cpu->rmsnorm_bwd(g_cpu, dinp.ref, NULL, dout.ref, inp.ref, w.ref, rstd.ref, BT, C);
    g_cpu->rmsnorm_bwd(g_cpu, NULL, dw.ref, dout.ref, inp.ref, w.ref, rstd.ref, BT, C);
    g_cpu->rmsnorm_bwd(g_cpu, dinp.ref, dw.ref, dout.ref, inp.ref, w.ref, rstd.ref, BT, C);
    g_gpu->rmsnorm_bwd(g_gpu, dinp.dev, NULL, dout.dev, inp.dev, w.dev, rstd.dev, BT, C);
    g_gpu->rmsnorm_bwd(g_gpu, NULL, dw.dev, dout.dev, inp.dev, w.dev, rstd.dev, BT, C);
    g_gpu->rmsnorm_bwd(g_gpu, dinp.dev, dw.dev, dout.dev, inp.dev, w.dev, rstd.dev, BT, C);
    gpu_ok("rmsnorm_bwd");
    expect_close(&dinp, ACC, 1e-5, "rmsnorm_bwd dinp");
    expect_close(&dw, ACC, 1e-5, "rmsnorm_bwd dw");
    Pair *all[] = {&inp, &w, &out, &rstd, &dout, &dinp, &dw};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}
END_TEST

/* ---- RoPE ---- */

/* _i picks HD = 64 or 32 (bit 0), and positions t or, for packed rows (bit 1), positions restarting at
 * 0 every 11 tokens. Two products and a sum per element from the same tables: a few ulps. */
START_TEST(rope_fwd_bwd) {
    const int B = 2, T = 37, NH = 4, HD = (_i & 1) ? 32 : 64;
    size_t nt = (size_t)T * (HD / 2), nx = (size_t)B * T * NH * HD;
    int32_t packed[2 * 37], *pos = (_i & 2) ? packed : NULL; /* (B,T) */
    for (int i = 0; i < B * T; i++) packed[i] = (i % T) % 11;
    Pair cs = pair_new(nt, 0, 0, 0), sn = pair_new(nt, 0, 0, 0);
    rope_tables(cs.ref, sn.ref, T, HD, 10000.0);
    pair_push(&cs);
    pair_push(&sn);
    Pair x = pair_new(nx, 50, -1, 1), dx = pair_new(nx, 51, -1, 1);
    char what[64];
    g_cpu->rope_fwd(g_cpu, x.ref, cs.ref, sn.ref, pos, B, T, NH, HD);
    g_gpu->rope_fwd(g_gpu, x.dev, cs.dev, sn.dev, pos, B, T, NH, HD);
    gpu_ok("rope_fwd");
    snprintf(what, sizeof what, "rope_fwd HD %d%s", HD, pos ? " packed" : "");
    expect_close(&x, OUT, 1e-6, what);
    g_cpu->rope_bwd(g_cpu, dx.ref, cs.ref, sn.ref, pos, B, T, NH, HD);
    g_gpu->rope_bwd(g_gpu, dx.dev, cs.dev, sn.dev, pos, B, T, NH, HD);
    gpu_ok("rope_bwd");
    snprintf(what, sizeof what, "rope_bwd HD %d%s (in place)", HD, pos ? " packed" : "");
    expect_close(&dx, OUT, 1e-6, what);
    pair_free(&cs);
    pair_free(&sn);
    pair_free(&x);
    pair_free(&dx);
}
END_TEST

/* ---- attention ---- */

/* Packed rows' segment ids (B = 2, T): row 0 examples of 13 tokens back to back, so later segments
 * start past whole key tiles that they cannot see; row 1 interleaved ids, which the contract allows. */
static int32_t *attention_segments(int T) {
    int32_t *seg = malloc(2 * (size_t)T * sizeof *seg);
    for (int t = 0; t < T; t++) seg[t] = t / 13, seg[T + t] = (t * 7) % 3;
    return seg;
}

/* _i picks T in {1, 7, 64, 200} and HD in {64, 32} (bit 2), and causal or packed rows (bit 3); GQA with
 * 4 query heads on 2 kv heads. Each backend keeps its own saved state (CPU: probabilities, CUDA: one
 * log-sum-exp per row), so only the outputs and gradients are compared. */
START_TEST(attention_fwd_bwd) {
    const int Ts[] = {1, 7, 64, 200};
    const int B = 2, NH = 4, NKV = 2, T = Ts[_i % 4], HD = (_i & 4) ? 32 : 64;
    size_t nq = (size_t)B * T * NH * HD, nkv = (size_t)B * T * NKV * HD;
    int32_t *seg = (_i & 8) ? attention_segments(T) : NULL; /* (B,T) */
    /* Scores with standard deviation ~1.3: peaked enough that a missing max-subtraction or mask shows. */
    Pair q = pair_new(nq, 60, -2, 2), k = pair_new(nkv, 61, -2, 2), v = pair_new(nkv, 62, -1, 1);
    Pair out = pair_new(nq, 63, -1, 1);
    real_t *att_cpu = malloc(g_cpu->attention_saved(g_cpu, B, T, NH) * sizeof(real_t));
    real_t *att_gpu = g_gpu->alloc(g_gpu, g_gpu->attention_saved(g_gpu, B, T, NH) * sizeof(real_t));
    ck_assert(att_cpu && att_gpu);
    g_cpu->attention_fwd(g_cpu, out.ref, att_cpu, q.ref, k.ref, v.ref, seg, B, T, NH, NKV, HD);
    g_gpu->attention_fwd(g_gpu, out.dev, att_gpu, q.dev, k.dev, v.dev, seg, B, T, NH, NKV, HD);
    gpu_ok("attention_fwd");
    char what[64];
    const char *kind = seg ? " packed" : "";
    snprintf(what, sizeof what, "attention_fwd T %d HD %d%s", T, HD, kind);
    expect_close(&out, OUT, ATTN_TOL, what);
    Pair dout = pair_new(nq, 64, -1, 1);
    Pair dq = pair_new(nq, 65, -1, 1), dk = pair_new(nkv, 66, -1, 1), dv = pair_new(nkv, 67, -1, 1);
    g_cpu->attention_bwd(g_cpu, dq.ref, dk.ref, dv.ref, dout.ref, att_cpu, q.ref, k.ref, v.ref, seg, B, T, NH, NKV, HD);
    g_gpu->attention_bwd(g_gpu, dq.dev, dk.dev, dv.dev, dout.dev, att_gpu, q.dev, k.dev, v.dev, seg, B, T, NH, NKV, HD);
    gpu_ok("attention_bwd");
    snprintf(what, sizeof what, "attention_bwd dq T %d HD %d%s", T, HD, kind);
    expect_close(&dq, ACC, ATTN_TOL, what);
    snprintf(what, sizeof what, "attention_bwd dk T %d HD %d%s", T, HD, kind);
    expect_close(&dk, ACC, ATTN_TOL, what);
    snprintf(what, sizeof what, "attention_bwd dv T %d HD %d%s", T, HD, kind);
    expect_close(&dv, ACC, ATTN_TOL, what);
    free(seg);
    free(att_cpu);
    g_gpu->free(g_gpu, att_gpu);
    Pair *all[] = {&q, &k, &v, &out, &dout, &dq, &dk, &dv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}
END_TEST

/* _i picks HD 64 or 32. Rows with an empty cache, one entry, part of it and all of it. */
START_TEST(attention_decode_cache) {
    enum { B = 4, S = 40, NH = 4, NKV = 2 };
    const int HD = _i ? 32 : 64;
    const int len[B] = {0, 1, 17, S};
    Pair q = pair_new((size_t)B * NH * HD, 70, -2, 2);
    Pair kc = pair_new((size_t)B * S * NKV * HD, 71, -2, 2), vc = pair_new((size_t)B * S * NKV * HD, 72, -1, 1);
    Pair out = pair_new((size_t)B * NH * HD, 73, -1, 1); /* row 0 must be overwritten with zeros */
    g_cpu->attention_decode(g_cpu, out.ref, q.ref, kc.ref, vc.ref, len, B, S, NH, NKV, HD);
    g_gpu->attention_decode(g_gpu, out.dev, q.dev, kc.dev, vc.dev, len, B, S, NH, NKV, HD);
    gpu_ok("attention_decode");
    expect_close(&out, OUT, ATTN_TOL, HD == 64 ? "attention_decode HD 64" : "attention_decode HD 32");
    pair_free(&q);
    pair_free(&kc);
    pair_free(&vc);
    pair_free(&out);
}
END_TEST

/* ---- SwiGLU ---- */

/* One exp and a few products per element; the GPU's expf is within 2 ulp of glibc's. */
START_TEST(swiglu_fwd_bwd) {
    const size_t n = 10007;
    Pair gate = pair_new(n, 80, -8, 8), up = pair_new(n, 81, -2, 2), out = pair_new(n, 82, -1, 1);
    g_cpu->swiglu_fwd(g_cpu, out.ref, gate.ref, up.ref, n);
    g_gpu->swiglu_fwd(g_gpu, out.dev, gate.dev, up.dev, n);
    gpu_ok("swiglu_fwd");
    expect_close(&out, OUT, 1e-5, "swiglu_fwd");
    Pair dout = pair_new(n, 83, -1, 1), dgate = pair_new(n, 84, -1, 1), dup = pair_new(n, 85, -1, 1);
    g_cpu->swiglu_bwd(g_cpu, dgate.ref, dup.ref, dout.ref, gate.ref, up.ref, n);
    g_gpu->swiglu_bwd(g_gpu, dgate.dev, dup.dev, dout.dev, gate.dev, up.dev, n);
    gpu_ok("swiglu_bwd");
    expect_close(&dgate, ACC, 1e-5, "swiglu_bwd dgate");
    expect_close(&dup, ACC, 1e-5, "swiglu_bwd dup");
    Pair *all[] = {&gate, &up, &out, &dout, &dgate, &dup};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}
END_TEST

/* ---- Mamba: conv1d, SiLU, copy_2d, selective scan ---- */

/* x strided inside a wider (in_proj-like) tensor; the state carried through a second call whose T is
 * shorter than K-1 (a decode step) and one without a state; then the backward. A few products per
 * output in float on both sides; dw and db sum 2*T rows (double on both sides). */
START_TEST(conv1d_fwd_bwd) {
    enum { B = 2, T = 37, D = 70, K = 4, LDX = 2 * D };
    Pair x = pair_new((size_t)B * T * LDX, 120, -1, 1), w = pair_new((size_t)D * K, 121, -1, 1);
    Pair b = pair_new(D, 122, -1, 1), out = pair_new((size_t)B * T * D, 123, -1, 1);
    Pair state = pair_new((size_t)B * (K - 1) * D, 124, -1, 1);
    const int steps[] = {T, 2};
    for (int i = 0; i < 2; i++) {
        g_cpu->conv1d_fwd(g_cpu, out.ref, x.ref, LDX, w.ref, b.ref, state.ref, B, steps[i], D, K);
        g_gpu->conv1d_fwd(g_gpu, out.dev, x.dev, LDX, w.dev, b.dev, state.dev, B, steps[i], D, K);
        gpu_ok("conv1d_fwd");
        expect_close(&out, OUT, 1e-6, i ? "conv1d_fwd T 2 < K-1, carried state" : "conv1d_fwd with state");
        expect_close(&state, OUT, 0, i ? "conv1d state after T 2" : "conv1d state after T 37"); /* copies */
    }
    g_cpu->conv1d_fwd(g_cpu, out.ref, x.ref, LDX, w.ref, NULL, NULL, B, T, D, K);
    g_gpu->conv1d_fwd(g_gpu, out.dev, x.dev, LDX, w.dev, NULL, NULL, B, T, D, K);
    gpu_ok("conv1d_fwd");
    expect_close(&out, OUT, 1e-6, "conv1d_fwd no state, no bias");
    Pair dout = pair_new((size_t)B * T * D, 125, -1, 1), dx = pair_new((size_t)B * T * LDX, 126, -1, 1);
    Pair dw = pair_new((size_t)D * K, 127, -1, 1), db = pair_new(D, 128, -1, 1);
    g_cpu->conv1d_bwd(g_cpu, dx.ref, dw.ref, db.ref, dout.ref, x.ref, LDX, w.ref, B, T, D, K);
    g_gpu->conv1d_bwd(g_gpu, dx.dev, dw.dev, db.dev, dout.dev, x.dev, LDX, w.dev, B, T, D, K);
    gpu_ok("conv1d_bwd");
    expect_close(&dx, ACC, 1e-6, "conv1d_bwd dx (ldx 2D)");
    expect_close(&dw, ACC, 1e-5, "conv1d_bwd dw");
    expect_close(&db, ACC, 1e-5, "conv1d_bwd db");
    Pair *all[] = {&x, &w, &b, &out, &state, &dout, &dx, &dw, &db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}
END_TEST

/* One exp per element, as swiglu; copy_2d is a copy: bit-exact, and the columns outside the block
 * keep their values. */
START_TEST(silu_copy_2d) {
    const size_t n = 10007;
    Pair x = pair_new(n, 130, -8, 8), out = pair_new(n, 131, -1, 1);
    g_cpu->silu_fwd(g_cpu, out.ref, x.ref, n);
    g_gpu->silu_fwd(g_gpu, out.dev, x.dev, n);
    gpu_ok("silu_fwd");
    expect_close(&out, OUT, 1e-5, "silu_fwd");
    Pair dout = pair_new(n, 132, -1, 1), dx = pair_new(n, 133, -1, 1);
    g_cpu->silu_bwd(g_cpu, dx.ref, dout.ref, x.ref, n);
    g_gpu->silu_bwd(g_gpu, dx.dev, dout.dev, x.dev, n);
    gpu_ok("silu_bwd");
    expect_close(&dx, ACC, 1e-5, "silu_bwd");
    enum { ROWS = 33, LDS = 50, LDD = 20, COLS = 7 };
    Pair src = pair_new(ROWS * LDS, 134, -1, 1), dst = pair_new(ROWS * LDD, 135, -1, 1);
    g_cpu->copy_2d(g_cpu, dst.ref + 3, LDD, src.ref + 40, LDS, ROWS, COLS);
    g_gpu->copy_2d(g_gpu, dst.dev + 3, LDD, src.dev + 40, LDS, ROWS, COLS);
    gpu_ok("copy_2d");
    expect_close(&dst, OUT, 0, "copy_2d");
    Pair *all[] = {&x, &out, &dout, &dx, &src, &dst};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}
END_TEST

/* The scan's inputs on both sides, Bm and Cm interleaved in one x_proj-like (B,T,8+2N) tensor and z
 * the second half of an in_proj-like (B,T,2D) one. */
typedef struct {
    Pair u, dt, A_log, xdbl, Dskip, xz;
    int ldbc, ldz;
} ScanPairs;

static ScanPairs scan_pairs(int B, int T, int D, int N) {
    size_t btd = (size_t)B * T * D;
    ScanPairs s = {pair_new(btd, 140, -1, 1), pair_new(btd, 141, -3, 1), pair_new((size_t)D * N, 142, -0.5, 1.5),
                   pair_new((size_t)B * T * (8 + 2 * N), 143, -1, 1), pair_new(D, 144, 0.5, 1.5),
                   pair_new(2 * btd, 145, -2, 2), 8 + 2 * N, 2 * D};
    s.dt.ref[1] = 25; /* softplus's identity branch */
    pair_push(&s.dt);
    return s;
}

static void scan_pairs_free(ScanPairs *s) {
    Pair *all[] = {&s->u, &s->dt, &s->A_log, &s->xdbl, &s->Dskip, &s->xz};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}

/* Forward from a given state (y, the state after), then from zero with saved states, then the
 * backward from those into every gradient. Float on both sides; the CPU sums its partials in double,
 * the GPU in a warp butterfly then double, and expf differs by an ulp or two: 1e-4 of the largest
 * value, as attention. */
static void scan_case(int T, int N) {
    enum { B = 2, D = 70 };
    ScanPairs s = scan_pairs(B, T, D, N);
    size_t btd = (size_t)B * T * D, bdn = (size_t)B * D * N;
    const real_t *Bc = s.xdbl.ref + 8, *Cc = s.xdbl.ref + 8 + N, *Bg = s.xdbl.dev + 8, *Cg = s.xdbl.dev + 8 + N;
    Pair y = pair_new(btd, 146, -1, 1), h = pair_new(bdn, 147, -1, 1);
    g_cpu->ssm_scan_fwd(g_cpu, y.ref, NULL, h.ref, s.u.ref, s.dt.ref, s.A_log.ref, Bc, Cc, s.ldbc, s.Dskip.ref,
                        s.xz.ref + D, s.ldz, B, T, D, N);
    g_gpu->ssm_scan_fwd(g_gpu, y.dev, NULL, h.dev, s.u.dev, s.dt.dev, s.A_log.dev, Bg, Cg, s.ldbc, s.Dskip.dev,
                        s.xz.dev + D, s.ldz, B, T, D, N);
    gpu_ok("ssm_scan_fwd");
    char what[96];
    snprintf(what, sizeof what, "ssm_scan_fwd T %d N %d, from h", T, N);
    expect_close(&y, OUT, ATTN_TOL, what);
    snprintf(what, sizeof what, "ssm_scan_fwd T %d N %d, final h", T, N);
    expect_close(&h, OUT, ATTN_TOL, what);
    real_t *sv_cpu = malloc(g_cpu->ssm_scan_saved(g_cpu, B, T, D, N) * sizeof(real_t));
    real_t *sv_gpu = g_gpu->alloc(g_gpu, g_gpu->ssm_scan_saved(g_gpu, B, T, D, N) * sizeof(real_t));
    ck_assert(sv_cpu && sv_gpu);
    g_cpu->ssm_scan_fwd(g_cpu, y.ref, sv_cpu, NULL, s.u.ref, s.dt.ref, s.A_log.ref, Bc, Cc, s.ldbc, s.Dskip.ref,
                        s.xz.ref + D, s.ldz, B, T, D, N);
    g_gpu->ssm_scan_fwd(g_gpu, y.dev, sv_gpu, NULL, s.u.dev, s.dt.dev, s.A_log.dev, Bg, Cg, s.ldbc, s.Dskip.dev,
                        s.xz.dev + D, s.ldz, B, T, D, N);
    gpu_ok("ssm_scan_fwd");
    snprintf(what, sizeof what, "ssm_scan_fwd T %d N %d, saving", T, N);
    expect_close(&y, OUT, ATTN_TOL, what);
    Pair dy = pair_new(btd, 148, -1, 1), du = pair_new(btd, 149, -1, 1), ddt = pair_new(btd, 150, -1, 1);
    Pair dA = pair_new((size_t)D * N, 151, -1, 1), dx = pair_new(s.xdbl.n, 152, -1, 1);
    Pair dD = pair_new(D, 153, -1, 1), dxz = pair_new(2 * btd, 154, -1, 1);
    g_cpu->ssm_scan_bwd(g_cpu, du.ref, ddt.ref, dA.ref, dx.ref + 8, dx.ref + 8 + N, dD.ref, dxz.ref + D, dy.ref,
                        sv_cpu, s.u.ref, s.dt.ref, s.A_log.ref, Bc, Cc, s.ldbc, s.Dskip.ref, s.xz.ref + D, s.ldz, B,
                        T, D, N);
    g_gpu->ssm_scan_bwd(g_gpu, du.dev, ddt.dev, dA.dev, dx.dev + 8, dx.dev + 8 + N, dD.dev, dxz.dev + D, dy.dev,
                        sv_gpu, s.u.dev, s.dt.dev, s.A_log.dev, Bg, Cg, s.ldbc, s.Dskip.dev, s.xz.dev + D, s.ldz, B,
                        T, D, N);
    gpu_ok("ssm_scan_bwd");
    const char *names[] = {"du", "ddt", "dA_log", "dB and dC", "dDskip", "dz"};
    Pair *grads[] = {&du, &ddt, &dA, &dx, &dD, &dxz};
    for (int i = 0; i < 6; i++) {
        snprintf(what, sizeof what, "ssm_scan_bwd %s T %d N %d", names[i], T, N);
        expect_close(grads[i], ACC, ATTN_TOL, what);
    }
    free(sv_cpu);
    g_gpu->free(g_gpu, sv_gpu);
    Pair *all[] = {&y, &h, &dy, &du, &ddt, &dA, &dx, &dD, &dxz};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
    scan_pairs_free(&s);
}

/* _i picks T in {1, 64, 133} (a decode step, one chunk, two chunks and a remainder) and N in {16, 20}
 * (one block of states, two); D = 70 leaves the last group of channels partly empty. */
START_TEST(ssm_scan_fwd_bwd) {
    const int Ts[] = {1, 64, 133};
    scan_case(Ts[_i % 3], _i / 3 ? 20 : 16);
}
END_TEST

/* ---- cross-entropy ---- */

enum { XBT = 24, XV = 1001 };

/* Every fifth row ignored (prompt tokens). */
static void xent_targets(int32_t *tgt) {
    for (int r = 0; r < XBT; r++)
        tgt[r] = r % 5 == 2 ? PEFTC_IGNORE_INDEX : (int32_t)(rng_u64(90, (uint64_t)r) % XV);
}

/* Softmax rows and the loss: max, exp, sum and log per row, summation order only (1e-5). */
START_TEST(xent_fwd_rows) {
    int32_t tgt[XBT];
    xent_targets(tgt);
    Pair logits = pair_new((size_t)XBT * XV, 91, -4, 4), probs = pair_new((size_t)XBT * XV, 92, -1, 1);
    int64_t nv_cpu = -1, nv_gpu = -1;
    double l_cpu = g_cpu->xent_fwd(g_cpu, probs.ref, logits.ref, tgt, XBT, XV, &nv_cpu);
    double l_gpu = g_gpu->xent_fwd(g_gpu, probs.dev, logits.dev, tgt, XBT, XV, &nv_gpu);
    gpu_ok("xent_fwd");
    ck_assert_int_eq(nv_gpu, nv_cpu);
    ck_assert_int_eq(nv_cpu, XBT - 5);
    expect_rel(l_gpu, l_cpu, 1e-5, "xent_fwd loss");
    expect_close(&probs, OUT, 1e-5, "xent_fwd probs");
    /* In place: probs aliases logits. */
    l_cpu = g_cpu->xent_fwd(g_cpu, logits.ref, logits.ref, tgt, XBT, XV, &nv_cpu);
    l_gpu = g_gpu->xent_fwd(g_gpu, logits.dev, logits.dev, tgt, XBT, XV, &nv_gpu);
    gpu_ok("xent_fwd (in place)");
    ck_assert_int_eq(nv_gpu, nv_cpu);
    expect_rel(l_gpu, l_cpu, 1e-5, "xent_fwd loss (in place)");
    expect_close(&logits, OUT, 1e-5, "xent_fwd probs (in place)");
    /* No valid row: no loss, no count. */
    int32_t none[XBT];
    for (int r = 0; r < XBT; r++) none[r] = PEFTC_IGNORE_INDEX;
    l_gpu = g_gpu->xent_fwd(g_gpu, probs.dev, probs.dev, none, XBT, XV, &nv_gpu);
    gpu_ok("xent_fwd (all ignored)");
    ck_assert_int_eq(nv_gpu, 0);
    ck_assert_msg(l_gpu == 0, "xent_fwd with every target ignored returned loss %g, expected 0", l_gpu);
    pair_free(&logits);
    pair_free(&probs);
}
END_TEST

/* One multiply-add per element: a few ulps (1e-5 leaves room for a reordered scale). */
START_TEST(xent_bwd_rows) {
    int32_t tgt[XBT];
    xent_targets(tgt);
    Pair probs = pair_new((size_t)XBT * XV, 93, -4, 4);
    int64_t nv = 0;
    g_cpu->xent_fwd(g_cpu, probs.ref, probs.ref, tgt, XBT, XV, &nv);
    pair_push(&probs); /* both backwards read the CPU's probabilities */
    real_t scale = (real_t)(1.0 / (double)nv);
    Pair dl = pair_new((size_t)XBT * XV, 94, -1, 1);
    g_cpu->xent_bwd(g_cpu, dl.ref, probs.ref, tgt, XBT, XV, scale);
    g_gpu->xent_bwd(g_gpu, dl.dev, probs.dev, tgt, XBT, XV, scale);
    gpu_ok("xent_bwd");
    expect_close(&dl, ACC, 1e-5, "xent_bwd (+=)");
    /* Aliased: dlogits overwrites probs, ignored rows become zero. */
    g_cpu->xent_bwd(g_cpu, probs.ref, probs.ref, tgt, XBT, XV, scale);
    g_gpu->xent_bwd(g_gpu, probs.dev, probs.dev, tgt, XBT, XV, scale);
    gpu_ok("xent_bwd (in place)");
    expect_close(&probs, OUT, 1e-5, "xent_bwd (in place)");
    real_t *got = malloc(probs.n * sizeof *got);
    ck_assert_ptr_nonnull(got);
    g_gpu->download(g_gpu, got, probs.dev, probs.n * sizeof *got);
    gpu_ok("download");
    int dirty = -1; /* first ignored row with a non-zero entry */
    for (int r = 0; r < XBT && dirty < 0; r++)
        for (int i = 0; tgt[r] == PEFTC_IGNORE_INDEX && i < XV; i++)
            if (got[(size_t)r * XV + i] != 0) dirty = r;
    ck_assert_msg(dirty < 0, "xent_bwd in place: ignored row %d was not cleared to zero", dirty);
    free(got);
    pair_free(&probs);
    pair_free(&dl);
}
END_TEST

/* ---- dropout ---- */

/* _i picks (p, C): p = 0 copies; odd C splits a 64-bit draw across the row end. Masks come from the
 * same counter RNG on both sides, so they must match bit for bit; values are one multiply apart. */
START_TEST(dropout_fwd_bwd) {
    const real_t ps[] = {0, (real_t)0.1, (real_t)0.5};
    const int Cs[] = {37, 64};
    const int R = 33, C = Cs[_i % 2];
    const real_t p = ps[_i / 2];
    size_t n = (size_t)R * C;
    uint64_t keys[33];
    for (int r = 0; r < R; r++) keys[r] = rng_key(100, (uint64_t)r);
    Pair inp = pair_new(n, 101, -1, 1), out = pair_new(n, 102, -1, 1);
    uint8_t *mask_cpu = malloc(n), *mask_got = malloc(n), *mask_dev = g_gpu->alloc(g_gpu, n);
    ck_assert(mask_cpu && mask_got && mask_dev);
    g_cpu->dropout_fwd(g_cpu, out.ref, mask_cpu, inp.ref, keys, R, C, p);
    g_gpu->dropout_fwd(g_gpu, out.dev, mask_dev, inp.dev, keys, R, C, p);
    gpu_ok("dropout_fwd");
    g_gpu->download(g_gpu, mask_got, mask_dev, n);
    gpu_ok("download");
    size_t kept = 0, first_diff = n;
    for (size_t i = 0; i < n; i++) {
        if (mask_got[i] != mask_cpu[i] && first_diff == n) first_diff = i;
        kept += mask_cpu[i];
    }
    ck_assert_msg(first_diff == n, "dropout p %g C %d: masks differ first at row %zu column %zu", (double)p, C,
                  first_diff / (size_t)C, first_diff % (size_t)C);
    /* The comparison proves nothing if the masks are trivial: the kept share must match p. */
    double share = (double)kept / (double)n;
    ck_assert_msg(fabs(share - (1 - (double)p)) < 0.06, "dropout p %g kept %.3f of elements", (double)p, share);
    expect_close(&out, OUT, 1e-6, "dropout_fwd");
    Pair dout = pair_new(n, 103, -1, 1), dinp = pair_new(n, 104, -1, 1);
    g_cpu->dropout_bwd(g_cpu, dinp.ref, dout.ref, mask_cpu, R, C, p);
    g_gpu->dropout_bwd(g_gpu, dinp.dev, dout.dev, mask_dev, R, C, p);
    gpu_ok("dropout_bwd");
    expect_close(&dinp, ACC, 1e-6, "dropout_bwd");
    free(mask_cpu);
    free(mask_got);
    g_gpu->free(g_gpu, mask_dev);
    Pair *all[] = {&inp, &out, &dout, &dinp};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}
END_TEST

/* ---- AdamW ---- */

/* Five steps from zero moments. p is compared on what the steps changed: each side rounds p to an
 * ulp (1.2e-7) per step, about 1e-5 of a five-step update at lr 1e-2, hence 1e-4; m and v are
 * elementwise in float on both sides (1e-5). */
START_TEST(adamw_steps) {
    const size_t n = 10007;
    const double lr = 1e-2, wd = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    Pair p = pair_new(n, 110, -1, 1), m = pair_new(n, 0, 0, 0), v = pair_new(n, 0, 0, 0);
    Pair g = pair_new(n, 111, -1, 1);
    for (int step = 1; step <= 5; step++) {
        tu_fill_uniform(g.ref, n, 111 + (uint64_t)step, -1, 1);
        pair_push(&g);
        double bc1 = 1 - pow(b1, step), bc2 = 1 - pow(b2, step);
        g_cpu->adamw(g_cpu, p.ref, g.ref, m.ref, v.ref, n, lr, wd, b1, b2, eps, bc1, bc2);
        g_gpu->adamw(g_gpu, p.dev, g.dev, m.dev, v.dev, n, lr, wd, b1, b2, eps, bc1, bc2);
        gpu_ok("adamw");
    }
    expect_close(&p, ACC, 1e-4, "adamw p (5 steps)");
    expect_close(&m, OUT, 1e-5, "adamw m");
    expect_close(&v, OUT, 1e-5, "adamw v");
    pair_free(&p);
    pair_free(&m);
    pair_free(&v);
    pair_free(&g);
}
END_TEST

static Suite *gpu_ops_suite(void) {
    Suite *s = suite_create("gpu_ops");
    TCase *tc = tcase_create("cuda_vs_cpu");
    tcase_add_loop_test(tc, matmul_all_transposes, 0, 4);
    tcase_add_loop_test(tc, matmul_bf16_all_transposes, 0, 4);
    tcase_add_test(tc, embedding_bf16_lookup);
    tcase_add_test(tc, dequantize_every_type);
    tcase_add_test(tc, dequantize_nf4_exact);
    tcase_add_test(tc, csr_ops_match_cpu);
    tcase_add_test(tc, axpy_scale_sumsq);
    tcase_add_test(tc, bias_fwd_bwd);
    tcase_add_test(tc, embedding_fwd_bwd);
    tcase_add_test(tc, rmsnorm_fwd_bwd);
    tcase_add_loop_test(tc, rope_fwd_bwd, 0, 4);
    tcase_add_loop_test(tc, attention_fwd_bwd, 0, 16);
    tcase_add_loop_test(tc, attention_decode_cache, 0, 2);
    tcase_add_test(tc, swiglu_fwd_bwd);
    tcase_add_test(tc, conv1d_fwd_bwd);
    tcase_add_test(tc, silu_copy_2d);
    tcase_add_loop_test(tc, ssm_scan_fwd_bwd, 0, 6);
    tcase_add_test(tc, xent_fwd_rows);
    tcase_add_test(tc, xent_bwd_rows);
    tcase_add_loop_test(tc, dropout_fwd_bwd, 0, 6);
    tcase_add_test(tc, adamw_steps);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    gpu_suite_open("gpu_ops", &g_gpu);
    g_cpu = backend_cpu();
    /* The CPU reference's scratch for the largest shapes below: attention (B 2, T 200), the KV cache
     * (S 40), cross-entropy (XBT <= B*T rows), the scan's backward (D 70, N 20, T 133 <= 200); the same
     * on the CUDA instance. */
    BackendNeed need = {.B = 2, .T = 200, .NH = 4, .S = 40, .ssm_D = 70, .ssm_N = 20};
    gpu_reserve_both(g_cpu, g_gpu, &need);
    const char *tf32 = getenv("PEFTC_CUDA_TF32");
    g_tf32 = tf32 && strcmp(tf32, "1") == 0;
    printf("gpu_ops on %s against %s%s\n", g_gpu->name, g_cpu->name, g_tf32 ? " (TF32 matmuls)" : "");
    return gpu_suite_run(gpu_ops_suite());
}
