// segkit/nn/attention_layers.hpp — ops::attention2d as layers of the static graph.
//   attention2d_op<Dk, Dv, Heads = 1, Scale = inverse_sqrt, Bias = true>   (a two-input recipe
//     for nn::merge): left = query features [N, C_q, H, W], right = context [N, C_kv, 1, S] or
//     [N, C_kv, H', W'] (S = H' W'); Q = conv1x1(left) -> Dk, K = conv1x1(right) -> Dk,
//     V = conv1x1(right) -> Dv; output [N, Dv, H, W]. SaF/ANL's Attention2D, OCR's object
//     attention (with Conv-BN-ReLU projections built outside).
//   self_attention<Dk, Dv, Heads = 1, Scale = none, Residual = true, Bias = true>   (one input):
//     HFGD's CAE: Q and K 1x1 convs to Dk initialised EQUAL, V to Dv, softmax over the keys,
//     no scaling by default, output + input when Residual (then Dv must equal C).
// Parameters (PyTorch names): "query.weight", "key.weight", "value.weight" (+ ".bias").
// Scale: inverse_sqrt = 1/sqrt(Dk / Heads), none = 1.
// Guarantees: setup() allocates every buffer; forward/backward allocate nothing (the op's
// scratch lives in the default workspace once grown); backward adds into the input gradients.
#pragma once
#include <cmath>

#include "segkit/nn/layer.hpp"
#include "segkit/nn/layers.hpp"
#include "segkit/ops/attention2d.hpp"
#include "segkit/ops/elementwise.hpp"
#include "segkit/tensor/buffer_pool.hpp"

namespace segkit::nn {

enum class attention_scale { inverse_sqrt, none };

namespace detail {
template <int Dk, int Heads, attention_scale Scale>
ops::attention2d_params attention_params() {
  return {Heads, Scale == attention_scale::none ? 1.f : 1.f / std::sqrt(float(Dk / Heads))};
}
template <int Out, bool Bias>
using projection = conv<Out, 1, 1, 0, 1, 1, Bias>;
}  // namespace detail

template <int Dk, int Dv, int Heads = 1, attention_scale Scale = attention_scale::inverse_sqrt,
          bool Bias = true>
struct attention2d_op {
  static_assert(Dk > 0 && Dv > 0 && Heads > 0 && Dk % Heads == 0 && Dv % Heads == 0,
                "segkit::nn::attention2d_op: Heads must divide Dk and Dv");
  template <int LeftC, int RightC, bool LeftG, bool RightG, class D>
  class layer {
    using query_type = bind<detail::projection<Dk, Bias>, LeftC, LeftG, D>;
    using key_type = bind<detail::projection<Dk, Bias>, RightC, RightG, D>;
    using value_type = bind<detail::projection<Dv, Bias>, RightC, RightG, D>;

   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = Dv;
    static constexpr bool trainable = true, propagates_left = true, propagates_right = true;

    shape setup(const shape& left, const shape& right, setup_context<D>& context) {
      const shape q = query_.setup(left, context), k = key_.setup(right, context);
      const shape v = value_.setup(right, context);
      y_ = tensor_type(ops::attention2d_output_shape(params_, q, k, v));
      lse_ = tensor_type(ops::attention2d_lse_shape(params_, q, k, v));
      return y_.shape();
    }
    const tensor_type& forward(const tensor_type& a, const tensor_type& b) {
      q_ = &query_.forward(a), k_ = &key_.forward(b), v_ = &value_.forward(b);
      ops::attention2d_forward(params_, *q_, *k_, *v_, y_, lse_);
      return y_;
    }
    void backward(const tensor_type& a, const tensor_type& b, const tensor_type& dy,
                  tensor_type* da, tensor_type* db) {
      auto& pool = default_buffer_pool<D>();
      auto dq = pool.take_zeroed(q_->shape()), dk = pool.take_zeroed(k_->shape()),
           dv = pool.take_zeroed(v_->shape());
      ops::attention2d_backward(params_, *q_, *k_, *v_, y_, lse_, dy, &dq.get(), &dk.get(),
                                &dv.get());
      query_.backward(a, dq.get(), da);
      key_.backward(b, dk.get(), db);
      value_.backward(b, dv.get(), db);
    }
    void set_training(bool) {}
    void initialize(std::mt19937_64& rng) {
      query_.initialize(rng), key_.initialize(rng), value_.initialize(rng);
    }
    template <class Visit>
    void visit_parameters(const std::string& prefix, Visit&& visit) {
      query_.visit_parameters(join_name(prefix, "query"), visit);
      key_.visit_parameters(join_name(prefix, "key"), visit);
      value_.visit_parameters(join_name(prefix, "value"), visit);
    }
    template <class Visit>
    void visit_buffers(const std::string&, Visit&&) {}

   private:
    ops::attention2d_params params_ = detail::attention_params<Dk, Heads, Scale>();
    query_type query_;
    key_type key_;
    value_type value_;
    tensor_type y_, lse_;
    const tensor_type *q_ = nullptr, *k_ = nullptr, *v_ = nullptr;
  };
};

template <int Dk, int Dv, int Heads = 1, attention_scale Scale = attention_scale::none,
          bool Residual = true, bool Bias = true>
struct self_attention {
  static_assert(Dk > 0 && Dv > 0 && Heads > 0 && Dk % Heads == 0 && Dv % Heads == 0,
                "segkit::nn::self_attention: Heads must divide Dk and Dv");
  template <int C, bool G, class D>
  class layer {
    static_assert(!Residual || Dv == C,
                  "segkit::nn::self_attention: a residual output needs Dv == input channels");
    using query_type = bind<detail::projection<Dk, Bias>, C, G, D>;
    using value_type = bind<detail::projection<Dv, Bias>, C, G, D>;

   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = Dv;
    static constexpr bool trainable = true, propagates = true, input_wants_grad = G;

    shape setup(const shape& input, setup_context<D>& context) {
      const shape q = query_.setup(input, context), k = key_.setup(input, context);
      const shape v = value_.setup(input, context);
      attention_ = tensor_type(ops::attention2d_output_shape(params_, q, k, v));
      if constexpr (Residual) y_ = tensor_type(attention_.shape());
      lse_ = tensor_type(ops::attention2d_lse_shape(params_, q, k, v));
      return attention_.shape();
    }
    const tensor_type& forward(const tensor_type& x) {
      q_ = &query_.forward(x), k_ = &key_.forward(x), v_ = &value_.forward(x);
      ops::attention2d_forward(params_, *q_, *k_, *v_, attention_, lse_);
      if constexpr (!Residual) return attention_;
      ops::add(attention_, x, y_);
      return y_;
    }
    void backward(const tensor_type& x, const tensor_type& dy, tensor_type* dx) {
      auto& pool = default_buffer_pool<D>();
      auto dq = pool.take_zeroed(q_->shape()), dk = pool.take_zeroed(k_->shape()),
           dv = pool.take_zeroed(v_->shape());
      ops::attention2d_backward(params_, *q_, *k_, *v_, attention_, lse_, dy, &dq.get(),
                                &dk.get(), &dv.get());
      if constexpr (Residual)
        if (dx) ops::add_into(*dx, dy);
      query_.backward(x, dq.get(), dx);
      key_.backward(x, dk.get(), dx);
      value_.backward(x, dv.get(), dx);
    }
    void set_training(bool) {}
    // Q and K start equal (HFGD/CAR's choice): the key projection copies the query's.
    void initialize(std::mt19937_64& rng) {
      query_.initialize(rng), value_.initialize(rng);
      copy_into(query_.weight.value, key_.weight.value);
      if constexpr (Bias) copy_into(query_.bias.value, key_.bias.value);
    }
    template <class Visit>
    void visit_parameters(const std::string& prefix, Visit&& visit) {
      query_.visit_parameters(join_name(prefix, "query"), visit);
      key_.visit_parameters(join_name(prefix, "key"), visit);
      value_.visit_parameters(join_name(prefix, "value"), visit);
    }
    template <class Visit>
    void visit_buffers(const std::string&, Visit&&) {}

   private:
    ops::attention2d_params params_ = detail::attention_params<Dk, Heads, Scale>();
    query_type query_, key_;
    value_type value_;
    tensor_type attention_, y_, lse_;
    const tensor_type *q_ = nullptr, *k_ = nullptr, *v_ = nullptr;
  };
};

}  // namespace segkit::nn
