/* PEFTC_HD marks the inline functions that host code and CUDA kernels share (core/base/ggml_blocks.h,
 * core/base/nf4_blocks.h): under nvcc they compile for both sides, elsewhere they are plain C. */
#ifndef PEFTC_HD_H
#define PEFTC_HD_H

#ifdef __CUDACC__
#define PEFTC_HD __host__ __device__
#else
#define PEFTC_HD
#endif

#endif
