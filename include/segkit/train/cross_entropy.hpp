// segkit/train/cross_entropy.hpp — cross-entropy and OHEM cross-entropy over class logits.
// Provides: cross_entropy_forward / _backward (ignore_index, optional class weights, mean or
// sum) and ohem_cross_entropy_forward / _backward (HRNet/OCR's OhemCrossEntropy, METHODS.md §3).
// Requires: logits [N, C, d1, ...] (rank 2 to 5) with int32 labels [N, d1, ...] (logits without
// axis 1; [N, C] takes [N]); optional weight [C]; dlogits of the logits' shape (shape_error
// naming both shapes otherwise). Every label is a class in [0, C) or ignore_index
// (value_error naming the value, its position and C otherwise).
// Guarantees:
//   - mean follows PyTorch: sum_i w[y_i] nll_i / sum_i w[y_i] over non-ignored pixels; sum
//     gives the numerator. When no pixel counts (all ignored, or their weights sum to 0) the
//     loss is 0 and the gradient is zero; PyTorch gives NaN there, but a crop without labels
//     must not poison training.
//   - OHEM: p_i = softmax(x_i)_{y_i} over valid pixels; threshold = max(p_(k), thresh) with p_(k)
//     the k-th smallest (0-based), k = min(max(1, min_kept), n_valid - 1) (HRNet clamps min_kept
//     to >= 1 in its constructor); kept = valid pixels with p < threshold; loss = mean over kept
//     pixels of w[y] nll (a plain mean over kept pixels, as HRNet's pixel_losses.mean(), not
//     divided by the weight sum). No valid or no kept pixel gives 0 (PyTorch: NaN or an index
//     error). The threshold is a constant for backward, as in PyTorch.
//   - forward returns the loss and fills `state` (per-pixel log-sum-exp and pixel weights);
//     backward reads that state (pass the same logits, labels and state) and *adds*
//     upstream * dloss/dlogits into dlogits. Nothing is allocated once state and workspace
//     have grown to the largest shape.
//   - CPU: deterministic for any thread count (fixed-chunk double sums, see loss_common.hpp);
//     OHEM selects p_(k) with std::nth_element. CUDA (kernels/losses.cuh): one thread per
//     pixel, fixed-block double partials summed in order by one block (deterministic); OHEM
//     selects p_(k) exactly by a 4-pass radix select on the float bits (p >= 0, so the bits
//     order like the values), 8 bits per pass, histograms read back to the host.
#pragma once
#include <algorithm>
#include <cstring>

#include "segkit/train/loss_common.hpp"

namespace segkit::train {

struct cross_entropy_params {
  int32_t ignore_index = 255;
  loss_reduction reduction = loss_reduction::mean;
};

struct ohem_params {
  float thresh = 0.7f;        // keep every pixel whose target probability is below this
  int64_t min_kept = 100000;  // ... and at least this many of the hardest (see above)
  int32_t ignore_index = 255;
};

namespace detail {

// logits viewed as [batch, classes, inner]; pixel p = n * inner + i.
struct class_layout {
  int64_t batch = 0, classes = 0, inner = 0;
  SEGKIT_HOST_DEVICE int64_t pixels() const { return batch * inner; }
  // Offset of class 0 of pixel p in the logits.
  SEGKIT_HOST_DEVICE int64_t base(int64_t p) const {
    return p / inner * classes * inner + p % inner;
  }
};

template <class Device>
class_layout check_class_logits(const char* op, const tensor<float, Device>& logits,
                                const tensor<int32_t, Device>& labels,
                                const tensor<float, Device>* weight) {
  const shape& s = logits.shape();
  require<shape_error>(s.rank() >= 2, op, ": logits has shape ", s.to_string(),
                       ", expected [N, C] or [N, C, H, W] (rank 2 to 5)");
  const shape expected = labels_shape_for(s);
  require<shape_error>(labels.shape() == expected, op, ": labels has shape ",
                       labels.shape().to_string(), " but logits has shape ", s.to_string(),
                       "; expected labels of shape ", expected.to_string());
  require<shape_error>(s[1] >= 1, op, ": logits has shape ", s.to_string(),
                       ", expected at least one class on axis 1");
  if (weight)
    require<shape_error>(weight->shape() == shape{s[1]}, op, ": weight has shape ",
                         weight->shape().to_string(), " but logits has shape ", s.to_string(),
                         "; expected weight of shape [", s[1], "]");
  return {s[0], s[1], s.span(2, s.rank())};
}

inline void throw_bad_label(const char* op, const shape& labels, int64_t index, int32_t value,
                            int64_t classes, int32_t ignore_index) {
  throw value_error(segkit::detail::concat_message(
      op, ": label ", value, " at position ", position_of(labels, index), " (flat index ", index,
      ") is outside [0, ", classes, ") and is not ignore_index ", ignore_index));
}

inline void check_ohem(const ohem_params& params) {
  require<value_error>(params.thresh >= 0.f && params.thresh <= 1.f,
                       "ohem_cross_entropy: thresh is ", params.thresh,
                       ", expected a probability in [0, 1]");
  require<value_error>(params.min_kept >= 0, "ohem_cross_entropy: min_kept is ", params.min_kept,
                       ", expected >= 0");
}

// The OHEM rank: HRNet clamps min_kept to >= 1, then indexes min(min_kept, n_valid - 1).
inline int64_t ohem_rank(int64_t min_kept, int64_t valid) {
  return std::min(std::max<int64_t>(1, min_kept), valid - 1);
}

// Marks a pixel that is not valid in the probability buffer: larger than any probability, so
// selection (which sees the float bits as unsigned) ranks it after every valid pixel.
constexpr float ohem_invalid = 2.f;

// The first pass at pixel p: log-sum-exp, label check, and either the pixel weight and
// weighted term (cross-entropy) or the target probability (OHEM; `out` receives it, and
// ohem_invalid for a pixel that is not valid). Returns math::classify_label's status.
SEGKIT_HOST_DEVICE int class_pixel(const class_layout& l, const float* x, const int32_t* labels,
                                   const float* weight, int32_t ignore_index, bool probabilities,
                                   float* lse, float* out, int64_t p, double& sum,
                                   double& weight_sum, double& count) {
  const float* row = x + l.base(p);
  const float row_lse = math::log_sum_exp(row, l.classes, l.inner);
  lse[p] = row_lse;
  const int32_t y = labels[p];
  const int status = math::classify_label(y, l.classes, ignore_index);
  if (status <= 0) {
    out[p] = probabilities ? ohem_invalid : 0.f;
    return status;
  }
  const float target = row[y * l.inner];
  count += 1;
  if (probabilities) {
    out[p] = math::target_probability(target, row_lse);
  } else {
    const float w = weight ? weight[y] : 1.f;
    out[p] = w;
    sum += double(w) * double(math::cross_entropy_term(target, row_lse));
    weight_sum += w;
  }
  return status;
}

// OHEM's second pass at pixel p: `pw[p]` holds the target probability (or ohem_invalid) and
// becomes the pixel weight, 0 unless the pixel is kept (probability < threshold).
SEGKIT_HOST_DEVICE void ohem_keep_pixel(const class_layout& l, const float* x,
                                        const int32_t* labels, const float* weight, float threshold,
                                        const float* lse, float* pw, int64_t p, double& sum,
                                        double& weight_sum, double& count) {
  const float probability = pw[p];
  if (!(probability < threshold)) {  // invalid pixels hold 2 > any threshold
    pw[p] = 0.f;
    return;
  }
  const int32_t y = labels[p];
  const float w = weight ? weight[y] : 1.f;
  pw[p] = w;
  sum += double(w) * double(math::cross_entropy_term(x[l.base(p) + y * l.inner], lse[p]));
  weight_sum += w;
  count += 1;
}

// dlogits at pixel p += factor * pixel_weight[p] * (softmax - onehot), factor = upstream * scale.
SEGKIT_HOST_DEVICE void class_pixel_backward(const class_layout& l, const float* x,
                                             const int32_t* labels, const float* lse,
                                             const float* pw, double factor, float* dx, int64_t p) {
  if (pw[p] == 0.f) return;
  const int64_t base = l.base(p);
  const float coef = static_cast<float>(factor * pw[p]);
  const int32_t y = labels[p];
  for (int64_t c = 0; c < l.classes; ++c)
    dx[base + c * l.inner] +=
        math::cross_entropy_gradient(x[base + c * l.inner], lse[p], c == y, coef);
}

inline void class_pixels_pass(const class_layout& l, const float* x, const int32_t* labels,
                              const float* weight, int32_t ignore_index, bool probabilities,
                              float* lse, float* out, int64_t first, int64_t last,
                              loss_partial& part) {
  for (int64_t p = first; p < last; ++p) {
    const int status = class_pixel(l, x, labels, weight, ignore_index, probabilities, lse, out, p,
                                   part.sum, part.weight, part.count);
    if (status < 0 && part.bad < 0) part.bad = p;
  }
}

inline void class_backward_cpu(const class_layout& l, const float* x, const int32_t* labels,
                               const loss_state<cpu>& state, float upstream, float* dx) {
  const double factor = double(upstream) * state.scale;
  if (factor == 0) return;
  const float* lse = state.lse.data();
  const float* pw = state.pixel_weight.data();
  parallel_for(0, l.pixels(), 256, [&](int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p)
      class_pixel_backward(l, x, labels, lse, pw, factor, dx, p);
  });
}

template <class Device>
void check_class_backward(const char* op, const class_layout& l,
                          const tensor<float, Device>& logits, const loss_state<Device>& state,
                          const tensor<float, Device>& dlogits) {
  require_same_shape(op, "logits", logits.shape(), "dlogits", dlogits.shape());
  require<value_error>(state.pixels == l.pixels() && state.lse.numel() >= l.pixels(), op,
                       ": the state holds a forward over ", state.pixels,
                       " pixels but logits has shape ", logits.shape().to_string(), " (",
                       l.pixels(), " pixels); run the forward with this state first");
}

}  // namespace detail

// Cross-entropy forward; returns the loss and fills `state` for the backward.
inline float cross_entropy_forward(const cross_entropy_params& params,
                                   const tensor<float, cpu>& logits,
                                   const tensor<int32_t, cpu>& labels, loss_state<cpu>& state,
                                   const tensor<float, cpu>* weight = nullptr,
                                   workspace<cpu>* ws = nullptr) {
  const char* op = "cross_entropy_forward";
  detail::check_reduction(op, params.reduction);
  const auto l = detail::check_class_logits(op, logits, labels, weight);
  const int64_t pixels = l.pixels();
  detail::ensure_capacity(state.lse, pixels);
  detail::ensure_capacity(state.pixel_weight, pixels);
  state.pixels = pixels;
  auto* partials = (ws ? *ws : default_workspace<cpu>())
                       .reserve_elements<detail::loss_partial>(size_t(detail::loss_chunks(pixels)));
  const float* x = logits.data();
  const int32_t* y = labels.data();
  const float* w = weight ? weight->data() : nullptr;
  float *lse = state.lse.data(), *pw = state.pixel_weight.data();
  const auto total =
      detail::reduce_pixel_chunks(pixels, partials, [&](int64_t first, int64_t last, auto& part) {
        detail::class_pixels_pass(l, x, y, w, params.ignore_index, false, lse, pw, first, last,
                                  part);
      });
  if (total.bad >= 0)
    detail::throw_bad_label(op, labels.shape(), total.bad, y[total.bad], l.classes,
                            params.ignore_index);
  state.counted = static_cast<int64_t>(total.count);
  state.weight_sum = total.weight;
  state.scale = params.reduction == loss_reduction::sum ? (total.count > 0 ? 1.0 : 0.0)
                                                        : detail::inverse_or_zero(total.weight);
  state.loss = static_cast<float>(total.sum * state.scale);
  return state.loss;
}

// dlogits += upstream * dloss/dlogits, from the state the forward filled.
inline void cross_entropy_backward(const cross_entropy_params& params,
                                   const tensor<float, cpu>& logits,
                                   const tensor<int32_t, cpu>& labels, const loss_state<cpu>& state,
                                   float upstream, tensor<float, cpu>& dlogits) {
  (void)params;
  const char* op = "cross_entropy_backward";
  const auto l = detail::check_class_logits<cpu>(op, logits, labels, nullptr);
  detail::check_class_backward(op, l, logits, state, dlogits);
  detail::class_backward_cpu(l, logits.data(), labels.data(), state, upstream, dlogits.data());
}

// OHEM cross-entropy forward (METHODS.md §3; HRNet's OhemCrossEntropy).
inline float ohem_cross_entropy_forward(const ohem_params& params, const tensor<float, cpu>& logits,
                                        const tensor<int32_t, cpu>& labels, loss_state<cpu>& state,
                                        const tensor<float, cpu>* weight = nullptr,
                                        workspace<cpu>* ws = nullptr) {
  const char* op = "ohem_cross_entropy_forward";
  detail::check_ohem(params);
  const auto l = detail::check_class_logits(op, logits, labels, weight);
  const int64_t pixels = l.pixels();
  detail::ensure_capacity(state.lse, pixels);
  detail::ensure_capacity(state.pixel_weight, pixels);
  state.pixels = pixels;
  // One reserve: chunk partials, then room to gather the valid probabilities.
  const size_t partial_bytes =
      (size_t(detail::loss_chunks(pixels)) * sizeof(detail::loss_partial) + 63) / 64 * 64;
  char* scratch = static_cast<char*>((ws ? *ws : default_workspace<cpu>())
                                         .reserve(partial_bytes + size_t(pixels) * sizeof(float)));
  auto* partials = reinterpret_cast<detail::loss_partial*>(scratch);
  float* gathered = reinterpret_cast<float*>(scratch + partial_bytes);
  const float* x = logits.data();
  const int32_t* y = labels.data();
  const float* w = weight ? weight->data() : nullptr;
  float *lse = state.lse.data(), *pw = state.pixel_weight.data();  // pw holds p until pass 2

  const auto valid =
      detail::reduce_pixel_chunks(pixels, partials, [&](int64_t first, int64_t last, auto& part) {
        detail::class_pixels_pass(l, x, y, w, params.ignore_index, true, lse, pw, first, last,
                                  part);
      });
  if (valid.bad >= 0)
    detail::throw_bad_label(op, labels.shape(), valid.bad, y[valid.bad], l.classes,
                            params.ignore_index);
  const int64_t n_valid = static_cast<int64_t>(valid.count);
  state.counted = 0;
  state.weight_sum = 0;
  state.scale = 0;
  state.loss = 0;
  if (n_valid == 0) {
    std::fill(pw, pw + pixels, 0.f);
    state.threshold = params.thresh;
    return 0.f;
  }
  int64_t count = 0;
  for (int64_t p = 0; p < pixels; ++p)
    if (pw[p] != detail::ohem_invalid) gathered[count++] = pw[p];
  const int64_t k = detail::ohem_rank(params.min_kept, n_valid);
  // Ordered by the float bits: the same order as the values for probabilities (>= 0), and a
  // total order even with NaN logits (NaN would break nth_element's strict weak ordering); the
  // CUDA radix select uses the same order.
  std::nth_element(gathered, gathered + k, gathered + n_valid, [](float a, float b) {
    uint32_t ua, ub;
    std::memcpy(&ua, &a, sizeof(ua));
    std::memcpy(&ub, &b, sizeof(ub));
    return ua < ub;
  });
  const float threshold = std::max(gathered[k], params.thresh);
  state.threshold = threshold;

  const auto kept =
      detail::reduce_pixel_chunks(pixels, partials, [&](int64_t first, int64_t last, auto& part) {
        for (int64_t p = first; p < last; ++p)
          detail::ohem_keep_pixel(l, x, y, w, threshold, lse, pw, p, part.sum, part.weight,
                                  part.count);
      });
  state.counted = static_cast<int64_t>(kept.count);
  state.weight_sum = kept.weight;
  state.scale = detail::inverse_or_zero(kept.count);
  state.loss = static_cast<float>(kept.sum * state.scale);
  return state.loss;
}

inline void ohem_cross_entropy_backward(const ohem_params& params, const tensor<float, cpu>& logits,
                                        const tensor<int32_t, cpu>& labels,
                                        const loss_state<cpu>& state, float upstream,
                                        tensor<float, cpu>& dlogits) {
  (void)params;
  const char* op = "ohem_cross_entropy_backward";
  const auto l = detail::check_class_logits<cpu>(op, logits, labels, nullptr);
  detail::check_class_backward(op, l, logits, state, dlogits);
  detail::class_backward_cpu(l, logits.data(), labels.data(), state, upstream, dlogits.data());
}

#ifdef SEGKIT_WITH_CUDA
float cross_entropy_forward(const cross_entropy_params& params, const tensor<float, cuda>& logits,
                            const tensor<int32_t, cuda>& labels, loss_state<cuda>& state,
                            const tensor<float, cuda>* weight = nullptr,
                            workspace<cuda>* ws = nullptr);
void cross_entropy_backward(const cross_entropy_params& params, const tensor<float, cuda>& logits,
                            const tensor<int32_t, cuda>& labels, const loss_state<cuda>& state,
                            float upstream, tensor<float, cuda>& dlogits);
float ohem_cross_entropy_forward(const ohem_params& params, const tensor<float, cuda>& logits,
                                 const tensor<int32_t, cuda>& labels, loss_state<cuda>& state,
                                 const tensor<float, cuda>* weight = nullptr,
                                 workspace<cuda>* ws = nullptr);
void ohem_cross_entropy_backward(const ohem_params& params, const tensor<float, cuda>& logits,
                                 const tensor<int32_t, cuda>& labels, const loss_state<cuda>& state,
                                 float upstream, tensor<float, cuda>& dlogits);
#endif

}  // namespace segkit::train
