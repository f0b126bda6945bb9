// segkit/ops/activation.hpp — ReLU, ReLU6, LeakyReLU, GELU (exact, erf form, as PyTorch's
// default), sigmoid and tanh, forward and backward.
// Requires: x, y, dy, dx of one shape (shape_error otherwise). Guarantees: forward writes y
// (y may alias x); backward *adds* dL/dx into dx, reading x and y (either may be what the
// graph kept). The per-element math below is what the CUDA kernel (kernels/activation.cuh)
// runs too.
#pragma once
#include <cmath>
#include <type_traits>

#include "segkit/tensor/config.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::ops {

enum class activation { relu, relu6, leaky_relu, gelu, sigmoid, tanh };

struct activation_params {
  activation kind = activation::relu;
  float negative_slope = 0.01f;  // LeakyReLU only; PyTorch's default
};

inline const char* activation_name(activation kind) {
  switch (kind) {
    case activation::relu: return "relu";
    case activation::relu6: return "relu6";
    case activation::leaky_relu: return "leaky_relu";
    case activation::gelu: return "gelu";
    case activation::sigmoid: return "sigmoid";
    case activation::tanh: return "tanh";
  }
  return "?";
}

namespace math {

template <activation Kind>
SEGKIT_HOST_DEVICE float activate(float x, float negative_slope) {
  if constexpr (Kind == activation::relu) return x > 0.f ? x : 0.f;
  if constexpr (Kind == activation::relu6) return x > 0.f ? (x < 6.f ? x : 6.f) : 0.f;
  if constexpr (Kind == activation::leaky_relu) return x > 0.f ? x : x * negative_slope;
  if constexpr (Kind == activation::gelu) return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
  if constexpr (Kind == activation::sigmoid) return 1.f / (1.f + expf(-x));
  if constexpr (Kind == activation::tanh) return tanhf(x);
  return x;
}

// dy/dx at input x with output y; each kind reads whichever is cheaper.
template <activation Kind>
SEGKIT_HOST_DEVICE float activation_slope(float x, float y, float negative_slope) {
  if constexpr (Kind == activation::relu) return x > 0.f ? 1.f : 0.f;
  if constexpr (Kind == activation::relu6) return (x > 0.f && x < 6.f) ? 1.f : 0.f;
  if constexpr (Kind == activation::leaky_relu) return x > 0.f ? 1.f : negative_slope;
  if constexpr (Kind == activation::gelu) {
    const float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
    const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return cdf + x * pdf;
  }
  if constexpr (Kind == activation::sigmoid) return y * (1.f - y);
  if constexpr (Kind == activation::tanh) return 1.f - y * y;
  return 1.f;
}

}  // namespace math

namespace detail {

template <activation Kind>
using activation_constant = std::integral_constant<activation, Kind>;

// Calls body(activation_constant<kind>{}) with the run-time kind turned into a compile-time
// constant, so each loop is compiled (and vectorised) for one activation.
template <class Body>
void dispatch_activation(activation kind, const Body& body) {
  switch (kind) {
    case activation::relu: return body(activation_constant<activation::relu>{});
    case activation::relu6: return body(activation_constant<activation::relu6>{});
    case activation::leaky_relu: return body(activation_constant<activation::leaky_relu>{});
    case activation::gelu: return body(activation_constant<activation::gelu>{});
    case activation::sigmoid: return body(activation_constant<activation::sigmoid>{});
    case activation::tanh: return body(activation_constant<activation::tanh>{});
  }
}

constexpr int64_t elementwise_grain = 1 << 14;

template <class Device>
void check_activation_shapes(const char* op, const tensor<float, Device>& x,
                             const tensor<float, Device>& y) {
  require_same_shape(op, "input", x.shape(), "output", y.shape());
}

}  // namespace detail

inline void activation_forward(const activation_params& params, const tensor<float, cpu>& x,
                               tensor<float, cpu>& y) {
  detail::check_activation_shapes("activation_forward", x, y);
  const float* in = x.data();
  float* out = y.data();
  const float slope = params.negative_slope;
  detail::dispatch_activation(params.kind, [&](auto kind) {
    parallel_for(0, x.numel(), detail::elementwise_grain, [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) out[i] = math::activate<decltype(kind)::value>(in[i], slope);
    });
  });
}

inline void activation_backward(const activation_params& params, const tensor<float, cpu>& x,
                                const tensor<float, cpu>& y, const tensor<float, cpu>& dy,
                                tensor<float, cpu>& dx) {
  detail::check_activation_shapes("activation_backward", x, y);
  require_same_shape("activation_backward", "input", x.shape(), "output gradient", dy.shape());
  require_same_shape("activation_backward", "input", x.shape(), "input gradient", dx.shape());
  const float *in = x.data(), *out = y.data(), *grad_out = dy.data();
  float* grad_in = dx.data();
  const float slope = params.negative_slope;
  detail::dispatch_activation(params.kind, [&](auto kind) {
    parallel_for(0, x.numel(), detail::elementwise_grain, [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i)
        grad_in[i] += grad_out[i] * math::activation_slope<decltype(kind)::value>(in[i], out[i], slope);
    });
  });
}

#ifdef SEGKIT_WITH_CUDA
void activation_forward(const activation_params& params, const tensor<float, cuda>& x,
                        tensor<float, cuda>& y);
void activation_backward(const activation_params& params, const tensor<float, cuda>& x,
                         const tensor<float, cuda>& y, const tensor<float, cuda>& dy,
                         tensor<float, cuda>& dx);
#endif

}  // namespace segkit::ops
