// tests/test_saf_ablations.cpp — the SaF head's Table-A ablations (models/saf_options.hpp,
// docs/saf_ablations.md): parity of A, B, C, F, G, H, J, K with the float64 PyTorch
// re-implementation (tests/reference/gen_saf_ablations.py ->
// tests/golden/saf_ablations.safetensors: outputs, targets, loss terms, every parameter gradient,
// the feature gradient, BN statistics, fuser); every id A..K runs forward / loss / backward / fuse
// with the right terms and outputs; finite differences on the new pieces (APNB, plain heads,
// auxiliary and K); option parsing.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <set>

#include "slope_check.hpp"
#include "segkit/models/saf_head.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;

namespace {
// The golden file's sizes: D = 4, D_s = 4, D_u = 3, C = 3, APNB key 2 / value 3.
models::saf_options golden_options(char id) {
  return models::parse_saf_options(std::string("ablation=") + id +
                                   ",ds=4,du=3,anl_key=2,anl_value=3");
}
double max_rel(const host_tensor<float>& a, const host_tensor<float>& b, double floor = 1e-12) {
  REQUIRE(a.shape() == b.shape());
  double scale = 0, diff = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    scale = std::max(scale, std::abs(double(b[i])));
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
  }
  return diff / std::max(scale, floor);
}
template <class I>
int mismatches(const host_tensor<uint8_t>& ref, const host_tensor<I>& got) {
  REQUIRE(ref.numel() == got.numel());
  int bad = 0;
  for (int64_t k = 0; k < ref.numel(); ++k) bad += int32_t(ref[k]) != int32_t(got[k]);
  return bad;
}
host_tensor<int32_t> golden_labels(const tensor_file& f) {
  const auto u8 = f.get<uint8_t>("labels");
  host_tensor<int32_t> labels(u8.shape());
  for (int64_t i = 0; i < u8.numel(); ++i) labels[i] = u8[i];
  return labels;
}
// Loads "<id>.param.<name>" into every parameter; returns how many.
int load_parameters(models::saf_head<cpu>& head, const tensor_file& f, char id) {
  int count = 0;
  head.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
    INFO(name);
    const auto v = f.get<float>(std::string(1, id) + ".param." + name);
    REQUIRE(v.shape() == p.shape());
    copy_into(v, p.value);
    p.zero_grad();
    ++count;
  });
  return count;
}
}  // namespace

TEST_CASE("saf ablations: parity with the PyTorch re-implementation", "[saf][ablation]") {
  const auto f = tensor_file::load(SEGKIT_GOLDEN_DIR "/saf_ablations.safetensors");
  const auto x = f.get<float>("x");
  const auto labels = golden_labels(f);
  for (char id : std::string("ABCFGHJK")) {
    INFO("ablation " << id);
    const auto o = golden_options(id);
    models::saf_head<cpu> head(4, 3, o);
    head.setup(x.shape(), 4);
    const std::string p(1, id);
    int stored = 0;
    for (const auto& name : f.names()) stored += name.rfind(p + ".param.", 0) == 0;
    CHECK(load_parameters(head, f, id) == stored);  // same names, nothing missing or extra

    head.forward(x);
    const bool pyramidal = o.output == models::saf_output::pyramidal;
    const size_t outputs = o.output == models::saf_output::single ? 1 : size_t(head.levels());
    REQUIRE(head.semantic_logits().size() == outputs);
    REQUIRE(head.unity_logits().size() == (pyramidal ? size_t(head.levels() - 1) : 0));
    for (size_t i = 0; i < outputs; ++i) {
      INFO("semantic " << i);
      CHECK(max_rel(head.semantic_logits()[i], f.get<float>(p + ".semantic." + std::to_string(i))) <
            1e-4);
    }
    for (size_t i = 0; i < head.unity_logits().size(); ++i) {
      INFO("unity " << i);
      CHECK(max_rel(head.unity_logits()[i], f.get<float>(p + ".unity." + std::to_string(i))) <
            1e-4);
    }
    const auto terms = head.loss(labels);
    for (int i = 0; i < head.levels(); ++i) {
      INFO("targets of level " << i);
      CHECK(mismatches(f.get<uint8_t>(p + ".target_y." + std::to_string(i)),
                       head.semantic_targets()[size_t(i)]) == 0);
      if (pyramidal && i + 1 < head.levels())
        CHECK(mismatches(f.get<uint8_t>(p + ".target_u." + std::to_string(i)),
                         head.unity_targets()[size_t(i)]) == 0);
    }
    double total = 0;
    for (const auto& [name, value] : terms.terms) {
      INFO(name);
      CHECK(value == Approx(f.get<float>(p + ".term." + name)[0]).epsilon(1e-5));
      total += name == "aux" ? 0.4 * value : value;
    }
    CHECK(terms.terms.size() == (o.output == models::saf_output::single ? 1u : 2u));
    CHECK(terms.total == Approx(total));

    host_tensor<float> dx = host_tensor<float>::zeros(x.shape());
    head.backward(x, &dx);
    CHECK(max_rel(dx, f.get<float>(p + ".dx")) < 1e-4);
    head.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& prm) {
      INFO(name);  // structurally zero gradients (biases before a training-mode BN): floor 1e-3
      CHECK(max_rel(prm.grad, f.get<float>(p + ".grad." + name), 1e-3) < 1e-4);
    });
    head.visit_buffers("", [&](const std::string& name, auto& b) {
      if constexpr (std::is_same_v<std::decay_t<decltype(b)>, tensor<float, cpu>>) {
        INFO(name);
        CHECK(max_rel(b, f.get<float>(p + ".buffer." + name)) < 1e-4);
      }
    });

    head.fuse();
    CHECK(mismatches(f.get<uint8_t>(p + ".fused_labels"), head.fused_labels()) == 0);
    if (pyramidal) {
      CHECK(max_rel(head.fused_logits(), f.get<float>(p + ".fused_logits")) < 1e-4);
      CHECK(mismatches(f.get<uint8_t>(p + ".level_map"), head.level_map()) == 0);
    } else {
      CHECK(head.fused_logits().data() == head.semantic_logits().back().data());
      int off = 0;
      for (int64_t k = 0; k < head.level_map().numel(); ++k)
        off += head.level_map()[k] != head.levels();
      CHECK(off == 0);
    }
  }
}

TEST_CASE("saf ablations: every Table-A row runs with its loss terms and outputs",
          "[saf][ablation]") {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal;
  const shape feature{2, 8, 16, 16};
  host_tensor<float> x(feature);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = normal(rng);
  host_tensor<int32_t> labels({2, 64, 64});
  for (int64_t i = 0; i < labels.numel(); ++i) labels[i] = int32_t((i / 64 / 24 + i % 64 / 20) % 3);
  labels[5] = 255;
  for (char id : std::string("ABCDEFGHIJK")) {
    INFO("ablation " << id);
    auto o = models::saf_ablation(id);
    o.semantic_channels = 8;
    o.unity_channels = 4;
    models::saf_head<cpu> head(8, 3, o);
    head.initialize(rng);
    head.setup(feature, 4);
    std::set<std::string> names;
    head.visit_parameters("", [&](const std::string& n, nn::parameter<cpu>& p) {
      names.insert(n);
      p.zero_grad();
    });
    const bool pyramidal = o.output == models::saf_output::pyramidal;
    const bool single = o.output == models::saf_output::single;
    CHECK(head.levels() == (id == 'K' ? 2 : 4));
    CHECK(names.count("unity.reduce.conv.weight") == (pyramidal ? 1u : 0u));
    CHECK(names.count("semantic.anl.W.weight") ==
          (o.context == models::saf_context::anl ? 1u : 0u));
    CHECK(names.count("semantic.levels.0.anl.W.weight") == (id == 'H' ? 1u : 0u));
    CHECK(names.count("semantic.levels.0.query.weight") ==
          (o.context == models::saf_context::coarse_to_fine ? 1u : 0u));
    CHECK(names.count("semantic.levels.0.cls.conv2.weight") == (single ? 0u : 1u));
    if (id == 'K') {
      head.visit_parameters("", [&](const std::string& n, nn::parameter<cpu>& p) {
        if (n == "unity.heads.0.weight") CHECK(p.shape() == shape{1, 4, 8, 8});
      });
    }
    head.forward(x);
    REQUIRE(head.semantic_logits().size() == (single ? 1u : size_t(head.levels())));
    CHECK(head.semantic_logits().back().shape() == shape{2, 3, 16, 16});
    CHECK(head.semantic_logits().front().shape() ==
          (single ? shape{2, 3, 16, 16} : shape{2, 3, 2, 2}));
    CHECK(head.unity_logits().size() == (pyramidal ? size_t(head.levels() - 1) : 0u));
    const auto terms = head.loss(labels, 0.5f);
    std::vector<std::string> got;
    for (const auto& t : terms.terms) {
      got.push_back(t.first);
      CHECK(std::isfinite(t.second));
    }
    const std::vector<std::string> expected = pyramidal ? std::vector<std::string>{"ce", "bce"}
                                              : single  ? std::vector<std::string>{"ce"}
                                                        : std::vector<std::string>{"ce", "aux"};
    CHECK(got == expected);
    host_tensor<float> dx = host_tensor<float>::zeros(feature);
    head.backward(x, &dx);
    double norm = 0;
    for (int64_t i = 0; i < dx.numel(); ++i) norm += double(dx[i]) * dx[i];
    CHECK(norm > 0);
    CHECK(std::isfinite(norm));
    head.fuse();
    CHECK(head.fused_logits().shape() == shape{2, 3, 16, 16});
    CHECK(head.fused_labels().shape() == shape{2, 16, 16});
    int bad = 0;
    for (int64_t k = 0; k < head.level_map().numel(); ++k) {
      const int level = head.level_map()[k];
      bad += level < 1 || level > head.levels() || (!pyramidal && level != head.levels());
    }
    CHECK(bad == 0);
    head.set_training(false);
    head.forward(x);  // eval mode runs too
  }
}

TEST_CASE("saf ablations: the re-labeling of D / E / F and K's targets", "[saf][ablation]") {
  // K: levels at scales {8, 1} of the finest stride 4 (strides 32 and 4). With GT re-labeling,
  // a finest cell is ignored exactly when its 32 x 32 ancestor is a ground-truth unit cell.
  host_tensor<int32_t> labels({1, 64, 64});
  for (int64_t y = 0; y < 64; ++y)
    for (int64_t x = 0; x < 64; ++x)  // top-left 32-block one class; the others mixed
      labels[y * 64 + x] = y < 32 && x < 32 ? 2 : int32_t((x / 4 + y / 8) % 3);
  labels[40 * 64 + 40] = 255;
  auto o = models::parse_saf_options("ablation=K,ds=4,du=2,relabel=gt");
  models::saf_head<cpu> head(3, 3, o);
  std::mt19937_64 rng(1);
  head.initialize(rng);
  head.setup(shape{1, 3, 16, 16}, 4);
  host_tensor<float> x = host_tensor<float>::zeros({1, 3, 16, 16});
  head.forward(x);
  head.loss(labels);
  const auto& u = head.unity_targets()[0];
  const auto& y0 = head.semantic_targets()[0];
  const auto& y1 = head.semantic_targets()[1];
  REQUIRE(u.shape() == shape{1, 2, 2});
  REQUIRE(y1.shape() == shape{1, 16, 16});
  CHECK(u[0] == 1);  // the one-class block
  CHECK(y0[0] == 2);
  CHECK(u[1] == 0);  // mixed
  CHECK(u[3] == 0);  // mixed (one ignore pixel too: still mixed)
  CHECK(y0[1] == 255);
  int wrong = 0;
  for (int64_t r = 0; r < 16; ++r)
    for (int64_t c = 0; c < 16; ++c) {
      const int32_t want = r < 8 && c < 8 ? 255 : labels[(r * 4) * 64 + c * 4];
      wrong += y1[r * 16 + c] != want;
    }
  CHECK(wrong == 0);
  // D (raw) keeps every finest target; E (GT) ignores at least as many as F (TP).
  auto ignored = [&](char id) {
    auto oo = models::parse_saf_options(std::string("ablation=") + id + ",ds=4,du=2");
    models::saf_head<cpu> h(3, 3, oo);
    h.initialize(rng);
    h.setup(shape{1, 3, 16, 16}, 4);
    h.forward(x);
    h.loss(labels);
    int64_t n = 0;
    for (const auto& t : h.semantic_targets())
      for (int64_t k = 0; k < t.numel(); ++k) n += t[k] == 255;
    return n;
  };
  CHECK(ignored('D') < ignored('E'));
  CHECK(ignored('F') <= ignored('E'));
}

TEST_CASE("saf ablations: finite differences on APNB, plain, auxiliary and K heads",
          "[saf][ablation]") {
  const auto f = tensor_file::load(SEGKIT_GOLDEN_DIR "/saf_ablations.safetensors");
  const auto x = f.get<float>("x");
  const auto labels = golden_labels(f);
  const std::vector<std::pair<char, std::vector<std::string>>> cases = {
      {'G',
       {"semantic.anl.key.conv.weight", "semantic.anl.value.weight", "semantic.anl.W.weight",
        "semantic.anl.W.bias", "semantic.anl.fuse.conv.weight", "semantic.anl.fuse.bn.weight",
        "semantic.levels.0.cls.conv1.weight", "semantic.input.weight"}},
      {'H', {"semantic.levels.1.anl.key.conv.weight", "semantic.levels.3.anl.value.weight"}},
      {'A', {"semantic.levels.3.cls.conv2.weight", "semantic.input.bias"}},
      {'J', {"semantic.levels.0.cls.conv2.weight", "semantic.levels.2.agg.conv1.conv.weight"}},
      {'K', {"unity.heads.0.weight", "semantic.levels.0.query.weight"}}};
  testing::slope_tally tally;
  int total = 0;
  for (const auto& [id, names] : cases) {
    INFO("ablation " << id);
    auto o = golden_options(id);
    // GT re-labeling: TP makes the loss discontinuous in the unity parameters.
    o.relabel = ops::relabel_mode::ground_truth;
    models::saf_head<cpu> head(4, 3, o);
    head.setup(x.shape(), 4);
    load_parameters(head, f, id);
    head.set_training(false);  // running statistics: the loss is smooth in each weight
    auto loss_at = [&]() {
      head.forward(x);
      return head.loss(labels).total;
    };
    loss_at();
    head.backward(x, nullptr);
    for (const auto& want : names) {
      bool found = false;
      head.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
        if (name != want) return;
        found = true;
        const host_tensor<float> g = p.grad.clone();
        for (int64_t i : {int64_t(0), p.value.numel() / 2, p.value.numel() - 1}) {
          ++total;
          INFO(name << "[" << i << "]");
          testing::check_slope(loss_at, p.value[i], g[i], {}, tally);
        }
      });
      INFO(want);
      CHECK(found);
    }
  }
  INFO(tally.kinks << " of " << total << " elements skipped at a kink");
  CHECK(tally.checked >= total - 6);
}

TEST_CASE("saf ablations: option strings", "[saf][ablation]") {
  using models::parse_saf_options;
  CHECK(parse_saf_options("") == models::saf_options{});
  CHECK(parse_saf_options("ablation=I") == models::saf_options{});
  for (char id : std::string("ABCDEFGHIJK")) {
    INFO(id);
    const auto o = models::saf_ablation(id);
    CHECK(parse_saf_options(std::string("ablation=") + id) == o);
    CHECK(parse_saf_options(models::to_string(o)) == o);  // the canonical string reads back
  }
  const auto o = parse_saf_options("relabel=gt,tau=0.4,levels=3,context=anl,output=single");
  CHECK(o.relabel == ops::relabel_mode::ground_truth);
  CHECK(o.tau == Approx(0.4f));
  CHECK(o.levels == 3);
  CHECK(o.context == models::saf_context::anl);
  CHECK(o.output == models::saf_output::single);
  // ablation applies first, wherever it stands; the rest overrides it
  const auto g = parse_saf_options("tau=0.3, ablation=G ,ds=32");
  CHECK(g.context == models::saf_context::anl);
  CHECK(g.tau == Approx(0.3f));
  CHECK(g.semantic_channels == 32);
  const auto k = parse_saf_options("scales=16:2:1");
  CHECK(k.levels == 3);
  CHECK(k.scales == std::vector<int64_t>{16, 2, 1});
  CHECK(parse_saf_options("ablation=K,levels=4").scales.empty());
  CHECK(models::saf_level_scales(parse_saf_options("levels=3")) == std::vector<int64_t>{4, 2, 1});

  CHECK_THROWS_WITH(parse_saf_options("colour=red"),
                    Catch::Contains("colour") && Catch::Contains("relabel"));
  CHECK_THROWS_WITH(parse_saf_options("context=psp"),
                    Catch::Contains("psp") && Catch::Contains("anl_multi"));
  CHECK_THROWS_WITH(parse_saf_options("output=multi"),
                    Catch::Contains("multi") && Catch::Contains("auxiliary"));
  CHECK_THROWS_WITH(parse_saf_options("relabel=yes"), Catch::Contains("raw, gt, tp"));
  CHECK_THROWS_WITH(parse_saf_options("ablation=Z"), Catch::Contains("A, B, C"));
  CHECK_THROWS_WITH(parse_saf_options("tau=1"), Catch::Contains("tau"));
  CHECK_THROWS_WITH(parse_saf_options("tau=abc"), Catch::Contains("tau"));
  CHECK_THROWS_WITH(parse_saf_options("levels=1"), Catch::Contains("levels"));
  CHECK_THROWS_WITH(parse_saf_options("scales=8:3:1"), Catch::Contains("8:3:1"));
  CHECK_THROWS_WITH(parse_saf_options("scales=8:2"), Catch::Contains("ending with 1"));
  CHECK_THROWS_WITH(parse_saf_options("scales=8:x"), Catch::Contains("scales"));
  CHECK_THROWS_WITH(parse_saf_options("ds"), Catch::Contains("key=value"));
  CHECK_THROWS_AS(models::saf_ablation('L'), value_error);
  auto bad = models::saf_options{};
  bad.scales = {8, 1};  // levels (4) disagrees with the number of scales
  CHECK_THROWS_AS(models::saf_head<cpu>(8, 3, bad), value_error);
  // K needs the feature divisible by its coarsest scale only
  models::saf_head<cpu> kh(8, 3, models::saf_ablation('K'));
  CHECK_NOTHROW(kh.setup(shape{1, 8, 8, 24}, 4));
  CHECK_THROWS_WITH(kh.setup(shape{1, 8, 12, 24}, 4), Catch::Contains("coarsest scale 8"));
}
