/* The CUDA backend's runtime and the edges of its kernels that gpu_ops.c's shapes do not reach:
 * zero-filled allocation and memory accounting, error recording and clearing, uploads that the host
 * may overwrite at once, host index arrays refilled between queued ops (the staging ring) and grown,
 * K = 0 matmuls, vocabulary-sized in-place cross-entropy, multi-block reductions (sumsq, RMSNorm dw,
 * bias db). Needs a GPU: without one it prints "SKIP: no GPU" and exits 0. */
#ifndef PEFTC_WITH_CUDA
#error "gpu_ops_core.c tests the CUDA backend; tests/CMakeLists.txt builds it only when PEFTC_CUDA is ON"
#endif

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend/backend.h"
#include "core/backend/cuda/cuda_backend.h"
#include "tests/gpu_testutil.h"
#include "core/base/rng.h"
#include "core/base/status.h"
#include "tests/testutil.h"

static const Backend *g_cpu, *g_gpu;

static void gpu_ok(const char *op) {
    PeftcStatus st = g_gpu->status(g_gpu);
    ck_assert_msg(st == PEFTC_OK, "%s: CUDA backend reported %s: %s", op, peftc_status_name(st), peftc_err_msg());
}

static real_t *host_uniform(size_t n, uint64_t key, double lo, double hi) {
    real_t *x = malloc((n ? n : 1) * sizeof *x);
    ck_assert_ptr_nonnull(x);
    tu_fill_uniform(x, n, key, lo, hi);
    return x;
}

static real_t *dev_from(const real_t *host, size_t n) {
    real_t *d = g_gpu->alloc(g_gpu, n * sizeof *d);
    ck_assert_ptr_nonnull(d);
    g_gpu->upload(g_gpu, d, host, n * sizeof *d);
    return d;
}

/* max |dev - ref| over max |ref| (absolute when ref is all zero); infinite on a NaN. */
static double dev_err(const real_t *dev, const real_t *ref, size_t n) {
    real_t *got = malloc((n ? n : 1) * sizeof *got);
    ck_assert_ptr_nonnull(got);
    g_gpu->download(g_gpu, got, dev, n * sizeof *got);
    gpu_ok("download");
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        diff = isnan(d) ? INFINITY : fmax(diff, d);
        scale = fmax(scale, fabs((double)ref[i]));
    }
    free(got);
    return scale > 0 ? diff / scale : diff;
}

static void expect_close(const real_t *dev, const real_t *ref, size_t n, double tol, const char *what) {
    double err = dev_err(dev, ref, n);
    printf("  %-40s err %.2e (tol %.0e)\n", what, err, tol);
    ck_assert_msg(err <= tol, "%s: CUDA differs from CPU by %.3g (tolerance %.1g)", what, err, tol);
}

START_TEST(alloc_zeroed_and_counted) {
    size_t before = cuda_mem_in_use(g_gpu), n = 1000003;
    real_t *d = g_gpu->alloc(g_gpu, n * sizeof *d);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq(cuda_mem_in_use(g_gpu), before + n * sizeof *d);
    ck_assert_uint_ge(cuda_mem_peak(g_gpu), cuda_mem_in_use(g_gpu));
    real_t *h = malloc(n * sizeof *h);
    ck_assert_ptr_nonnull(h);
    memset(h, 0xFF, n * sizeof *h);
    g_gpu->download(g_gpu, h, d, n * sizeof *h);
    gpu_ok("alloc + download");
    for (size_t i = 0; i < n; i++) ck_assert_msg(h[i] == 0, "alloc: element %zu is %g, not zero", i, (double)h[i]);
    g_gpu->free(g_gpu, d);
    ck_assert_uint_eq(cuda_mem_in_use(g_gpu), before);
    free(h);
}
END_TEST

START_TEST(upload_then_host_overwrite) {
    /* The caller reuses its buffer right after upload: the device must hold the old contents. */
    size_t n = 1 << 20;
    real_t *h = host_uniform(n, 11, -1, 1), *keep = malloc(n * sizeof *keep);
    ck_assert_ptr_nonnull(keep);
    memcpy(keep, h, n * sizeof *h);
    real_t *d = dev_from(h, n);
    for (size_t i = 0; i < n; i++) h[i] = -7;
    expect_close(d, keep, n, 0, "upload survives host overwrite");
    g_gpu->free(g_gpu, d);
    free(h);
    free(keep);
}
END_TEST

START_TEST(error_recorded_then_cleared) {
    int32_t targets[2] = {1, 999}; /* 999 is outside V = 5 */
    real_t logits[10] = {0};
    real_t *d = dev_from(logits, 10);
    int64_t nv = -1;
    gpu_ok("before");
    g_gpu->xent_fwd(g_gpu, d, d, targets, 2, 5, &nv);
    PeftcStatus st = g_gpu->status(g_gpu);
    ck_assert_int_eq(st, PEFTC_EINVAL);
    ck_assert_msg(strstr(peftc_err_msg(), "999") != NULL, "message should name the bad target: %s", peftc_err_msg());
    ck_assert_int_eq(g_gpu->status(g_gpu), PEFTC_OK); /* reported once, then cleared */
    ck_assert_int_eq(g_gpu->status(g_gpu), PEFTC_OK);
    g_gpu->free(g_gpu, d);
}
END_TEST

START_TEST(staged_keys_refilled_between_queued_ops) {
    /* More calls than staging buffers, the host key array rewritten before each, no sync between:
     * every mask must still match the CPU's for the keys of its own call. */
    enum { CALLS = 21, R = 37, C = 129 };
    size_t n = (size_t)R * C;
    real_t *x = host_uniform(n, 5, -1, 1), *ref = malloc(n * sizeof *ref);
    real_t *dx = dev_from(x, n), *dout[CALLS];
    uint8_t *mref = malloc(n), *mgot = malloc(n), *dmask[CALLS];
    uint64_t keys[R];
    ck_assert(ref && mref && mgot);
    for (int k = 0; k < CALLS; k++) {
        dout[k] = g_gpu->alloc(g_gpu, n * sizeof(real_t));
        dmask[k] = g_gpu->alloc(g_gpu, n);
        ck_assert(dout[k] && dmask[k]);
        for (int r = 0; r < R; r++) keys[r] = rng_key(rng_key(99, (uint64_t)k), (uint64_t)r);
        g_gpu->dropout_fwd(g_gpu, dout[k], dmask[k], dx, keys, R, C, (real_t)0.3);
    }
    gpu_ok("dropout_fwd x21");
    for (int k = 0; k < CALLS; k++) {
        for (int r = 0; r < R; r++) keys[r] = rng_key(rng_key(99, (uint64_t)k), (uint64_t)r);
        g_cpu->dropout_fwd(g_cpu, ref, mref, x, keys, R, C, (real_t)0.3);
        g_gpu->download(g_gpu, mgot, dmask[k], n);
        gpu_ok("download mask");
        ck_assert_msg(memcmp(mgot, mref, n) == 0, "dropout call %d: mask differs from the CPU's", k);
        ck_assert_msg(dev_err(dout[k], ref, n) == 0, "dropout call %d: output differs from the CPU's", k);
        g_gpu->free(g_gpu, dout[k]);
        g_gpu->free(g_gpu, dmask[k]);
    }
    g_gpu->free(g_gpu, dx);
    free(x);
    free(ref);
    free(mref);
    free(mgot);
}
END_TEST

START_TEST(staged_tokens_grow) {
    /* Growing token counts replace the staging buffers; each gather must use its own tokens. */
    const int V = 300, C = 40, sizes[3] = {3, 1500, 9000};
    real_t *wte = host_uniform((size_t)V * C, 8, -1, 1), *dwte = dev_from(wte, (size_t)V * C);
    for (int s = 0; s < 3; s++) {
        int BT = sizes[s];
        int32_t *tok = malloc((size_t)BT * sizeof *tok);
        real_t *ref = malloc((size_t)BT * C * sizeof *ref), *dout = g_gpu->alloc(g_gpu, (size_t)BT * C * sizeof *dout);
        ck_assert(tok && ref && dout);
        for (int i = 0; i < BT; i++) tok[i] = (int32_t)(rng_u64(40 + (uint64_t)s, (uint64_t)i) % V);
        g_gpu->embedding_fwd(g_gpu, dout, tok, dwte, BT, C);
        g_cpu->embedding_fwd(g_cpu, ref, tok, wte, BT, C);
        char what[64];
        snprintf(what, sizeof what, "embedding_fwd BT=%d", BT);
        expect_close(dout, ref, (size_t)BT * C, 0, what);
        g_gpu->free(g_gpu, dout);
        free(tok);
        free(ref);
    }
    g_gpu->free(g_gpu, dwte);
    free(wte);
}
END_TEST

START_TEST(matmul_k0) {
    /* C = beta C with no products; beta = 0 must clear even a NaN. */
    const int M = 5, N = 7;
    const real_t betas[3] = {0, 0.5f, 1};
    for (int b = 0; b < 3; b++) {
        real_t *c = host_uniform((size_t)M * N, 3, -1, 1);
        c[4] = NAN;
        real_t *dc = dev_from(c, (size_t)M * N), dummy = 0;
        if (betas[b] == 0) {
            for (int i = 0; i < M * N; i++) c[i] = 0;
        } else {
            c[4] = 0; /* NaN * beta is NaN on both sides: compare the rest */
            g_gpu->upload(g_gpu, dc, c, (size_t)M * N * sizeof *c);
            for (int i = 0; i < M * N; i++) c[i] *= betas[b];
        }
        g_gpu->matmul(g_gpu, dc, &dummy, &dummy, M, N, 0, 0, 0, 1, betas[b]);
        gpu_ok("matmul K=0");
        char what[64];
        snprintf(what, sizeof what, "matmul K=0 beta %g", (double)betas[b]);
        expect_close(dc, c, (size_t)M * N, 0, what);
        g_gpu->free(g_gpu, dc);
        free(c);
    }
}
END_TEST

START_TEST(xent_vocab_in_place) {
    /* LLaMA-3-sized rows, probs overwriting logits, one ignored row; then the aliased backward. */
    const int BT = 3, V = 128256;
    size_t n = (size_t)BT * V;
    int32_t targets[3] = {17, PEFTC_IGNORE_INDEX, V - 1};
    real_t *ref = host_uniform(n, 21, -12, 12), *d = dev_from(ref, n);
    int64_t nv_cpu = 0, nv_gpu = 0;
    double l_cpu = g_cpu->xent_fwd(g_cpu, ref, ref, targets, BT, V, &nv_cpu);
    double l_gpu = g_gpu->xent_fwd(g_gpu, d, d, targets, BT, V, &nv_gpu);
    gpu_ok("xent_fwd");
    ck_assert_int_eq(nv_gpu, 2);
    ck_assert_int_eq(nv_gpu, nv_cpu);
    double rel = fabs(l_gpu - l_cpu) / fabs(l_cpu);
    printf("  %-40s err %.2e (tol 1e-06)\n", "xent_fwd loss V=128256", rel);
    ck_assert_msg(rel <= 1e-6, "xent loss: CUDA %.9g, CPU %.9g", l_gpu, l_cpu);
    expect_close(d, ref, n, 1e-5, "xent_fwd probs in place");
    g_cpu->xent_bwd(g_cpu, ref, ref, targets, BT, V, (real_t)0.25);
    g_gpu->xent_bwd(g_gpu, d, d, targets, BT, V, (real_t)0.25);
    gpu_ok("xent_bwd");
    expect_close(d, ref, n, 1e-5, "xent_bwd aliased (ignored row zeroed)");
    g_gpu->free(g_gpu, d);
    free(ref);
}
END_TEST

START_TEST(multi_block_reductions) {
    /* sumsq over many blocks; RMSNorm dw and bias db over many row chunks and a ragged column tile. */
    size_t n = 3000007;
    real_t *x = host_uniform(n, 31, -2, 2), *dx = dev_from(x, n);
    double s_cpu = g_cpu->sumsq(g_cpu, x, n), s_gpu = g_gpu->sumsq(g_gpu, dx, n);
    gpu_ok("sumsq");
    double rel = fabs(s_gpu - s_cpu) / s_cpu;
    printf("  %-40s err %.2e (tol 1e-12)\n", "sumsq n=3000007", rel);
    ck_assert_msg(rel <= 1e-12, "sumsq: CUDA %.17g, CPU %.17g", s_gpu, s_cpu);
    g_gpu->free(g_gpu, dx);
    free(x);

    const int BT = 1000, C = 77;
    size_t m = (size_t)BT * C;
    real_t *inp = host_uniform(m, 32, -1, 1), *w = host_uniform(C, 33, 0.5, 1.5), *g = host_uniform(m, 34, -1, 1);
    real_t *dw = host_uniform(C, 35, -1, 1), *out = malloc(m * sizeof *out), *rstd = malloc(BT * sizeof *rstd);
    ck_assert(out && rstd);
    real_t *d_inp = dev_from(inp, m), *d_w = dev_from(w, C), *d_g = dev_from(g, m), *d_dw = dev_from(dw, C);
    real_t *d_rstd = g_gpu->alloc(g_gpu, BT * sizeof *d_rstd);
    g_cpu->rmsnorm_fwd(g_cpu, out, rstd, inp, w, BT, C, (real_t)1e-5);
    g_gpu->rmsnorm_fwd(g_gpu, d_inp, d_rstd, d_inp, d_w, BT, C, (real_t)1e-5); /* in place: out aliases inp */
    expect_close(d_inp, out, m, 1e-6, "rmsnorm_fwd in place");
    expect_close(d_rstd, rstd, BT, 1e-6, "rmsnorm rstd");
    g_gpu->upload(g_gpu, d_inp, inp, m * sizeof *inp);
    g_cpu->rmsnorm_bwd(g_cpu, NULL, dw, g, inp, w, rstd, BT, C);
    g_gpu->rmsnorm_bwd(g_gpu, NULL, d_dw, d_g, d_inp, d_w, d_rstd, BT, C);
    expect_close(d_dw, dw, C, 1e-5, "rmsnorm dw 1000 rows");
    g_cpu->bias_bwd(g_cpu, dw, g, BT, C);
    g_gpu->bias_bwd(g_gpu, d_dw, d_g, BT, C);
    expect_close(d_dw, dw, C, 1e-5, "bias db 1000 rows (accumulated)");
    real_t *bufs[] = {d_inp, d_w, d_g, d_dw, d_rstd};
    for (int i = 0; i < 5; i++) g_gpu->free(g_gpu, bufs[i]);
    free(inp);
    free(w);
    free(g);
    free(dw);
    free(out);
    free(rstd);
}
END_TEST

static Suite *gpu_ops_core_suite(void) {
    Suite *s = suite_create("gpu_ops_core");
    TCase *tc = tcase_create("runtime_and_edges");
    tcase_add_test(tc, alloc_zeroed_and_counted);
    tcase_add_test(tc, upload_then_host_overwrite);
    tcase_add_test(tc, error_recorded_then_cleared);
    tcase_add_test(tc, staged_keys_refilled_between_queued_ops);
    tcase_add_test(tc, staged_tokens_grow);
    tcase_add_test(tc, matmul_k0);
    tcase_add_test(tc, xent_vocab_in_place);
    tcase_add_test(tc, multi_block_reductions);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    gpu_suite_open("gpu_ops_core", &g_gpu);
    g_cpu = backend_cpu();
    BackendNeed need = {.B = 1, .T = 64}; /* cross-entropy rows */
    gpu_reserve_both(g_cpu, g_gpu, &need);
    return gpu_suite_run(gpu_ops_core_suite());
}
