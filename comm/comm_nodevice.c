/* comm_use_device in builds (or libraries) without the CUDA backend: a clear error. comm_nccl.c
 * provides the real one where PEFTC_WITH_CUDA is defined. */
#include "comm/comm.h"

#ifndef PEFTC_WITH_CUDA
PeftcStatus comm_use_device(Comm *c, int device_local_rank, void *cuda_stream) {
    (void)c;
    (void)cuda_stream;
    return PEFTC_ERR(PEFTC_EINVAL, "comm_use_device(local rank %d): this build has no CUDA backend (rebuild with "
                                   "nvcc available and PEFTC_WITH_CUDA=ON or AUTO)", device_local_rank);
}
#else
typedef int comm_nodevice_unused; /* an empty translation unit is not ISO C */
#endif
