/* Shared by the GPU suites: skip without a GPU, open the CUDA backend, run in-process (a CUDA context
 * does not survive Check's fork). */
#ifndef PEFTC_GPU_TESTUTIL_H
#define PEFTC_GPU_TESTUTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/backend/cuda/cuda_backend.h"

/* Exits 0 with a SKIP line (CTest's skip pattern) when no GPU is visible; otherwise opens the
 * backend into *gpu. */
static inline void gpu_suite_open(const char *name, const Backend **gpu) {
    if (cuda_device_count() == 0) {
        printf("SKIP: no GPU visible (cuda_device_count() == 0): %s not run\n", name);
        exit(EXIT_SUCCESS);
    }
    if (backend_cuda_open(gpu, 0) != PEFTC_OK) {
        fprintf(stderr, "backend_cuda_open: %s\n", peftc_err_msg());
        exit(EXIT_FAILURE);
    }
}

static inline int gpu_suite_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    backend_cuda_close();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
