// segkit/models/saf_parts.hpp — the SaF head's building blocks (saf_parts::conv_unit,
// cbr_unit: runtime-channel conv / conv-BN-ReLU owning their parameters); the options live in
// models/saf_options.hpp, models/saf_head.hpp assembles the head and holds its contract.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "segkit/models/model.hpp"
#include "segkit/models/saf_options.hpp"
#include "segkit/nn/layer.hpp"
#include "segkit/nn/parameter.hpp"
#include "segkit/ops/activation.hpp"
#include "segkit/ops/attention2d.hpp"
#include "segkit/ops/batch_norm.hpp"
#include "segkit/ops/concat.hpp"
#include "segkit/ops/conv2d.hpp"
#include "segkit/ops/elementwise.hpp"
#include "segkit/ops/pooling.hpp"
#include "segkit/ops/pyramid_fuse.hpp"
#include "segkit/ops/pyramid_ground_truth.hpp"
#include "segkit/ops/pyramid_sampling.hpp"
#include "segkit/tensor/buffer_pool.hpp"
#include "segkit/train/binary_cross_entropy.hpp"
#include "segkit/train/cross_entropy.hpp"

namespace segkit::models {

namespace saf_parts {
using ops::conv2d_params;

// A convolution with runtime channels (weight [out, in, k, k], optional bias).
template <class D>
struct conv_unit {
  using T = tensor<float, D>;
  nn::parameter<D> weight, bias;
  conv2d_params p{};
  bool has_bias = false;
  T y;
  void init(int in, int out, int kernel, int stride, int pad, bool with_bias) {
    weight = nn::parameter<D>({out, in, kernel, kernel});
    has_bias = with_bias;
    if (with_bias) bias = nn::parameter<D>({out});
    p.stride_h = p.stride_w = stride;
    p.pad_h = p.pad_w = pad;
  }
  shape setup(const shape& x) {
    y = T(ops::conv2d_output_shape(p, x, weight.shape()));
    return y.shape();
  }
  const T& forward(const T& x) {
    ops::conv2d_forward(p, x, weight.value, has_bias ? &bias.value : nullptr, y);
    return y;
  }
  void backward(const T& x, const T& dy, T* dx) {
    ops::conv2d_backward(p, x, weight.value, dy, dx, &weight.grad, has_bias ? &bias.grad : nullptr);
  }
  void initialize(std::mt19937_64& rng) {  // PyTorch's default bound 1/sqrt(fan_in)
    const shape& s = weight.shape();
    const float bound = 1.f / std::sqrt(float(s[1] * s[2] * s[3]));
    nn::uniform_fill_on(weight.value, bound, rng);
    if (has_bias) nn::uniform_fill_on(bias.value, bound, rng);
  }
  template <class V>
  void visit(const std::string& prefix, V&& v) {
    v(nn::join_name(prefix, "weight"), weight);
    if (has_bias) v(nn::join_name(prefix, "bias"), bias);
  }
};

// Conv (no bias) -> BN -> ReLU, runtime channels.
template <class D>
struct cbr_unit {
  using T = tensor<float, D>;
  conv_unit<D> conv;
  nn::parameter<D> gamma, beta;
  T running_mean, running_var, saved_mean, saved_inv_std, y;  // y: the BN output, ReLU'd in place
  tensor<int64_t, D> tracked;
  ops::batch_norm_params bn{};
  ops::activation_params act{};  // ReLU, run in place (any kind whose slope reads y would do)
  void init(int in, int out, int kernel) {
    conv.init(in, out, kernel, 1, kernel / 2, false);
    gamma = nn::parameter<D>({out});
    beta = nn::parameter<D>({out});
    running_mean = T({out});
    running_var = T({out});
    saved_mean = T({out});
    saved_inv_std = T({out});
    tracked = tensor<int64_t, D>::zeros({1});
    reset_bn();
  }
  void reset_bn() {
    gamma.value.fill(1.f);
    beta.value.zero();
    running_mean.zero();
    running_var.fill(1.f);
    tracked.zero();
  }
  shape setup(const shape& x) {
    const shape s = conv.setup(x);
    y = T(s);
    return s;
  }
  const T& forward(const T& x) {
    ops::batch_norm_forward(bn, conv.forward(x), gamma.value, beta.value, running_mean, running_var,
                            y, saved_mean, saved_inv_std);
    if (bn.training) count();
    ops::activation_forward(act, y, y);  // ReLU's slope reads its output: in place is exact
    return y;
  }
  void backward(const T& x, const T& dy, T* dx) {
    auto& pool = default_buffer_pool<D>();
    auto dbn = pool.take_zeroed(y.shape());
    ops::activation_backward(act, y, y, dy, dbn.get());
    auto dconv = pool.take_zeroed(y.shape());
    ops::batch_norm_backward(bn, conv.y, gamma.value, saved_mean, saved_inv_std, dbn.get(),
                             &dconv.get(), &gamma.grad, &beta.grad);
    dbn.release();
    conv.backward(x, dconv.get(), dx);
  }
  void count() {
    if constexpr (std::is_same_v<D, cpu>) {
      tracked[0] += 1;
    } else {
      tensor<int64_t, cpu> h(tracked.shape());
      copy_into(tracked, h);
      h[0] += 1;
      copy_into(h, tracked);
    }
  }
  void initialize(std::mt19937_64& rng) {
    conv.initialize(rng);
    reset_bn();
  }
  // PyTorch names: <conv_name>.weight, <bn_name>.{weight,bias,...}
  template <class V>
  void visit_parameters(const std::string& conv_name, const std::string& bn_name, V&& v) {
    conv.visit(conv_name, v);
    v(nn::join_name(bn_name, "weight"), gamma);
    v(nn::join_name(bn_name, "bias"), beta);
  }
  template <class V>
  void visit_buffers(const std::string& bn_name, V&& v) {
    v(nn::join_name(bn_name, "running_mean"), running_mean);
    v(nn::join_name(bn_name, "running_var"), running_var);
    v(nn::join_name(bn_name, "num_batches_tracked"), tracked);
  }
};

}  // namespace saf_parts
}  // namespace segkit::models

