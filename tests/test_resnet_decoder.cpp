// tests/test_resnet_decoder.cpp — models::resnet_decoder (SaF supplementary D) against the
// PyTorch module of tests/reference/gen_hrnet.py (tests/golden/resnet_decoder.safetensors):
// names and shapes (the paper's configuration and the test's), outputs in train and eval mode,
// every parameter gradient and the input-feature gradients; partial gradients, finite
// differences, bad input. One small instantiation: inputs 16/32/64/128 (ResNet-18 at width
// 25), Width 8, 2 modules, 1 block.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "op_checker.hpp"
#include "parity_helpers.hpp"
#include "segkit/models/resnet.hpp"
#include "segkit/models/resnet_decoder.hpp"

using namespace segkit;
using namespace segkit::testing::parity;
using decoder_type = models::resnet_decoder_for<models::resnet<18, 25, 32>, 8, 2, 1>;

namespace {
const tensor_file& golden() {
  static const tensor_file file =
      tensor_file::load(SEGKIT_GOLDEN_DIR "/resnet_decoder.safetensors");
  return file;
}
std::array<shape, 4> feature_shapes(int n, int h, int w) {
  return {shape{n, 16, h, w}, shape{n, 32, h / 2, w / 2}, shape{n, 64, h / 4, w / 4},
          shape{n, 128, h / 8, w / 8}};
}
}  // namespace

TEST_CASE("resnet_decoder names and shapes match the reference module", "[resnet_decoder]") {
  auto file = golden();
  decoder_type net;
  const auto ours = names_and_shapes(net);
  CHECK(ours == key_list(file.metadata().at("names.case")));
  // The paper's decoder (Width 48, 3 modules of 4 blocks): HRNet-W48's stage4 names.
  const auto paper = key_list(file.metadata().at("names.decoder48"));
  CHECK(paper.at("reduce.3.0.weight") == "384x2048x3x3");
  CHECK(paper.at("stage4.2.branches.3.3.conv2.weight") == "384x384x3x3");
  CHECK(paper.at("stage4.0.fuse_layers.0.3.0.weight") == "48x384x1x1");
  for (const auto& kv : ours) {  // fewer modules and blocks: a subset of the paper's names
    INFO(kv.first);
    CHECK(paper.count(kv.first) == 1);
  }
  CHECK(paper.size() > 2 * ours.size());
  CHECK(decoder_type::channels == std::array<int, 4>{8, 16, 32, 64});
  static_assert(models::resnet_decoder<256, 512, 1024, 2048>::channels[3] == 384);
  CHECK(decoder_type::name() == "resnet-decoder-w8-m2-b1");
  CHECK((models::resnet_decoder<256, 512, 1024, 2048>::name()) == "resnet-decoder-w48");
}

TEST_CASE("resnet_decoder matches the PyTorch reference: outputs and gradients",
          "[resnet_decoder]") {
  decoder_type net;
  fill(net);
  const auto& file = golden();
  std::array<host_tensor<float>, 4> x;
  std::array<shape, 4> in_shapes;
  decoder_type::features_type xs{};
  for (int k = 0; k < 4; ++k) {
    x[k] = file.get<float>("dec.input." + std::to_string(k));
    in_shapes[k] = x[k].shape();
    xs[k] = &x[k];
  }
  const auto shapes = net.setup(in_shapes);
  net.eval();
  auto out = net.forward(xs);
  for (int k = 0; k < 4; ++k)
    require_close(*out[k], file.get<float>("dec.eval." + std::to_string(k)), 1e-4,
                  "eval output " + std::to_string(k));
  net.train();
  zero_grad(net);
  out = net.forward(xs);
  std::array<host_tensor<float>, 4> r, dx;
  decoder_type::features_type dr{};
  for (int k = 0; k < 4; ++k) {
    require_close(*out[k], file.get<float>("dec.train." + std::to_string(k)), 1e-4,
                  "train output " + std::to_string(k));
    r[k] = formula_tensor("r" + std::to_string(k), shapes[k]);
    dr[k] = &r[k];
    dx[k] = host_tensor<float>::zeros(in_shapes[k]);
  }
  net.backward(xs, dr, {&dx[0], &dx[1], &dx[2], &dx[3]});
  CHECK(check_gradients(net, file, "dec.", 1e-4) > 50);
  for (int k = 0; k < 4; ++k)
    require_close(dx[k], file.get<float>("dec.dinput." + std::to_string(k)), 1e-4,
                  "feature gradient " + std::to_string(k));
}

TEST_CASE("resnet_decoder on a resnet's features: shapes, partial gradients", "[resnet_decoder]") {
  models::resnet<18, 25, 32> backbone(1);
  decoder_type decoder(2);
  const auto f = backbone.setup({2, 3, 64, 96});
  const auto s = decoder.setup(f);
  CHECK(s[0] == shape{2, 8, 16, 24});
  CHECK(s[3] == shape{2, 64, 2, 3});
  std::mt19937 rng(4);
  const auto images = testing::random_tensor({2, 3, 64, 96}, rng);
  const auto feats = backbone.forward(images);
  decoder.forward(feats);
  const auto d0 = testing::random_tensor(s[0], rng);
  // Only feature 2's gradient wanted, only output 0 in the loss: it still reaches every
  // reduction (the fusion mixes all branches) and is added to what is there.
  auto df2 = host_tensor<float>::zeros(f[2]);
  zero_grad(decoder);
  decoder.backward(feats, {&d0, nullptr, nullptr, nullptr}, {nullptr, nullptr, &df2, nullptr});
  double norm = 0;
  for (int64_t i = 0; i < df2.numel(); ++i) norm += std::abs(df2[i]);
  CHECK(norm > 0);
  auto again = df2.clone();
  decoder.backward(feats, {&d0, nullptr, nullptr, nullptr}, {nullptr, nullptr, &again, nullptr});
  for (int64_t i = 0; i < df2.numel(); i += 7) CHECK(again[i] == Approx(2 * df2[i]).margin(1e-5));
  // No output gradient: nothing changes.
  const auto before = df2.clone();
  decoder.backward(feats, {nullptr, nullptr, nullptr, nullptr}, {nullptr, nullptr, &df2, nullptr});
  for (int64_t i = 0; i < df2.numel(); ++i) REQUIRE(df2[i] == before[i]);
  // Backbone + decoder train end to end: the decoder's feature gradients go into the backbone.
  std::array<host_tensor<float>, 4> df;
  for (int k = 0; k < 4; ++k) df[k] = host_tensor<float>::zeros(f[k]);
  decoder.backward(feats, {&d0, nullptr, nullptr, nullptr}, {&df[0], &df[1], &df[2], &df[3]});
  backbone.backward(images, {&df[0], &df[1], &df[2], &df[3]});
}

TEST_CASE("resnet_decoder gradients match finite differences (eval mode)", "[resnet_decoder]") {
  auto net = std::make_shared<decoder_type>(11);
  fill(*net);
  const auto in = feature_shapes(1, 16, 16);
  net->setup(in);
  net->eval();
  const std::vector<std::string> checked{"stage4.1.branches.2.0.conv2.weight",
                                         "stage4.1.fuse_layers.0.3.0.weight",
                                         "stage4.1.fuse_layers.3.1.1.0.weight"};
  std::vector<nn::parameter<cpu>*> params;
  const auto all = parameters_of(*net);
  for (const auto& c : checked)
    for (auto& [name, p] : all)
      if (name == c) params.push_back(p);
  REQUIRE(params.size() == checked.size());
  testing::op_case test;
  test.name = "resnet-decoder-w8-m2-b1";
  std::mt19937 rng(7);
  for (int k = 0; k < 4; ++k) test.inputs.push_back(testing::random_tensor(in[k], rng));
  for (auto* p : params) test.inputs.push_back(p->value.clone());
  test.needs_grad.assign(test.inputs.size(), true);
  test.forward = [net, params](const testing::tensors& inputs) {
    for (size_t j = 0; j < params.size(); ++j) copy_into(inputs[j + 4], params[j]->value);
    const auto f = net->forward({&inputs[0], &inputs[1], &inputs[2], &inputs[3]});
    return testing::tensors{f[0]->clone(), f[1]->clone(), f[2]->clone(), f[3]->clone()};
  };
  test.backward = [net, params](const testing::tensors& inputs, const testing::tensors&,
                                const testing::tensors& dy, testing::tensors& grads) {
    for (size_t j = 0; j < params.size(); ++j) {
      copy_into(inputs[j + 4], params[j]->value);
      copy_into(grads[j + 4], params[j]->grad);
    }
    net->forward({&inputs[0], &inputs[1], &inputs[2], &inputs[3]});
    net->backward({&inputs[0], &inputs[1], &inputs[2], &inputs[3]}, {&dy[0], &dy[1], &dy[2], &dy[3]},
                  {&grads[0], &grads[1], &grads[2], &grads[3]});
    for (size_t j = 0; j < params.size(); ++j) copy_into(params[j]->grad, grads[j + 4]);
  };
  test.step = 1e-3f;
  test.absolute_tolerance = 1e-2f;
  test.relative_tolerance = 2e-2f;
  test.max_checked_elements = 16;
  testing::check_op(test);
}

TEST_CASE("resnet_decoder rejects bad input", "[resnet_decoder]") {
  decoder_type net;
  auto s = feature_shapes(2, 16, 16);
  s[1] = shape{2, 32, 9, 8};
  CHECK_THROWS_WITH(net.setup(s), Catch::Contains("[2, 32, 9, 8]") && Catch::Contains("[2, 16, 16, 16]"));
  s = feature_shapes(2, 16, 16);
  s[2] = shape{2, 60, 4, 4};
  CHECK_THROWS_WITH(net.setup(s), Catch::Contains("[2, 60, 4, 4]") && Catch::Contains("64"));
  const auto x = host_tensor<float>::zeros({2, 16, 16, 16});
  CHECK_THROWS_AS(net.forward({&x, &x, &x, &x}), segkit::error);
  net.setup(feature_shapes(2, 16, 16));
  const auto y = host_tensor<float>::zeros({2, 32, 8, 8}), z = host_tensor<float>::zeros({2, 64, 4, 4});
  const auto bad = host_tensor<float>::zeros({2, 128, 4, 4});
  CHECK_THROWS_WITH(net.forward({&x, &y, &z, &bad}),
                    Catch::Contains("[2, 128, 4, 4]") && Catch::Contains("[2, 128, 2, 2]"));
}
