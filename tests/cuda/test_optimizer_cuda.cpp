// CUDA optimizers against the CPU path: the same parameters and gradients on both devices,
// five steps with a changing lr, then parameters and every state tensor (visit_state on both)
// compared; the step count read back from a cuda tensor; a state restored into the cuda
// optimizer from the cpu one continues like the cpu one.
#include <map>
#include <string>

#include "op_checker.hpp"
#include "segkit/train/optimizer.hpp"

using namespace segkit;

namespace {

template <class Device>
struct two_params {
  nn::parameter<Device> weight{shape{3, 37, 129}}, bias{shape{5}};
  template <class F>
  void visit_parameters(const std::string& prefix, F&& f) {
    f(nn::join_name(prefix, "0.weight"), weight);
    f(nn::join_name(prefix, "0.bias"), bias);
  }
};

template <class Optimizer>
std::map<std::string, host_tensor<float>> float_state(Optimizer& opt, int64_t& step) {
  std::map<std::string, host_tensor<float>> state;
  opt.visit_state([&](const std::string& name, auto& t) {
    using element = typename std::decay_t<decltype(t)>::value_type;
    if constexpr (std::is_same_v<element, float>)
      state[name] = to<cpu>(t);
    else
      step = to<cpu>(t)[0];
  });
  return state;
}

template <template <class> class Optimizer, class Options>
void compare_devices(const Options& options, const std::string& label) {
  INFO(label);
  std::mt19937 rng(5);
  two_params<cpu> host;
  two_params<cuda> device;
  host.weight.value = testing::random_tensor(host.weight.shape(), rng);
  host.bias.value = testing::random_tensor(host.bias.shape(), rng);
  device.weight.value = to<cuda>(host.weight.value);
  device.bias.value = to<cuda>(host.bias.value);
  Optimizer<cpu> host_opt(nn::parameters_of(host), options);
  Optimizer<cuda> device_opt(nn::parameters_of<cuda>(device), options);
  for (double lr : {0.05, 0.02, 0.04, 0.01, 0.03}) {
    host.weight.grad = testing::random_tensor(host.weight.shape(), rng);
    host.bias.grad = testing::random_tensor(host.bias.shape(), rng, -0.1f, 0.1f);
    copy_into(host.weight.grad, device.weight.grad);
    copy_into(host.bias.grad, device.bias.grad);
    host_opt.set_lr(lr);
    device_opt.set_lr(lr);
    host_opt.step();
    device_opt.step();
    testing::require_all_close(to<cpu>(device.weight.value), host.weight.value, 1e-6f, 1e-5f,
                               "weight");
    testing::require_all_close(to<cpu>(device.bias.value), host.bias.value, 1e-6f, 1e-5f, "bias");
  }
  int64_t host_step = -1, device_step = -1;
  const auto host_state = float_state(host_opt, host_step);
  const auto device_state = float_state(device_opt, device_step);
  CHECK(host_step == 5);
  CHECK(device_step == 5);
  REQUIRE(host_state.size() == device_state.size());
  for (const auto& [name, value] : host_state) {
    REQUIRE(device_state.count(name) == 1);
    testing::require_all_close(device_state.at(name), value, 1e-6f, 1e-5f, name);
  }

  // Restore the cpu state into the cuda optimizer (parameters too): they continue alike.
  copy_into(host.weight.value, device.weight.value);
  copy_into(host.bias.value, device.bias.value);
  device_opt.visit_state([&](const std::string& name, auto& t) {
    using element = typename std::decay_t<decltype(t)>::value_type;
    if constexpr (std::is_same_v<element, float>)
      copy_into(host_state.at(name), t);
    else
      copy_into(from_vector<int64_t>(shape{1}, {host_step}), t);
  });
  CHECK(device_opt.steps_taken() == 5);
  host.weight.grad = testing::random_tensor(host.weight.shape(), rng);
  copy_into(host.weight.grad, device.weight.grad);
  host_opt.step();
  device_opt.step();
  testing::require_all_close(to<cpu>(device.weight.value), host.weight.value, 1e-6f, 1e-5f,
                             "weight after restore");
  device_opt.zero_grad();
  const auto zeroed = to<cpu>(device.weight.grad);
  for (int64_t i = 0; i < zeroed.numel(); ++i) REQUIRE(zeroed[i] == 0.f);
}

}  // namespace

TEST_CASE("cuda sgd: every variant matches the cpu over five steps, state included") {
  train::sgd_options plain;
  plain.weight_decay = 1e-3;
  compare_devices<train::sgd>(plain, "sgd without momentum");
  train::sgd_options momentum;
  momentum.momentum = 0.9;
  momentum.weight_decay = 1e-4;
  momentum.decay_filter = [](const std::string& name) { return name != "0.bias"; };
  compare_devices<train::sgd>(momentum, "sgd momentum");
  train::sgd_options nesterov = momentum;
  nesterov.nesterov = true;
  compare_devices<train::sgd>(nesterov, "sgd nesterov");
  train::sgd_options dampened = momentum;
  dampened.dampening = 0.3;
  compare_devices<train::sgd>(dampened, "sgd dampening");
}

TEST_CASE("cuda adamw: matches the cpu over five steps, with and without amsgrad") {
  train::adamw_options adam;
  adam.weight_decay = 0.01;
  compare_devices<train::adamw>(adam, "adamw");
  adam.amsgrad = true;
  adam.decay_filter = [](const std::string& name) { return name != "0.bias"; };
  compare_devices<train::adamw>(adam, "adamw amsgrad");
}
