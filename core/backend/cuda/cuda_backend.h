/* The CUDA backend: the same Backend interface on one GPU, with cuBLAS for the matrix products and
 * our kernels for everything else. Built when CMake finds nvcc (PEFTC_WITH_CUDA). fp32 storage and
 * fp32 accumulation for now; cuBLAS may use TF32 tensor cores when PEFTC_CUDA_TF32=1 is set.
 *
 * Errors: a failing CUDA or cuBLAS call is recorded (file:line, the call and CUDA's message) and
 * reported by backend_cuda_status(); the vtable's void ops cannot return it, so callers check after
 * each step (the trainer does). */
#ifndef PEFTC_CUDA_BACKEND_H
#define PEFTC_CUDA_BACKEND_H

#include "core/backend/backend.h"
#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of visible GPUs (0 when there is no driver or no device: never an error). */
int cuda_device_count(void);

/* Selects device `local_rank % count`, creates the stream and the cuBLAS handle, and returns the
 * backend. EINVAL naming the cause when no GPU is usable. */
PeftcStatus backend_cuda_open(const Backend **out, int local_rank);
void backend_cuda_close(void);

/* OK, or the first CUDA/cuBLAS failure since the last call (then cleared). Synchronises the stream. */
PeftcStatus backend_cuda_status(void);

/* The backend's stream (a cudaStream_t), for NCCL to queue its all-reduce behind the kernels. */
void *backend_cuda_stream(void);

/* Bytes of device memory allocated now and at the peak (for benchmarks). */
size_t cuda_mem_in_use(void);
size_t cuda_mem_peak(void);

#ifdef __cplusplus
}
#endif

#endif
