// tests/test_saf.cpp — models::saf_head against the float64 PyTorch re-implementation
// (tests/reference/gen_saf.py -> tests/golden/saf.safetensors): outputs, pyramidal targets after
// true-positive re-labeling, Eq. 1 terms, every parameter gradient, the feature gradient, the
// fuser; finite differences of the loss; re-labeling variants; bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "slope_check.hpp"
#include "segkit/models/saf_head.hpp"
#include "segkit/tensor/mac_counter.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;

namespace {
models::saf_options golden_options() {
  models::saf_options o;
  o.levels = 4;
  o.semantic_channels = 8;
  o.unity_channels = 4;
  return o;
}
double max_rel(const host_tensor<float>& a, const host_tensor<float>& b) {
  REQUIRE(a.shape() == b.shape());
  double scale = 0, diff = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    scale = std::max(scale, std::abs(double(b[i])));
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
  }
  return diff / std::max(scale, 1e-12);
}
template <class Head>
void load_parameters(Head& head, const tensor_file& f) {
  int count = 0;
  head.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
    INFO(name);
    const auto v = f.get<float>("param." + name);
    REQUIRE(v.shape() == p.shape());
    copy_into(v, p.value);
    ++count;
  });
  CHECK(count == int(f.names().size() > 0 ? count : 0));
}
}  // namespace

TEST_CASE("saf_head: parity with the PyTorch re-implementation", "[saf]") {
  const auto f = tensor_file::load(SEGKIT_GOLDEN_DIR "/saf.safetensors");
  const auto x = f.get<float>("x");
  const auto labels = f.get<int32_t>("labels");
  models::saf_head<cpu> head(8, 3, golden_options());
  head.setup(x.shape(), 4);
  load_parameters(head, f);
  // every parameter of the file is visited, and nothing else
  int visited = 0, stored = 0;
  head.visit_parameters("", [&](const std::string&, nn::parameter<cpu>& p) {
    ++visited;
    p.zero_grad();
  });
  for (const auto& name : f.names()) stored += name.rfind("param.", 0) == 0;
  CHECK(visited == stored);

  head.forward(x);
  for (int i = 0; i < 4; ++i) {
    INFO("level " << i);
    CHECK(max_rel(head.semantic_logits()[size_t(i)], f.get<float>("semantic." + std::to_string(i))) < 1e-4);
    if (i < 3)
      CHECK(max_rel(head.unity_logits()[size_t(i)], f.get<float>("unity." + std::to_string(i))) < 1e-4);
  }
  const auto terms = head.loss(labels);
  for (int i = 0; i < 4; ++i) {
    INFO("targets of level " << i);
    const auto y = f.get<int32_t>("target_y." + std::to_string(i));
    int bad = 0;
    for (int64_t k = 0; k < y.numel(); ++k) bad += y[k] != head.semantic_targets()[size_t(i)][k];
    CHECK(bad == 0);
    if (i < 3) {
      const auto u = f.get<int32_t>("target_u." + std::to_string(i));
      bad = 0;
      for (int64_t k = 0; k < u.numel(); ++k) bad += u[k] != head.unity_targets()[size_t(i)][k];
      CHECK(bad == 0);
    }
  }
  REQUIRE(terms.terms.size() == 2);
  CHECK(terms.terms[0].second == Approx(f.get<float>("ce")[0]).epsilon(1e-5));
  CHECK(terms.terms[1].second == Approx(f.get<float>("bce")[0]).epsilon(1e-5));
  CHECK(terms.total == Approx(terms.terms[0].second + terms.terms[1].second));

  host_tensor<float> dx = host_tensor<float>::zeros(x.shape());
  head.backward(x, &dx);
  CHECK(max_rel(dx, f.get<float>("dx")) < 1e-4);
  head.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
    INFO(name);
    // Several gradients are structurally zero (key biases: softmax is shift-invariant; level-L
    // agg/value biases and update.2.bias only shift channels that a training-mode BN removes),
    // so the error is relative to max(|reference|, 1e-3).
    const auto ref = f.get<float>("grad." + name);
    double scale = 0, diff = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) {
      scale = std::max(scale, std::abs(double(ref[i])));
      diff = std::max(diff, std::abs(double(p.grad[i]) - double(ref[i])));
    }
    CHECK(diff / std::max(scale, 1e-3) < 1e-4);
  });
  head.visit_buffers("", [&](const std::string& name, auto& b) {
    if constexpr (std::is_same_v<std::decay_t<decltype(b)>, tensor<float, cpu>>) {
      INFO(name);
      CHECK(max_rel(b, f.get<float>("buffer." + name)) < 1e-4);
    }
  });

  head.fuse();
  CHECK(max_rel(head.fused_logits(), f.get<float>("fused_logits")) < 1e-4);
  const auto fl = f.get<int32_t>("fused_labels"), lm = f.get<int32_t>("level_map");
  int bad_labels = 0, bad_levels = 0;
  for (int64_t k = 0; k < fl.numel(); ++k) {
    bad_labels += fl[k] != head.fused_labels()[k];
    bad_levels += lm[k] != int32_t(head.level_map()[k]);
  }
  CHECK(bad_labels == 0);
  CHECK(bad_levels == 0);
}

TEST_CASE("saf_head: backward adds; finite differences of the Eq. 1 loss", "[saf]") {
  const auto f = tensor_file::load(SEGKIT_GOLDEN_DIR "/saf.safetensors");
  const auto x = f.get<float>("x");
  const auto labels = f.get<int32_t>("labels");
  // GT re-labeling: TP depends on the unity predictions, which makes the loss discontinuous
  // in the unity parameters (a cell crossing tau changes the targets).
  auto o = golden_options();
  o.relabel = ops::relabel_mode::ground_truth;
  models::saf_head<cpu> head(8, 3, o);
  head.setup(x.shape(), 4);
  load_parameters(head, f);
  head.set_training(false);  // running statistics: the loss is a smooth function of each weight
  auto loss_at = [&]() {
    head.forward(x);
    return head.loss(labels).total;
  };
  head.visit_parameters("", [](const std::string&, nn::parameter<cpu>& p) { p.zero_grad(); });
  loss_at();
  head.backward(x, nullptr);
  std::vector<std::pair<std::string, host_tensor<float>>> first;
  head.visit_parameters("", [&](const std::string& n, nn::parameter<cpu>& p) {
    first.emplace_back(n, p.grad.clone());
  });
  head.forward(x);
  head.loss(labels);
  head.backward(x, nullptr);  // twice: gradients double
  size_t at = 0;
  head.visit_parameters("", [&](const std::string& n, nn::parameter<cpu>& p) {
    INFO(n);
    for (int64_t i = 0; i < p.grad.numel(); ++i)
      REQUIRE(p.grad[i] == Approx(2 * first[at].second[i]).margin(1e-6));
    ++at;
  });
  testing::slope_tally tally;
  const char* names[] = {"semantic.input.weight", "semantic.levels.0.query.weight",
                         "semantic.levels.1.agg.conv1.conv.weight", "semantic.update.2.bias",
                         "semantic.levels.3.cls.conv2.weight", "unity.reduce.conv.weight",
                         "unity.heads.0.weight", "semantic.levels.2.key.bias"};
  for (const char* want : names) {
    for (auto& [n, g] : first)
      if (n == want) {
        head.visit_parameters("", [&, &n = n, &g = g](const std::string& name, nn::parameter<cpu>& p) {
          if (name != n) return;
          for (int64_t i : {int64_t(0), p.value.numel() / 2, p.value.numel() - 1}) {
            INFO(name << "[" << i << "]");
            testing::check_slope(loss_at, p.value[i], g[i], {}, tally);
          }
        });
      }
  }
  INFO(tally.kinks << " elements skipped at a kink");
  CHECK(tally.checked >= 20);  // of 24
}

TEST_CASE("saf_head: re-labeling variants raw / GT / TP", "[saf]") {
  const auto f = tensor_file::load(SEGKIT_GOLDEN_DIR "/saf.safetensors");
  const auto x = f.get<float>("x");
  const auto labels = f.get<int32_t>("labels");
  auto ignored = [&](ops::relabel_mode mode) {
    auto o = golden_options();
    o.relabel = mode;
    models::saf_head<cpu> head(8, 3, o);
    head.setup(x.shape(), 4);
    load_parameters(head, f);
    head.forward(x);
    head.loss(labels);
    int64_t count = 0;
    for (const auto& y : head.semantic_targets())
      for (int64_t k = 0; k < y.numel(); ++k) count += y[k] == 255;
    return count;
  };
  const int64_t raw = ignored(ops::relabel_mode::raw), gt = ignored(ops::relabel_mode::ground_truth),
                tp = ignored(ops::relabel_mode::true_positive);
  CHECK(raw < tp);  // TP hides the descendants of confident unit cells
  CHECK(tp < gt);   // GT hides those of every unit cell (some are not predicted confident)
}

TEST_CASE("saf_head: bad input", "[saf]") {
  models::saf_head<cpu> head(8, 3, golden_options());
  CHECK_THROWS_WITH(head.setup(shape{1, 8, 12, 16}), Catch::Contains("[1, 8, 12, 16]"));
  CHECK_THROWS_AS(head.setup(shape{1, 7, 16, 16}), shape_error);
  auto o = golden_options();
  o.levels = 1;
  CHECK_THROWS_AS(models::saf_head<cpu>(8, 3, o), value_error);
  o = golden_options();
  o.tau = 1.f;
  CHECK_THROWS_WITH(models::saf_head<cpu>(8, 3, o), Catch::Contains("tau"));
  CHECK_THROWS_AS(models::saf_head<cpu>(8, 0, golden_options()), value_error);
  head.setup(shape{1, 8, 16, 16}, 4);
  host_tensor<float> x = host_tensor<float>::zeros({1, 8, 16, 16});
  head.forward(x);
  host_tensor<int32_t> wrong = host_tensor<int32_t>::zeros({1, 60, 64});
  CHECK_THROWS_AS(head.loss(wrong), shape_error);
}

TEST_CASE("saf_head: MACs at a paper-like setting vs one 3x3 conv at the finest level", "[saf]") {
  // HRNet-W48-like feature: D = 720 (48 + 96 + 192 + 384 concatenated), stride 4 on a
  // 512 x 1024 crop -> 128 x 256; D_s = D_u = 64; 19 classes.
  models::saf_options o;
  models::saf_head<cpu> head(720, 19, o);
  const shape feature{1, 720, 128, 256};
  head.setup(feature, 4);
  head.set_training(false);
  host_tensor<float> x = host_tensor<float>::zeros(feature);
  int64_t macs = 0;
  {
    mac_count_scope scope;
    head.forward(x);
    macs = scope.macs();
  }
  const int64_t conv3 = int64_t(720) * 720 * 9 * 128 * 256;
  const int64_t conv3s = int64_t(64) * 64 * 9 * 128 * 256;
  std::printf("saf_head MACs %.3f G; one 3x3 conv D->D at the finest level %.3f G (ratio %.3f); "
              "one 3x3 conv 64->64 %.3f G (ratio %.3f)\n",
              macs / 1e9, conv3 / 1e9, double(macs) / double(conv3), conv3s / 1e9,
              double(macs) / double(conv3s));
  CHECK(macs > 0);
}
