// kernels/pooling.cuh — CUDA path of ops/pooling.hpp: hand-written kernels, one thread per
// output element (forward) or per input element (backward, a gather over the windows that
// cover it), running the same math:: functions as the CPU loops. Why not cuDNN pooling: its
// ceil_mode and clipped-divisor rules differ from PyTorch's, it has no adaptive pooling and
// no argmax; sharing the math keeps CPU and CUDA identical and backward free of atomics.
#pragma once
#include "launch.cuh"
#include "segkit/ops/pooling.hpp"

namespace segkit::ops {
namespace cuda_kernels {

// Grid-stride loop: i runs over the flat indices [0, count) of this kernel's elements.
#define SEGKIT_POOL_LOOP(count)                                                 \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (count); \
       i += int64_t(gridDim.x) * blockDim.x)

__global__ void max_pool2d_forward_kernel(const float* x, float* y, int32_t* argmax,
                                          math::pool_geometry g, int64_t count) {
  SEGKIT_POOL_LOOP(count) {
    const int64_t ow = i % g.out_w, oh = (i / g.out_w) % g.out_h, p = i / (g.out_w * g.out_h);
    int32_t at;
    y[i] = math::max_pool_window(x + p * g.in_h * g.in_w, g, oh, ow, at);
    if (argmax) argmax[i] = at;
  }
}

__global__ void max_pool2d_backward_kernel(const int32_t* argmax, const float* dy, float* dx,
                                           math::pool_geometry g, int64_t count) {
  SEGKIT_POOL_LOOP(count) {
    const int64_t w = i % g.in_w, h = (i / g.in_w) % g.in_h, p = i / (g.in_w * g.in_h);
    const int64_t out_plane = p * g.out_h * g.out_w;
    dx[i] += math::max_pool_input_grad(dy + out_plane, argmax + out_plane, g, h, w);
  }
}

__global__ void avg_pool2d_forward_kernel(const float* x, float* y, math::pool_geometry g,
                                          int64_t count) {
  SEGKIT_POOL_LOOP(count) {
    const int64_t ow = i % g.out_w, oh = (i / g.out_w) % g.out_h, p = i / (g.out_w * g.out_h);
    y[i] = math::avg_pool_window(x + p * g.in_h * g.in_w, g, oh, ow);
  }
}

__global__ void avg_pool2d_backward_kernel(const float* dy, float* dx, math::pool_geometry g,
                                           int64_t count) {
  SEGKIT_POOL_LOOP(count) {
    const int64_t w = i % g.in_w, h = (i / g.in_w) % g.in_h, p = i / (g.in_w * g.in_h);
    dx[i] += math::avg_pool_input_grad(dy + p * g.out_h * g.out_w, g, h, w);
  }
}

__global__ void adaptive_avg_pool2d_forward_kernel(const float* x, float* y, math::pool_geometry g,
                                                   int64_t count) {
  SEGKIT_POOL_LOOP(count) {
    const int64_t ow = i % g.out_w, oh = (i / g.out_w) % g.out_h, p = i / (g.out_w * g.out_h);
    y[i] = math::adaptive_avg_pool_bin(x + p * g.in_h * g.in_w, g, oh, ow);
  }
}

__global__ void adaptive_avg_pool2d_backward_kernel(const float* dy, float* dx,
                                                    math::pool_geometry g, int64_t count) {
  SEGKIT_POOL_LOOP(count) {
    const int64_t w = i % g.in_w, h = (i / g.in_w) % g.in_h, p = i / (g.in_w * g.in_h);
    dx[i] += math::adaptive_avg_pool_input_grad(dy + p * g.out_h * g.out_w, g, h, w);
  }
}

#undef SEGKIT_POOL_LOOP

}  // namespace cuda_kernels

#define SEGKIT_POOL_LAUNCH(kernel, count, ...)                                                 \
  do {                                                                                         \
    if ((count) > 0)                                                                           \
      SEGKIT_LAUNCH(kernel, cuda_detail::blocks_for(count), cuda_detail::threads_per_block, 0, \
                    nullptr, __VA_ARGS__, count);                                              \
  } while (0)

void max_pool2d_forward(const pool2d_params& params, const tensor<float, cuda>& x,
                        tensor<float, cuda>& y, tensor<int32_t, cuda>* argmax) {
  const auto g = detail::check_pool2d("max_pool2d_forward", params, x.shape(), y.shape(), "output");
  if (argmax)
    require_same_shape("max_pool2d_forward", "output", y.shape(), "argmax", argmax->shape());
  SEGKIT_POOL_LAUNCH(cuda_kernels::max_pool2d_forward_kernel, y.numel(), x.data(), y.data(),
                     argmax ? argmax->data() : nullptr, g);
}

void max_pool2d_backward(const pool2d_params& params, const tensor<int32_t, cuda>& argmax,
                         const tensor<float, cuda>& dy, tensor<float, cuda>& dx) {
  const auto g = detail::check_pool2d("max_pool2d_backward", params, dx.shape(), dy.shape(),
                                      "output gradient");
  require_same_shape("max_pool2d_backward", "output gradient", dy.shape(), "argmax",
                     argmax.shape());
  SEGKIT_POOL_LAUNCH(cuda_kernels::max_pool2d_backward_kernel, dx.numel(), argmax.data(), dy.data(),
                     dx.data(), g);
}

void avg_pool2d_forward(const pool2d_params& params, const tensor<float, cuda>& x,
                        tensor<float, cuda>& y) {
  const auto g = detail::check_pool2d("avg_pool2d_forward", params, x.shape(), y.shape(), "output");
  SEGKIT_POOL_LAUNCH(cuda_kernels::avg_pool2d_forward_kernel, y.numel(), x.data(), y.data(), g);
}

void avg_pool2d_backward(const pool2d_params& params, const tensor<float, cuda>& dy,
                         tensor<float, cuda>& dx) {
  const auto g = detail::check_pool2d("avg_pool2d_backward", params, dx.shape(), dy.shape(),
                                      "output gradient");
  SEGKIT_POOL_LAUNCH(cuda_kernels::avg_pool2d_backward_kernel, dx.numel(), dy.data(), dx.data(), g);
}

void adaptive_avg_pool2d_forward(const tensor<float, cuda>& x, tensor<float, cuda>& y) {
  const auto g =
      detail::check_adaptive("adaptive_avg_pool2d_forward", x.shape(), y.shape(), "output");
  SEGKIT_POOL_LAUNCH(cuda_kernels::adaptive_avg_pool2d_forward_kernel, y.numel(), x.data(),
                     y.data(), g);
}

void adaptive_avg_pool2d_backward(const tensor<float, cuda>& dy, tensor<float, cuda>& dx) {
  const auto g = detail::check_adaptive("adaptive_avg_pool2d_backward", dx.shape(), dy.shape(),
                                        "output gradient");
  SEGKIT_POOL_LAUNCH(cuda_kernels::adaptive_avg_pool2d_backward_kernel, dx.numel(), dy.data(),
                     dx.data(), g);
}

#undef SEGKIT_POOL_LAUNCH

}  // namespace segkit::ops
