/* The CUDA backend: the same Backend interface on one GPU per instance, with cuBLAS for the matrix
 * products and our kernels for everything else. Built when CMake finds nvcc (PEFTC_WITH_CUDA). fp32
 * storage and fp32 accumulation for now; cuBLAS may use TF32 tensor cores when PEFTC_CUDA_TF32=1 is set.
 * The CSR ops are not implemented (their table entries are NULL).
 *
 * Errors: a failing CUDA or cuBLAS call is recorded in the instance (file:line, the call and CUDA's
 * message) and reported by its status(); the table's void ops cannot return it, so callers check after
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

/* A new instance on GPU `device` (0 <= device < cuda_device_count()) with its own stream, cuBLAS
 * handle, scratch and error state; freed with backend_free(), after everything allocated from it.
 * EINVAL naming the cause when the GPU is not usable. */
PeftcStatus backend_cuda_create(int device, Backend **out);

/* The instance's stream (a cudaStream_t), for NCCL to queue its all-reduce behind the kernels. */
void *backend_cuda_stream(const Backend *be);

/* Bytes of device memory the instance has allocated now and at the peak (for benchmarks). */
size_t cuda_mem_in_use(const Backend *be);
size_t cuda_mem_peak(const Backend *be);

#ifdef __cplusplus
}
#endif

#endif
