// segkit/nn/layer.hpp — what a layer is in segkit's static graph.
//
// A *recipe* is an empty type carrying compile-time hyper-parameters (`conv<64, 3, 2>`). It
// becomes a runnable *layer* when bound to its input channel count, to whether its input
// wants a gradient, and to a device:
//     bind<Recipe, InChannels, InputWantsGrad, Device>  =  Recipe::layer<InChannels, InputWantsGrad, Device>
// Composition (seq, residual, concat, fork) binds its children in turn, so channel counts
// flow through the type and a mismatch is a static_assert when the network type is formed.
//
// Every bound layer provides
//   static constexpr int  out_channels;
//   static constexpr bool trainable;         // owns parameters that want a gradient from its output
//   static constexpr bool propagates;        // a gradient at its output reaches its input
//   static constexpr bool input_wants_grad;  // = the InputWantsGrad it was bound with
//   shape setup(const shape& input, setup_context<Device>&);   // plans (allocates) every buffer
//   const tensor<float, Device>& forward(const tensor<float, Device>& x);  // allocates nothing
//   void backward(const tensor& x, const tensor& dy, tensor* dx);  // ADDS into dx and into
//                                                 // parameter gradients; dx is null when
//                                                 // computes_input_grad<L> is false; any
//                                                 // gradient of its own is leased from
//                                                 // default_buffer_pool() (tensor/buffer_pool.hpp)
//   void set_training(bool);
//   void initialize(std::mt19937_64&);           // PyTorch's default initialisation
//   visit_parameters(prefix, f) / visit_buffers(prefix, f)   (nn/parameter.hpp)
// From these flags the graph derives, at compile time, which backward calls happen at all:
// a layer whose output gets no gradient (it sits behind a stop_gradient) or that has neither
// parameters nor an input wanting a gradient is never called in backward.
#pragma once
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <type_traits>

#include "segkit/nn/parameter.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::nn {

template <class Recipe, int InChannels, bool InputWantsGrad, class Device>
using bind = typename Recipe::template layer<InChannels, InputWantsGrad, Device>;

// The layer computes a gradient for its input.
template <class Layer>
constexpr bool computes_input_grad = Layer::propagates && Layer::input_wants_grad;
// The layer has any backward work at all.
template <class Layer>
constexpr bool has_backward = Layer::trainable || computes_input_grad<Layer>;

// A layer whose backward never reads its own output (conv, batch norm) declares
// `static constexpr bool backward_reads_output = false`; the next activation in a seq may then
// overwrite that output in place. Without the declaration a layer is assumed to read it.
template <class Layer, class = void>
struct backward_reads_output : std::true_type {};
template <class Layer>
struct backward_reads_output<Layer, std::void_t<decltype(Layer::backward_reads_output)>>
    : std::bool_constant<Layer::backward_reads_output> {};

template <class Layer, class = void>
struct can_run_in_place : std::false_type {};
template <class Layer>
struct can_run_in_place<Layer, std::void_t<decltype(Layer::can_run_in_place)>>
    : std::bool_constant<Layer::can_run_in_place> {};

// Whether the output of a layer wants a gradient, given what its input wanted.
template <class Layer>
constexpr bool output_wants_grad = Layer::trainable || computes_input_grad<Layer>;

// Shared state while a network is set up: parameters registered by name so that a second
// use of a weight (shared_conv_use) finds its owner.
template <class Device>
class setup_context {
 public:
  void register_shared(const std::string& key, parameter<Device>* owner) {
    require<error>(shared_.emplace(key, owner).second, "segkit::nn: shared weight \"", key,
                   "\" is owned by two layers; exactly one shared_conv_owner may own it");
  }
  parameter<Device>* find_shared(const std::string& key) const {
    const auto found = shared_.find(key);
    require<error>(found != shared_.end(), "segkit::nn: shared weight \"", key,
                   "\" is used before its owner; place shared_conv_owner earlier in the network");
    return found->second;
  }

 private:
  std::map<std::string, parameter<Device>*> shared_;
};

// Names for children in PyTorch-style state dicts: SEGKIT_NAME(conv1) declares a tag type
// `conv1` to use as named<conv1, conv<64, 7, 2>>.
#define SEGKIT_NAME(identifier)                           \
  struct identifier {                                     \
    static constexpr const char* value = #identifier;     \
  }

template <class Name, class Recipe>
struct named {
  using name_tag = Name;
  template <int C, bool G, class D>
  using layer = bind<Recipe, C, G, D>;
};

// The state-dict name of child `index` of a composition: its tag, else its position
// (as nn.Sequential names its children "0", "1", ...).
template <class Recipe, class = void>
struct has_name_tag : std::false_type {};
template <class Recipe>
struct has_name_tag<Recipe, std::void_t<typename Recipe::name_tag>> : std::true_type {};

template <class Recipe>
std::string child_name(size_t index) {
  if constexpr (has_name_tag<Recipe>::value)
    return Recipe::name_tag::value;
  else
    return std::to_string(index);
}

// Fails to compile with a readable message when a composition joins unequal channel counts;
// the two numbers appear in the "required from" line under it.
template <int Expected, int Got>
struct channels_must_match {
  static_assert(Expected == Got,
                "segkit::nn: channel mismatch: a composition joins tensors with different "
                "channel counts; see channels_must_match<expected, got> in the context above");
  static constexpr bool value = Expected == Got;
};

// Uniform in [-bound, bound], as torch.nn.init's kaiming_uniform_(a=sqrt(5)) and the bias
// initialisation of nn.Conv2d reduce to: bound = 1 / sqrt(fan_in).
inline void uniform_fill(tensor<float, cpu>& t, float bound, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> pick(-bound, bound);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = pick(rng);
}
template <class Device>
void uniform_fill_on(tensor<float, Device>& t, float bound, std::mt19937_64& rng) {
  if constexpr (std::is_same_v<Device, cpu>) {
    uniform_fill(t, bound, rng);
  } else {
    tensor<float, cpu> host(t.shape());
    uniform_fill(host, bound, rng);
    copy_into(host, t);
  }
}

}  // namespace segkit::nn
