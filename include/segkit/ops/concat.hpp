// segkit/ops/concat.hpp — concat a list of tensors along an axis (default 1, channels of NCHW)
// into a preallocated output, and split, its inverse.
// Requires: inputs of one rank whose dimensions agree except along the axis (shape_error
// naming the two shapes and the input's index otherwise); an output of concat_output_shape.
// Guarantees: concat's backward is a split that *adds* into each wanted input gradient
// (nullptr: skipped), and split's backward is a concat that adds into dx. One primitive does
// all four: copying `rows` rows of `width` elements between two pitches (detail::run_copy_rows),
// a memcpy-like loop on the CPU and a grid-stride kernel on CUDA (kernels/concat.cuh).
#pragma once
#include <cstring>
#include <string>
#include <vector>

#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::ops {

struct concat_params {
  int axis = 1;
};

inline shape concat_output_shape(const concat_params& params, const std::vector<shape>& inputs) {
  require<shape_error>(!inputs.empty(), "concat: no inputs");
  const shape& first = inputs[0];
  const int axis = first.normalize_axis(params.axis);
  int64_t total = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const shape& s = inputs[i];
    bool fits = s.rank() == first.rank();
    for (int a = 0; fits && a < s.rank(); ++a) fits = a == axis || s[a] == first[a];
    require<shape_error>(fits, "concat: input ", i, " has shape ", s.to_string(),
                         " but input 0 has shape ", first.to_string(),
                         "; expected them equal except along axis ", axis);
    total += s[axis];
  }
  return first.with(axis, total);
}

namespace detail {

// dst[r * dst_pitch + j] (=|+=) src[r * src_pitch + j] for r < rows, j < width.
inline void run_copy_rows(cpu, const float* src, int64_t src_pitch, float* dst, int64_t dst_pitch,
                          int64_t width, int64_t rows, bool accumulate) {
  parallel_for(0, rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, width)),
               [&](int64_t first, int64_t last) {
                 for (int64_t r = first; r < last; ++r) {
                   const float* s = src + r * src_pitch;
                   float* d = dst + r * dst_pitch;
                   if (accumulate)
                     for (int64_t j = 0; j < width; ++j) d[j] += s[j];
                   else
                     std::memcpy(d, s, size_t(width) * sizeof(float));
                 }
               });
}
#ifdef SEGKIT_WITH_CUDA
void run_copy_rows(cuda, const float* src, int64_t src_pitch, float* dst, int64_t dst_pitch,
                   int64_t width, int64_t rows, bool accumulate);
#endif

template <class Device>
std::vector<shape> shapes_of(const std::vector<tensor<float, Device>>& parts) {
  std::vector<shape> result;
  for (const auto& p : parts) result.push_back(p.shape());
  return result;
}

// For each part: whole tensor [outer, part_extent, inner] <-> part, by run_copy_rows.
template <class Device, class Part>
void for_each_part(const concat_params& params, const shape& whole,
                   const std::vector<shape>& part_shapes, const Part& body) {
  const int axis = whole.normalize_axis(params.axis);
  const int64_t outer = whole.span(0, axis), inner = whole.span(axis + 1, whole.rank());
  int64_t offset = 0;
  for (size_t i = 0; i < part_shapes.size(); ++i) {
    const int64_t width = part_shapes[i][axis] * inner;
    body(i, offset * inner, width, whole[axis] * inner, outer);
    offset += part_shapes[i][axis];
  }
}

}  // namespace detail

template <class Device>
void concat(const concat_params& params, const std::vector<tensor<float, Device>>& inputs,
            tensor<float, Device>& y) {
  const auto shapes = detail::shapes_of(inputs);
  require_shape("concat", "output", y.shape(), concat_output_shape(params, shapes));
  detail::for_each_part<Device>(params, y.shape(), shapes,
                                [&](size_t i, int64_t start, int64_t width, int64_t pitch, int64_t rows) {
                                  if (width * rows == 0) return;
                                  detail::run_copy_rows(Device{}, inputs[i].data(), width,
                                                        y.data() + start, pitch, width, rows, false);
                                });
}

// As above, with the inputs' shapes given so that any gradient may be nullptr (not wanted).
template <class Device>
void concat_backward(const concat_params& params, const tensor<float, Device>& dy,
                     const std::vector<shape>& input_shapes,
                     const std::vector<tensor<float, Device>*>& dxs) {
  require<shape_error>(input_shapes.size() == dxs.size(), "concat_backward: ", input_shapes.size(),
                       " input shapes but ", dxs.size(), " gradients");
  require_shape("concat_backward", "output gradient", dy.shape(),
                concat_output_shape(params, input_shapes));
  for (size_t i = 0; i < dxs.size(); ++i)
    if (dxs[i])
      require_shape("concat_backward", ("gradient " + std::to_string(i)).c_str(), dxs[i]->shape(),
                    input_shapes[i]);
  detail::for_each_part<Device>(params, dy.shape(), input_shapes,
                                [&](size_t i, int64_t start, int64_t width, int64_t pitch, int64_t rows) {
                                  if (!dxs[i] || width * rows == 0) return;
                                  detail::run_copy_rows(Device{}, dy.data() + start, pitch,
                                                        dxs[i]->data(), width, width, rows, true);
                                });
}

// dxs[i] += the part of dy that came from input i. Every gradient must be given here (their
// shapes say where each part lies); to skip some, use the overload taking the input shapes.
template <class Device>
void concat_backward(const concat_params& params, const tensor<float, Device>& dy,
                     const std::vector<tensor<float, Device>*>& dxs) {
  std::vector<shape> shapes;
  for (size_t i = 0; i < dxs.size(); ++i) {
    require<shape_error>(dxs[i] != nullptr, "concat_backward: gradient ", i,
                         " is null; pass the input shapes to skip gradients");
    shapes.push_back(dxs[i]->shape());
  }
  concat_backward(params, dy, shapes, dxs);
}

// Writes consecutive slices of x along the axis into the preallocated outputs (their shapes
// give the split sizes). The output handles share storage with the caller's tensors.
template <class Device>
void split(const concat_params& params, const tensor<float, Device>& x,
           std::vector<tensor<float, Device>>& outputs) {
  const auto shapes = detail::shapes_of(outputs);
  require_shape("split", "input", x.shape(), concat_output_shape(params, shapes));
  detail::for_each_part<Device>(params, x.shape(), shapes,
                                [&](size_t i, int64_t start, int64_t width, int64_t pitch, int64_t rows) {
                                  if (width * rows == 0) return;
                                  detail::run_copy_rows(Device{}, x.data() + start, pitch,
                                                        outputs[i].data(), width, width, rows, false);
                                });
}

// dx += concat(dys).
template <class Device>
void split_backward(const concat_params& params, const std::vector<tensor<float, Device>>& dys,
                    tensor<float, Device>& dx) {
  const auto shapes = detail::shapes_of(dys);
  require_shape("split_backward", "input gradient", dx.shape(), concat_output_shape(params, shapes));
  detail::for_each_part<Device>(params, dx.shape(), shapes,
                                [&](size_t i, int64_t start, int64_t width, int64_t pitch, int64_t rows) {
                                  if (width * rows == 0) return;
                                  detail::run_copy_rows(Device{}, dys[i].data(), width,
                                                        dx.data() + start, pitch, width, rows, true);
                                });
}

}  // namespace segkit::ops
