// segkit/ops/conv2d_geometry.hpp — conv2d's parameters, validated sizes and output shape
// (split from conv2d.hpp so the implicit-GEMM packers in conv2d_implicit.hpp can share them).
// Provides: conv2d_params, conv2d_output_shape, detail::conv2d_geometry and the shape checks.
#pragma once
#include <algorithm>
#include <cstdint>

#include "segkit/tensor/tensor.hpp"

namespace segkit::ops {

struct conv2d_params {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};

namespace detail {

// Every size a convolution needs, validated once.
struct conv2d_geometry {
  int64_t n, c, h, w;          // input
  int64_t co, kh, kw;          // weight
  int64_t ho, wo;              // output
  int64_t groups, cg, cog;     // channels per group (in, out)
  int64_t ck;                  // cg * kh * kw: the GEMM inner size
  int64_t p;                   // ho * wo: output pixels per channel
  bool is_pointwise;           // 1x1, stride 1, no padding: the input already is the columns
  bool pointwise() const { return is_pointwise; }
};

inline conv2d_geometry conv2d_check(const char* op, const conv2d_params& prm, const shape& x,
                                    const shape& w) {
  require<value_error>(prm.stride_h >= 1 && prm.stride_w >= 1, op, ": stride (", prm.stride_h,
                       ", ", prm.stride_w, ") must be >= 1");
  require<value_error>(prm.dilation_h >= 1 && prm.dilation_w >= 1, op, ": dilation (",
                       prm.dilation_h, ", ", prm.dilation_w, ") must be >= 1");
  require<value_error>(prm.pad_h >= 0 && prm.pad_w >= 0, op, ": padding (", prm.pad_h, ", ",
                       prm.pad_w, ") must be >= 0");
  require<value_error>(prm.groups >= 1, op, ": groups=", prm.groups, " must be >= 1");
  require<shape_error>(x.rank() == 4 && w.rank() == 4, op, ": input has shape ", x.to_string(),
                       " and weight has shape ", w.to_string(),
                       "; expected input [N, Cin, H, W] and weight [Cout, Cin/groups, kh, kw]");
  conv2d_geometry g{};
  g.n = x[0], g.c = x[1], g.h = x[2], g.w = x[3];
  g.co = w[0], g.kh = w[2], g.kw = w[3];
  g.groups = prm.groups;
  require<shape_error>(g.c % g.groups == 0 && g.co % g.groups == 0, op, ": input has shape ",
                       x.to_string(), " and weight has shape ", w.to_string(), "; Cin=", g.c,
                       " and Cout=", g.co, " must both be divisible by groups=", g.groups);
  g.cg = g.c / g.groups;
  g.cog = g.co / g.groups;
  require<shape_error>(w[1] == g.cg, op, ": weight has shape ", w.to_string(), " for input ",
                       x.to_string(), " with groups=", g.groups, "; expected weight dimension 1 = ",
                       g.cg, " (Cin/groups)");
  require<shape_error>(g.kh >= 1 && g.kw >= 1, op, ": weight has shape ", w.to_string(),
                       "; the kernel must be at least 1x1");
  const int64_t span_h = (g.kh - 1) * prm.dilation_h + 1, span_w = (g.kw - 1) * prm.dilation_w + 1;
  const int64_t padded_h = g.h + 2 * prm.pad_h, padded_w = g.w + 2 * prm.pad_w;
  require<shape_error>(span_h <= padded_h && span_w <= padded_w, op, ": the dilated kernel ",
                       span_h, "x", span_w, " (weight ", w.to_string(), ", dilation ",
                       prm.dilation_h, "x", prm.dilation_w, ") is bigger than the padded input ",
                       padded_h, "x", padded_w, " (input ", x.to_string(), ", padding ",
                       prm.pad_h, "x", prm.pad_w, ")");
  g.ho = (padded_h - span_h) / prm.stride_h + 1;
  g.wo = (padded_w - span_w) / prm.stride_w + 1;
  g.ck = g.cg * g.kh * g.kw;
  g.p = g.ho * g.wo;
  g.is_pointwise = g.kh == 1 && g.kw == 1 && prm.stride_h == 1 && prm.stride_w == 1 &&
                   prm.pad_h == 0 && prm.pad_w == 0;
  return g;
}

template <class Device>
conv2d_geometry conv2d_check_forward(const conv2d_params& prm, const tensor<float, Device>& x,
                                     const tensor<float, Device>& w,
                                     const tensor<float, Device>* bias,
                                     const tensor<float, Device>& y) {
  const auto g = conv2d_check("conv2d_forward", prm, x.shape(), w.shape());
  if (bias) require_shape("conv2d_forward", "bias", bias->shape(), shape{g.co});
  require_shape("conv2d_forward", "output y", y.shape(), shape{g.n, g.co, g.ho, g.wo});
  return g;
}

template <class Device>
conv2d_geometry conv2d_check_backward(const conv2d_params& prm, const tensor<float, Device>& x,
                                      const tensor<float, Device>& w,
                                      const tensor<float, Device>& dy,
                                      const tensor<float, Device>* dx,
                                      const tensor<float, Device>* dw,
                                      const tensor<float, Device>* dbias) {
  const auto g = conv2d_check("conv2d_backward", prm, x.shape(), w.shape());
  require_shape("conv2d_backward", "output gradient dy", dy.shape(),
                shape{g.n, g.co, g.ho, g.wo});
  if (dx) require_same_shape("conv2d_backward", "input", x.shape(), "gradient dx", dx->shape());
  if (dw) require_same_shape("conv2d_backward", "weight", w.shape(), "gradient dw", dw->shape());
  if (dbias) require_shape("conv2d_backward", "bias gradient", dbias->shape(), shape{g.co});
  return g;
}

// Output positions o in [0, count) whose input coordinate o * stride + offset lies in
// [0, limit), as a half-open range [first, last).
struct index_range {
  int64_t first, last;
};
inline index_range valid_outputs(int64_t offset, int64_t stride, int64_t limit, int64_t count) {
  const int64_t first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  const int64_t last = offset > limit - 1 ? 0 : std::min(count, (limit - 1 - offset) / stride + 1);
  return {std::min(first, count), std::max(std::min(first, count), last)};
}

}  // namespace detail

// The shape y must have: [N, Cout, Ho, Wo], Ho = (H + 2 pad - dilation (kh - 1) - 1) / stride + 1.
inline shape conv2d_output_shape(const conv2d_params& params, const shape& x, const shape& w) {
  const auto g = detail::conv2d_check("conv2d_output_shape", params, x, w);
  return shape{g.n, g.co, g.ho, g.wo};
}

}  // namespace segkit::ops
