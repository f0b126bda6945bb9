// tests/test_fcn.cpp — models::fcn (the model concept) and models::zoo: names, shapes, runtime
// class count, the loss against a plain cross-entropy of the returned logits, gradients of the
// head by finite differences through the whole model, no allocation after setup, the zoo.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <set>

#include "op_checker.hpp"
#include "segkit/models/zoo.hpp"

using namespace segkit;
using small_fcn = models::zoo_models<cpu>::fcn_resnet18_w25;

namespace {
host_tensor<int32_t> random_labels(const shape& s, int classes, std::mt19937& rng) {
  host_tensor<int32_t> labels(s);
  std::uniform_int_distribution<int> pick(0, classes);  // == classes -> ignore
  for (int64_t i = 0; i < labels.numel(); ++i) {
    const int v = pick(rng);
    labels[i] = v == classes ? 255 : v;
  }
  return labels;
}
// Mean cross-entropy over non-ignored pixels, in double, from the logits.
double plain_ce(const host_tensor<float>& logits, const host_tensor<int32_t>& labels) {
  const int64_t n = logits.shape()[0], k = logits.shape()[1], hw = logits.shape()[2] * logits.shape()[3];
  double total = 0;
  int64_t count = 0;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t p = 0; p < hw; ++p) {
      const int32_t y = labels[b * hw + p];
      if (y == 255) continue;
      double m = -1e30, s = 0;
      for (int64_t c = 0; c < k; ++c) m = std::max(m, double(logits[(b * k + c) * hw + p]));
      for (int64_t c = 0; c < k; ++c) s += std::exp(double(logits[(b * k + c) * hw + p]) - m);
      total += m + std::log(s) - double(logits[(b * k + y) * hw + p]);
      ++count;
    }
  return count ? total / double(count) : 0;
}
}  // namespace

TEST_CASE("zoo: names, the model each name builds, unknown names", "[fcn]") {
  const auto names = models::model_names();
  CHECK(names.size() >= 3);
  std::string built;
  models::with_model("fcn-resnet18-w25", [&](auto tag) {
    using M = typename decltype(tag)::type;
    built = M::model_name();
  });
  CHECK(built == "fcn-resnet18-w25");
  CHECK(models::zoo_models<cpu>::fcn_resnet18::model_name() == "fcn-resnet18");
  CHECK(models::zoo_models<cpu>::fcn_resnet50::model_name() == "fcn-resnet50");
  CHECK_THROWS_AS(models::with_model("fcn-vgg", [](auto) {}), value_error);
  CHECK_THROWS_WITH(models::with_model("fcn-vgg", [](auto) {}),
                    Catch::Contains("fcn-vgg") && Catch::Contains("fcn-resnet18"));
}

TEST_CASE("fcn: mmseg names, runtime class count, logits at the input size", "[fcn]") {
  for (int classes : {1, 11, 19}) {
    small_fcn model(classes, 3);
    CHECK(model.setup({2, 3, 64, 48}) == shape{2, classes, 64, 48});
    std::set<std::string> names;
    model.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
      names.insert(name);
      if (name == "decode_head.conv_seg.weight") CHECK(p.shape() == shape{classes, 32, 1, 1});
      if (name == "auxiliary_head.conv_seg.weight") CHECK(p.shape() == shape{classes, 16, 1, 1});
    });
    for (const char* expected :
         {"backbone.conv1.weight", "backbone.layer4.1.bn2.bias", "decode_head.convs.0.conv.weight",
          "decode_head.convs.1.bn.weight", "decode_head.conv_cat.conv.weight",
          "decode_head.conv_seg.bias", "auxiliary_head.convs.0.conv.weight",
          "auxiliary_head.conv_seg.bias"})
      CHECK(names.count(expected) == 1);
    CHECK(model.cost().parameters > 0);
    CHECK(model.cost().macs > 0);
  }
  CHECK_THROWS_AS(small_fcn(0), value_error);
}

TEST_CASE("fcn: forward_backward's loss is the cross-entropy of forward's logits (+0.4 aux)",
          "[fcn]") {
  small_fcn model(5, 1);
  const shape in{2, 3, 32, 32};
  model.setup(in);
  std::mt19937 rng(2);
  const auto x = testing::random_tensor(in, rng);
  const auto labels = random_labels({2, 32, 32}, 5, rng);
  model.eval();  // no dropout, running statistics: forward and forward_backward see one function
  const double expected = plain_ce(model.forward(x).clone(), labels);
  model.zero_grad();
  const auto terms = model.forward_backward(x, labels);
  REQUIRE(terms.terms.size() == 2);
  CHECK(terms.terms[0].first == "ce");
  CHECK(terms.terms[0].second == Approx(expected).epsilon(1e-5));
  CHECK(terms.total == Approx(terms.terms[0].second + 0.4 * terms.terms[1].second).epsilon(1e-9));
  CHECK(std::isfinite(terms.total));
}

TEST_CASE("fcn: parameter gradients match finite differences of the loss (eval mode)", "[fcn]") {
  auto model = std::make_shared<small_fcn>(4, 5);
  const shape in{1, 3, 32, 32};
  model->setup(in);
  model->eval();
  std::mt19937 rng(4);
  const auto x = testing::random_tensor(in, rng);
  const auto labels = random_labels({1, 32, 32}, 4, rng);
  std::vector<nn::parameter<cpu>*> params;
  for (const std::string wanted :
       {"decode_head.conv_seg.weight", "decode_head.conv_seg.bias", "decode_head.conv_cat.bn.weight",
        "auxiliary_head.conv_seg.weight", "backbone.layer4.1.bn2.weight"})
    model->visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
      if (name == wanted) params.push_back(&p);
    });
  REQUIRE(params.size() == 5);
  testing::op_case test;
  test.name = "fcn-resnet18-w25 loss";
  for (auto* p : params) test.inputs.push_back(p->value.clone());
  test.forward = [=](const testing::tensors& inputs) {
    for (size_t j = 0; j < params.size(); ++j) copy_into(inputs[j], params[j]->value);
    host_tensor<float> loss({1});
    loss[0] = float(model->forward_backward(x, labels).total);
    return testing::tensors{loss};
  };
  test.backward = [=](const testing::tensors& inputs, const testing::tensors&,
                      const testing::tensors& dy, testing::tensors& grads) {
    for (size_t j = 0; j < params.size(); ++j) copy_into(inputs[j], params[j]->value);
    model->zero_grad();
    model->forward_backward(x, labels);
    for (size_t j = 0; j < params.size(); ++j)
      for (int64_t i = 0; i < grads[j].numel(); ++i) grads[j][i] += dy[0][0] * params[j]->grad[i];
  };
  test.step = 3e-3f;
  test.absolute_tolerance = 1e-3f;
  test.max_checked_elements = 16;
  testing::check_op(test);
}

TEST_CASE("fcn: training steps reduce the loss on a fixed batch", "[fcn]") {
  small_fcn model(3, 7);
  const shape in{2, 3, 32, 32};
  model.setup(in);
  std::mt19937 rng(9);
  const auto x = testing::random_tensor(in, rng);
  const auto labels = random_labels({2, 32, 32}, 3, rng);
  double first = 0, last = 0;
  for (int step = 0; step < 8; ++step) {
    model.zero_grad();
    const double loss = model.forward_backward(x, labels).total;
    if (step == 0) first = loss;
    last = loss;
    model.visit_parameters("", [](const std::string&, nn::parameter<cpu>& p) {
      for (int64_t i = 0; i < p.value.numel(); ++i) p.value[i] -= 0.05f * p.grad[i];
    });
  }
  CHECK(last < first);
}
