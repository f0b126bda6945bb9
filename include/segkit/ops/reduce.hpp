// segkit/ops/reduce.hpp — sum and mean over a set of axes, with or without keepdim.
// Requires: axes within the input's rank (negative allowed), no axis twice (value_error);
// an output of reduce_output_shape (shape_error naming both shapes otherwise). An empty axis
// list reduces every axis; a full reduction without keepdim gives shape [1] (segkit shapes have
// rank >= 1).
// Guarantees: the CPU sums in double, in fixed chunks summed in order, so results do not
// depend on the thread count; backward *adds* the output gradient broadcast over the reduced
// axes (times 1/count for mean). Runs on the strided-loop executors of elementwise.hpp.
#pragma once
#include <vector>

#include "segkit/ops/elementwise.hpp"

namespace segkit::ops {

struct reduce_params {
  std::vector<int> axes;  // empty: all axes
  bool keepdim = false;
};

namespace detail {
// Which axes of x are reduced (normalised, checked).
inline std::vector<bool> reduced_axes(const shape& x, const reduce_params& params) {
  std::vector<bool> reduced(static_cast<size_t>(x.rank()), params.axes.empty());
  for (int axis : params.axes) {
    const int a = x.normalize_axis(axis);
    require<value_error>(!reduced[size_t(a)], "reduce: axis ", axis, " is listed twice for shape ",
                         x.to_string());
    reduced[size_t(a)] = true;
  }
  return reduced;
}
}  // namespace detail

// x's shape with every reduced axis set to 1.
inline shape reduce_keepdim_shape(const shape& x, const reduce_params& params) {
  const auto reduced = detail::reduced_axes(x, params);
  std::vector<int64_t> dims = x.dims();
  for (int a = 0; a < x.rank(); ++a)
    if (reduced[size_t(a)]) dims[size_t(a)] = 1;
  return shape(dims);
}

inline shape reduce_output_shape(const shape& x, const reduce_params& params) {
  if (params.keepdim) return reduce_keepdim_shape(x, params);
  const auto reduced = detail::reduced_axes(x, params);
  std::vector<int64_t> dims;
  for (int a = 0; a < x.rank(); ++a)
    if (!reduced[size_t(a)]) dims.push_back(x[a]);
  if (dims.empty()) dims.push_back(1);
  return shape(dims);
}

// Number of input elements summed into each output element.
inline int64_t reduce_count(const shape& x, const reduce_params& params) {
  const auto reduced = detail::reduced_axes(x, params);
  int64_t count = 1;
  for (int a = 0; a < x.rank(); ++a)
    if (reduced[size_t(a)]) count *= x[a];
  return count;
}

namespace detail {
template <class Device>
void reduce_forward(const char* op, const reduce_params& params, const tensor<float, Device>& x,
                    tensor<float, Device>& y, bool average) {
  require_shape(op, "output", y.shape(), reduce_output_shape(x.shape(), params));
  y.zero();
  if (x.empty()) return;
  const int64_t count = reduce_count(x.shape(), params);
  const auto plan = make_reduction_plan(x.shape(), reduce_keepdim_shape(x.shape(), params));
  run_reduce_into(Device{}, plan, x.data(), nullptr, average ? 1.f / float(count) : 1.f,
                  y.data());
}

template <class Device>
void reduce_backward(const char* op, const reduce_params& params, const tensor<float, Device>& dy,
                     tensor<float, Device>& dx, bool average) {
  require_shape(op, "output gradient", dy.shape(), reduce_output_shape(dx.shape(), params));
  if (dx.empty()) return;
  const shape kept = reduce_keepdim_shape(dx.shape(), params);
  const float alpha = average ? 1.f / float(reduce_count(dx.shape(), params)) : 1.f;
  run_binary(Device{}, math::binary_kind::scale, true, broadcast_loop(dx.shape(), kept, kept),
             dy.data(), dy.data(), alpha, dx.data());
}
}  // namespace detail

template <class Device>
void sum(const reduce_params& params, const tensor<float, Device>& x, tensor<float, Device>& y) {
  detail::reduce_forward("sum", params, x, y, false);
}
template <class Device>
void mean(const reduce_params& params, const tensor<float, Device>& x, tensor<float, Device>& y) {
  detail::reduce_forward("mean", params, x, y, true);
}
// dx += dy broadcast over the reduced axes.
template <class Device>
void sum_backward(const reduce_params& params, const tensor<float, Device>& dy,
                  tensor<float, Device>& dx) {
  detail::reduce_backward("sum_backward", params, dy, dx, false);
}
// dx += dy / count broadcast over the reduced axes.
template <class Device>
void mean_backward(const reduce_params& params, const tensor<float, Device>& dy,
                   tensor<float, Device>& dx) {
  detail::reduce_backward("mean_backward", params, dy, dx, true);
}

}  // namespace segkit::ops
