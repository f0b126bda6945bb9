// segkit/ops/elementwise.hpp — add, multiply (NumPy broadcasting up to rank 5), scale, and the
// in-place accumulate add_into(dst, src) that graph code uses to sum gradients.
// Requires: operands whose shapes broadcast (right-aligned; each axis equal or 1), an output of
// the broadcast shape (broadcast_output_shape); shape_error naming both shapes otherwise.
// Guarantees: the output may alias an operand of the output's shape; backward *adds* into the
// gradients and sums over the axes an operand was broadcast along (in double on the CPU, in a
// fixed order, so results do not depend on the thread count).
// NumPy alignment: a [C] operand against [N, C, H, W] broadcasts along W, as in NumPy and
// PyTorch; a per-channel operand is [C, 1, 1] or [1, C, 1, 1].
// How it runs: shapes are reduced to a coalesced strided loop (math::strided_loop: size-1 axes
// dropped, adjacent axes merged where every operand allows), so same-shape operands become one
// flat vectorisable loop and [1, C, 1, 1] x [N, C, H, W] becomes [N, C, H*W] with a scalar per
// inner run. The public functions are templates over the device; only the executors
// (detail::run_binary, detail::run_reduce_into) differ: inline here for cpu, declared here and
// defined in kernels/elementwise.cuh for cuda.
#pragma once
#include <algorithm>
#include <cstdint>

#include "segkit/tensor/config.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"
#include "segkit/tensor/workspace.hpp"

namespace segkit::ops {

namespace math {

// A row-major loop over up to 5 axes, with each of two operands' element strides per axis
// (0 on an axis the operand is broadcast along). Trivially copyable: passed to kernels by value.
struct strided_loop {
  int rank = 0;  // 0: a single element
  int64_t dims[5] = {0, 0, 0, 0, 0};
  int64_t strides[2][5] = {{0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}};
  int64_t count = 1;
};

// Offsets in both operands of the loop's element number `linear` (row-major).
SEGKIT_HOST_DEVICE void loop_offsets(const strided_loop& loop, int64_t linear, int64_t& first,
                                     int64_t& second) {
  first = 0;
  second = 0;
  for (int axis = loop.rank - 1; axis >= 0; --axis) {
    const int64_t extent = loop.dims[axis];
    const int64_t coordinate = linear % extent;
    linear /= extent;
    first += coordinate * loop.strides[0][axis];
    second += coordinate * loop.strides[1][axis];
  }
}

enum class binary_kind { add, multiply, scale };

// out (= or +=) f(a, b): add a + b, multiply a * b, scale alpha * a (b unused).
template <binary_kind Kind>
SEGKIT_HOST_DEVICE float binary(float a, float b, float alpha) {
  if constexpr (Kind == binary_kind::add) return a + b;
  if constexpr (Kind == binary_kind::multiply) return a * b;
  (void)b;
  return alpha * a;
}

}  // namespace math

// The NumPy broadcast of two shapes; shape_error naming both when an axis differs and
// neither side is 1.
inline shape broadcast_output_shape(const shape& a, const shape& b, const char* operation = "broadcast") {
  const int rank = std::max(a.rank(), b.rank());
  std::vector<int64_t> dims(static_cast<size_t>(rank));
  for (int i = 1; i <= rank; ++i) {
    const int64_t da = i <= a.rank() ? a[a.rank() - i] : 1;
    const int64_t db = i <= b.rank() ? b[b.rank() - i] : 1;
    require<shape_error>(da == db || da == 1 || db == 1, operation, ": shapes ", a.to_string(),
                         " and ", b.to_string(), " cannot be broadcast together (axis ",
                         rank - i, ": ", da, " vs ", db, ")");
    dims[static_cast<size_t>(rank - i)] = da == 1 ? db : da;
  }
  return shape(dims);
}
inline shape elementwise_output_shape(const shape& a, const shape& b) {
  return broadcast_output_shape(a, b);
}

namespace detail {

constexpr int64_t binary_grain = 1 << 14;
// Reductions split each output's sum into at most this many fixed chunks of this many terms,
// so small outputs (a per-channel gradient, a full sum) still use every thread.
constexpr int64_t reduce_chunk_terms = 1 << 14;
constexpr int64_t reduce_max_chunks = 64;

// Row-major strides of `s` right-aligned to `rank` axes (leading axes get stride 0).
inline void aligned_strides(const shape& s, int rank, int64_t* strides) {
  int64_t stride = 1;
  for (int axis = rank - 1; axis >= 0; --axis) {
    const int own = axis - (rank - s.rank());
    const int64_t extent = own >= 0 ? s[own] : 1;
    strides[axis] = extent == 1 ? 0 : stride;
    stride *= extent;
  }
}

// Appends an axis, dropping extent-1 axes and merging with the previous axis when both
// operands step through them as one (the coalescing that makes the fast paths).
inline void push_axis(math::strided_loop& loop, int64_t extent, int64_t s0, int64_t s1) {
  loop.count *= extent;
  if (extent == 1) return;
  if (loop.rank > 0) {
    const int last = loop.rank - 1;
    if (loop.strides[0][last] == s0 * extent && loop.strides[1][last] == s1 * extent) {
      loop.dims[last] *= extent;
      loop.strides[0][last] = s0;
      loop.strides[1][last] = s1;
      return;
    }
  }
  loop.dims[loop.rank] = extent;
  loop.strides[0][loop.rank] = s0;
  loop.strides[1][loop.rank] = s1;
  ++loop.rank;
}

// The loop over `out` (contiguous) reading operands of shapes a and b broadcast to it.
inline math::strided_loop broadcast_loop(const shape& out, const shape& a, const shape& b) {
  int64_t sa[5], sb[5];
  aligned_strides(a, out.rank(), sa);
  aligned_strides(b, out.rank(), sb);
  math::strided_loop loop;
  for (int axis = 0; axis < out.rank(); ++axis) push_axis(loop, out[axis], sa[axis], sb[axis]);
  return loop;
}

// Summing a contiguous `big` tensor (times an optional second operand broadcast to it) into a
// `target` that broadcasts to big: kept axes index the target, reduced axes are summed.
struct reduction_plan {
  math::strided_loop kept;     // target elements, in the target's row-major order
  math::strided_loop reduced;  // terms of each sum
};

inline reduction_plan make_reduction_plan(const shape& big, const shape& target,
                                          const shape* second = nullptr) {
  int64_t s_big[5], s_target[5], s_second[5] = {0, 0, 0, 0, 0};
  aligned_strides(big, big.rank(), s_big);
  aligned_strides(target, big.rank(), s_target);
  if (second) aligned_strides(*second, big.rank(), s_second);
  // Row-major strides of big, including its size-1 axes (aligned_strides zeroes those).
  reduction_plan plan;
  for (int axis = 0; axis < big.rank(); ++axis) {
    if (big[axis] == 1) continue;
    if (s_target[axis] == 0)
      push_axis(plan.reduced, big[axis], s_big[axis], s_second[axis]);
    else
      push_axis(plan.kept, big[axis], s_big[axis], s_second[axis]);
  }
  return plan;
}

// Sum of term(o0 + ..., o1 + ...) over reduced terms [first, last) for one kept element.
template <class Term>
SEGKIT_HOST_DEVICE double reduce_range(const math::strided_loop& reduced, int64_t k0, int64_t k1,
                                       int64_t first, int64_t last, const Term& term) {
  double total = 0;
  const int inner_axis = reduced.rank - 1;
  const int64_t inner = reduced.rank ? reduced.dims[inner_axis] : 1;
  const int64_t s0 = reduced.rank ? reduced.strides[0][inner_axis] : 0;
  const int64_t s1 = reduced.rank ? reduced.strides[1][inner_axis] : 0;
  for (int64_t r = first; r < last;) {
    const int64_t left_in_row = inner - r % inner;
    const int64_t run = left_in_row < last - r ? left_in_row : last - r;
    int64_t r0, r1;
    math::loop_offsets(reduced, r, r0, r1);
    r0 += k0;
    r1 += k1;
    for (int64_t j = 0; j < run; ++j) total += double(term(r0 + j * s0, r1 + j * s1));
    r += run;
  }
  return total;
}

// ---- cpu executors --------------------------------------------------------------------------

// out[i] (=|+=) f(a[offset0(i)], b[offset1(i)]) over a loop whose output is contiguous.
template <math::binary_kind Kind, bool Accumulate>
void run_binary_cpu(const math::strided_loop& loop, const float* a, const float* b, float alpha,
                    float* out) {
  auto store = [&](float& dst, float value) {
    if constexpr (Accumulate)
      dst += value;
    else
      dst = value;
  };
  if (loop.rank == 0) {
    if (loop.count) store(out[0], math::binary<Kind>(a[0], b[0], alpha));
    return;
  }
  const int last_axis = loop.rank - 1;
  const int64_t inner = loop.dims[last_axis];
  const int64_t sa = loop.strides[0][last_axis], sb = loop.strides[1][last_axis];
  parallel_for(0, loop.count, binary_grain, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last;) {
      const int64_t run = std::min(inner - i % inner, last - i);
      int64_t oa, ob;
      math::loop_offsets(loop, i, oa, ob);
      const float* pa = a + oa;
      const float* pb = b + ob;
      float* po = out + i;
      if (sa == 1 && sb == 1) {  // same shape: the flat, vectorisable loop
        for (int64_t j = 0; j < run; ++j) store(po[j], math::binary<Kind>(pa[j], pb[j], alpha));
      } else if (sa == 1 && sb == 0) {  // b constant along the run (per-channel broadcast)
        const float vb = *pb;
        for (int64_t j = 0; j < run; ++j) store(po[j], math::binary<Kind>(pa[j], vb, alpha));
      } else if (sa == 0 && sb == 1) {
        const float va = *pa;
        for (int64_t j = 0; j < run; ++j) store(po[j], math::binary<Kind>(va, pb[j], alpha));
      } else {
        for (int64_t j = 0; j < run; ++j)
          store(po[j], math::binary<Kind>(pa[j * sa], pb[j * sb], alpha));
      }
      i += run;
    }
  });
}

inline void run_binary(cpu, math::binary_kind kind, bool accumulate, const math::strided_loop& loop,
                       const float* a, const float* b, float alpha, float* out) {
  using math::binary_kind;
  switch (kind) {
    case binary_kind::add:
      return accumulate ? run_binary_cpu<binary_kind::add, true>(loop, a, b, alpha, out)
                        : run_binary_cpu<binary_kind::add, false>(loop, a, b, alpha, out);
    case binary_kind::multiply:
      return accumulate ? run_binary_cpu<binary_kind::multiply, true>(loop, a, b, alpha, out)
                        : run_binary_cpu<binary_kind::multiply, false>(loop, a, b, alpha, out);
    case binary_kind::scale:
      return accumulate ? run_binary_cpu<binary_kind::scale, true>(loop, a, b, alpha, out)
                        : run_binary_cpu<binary_kind::scale, false>(loop, a, b, alpha, out);
  }
}

// target[t] += scale * sum over reduced terms of src0[o0] (* src1[o1] when src1 is given).
inline void run_reduce_into(cpu, const reduction_plan& plan, const float* src0, const float* src1,
                            float scale, float* target) {
  const int64_t kept = plan.kept.count, terms = plan.reduced.count;
  if (kept == 0) return;
  const int64_t chunks = std::clamp<int64_t>(terms / reduce_chunk_terms, 1, reduce_max_chunks);
  auto partial = [&](int64_t t, int64_t first, int64_t last) {
    int64_t k0, k1;
    math::loop_offsets(plan.kept, t, k0, k1);
    if (src1)
      return reduce_range(plan.reduced, k0, k1, first, last,
                          [&](int64_t o0, int64_t o1) { return src0[o0] * src1[o1]; });
    return reduce_range(plan.reduced, k0, k1, first, last,
                        [&](int64_t o0, int64_t) { return src0[o0]; });
  };
  if (chunks == 1) {
    parallel_for(0, kept, std::max<int64_t>(1, binary_grain / std::max<int64_t>(1, terms)),
                 [&](int64_t first, int64_t last) {
                   for (int64_t t = first; t < last; ++t)
                     target[t] += static_cast<float>(scale * partial(t, 0, terms));
                 });
    return;
  }
  // Fixed chunks (independent of the thread count), summed in order: deterministic.
  double* partials = default_workspace<cpu>().reserve_elements<double>(size_t(kept * chunks));
  parallel_for(0, kept * chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t task = first; task < last; ++task) {
      const int64_t t = task / chunks, c = task % chunks;
      partials[task] = partial(t, terms * c / chunks, terms * (c + 1) / chunks);
    }
  });
  for (int64_t t = 0; t < kept; ++t) {
    double total = 0;
    for (int64_t c = 0; c < chunks; ++c) total += partials[t * chunks + c];
    target[t] += static_cast<float>(scale * total);
  }
}

#ifdef SEGKIT_WITH_CUDA
void run_binary(cuda, math::binary_kind kind, bool accumulate, const math::strided_loop& loop,
                const float* a, const float* b, float alpha, float* out);
void run_reduce_into(cuda, const reduction_plan& plan, const float* src0, const float* src1,
                     float scale, float* target);
#endif

// Adds dy (shape big) into grad (an operand's shape), summing over broadcast axes; times the
// other operand broadcast to big when `other` is given (multiply's gradient).
template <class Device>
void add_broadcast_gradient(const tensor<float, Device>& dy, const tensor<float, Device>* other,
                            float scale, tensor<float, Device>& grad) {
  if (dy.empty() || grad.empty()) return;
  if (grad.shape() == dy.shape() || grad.numel() == dy.numel()) {
    // No reduction: one pass over dy, accumulating into grad.
    const auto loop = broadcast_loop(dy.shape(), dy.shape(), other ? other->shape() : dy.shape());
    if (other)
      run_binary(Device{}, math::binary_kind::multiply, true, loop, dy.data(), other->data(),
                 scale, grad.data());
    else
      run_binary(Device{}, math::binary_kind::scale, true, loop, dy.data(), dy.data(), scale,
                 grad.data());
    return;
  }
  const shape other_shape = other ? other->shape() : dy.shape();
  const auto plan = make_reduction_plan(dy.shape(), grad.shape(), other ? &other_shape : nullptr);
  run_reduce_into(Device{}, plan, dy.data(), other ? other->data() : nullptr, scale, grad.data());
}

template <class Device>
void check_binary(const char* op, const tensor<float, Device>& a, const tensor<float, Device>& b,
                  const tensor<float, Device>& out) {
  const shape expected = broadcast_output_shape(a.shape(), b.shape(), op);
  require<shape_error>(out.shape() == expected, op, ": output has shape ", out.shape().to_string(),
                       ", expected ", expected.to_string(), " (the broadcast of ",
                       a.shape().to_string(), " and ", b.shape().to_string(), ")");
}

template <class Device>
void check_gradient(const char* op, const char* what, const tensor<float, Device>* grad,
                    const shape& expected) {
  if (grad) require_shape(op, what, grad->shape(), expected);
}

}  // namespace detail

// out = a + b (broadcast).
template <class Device>
void add(const tensor<float, Device>& a, const tensor<float, Device>& b, tensor<float, Device>& out) {
  detail::check_binary("add", a, b, out);
  if (out.empty()) return;
  detail::run_binary(Device{}, math::binary_kind::add, false,
                     detail::broadcast_loop(out.shape(), a.shape(), b.shape()), a.data(), b.data(),
                     1.f, out.data());
}

// da += sum over a's broadcast axes of dy; likewise db. a's and b's shapes are da's and db's.
template <class Device>
void add_backward(const tensor<float, Device>& dy, tensor<float, Device>* da,
                  tensor<float, Device>* db) {
  if (da && db)
    require_shape("add_backward", "output gradient", dy.shape(),
                  broadcast_output_shape(da->shape(), db->shape(), "add_backward"));
  for (tensor<float, Device>* grad : {da, db}) {
    if (!grad) continue;
    require<shape_error>(broadcast_output_shape(dy.shape(), grad->shape(), "add_backward") ==
                             dy.shape(),
                         "add_backward: operand gradient of shape ", grad->shape().to_string(),
                         " does not broadcast to the output gradient's shape ",
                         dy.shape().to_string());
    detail::add_broadcast_gradient(dy, static_cast<const tensor<float, Device>*>(nullptr), 1.f,
                                   *grad);
  }
}

// out = a * b (broadcast).
template <class Device>
void multiply(const tensor<float, Device>& a, const tensor<float, Device>& b,
              tensor<float, Device>& out) {
  detail::check_binary("multiply", a, b, out);
  if (out.empty()) return;
  detail::run_binary(Device{}, math::binary_kind::multiply, false,
                     detail::broadcast_loop(out.shape(), a.shape(), b.shape()), a.data(), b.data(),
                     1.f, out.data());
}

// da += reduce(dy * b), db += reduce(dy * a), each over that operand's broadcast axes.
template <class Device>
void multiply_backward(const tensor<float, Device>& a, const tensor<float, Device>& b,
                       const tensor<float, Device>& dy, tensor<float, Device>* da,
                       tensor<float, Device>* db) {
  require_shape("multiply_backward", "output gradient", dy.shape(),
                broadcast_output_shape(a.shape(), b.shape(), "multiply_backward"));
  detail::check_gradient("multiply_backward", "first operand gradient", da, a.shape());
  detail::check_gradient("multiply_backward", "second operand gradient", db, b.shape());
  if (da) detail::add_broadcast_gradient(dy, &b, 1.f, *da);
  if (db) detail::add_broadcast_gradient(dy, &a, 1.f, *db);
}

// y = alpha * x (y may alias x).
template <class Device>
void scale(const tensor<float, Device>& x, float alpha, tensor<float, Device>& y) {
  require_same_shape("scale", "input", x.shape(), "output", y.shape());
  if (x.empty()) return;
  detail::run_binary(Device{}, math::binary_kind::scale, false,
                     detail::broadcast_loop(y.shape(), x.shape(), x.shape()), x.data(), x.data(),
                     alpha, y.data());
}

// dx += alpha * dy.
template <class Device>
void scale_backward(float alpha, const tensor<float, Device>& dy, tensor<float, Device>& dx) {
  require_same_shape("scale_backward", "output gradient", dy.shape(), "input gradient", dx.shape());
  detail::add_broadcast_gradient(dy, static_cast<const tensor<float, Device>*>(nullptr), alpha, dx);
}

// dst += src, where src broadcasts to dst's shape (e.g. a gradient summed into another, or a
// keepdim reduction's gradient spread back over the reduced axes).
template <class Device>
void add_into(tensor<float, Device>& dst, const tensor<float, Device>& src) {
  require<shape_error>(broadcast_output_shape(dst.shape(), src.shape(), "add_into") == dst.shape(),
                       "add_into: source of shape ", src.shape().to_string(),
                       " does not broadcast to the destination's shape ", dst.shape().to_string());
  if (dst.empty()) return;
  detail::run_binary(Device{}, math::binary_kind::scale, true,
                     detail::broadcast_loop(dst.shape(), src.shape(), src.shape()), src.data(),
                     src.data(), 1.f, dst.data());
}

}  // namespace segkit::ops
