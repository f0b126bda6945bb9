// segkit/nn/network.hpp — a network type ready to train: network<InChannels, Recipe, Device>.
//   using net_t = nn::network<3, nn::seq<nn::conv<16>, nn::batch_norm, nn::relu, nn::conv<4, 1>>>;
//   net_t net(/*seed=*/1);
//   net.setup({8, 3, 64, 64});            // plans every buffer, warms the shared workspaces
//   auto& y = net.forward(x);  net.backward(dy);  // allocate nothing after setup
// Requires: forward's input has exactly the shape given to setup; backward follows a forward
// with the same input still alive. Guarantees: backward ADDS into parameter gradients
// (zero_grad() clears them); running statistics change only in training mode; setup leaves
// parameters, gradients and buffers exactly as they were. Multi-output graphs (fork) take one
// gradient per output in backward. cost() is the parameter count and the MACs of one forward at
// the last setup shape (tensor/mac_counter.hpp), measured on setup's warm-up forward.
#pragma once
#include <array>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

#include "segkit/nn/branches.hpp"
#include "segkit/nn/layers.hpp"
#include "segkit/nn/merge.hpp"
#include "segkit/nn/sequence.hpp"
#include "segkit/nn/shared_weight.hpp"
#include "segkit/models/model.hpp"
#include "segkit/tensor/mac_counter.hpp"

namespace segkit::nn {

template <class Layer, class = void>
struct output_count_of : std::integral_constant<size_t, 1> {};
template <class Layer>
struct output_count_of<Layer, std::void_t<decltype(Layer::output_count)>>
    : std::integral_constant<size_t, Layer::output_count> {};

template <int InChannels, class Recipe, class Device = cpu>
class network {
 public:
  using graph_type = bind<Recipe, InChannels, false, Device>;
  using tensor_type = tensor<float, Device>;
  static constexpr int in_channels = InChannels;
  static constexpr int out_channels = graph_type::out_channels;
  static constexpr size_t output_count = output_count_of<graph_type>::value;

  explicit network(uint64_t seed = 0) { initialize(seed); }

  // PyTorch's default initialisation, reproducible from the seed.
  void initialize(uint64_t seed) {
    std::mt19937_64 rng(seed);
    graph_.initialize(rng);
  }

  shape setup(const shape& input) {
    require<shape_error>(input.rank() == 4 && input[1] == InChannels,
                         "network setup: input shape ", input.to_string(),
                         " does not fit a network built for [N, ", InChannels, ", H, W]");
    setup_context<Device> context;
    output_shape_ = graph_.setup(input, context);
    input_shape_ = input;
    warm_up();
    return output_shape_;
  }
  const shape& input_shape() const { return input_shape_; }
  const shape& output_shape() const { return output_shape_; }

  const tensor_type& forward(const tensor_type& x) {
    require<error>(input_shape_.rank() > 0, "network forward: call setup(input shape) first");
    require_shape("network forward", "input", x.shape(), input_shape_);
    input_ = &x;
    return graph_.forward(x);
  }
  void backward(const tensor_type& dy) {
    static_assert(output_count == 1, "segkit::nn::network: this graph has several outputs; "
                                     "pass one gradient per output to backward");
    require<error>(input_ != nullptr, "network backward: call forward first");
    require_shape("network backward", "output gradient", dy.shape(), output_shape_);
    graph_.backward(*input_, dy, nullptr);
  }
  // One gradient per output (null: that output is not in the loss).
  void backward(const std::array<const tensor_type*, output_count>& dys) {
    require<error>(input_ != nullptr, "network backward: call forward first");
    graph_.backward(*input_, dys, nullptr);
  }

  void zero_grad() {
    graph_.visit_parameters("", [](const std::string&, parameter<Device>& p) { p.zero_grad(); });
  }
  void train() { set_training(true); }
  void eval() { set_training(false); }
  bool training() const { return training_; }

  template <class Visit>
  void visit_parameters(const std::string& prefix, Visit&& visit) {
    graph_.visit_parameters(prefix, visit);
  }
  template <class Visit>
  void visit_buffers(const std::string& prefix, Visit&& visit) {
    graph_.visit_buffers(prefix, visit);
  }
  int64_t parameter_count() {
    int64_t count = 0;
    visit_parameters("", [&](const std::string&, parameter<Device>& p) { count += p.value.numel(); });
    return count;
  }
  // Parameters and MACs of one forward at the last setup shape ({0, 0} before setup).
  models::model_cost cost() const { return cost_; }
  graph_type& graph() { return graph_; }

 private:
  void set_training(bool training) {
    training_ = training;
    graph_.set_training(training);
  }

  // One forward and backward on zeros grows every shared workspace to this shape's needs, so
  // the first real step allocates nothing either. Buffers and gradients are restored.
  void warm_up() {
    std::vector<tensor_type> saved_float;
    std::vector<tensor<int64_t, Device>> saved_count;
    struct save_buffers {
      std::vector<tensor_type>& floats;
      std::vector<tensor<int64_t, Device>>& counts;
      void operator()(const std::string&, tensor_type& t) const { floats.push_back(t.clone()); }
      void operator()(const std::string&, tensor<int64_t, Device>& t) const {
        counts.push_back(t.clone());
      }
    };
    graph_.visit_buffers("", save_buffers{saved_float, saved_count});
    std::vector<tensor_type> saved_grads;
    graph_.visit_parameters("", [&](const std::string&, parameter<Device>& p) {
      saved_grads.push_back(p.grad.clone());
    });

    const tensor_type zeros = tensor_type::zeros(input_shape_);
    {
      mac_count_scope scope(mac_count_scope::isolated);  // a caller's scope does not see it
      forward(zeros);
      cost_.macs = scope.macs();
    }
    cost_.parameters = parameter_count();
    std::vector<tensor_type> output_grads;
    if constexpr (output_count == 1) {
      output_grads.push_back(tensor_type::zeros(output_shape_));
      backward(output_grads[0]);
    } else {
      std::array<const tensor_type*, output_count> dys{};
      for (size_t k = 0; k < output_count; ++k)
        output_grads.push_back(tensor_type::zeros(graph_.output_shape(k)));
      for (size_t k = 0; k < output_count; ++k) dys[k] = &output_grads[k];
      backward(dys);
    }
    input_ = nullptr;

    size_t next_float = 0, next_count = 0, next_grad = 0;
    struct restore_buffers {
      std::vector<tensor_type>& floats;
      std::vector<tensor<int64_t, Device>>& counts;
      size_t& next_float;
      size_t& next_count;
      void operator()(const std::string&, tensor_type& t) const {
        copy_into(floats[next_float++], t);
      }
      void operator()(const std::string&, tensor<int64_t, Device>& t) const {
        copy_into(counts[next_count++], t);
      }
    };
    graph_.visit_buffers("", restore_buffers{saved_float, saved_count, next_float, next_count});
    graph_.visit_parameters("", [&](const std::string&, parameter<Device>& p) {
      copy_into(saved_grads[next_grad++], p.grad);
    });
  }

  graph_type graph_;
  shape input_shape_, output_shape_;
  const tensor_type* input_ = nullptr;
  bool training_ = true;
  models::model_cost cost_;
};

}  // namespace segkit::nn
