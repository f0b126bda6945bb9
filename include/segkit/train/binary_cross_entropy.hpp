// segkit/train/binary_cross_entropy.hpp — binary cross-entropy with logits and an ignore value
// (the unity maps of SaF, METHODS.md §1).
// Provides: bce_with_logits_forward / _backward.
// Requires: logits [N, 1, H, W] with int32 targets [N, H, W], or logits and targets of one shape
// (any rank); dlogits of the logits' shape (shape_error naming both shapes otherwise). Every
// target is 0, 1 or ignore_index (value_error naming the value and its position otherwise).
// Guarantees: per element max(x, 0) - x t + log1p(exp(-|x|)) (stable for any x); mean over the
// non-ignored elements (PyTorch's binary_cross_entropy_with_logits on those elements) or sum;
// all ignored gives 0 and a zero gradient (PyTorch: NaN). Backward *adds*
// upstream * dloss/dlogits. CPU sums are deterministic (loss_common.hpp); the CUDA path is in
// kernels/losses.cuh.
#pragma once
#include "segkit/train/loss_common.hpp"

namespace segkit::train {

struct bce_params {
  int32_t ignore_index = 255;
  loss_reduction reduction = loss_reduction::mean;
};

namespace detail {

template <class Device>
void check_bce_shapes(const char* op, const tensor<float, Device>& logits,
                      const tensor<int32_t, Device>& targets) {
  const shape &x = logits.shape(), &t = targets.shape();
  const bool same = x == t;
  const bool channel = x.rank() >= 2 && x[1] == 1 && labels_shape_for(x) == t;
  require<shape_error>(same || channel, op, ": targets has shape ", t.to_string(),
                       " but logits has shape ", x.to_string(),
                       "; expected logits [N, 1, H, W] with targets [N, H, W], or equal shapes");
}

// BCE at element i: pixel weight 1 (counted) or 0 (ignored); returns the label status.
SEGKIT_HOST_DEVICE int bce_element(const float* x, const int32_t* t, int32_t ignore_index,
                                   float* pw, int64_t i, double& sum, double& count) {
  const int status = math::classify_label(t[i], 2, ignore_index);
  pw[i] = status > 0 ? 1.f : 0.f;
  if (status > 0) {
    sum += double(math::bce_with_logits(x[i], float(t[i])));
    count += 1;
  }
  return status;
}

SEGKIT_HOST_DEVICE void bce_element_backward(const float* x, const int32_t* t, const float* pw,
                                             float coef, float* dx, int64_t i) {
  if (pw[i] != 0.f) dx[i] += coef * math::bce_with_logits_gradient(x[i], float(t[i]));
}

inline void throw_bad_target(const char* op, const shape& targets, int64_t index, int32_t value,
                             int32_t ignore_index) {
  throw value_error(segkit::detail::concat_message(
      op, ": target ", value, " at position ", position_of(targets, index), " (flat index ", index,
      ") is not 0, 1 or ignore_index ", ignore_index));
}

}  // namespace detail

inline float bce_with_logits_forward(const bce_params& params, const tensor<float, cpu>& logits,
                                     const tensor<int32_t, cpu>& targets, loss_state<cpu>& state,
                                     workspace<cpu>* ws = nullptr) {
  const char* op = "bce_with_logits_forward";
  detail::check_reduction(op, params.reduction);
  detail::check_bce_shapes(op, logits, targets);
  const int64_t count = logits.numel();
  detail::ensure_capacity(state.pixel_weight, count);
  state.pixels = count;
  auto* partials = (ws ? *ws : default_workspace<cpu>())
                       .reserve_elements<detail::loss_partial>(size_t(detail::loss_chunks(count)));
  const float* x = logits.data();
  const int32_t* t = targets.data();
  float* pw = state.pixel_weight.data();
  const int32_t ignore = params.ignore_index;
  const auto total =
      detail::reduce_pixel_chunks(count, partials, [&](int64_t first, int64_t last, auto& part) {
        for (int64_t i = first; i < last; ++i)
          if (detail::bce_element(x, t, ignore, pw, i, part.sum, part.count) < 0 && part.bad < 0)
            part.bad = i;
      });
  if (total.bad >= 0)
    detail::throw_bad_target(op, targets.shape(), total.bad, t[total.bad], ignore);
  state.counted = static_cast<int64_t>(total.count);
  state.weight_sum = total.count;
  state.scale = params.reduction == loss_reduction::sum ? (total.count > 0 ? 1.0 : 0.0)
                                                        : detail::inverse_or_zero(total.count);
  state.loss = static_cast<float>(total.sum * state.scale);
  return state.loss;
}

inline void bce_with_logits_backward(const bce_params& params, const tensor<float, cpu>& logits,
                                     const tensor<int32_t, cpu>& targets,
                                     const loss_state<cpu>& state, float upstream,
                                     tensor<float, cpu>& dlogits) {
  (void)params;
  const char* op = "bce_with_logits_backward";
  detail::check_bce_shapes(op, logits, targets);
  require_same_shape(op, "logits", logits.shape(), "dlogits", dlogits.shape());
  require<value_error>(state.pixels == logits.numel(), op, ": the state holds a forward over ",
                       state.pixels, " elements but logits has shape ", logits.shape().to_string(),
                       "; run the forward with this state first");
  const float coef = static_cast<float>(double(upstream) * state.scale);
  if (coef == 0.f) return;
  const float* x = logits.data();
  const int32_t* t = targets.data();
  const float* pw = state.pixel_weight.data();
  float* dx = dlogits.data();
  parallel_for(0, logits.numel(), 1 << 14, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) detail::bce_element_backward(x, t, pw, coef, dx, i);
  });
}

#ifdef SEGKIT_WITH_CUDA
float bce_with_logits_forward(const bce_params& params, const tensor<float, cuda>& logits,
                              const tensor<int32_t, cuda>& targets, loss_state<cuda>& state,
                              workspace<cuda>* ws = nullptr);
void bce_with_logits_backward(const bce_params& params, const tensor<float, cuda>& logits,
                              const tensor<int32_t, cuda>& targets, const loss_state<cuda>& state,
                              float upstream, tensor<float, cuda>& dlogits);
#endif

}  // namespace segkit::train
