// segkit/ops/resize.hpp — nearest and bilinear resize of NCHW float tensors, forward and
// backward, with PyTorch's F.interpolate semantics for an explicit output size:
//   nearest:  src = min(floor(dst * (in / out)), in - 1)          (mode="nearest")
//   bilinear, align_corners=false: src = max((dst + 0.5) * in / out - 0.5, 0)
//   bilinear, align_corners=true:  src = dst * (in - 1) / (out - 1), and 0 when out == 1
// with the scale computed in float as PyTorch does, and the two taps floor(src) and
// min(floor(src) + 1, in - 1).
// Requires: x and y (dy and dx) rank 4, the same N and C, every H and W >= 1 (shape_error
// naming both shapes otherwise); align_corners only with bilinear (value_error, as PyTorch).
// The output size is the preallocated output's H and W (resize_output_shape plans it).
// Guarantees: forward overwrites y; backward *adds* dL/dx into dx. The CPU backward scatters
// one N*C plane per task (no races, deterministic); the CUDA backward scatters with atomicAdd
// (summation order may vary in the last bits). The tap/weight math below is what the CUDA
// kernels (kernels/resize.cuh) run too. Scale-factor semantics (PyTorch's scale_factor= with
// recompute_scale_factor=False) are not provided.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "segkit/tensor/config.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::ops {

enum class resize_mode { nearest, bilinear };

struct resize_params {
  resize_mode mode = resize_mode::bilinear;
  bool align_corners = false;  // bilinear only
};

inline const char* resize_mode_name(resize_mode mode) {
  return mode == resize_mode::nearest ? "nearest" : "bilinear";
}

namespace math {

// The two source taps along one axis for one output index, and their weights.
struct linear_taps {
  int64_t i0, i1;
  float w0, w1;
};

// PyTorch's nearest_idx: exact shortcuts for equal size and exact 2x, else floor in float.
SEGKIT_HOST_DEVICE int64_t nearest_source(int64_t dst, int64_t in, int64_t out) {
  if (out == in) return dst;
  if (out == 2 * in) return dst >> 1;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const auto src = static_cast<int64_t>(floorf(static_cast<float>(dst) * scale));
  return src < in - 1 ? src : in - 1;
}

// PyTorch's area_pixel_compute_scale for the linear modes.
SEGKIT_HOST_DEVICE float linear_scale(int64_t in, int64_t out, bool align_corners) {
  if (align_corners)
    return out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.f;
  return static_cast<float>(in) / static_cast<float>(out);
}

// PyTorch's compute_source_index_and_lambda (area_pixel_compute_source_index + guard).
SEGKIT_HOST_DEVICE linear_taps linear_source(int64_t dst, int64_t in, int64_t out, float scale,
                                             bool align_corners) {
  linear_taps taps;
  if (out == in) {
    taps.i0 = taps.i1 = dst;
    taps.w0 = 1.f;
    taps.w1 = 0.f;
    return taps;
  }
  float src = align_corners ? scale * static_cast<float>(dst)
                            : scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  if (!align_corners && src < 0.f) src = 0.f;
  int64_t i0 = static_cast<int64_t>(floorf(src));
  if (i0 > in - 1) i0 = in - 1;
  float lambda = src - static_cast<float>(i0);
  lambda = lambda < 0.f ? 0.f : (lambda > 1.f ? 1.f : lambda);
  taps.i0 = i0;
  taps.i1 = i0 + (i0 < in - 1 ? 1 : 0);
  taps.w1 = lambda;
  taps.w0 = 1.f - lambda;
  return taps;
}

// One bilinear output value of a plane (row-major, width in_w).
SEGKIT_HOST_DEVICE float bilinear_sample(const float* plane, int64_t in_w, const linear_taps& ty,
                                         const linear_taps& tx) {
  const float* row0 = plane + ty.i0 * in_w;
  const float* row1 = plane + ty.i1 * in_w;
  return ty.w0 * (tx.w0 * row0[tx.i0] + tx.w1 * row0[tx.i1]) +
         ty.w1 * (tx.w0 * row1[tx.i0] + tx.w1 * row1[tx.i1]);
}

}  // namespace math

// x's shape with H and W replaced by the requested output size.
inline shape resize_output_shape(const shape& input, int64_t out_h, int64_t out_w) {
  require_rank("resize_output_shape", "input", input, 4);
  require<value_error>(out_h >= 1 && out_w >= 1, "resize_output_shape: output size ", out_h, "x",
                       out_w, " must be at least 1x1");
  return shape{input[0], input[1], out_h, out_w};
}

namespace detail {

// `small` is the input of forward / dx of backward, `large` the output / dy (names only).
inline void check_resize(const char* op, const resize_params& params, const char* what_in,
                         const shape& in, const char* what_out, const shape& out) {
  require<value_error>(!(params.mode == resize_mode::nearest && params.align_corners), op,
                       ": align_corners=true is only valid for bilinear resize (as in PyTorch)");
  require<shape_error>(in.rank() == 4 && out.rank() == 4, op, ": ", what_in, " has shape ",
                       in.to_string(), " and ", what_out, " has shape ", out.to_string(),
                       "; expected both rank 4 (NCHW)");
  require<shape_error>(in[0] == out[0] && in[1] == out[1], op, ": ", what_in, " has shape ",
                       in.to_string(), " but ", what_out, " has shape ", out.to_string(),
                       "; expected the same N and C");
  require<shape_error>(in[2] >= 1 && in[3] >= 1 && out[2] >= 1 && out[3] >= 1, op, ": ", what_in,
                       " has shape ", in.to_string(), " and ", what_out, " has shape ",
                       out.to_string(), "; expected H and W of at least 1");
}

struct resize_geometry {
  int64_t planes, in_h, in_w, out_h, out_w;
  float scale_h, scale_w;  // linear modes
};

inline resize_geometry make_resize_geometry(const resize_params& params, const shape& in,
                                            const shape& out) {
  return {in[0] * in[1],
          in[2],
          in[3],
          out[2],
          out[3],
          math::linear_scale(in[2], out[2], params.align_corners),
          math::linear_scale(in[3], out[3], params.align_corners)};
}

constexpr int64_t resize_grain = 1 << 14;

}  // namespace detail

inline void resize_forward(const resize_params& params, const tensor<float, cpu>& x,
                           tensor<float, cpu>& y) {
  detail::check_resize("resize_forward", params, "input", x.shape(), "output", y.shape());
  const auto g = detail::make_resize_geometry(params, x.shape(), y.shape());
  const float* in = x.data();
  float* out = y.data();
  const bool corners = params.align_corners;
  const bool nearest = params.mode == resize_mode::nearest;
  // One task per output row of one plane.
  parallel_for(0, g.planes * g.out_h, std::max<int64_t>(1, detail::resize_grain / g.out_w),
               [&](int64_t first, int64_t last) {
                 for (int64_t row = first; row < last; ++row) {
                   const int64_t plane = row / g.out_h, oy = row % g.out_h;
                   const float* src = in + plane * g.in_h * g.in_w;
                   float* dst = out + row * g.out_w;
                   if (nearest) {
                     const float* src_row =
                         src + math::nearest_source(oy, g.in_h, g.out_h) * g.in_w;
                     for (int64_t ox = 0; ox < g.out_w; ++ox)
                       dst[ox] = src_row[math::nearest_source(ox, g.in_w, g.out_w)];
                   } else {
                     const auto ty = math::linear_source(oy, g.in_h, g.out_h, g.scale_h, corners);
                     for (int64_t ox = 0; ox < g.out_w; ++ox) {
                       const auto tx = math::linear_source(ox, g.in_w, g.out_w, g.scale_w, corners);
                       dst[ox] = math::bilinear_sample(src, g.in_w, ty, tx);
                     }
                   }
                 }
               });
}

// Adds dL/dx into dx; the input size is dx's H and W, the output size dy's.
inline void resize_backward(const resize_params& params, const tensor<float, cpu>& dy,
                            tensor<float, cpu>& dx) {
  detail::check_resize("resize_backward", params, "input gradient", dx.shape(), "output gradient",
                       dy.shape());
  const auto g = detail::make_resize_geometry(params, dx.shape(), dy.shape());
  const float* grad_out = dy.data();
  float* grad_in = dx.data();
  const bool corners = params.align_corners;
  const bool nearest = params.mode == resize_mode::nearest;
  // One task per plane: each plane's scatter is serial, so there are no races and the
  // summation order is fixed.
  parallel_for(0, g.planes, std::max<int64_t>(1, detail::resize_grain / (g.out_h * g.out_w)),
               [&](int64_t first, int64_t last) {
                 for (int64_t plane = first; plane < last; ++plane) {
                   float* dst = grad_in + plane * g.in_h * g.in_w;
                   for (int64_t oy = 0; oy < g.out_h; ++oy) {
                     const float* src = grad_out + (plane * g.out_h + oy) * g.out_w;
                     if (nearest) {
                       float* dst_row = dst + math::nearest_source(oy, g.in_h, g.out_h) * g.in_w;
                       for (int64_t ox = 0; ox < g.out_w; ++ox)
                         dst_row[math::nearest_source(ox, g.in_w, g.out_w)] += src[ox];
                       continue;
                     }
                     const auto ty = math::linear_source(oy, g.in_h, g.out_h, g.scale_h, corners);
                     float* row0 = dst + ty.i0 * g.in_w;
                     float* row1 = dst + ty.i1 * g.in_w;
                     for (int64_t ox = 0; ox < g.out_w; ++ox) {
                       const auto tx = math::linear_source(ox, g.in_w, g.out_w, g.scale_w, corners);
                       const float top = ty.w0 * src[ox], bottom = ty.w1 * src[ox];
                       row0[tx.i0] += tx.w0 * top;
                       row0[tx.i1] += tx.w1 * top;
                       row1[tx.i0] += tx.w0 * bottom;
                       row1[tx.i1] += tx.w1 * bottom;
                     }
                   }
                 }
               });
}

#ifdef SEGKIT_WITH_CUDA
void resize_forward(const resize_params& params, const tensor<float, cuda>& x,
                    tensor<float, cuda>& y);
void resize_backward(const resize_params& params, const tensor<float, cuda>& dy,
                     tensor<float, cuda>& dx);
#endif

}  // namespace segkit::ops
