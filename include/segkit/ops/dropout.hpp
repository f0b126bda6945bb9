// segkit/ops/dropout.hpp — inverted dropout: in training each element is zeroed with
// probability p and the survivors scaled by 1/(1-p); in evaluation it is the identity.
// Requires: p in [0, 1] (value_error otherwise; p = 1 zeroes everything, as PyTorch);
// x, y, mask (uint8) of one shape (shape_error naming both otherwise).
// Guarantees: the mask is a counter-based hash of (seed, element index) (math::dropout_keep),
// so the CPU and CUDA paths give the same mask for the same seed, independent of the thread
// count and launch shape; eval writes a mask of ones. y may alias x. Backward *adds*
// dy * mask * scale into dx (scale as in forward).
#pragma once
#include <cmath>
#include <cstdint>

#include "segkit/tensor/config.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::ops {

struct dropout_params {
  float p = 0.5f;
  bool training = true;
  uint64_t seed = 0;
};

namespace math {

SEGKIT_HOST_DEVICE uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// 1 when element `index` survives: the top 32 bits of a hash of (seed, index), read as a
// uniform u in [0, 1), are compared with p as an integer threshold = p * 2^32.
SEGKIT_HOST_DEVICE uint8_t dropout_keep(uint64_t seed, uint64_t index, uint64_t threshold) {
  const uint64_t bits = splitmix64(splitmix64(seed) ^ index) >> 32;
  return bits >= threshold ? 1 : 0;
}

}  // namespace math

namespace detail {

inline void check_dropout(const char* op, const dropout_params& params) {
  require<value_error>(params.p >= 0.f && params.p <= 1.f, op, ": p is ", params.p,
                       ", expected a probability in [0, 1]");
}
inline uint64_t dropout_threshold(float p) {
  return static_cast<uint64_t>(std::ldexp(static_cast<double>(p), 32));
}
// Survivors' factor: 1/(1-p) in training, 1 in eval, 0 when everything is dropped.
inline float dropout_scale(const dropout_params& params) {
  if (!params.training) return 1.f;
  return params.p >= 1.f ? 0.f : 1.f / (1.f - params.p);
}
constexpr int64_t dropout_grain = 1 << 14;

}  // namespace detail

inline shape dropout_output_shape(const shape& x) { return x; }

inline void dropout_forward(const dropout_params& params, const tensor<float, cpu>& x,
                            tensor<float, cpu>& y, tensor<uint8_t, cpu>& mask) {
  detail::check_dropout("dropout_forward", params);
  require_same_shape("dropout_forward", "input", x.shape(), "output", y.shape());
  require_same_shape("dropout_forward", "input", x.shape(), "mask", mask.shape());
  const float* in = x.data();
  float* out = y.data();
  uint8_t* keep = mask.data();
  const uint64_t threshold = detail::dropout_threshold(params.p), seed = params.seed;
  const float factor = detail::dropout_scale(params);
  const bool training = params.training;
  parallel_for(0, x.numel(), detail::dropout_grain, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      const uint8_t k = training ? math::dropout_keep(seed, uint64_t(i), threshold) : 1;
      keep[i] = k;
      out[i] = k ? in[i] * factor : 0.f;
    }
  });
}

// dx += dy * mask * scale.
inline void dropout_backward(const dropout_params& params, const tensor<uint8_t, cpu>& mask,
                             const tensor<float, cpu>& dy, tensor<float, cpu>& dx) {
  detail::check_dropout("dropout_backward", params);
  require_same_shape("dropout_backward", "mask", mask.shape(), "output gradient", dy.shape());
  require_same_shape("dropout_backward", "output gradient", dy.shape(), "input gradient", dx.shape());
  const uint8_t* keep = mask.data();
  const float* grad_out = dy.data();
  float* grad_in = dx.data();
  const float factor = detail::dropout_scale(params);
  parallel_for(0, dy.numel(), detail::dropout_grain, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) grad_in[i] += keep[i] ? grad_out[i] * factor : 0.f;
  });
}

#ifdef SEGKIT_WITH_CUDA
void dropout_forward(const dropout_params& params, const tensor<float, cuda>& x,
                     tensor<float, cuda>& y, tensor<uint8_t, cuda>& mask);
void dropout_backward(const dropout_params& params, const tensor<uint8_t, cuda>& mask,
                      const tensor<float, cuda>& dy, tensor<float, cuda>& dx);
#endif

}  // namespace segkit::ops
