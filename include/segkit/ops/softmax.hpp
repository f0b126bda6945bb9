// segkit/ops/softmax.hpp — softmax and log-softmax along any axis (negative axes allowed),
// forward and backward.
// Requires: x, y, dy, dx of one shape (shape_error naming both otherwise); an axis within the
// rank (shape_error). Guarantees: numerically stable (the row maximum is subtracted before
// exp); y may alias x; backward *adds* into dx and reads only y and dy:
//   softmax:     dx += y * (dy - sum(dy * y))
//   log-softmax: dx += dy - exp(y) * sum(dy)
// Layout: x viewed as [outer, n, inner] with n the softmax axis. The CPU runs contiguous rows
// (inner == 1) one per task, and strided rows (e.g. channels of NCHW) as tiles of up to 64
// neighbouring rows processed together, so the loops stay vectorised over the inner axis.
// The CUDA path (kernels/softmax.cuh) runs one block per contiguous row with warp-shuffle
// reductions, or one thread per strided row (adjacent threads read adjacent addresses).
#pragma once
#include <algorithm>
#include <cmath>

#include "segkit/tensor/config.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::ops {

struct softmax_params {
  int axis = 1;  // channels of NCHW; -1 for the last axis
};

namespace math {

// One step of the online normaliser: keeps the running maximum m and sum s of exp(x - m).
SEGKIT_HOST_DEVICE void softmax_accumulate(float& m, float& s, float x) {
  if (x > m) {
    s = s * expf(m - x) + 1.f;
    m = x;
  } else {
    s += expf(x - m);
  }
}

template <bool Log>
SEGKIT_HOST_DEVICE float softmax_value(float x, float max, float sum) {
  if constexpr (Log) return x - max - logf(sum);
  return expf(x - max) / sum;
}

// The input-gradient term; `total` is sum(dy * y) for softmax and sum(dy) for log-softmax.
template <bool Log>
SEGKIT_HOST_DEVICE float softmax_gradient(float y, float dy, float total) {
  if constexpr (Log) return dy - expf(y) * total;
  return y * (dy - total);
}

template <bool Log>
SEGKIT_HOST_DEVICE float softmax_gradient_term(float y, float dy) {
  if constexpr (Log) return dy;
  return dy * y;
}

// One row of n elements spaced `stride` apart.
template <bool Log>
SEGKIT_HOST_DEVICE void softmax_row(const float* x, float* y, int64_t n, int64_t stride) {
  float m = -INFINITY, s = 0.f;
  for (int64_t k = 0; k < n; ++k) m = fmaxf(m, x[k * stride]);
  for (int64_t k = 0; k < n; ++k) s += expf(x[k * stride] - m);
  for (int64_t k = 0; k < n; ++k) y[k * stride] = softmax_value<Log>(x[k * stride], m, s);
}

template <bool Log>
SEGKIT_HOST_DEVICE void softmax_row_backward(const float* y, const float* dy, float* dx, int64_t n,
                                             int64_t stride) {
  float total = 0.f;
  for (int64_t k = 0; k < n; ++k) total += softmax_gradient_term<Log>(y[k * stride], dy[k * stride]);
  for (int64_t k = 0; k < n; ++k)
    dx[k * stride] += softmax_gradient<Log>(y[k * stride], dy[k * stride], total);
}

}  // namespace math

namespace detail {

struct softmax_layout {
  int64_t outer, n, inner;
};

inline softmax_layout softmax_view(const shape& s, int axis) {
  const int a = s.normalize_axis(axis);
  return {s.span(0, a), s[a], s.span(a + 1, s.rank())};
}

constexpr int64_t softmax_tile = 64;

template <class Device>
softmax_layout check_softmax(const char* op, const softmax_params& params,
                             const tensor<float, Device>& a, const char* what_b,
                             const tensor<float, Device>& b) {
  require_same_shape(op, "input", a.shape(), what_b, b.shape());
  return softmax_view(a.shape(), params.axis);
}

// Strided rows: a tile of `width` (<= 64) neighbouring rows at once, vectorised across them.
template <bool Log>
void softmax_tile_forward(const float* x, float* y, int64_t n, int64_t inner, int64_t width) {
  float m[softmax_tile], s[softmax_tile];
  for (int64_t i = 0; i < width; ++i) m[i] = -INFINITY, s[i] = 0.f;
  for (int64_t k = 0; k < n; ++k)
    for (int64_t i = 0; i < width; ++i) m[i] = std::max(m[i], x[k * inner + i]);
  for (int64_t k = 0; k < n; ++k)
    for (int64_t i = 0; i < width; ++i) s[i] += std::exp(x[k * inner + i] - m[i]);
  for (int64_t k = 0; k < n; ++k)
    for (int64_t i = 0; i < width; ++i)
      y[k * inner + i] = math::softmax_value<Log>(x[k * inner + i], m[i], s[i]);
}

template <bool Log>
void softmax_tile_backward(const float* y, const float* dy, float* dx, int64_t n, int64_t inner,
                           int64_t width) {
  float total[softmax_tile];
  for (int64_t i = 0; i < width; ++i) total[i] = 0.f;
  for (int64_t k = 0; k < n; ++k)
    for (int64_t i = 0; i < width; ++i)
      total[i] += math::softmax_gradient_term<Log>(y[k * inner + i], dy[k * inner + i]);
  for (int64_t k = 0; k < n; ++k)
    for (int64_t i = 0; i < width; ++i)
      dx[k * inner + i] += math::softmax_gradient<Log>(y[k * inner + i], dy[k * inner + i], total[i]);
}

// Calls body(row_offset, width) for every contiguous row (width 0) or tile of strided rows.
template <class Body>
void for_each_softmax_task(const softmax_layout& l, const Body& body) {
  if (l.outer * l.n * l.inner == 0) return;
  if (l.inner == 1) {
    parallel_for(0, l.outer, std::max<int64_t>(1, 4096 / l.n), [&](int64_t first, int64_t last) {
      for (int64_t row = first; row < last; ++row) body(row * l.n, int64_t(0));
    });
    return;
  }
  const int64_t tiles = (l.inner + softmax_tile - 1) / softmax_tile;
  parallel_for(0, l.outer * tiles, std::max<int64_t>(1, 64 / l.n), [&](int64_t first, int64_t last) {
    for (int64_t task = first; task < last; ++task) {
      const int64_t o = task / tiles, begin = task % tiles * softmax_tile;
      body(o * l.n * l.inner + begin, std::min(softmax_tile, l.inner - begin));
    }
  });
}

template <bool Log>
void softmax_forward_cpu(const softmax_layout& l, const float* x, float* y) {
  for_each_softmax_task(l, [&](int64_t offset, int64_t width) {
    if (width == 0)
      math::softmax_row<Log>(x + offset, y + offset, l.n, 1);
    else
      softmax_tile_forward<Log>(x + offset, y + offset, l.n, l.inner, width);
  });
}

template <bool Log>
void softmax_backward_cpu(const softmax_layout& l, const float* y, const float* dy, float* dx) {
  for_each_softmax_task(l, [&](int64_t offset, int64_t width) {
    if (width == 0)
      math::softmax_row_backward<Log>(y + offset, dy + offset, dx + offset, l.n, 1);
    else
      softmax_tile_backward<Log>(y + offset, dy + offset, dx + offset, l.n, l.inner, width);
  });
}

}  // namespace detail

inline shape softmax_output_shape(const shape& x) { return x; }

inline void softmax_forward(const softmax_params& params, const tensor<float, cpu>& x,
                            tensor<float, cpu>& y) {
  const auto l = detail::check_softmax("softmax_forward", params, x, "output", y);
  detail::softmax_forward_cpu<false>(l, x.data(), y.data());
}
inline void log_softmax_forward(const softmax_params& params, const tensor<float, cpu>& x,
                                tensor<float, cpu>& y) {
  const auto l = detail::check_softmax("log_softmax_forward", params, x, "output", y);
  detail::softmax_forward_cpu<true>(l, x.data(), y.data());
}
// dx += y * (dy - sum(dy * y)) along the axis.
inline void softmax_backward(const softmax_params& params, const tensor<float, cpu>& y,
                             const tensor<float, cpu>& dy, tensor<float, cpu>& dx) {
  const auto l = detail::check_softmax("softmax_backward", params, y, "output gradient", dy);
  require_same_shape("softmax_backward", "output", y.shape(), "input gradient", dx.shape());
  detail::softmax_backward_cpu<false>(l, y.data(), dy.data(), dx.data());
}
// dx += dy - exp(y) * sum(dy) along the axis (y is the log-softmax output).
inline void log_softmax_backward(const softmax_params& params, const tensor<float, cpu>& y,
                                 const tensor<float, cpu>& dy, tensor<float, cpu>& dx) {
  const auto l = detail::check_softmax("log_softmax_backward", params, y, "output gradient", dy);
  require_same_shape("log_softmax_backward", "output", y.shape(), "input gradient", dx.shape());
  detail::softmax_backward_cpu<true>(l, y.data(), dy.data(), dx.data());
}

#ifdef SEGKIT_WITH_CUDA
void softmax_forward(const softmax_params& params, const tensor<float, cuda>& x,
                     tensor<float, cuda>& y);
void log_softmax_forward(const softmax_params& params, const tensor<float, cuda>& x,
                         tensor<float, cuda>& y);
void softmax_backward(const softmax_params& params, const tensor<float, cuda>& y,
                      const tensor<float, cuda>& dy, tensor<float, cuda>& dx);
void log_softmax_backward(const softmax_params& params, const tensor<float, cuda>& y,
                          const tensor<float, cuda>& dy, tensor<float, cuda>& dx);
#endif

}  // namespace segkit::ops
