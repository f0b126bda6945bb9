// kernels/activation.cuh — CUDA path of ops/activation.hpp: one grid-stride kernel per
// activation kind, running the same math::activate / math::activation_slope as the CPU loop.
#pragma once
#include "launch.cuh"
#include "segkit/ops/activation.hpp"

namespace segkit::ops {
namespace cuda_kernels {

template <activation Kind>
__global__ void activation_forward_kernel(const float* in, float* out, int64_t count,
                                          float slope) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = math::activate<Kind>(in[i], slope);
}

template <activation Kind>
__global__ void activation_backward_kernel(const float* in, const float* out,
                                           const float* grad_out, float* grad_in,
                                           int64_t count, float slope) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    grad_in[i] += grad_out[i] * math::activation_slope<Kind>(in[i], out[i], slope);
}

}  // namespace cuda_kernels

void activation_forward(const activation_params& params, const tensor<float, cuda>& x,
                               tensor<float, cuda>& y) {
  detail::check_activation_shapes("activation_forward", x, y);
  const float* in = x.data();
  float* out = y.data();
  const int64_t count = x.numel();
  const float slope = params.negative_slope;
  detail::dispatch_activation(params.kind, [&](auto kind) {
    SEGKIT_LAUNCH(cuda_kernels::activation_forward_kernel<decltype(kind)::value>,
                  cuda_detail::blocks_for(count), cuda_detail::threads_per_block, 0, nullptr, in,
                  out, count, slope);
  });
}

void activation_backward(const activation_params& params, const tensor<float, cuda>& x,
                                const tensor<float, cuda>& y, const tensor<float, cuda>& dy,
                                tensor<float, cuda>& dx) {
  detail::check_activation_shapes("activation_backward", x, y);
  require_same_shape("activation_backward", "input", x.shape(), "output gradient", dy.shape());
  require_same_shape("activation_backward", "input", x.shape(), "input gradient", dx.shape());
  const float *in = x.data(), *out = y.data(), *grad_out = dy.data();
  float* grad_in = dx.data();
  const int64_t count = x.numel();
  const float slope = params.negative_slope;
  detail::dispatch_activation(params.kind, [&](auto kind) {
    SEGKIT_LAUNCH(cuda_kernels::activation_backward_kernel<decltype(kind)::value>,
                  cuda_detail::blocks_for(count), cuda_detail::threads_per_block, 0, nullptr, in,
                  out, grad_out, grad_in, count, slope);
  });
}

}  // namespace segkit::ops
