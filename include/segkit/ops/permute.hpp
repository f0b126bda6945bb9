// segkit/ops/permute.hpp — permute (transpose) the axes of a rank <= 5 tensor, and reshape.
// Requires: axes a permutation of 0..rank-1 (negative allowed; value_error naming the list
// otherwise); y of permute_output_shape (shape_error naming both shapes otherwise).
// Guarantees: y[i0..] = x at the permuted coordinates, y.shape[k] = x.shape[axes[k]];
// backward *adds* the inversely permuted gradient into dx. reshape is free: a view sharing
// storage (tensor::view), and its gradient is a view of dy (reshape_gradient); reshape_backward
// adds it for graph code that wants the adding contract.
// How it runs: the axes are coalesced into a strided loop (elementwise.hpp), so e.g.
// NCHW -> NHWC becomes a batched 2-D transpose [N, HW, C]. On the CPU such transposes run in
// 32 x 32 tiles (cache-friendly on both sides); other cases and CUDA use the strided-loop
// executors of elementwise.hpp (CUDA: no tiling yet).
#pragma once
#include <string>
#include <vector>

#include "segkit/ops/elementwise.hpp"

namespace segkit::ops {

struct permute_params {
  std::vector<int> axes;  // output axis k is input axis axes[k]
};

namespace detail {
inline std::vector<int> normalized_permutation(const shape& x, const std::vector<int>& axes) {
  auto list = [&] {
    std::string text = "[";
    for (size_t i = 0; i < axes.size(); ++i) text += (i ? ", " : "") + std::to_string(axes[i]);
    return text + "]";
  };
  require<value_error>(int(axes.size()) == x.rank(), "permute: axes ", list(), " has ",
                       axes.size(), " entries, expected one per axis of shape ", x.to_string());
  std::vector<int> result(axes.size());
  std::vector<bool> seen(axes.size(), false);
  for (size_t k = 0; k < axes.size(); ++k) {
    const int a = axes[k] < 0 ? axes[k] + x.rank() : axes[k];
    require<value_error>(a >= 0 && a < x.rank() && !seen[size_t(a)], "permute: axes ", list(),
                         " is not a permutation of the axes of shape ", x.to_string());
    seen[size_t(a)] = true;
    result[k] = a;
  }
  return result;
}
}  // namespace detail

inline shape permute_output_shape(const shape& x, const permute_params& params) {
  const auto axes = detail::normalized_permutation(x, params.axes);
  std::vector<int64_t> dims;
  for (int a : axes) dims.push_back(x[a]);
  return shape(dims);
}

// The inverse permutation: permuting by it undoes permuting by params.
inline permute_params inverse_permutation(const shape& x, const permute_params& params) {
  const auto axes = detail::normalized_permutation(x, params.axes);
  permute_params inverse{std::vector<int>(axes.size())};
  for (size_t k = 0; k < axes.size(); ++k) inverse.axes[size_t(axes[k])] = int(k);
  return inverse;
}

namespace detail {

// The loop over y (contiguous) with x's strides in operand slot 0.
inline math::strided_loop permute_loop(const shape& x, const std::vector<int>& axes) {
  int64_t strides[5];
  aligned_strides(x, x.rank(), strides);  // 0 on extent-1 axes, which push_axis drops anyway
  math::strided_loop loop;
  for (size_t k = 0; k < axes.size(); ++k) push_axis(loop, x[axes[k]], strides[axes[k]], 0);
  return loop;
}

// A batched transpose: y's last loop axis is strided in x while loop axis `k` has x-stride 1.
// Runs 32 x 32 tiles of (k, last) so both reads and writes stay within a few cache lines.
inline bool permute_tiled_cpu(const math::strided_loop& loop, const float* x, float* y,
                              bool accumulate) {
  const int last = loop.rank - 1;
  if (loop.rank < 2 || loop.strides[0][last] == 1) return false;
  int k = -1;
  for (int a = 0; a < last; ++a)
    if (loop.strides[0][a] == 1) k = a;
  if (k < 0) return false;
  int64_t out_strides[5];
  int64_t stride = 1;
  for (int a = last; a >= 0; --a) out_strides[a] = stride, stride *= loop.dims[a];
  constexpr int64_t tile = 32;
  const int64_t rows = loop.dims[k], cols = loop.dims[last];
  const int64_t row_tiles = (rows + tile - 1) / tile, col_tiles = (cols + tile - 1) / tile;
  const int64_t others = loop.count / (rows * cols);
  const int64_t col_stride = loop.strides[0][last], row_out_stride = out_strides[k];
  parallel_for(0, others * row_tiles * col_tiles, 4, [&](int64_t first, int64_t end) {
    for (int64_t task = first; task < end; ++task) {
      int64_t rest = task / (row_tiles * col_tiles);
      const int64_t r0 = task / col_tiles % row_tiles * tile, c0 = task % col_tiles * tile;
      int64_t in_base = 0, out_base = 0;
      for (int a = last - 1; a >= 0; --a) {  // the other axes' coordinates
        if (a == k) continue;
        const int64_t coordinate = rest % loop.dims[a];
        rest /= loop.dims[a];
        in_base += coordinate * loop.strides[0][a];
        out_base += coordinate * out_strides[a];
      }
      const int64_t r1 = std::min(rows, r0 + tile), c1 = std::min(cols, c0 + tile);
      for (int64_t r = r0; r < r1; ++r) {
        const float* in = x + in_base + r;
        float* out = y + out_base + r * row_out_stride;
        if (accumulate)
          for (int64_t c = c0; c < c1; ++c) out[c] += in[c * col_stride];
        else
          for (int64_t c = c0; c < c1; ++c) out[c] = in[c * col_stride];
      }
    }
  });
  return true;
}

template <class Device>
void run_permute(const shape& x_shape, const std::vector<int>& axes, const float* x, float* y,
                 bool accumulate) {
  if (x_shape.numel() == 0) return;
  const auto loop = permute_loop(x_shape, axes);
  if constexpr (std::is_same_v<Device, cpu>)
    if (permute_tiled_cpu(loop, x, y, accumulate)) return;
  run_binary(Device{}, math::binary_kind::scale, accumulate, loop, x, x, 1.f, y);
}

}  // namespace detail

template <class Device>
void permute(const permute_params& params, const tensor<float, Device>& x, tensor<float, Device>& y) {
  require_shape("permute", "output", y.shape(), permute_output_shape(x.shape(), params));
  detail::run_permute<Device>(x.shape(), detail::normalized_permutation(x.shape(), params.axes),
                              x.data(), y.data(), false);
}

// dx += permute(dy, inverse axes).
template <class Device>
void permute_backward(const permute_params& params, const tensor<float, Device>& dy,
                      tensor<float, Device>& dx) {
  require_shape("permute_backward", "output gradient", dy.shape(),
                permute_output_shape(dx.shape(), params));
  const permute_params inverse = inverse_permutation(dx.shape(), params);
  detail::run_permute<Device>(dy.shape(), inverse.axes, dy.data(), dx.data(), true);
}

// Free: a view of x's storage with another shape of the same element count (shape_error
// naming both shapes otherwise). Writes through the view are seen by x.
template <class T, class Device>
tensor<T, Device> reshape(const tensor<T, Device>& x, const shape& extent) {
  return x.view(extent);
}
// The gradient of a reshape is dy viewed with the input's shape: also free.
template <class Device>
tensor<float, Device> reshape_gradient(const tensor<float, Device>& dy, const shape& input_shape) {
  return dy.view(input_shape);
}
// dx += dy viewed with dx's shape, for code that wants the adding backward contract.
template <class Device>
void reshape_backward(const tensor<float, Device>& dy, tensor<float, Device>& dx) {
  require<shape_error>(dy.numel() == dx.numel(), "reshape_backward: output gradient of shape ",
                       dy.shape().to_string(), " cannot be viewed as input gradient of shape ",
                       dx.shape().to_string());
  add_into(dx, dy.view(dx.shape()));
}

}  // namespace segkit::ops
