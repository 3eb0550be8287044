/* Shared by the GPU suites: skip without a GPU, make a CUDA instance, run in-process (a CUDA context
 * does not survive Check's fork). */
#ifndef PEFTC_GPU_TESTUTIL_H
#define PEFTC_GPU_TESTUTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/backend/cuda/cuda_backend.h"

/* The suite's instance, freed by gpu_suite_run(). */
static Backend *gpu_suite_backend;

/* Exits 0 with a SKIP line (CTest's skip pattern) when no GPU is visible; otherwise creates an
 * instance on GPU 0 into *gpu. */
static inline void gpu_suite_open(const char *name, const Backend **gpu) {
    if (cuda_device_count() == 0) {
        printf("SKIP: no GPU visible (cuda_device_count() == 0): %s not run\n", name);
        exit(EXIT_SUCCESS);
    }
    if (backend_cuda_create(0, &gpu_suite_backend) != PEFTC_OK) {
        fprintf(stderr, "backend_cuda_create: %s\n", peftc_err_msg());
        exit(EXIT_FAILURE);
    }
    *gpu = gpu_suite_backend;
}

static inline int gpu_suite_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    backend_free(gpu_suite_backend);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
