// segkit/train/loss_common.hpp — what the segmentation losses (cross_entropy.hpp,
// binary_cross_entropy.hpp) share: the reduction enum, the per-call state a forward leaves for
// its backward, the per-pixel math run by the CPU loops and the CUDA kernels alike, and the
// CPU's deterministic chunked reduction.
// Guarantees: CPU sums are taken in double over fixed chunks of `loss_pixel_chunk` pixels and
// the chunk partials are added in order, so a loss does not depend on the thread count.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "segkit/tensor/config.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"
#include "segkit/tensor/workspace.hpp"

namespace segkit::train {

enum class loss_reduction { mean, sum };

// What a loss forward leaves for its backward. The caller owns one per loss term and passes the
// same object to forward and backward. Buffers grow to the largest pixel count seen and are
// then reused: no allocation per call once sized.
//   pixel_weight[p]  the weight of pixel p's term in the reduced sum (class weight, or 1;
//                    0 for ignored pixels and for pixels OHEM drops)
//   lse[p]           log-sum-exp over classes at pixel p (cross-entropy and OHEM only)
//   scale            d loss / d sum_p pixel_weight[p] * term[p]: 1/sum(weights) for mean,
//                    1/kept for OHEM, 1 for sum, 0 when nothing counts
template <class Device>
struct loss_state {
  tensor<float, Device> lse;
  tensor<float, Device> pixel_weight;
  int64_t pixels = 0;  // pixel (or element) count of the last forward
  double scale = 0;
  int64_t counted = 0;    // valid pixels (CE, BCE) or kept pixels (OHEM) in the last forward
  double weight_sum = 0;  // sum of the counted pixels' weights
  float threshold = 0;    // OHEM: the probability threshold of the last forward
  float loss = 0;         // the value the last forward returned
};

namespace math {

// 1 = a class in [0, classes), 0 = ignore_index, -1 = anything else (an error).
SEGKIT_HOST_DEVICE int classify_label(int32_t label, int64_t classes, int32_t ignore_index) {
  if (label == ignore_index) return 0;
  return (label >= 0 && label < classes) ? 1 : -1;
}

// log(sum_k exp(x[k * stride])) over n values, max-subtracted; -inf when every value is -inf.
SEGKIT_HOST_DEVICE float log_sum_exp(const float* x, int64_t n, int64_t stride) {
  float m = -INFINITY;
  for (int64_t k = 0; k < n; ++k) m = fmaxf(m, x[k * stride]);
  if (m == -INFINITY) return m;
  float s = 0.f;
  for (int64_t k = 0; k < n; ++k) s += expf(x[k * stride] - m);
  return m + logf(s);
}

// -log softmax(x)_y, from the target logit and the row's log-sum-exp.
SEGKIT_HOST_DEVICE float cross_entropy_term(float target_logit, float lse) {
  return lse - target_logit;
}

// softmax(x)_y: the probability OHEM ranks pixels by.
SEGKIT_HOST_DEVICE float target_probability(float target_logit, float lse) {
  return expf(target_logit - lse);
}

// coef * d(-log softmax(x)_y)/dx_c = coef * (softmax(x)_c - [c == y]).
SEGKIT_HOST_DEVICE float cross_entropy_gradient(float x, float lse, bool is_target, float coef) {
  return coef * (expf(x - lse) - (is_target ? 1.f : 0.f));
}

// BCE with logits for target t in {0, 1}, stable for any x:
//   max(x, 0) - x t + log(1 + exp(-|x|))
SEGKIT_HOST_DEVICE float bce_with_logits(float x, float t) {
  return fmaxf(x, 0.f) - x * t + log1pf(expf(-fabsf(x)));
}

// d bce_with_logits / dx = sigmoid(x) - t, with exp of a non-positive argument only.
SEGKIT_HOST_DEVICE float bce_with_logits_gradient(float x, float t) {
  const float e = expf(-fabsf(x));
  const float sigmoid = x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
  return sigmoid - t;
}

}  // namespace math

namespace detail {

// Pixels per CPU reduction chunk: fixed, so the order of the double sums is fixed too.
constexpr int64_t loss_pixel_chunk = 4096;

// Sums of one chunk. `bad` is the first pixel whose label is invalid, -1 if none.
struct loss_partial {
  double sum = 0;     // sum of weight * term
  double weight = 0;  // sum of weights
  double count = 0;   // pixels counted
  int64_t bad = -1;
};

inline int64_t loss_chunks(int64_t pixels) {
  return (pixels + loss_pixel_chunk - 1) / loss_pixel_chunk;
}

// Runs body(first, last, partial) on every chunk of [0, pixels), in parallel, with the chunk
// partials stored in `partials` (loss_chunks(pixels) entries), and adds them up in order.
template <class Body>
loss_partial reduce_pixel_chunks(int64_t pixels, loss_partial* partials, const Body& body) {
  const int64_t chunks = loss_chunks(pixels);
  parallel_for(0, chunks, 1, [&](int64_t first_chunk, int64_t last_chunk) {
    for (int64_t chunk = first_chunk; chunk < last_chunk; ++chunk) {
      loss_partial part;
      const int64_t first = chunk * loss_pixel_chunk;
      body(first, std::min(pixels, first + loss_pixel_chunk), part);
      partials[chunk] = part;
    }
  });
  loss_partial total;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    total.sum += partials[chunk].sum;
    total.weight += partials[chunk].weight;
    total.count += partials[chunk].count;
    if (total.bad < 0) total.bad = partials[chunk].bad;
  }
  return total;
}

// Grows a state buffer to at least `count` elements; never shrinks (no allocation per call).
template <class Device>
void ensure_capacity(tensor<float, Device>& buffer, int64_t count) {
  if (buffer.numel() < count) buffer = tensor<float, Device>(shape{std::max<int64_t>(count, 1)});
}

// 1 / divisor, or 0 when nothing counts (divisor 0): the loss is then 0 with a zero gradient.
// PyTorch gives NaN for a mean over zero pixels; a crop without labels must not poison
// training, so we give 0.
inline double inverse_or_zero(double divisor) {
  return divisor != 0 ? 1.0 / divisor : 0.0;
}

// The labels of logits [N, C, d1, ...]: [N, d1, ...] ([N] for [N, C]).
inline shape labels_shape_for(const shape& logits) {
  std::vector<int64_t> dims = logits.dims();
  dims.erase(dims.begin() + 1);
  return shape(dims);
}

// "[n, h, w]" coordinates of a flat index into a tensor of shape s.
inline std::string position_of(const shape& s, int64_t index) {
  std::vector<int64_t> coordinates(static_cast<size_t>(s.rank()));
  for (int axis = s.rank() - 1; axis >= 0; --axis) {
    coordinates[size_t(axis)] = s[axis] ? index % s[axis] : 0;
    index = s[axis] ? index / s[axis] : 0;
  }
  std::string text = "[";
  for (size_t i = 0; i < coordinates.size(); ++i)
    text += (i ? ", " : "") + std::to_string(coordinates[i]);
  return text + "]";
}

inline void check_reduction(const char* op, loss_reduction reduction) {
  require<value_error>(reduction == loss_reduction::mean || reduction == loss_reduction::sum, op,
                       ": reduction is ", static_cast<int>(reduction),
                       ", expected loss_reduction::mean or loss_reduction::sum");
}

}  // namespace detail
}  // namespace segkit::train
