// tests/test_ocr.cpp — models::ocr_head / ocr_loss / ocr: parity with the float64 PyTorch
// re-implementation (tests/reference/gen_ocr.py: logits, aux logits, both loss terms, every
// parameter gradient, both feature gradients; dropout OFF on both sides, batch norm training),
// the baseline variant with another runtime class count, finite differences, bad input, names,
// and a full-model smoke test whose loss falls over a few SGD steps.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <set>

#include "op_checker.hpp"
#include "segkit/models/ocr.hpp"
#include "segkit/models/resnet.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;
using small_head = models::ocr_head<6, 7, 8, 4, 5, cpu>;

namespace {
tensor_file& golden() {
  static tensor_file file = tensor_file::load(SEGKIT_GOLDEN_DIR "/ocr.safetensors");
  return file;
}

// |a - b| <= atol + rtol |b| with atol = rtol * max|b|: 1e-4 relative to the tensor's scale
// (elementwise relative error is meaningless for entries that are ~0 by cancellation).
void require_close_scaled(const host_tensor<float>& actual, const host_tensor<float>& expected,
                          float rtol, const std::string& what) {
  float scale = 0;
  for (int64_t i = 0; i < expected.numel(); ++i) scale = std::max(scale, std::abs(expected[i]));
  testing::require_all_close(actual, expected, rtol * scale + 1e-12f, rtol, what);
}

void check_parity(const std::string& prefix, int classes, bool object_context) {
  auto& g = golden();
  const auto aux_x = g.get<float>(prefix + ".aux_features");
  const auto x = g.get<float>(prefix + ".features");
  const auto labels = g.get<int32_t>(prefix + ".labels");
  const auto min_kept = g.get<int32_t>(prefix + ".min_kept");
  small_head head(classes, {object_context, /*dropout=*/false});
  const shape small = head.setup(aux_x.shape(), x.shape());
  CHECK(small == shape{x.shape()[0], classes, x.shape()[2], x.shape()[3]});
  int loaded = 0;
  head.visit_parameters("decode_head", [&](const std::string& name, nn::parameter<cpu>& p) {
    copy_into(g.get<float>(prefix + ".param." + name), p.value);
    p.zero_grad();
    ++loaded;
  });
  int stored = 0;
  for (const auto& n : g.names())
    if (n.rfind(prefix + ".param.", 0) == 0) ++stored;
  CHECK(loaded == stored);
  head.set_training(true);
  const auto& logits = head.forward(aux_x, x);
  require_close_scaled(logits, g.get<float>(prefix + ".logits"), 1e-4f, prefix + " logits");
  require_close_scaled(head.aux_logits(), g.get<float>(prefix + ".aux_logits"), 1e-4f,
                       prefix + " aux logits");

  models::ocr_loss_options lo;
  lo.thresh = std::stof(g.metadata().at("ohem_thresh"));
  lo.min_kept = min_kept[0];
  models::ocr_loss<cpu> loss(lo);
  loss.setup(small, labels.shape());
  host_tensor<float> dlogits(small), daux(small);
  dlogits.zero();
  daux.zero();
  const auto terms = loss.forward_backward(logits, head.aux_logits(), labels, dlogits, daux);
  const auto expected_loss = g.get<float>(prefix + ".loss");
  REQUIRE(terms.terms.size() == 2);
  CHECK(terms.terms[0].first == "ohem_ce");
  CHECK(terms.terms[1].first == "aux_ce");
  CHECK(terms.terms[0].second == Approx(expected_loss[0]).epsilon(1e-4));
  CHECK(terms.terms[1].second == Approx(expected_loss[1]).epsilon(1e-4));
  CHECK(terms.total == Approx(expected_loss[2]).epsilon(1e-4));

  host_tensor<float> daux_x(aux_x.shape()), dx(x.shape());
  daux_x.zero();
  dx.zero();
  head.backward(aux_x, x, dlogits, &daux, &daux_x, &dx);
  require_close_scaled(daux_x, g.get<float>(prefix + ".grad.aux_features"), 1e-4f,
                       prefix + " aux feature gradient");
  require_close_scaled(dx, g.get<float>(prefix + ".grad.features"), 1e-4f,
                       prefix + " feature gradient");
  head.visit_parameters("decode_head", [&](const std::string& name, nn::parameter<cpu>& p) {
    require_close_scaled(p.grad, g.get<float>(prefix + ".grad." + name), 1e-4f,
                         prefix + " gradient of " + name);
  });
}

host_tensor<int32_t> random_labels(const shape& s, int classes, std::mt19937& rng) {
  host_tensor<int32_t> labels(s);
  std::uniform_int_distribution<int> pick(0, classes);  // == classes -> ignore
  for (int64_t i = 0; i < labels.numel(); ++i) {
    const int v = pick(rng);
    labels[i] = v == classes ? 255 : v;
  }
  return labels;
}
}  // namespace

TEST_CASE("ocr_head: parity with PyTorch (OCR, K = 3): outputs, OHEM + aux loss, all gradients",
          "[ocr]") {
  check_parity("ocr", 3, true);
}

TEST_CASE("ocr_head: parity with PyTorch (baseline head without OCR, K = 4)", "[ocr]") {
  check_parity("baseline", 4, false);
}

TEST_CASE("ocr_head: mmseg OCRNet names; the baseline has no object_context_block", "[ocr]") {
  small_head head(5);
  std::set<std::string> names;
  head.visit_parameters("decode_head", [&](const std::string& n, nn::parameter<cpu>&) {
    names.insert(n);
  });
  for (const char* n :
       {"decode_head.0.convs.0.conv.weight", "decode_head.0.convs.0.bn.weight",
        "decode_head.0.conv_seg.weight", "decode_head.0.conv_seg.bias",
        "decode_head.1.bottleneck.conv.weight",
        "decode_head.1.object_context_block.query_project.1.conv.weight",
        "decode_head.1.object_context_block.key_project.0.bn.bias",
        "decode_head.1.object_context_block.value_project.conv.weight",
        "decode_head.1.object_context_block.out_project.bn.weight",
        "decode_head.1.object_context_block.bottleneck.conv.weight",
        "decode_head.1.conv_seg.weight", "decode_head.1.conv_seg.bias"})
    CHECK(names.count(n) == 1);
  CHECK(names.size() == 31);
  small_head baseline(5, {false, true});
  int count = 0;
  baseline.visit_parameters("", [&](const std::string& n, nn::parameter<cpu>&) {
    CHECK(n.find("object_context_block") == std::string::npos);
    ++count;
  });
  CHECK(count == 10);
}

TEST_CASE("ocr_head: gradients match finite differences of the loss", "[ocr]") {
  for (bool object_context : {true, false}) {
    auto head = std::make_shared<small_head>(3, models::ocr_head_options{object_context, false});
    std::mt19937 rng(object_context ? 11 : 12);
    const shape aux_shape{2, 6, 5, 4}, feat_shape{2, 7, 5, 4};
    head->setup(aux_shape, feat_shape);
    std::mt19937_64 init(3);
    head->initialize(init);
    head->set_training(true);
    const auto aux_x = testing::random_tensor(aux_shape, rng);
    const auto x = testing::random_tensor(feat_shape, rng);
    const auto labels = random_labels({2, 10, 8}, 3, rng);
    auto loss = std::make_shared<models::ocr_loss<cpu>>(
        models::ocr_loss_options{/*ohem=*/false});
    loss->setup({2, 3, 5, 4}, labels.shape());
    std::vector<nn::parameter<cpu>*> params;
    std::vector<std::string> wanted = {"0.conv_seg.weight", "0.convs.0.conv.weight",
                                       "1.bottleneck.bn.weight", "1.conv_seg.bias"};
    if (object_context) {
      wanted.push_back("1.object_context_block.key_project.1.conv.weight");
      wanted.push_back("1.object_context_block.query_project.0.bn.bias");
      wanted.push_back("1.object_context_block.value_project.conv.weight");
    }
    for (const auto& w : wanted)
      head->visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
        if (name == w) params.push_back(&p);
      });
    REQUIRE(params.size() == wanted.size());
    auto run = [=](const testing::tensors& inputs, bool backward, testing::tensors* grads,
                   float upstream) {
      for (size_t j = 0; j < params.size(); ++j) copy_into(inputs[j], params[j]->value);
      const auto& logits = head->forward(inputs[params.size()], inputs[params.size() + 1]);
      host_tensor<float> dl(logits.shape()), da(logits.shape());
      dl.zero();
      da.zero();
      const double total = loss->forward_backward(logits, head->aux_logits(), labels, dl, da).total;
      if (backward) {
        for (auto* p : params) p->zero_grad();
        host_tensor<float> dax(aux_shape), dx(feat_shape);
        dax.zero();
        dx.zero();
        head->backward(inputs[params.size()], inputs[params.size() + 1], dl, &da, &dax, &dx);
        for (size_t j = 0; j < params.size(); ++j)
          for (int64_t i = 0; i < (*grads)[j].numel(); ++i)
            (*grads)[j][i] += upstream * params[j]->grad[i];
        for (int64_t i = 0; i < dax.numel(); ++i) (*grads)[params.size()][i] += upstream * dax[i];
        for (int64_t i = 0; i < dx.numel(); ++i) (*grads)[params.size() + 1][i] += upstream * dx[i];
      }
      return total;
    };
    testing::op_case test;
    test.name = object_context ? "ocr head loss" : "baseline head loss";
    for (auto* p : params) test.inputs.push_back(p->value.clone());
    test.inputs.push_back(aux_x.clone());
    test.inputs.push_back(x.clone());
    test.forward = [=](const testing::tensors& inputs) {
      host_tensor<float> out({1});
      out[0] = float(run(inputs, false, nullptr, 0.f));
      return testing::tensors{out};
    };
    test.backward = [=](const testing::tensors& inputs, const testing::tensors&,
                        const testing::tensors& dy, testing::tensors& grads) {
      run(inputs, true, &grads, dy[0][0]);
    };
    test.step = 3e-3f;
    test.absolute_tolerance = 2e-3f;
    test.max_checked_elements = 12;
    testing::check_op(test);
  }
}

TEST_CASE("ocr_head / ocr_loss: bad input names the shapes and values", "[ocr]") {
  CHECK_THROWS_AS(small_head(0), value_error);
  small_head head(3);
  CHECK_THROWS_WITH(head.setup({2, 6, 5, 4}, {2, 7, 5, 5}),
                    Catch::Contains("[2, 6, 5, 4]") && Catch::Contains("[2, 7, 5, 5]"));
  CHECK_THROWS_AS(head.setup({2, 6, 5, 4}, {2, 7, 5, 5}), shape_error);
  CHECK_THROWS_WITH(head.setup({2, 5, 5, 4}, {2, 7, 5, 4}), Catch::Contains("6 channels"));
  CHECK_THROWS_WITH(head.setup({2, 6, 5, 4}, {2, 8, 5, 4}), Catch::Contains("7 channels"));
  head.setup({1, 6, 3, 3}, {1, 7, 3, 3});
  host_tensor<float> a({1, 6, 3, 3}), f({1, 7, 3, 3}), wrong({1, 3, 3, 4});
  a.zero();
  f.zero();
  wrong.zero();
  head.forward(a, f);
  CHECK_THROWS_AS(head.backward(a, f, wrong, nullptr, nullptr, nullptr), shape_error);
  models::ocr_loss<cpu> loss;
  CHECK_THROWS_AS(loss.setup({2, 3, 4, 4}, {3, 8, 8}), shape_error);
  models::ocr_loss_options bad;
  bad.thresh = 1.5f;
  models::ocr_loss<cpu> bad_loss(bad);
  bad_loss.setup({1, 3, 3, 3}, {1, 6, 6});
  host_tensor<int32_t> labels({1, 6, 6});
  labels.fill(0);
  host_tensor<float> logits({1, 3, 3, 3}), dl({1, 3, 3, 3}), da({1, 3, 3, 3});
  logits.zero();
  CHECK_THROWS_AS(bad_loss.forward_backward(logits, logits, labels, dl, da), value_error);
  // min_kept scaled from HRNet's 100000 per 2 x 512 x 1024 pixels
  CHECK(models::ocr_scaled_min_kept(2 * 512 * 1024) == 100000);
  CHECK(models::ocr_scaled_min_kept(8 * 192 * 192) == 28125);
  CHECK(models::ocr_scaled_min_kept(1) == 1);
}

TEST_CASE("ocr: full model (ResNet-18 w25, OS 8): names, shapes, loss falls over SGD steps",
          "[ocr]") {
  using model_type = models::ocr<models::resnet<18, 25, 8, cpu>, 16, 8, 8>;
  for (bool object_context : {true, false}) {
    models::ocr_options options;
    options.head.object_context = object_context;
    options.loss.min_kept = 200;
    model_type model(3, options, 7);
    const shape in{2, 3, 32, 32};
    CHECK(model.setup(in) == shape{2, 3, 32, 32});
    CHECK(model.cost().macs > 0);
    bool has_backbone = false, has_ocb = false;
    model.visit_parameters("", [&](const std::string& n, nn::parameter<cpu>&) {
      has_backbone |= n == "backbone.layer4.1.conv2.weight";
      has_ocb |= n == "decode_head.1.object_context_block.bottleneck.conv.weight";
    });
    CHECK(has_backbone);
    CHECK(has_ocb == object_context);
    CHECK(model.loss().ohem_params().min_kept == 200);
    std::mt19937 rng(9);
    const auto x = testing::random_tensor(in, rng);
    const auto labels = random_labels({2, 32, 32}, 3, rng);
    double first = 0, last = 0;
    for (int step = 0; step < 8; ++step) {
      model.zero_grad();
      const auto terms = model.forward_backward(x, labels);
      REQUIRE(terms.terms.size() == 2);
      CHECK(terms.total == Approx(terms.terms[0].second + 0.4 * terms.terms[1].second));
      if (step == 0) first = terms.total;
      last = terms.total;
      model.visit_parameters("", [](const std::string&, nn::parameter<cpu>& p) {
        for (int64_t i = 0; i < p.value.numel(); ++i) p.value[i] -= 0.05f * p.grad[i];
      });
    }
    INFO("object_context " << object_context << ": loss " << first << " -> " << last);
    CHECK(last < first);
    model.eval();
    CHECK(model.forward(x).shape() == shape{2, 3, 32, 32});
  }
  using os32 = models::ocr<models::resnet<18, 25, 32, cpu>, 16, 8, 8>;
  os32 bad(3);
  CHECK_THROWS_AS(bad.setup({1, 3, 64, 64}), shape_error);
}
