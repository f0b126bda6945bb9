// kernels/concat.cuh — CUDA path of ops/concat.hpp: the one primitive, copying (or adding)
// `rows` rows of `width` elements between two pitches, as a grid-stride kernel.
#pragma once
#include "launch.cuh"
#include "segkit/ops/concat.hpp"

namespace segkit::ops {
namespace cuda_kernels {

template <bool Accumulate>
__global__ void copy_rows_kernel(const float* src, int64_t src_pitch, float* dst,
                                 int64_t dst_pitch, int64_t width, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / width, j = i % width;
    if (Accumulate)
      dst[r * dst_pitch + j] += src[r * src_pitch + j];
    else
      dst[r * dst_pitch + j] = src[r * src_pitch + j];
  }
}

}  // namespace cuda_kernels

namespace detail {

void run_copy_rows(cuda, const float* src, int64_t src_pitch, float* dst, int64_t dst_pitch,
                   int64_t width, int64_t rows, bool accumulate) {
  const int64_t count = width * rows;
  if (count == 0) return;
  if (accumulate)
    SEGKIT_LAUNCH(cuda_kernels::copy_rows_kernel<true>, cuda_detail::blocks_for(count),
                  cuda_detail::threads_per_block, 0, nullptr, src, src_pitch, dst, dst_pitch,
                  width, count);
  else
    SEGKIT_LAUNCH(cuda_kernels::copy_rows_kernel<false>, cuda_detail::blocks_for(count),
                  cuda_detail::threads_per_block, 0, nullptr, src, src_pitch, dst, dst_pitch,
                  width, count);
}

}  // namespace detail
}  // namespace segkit::ops
