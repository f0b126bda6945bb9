// kernels/warp_reduce.cuh — warp-shuffle and block reductions shared by the reducing kernels
// (elementwise gradients, reduce, softmax). Device-inline only: safe to include from several
// kernels/<op>.cuh files.
#pragma once
#include <cuda_runtime.h>

namespace segkit::cuda_detail {

template <class T>
__device__ __forceinline__ T warp_sum(T value) {
  for (int offset = 16; offset > 0; offset >>= 1)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

__device__ __forceinline__ float warp_max(float value) {
  for (int offset = 16; offset > 0; offset >>= 1)
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
// `scratch` holds 32 values; the call ends with a barrier so scratch can be reused at once.
template <class T>
__device__ __forceinline__ T block_sum(T value, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  value = warp_sum(value);
  if (warps == 1) return value;
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < warps ? scratch[lane] : T(0);
  value = warp_sum(value);
  __syncthreads();
  return value;
}

__device__ __forceinline__ float block_max(float value, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  value = warp_max(value);
  if (warps == 1) return value;
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < warps ? scratch[lane] : -INFINITY;
  value = warp_max(value);
  __syncthreads();
  return value;
}

// Threads per block for a reduction over `count` terms: a warp for short rows, up to 256.
inline int reduction_threads(int64_t count) {
  return count <= 64 ? 32 : count <= 1024 ? 128 : 256;
}

}  // namespace segkit::cuda_detail
