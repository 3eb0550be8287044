#include "cuda_backend.h"
#include <cuda_runtime.h>
extern "C" int cuda_device_count(void) { int n = 0; return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0; }
