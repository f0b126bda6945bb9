// tests/layer_checker.hpp — runs tests/op_checker.hpp's check_op on a layer of the static
// graph: the layer's input and every parameter become the op's inputs, so finite differences
// check the input gradient and every parameter gradient. Also a probe layer that counts its
// backward calls, for the stop-gradient tests.
#pragma once
#include <atomic>
#include <random>
#include <string>
#include <vector>

#include "op_checker.hpp"
#include "segkit/nn/network.hpp"

namespace segkit::testing {

template <class Recipe, int InChannels>
op_case layer_case(const std::string& name, const shape& input_shape, bool training = true,
                   unsigned seed = 99) {
  using layer_type = nn::bind<Recipe, InChannels, /*input wants grad=*/true, cpu>;
  auto layer = std::make_shared<layer_type>();
  auto context = std::make_shared<nn::setup_context<cpu>>();
  std::mt19937_64 init(seed);
  layer->initialize(init);
  layer->setup(input_shape, *context);
  layer->set_training(training);

  std::vector<nn::parameter<cpu>*> params;
  layer->visit_parameters("", [&](const std::string&, nn::parameter<cpu>& p) { params.push_back(&p); });

  op_case test;
  test.name = name;
  std::mt19937 rng(seed);
  test.inputs.push_back(random_tensor(input_shape, rng));
  for (auto* p : params) {
    // Parameters drawn away from zero so products stay well conditioned.
    test.inputs.push_back(random_tensor(p->shape(), rng, 0.2f, 1.f));
  }
  test.forward = [layer, params](const tensors& in) {
    for (size_t j = 0; j < params.size(); ++j) copy_into(in[j + 1], params[j]->value);
    return tensors{layer->forward(in[0]).clone()};
  };
  test.backward = [layer, params](const tensors& in, const tensors&, const tensors& dout,
                                  tensors& din) {
    for (size_t j = 0; j < params.size(); ++j) {
      copy_into(in[j + 1], params[j]->value);
      params[j]->zero_grad();
    }
    (void)layer->forward(in[0]);  // backward reads what the last forward saved
    layer->backward(in[0], dout[0], &din[0]);
    for (size_t j = 0; j < params.size(); ++j)
      for (int64_t i = 0; i < din[j + 1].numel(); ++i) din[j + 1][i] += params[j]->grad[i];
  };
  return test;
}

// A trainable per-channel scale y = s * x that counts how often backward runs.
inline std::atomic<int>& probe_backward_calls() {
  static std::atomic<int> calls{0};
  return calls;
}

struct probe {
  template <int C, bool G, class D>
  struct layer {
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = C;
    static constexpr bool trainable = true, propagates = true, input_wants_grad = G;
    nn::parameter<D> scale;
    layer() : scale(shape{1, C, 1, 1}) {}

    shape setup(const shape& input, nn::setup_context<D>&) {
      y_ = tensor_type(input);
      return input;
    }
    const tensor_type& forward(const tensor_type& x) {
      ops::multiply(x, scale.value, y_);
      return y_;
    }
    void backward(const tensor_type& x, const tensor_type& dy, tensor_type* dx) {
      ++probe_backward_calls();
      ops::multiply_backward(x, scale.value, dy, dx, &scale.grad);
    }
    void set_training(bool) {}
    void initialize(std::mt19937_64&) { scale.value.fill(1.5f); }
    template <class Visit>
    void visit_parameters(const std::string& prefix, Visit&& visit) {
      visit(nn::join_name(prefix, "scale"), scale);
    }
    template <class Visit>
    void visit_buffers(const std::string&, Visit&&) {}

   private:
    tensor_type y_;
  };
};

}  // namespace segkit::testing
