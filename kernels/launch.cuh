// kernels/launch.cuh — the one way segkit launches a CUDA kernel: every launch is followed by
// cudaGetLastError, so a bad configuration fails at its launch site with the kernel's name.
// Also: grid sizing for 1-D element loops and the cuBLAS/cuDNN status checks.
#pragma once
#include <cstdint>
#include <string>

#include <cuda_runtime.h>

#include "segkit/tensor/device.hpp"
#include "segkit/tensor/error.hpp"

namespace segkit::cuda_detail {

constexpr int threads_per_block = 256;

// Enough blocks to cover `count` elements with a grid-stride loop, capped so huge tensors
// reuse blocks instead of launching millions.
inline unsigned blocks_for(int64_t count, int threads = threads_per_block) {
  const int64_t blocks = (count + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

inline void check_launch(const char* kernel_name) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    throw cuda_error(std::string("launch of ") + kernel_name + " failed: " +
                     cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
}

}  // namespace segkit::cuda_detail

// tests/cuda_emulation/emulated_cuda.hpp defines these two to run kernels on the CPU.
#ifndef SEGKIT_CUDA_EMULATION
// Launches `kernel<<<grid, block, shared_bytes, stream>>>(args...)` and checks it.
#define SEGKIT_LAUNCH(kernel, grid, block, shared_bytes, stream, ...)            \
  do {                                                                           \
    kernel<<<(grid), (block), (shared_bytes), (stream)>>>(__VA_ARGS__);          \
    ::segkit::cuda_detail::check_launch(#kernel);                                \
  } while (0)

// The launch's dynamic shared memory as `type* name` (128-byte aligned).
#define SEGKIT_DYNAMIC_SHARED(type, name) extern __shared__ __align__(128) type name[]
#endif
