// kernels/pyramid_sampling.cuh — CUDA path of ops/pyramid_sampling.hpp: one block per [H, W]
// plane. The geometry tables are built on the host (as on the CPU) and copied to the device
// workspace once per call. Forward: for each elementary row band, the threads sum columns
// (thread w reads column w of the band's rows: coalesced, x read once) into shared memory, then
// segments of those sums into the band's cells (double, shared); finally one thread per output
// position sums its cells. Backward: each elementary cell's gradient into shared memory, then
// every pixel of the plane adds its cell's value (coalesced, one pass over dx, no atomics).
// Same math:: functions and summation order as the CPU loops.
#pragma once
#include "cuda_context.cuh"
#include "launch.cuh"
#include "segkit/ops/pyramid_sampling.hpp"

namespace segkit::ops {
namespace cuda_kernels {

__global__ void pyramid_sampling_forward_kernel(const float* x, float* y,
                                                math::pyramid_geometry g) {
  SEGKIT_DYNAMIC_SHARED(double, pyramid_shared);
  double* cells = pyramid_shared;                                   // [rows * cols]
  float* colsum = reinterpret_cast<float*>(cells + g.rows * g.cols);  // [width]
  const int64_t plane = blockIdx.x;
  const float* in = x + plane * g.height * g.width;
  for (int64_t r = 0; r < g.rows; ++r) {
    for (int64_t w = threadIdx.x; w < g.width; w += blockDim.x) {
      float sum = 0.f;
      for (int64_t h = g.row_breaks[r]; h < g.row_breaks[r + 1]; ++h) sum += in[h * g.width + w];
      colsum[w] = sum;
    }
    __syncthreads();
    for (int64_t c = threadIdx.x; c < g.cols; c += blockDim.x)
      cells[r * g.cols + c] = math::pyramid_segment_sum(colsum, g.col_breaks[c], g.col_breaks[c + 1]);
    __syncthreads();
  }
  for (int64_t s = threadIdx.x; s < g.positions; s += blockDim.x)
    y[plane * g.positions + s] = math::pyramid_bin_mean(cells, g, s);
}

__global__ void pyramid_sampling_backward_kernel(const float* dy, float* dx,
                                                 math::pyramid_geometry g) {
  SEGKIT_DYNAMIC_SHARED(double, pyramid_shared);
  float* cell_grad = reinterpret_cast<float*>(pyramid_shared);  // [rows * cols]
  const int64_t plane = blockIdx.x;
  const float* dy_plane = dy + plane * g.positions;
  for (int64_t i = threadIdx.x; i < g.rows * g.cols; i += blockDim.x)
    cell_grad[i] = math::pyramid_cell_grad(dy_plane, g, i / g.cols, i % g.cols);
  __syncthreads();
  float* out = dx + plane * g.height * g.width;
  for (int64_t i = threadIdx.x; i < g.height * g.width; i += blockDim.x)
    out[i] += cell_grad[g.row_of[i / g.width] * g.cols + g.col_of[i % g.width]];
}

}  // namespace cuda_kernels

namespace detail {
// Builds the tables on the host, copies them into the device workspace and returns the device
// geometry; `shared_bytes` receives the kernel's dynamic shared memory (checked and enabled).
inline math::pyramid_geometry upload_pyramid_geometry(const pyramid_sampling_params& p,
                                                      const shape& x, int64_t positions,
                                                      workspace<cuda>* ws, bool backward,
                                                      const void* kernel, size_t& shared_bytes) {
  const int64_t elements = pyramid_geometry_elements(p, x[2], x[3], positions);
  auto* host = default_workspace<cpu>().reserve_elements<int64_t>(size_t(elements));
  const auto g = build_pyramid_geometry(p, x[2], x[3], positions, host);
  auto& scratch = ws ? *ws : cuda_detail::context().workspace();
  auto* device = scratch.reserve_elements<int64_t>(size_t(elements));
  // Pageable source: the call returns once the bytes are staged, so the host buffer is free.
  const cudaError_t status =
      cudaMemcpyAsync(device, host, size_t(elements) * sizeof(int64_t), cudaMemcpyHostToDevice,
                      cuda_detail::context().stream());
  require<cuda_error>(status == cudaSuccess, "pyramid_sampling: copying the bin tables failed: ",
                      cudaGetErrorString(status));
  shared_bytes = backward ? size_t(g.rows * g.cols) * sizeof(float)
                          : size_t(g.rows * g.cols) * sizeof(double) + size_t(g.width) * sizeof(float);
  int device_id = 0, limit = 0;
  cudaGetDevice(&device_id);
  cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_id);
  require<value_error>(shared_bytes <= size_t(limit), "pyramid_sampling: a plane of ", x[2], "x",
                       x[3], " with ", g.rows, "x", g.cols, " elementary cells needs ",
                       shared_bytes, " bytes of shared memory per block, more than the device's ",
                       limit);
  if (shared_bytes > 48 * 1024)
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared_bytes));
  return rebase(g, host, device);
}
}  // namespace detail

void pyramid_sampling_forward(const pyramid_sampling_params& params, const tensor<float, cuda>& x,
                              tensor<float, cuda>& y, workspace<cuda>* ws) {
  detail::check_pyramid_sampling("pyramid_sampling_forward", params, "input", x.shape(),
                                 "output", y.shape());
  add_macs(detail::pyramid_sampling_macs(params, x.shape()));
  const int64_t planes = x.size(0) * x.size(1);
  if (planes == 0) return;
  size_t shared = 0;
  const auto g = detail::upload_pyramid_geometry(
      params, x.shape(), y.size(2), ws, false,
      reinterpret_cast<const void*>(&cuda_kernels::pyramid_sampling_forward_kernel), shared);
  SEGKIT_LAUNCH(cuda_kernels::pyramid_sampling_forward_kernel, unsigned(planes),
                cuda_detail::threads_per_block, shared, cuda_detail::context().stream(),
                x.data(), y.data(), g);
}

void pyramid_sampling_backward(const pyramid_sampling_params& params,
                               const tensor<float, cuda>& dy, tensor<float, cuda>& dx,
                               workspace<cuda>* ws) {
  detail::check_pyramid_sampling("pyramid_sampling_backward", params, "input gradient dx",
                                 dx.shape(), "output gradient dy", dy.shape());
  const int64_t planes = dx.size(0) * dx.size(1);
  if (planes == 0) return;
  size_t shared = 0;
  const auto g = detail::upload_pyramid_geometry(
      params, dx.shape(), dy.size(2), ws, true,
      reinterpret_cast<const void*>(&cuda_kernels::pyramid_sampling_backward_kernel), shared);
  SEGKIT_LAUNCH(cuda_kernels::pyramid_sampling_backward_kernel, unsigned(planes),
                cuda_detail::threads_per_block, shared, cuda_detail::context().stream(),
                dy.data(), dx.data(), g);
}

}  // namespace segkit::ops
