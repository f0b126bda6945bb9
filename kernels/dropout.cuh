// kernels/dropout.cuh — CUDA path of ops/dropout.hpp: grid-stride kernels running the same
// counter-based math::dropout_keep as the CPU, so both give the same mask for a seed.
#pragma once
#include "launch.cuh"
#include "segkit/ops/dropout.hpp"

namespace segkit::ops {
namespace cuda_kernels {

__global__ void dropout_forward_kernel(const float* in, float* out, uint8_t* keep, int64_t count,
                                       uint64_t seed, uint64_t threshold, float factor,
                                       bool training) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const uint8_t k = training ? math::dropout_keep(seed, uint64_t(i), threshold) : 1;
    keep[i] = k;
    out[i] = k ? in[i] * factor : 0.f;
  }
}

__global__ void dropout_backward_kernel(const uint8_t* keep, const float* grad_out,
                                        float* grad_in, int64_t count, float factor) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    grad_in[i] += keep[i] ? grad_out[i] * factor : 0.f;
}

}  // namespace cuda_kernels

void dropout_forward(const dropout_params& params, const tensor<float, cuda>& x,
                     tensor<float, cuda>& y, tensor<uint8_t, cuda>& mask) {
  detail::check_dropout("dropout_forward", params);
  require_same_shape("dropout_forward", "input", x.shape(), "output", y.shape());
  require_same_shape("dropout_forward", "input", x.shape(), "mask", mask.shape());
  const int64_t count = x.numel();
  if (count == 0) return;
  SEGKIT_LAUNCH(cuda_kernels::dropout_forward_kernel, cuda_detail::blocks_for(count),
                cuda_detail::threads_per_block, 0, nullptr, x.data(), y.data(), mask.data(), count,
                params.seed, detail::dropout_threshold(params.p), detail::dropout_scale(params),
                params.training);
}

void dropout_backward(const dropout_params& params, const tensor<uint8_t, cuda>& mask,
                      const tensor<float, cuda>& dy, tensor<float, cuda>& dx) {
  detail::check_dropout("dropout_backward", params);
  require_same_shape("dropout_backward", "mask", mask.shape(), "output gradient", dy.shape());
  require_same_shape("dropout_backward", "output gradient", dy.shape(), "input gradient", dx.shape());
  const int64_t count = dy.numel();
  if (count == 0) return;
  SEGKIT_LAUNCH(cuda_kernels::dropout_backward_kernel, cuda_detail::blocks_for(count),
                cuda_detail::threads_per_block, 0, nullptr, mask.data(), dy.data(), dx.data(),
                count, detail::dropout_scale(params));
}

}  // namespace segkit::ops
