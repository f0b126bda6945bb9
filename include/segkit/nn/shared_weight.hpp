// segkit/nn/shared_weight.hpp — one convolution weight used at two places in a network, with
// the gradient stopped on either use independently (HFGD's class kernels: the coarse path
// trains W, the fine path applies stopgrad(W)).
// A Spec names the weight and fixes its shape:
//   struct class_kernels {
//     static constexpr const char* value = "classifier";   // state-dict name of the weight
//     static constexpr int in_channels = 256, out_channels = 19, kernel = 1;
//     static constexpr bool bias = true;
//   };
//   shared_conv_owner<class_kernels>        holds W (and b); named and initialised like conv
//   shared_conv_use<class_kernels, true>    applies the owner's W; no gradient reaches W here
//   shared_conv_use<class_kernels, false>   applies W and adds its gradient into the owner's
// Requires: the owner comes before every use in the network (setup order), input channels
// equal Spec::in_channels (static_assert). Guarantees: W.grad gets exactly the sum of the
// gradients of its unstopped uses; a stopped use still passes the gradient to its input.
#pragma once
#include <string>

#include "segkit/nn/layers.hpp"

namespace segkit::nn {

template <class Spec>
using shared_conv_recipe = conv<Spec::out_channels, Spec::kernel, 1, -1, 1, 1, Spec::bias>;

template <class Spec>
struct shared_conv_owner {
  template <int C, bool G, class D>
  class layer : public shared_conv_recipe<Spec>::template layer<C, G, D> {
    using base = typename shared_conv_recipe<Spec>::template layer<C, G, D>;
    static_assert(sizeof(channels_must_match<Spec::in_channels, C>) > 0);  // fires its message

   public:
    shape setup(const shape& input, setup_context<D>& context) {
      context.register_shared(std::string(Spec::value) + ".weight", &this->weight);
      if constexpr (Spec::bias)
        context.register_shared(std::string(Spec::value) + ".bias", &this->bias);
      return base::setup(input, context);
    }
  };
};

template <class Spec, bool StopWeightGradient = true>
struct shared_conv_use {
  template <int C, bool G, class D>
  class layer {
    static_assert(sizeof(channels_must_match<Spec::in_channels, C>) > 0);  // fires its message

   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = Spec::out_channels;
    static constexpr bool trainable = !StopWeightGradient, propagates = true,
                          input_wants_grad = G;

    shape setup(const shape& input, setup_context<D>& context) {
      weight_ = context.find_shared(std::string(Spec::value) + ".weight");
      if constexpr (Spec::bias) bias_ = context.find_shared(std::string(Spec::value) + ".bias");
      params_.pad_h = params_.pad_w = (Spec::kernel - 1) / 2;
      y_ = tensor_type(ops::conv2d_output_shape(params_, input, weight_->shape()));
      return y_.shape();
    }
    const tensor_type& forward(const tensor_type& x) {
      ops::conv2d_forward(params_, x, weight_->value, Spec::bias ? &bias_->value : nullptr, y_);
      return y_;
    }
    void backward(const tensor_type& x, const tensor_type& dy, tensor_type* dx) {
      tensor_type* weight_grad = StopWeightGradient ? nullptr : &weight_->grad;
      tensor_type* bias_grad = (StopWeightGradient || !Spec::bias) ? nullptr : &bias_->grad;
      ops::conv2d_backward(params_, x, weight_->value, dy, dx, weight_grad, bias_grad);
    }
    void set_training(bool) {}
    void initialize(std::mt19937_64&) {}  // the owner initialises W
    template <class Visit>
    void visit_parameters(const std::string&, Visit&&) {}  // the owner names W
    template <class Visit>
    void visit_buffers(const std::string&, Visit&&) {}

   private:
    parameter<D>* weight_ = nullptr;
    parameter<D>* bias_ = nullptr;
    ops::conv2d_params params_;
    tensor_type y_;
  };
};

}  // namespace segkit::nn
