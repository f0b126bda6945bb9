// segkit/ops/pooling.hpp — 2-D max, average and adaptive average pooling over NCHW, exactly
// PyTorch's max_pool2d (dilation 1), avg_pool2d (no divisor_override) and adaptive_avg_pool2d.
// Provides: pool2d_params, pool2d_output_shape, max_pool2d_forward/backward,
// avg_pool2d_forward/backward, adaptive_avg_pool2d_forward/backward on cpu and cuda, and the
// adaptive bin math (math::adaptive_start / adaptive_end) that other ops (pyramid sampling)
// reuse.
// Requires: x, dx of shape [N, C, H, W] with H, W >= 1; kernel and stride > 0; 0 <= pad <=
// kernel / 2; a non-empty output (value_error / shape_error name the values otherwise).
// Guarantees:
//   - output size = floor((in + 2 pad - kernel) / stride) + 1, or with ceil_mode the ceiling,
//     minus one when the last window would start beyond the input plus left padding (PyTorch's
//     rule), so every window holds at least one input element;
//   - max: ties go to the first maximum in row-major window order, NaN propagates (as PyTorch);
//     argmax holds the flat index h * W + w inside the input plane (PyTorch's return_indices);
//     backward gives each output gradient to its argmax;
//   - avg: divisor is the window clipped to the padded input (count_include_pad = true; ceil
//     windows that run past the padding are clipped) or to the input itself (false);
//   - adaptive: output bin i of n over an input of extent H covers
//     [floor(i H / n), ceil((i + 1) H / n)); the output size is read from y's shape;
//   - backward ADDS into dx. Every backward gathers per input element (no atomics), so CPU and
//     CUDA run the same math, in the same order, deterministically.
#pragma once
#include <algorithm>
#include <climits>
#include <cstdint>
#include <limits>

#include "segkit/tensor/config.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::ops {

// PyTorch's nn.MaxPool2d / nn.AvgPool2d arguments (stride defaults to the kernel there; here it
// is spelled out). count_include_pad matters for average pooling only.
struct pool2d_params {
  int64_t kernel_h = 2, kernel_w = 2;
  int64_t stride_h = 2, stride_w = 2;
  int64_t pad_h = 0, pad_w = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;
};

namespace math {

SEGKIT_HOST_DEVICE int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// PyTorch's pooling_output_shape with dilation 1.
SEGKIT_HOST_DEVICE int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                                            bool ceil_mode) {
  int64_t out = floor_div(in + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0), stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// Windows [o * stride - pad, + kernel) that contain input index i: o in [first, last).
SEGKIT_HOST_DEVICE int64_t pool_first_window(int64_t i, int64_t kernel, int64_t stride,
                                             int64_t pad) {
  return i + pad < kernel ? 0 : (i + pad - kernel) / stride + 1;
}
SEGKIT_HOST_DEVICE int64_t pool_last_window(int64_t i, int64_t stride, int64_t pad, int64_t out) {
  const int64_t last = (i + pad) / stride + 1;
  return last < out ? last : out;
}

// Adaptive bins: output i of `out` over an input of extent `in` covers [start, end).
SEGKIT_HOST_DEVICE int64_t adaptive_start(int64_t i, int64_t in, int64_t out) {
  return (i / out) * in + ((i % out) * in) / out;  // floor(i * in / out) without overflow
}
SEGKIT_HOST_DEVICE int64_t adaptive_end(int64_t i, int64_t in, int64_t out) {
  return 1 + ((i + 1) * in - 1) / out;  // ceil((i + 1) * in / out)
}
// The output bins that contain input index i are [adaptive_start(i, out, in),
// adaptive_end(i, out, in)): the same functions with the extents swapped.

// Spatial extents of one pooling call, passed by value to kernels.
struct pool_geometry {
  int64_t in_h, in_w, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  bool count_include_pad;
};

// Max over the window of output (oh, ow) in one input plane; index = h * in_w + w of the max.
SEGKIT_HOST_DEVICE float max_pool_window(const float* plane, const pool_geometry& g, int64_t oh,
                                         int64_t ow, int32_t& index) {
  int64_t h0 = oh * g.stride_h - g.pad_h, w0 = ow * g.stride_w - g.pad_w;
  const int64_t h1 = h0 + g.kernel_h < g.in_h ? h0 + g.kernel_h : g.in_h;
  const int64_t w1 = w0 + g.kernel_w < g.in_w ? w0 + g.kernel_w : g.in_w;
  h0 = h0 > 0 ? h0 : 0;
  w0 = w0 > 0 ? w0 : 0;
  float best = -std::numeric_limits<float>::infinity();
  int64_t best_index = h0 * g.in_w + w0;
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = w0; w < w1; ++w) {
      const float v = plane[h * g.in_w + w];
      if (v > best || v != v) {  // strict: first max wins; NaN always taken, so it propagates
        best = v;
        best_index = h * g.in_w + w;
      }
    }
  index = static_cast<int32_t>(best_index);
  return best;
}

// Gradient of input (h, w) of one plane: the output gradients whose argmax is this element.
SEGKIT_HOST_DEVICE float max_pool_input_grad(const float* dy_plane, const int32_t* argmax_plane,
                                             const pool_geometry& g, int64_t h, int64_t w) {
  const int64_t oh0 = pool_first_window(h, g.kernel_h, g.stride_h, g.pad_h);
  const int64_t oh1 = pool_last_window(h, g.stride_h, g.pad_h, g.out_h);
  const int64_t ow0 = pool_first_window(w, g.kernel_w, g.stride_w, g.pad_w);
  const int64_t ow1 = pool_last_window(w, g.stride_w, g.pad_w, g.out_w);
  const int64_t self = h * g.in_w + w;
  float sum = 0.f;
  for (int64_t oh = oh0; oh < oh1; ++oh)
    for (int64_t ow = ow0; ow < ow1; ++ow)
      if (argmax_plane[oh * g.out_w + ow] == self) sum += dy_plane[oh * g.out_w + ow];
  return sum;
}

// PyTorch's avg_pool2d divisor for output (oh, ow): the window clipped to the padded input,
// or (count_include_pad = false) to the input.
SEGKIT_HOST_DEVICE float avg_pool_divisor(const pool_geometry& g, int64_t oh, int64_t ow) {
  int64_t h0 = oh * g.stride_h - g.pad_h, w0 = ow * g.stride_w - g.pad_w;
  int64_t h1 = h0 + g.kernel_h < g.in_h + g.pad_h ? h0 + g.kernel_h : g.in_h + g.pad_h;
  int64_t w1 = w0 + g.kernel_w < g.in_w + g.pad_w ? w0 + g.kernel_w : g.in_w + g.pad_w;
  if (g.count_include_pad) return static_cast<float>((h1 - h0) * (w1 - w0));
  h0 = h0 > 0 ? h0 : 0;
  w0 = w0 > 0 ? w0 : 0;
  h1 = h1 < g.in_h ? h1 : g.in_h;
  w1 = w1 < g.in_w ? w1 : g.in_w;
  return static_cast<float>((h1 - h0) * (w1 - w0));
}

SEGKIT_HOST_DEVICE float avg_pool_window(const float* plane, const pool_geometry& g, int64_t oh,
                                         int64_t ow) {
  int64_t h0 = oh * g.stride_h - g.pad_h, w0 = ow * g.stride_w - g.pad_w;
  const int64_t h1 = h0 + g.kernel_h < g.in_h ? h0 + g.kernel_h : g.in_h;
  const int64_t w1 = w0 + g.kernel_w < g.in_w ? w0 + g.kernel_w : g.in_w;
  h0 = h0 > 0 ? h0 : 0;
  w0 = w0 > 0 ? w0 : 0;
  float sum = 0.f;
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = w0; w < w1; ++w) sum += plane[h * g.in_w + w];
  return sum / avg_pool_divisor(g, oh, ow);
}

SEGKIT_HOST_DEVICE float avg_pool_input_grad(const float* dy_plane, const pool_geometry& g,
                                             int64_t h, int64_t w) {
  const int64_t oh0 = pool_first_window(h, g.kernel_h, g.stride_h, g.pad_h);
  const int64_t oh1 = pool_last_window(h, g.stride_h, g.pad_h, g.out_h);
  const int64_t ow0 = pool_first_window(w, g.kernel_w, g.stride_w, g.pad_w);
  const int64_t ow1 = pool_last_window(w, g.stride_w, g.pad_w, g.out_w);
  float sum = 0.f;
  for (int64_t oh = oh0; oh < oh1; ++oh)
    for (int64_t ow = ow0; ow < ow1; ++ow)
      sum += dy_plane[oh * g.out_w + ow] / avg_pool_divisor(g, oh, ow);
  return sum;
}

SEGKIT_HOST_DEVICE float adaptive_avg_pool_bin(const float* plane, const pool_geometry& g,
                                               int64_t oh, int64_t ow) {
  const int64_t h0 = adaptive_start(oh, g.in_h, g.out_h), h1 = adaptive_end(oh, g.in_h, g.out_h);
  const int64_t w0 = adaptive_start(ow, g.in_w, g.out_w), w1 = adaptive_end(ow, g.in_w, g.out_w);
  float sum = 0.f;
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = w0; w < w1; ++w) sum += plane[h * g.in_w + w];
  return sum / static_cast<float>((h1 - h0) * (w1 - w0));
}

SEGKIT_HOST_DEVICE float adaptive_avg_pool_input_grad(const float* dy_plane, const pool_geometry& g,
                                                      int64_t h, int64_t w) {
  const int64_t oh0 = adaptive_start(h, g.out_h, g.in_h), oh1 = adaptive_end(h, g.out_h, g.in_h);
  const int64_t ow0 = adaptive_start(w, g.out_w, g.in_w), ow1 = adaptive_end(w, g.out_w, g.in_w);
  float sum = 0.f;
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const int64_t bin_h = adaptive_end(oh, g.in_h, g.out_h) - adaptive_start(oh, g.in_h, g.out_h);
    for (int64_t ow = ow0; ow < ow1; ++ow) {
      const int64_t bin_w = adaptive_end(ow, g.in_w, g.out_w) - adaptive_start(ow, g.in_w, g.out_w);
      sum += dy_plane[oh * g.out_w + ow] / static_cast<float>(bin_h * bin_w);
    }
  }
  return sum;
}

}  // namespace math

namespace detail {

inline void check_pool2d_params(const char* op, const pool2d_params& p) {
  require<value_error>(p.kernel_h > 0 && p.kernel_w > 0, op, ": kernel is ", p.kernel_h, "x",
                       p.kernel_w, ", expected both sizes > 0");
  require<value_error>(p.stride_h > 0 && p.stride_w > 0, op, ": stride is ", p.stride_h, "x",
                       p.stride_w, ", expected both > 0");
  require<value_error>(p.pad_h >= 0 && p.pad_w >= 0, op, ": padding is ", p.pad_h, "x", p.pad_w,
                       ", expected both >= 0");
  require<value_error>(p.pad_h <= p.kernel_h / 2 && p.pad_w <= p.kernel_w / 2, op,
                       ": padding should be at most half of the kernel size, got padding ", p.pad_h,
                       "x", p.pad_w, " for kernel ", p.kernel_h, "x", p.kernel_w);
}

inline void check_pool_input(const char* op, const shape& x) {
  require_rank(op, "input", x, 4);
  require<shape_error>(x[2] >= 1 && x[3] >= 1, op, ": input has shape ", x.to_string(),
                       ", expected a non-empty spatial extent");
  require<shape_error>(x[2] * x[3] <= INT32_MAX, op, ": input plane of shape ", x.to_string(),
                       " has more than 2^31 - 1 elements; argmax indices are int32");
}

inline math::pool_geometry pool_geometry_of(const pool2d_params& p, const shape& x,
                                            const shape& y) {
  return {x[2],       x[3],       y[2],    y[3],    p.kernel_h,         p.kernel_w,
          p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.count_include_pad};
}

// Runs body(plane_index, h, w) over planes in parallel, rows and columns inside.
template <class Body>
void for_each_plane_element(int64_t planes, int64_t height, int64_t width, const Body& body) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, height * width));
  parallel_for(0, planes, grain, [&](int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p)
      for (int64_t h = 0; h < height; ++h)
        for (int64_t w = 0; w < width; ++w) body(p, h, w);
  });
}

}  // namespace detail

// [N, C, out_h, out_w] for pooling an input of shape [N, C, H, W]; validates the parameters
// and that the output is not empty.
inline shape pool2d_output_shape(const pool2d_params& p, const shape& x) {
  detail::check_pool_input("pool2d", x);
  detail::check_pool2d_params("pool2d", p);
  const int64_t oh = math::pool_output_size(x[2], p.kernel_h, p.stride_h, p.pad_h, p.ceil_mode);
  const int64_t ow = math::pool_output_size(x[3], p.kernel_w, p.stride_w, p.pad_w, p.ceil_mode);
  require<shape_error>(oh >= 1 && ow >= 1, "pool2d: input of shape ", x.to_string(),
                       " with kernel ", p.kernel_h, "x", p.kernel_w, ", stride ", p.stride_h, "x",
                       p.stride_w, ", padding ", p.pad_h, "x", p.pad_w, " gives output size ", oh,
                       "x", ow, ", which is too small");
  return shape{x[0], x[1], oh, ow};
}

namespace detail {
// Checks x against y (forward) or dx against dy (backward); returns the geometry.
inline math::pool_geometry check_pool2d(const char* op, const pool2d_params& p, const shape& x,
                                        const shape& y, const char* what_y) {
  check_pool_input(op, x);
  const shape expected = pool2d_output_shape(p, x);
  require<shape_error>(y == expected, op, ": ", what_y, " has shape ", y.to_string(), ", expected ",
                       expected.to_string(), " for input shape ", x.to_string());
  return pool_geometry_of(p, x, y);
}
inline math::pool_geometry check_adaptive(const char* op, const shape& x, const shape& y,
                                          const char* what_y) {
  check_pool_input(op, x);
  require_rank(op, what_y, y, 4);
  require<shape_error>(y[0] == x[0] && y[1] == x[1] && y[2] >= 1 && y[3] >= 1, op, ": ", what_y,
                       " has shape ", y.to_string(), " but the input has shape ", x.to_string(),
                       "; expected the same N and C and a non-empty output size");
  return {x[2], x[3], y[2], y[3], 1, 1, 1, 1, 0, 0, true};
}
}  // namespace detail

// argmax (optional; nullptr when no backward follows) receives int32 indices into the plane.
inline void max_pool2d_forward(const pool2d_params& params, const tensor<float, cpu>& x,
                               tensor<float, cpu>& y, tensor<int32_t, cpu>* argmax) {
  const auto g = detail::check_pool2d("max_pool2d_forward", params, x.shape(), y.shape(), "output");
  if (argmax)
    require_same_shape("max_pool2d_forward", "output", y.shape(), "argmax", argmax->shape());
  const float* in = x.data();
  float* out = y.data();
  int32_t* index = argmax ? argmax->data() : nullptr;
  detail::for_each_plane_element(
      x.size(0) * x.size(1), g.out_h, g.out_w, [&](int64_t p, int64_t oh, int64_t ow) {
        const int64_t o = (p * g.out_h + oh) * g.out_w + ow;
        int32_t at;
        out[o] = math::max_pool_window(in + p * g.in_h * g.in_w, g, oh, ow, at);
        if (index) index[o] = at;
      });
}

// dx[argmax] += dy; argmax from max_pool2d_forward with the same params and input shape.
inline void max_pool2d_backward(const pool2d_params& params, const tensor<int32_t, cpu>& argmax,
                                const tensor<float, cpu>& dy, tensor<float, cpu>& dx) {
  const auto g = detail::check_pool2d("max_pool2d_backward", params, dx.shape(), dy.shape(),
                                      "output gradient");
  require_same_shape("max_pool2d_backward", "output gradient", dy.shape(), "argmax",
                     argmax.shape());
  const float* grad_out = dy.data();
  const int32_t* index = argmax.data();
  float* grad_in = dx.data();
  detail::for_each_plane_element(
      dx.size(0) * dx.size(1), g.in_h, g.in_w, [&](int64_t p, int64_t h, int64_t w) {
        const int64_t out_plane = p * g.out_h * g.out_w;
        grad_in[(p * g.in_h + h) * g.in_w + w] +=
            math::max_pool_input_grad(grad_out + out_plane, index + out_plane, g, h, w);
      });
}

inline void avg_pool2d_forward(const pool2d_params& params, const tensor<float, cpu>& x,
                               tensor<float, cpu>& y) {
  const auto g = detail::check_pool2d("avg_pool2d_forward", params, x.shape(), y.shape(), "output");
  const float* in = x.data();
  float* out = y.data();
  detail::for_each_plane_element(x.size(0) * x.size(1), g.out_h, g.out_w,
                                 [&](int64_t p, int64_t oh, int64_t ow) {
                                   out[(p * g.out_h + oh) * g.out_w + ow] =
                                       math::avg_pool_window(in + p * g.in_h * g.in_w, g, oh, ow);
                                 });
}

inline void avg_pool2d_backward(const pool2d_params& params, const tensor<float, cpu>& dy,
                                tensor<float, cpu>& dx) {
  const auto g = detail::check_pool2d("avg_pool2d_backward", params, dx.shape(), dy.shape(),
                                      "output gradient");
  const float* grad_out = dy.data();
  float* grad_in = dx.data();
  detail::for_each_plane_element(
      dx.size(0) * dx.size(1), g.in_h, g.in_w, [&](int64_t p, int64_t h, int64_t w) {
        grad_in[(p * g.in_h + h) * g.in_w + w] +=
            math::avg_pool_input_grad(grad_out + p * g.out_h * g.out_w, g, h, w);
      });
}

// The output size is y's [H, W]; it may be larger than the input's.
inline void adaptive_avg_pool2d_forward(const tensor<float, cpu>& x, tensor<float, cpu>& y) {
  const auto g =
      detail::check_adaptive("adaptive_avg_pool2d_forward", x.shape(), y.shape(), "output");
  const float* in = x.data();
  float* out = y.data();
  detail::for_each_plane_element(
      x.size(0) * x.size(1), g.out_h, g.out_w, [&](int64_t p, int64_t oh, int64_t ow) {
        out[(p * g.out_h + oh) * g.out_w + ow] =
            math::adaptive_avg_pool_bin(in + p * g.in_h * g.in_w, g, oh, ow);
      });
}

inline void adaptive_avg_pool2d_backward(const tensor<float, cpu>& dy, tensor<float, cpu>& dx) {
  const auto g = detail::check_adaptive("adaptive_avg_pool2d_backward", dx.shape(), dy.shape(),
                                        "output gradient");
  const float* grad_out = dy.data();
  float* grad_in = dx.data();
  detail::for_each_plane_element(
      dx.size(0) * dx.size(1), g.in_h, g.in_w, [&](int64_t p, int64_t h, int64_t w) {
        grad_in[(p * g.in_h + h) * g.in_w + w] +=
            math::adaptive_avg_pool_input_grad(grad_out + p * g.out_h * g.out_w, g, h, w);
      });
}

#ifdef SEGKIT_WITH_CUDA
void max_pool2d_forward(const pool2d_params& params, const tensor<float, cuda>& x,
                        tensor<float, cuda>& y, tensor<int32_t, cuda>* argmax);
void max_pool2d_backward(const pool2d_params& params, const tensor<int32_t, cuda>& argmax,
                         const tensor<float, cuda>& dy, tensor<float, cuda>& dx);
void avg_pool2d_forward(const pool2d_params& params, const tensor<float, cuda>& x,
                        tensor<float, cuda>& y);
void avg_pool2d_backward(const pool2d_params& params, const tensor<float, cuda>& dy,
                         tensor<float, cuda>& dx);
void adaptive_avg_pool2d_forward(const tensor<float, cuda>& x, tensor<float, cuda>& y);
void adaptive_avg_pool2d_backward(const tensor<float, cuda>& dy, tensor<float, cuda>& dx);
#endif

}  // namespace segkit::ops
