// tests/test_hrnet.cpp — models::hrnet (W18-small-v2) against the PyTorch re-implementation of
// HRNet-official in tests/reference/gen_hrnet.py (tests/golden/hrnet.safetensors): state_dict
// names and shapes, features in train and eval mode, every parameter gradient, running
// statistics; strides, partial gradients, finite differences on late parameters, bad input.
// One instantiation (width 25) keeps the compile time low.
#include <catch2/catch.hpp>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "op_checker.hpp"
#include "parity_helpers.hpp"
#include "segkit/models/hrnet.hpp"

using namespace segkit;
using namespace segkit::testing::parity;
using net_type = models::hrnet<25>;

namespace {
const tensor_file& golden() {
  static const tensor_file file = tensor_file::load(SEGKIT_GOLDEN_DIR "/hrnet.safetensors");
  return file;
}
}  // namespace

TEST_CASE("hrnet names and shapes are HRNet-official's state_dict (no head)", "[hrnet]") {
  auto file = golden();
  net_type net;
  const auto ours = names_and_shapes(net);
  CHECK(ours == key_list(file.metadata().at("names.hrnet18s-w25")));
  // The full-width model has the same keys (only the shapes scale).
  std::set<std::string> full, mine;
  for (const auto& kv : key_list(file.metadata().at("names.hrnet18s"))) full.insert(kv.first);
  for (const auto& kv : ours) mine.insert(kv.first);
  CHECK(full == mine);
  CHECK(full.count("stage4.1.fuse_layers.3.0.2.0.weight") == 1);
  CHECK(full.count("transition3.3.0.0.weight") == 1);
  CHECK(net_type::channels == std::array<int, 4>{4, 9, 18, 36});
  static_assert(models::hrnet<>::channels[0] == 18 && models::hrnet<>::channels[3] == 144);
  CHECK(net_type::name() == "hrnet18s-w25");
}

TEST_CASE("hrnet matches the PyTorch reference: features and gradients (width 25)", "[hrnet]") {
  net_type net;
  fill(net);
  const auto& file = golden();
  const host_tensor<float> x = file.get<float>("hr.input.0");
  const auto shapes = net.setup(x.shape());
  net.eval();
  auto features = net.forward(x);
  for (int k = 0; k < 4; ++k)
    require_close(*features[k], file.get<float>("hr.eval." + std::to_string(k)), 1e-4,
                  "eval feature " + std::to_string(k));
  net.train();
  zero_grad(net);
  features = net.forward(x);
  std::array<host_tensor<float>, 4> r;
  std::array<const host_tensor<float>*, 4> dr{};
  for (int k = 0; k < 4; ++k) {
    require_close(*features[k], file.get<float>("hr.train." + std::to_string(k)), 1e-4,
                  "train feature " + std::to_string(k));
    r[k] = formula_tensor("r" + std::to_string(k), shapes[k]);
    dr[k] = &r[k];
  }
  net.backward(x, dr);
  CHECK(check_gradients(net, file, "hr.", 1e-4) > 100);
}

TEST_CASE("hrnet feature strides and shapes", "[hrnet]") {
  net_type net(3);
  const auto s = net.setup({2, 3, 96, 64});
  CHECK(s[0] == shape{2, 4, 24, 16});
  CHECK(s[1] == shape{2, 9, 12, 8});
  CHECK(s[2] == shape{2, 18, 6, 4});
  CHECK(s[3] == shape{2, 36, 3, 2});
  CHECK(net_type::strides == std::array<int, 4>{4, 8, 16, 32});
}

TEST_CASE("hrnet backward: one feature's gradient reaches every parameter; none does nothing",
          "[hrnet]") {
  net_type net(5);
  const auto shapes = net.setup({1, 3, 64, 64});
  std::mt19937 rng(3);
  const auto x = testing::random_tensor({1, 3, 64, 64}, rng);
  const auto d3 = testing::random_tensor(shapes[3], rng);
  zero_grad(net);
  net.forward(x);
  net.backward(x, {nullptr, nullptr, nullptr, nullptr});
  double total = 0;
  for (auto& [name, p] : parameters_of(net))
    for (int64_t i = 0; i < p->grad.numel(); ++i) total += std::abs(p->grad[i]);
  CHECK(total == 0);
  net.backward(x, {nullptr, nullptr, nullptr, &d3});
  int zero = 0, count = 0;
  for (auto& [name, p] : parameters_of(net)) {
    double sum = 0;
    for (int64_t i = 0; i < p->grad.numel(); ++i) sum += std::abs(p->grad[i]);
    // stage4's last module fuses into output 3 only through fuse_layers.3.*; the branches of
    // that module and everything before it get a gradient.
    const bool other_output = name.rfind("stage4.1.fuse_layers.", 0) == 0 &&
                              name.rfind("stage4.1.fuse_layers.3.", 0) != 0;
    if (other_output) {
      CHECK(sum == 0);
    } else {
      INFO(name);
      CHECK(sum > 0);
      zero += sum == 0;
    }
    ++count;
  }
  CHECK(zero == 0);
  CHECK(count > 100);
}

TEST_CASE("hrnet gradients match finite differences (width 25, eval mode)", "[hrnet]") {
  auto net = std::make_shared<net_type>(11);
  fill(*net);
  const shape in{1, 3, 64, 64};
  net->setup(in);
  net->eval();
  // Late parameters (earlier ones: float32 noise and ReLU kinks through ~30 layers; every
  // gradient is checked against the float64 reference above).
  const std::vector<std::string> checked{"stage4.1.branches.1.1.conv2.weight",
                                         "stage4.1.fuse_layers.0.2.0.weight",
                                         "stage4.1.fuse_layers.3.1.1.0.weight",
                                         "stage4.1.fuse_layers.2.0.1.1.weight",
                                         "stage4.1.branches.3.1.bn2.bias"};
  std::vector<nn::parameter<cpu>*> params;
  const auto all = parameters_of(*net);
  for (const auto& c : checked)
    for (auto& [name, p] : all)
      if (name == c) params.push_back(p);
  REQUIRE(params.size() == checked.size());
  testing::op_case test;
  test.name = "hrnet18s-w25";
  // Kinks: a late BN bias shifts a whole channel, so some ReLU input downstream may lie within
  // the step of zero. Input seed 7 had a kink 1.7e-3 from stage4.1.branches.3.1.bn2.bias
  // element 27 (analytic 4.49; numeric 4.23 in an earlier failing run, 4.44 at step 2e-3,
  // 4.12 at 4e-3). With input seed 23 every checked element also passes at step 4e-3, so the
  // 1e-3 step stays 4x away from any kink; at 1e-3 the float32 noise is ~0.005 (worst element
  // at 0.2 to 0.4 of the tolerance, depending on the build's optimisation).
  std::mt19937 rng(23);
  test.inputs.push_back(testing::random_tensor(in, rng));
  for (auto* p : params) test.inputs.push_back(p->value.clone());
  test.needs_grad.assign(test.inputs.size(), true);
  test.needs_grad[0] = false;
  test.forward = [net, params](const testing::tensors& inputs) {
    for (size_t j = 0; j < params.size(); ++j) copy_into(inputs[j + 1], params[j]->value);
    const auto f = net->forward(inputs[0]);
    return testing::tensors{f[0]->clone(), f[1]->clone(), f[2]->clone(), f[3]->clone()};
  };
  test.backward = [net, params](const testing::tensors& inputs, const testing::tensors&,
                                const testing::tensors& dy, testing::tensors& grads) {
    for (size_t j = 0; j < params.size(); ++j) {
      copy_into(inputs[j + 1], params[j]->value);
      copy_into(grads[j + 1], params[j]->grad);
    }
    net->forward(inputs[0]);
    net->backward(inputs[0], {&dy[0], &dy[1], &dy[2], &dy[3]});
    for (size_t j = 0; j < params.size(); ++j) copy_into(params[j]->grad, grads[j + 1]);
  };
  test.step = 1e-3f;
  test.absolute_tolerance = 1e-2f;
  test.relative_tolerance = 2e-2f;
  test.max_checked_elements = 24;
  testing::check_op(test);
}

TEST_CASE("hrnet rejects bad input", "[hrnet]") {
  net_type net;
  CHECK_THROWS_AS(net.forward(host_tensor<float>::zeros({2, 3, 32, 32})), segkit::error);
  CHECK_THROWS_WITH(net.setup({2, 4, 32, 32}), Catch::Contains("[2, 4, 32, 32]"));
  CHECK_THROWS_WITH(net.setup({2, 3, 48, 32}), Catch::Contains("[2, 3, 48, 32]") &&
                                                   Catch::Contains("multiples of 32"));
  net.setup({2, 3, 32, 32});
  CHECK_THROWS_WITH(net.forward(host_tensor<float>::zeros({2, 3, 32, 64})),
                    Catch::Contains("[2, 3, 32, 64]") && Catch::Contains("[2, 3, 32, 32]"));
  const auto x = host_tensor<float>::zeros({2, 3, 32, 32});
  net.forward(x);
  const auto bad = host_tensor<float>::zeros({2, 36, 2, 2});
  CHECK_THROWS_WITH(net.backward(x, {nullptr, nullptr, nullptr, &bad}),
                    Catch::Contains("[2, 36, 2, 2]") && Catch::Contains("[2, 36, 1, 1]"));
}
