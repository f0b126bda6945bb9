// kernels/ocr_gather.cuh — CUDA path of ops/ocr_gather.hpp. The op is a softmax over rows of
// H*W pixels and two or three batched GEMMs, so it is composed, not fused: one block per
// (image, region) row (block-wide max and sum by warp shuffles; the per-element math is
// math::softmax_value / softmax_gradient, as on the CPU), and the products through cuBLAS
// (gemm_strided_batched). Backward's G = dy F [N, K, H*W] comes from the device workspace.
#pragma once
#include "cuda_context.cuh"
#include "segkit/ops/ocr_gather.hpp"
#include "segkit/ops/softmax.hpp"
#include "warp_reduce.cuh"

namespace segkit::ops {
namespace cuda_kernels {

// dx += P * (G - sum(P G)) row by row.
__global__ void ocr_softmax_rows_backward_kernel(const float* p, const float* g, float* dx,
                                                 int64_t rows, int64_t n) {
  __shared__ float scratch[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * n;
    float total = 0.f;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x)
      total += math::softmax_gradient_term<false>(p[base + k], g[base + k]);
    total = cuda_detail::block_sum(total, scratch);
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x)
      dx[base + k] += math::softmax_gradient<false>(p[base + k], g[base + k], total);
  }
}

inline unsigned ocr_row_blocks(int64_t rows) {
  return static_cast<unsigned>(rows < 65535 * 8 ? rows : 65535 * 8);
}

}  // namespace cuda_kernels

void ocr_gather_forward(const tensor<float, cuda>& regions, const tensor<float, cuda>& features,
                        tensor<float, cuda>& probabilities, tensor<float, cuda>& y) {
  const auto d = detail::check_ocr_gather("ocr_gather_forward", regions, features, probabilities,
                                          "output y", y.shape());
  add_macs(d.batch * d.regions * d.channels * d.pixels);  // P.F (mac_counter.hpp)
  // Each region map's softmax over its pixels is the softmax op along the last axis of the
  // [N*K, H*W] view.
  const shape rows{d.batch * d.regions, d.pixels};
  tensor<float, cuda> probability_rows = probabilities.view(rows);
  softmax_forward({-1}, regions.view(rows), probability_rows);
  detail::ocr_gather_product<cuda>(d, probabilities.data(), features.data(), y.data());
}

void ocr_gather_backward(const tensor<float, cuda>& features,
                         const tensor<float, cuda>& probabilities, const tensor<float, cuda>& dy,
                         tensor<float, cuda>* d_regions, tensor<float, cuda>* d_features,
                         workspace<cuda>* ws) {
  const auto d = detail::check_ocr_gather_backward(features, probabilities, dy, d_regions,
                                                   d_features);
  const int64_t rows = d.batch * d.regions;
  float* g_data = nullptr;
  if (d_regions) {
    auto& scratch = ws ? *ws : cuda_detail::context().workspace();
    g_data = scratch.reserve_elements<float>(size_t(rows * d.pixels));
  }
  detail::ocr_gather_backward_products<cuda>(d, probabilities.data(), features.data(), dy.data(),
                                             d_features ? d_features->data() : nullptr, g_data);
  if (!d_regions) return;
  SEGKIT_LAUNCH(cuda_kernels::ocr_softmax_rows_backward_kernel, cuda_kernels::ocr_row_blocks(rows),
                cuda_detail::threads_per_block, 0, cuda_detail::context().stream(),
                probabilities.data(), g_data, d_regions->data(), rows, d.pixels);
}

}  // namespace segkit::ops
