// segkit/tensor/config.hpp — portability macros shared by every header.
// Provides SEGKIT_HOST_DEVICE: `__host__ __device__` under nvcc, plain `inline` otherwise,
// so one definition of an op's per-element math serves the CPU loop and the CUDA kernel.
// Requires nothing; guarantees no other include.
#pragma once

#if defined(__CUDACC__)
#define SEGKIT_HOST_DEVICE __host__ __device__ inline
#else
#define SEGKIT_HOST_DEVICE inline
#endif

#define SEGKIT_VERSION_MAJOR 0
#define SEGKIT_VERSION_MINOR 1
#define SEGKIT_VERSION_PATCH 0
