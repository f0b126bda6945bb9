// tests/mock_modules.hpp — modules written by hand with PyTorch's state_dict names, for the
// tests of code that only visits modules (checkpoints, optimizers).
#pragma once
#include <string>

#include "segkit/nn/parameter.hpp"

namespace segkit::testing {

// torch.nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), state only.
struct torch_conv_bn {
  segkit::nn::parameter<> conv_weight{shape{4, 3, 3, 3}}, conv_bias{shape{4}};
  segkit::nn::parameter<> bn_weight{shape{4}}, bn_bias{shape{4}};
  host_tensor<float> running_mean = host_tensor<float>::zeros({4});
  host_tensor<float> running_var = host_tensor<float>::zeros({4});
  host_tensor<int64_t> num_batches_tracked = host_tensor<int64_t>::zeros({1});

  template <class F>
  void visit_parameters(const std::string& prefix, F&& f) {
    f(segkit::nn::join_name(prefix, "0.weight"), conv_weight);
    f(segkit::nn::join_name(prefix, "0.bias"), conv_bias);
    f(segkit::nn::join_name(prefix, "1.weight"), bn_weight);
    f(segkit::nn::join_name(prefix, "1.bias"), bn_bias);
  }
  template <class F>
  void visit_buffers(const std::string& prefix, F&& f) {
    f(segkit::nn::join_name(prefix, "1.running_mean"), running_mean);
    f(segkit::nn::join_name(prefix, "1.running_var"), running_var);
    f(segkit::nn::join_name(prefix, "1.num_batches_tracked"), num_batches_tracked);
  }
};

}  // namespace segkit::testing
