/* The backend interface itself: the op list and the tables generated from it, backend_require(), CPU
 * instances made and freed independently of each other and of the shared one, and op scratch sized by
 * reserve(): a call beyond it writes nothing and is reported by status(). */
#include <check.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/method.h"
#include "core/backend/backend.h"
#include "tests/method_testutil.h"
#include "tests/testutil.h"

/* A backend of two ops, built with the same macros as the real ones: it has axpy and lacks matmul. */
#define PEFTC_LACKS_fake_matmul PEFTC_LACKING
PEFTC_BACKEND_PROTO(fake, void, axpy, (const Backend *be, real_t *y, const real_t *x, real_t alpha, size_t n))
PEFTC_BACKEND_PROTO(fake, void, matmul, (const Backend *be, real_t *C, const real_t *A, const real_t *B, int M, int N,
                                         int K, int transA, int transB, real_t alpha, real_t beta))

void fake_axpy(const Backend *be, real_t *y, const real_t *x, real_t alpha, size_t n) {
    (void)be, (void)y, (void)x, (void)alpha, (void)n;
}

/* Every entry of be's table is set. */
static void assert_all_ops(const Backend *be, const char *what) {
    for (int op = 0; op < BACKEND_OP_COUNT; op++)
        ck_assert_msg(backend_has(be, (BackendOp)op), "%s: op %s is NULL", what, backend_op_names[op]);
}

static int all_ops(BackendOp *ops) {
    for (int op = 0; op < BACKEND_OP_COUNT; op++) ops[op] = (BackendOp)op;
    return BACKEND_OP_COUNT;
}

START_TEST(op_names_unique) {
    for (int i = 0; i < BACKEND_OP_COUNT; i++) {
        ck_assert_ptr_nonnull(backend_op_names[i]);
        for (int j = 0; j < i; j++)
            ck_assert_msg(strcmp(backend_op_names[i], backend_op_names[j]) != 0, "op name %s twice",
                          backend_op_names[i]);
    }
    ck_assert_str_eq(backend_op_names[BACKEND_OP_matmul], "matmul");
    ck_assert_str_eq(backend_op_names[BACKEND_OP_csr_sddmm], "csr_sddmm");
}
END_TEST

START_TEST(cpu_has_every_op) {
    assert_all_ops(backend_cpu(), "backend_cpu()");
    ck_assert_str_eq(backend_cpu()->name, "cpu");
    ck_assert_int_eq(backend_cpu()->device, DEV_CPU);
    Backend *be = NULL;
    ck_assert_int_eq(backend_cpu_create(&be), PEFTC_OK);
    assert_all_ops(be, "backend_cpu_create()");
    BackendOp ops[BACKEND_OP_COUNT];
    ck_assert_int_eq(backend_require(be, ops, all_ops(ops), "test", "everything"), PEFTC_OK);
    backend_free(be);
}
END_TEST

START_TEST(generated_table_null_where_lacking) {
    void (*axpy)(const Backend *, real_t *, const real_t *, real_t, size_t) = PEFTC_BACKEND_IMPL(fake, axpy);
    ck_assert(axpy == fake_axpy);
    ck_assert(PEFTC_BACKEND_IMPL(fake, matmul) == NULL);
}
END_TEST

START_TEST(require_names_exactly_the_missing_ops) {
    Backend partial = *backend_cpu();
    partial.matmul = NULL;
    partial.csr_spmm = NULL;
    partial.csr_sddmm = NULL;
    BackendOp ops[BACKEND_OP_COUNT];
    int n = all_ops(ops);
    ck_assert_int_eq(backend_require(&partial, ops, n, "train.device=cpu", "method rosa"), PEFTC_EINVAL);
    ck_assert_str_eq(peftc_err_msg(), "train.device=cpu: the cpu backend lacks matmul, csr_spmm, csr_sddmm "
                                      "(needed by method rosa)");
    /* In the order asked, and without the optional parts. */
    const BackendOp asked[] = {BACKEND_OP_csr_sddmm, BACKEND_OP_axpy, BACKEND_OP_matmul};
    ck_assert_int_eq(backend_require(&partial, asked, 3, NULL, NULL), PEFTC_EINVAL);
    ck_assert_str_eq(peftc_err_msg(), "the cpu backend lacks csr_sddmm, matmul");
    /* Asking only for what it has is fine. */
    const BackendOp present[] = {BACKEND_OP_axpy, BACKEND_OP_csr_spmm_t, BACKEND_OP_status};
    ck_assert_int_eq(backend_require(&partial, present, 3, "x", "y"), PEFTC_OK);
    ck_assert_int_eq(backend_require(&partial, NULL, 0, "x", "y"), PEFTC_OK);
    ck_assert(!backend_has(&partial, BACKEND_OP_matmul));
    ck_assert(backend_has(&partial, BACKEND_OP_csr_spmm_t));
}
END_TEST

/* What a run asks for: the CSR ops only with a sparse part, and on a backend without them one message
 * naming all four, as session_open reports it. */
START_TEST(method_ops_need_csr_only_when_sparse) {
    BackendOp ops[BACKEND_OP_COUNT];
    const struct {
        const char *method;
        double density;
        int sparse;
    } cases[] = {{"lora", 0, 0}, {"full", 0, 0}, {"rosa", 0, 0}, {"rosa", 0.1, 1}, {"spa", 0.05, 1}, {"lora", 0.1, 0}};
    Backend no_csr = *backend_cpu();
    no_csr.name = "cuda";
    no_csr.csr_add_dense = NULL;
    no_csr.csr_spmm = NULL;
    no_csr.csr_spmm_t = NULL;
    no_csr.csr_sddmm = NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        MethodConfig mc = tu_method(cases[i].method);
        tu_rosa(&mc)->density = cases[i].density;
        int n = method_backend_ops(&mc, ops);
        ck_assert_int_eq(n, BACKEND_OP_COUNT - (cases[i].sparse ? 0 : ROSA_SPARSE_OPS));
        PeftcStatus st = backend_require(&no_csr, ops, n, "train.device=cuda", "method rosa");
        ck_assert_int_eq(st, cases[i].sparse ? PEFTC_EINVAL : PEFTC_OK);
    }
    MethodConfig rosa = tu_method("rosa");
    tu_rosa(&rosa)->density = 0.1;
    int n = method_backend_ops(&rosa, ops);
    ck_assert_int_eq(backend_require(&no_csr, ops, n, "train.device=cuda", "method rosa"), PEFTC_EINVAL);
    ck_assert_str_eq(peftc_err_msg(), "train.device=cuda: the cuda backend lacks csr_add_dense, csr_spmm, csr_spmm_t, "
                                      "csr_sddmm (needed by method rosa)");
}
END_TEST

START_TEST(two_cpu_instances) {
    Backend *a = NULL, *b = NULL;
    ck_assert_int_eq(backend_cpu_create(&a), PEFTC_OK);
    ck_assert_int_eq(backend_cpu_create(&b), PEFTC_OK);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_ne(a, b);
    ck_assert_ptr_ne(a, backend_cpu());
    /* Freeing one leaves the other working. */
    real_t *x = b->alloc(b, 4 * sizeof *x), *y = b->alloc(b, 4 * sizeof *y);
    backend_free(a);
    const real_t ones[4] = {1, 1, 1, 1};
    b->upload(b, x, ones, sizeof ones);
    b->axpy(b, y, x, 2, 4);
    real_t got[4];
    b->download(b, got, y, sizeof got);
    for (int i = 0; i < 4; i++) ck_assert(got[i] == 2);
    ck_assert_int_eq(b->status(b), PEFTC_OK);
    b->free(b, x);
    b->free(b, y);
    backend_free(b);
    /* NULL and the shared instance are no-ops. */
    backend_free(NULL);
    backend_free((Backend *)backend_cpu());
    ck_assert_int_eq(backend_cpu()->status(backend_cpu()), PEFTC_OK);
}
END_TEST

/* ---- scratch ---- */

static Backend *fresh(void) {
    Backend *be = NULL;
    ck_assert_int_eq(backend_cpu_create(&be), PEFTC_OK);
    return be;
}

static void reserve(const Backend *be, BackendNeed need) { ck_assert_int_eq(be->reserve(be, &need), PEFTC_OK); }

/* status() reports the failure once, naming the op and what to reserve, then is clear. */
static void assert_reported(const Backend *be, const char *op, const char *need) {
    ck_assert_int_eq(be->status(be), PEFTC_ESTATE);
    ck_assert_msg(strstr(peftc_err_msg(), op) && strstr(peftc_err_msg(), need), "message '%s' lacks '%s' or '%s'",
                  peftc_err_msg(), op, need);
    ck_assert_int_eq(be->status(be), PEFTC_OK);
}

START_TEST(xent_beyond_reserve_writes_nothing) {
    enum { BT = 3, V = 5 };
    Backend *be = fresh();
    real_t logits[BT * V], probs[BT * V], want[BT * V];
    tu_fill_uniform(logits, BT * V, 3, -2, 2);
    const int32_t targets[BT] = {1, PEFTC_IGNORE_INDEX, 4};
    for (int i = 0; i < BT * V; i++) probs[i] = -7;
    int64_t nv = -1;
    ck_assert(be->xent_fwd(be, probs, logits, targets, BT, V, &nv) == 0.0);
    ck_assert_int_eq(nv, 0);
    for (int i = 0; i < BT * V; i++) ck_assert(probs[i] == -7);
    assert_reported(be, "xent_fwd", "B * T >= 3");
    /* Reserved, the same bits as the shared instance. */
    reserve(be, (BackendNeed){.B = 1, .T = BT});
    reserve(backend_cpu(), (BackendNeed){.B = 1, .T = BT});
    int64_t nv_shared;
    double loss = be->xent_fwd(be, probs, logits, targets, BT, V, &nv);
    double loss_shared = backend_cpu()->xent_fwd(backend_cpu(), want, logits, targets, BT, V, &nv_shared);
    ck_assert(loss == loss_shared && nv == 2 && nv_shared == 2);
    ck_assert(memcmp(probs, want, sizeof probs) == 0);
    ck_assert_int_eq(be->status(be), PEFTC_OK);
    backend_free(be);
}
END_TEST

START_TEST(attention_and_decode_beyond_reserve) {
    enum { B = 1, T = 70, NH = 2, NKV = 1, HD = 4, S = 9 };
    Backend *be = fresh();
    size_t nq = (size_t)B * T * NH * HD, nkv = (size_t)B * T * NKV * HD;
    real_t *q = calloc(nq, sizeof *q), *k = calloc(nkv, sizeof *k), *v = calloc(nkv, sizeof *v);
    real_t *out = calloc(nq, sizeof *out), *dq = calloc(nq, sizeof *dq);
    real_t *att = calloc(be->attention_saved(be, B, T, NH), sizeof *att);
    tu_fill_uniform(q, nq, 1, -1, 1), tu_fill_uniform(k, nkv, 2, -1, 1), tu_fill_uniform(v, nkv, 3, -1, 1);
    be->attention_fwd(be, out, att, q, k, v, NULL, B, T, NH, NKV, HD); /* nothing reserved */
    for (size_t i = 0; i < nq; i++) ck_assert(out[i] == 0);
    assert_reported(be, "attention_fwd", "T");
    reserve(be, (BackendNeed){.B = B, .T = T - 1}); /* one position short of the backward's two tiles */
    be->attention_fwd(be, out, att, q, k, v, NULL, B, T, NH, NKV, HD);
    ck_assert_int_eq(be->status(be), PEFTC_OK);
    be->attention_bwd(be, dq, NULL, NULL, out, att, q, k, v, NULL, B, T, NH, NKV, HD);
    for (size_t i = 0; i < nq; i++) ck_assert(dq[i] == 0);
    assert_reported(be, "attention_bwd", "T");
    reserve(be, (BackendNeed){.B = B, .T = T});
    reserve(be, (BackendNeed){.B = B, .T = 2}); /* never shrinks */
    be->attention_bwd(be, dq, NULL, NULL, out, att, q, k, v, NULL, B, T, NH, NKV, HD);
    ck_assert_int_eq(be->status(be), PEFTC_OK);
    /* Decode over S cached positions needs S values per thread, which a fresh instance lacks. */
    Backend *dec = fresh();
    const int len[1] = {S};
    real_t o[NH * HD];
    for (int i = 0; i < NH * HD; i++) o[i] = 5;
    dec->attention_decode(dec, o, q, k, v, len, 1, S, NH, NKV, HD);
    for (int i = 0; i < NH * HD; i++) ck_assert(o[i] == 5);
    assert_reported(dec, "attention_decode", "S");
    reserve(dec, (BackendNeed){.S = S});
    dec->attention_decode(dec, o, q, k, v, len, 1, S, NH, NKV, HD);
    ck_assert_int_eq(dec->status(dec), PEFTC_OK);
    ck_assert(o[0] != 5);
    backend_free(dec);
    free(q), free(k), free(v), free(out), free(dq), free(att);
    backend_free(be);
}
END_TEST

START_TEST(sddmm_beyond_reserve_and_errors_per_instance) {
    /* S (2,3) with nonzeros at (0,1), (1,0), (1,2); dy (1,2), x (1,3). */
    const int32_t row_ptr[3] = {0, 1, 3}, col_idx[3] = {1, 0, 2};
    const real_t dy[2] = {2, 3}, x[3] = {5, 7, 11};
    real_t dv[3] = {0, 0, 0};
    Backend *a = fresh(), *b = fresh();
    reserve(b, (BackendNeed){.nnz = 3});
    a->csr_sddmm(a, dv, dy, x, row_ptr, col_idx, 1, 2, 3, 1);
    ck_assert(dv[0] == 0 && dv[1] == 0 && dv[2] == 0);
    ck_assert_int_eq(b->status(b), PEFTC_OK); /* a's failure is not b's */
    assert_reported(a, "csr_sddmm", "nnz >= 3");
    b->csr_sddmm(b, dv, dy, x, row_ptr, col_idx, 1, 2, 3, 1);
    ck_assert(dv[0] == 14 && dv[1] == 15 && dv[2] == 33);
    ck_assert_int_eq(b->status(b), PEFTC_OK);
    backend_free(a);
    backend_free(b);
}
END_TEST

START_TEST(scratch_ops_refused_inside_parallel_region) {
    Backend *be = fresh();
    reserve(be, (BackendNeed){.S = 4});
    const int len[1] = {4};
    real_t q[4] = {1, 2, 3, 4}, kv[16] = {0}, o[4] = {9, 9, 9, 9};
#pragma omp parallel num_threads(2)
    {
        if (omp_get_thread_num() == 0) be->attention_decode(be, o, q, kv, kv, len, 1, 4, 1, 1, 4);
    }
    if (omp_get_max_threads() > 1 || omp_get_num_procs() > 1) {
        ck_assert(o[0] == 9);
        assert_reported(be, "attention_decode", "parallel region");
    }
    backend_free(be);
}
END_TEST

/* The sum of squares in chunk order, as the op sums it: more chunks than one stack batch holds. */
START_TEST(sumsq_without_scratch) {
    size_t chunk = 65536, n = 300 * chunk + 12345;
    real_t *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    tu_fill_uniform(x, n, 17, -1, 1);
    double want = 0.0;
    for (size_t lo = 0; lo < n; lo += chunk) {
        double s = 0.0;
        for (size_t i = lo; i < lo + chunk && i < n; i++) s += (double)x[i] * (double)x[i];
        want += s;
    }
    Backend *be = fresh(); /* nothing reserved */
    ck_assert(be->sumsq(be, x, n) == want);
    ck_assert_int_eq(be->status(be), PEFTC_OK);
    backend_free(be);
    free(x);
}
END_TEST

static Suite *backend_suite(void) {
    Suite *s = suite_create("backend");
    TCase *tc = tcase_create("interface");
    tcase_add_test(tc, op_names_unique);
    tcase_add_test(tc, cpu_has_every_op);
    tcase_add_test(tc, generated_table_null_where_lacking);
    tcase_add_test(tc, require_names_exactly_the_missing_ops);
    tcase_add_test(tc, method_ops_need_csr_only_when_sparse);
    tcase_add_test(tc, two_cpu_instances);
    suite_add_tcase(s, tc);
    TCase *sc = tcase_create("scratch");
    tcase_add_test(sc, xent_beyond_reserve_writes_nothing);
    tcase_add_test(sc, attention_and_decode_beyond_reserve);
    tcase_add_test(sc, sddmm_beyond_reserve_and_errors_per_instance);
    tcase_add_test(sc, scratch_ops_refused_inside_parallel_region);
    tcase_add_test(sc, sumsq_without_scratch);
    suite_add_tcase(s, sc);
    return s;
}

int main(void) { return tu_run_suite(backend_suite()); }
