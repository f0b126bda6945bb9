// tests/test_saf_model.cpp — models::saf, the full SaF model (backbone -> ResNet-decoder ->
// HRNetV2 concat -> SaF head): shapes and names, the fused logits it returns, finite differences
// of the loss through the glue (the concat and the branch upsampling) into the decoder and the
// backbone, a few training steps reducing the loss, bad image sizes.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <string>

#include "op_checker.hpp"
#include "slope_check.hpp"
#include "segkit/models/saf.hpp"
#include "segkit/models/resnet.hpp"

using namespace segkit;

namespace {
using backbone = models::resnet<18, 25, 32>;
using small_saf = models::saf<backbone, 4, 1, 1>;  // decoder branches 4/8/16/32: feature 60

models::saf_options small_options() {
  models::saf_options o;
  o.semantic_channels = 8;
  o.unity_channels = 4;
  return o;
}
host_tensor<int32_t> block_labels(int64_t n, int64_t size) {
  host_tensor<int32_t> labels(shape{n, size, size});
  for (int64_t i = 0; i < labels.numel(); ++i) {
    const int64_t y = (i / size) % size, x = i % size;
    labels[i] = y < size / 3 ? 0 : (x < size / 2 ? 1 : 2);
    if (y == size - 1 && x < 5) labels[i] = 255;
  }
  return labels;
}
}  // namespace

TEST_CASE("saf model: shapes, names, forward returns the fused logits resized", "[saf][model]") {
  small_saf model(3, small_options(), 5);
  const shape in{2, 3, 64, 64};
  CHECK(model.setup(in) == shape{2, 3, 64, 64});
  CHECK(model.name() == "saf-resnet18-w25-os32");
  CHECK(small_saf::feature_channels == 60);
  bool backbone_names = false, decoder_names = false, head_names = false;
  model.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>&) {
    backbone_names |= name == "backbone.conv1.weight";
    decoder_names |= name == "decoder.reduce.3.0.weight";
    head_names |= name == "decode_head.unity.reduce.conv.weight";
  });
  CHECK(backbone_names);
  CHECK(decoder_names);
  CHECK(head_names);
  std::mt19937 rng(3);
  const auto x = testing::random_tensor(in, rng);
  model.eval();
  const auto& logits = model.forward(x);
  REQUIRE(model.head().semantic_logits().size() == 4);
  const auto& fused = model.head().fused_logits();
  CHECK(fused.shape() == shape{2, 3, 16, 16});
  // Bilinear 4x upsampling (align_corners false) keeps the mean of a constant region; check
  // an interior output pixel against the 2x2 fused cells it interpolates.
  const int64_t y = 33, xx = 41;  // source (y + .5) / 4 - .5 = 7.875, 9.875
  const float fy = 0.875f, fx = 0.875f;
  for (int64_t c = 0; c < 3; ++c) {
    auto at = [&](int64_t r, int64_t q) { return fused[((1 * 3 + c) * 16 + r) * 16 + q]; };
    const float want = (1 - fy) * ((1 - fx) * at(7, 9) + fx * at(7, 10)) +
                       fy * ((1 - fx) * at(8, 9) + fx * at(8, 10));
    CHECK(logits[((1 * 3 + c) * 64 + y) * 64 + xx] == Approx(want).margin(1e-5));
  }
  CHECK(model.cost().parameters > 0);
  CHECK(model.cost().macs > 0);
}

TEST_CASE("saf model: finite differences through the decoder glue and the backbone",
          "[saf][model]") {
  auto o = small_options();
  o.relabel = ops::relabel_mode::raw;  // TP re-labeling is a step function of the unity logits
  small_saf model(3, o, 11);
  const shape in{2, 3, 32, 32};  // batch 2: the warm-up step trains BN on the 1x1 stride-32 map
  model.setup(in);
  model.eval();  // running statistics: the loss is a smooth function of every weight
  std::mt19937 rng(4);
  const auto x = testing::random_tensor(in, rng);
  const auto labels = block_labels(2, 32);
  auto loss_at = [&] {
    model.zero_grad();
    return model.forward_backward(x, labels).total;
  };
  loss_at();
  std::vector<std::pair<std::string, host_tensor<float>>> grads;
  model.visit_parameters("", [&](const std::string& n, nn::parameter<cpu>& p) {
    grads.emplace_back(n, p.grad.clone());
  });
  // One parameter per decoder branch (each reaches the head through its own upsampling) and
  // the backbone's first convolution (through all of them).
  const std::vector<std::string> names{"decoder.reduce.0.0.weight", "decoder.reduce.1.0.weight",
                                       "decoder.reduce.2.0.weight", "decoder.reduce.3.0.weight",
                                       "backbone.conv1.weight"};
  testing::slope_tally tally;
  // eps 2e-3 and a 5% band: float32 through a whole backbone is noisier than one head.
  testing::slope_tolerance tolerance;
  tolerance.eps = 2e-3f;
  tolerance.kink_relative = 0.05;
  tolerance.kink_absolute = 2e-3;
  tolerance.epsilon = 5e-2;
  int nonzero = 0;
  for (const auto& want : names) {
    const host_tensor<float>* g = nullptr;
    for (auto& [n, t] : grads)
      if (n == want) g = &t;
    INFO(want);
    REQUIRE(g != nullptr);
    model.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
      if (name != want) return;
      for (int64_t i : {int64_t(0), p.value.numel() / 3, p.value.numel() / 2, p.value.numel() - 1}) {
        const int before = tally.checked;
        INFO(name << "[" << i << "]");
        testing::check_slope(loss_at, p.value[i], (*g)[i], tolerance, tally);
        if (tally.checked > before) nonzero += std::abs((*g)[i]) > 1e-5;
      }
    });
  }
  INFO(tally.kinks << " elements skipped at a kink");
  CHECK(tally.checked >= 15);  // of 20
  CHECK(nonzero >= 10);
}

TEST_CASE("saf model: training steps reduce the loss; bad image sizes", "[saf][model]") {
  small_saf model(3, small_options(), 7);
  const shape in{2, 3, 64, 64};
  model.setup(in);
  std::mt19937 rng(9);
  const auto x = testing::random_tensor(in, rng);
  const auto labels = block_labels(2, 64);
  model.train();
  double first = 0, last = 0;
  for (int step = 0; step < 6; ++step) {
    model.zero_grad();
    const auto terms = model.forward_backward(x, labels);
    REQUIRE(std::isfinite(terms.total));
    REQUIRE(terms.terms.size() == 2);
    CHECK(terms.terms[0].first == "ce");
    CHECK(terms.terms[1].first == "bce");
    if (step == 0) first = terms.total;
    last = terms.total;
    model.visit_parameters("", [](const std::string&, nn::parameter<cpu>& p) {
      for (int64_t i = 0; i < p.value.numel(); ++i) p.value[i] -= 0.05f * p.grad[i];
    });
  }
  INFO("first " << first << " last " << last);
  CHECK(last < first);
  CHECK_THROWS_WITH(model.setup(shape{2, 3, 48, 64}), Catch::Contains("multiples of 32"));
  CHECK_THROWS_WITH(model.setup(shape{2, 1, 64, 64}), Catch::Contains("[2, 1, 64, 64]"));
}
