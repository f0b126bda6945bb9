// segkit/ops/ocr_gather.hpp — OCR's spatial gather: object region representations from soft
// object regions (Yuan et al., the authors' SpatialGather_Module).
// Provides: ocr_gather_output_shape, ocr_gather_probabilities_shape, ocr_gather_forward /
// ocr_gather_backward on cpu and cuda.
// Requires: regions (logits) [N, K, H, W] and features [N, C, H, W] with equal N, H, W
// (shape_error naming both otherwise); y [N, K, C]; probabilities [N, K, H*W], a buffer the
// caller plans (a static graph keeps it between forward and backward).
// Guarantees:
//   - probabilities[n, k, :] = softmax over all H*W pixels of regions[n, k] (max subtracted);
//     y[n, k, c] = sum_p probabilities[n, k, p] * features[n, c, p];
//   - layout: y is [N, K, C], i.e. torch.matmul(probs, feats.view(N, C, -1).permute(0, 2, 1));
//     the authors' module returns y.permute(0, 2, 1).unsqueeze(3), [N, C, K, 1] (what
//     nn::ocr_gather produces, via a transpose);
//   - backward ADDS into d_features += dy^T P and into d_regions through the softmax
//     (d_regions += P * (G - sum_p P G), G = dy F), reading only the saved probabilities;
//     nullptr skips a gradient (and, for d_regions, the product G);
//   - the products are ops::gemm_strided_batched (Eigen / the AVX-512 kernel on cpu, cuBLAS on
//     cuda); the softmax rows are math::softmax_row / softmax_row_backward (ops/softmax.hpp);
//     backward's G [N, K, H*W] comes from the workspace.
#pragma once
#include <algorithm>
#include <cstdint>

#include "segkit/ops/matmul.hpp"
#include "segkit/ops/softmax.hpp"
#include "segkit/tensor/mac_counter.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"
#include "segkit/tensor/workspace.hpp"

namespace segkit::ops {

namespace detail {
struct ocr_gather_dims {
  int64_t batch, regions, channels, pixels;
};

inline ocr_gather_dims check_ocr_gather_inputs(const char* op, const shape& regions,
                                               const shape& features) {
  require_rank(op, "regions", regions, 4);
  require_rank(op, "features", features, 4);
  require<shape_error>(regions[0] == features[0] && regions[2] == features[2] &&
                           regions[3] == features[3],
                       op, ": regions have shape ", regions.to_string(),
                       " and features have shape ", features.to_string(),
                       "; expected the same N, H and W");
  require<shape_error>(regions[1] >= 1 && regions[2] * regions[3] >= 1, op,
                       ": regions have shape ", regions.to_string(),
                       ", expected K >= 1 regions over a non-empty H x W");
  return {regions[0], regions[1], features[1], regions[2] * regions[3]};
}
}  // namespace detail

// [N, K, C] for regions [N, K, H, W] and features [N, C, H, W].
inline shape ocr_gather_output_shape(const shape& regions, const shape& features) {
  const auto d = detail::check_ocr_gather_inputs("ocr_gather", regions, features);
  return shape{d.batch, d.regions, d.channels};
}

// [N, K, H * W]: the saved softmax probabilities.
inline shape ocr_gather_probabilities_shape(const shape& regions) {
  require_rank("ocr_gather", "regions", regions, 4);
  return shape{regions[0], regions[1], regions[2] * regions[3]};
}

namespace detail {
template <class Device>
ocr_gather_dims check_ocr_gather(const char* op, const tensor<float, Device>& regions,
                                 const tensor<float, Device>& features,
                                 const tensor<float, Device>& probabilities, const char* what_y,
                                 const shape& y) {
  const auto d = check_ocr_gather_inputs(op, regions.shape(), features.shape());
  require_shape(op, "probabilities", probabilities.shape(),
                ocr_gather_probabilities_shape(regions.shape()));
  require_shape(op, what_y, y, shape{d.batch, d.regions, d.channels});
  return d;
}

// Validates the backward arguments; returns the sizes.
template <class Device>
ocr_gather_dims check_ocr_gather_backward(const tensor<float, Device>& features,
                                          const tensor<float, Device>& probabilities,
                                          const tensor<float, Device>& dy,
                                          const tensor<float, Device>* d_regions,
                                          const tensor<float, Device>* d_features) {
  const char* op = "ocr_gather_backward";
  const shape& p = probabilities.shape();
  require_rank(op, "probabilities", p, 3);
  require<shape_error>(features.rank() == 4 && p[0] == features.size(0) &&
                           p[2] == features.size(2) * features.size(3),
                       op, ": probabilities have shape ", p.to_string(),
                       " and features have shape ", features.shape().to_string(),
                       "; expected [N, K, H*W] and [N, C, H, W]");
  const detail::ocr_gather_dims d{p[0], p[1], features.size(1), p[2]};
  require_shape(op, "output gradient dy", dy.shape(), shape{d.batch, d.regions, d.channels});
  if (d_regions)
    require<shape_error>(d_regions->rank() == 4 && d_regions->size(0) == d.batch &&
                             d_regions->size(1) == d.regions &&
                             d_regions->size(2) == features.size(2) &&
                             d_regions->size(3) == features.size(3),
                         op, ": region gradient has shape ", d_regions->shape().to_string(),
                         ", expected [", d.batch, ", ", d.regions, ", ", features.size(2), ", ",
                         features.size(3), "] for probabilities of shape ", p.to_string());
  if (d_features)
    require_same_shape(op, "features", features.shape(), "feature gradient",
                       d_features->shape());
  return d;
}

// y = P F^T per image: [K, HW] x ([C, HW])^T.
template <class Device>
void ocr_gather_product(const ocr_gather_dims& d, const float* probabilities,
                        const float* features, float* y) {
  gemm_strided_batched(Device{}, false, true, d.regions, d.channels, d.pixels, 1.f,
                       probabilities, d.pixels, d.regions * d.pixels, features, d.pixels,
                       d.channels * d.pixels, 0.f, y, d.channels, d.regions * d.channels,
                       d.batch);
}

// d_features += dy^T P ([C, K] x [K, HW]); g = dy F ([K, C] x [C, HW]) when g is not null.
template <class Device>
void ocr_gather_backward_products(const ocr_gather_dims& d, const float* probabilities,
                                  const float* features, const float* dy, float* d_features,
                                  float* g) {
  if (d_features)
    gemm_strided_batched(Device{}, true, false, d.channels, d.pixels, d.regions, 1.f, dy,
                         d.channels, d.regions * d.channels, probabilities, d.pixels,
                         d.regions * d.pixels, 1.f, d_features, d.pixels, d.channels * d.pixels,
                         d.batch);
  if (g)
    gemm_strided_batched(Device{}, false, false, d.regions, d.pixels, d.channels, 1.f, dy,
                         d.channels, d.regions * d.channels, features, d.pixels,
                         d.channels * d.pixels, 0.f, g, d.pixels, d.regions * d.pixels, d.batch);
}
}  // namespace detail

#ifndef __CUDACC__
inline void ocr_gather_forward(const tensor<float, cpu>& regions, const tensor<float, cpu>& features,
                               tensor<float, cpu>& probabilities, tensor<float, cpu>& y) {
  const auto d = detail::check_ocr_gather("ocr_gather_forward", regions, features, probabilities,
                                          "output y", y.shape());
  add_macs(d.batch * d.regions * d.channels * d.pixels);  // P.F (mac_counter.hpp)
  const float* logits = regions.data();
  float* probs = probabilities.data();
  const int64_t rows = d.batch * d.regions, n = d.pixels;
  parallel_for(0, rows, std::max<int64_t>(1, 16384 / n), [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r)
      math::softmax_row<false>(logits + r * n, probs + r * n, n, 1);
  });
  detail::ocr_gather_product<cpu>(d, probs, features.data(), y.data());
}

// probabilities: from ocr_gather_forward on the same regions.
inline void ocr_gather_backward(const tensor<float, cpu>& features,
                                const tensor<float, cpu>& probabilities,
                                const tensor<float, cpu>& dy, tensor<float, cpu>* d_regions,
                                tensor<float, cpu>* d_features, workspace<cpu>* ws = nullptr) {
  const auto d = detail::check_ocr_gather_backward(features, probabilities, dy, d_regions,
                                                    d_features);
  float* g = nullptr;
  if (d_regions)
    g = (ws ? *ws : default_workspace<cpu>())
            .reserve_elements<float>(size_t(d.batch * d.regions * d.pixels));
  detail::ocr_gather_backward_products<cpu>(d, probabilities.data(), features.data(), dy.data(),
                                            d_features ? d_features->data() : nullptr, g);
  if (!d_regions) return;
  const float* probs = probabilities.data();
  float* dr = d_regions->data();
  const int64_t rows = d.batch * d.regions, n = d.pixels;
  parallel_for(0, rows, std::max<int64_t>(1, 16384 / n), [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r)
      math::softmax_row_backward<false>(probs + r * n, g + r * n, dr + r * n, n, 1);
  });
}
#endif  // __CUDACC__

#ifdef SEGKIT_WITH_CUDA
void ocr_gather_forward(const tensor<float, cuda>& regions, const tensor<float, cuda>& features,
                        tensor<float, cuda>& probabilities, tensor<float, cuda>& y);
void ocr_gather_backward(const tensor<float, cuda>& features,
                         const tensor<float, cuda>& probabilities, const tensor<float, cuda>& dy,
                         tensor<float, cuda>* d_regions, tensor<float, cuda>* d_features,
                         workspace<cuda>* ws = nullptr);
#endif

}  // namespace segkit::ops
