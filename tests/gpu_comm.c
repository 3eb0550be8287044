/* comm_use_device on one rank: NCCL bootstraps over the Comm, comm_allreduce then takes device memory
 * (a world of one leaves it unchanged for every op), counts its bytes, and refuses host buffers.
 * Needs a GPU: without one it prints "SKIP: no GPU" and exits 0. */
#ifndef PEFTC_WITH_CUDA
#error "gpu_comm.c tests NCCL on the CUDA backend; tests/CMakeLists.txt builds it only when PEFTC_CUDA is ON"
#endif

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "core/backend/backend.h"
#include "core/backend/cuda/cuda_backend.h"
#include "core/base/status.h"
#include "tests/testutil.h"

static const Backend *g_gpu;
static Comm *g_world; /* held for the whole run so MPI stays up while tests make and free their own */

/* A Comm of its own per test, already reducing device memory. cuda_backend.h does not expose the
 * backend's stream, so NCCL gets NULL: the legacy default stream, after a device-wide synchronise. */
static Comm *device_comm(void) {
    Comm *c = NULL;
    ck_assert_int_eq(comm_init_self(&c), PEFTC_OK);
    PeftcStatus st = comm_use_device(c, 0, NULL);
    ck_assert_msg(st == PEFTC_OK, "comm_use_device: %s", peftc_err_msg());
    return c;
}

/* n values on the device and their host copy. */
static real_t *device_values(real_t *host, size_t n, uint64_t key) {
    tu_fill_uniform(host, n, key, -1, 1);
    real_t *dev = g_gpu->alloc(g_gpu, n * sizeof *dev);
    ck_assert_ptr_nonnull(dev);
    g_gpu->upload(g_gpu, dev, host, n * sizeof *dev);
    ck_assert_int_eq(g_gpu->status(g_gpu), PEFTC_OK); /* also waits for the upload */
    return dev;
}

/* Over one rank SUM, MEAN and MAX are identities: the buffer must come back bit for bit, and every
 * call counts its bytes like the host path does. */
START_TEST(allreduce_one_rank_identity) {
    const size_t n = ((size_t)1 << 20) + 3;
    Comm *c = device_comm();
    real_t *host = malloc(n * sizeof *host), *back = malloc(n * sizeof *back);
    ck_assert(host && back);
    real_t *dev = device_values(host, n, 7);
    const CommOp ops[] = {COMM_SUM, COMM_MEAN, COMM_MAX};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        uint64_t before = comm_bytes_reduced(c);
        PeftcStatus st = comm_allreduce(c, dev, n, ops[i]);
        ck_assert_msg(st == PEFTC_OK, "comm_allreduce op %d on device memory: %s", (int)ops[i], peftc_err_msg());
        ck_assert_uint_eq(comm_bytes_reduced(c) - before, n * sizeof(real_t));
        g_gpu->download(g_gpu, back, dev, n * sizeof *back);
        ck_assert_int_eq(g_gpu->status(g_gpu), PEFTC_OK);
        ck_assert_msg(memcmp(back, host, n * sizeof *back) == 0, "op %d changed a one-rank buffer", (int)ops[i]);
    }
    ck_assert_int_eq(comm_allreduce(c, dev, 0, COMM_SUM), PEFTC_OK);
    g_gpu->free(g_gpu, dev);
    free(host);
    free(back);
    comm_free(c);
}
END_TEST

/* Proves the device path is the one in use: a host buffer is now refused with a message naming it,
 * while the f64 statistics reduction stays on the host. */
START_TEST(device_comm_refuses_host_memory) {
    Comm *c = device_comm();
    real_t host[16] = {0};
    ck_assert_int_eq(comm_allreduce(c, host, 16, COMM_SUM), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "not device memory"));
    ck_assert_uint_eq(comm_bytes_reduced(c), 0);
    double stats[2] = {3.5, 4};
    ck_assert_int_eq(comm_allreduce_f64(c, stats, 2, COMM_SUM), PEFTC_OK);
    ck_assert(stats[0] == 3.5 && stats[1] == 4);
    comm_free(c);
}
END_TEST

START_TEST(use_device_errors) {
    Comm *c = NULL;
    ck_assert_int_eq(comm_init_self(&c), PEFTC_OK);
    ck_assert_int_eq(comm_use_device(c, -1, NULL), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "device_local_rank"));
    /* A failed attempt leaves the Comm usable; a second success is a state error. */
    ck_assert_int_eq(comm_use_device(c, 0, NULL), PEFTC_OK);
    ck_assert_int_eq(comm_use_device(c, 0, NULL), PEFTC_ESTATE);
    ck_assert_int_eq(comm_use_device(NULL, 0, NULL), PEFTC_EINVAL);
    comm_free(c);
}
END_TEST

static Suite *gpu_comm_suite(void) {
    Suite *s = suite_create("gpu_comm");
    TCase *tc = tcase_create("nccl_one_rank");
    tcase_add_test(tc, allreduce_one_rank_identity);
    tcase_add_test(tc, device_comm_refuses_host_memory);
    tcase_add_test(tc, use_device_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) {
    if (cuda_device_count() == 0) {
        printf("SKIP: no GPU visible (cuda_device_count() == 0): gpu_comm not run\n");
        return EXIT_SUCCESS;
    }
    Backend *gpu = NULL;
    if (comm_init(&g_world, &argc, &argv) != PEFTC_OK || backend_cuda_create(0, &gpu) != PEFTC_OK) {
        fprintf(stderr, "setup: %s\n", peftc_err_msg());
        return EXIT_FAILURE;
    }
    g_gpu = gpu;
    SRunner *sr = srunner_create(gpu_comm_suite());
    srunner_set_fork_status(sr, CK_NOFORK); /* a CUDA context does not survive fork */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    comm_free(g_world); /* NCCL first: it may still use the device */
    backend_free(gpu);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
