// kernels/optimizer.cuh — CUDA path of train/optimizer.hpp: one fused grid-stride kernel per
// optimizer (one pass over p, g and the state), running the same math::sgd_element /
// math::adamw_element as the CPU loop. The flags are run-time arguments: they are uniform
// across the grid, so the branches cost nothing and only two kernels are instantiated.
#pragma once
#include "launch.cuh"
#include "segkit/train/optimizer.hpp"

namespace segkit::train {
namespace cuda_kernels {

__global__ void sgd_kernel(float* p, const float* g, float* buffer, int64_t count,
                           math::sgd_scalars s, bool nesterov, bool first_step) {
  const bool use_momentum = buffer != nullptr;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    float b = use_momentum ? buffer[i] : 0.f;
    float value = p[i];
    math::sgd_element(value, g[i], b, s, use_momentum, nesterov, first_step);
    p[i] = value;
    if (use_momentum) buffer[i] = b;
  }
}

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, float* v_max,
                             int64_t count, math::adamw_scalars s) {
  const bool amsgrad = v_max != nullptr;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    float value = p[i], first = m[i], second = v[i];
    float largest = amsgrad ? v_max[i] : 0.f;
    math::adamw_element(value, g[i], first, second, largest, s, amsgrad);
    p[i] = value;
    m[i] = first;
    v[i] = second;
    if (amsgrad) v_max[i] = largest;
  }
}

}  // namespace cuda_kernels

void sgd_update(const math::sgd_scalars& s, bool nesterov, bool first_step,
                tensor<float, cuda>& value, const tensor<float, cuda>& grad,
                tensor<float, cuda>* momentum_buffer) {
  detail::check_update_shapes("sgd_update", value, grad, "gradient");
  if (momentum_buffer)
    detail::check_update_shapes("sgd_update", value, *momentum_buffer, "momentum buffer");
  const int64_t count = value.numel();
  if (count == 0) return;
  SEGKIT_LAUNCH(cuda_kernels::sgd_kernel, cuda_detail::blocks_for(count),
                cuda_detail::threads_per_block, 0, nullptr, value.data(), grad.data(),
                momentum_buffer ? momentum_buffer->data() : nullptr, count, s, nesterov,
                first_step);
}

void adamw_update(const math::adamw_scalars& s, tensor<float, cuda>& value,
                  const tensor<float, cuda>& grad, tensor<float, cuda>& exp_avg,
                  tensor<float, cuda>& exp_avg_sq, tensor<float, cuda>* max_exp_avg_sq) {
  detail::check_update_shapes("adamw_update", value, grad, "gradient");
  detail::check_update_shapes("adamw_update", value, exp_avg, "exp_avg");
  detail::check_update_shapes("adamw_update", value, exp_avg_sq, "exp_avg_sq");
  if (max_exp_avg_sq)
    detail::check_update_shapes("adamw_update", value, *max_exp_avg_sq, "max_exp_avg_sq");
  const int64_t count = value.numel();
  if (count == 0) return;
  SEGKIT_LAUNCH(cuda_kernels::adamw_kernel, cuda_detail::blocks_for(count),
                cuda_detail::threads_per_block, 0, nullptr, value.data(), grad.data(),
                exp_avg.data(), exp_avg_sq.data(),
                max_exp_avg_sq ? max_exp_avg_sq->data() : nullptr, count, s);
}

}  // namespace segkit::train
