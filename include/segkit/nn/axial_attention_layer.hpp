// segkit/nn/axial_attention_layer.hpp — HFGD's axial attention layer (METHODS §2) for the
// static graph: axial_attention<Heads, Residual = true>.
//   q = query(x), k = key(x), v = value(x)      1x1 convs C -> C with bias
//   y = axial_attention(q, k, v) (+ x when Residual)   ops/axial_attention.hpp, column first
// Requires: C divisible by Heads (a static_assert when the network type is formed).
// Guarantees: the query and key projections start EQUAL (METHODS §2: Q/K initialised equal;
// PyTorch's conv default initialisation for query and value, key copied from query); parameter
// names "query.weight", "query.bias", "key.weight", "key.bias", "value.weight", "value.bias";
// forward and backward allocate nothing after setup (the op's scratch is the default
// workspace); backward adds into dx and the six parameter gradients.
#pragma once
#include "segkit/nn/layer.hpp"
#include "segkit/nn/layers.hpp"
#include "segkit/ops/axial_attention.hpp"
#include "segkit/ops/elementwise.hpp"
#include "segkit/tensor/buffer_pool.hpp"

namespace segkit::nn {

template <int Heads, bool Residual = true>
struct axial_attention {
  static_assert(Heads > 0, "segkit::nn::axial_attention: Heads must be positive");

  template <int C, bool G, class D>
  class layer {
    static_assert(C % Heads == 0,
                  "segkit::nn::axial_attention: the channel count must be divisible by Heads");
    using projection = bind<conv<C, 1, 1, 0, 1, 1, true>, C, G, D>;

   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = C;
    static constexpr bool trainable = true, propagates = true, input_wants_grad = G;

    shape setup(const shape& input, setup_context<D>& context) {
      query.setup(input, context);
      key.setup(input, context);
      value.setup(input, context);
      attended_ = tensor_type(input);
      mid_ = tensor_type(input);
      stats_ = tensor_type(ops::axial_attention_stats_shape(input, params_));
      if constexpr (Residual) y_ = tensor_type(input);
      return input;
    }
    const tensor_type& forward(const tensor_type& x) {
      query_out_ = &query.forward(x);
      key_out_ = &key.forward(x);
      value_out_ = &value.forward(x);
      ops::axial_attention_forward(params_, *query_out_, *key_out_, *value_out_, attended_, mid_,
                                   stats_);
      if constexpr (!Residual) return attended_;
      ops::add(attended_, x, y_);
      return y_;
    }
    // Reads the projections and the op's saved state from the last forward on x.
    void backward(const tensor_type& x, const tensor_type& dy, tensor_type* dx) {
      auto& pool = default_buffer_pool<D>();
      auto dq = pool.take_zeroed(x.shape()), dk = pool.take_zeroed(x.shape()),
           dv = pool.take_zeroed(x.shape());
      ops::axial_attention_backward(params_, *query_out_, *key_out_, *value_out_, mid_,
                                    stats_, dy, &dq.get(), &dk.get(), &dv.get());
      query.backward(x, dq.get(), dx);
      key.backward(x, dk.get(), dx);
      value.backward(x, dv.get(), dx);
      if constexpr (Residual)
        if (dx) ops::add_into(*dx, dy);
    }
    void set_training(bool) {}
    void initialize(std::mt19937_64& rng) {
      query.initialize(rng);
      value.initialize(rng);
      copy_into(query.weight.value, key.weight.value);
      copy_into(query.bias.value, key.bias.value);
    }
    template <class Visit>
    void visit_parameters(const std::string& prefix, Visit&& visit) {
      query.visit_parameters(join_name(prefix, "query"), visit);
      key.visit_parameters(join_name(prefix, "key"), visit);
      value.visit_parameters(join_name(prefix, "value"), visit);
    }
    template <class Visit>
    void visit_buffers(const std::string&, Visit&&) {}

    projection query, key, value;

   private:
    ops::axial_attention_params params_{Heads};
    // The projections' outputs from the last forward (each conv keeps its own output buffer).
    const tensor_type *query_out_ = nullptr, *key_out_ = nullptr, *value_out_ = nullptr;
    tensor_type attended_, mid_, stats_, y_;
  };
};

}  // namespace segkit::nn
