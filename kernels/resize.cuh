// kernels/resize.cuh — CUDA path of ops/resize.hpp: one thread per output element (grid-stride)
// running the same math::nearest_source / math::linear_source as the CPU loop. Backward
// scatters into dx with atomicAdd (as PyTorch's CUDA upsampling does); the order of the adds,
// and so the last bits of dx, may vary between runs.
#pragma once
#include "launch.cuh"
#include "segkit/ops/resize.hpp"

namespace segkit::ops {
namespace cuda_kernels {

__global__ void resize_forward_kernel(const float* in, float* out, detail::resize_geometry g,
                                      bool nearest, bool corners) {
  const int64_t count = g.planes * g.out_h * g.out_w;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ox = i % g.out_w, oy = (i / g.out_w) % g.out_h, plane = i / (g.out_w * g.out_h);
    const float* src = in + plane * g.in_h * g.in_w;
    if (nearest) {
      out[i] = src[math::nearest_source(oy, g.in_h, g.out_h) * g.in_w +
                   math::nearest_source(ox, g.in_w, g.out_w)];
    } else {
      const auto ty = math::linear_source(oy, g.in_h, g.out_h, g.scale_h, corners);
      const auto tx = math::linear_source(ox, g.in_w, g.out_w, g.scale_w, corners);
      out[i] = math::bilinear_sample(src, g.in_w, ty, tx);
    }
  }
}

__global__ void resize_backward_kernel(const float* grad_out, float* grad_in,
                                       detail::resize_geometry g, bool nearest, bool corners) {
  const int64_t count = g.planes * g.out_h * g.out_w;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ox = i % g.out_w, oy = (i / g.out_w) % g.out_h, plane = i / (g.out_w * g.out_h);
    float* dst = grad_in + plane * g.in_h * g.in_w;
    const float value = grad_out[i];
    if (nearest) {
      atomicAdd(dst + math::nearest_source(oy, g.in_h, g.out_h) * g.in_w +
                    math::nearest_source(ox, g.in_w, g.out_w),
                value);
    } else {
      const auto ty = math::linear_source(oy, g.in_h, g.out_h, g.scale_h, corners);
      const auto tx = math::linear_source(ox, g.in_w, g.out_w, g.scale_w, corners);
      float* row0 = dst + ty.i0 * g.in_w;
      float* row1 = dst + ty.i1 * g.in_w;
      const float top = ty.w0 * value, bottom = ty.w1 * value;
      atomicAdd(row0 + tx.i0, tx.w0 * top);
      atomicAdd(row0 + tx.i1, tx.w1 * top);
      atomicAdd(row1 + tx.i0, tx.w0 * bottom);
      atomicAdd(row1 + tx.i1, tx.w1 * bottom);
    }
  }
}

}  // namespace cuda_kernels

void resize_forward(const resize_params& params, const tensor<float, cuda>& x,
                    tensor<float, cuda>& y) {
  detail::check_resize("resize_forward", params, "input", x.shape(), "output", y.shape());
  const auto g = detail::make_resize_geometry(params, x.shape(), y.shape());
  const int64_t count = y.numel();
  if (count == 0) return;
  SEGKIT_LAUNCH(cuda_kernels::resize_forward_kernel, cuda_detail::blocks_for(count),
                cuda_detail::threads_per_block, 0, nullptr, x.data(), y.data(), g,
                params.mode == resize_mode::nearest, params.align_corners);
}

void resize_backward(const resize_params& params, const tensor<float, cuda>& dy,
                     tensor<float, cuda>& dx) {
  detail::check_resize("resize_backward", params, "input gradient", dx.shape(), "output gradient",
                       dy.shape());
  const auto g = detail::make_resize_geometry(params, dx.shape(), dy.shape());
  const int64_t count = dy.numel();
  if (count == 0) return;
  SEGKIT_LAUNCH(cuda_kernels::resize_backward_kernel, cuda_detail::blocks_for(count),
                cuda_detail::threads_per_block, 0, nullptr, dy.data(), dx.data(), g,
                params.mode == resize_mode::nearest, params.align_corners);
}

}  // namespace segkit::ops
