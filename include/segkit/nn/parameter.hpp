// segkit/nn/parameter.hpp — trainable parameters and the naming contract that optimizers and
// checkpoints rely on.
// A parameter is a value and its gradient, same shape, same device. Modules expose their
// state through two visits, with PyTorch state_dict names ("layer1.0.conv1.weight"):
//   module.visit_parameters(prefix, f)  calls f(name, parameter<D>&) for each trainable tensor
//   module.visit_buffers(prefix, f)     calls f(name, tensor<float, D>&) for running statistics
//                                       and f(name, tensor<int64_t, D>&) for counters
//                                       (BatchNorm's num_batches_tracked), so a generic lambda
//                                       must accept both
// Guarantees: each name is visited once per call, always in the same order.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "segkit/tensor/tensor.hpp"

namespace segkit::nn {

template <class Device = cpu>
struct parameter {
  tensor<float, Device> value;
  tensor<float, Device> grad;  // backward adds into it; zero it before each accumulation

  parameter() = default;
  explicit parameter(const shape& extent)
      : value(tensor<float, Device>::zeros(extent)), grad(tensor<float, Device>::zeros(extent)) {}
  const segkit::shape& shape() const { return value.shape(); }
  void zero_grad() { grad.zero(); }
};

// "prefix.name", or just "name" at the top level.
inline std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// A flat list of (name, parameter*) from any module, for optimizers.
template <class Device>
struct named_parameter {
  std::string name;
  parameter<Device>* param;
};

template <class Device = cpu, class Module>
std::vector<named_parameter<Device>> parameters_of(Module& module, const std::string& prefix = "") {
  std::vector<named_parameter<Device>> result;
  module.visit_parameters(prefix, [&](const std::string& name, parameter<Device>& p) {
    result.push_back({name, &p});
  });
  return result;
}

}  // namespace segkit::nn
