/* The backend interface itself: the op list and the tables generated from it, backend_require(), and
 * CPU instances made and freed independently of each other and of the shared one. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/method.h"
#include "core/backend/backend.h"
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

/* What a run asks for: the CSR ops only with a sparse part, and on a backend without them (as the CUDA
 * one is) one message naming all four, as session_open reports it. */
START_TEST(method_ops_need_csr_only_when_sparse) {
    BackendOp ops[BACKEND_OP_COUNT];
    const struct {
        MethodKind kind;
        double density;
        int sparse;
    } cases[] = {{METHOD_LORA, 0, 0}, {METHOD_FULL, 0, 0}, {METHOD_ROSA, 0, 0}, {METHOD_ROSA, 0.1, 1},
                 {METHOD_SPA, 0.05, 1}, {METHOD_LORA, 0.1, 0}};
    Backend no_csr = *backend_cpu();
    no_csr.name = "cuda";
    no_csr.csr_add_dense = NULL;
    no_csr.csr_spmm = NULL;
    no_csr.csr_spmm_t = NULL;
    no_csr.csr_sddmm = NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        MethodConfig mc = {.kind = cases[i].kind, .rosa_density = cases[i].density};
        int n = method_backend_ops(&mc, ops);
        ck_assert_int_eq(n, BACKEND_OP_COUNT - (cases[i].sparse ? 0 : ROSA_SPARSE_OPS));
        PeftcStatus st = backend_require(&no_csr, ops, n, "train.device=cuda", "method rosa");
        ck_assert_int_eq(st, cases[i].sparse ? PEFTC_EINVAL : PEFTC_OK);
    }
    MethodConfig rosa = {.kind = METHOD_ROSA, .rosa_density = 0.1};
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
    return s;
}

int main(void) { return tu_run_suite(backend_suite()); }
