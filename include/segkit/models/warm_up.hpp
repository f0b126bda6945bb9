// segkit/models/warm_up.hpp — the setup warm-up every model class shares.
// Provides: models::warm_up_model(model, images, ignore_index) -> model_cost.
// Requires: a model of models/model.hpp (device_type, forward, forward_backward,
// visit_parameters, visit_buffers) just set up for `images`.
// Guarantees: runs one forward on zeros under the MAC counter (the returned cost: parameter
// count and MACs per forward), then one training step on zeros with every label ignore_index, so
// every workspace reaches its final size; parameter gradients and buffers (running statistics,
// counters) are exactly as before the call.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "segkit/models/model.hpp"
#include "segkit/nn/parameter.hpp"
#include "segkit/tensor/mac_counter.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::models {

template <class Model>
model_cost warm_up_model(Model& model, const shape& images, int32_t ignore_index) {
  using device_type = typename Model::device_type;
  using tensor_type = tensor<float, device_type>;
  using count_tensor = tensor<int64_t, device_type>;
  std::vector<tensor_type> saved_float;
  // Gradients are saved on the host, and only those not all zero (none, for a model just
  // built), so the warm-up does not hold a second copy of every gradient at setup's peak.
  std::vector<tensor<float, cpu>> saved_grads;
  std::vector<count_tensor> saved_count;
  struct save_buffers {
    std::vector<tensor_type>& floats;
    std::vector<count_tensor>& counts;
    void operator()(const std::string&, tensor_type& t) const { floats.push_back(t.clone()); }
    void operator()(const std::string&, count_tensor& t) const { counts.push_back(t.clone()); }
  };
  model.visit_buffers("", save_buffers{saved_float, saved_count});
  int64_t parameters = 0;
  model.visit_parameters("", [&](const std::string&, nn::parameter<device_type>& p) {
    tensor<float, cpu> host;
    if constexpr (std::is_same_v<device_type, cpu>)
      host = p.grad;  // a handle; cloned below only if needed
    else
      host = to<cpu>(p.grad);
    const bool all_zero =
        std::all_of(host.data(), host.data() + host.numel(), [](float g) { return g == 0.f; });
    saved_grads.push_back(all_zero ? tensor<float, cpu>()
                                   : (std::is_same_v<device_type, cpu> ? host.clone() : host));
    parameters += p.value.numel();
  });

  const tensor_type zeros = tensor_type::zeros(images);
  model_cost cost;
  {
    mac_count_scope scope;
    model.forward(zeros);
    cost = model_cost{parameters, scope.macs()};
  }
  tensor<int32_t, device_type> labels(shape{images[0], images[2], images[3]});
  labels.fill(ignore_index);
  model.forward_backward(zeros, labels);

  size_t next_float = 0, next_count = 0, next_grad = 0;
  struct restore_buffers {
    std::vector<tensor_type>& floats;
    std::vector<count_tensor>& counts;
    size_t& next_float;
    size_t& next_count;
    void operator()(const std::string&, tensor_type& t) const { copy_into(floats[next_float++], t); }
    void operator()(const std::string&, count_tensor& t) const {
      copy_into(counts[next_count++], t);
    }
  };
  model.visit_buffers("", restore_buffers{saved_float, saved_count, next_float, next_count});
  model.visit_parameters("", [&](const std::string&, nn::parameter<device_type>& p) {
    const tensor<float, cpu>& saved = saved_grads[next_grad++];
    if (saved.empty())
      p.grad.zero();
    else
      copy_into(saved, p.grad);
  });
  return cost;
}

}  // namespace segkit::models
