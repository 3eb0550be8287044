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

/* Sizes the scratch of both instances for `need`: the CPU reference refuses an op beyond its reserve,
 * and the CUDA instance is held to the same contract. Exits on failure (called outside tests too). */
static inline void gpu_reserve_both(const Backend *cpu, const Backend *gpu, const BackendNeed *need) {
    const Backend *be[2] = {cpu, gpu};
    for (int i = 0; i < 2; i++)
        if (be[i]->reserve(be[i], need) != PEFTC_OK) {
            fprintf(stderr, "%s reserve: %s\n", be[i]->name, peftc_err_msg());
            exit(EXIT_FAILURE);
        }
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
