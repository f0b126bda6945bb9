// Tests of ops/pyramid_ground_truth.hpp: the four cell cases on hand-built label maps, a
// brute-force reference that looks at every pixel of every cell (random maps with regions,
// ignore pixels, L = 2..5, strides 1..4, non-square, N = 1), the three re-labeling variants
// against a reference that checks every ancestor explicitly, bad inputs, and PyTorch parity
// through tests/golden/pyramid_ground_truth.safetensors (tests/reference/gen_pyramid_ground_truth.py).
#include <random>
#include <set>

#include "op_checker.hpp"
#include "segkit/ops/pyramid_ground_truth.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;
using ops::pyramid_ground_truth_params;
using ops::relabel_mode;

namespace {

constexpr int32_t ignore = 255;

struct targets {
  std::vector<host_tensor<int32_t>> semantic, unity;
};

targets run_ground_truth(const pyramid_ground_truth_params& p, const host_tensor<int32_t>& labels) {
  targets t;
  for (int l = 0; l < p.levels; ++l) {
    t.semantic.emplace_back(ops::pyramid_semantic_shape(p, labels.shape(), l));
    t.semantic.back().fill(-7);
    if (l + 1 < p.levels) {
      t.unity.emplace_back(ops::pyramid_unity_shape(p, labels.shape(), l));
      t.unity.back().fill(-7);
    }
  }
  ops::pyramid_ground_truth(p, labels, t.semantic, t.unity);
  return t;
}

// Every pixel of every cell, the table of METHODS.md as written.
targets brute_force(const pyramid_ground_truth_params& p, const host_tensor<int32_t>& labels) {
  const int64_t N = labels.size(0), H = labels.size(1), W = labels.size(2);
  targets t;
  for (int l = 0; l < p.levels; ++l) {
    const int64_t s = p.finest_stride * (int64_t(1) << (p.levels - 1 - l));
    host_tensor<int32_t> y(shape{N, H / s, W / s}), u(shape{N, H / s, W / s});
    for (int64_t n = 0; n < N; ++n)
      for (int64_t cy = 0; cy < H / s; ++cy)
        for (int64_t cx = 0; cx < W / s; ++cx) {
          if (l == p.levels - 1) {  // nearest: floor(dst * in / out) = dst * s
            y.at(n, cy, cx) = labels.at(n, cy * s, cx * s);
            continue;
          }
          std::set<int32_t> classes;
          bool has_ignore = false;
          for (int64_t py = cy * s; py < (cy + 1) * s; ++py)
            for (int64_t px = cx * s; px < (cx + 1) * s; ++px) {
              const int32_t v = labels.at(n, py, px);
              if (v == p.ignore_index) has_ignore = true;
              else classes.insert(v);
            }
          if (classes.size() >= 2) {
            u.at(n, cy, cx) = 0;
            y.at(n, cy, cx) = p.ignore_index;
          } else if (classes.size() == 1 && !has_ignore) {
            u.at(n, cy, cx) = 1;
            y.at(n, cy, cx) = *classes.begin();
          } else {
            u.at(n, cy, cx) = p.ignore_index;
            y.at(n, cy, cx) = p.ignore_index;
          }
        }
    t.semantic.push_back(y);
    if (l + 1 < p.levels) t.unity.push_back(u);
  }
  return t;
}

// Re-labeling by explicit ancestors: cell (y, x) of level l has ancestor (y / 2^(l-k), x / 2^(l-k)).
targets brute_force_relabel(const targets& in, relabel_mode mode, float tau,
                            const std::vector<host_tensor<float>>& predicted) {
  targets out{{}, {}};
  for (auto& t : in.semantic) out.semantic.push_back(t.clone());
  for (auto& t : in.unity) out.unity.push_back(t.clone());
  if (mode == relabel_mode::raw) return out;
  const int L = int(in.semantic.size());
  for (int l = 1; l < L; ++l) {
    const auto& y = in.semantic[size_t(l)];
    for (int64_t n = 0; n < y.size(0); ++n)
      for (int64_t cy = 0; cy < y.size(1); ++cy)
        for (int64_t cx = 0; cx < y.size(2); ++cx) {
          bool done = false;
          for (int k = 0; k < l; ++k) {
            const int64_t f = int64_t(1) << (l - k);
            const bool unit = in.unity[size_t(k)].at(n, cy / f, cx / f) == 1;
            const bool confident =
                mode != relabel_mode::true_positive ||
                1.0 / (1.0 + std::exp(-double(predicted[size_t(k)].at(n, 0, cy / f, cx / f)))) >= tau;
            done = done || (unit && confident);
          }
          if (!done) continue;
          out.semantic[size_t(l)].at(n, cy, cx) = ignore;
          if (l + 1 < L) out.unity[size_t(l)].at(n, cy, cx) = ignore;
        }
  }
  return out;
}

void require_same(const targets& a, const targets& b) {
  REQUIRE(a.semantic.size() == b.semantic.size());
  for (size_t l = 0; l < a.semantic.size(); ++l) {
    INFO("Y level " << l + 1);
    CHECK(to_vector(a.semantic[l]) == to_vector(b.semantic[l]));
  }
  for (size_t l = 0; l < a.unity.size(); ++l) {
    INFO("U level " << l + 1);
    CHECK(to_vector(a.unity[l]) == to_vector(b.unity[l]));
  }
}

// Blocky regions of a few classes with some ignore pixels: all four cell cases appear.
host_tensor<int32_t> random_labels(int64_t N, int64_t H, int64_t W, unsigned seed, int classes = 4) {
  std::mt19937 rng(seed);
  host_tensor<int32_t> labels(shape{N, H, W});
  std::uniform_int_distribution<int> cls(0, classes - 1), size(1, 12), coin(0, 99);
  for (int64_t n = 0; n < N; ++n) {
    const int bh = size(rng), bw = size(rng);
    std::vector<int32_t> region(size_t((H / bh + 1) * (W / bw + 1)));
    for (auto& r : region) r = coin(rng) < 8 ? ignore : cls(rng);
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        int32_t v = region[size_t((y / bh) * (W / bw + 1) + x / bw)];
        if (coin(rng) < 2) v = ignore;
        labels.at(n, y, x) = v;
      }
  }
  return labels;
}

std::vector<host_tensor<float>> random_predictions(const targets& t, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<host_tensor<float>> result;
  for (const auto& u : t.unity)
    result.push_back(testing::random_tensor(shape{u.size(0), 1, u.size(1), u.size(2)}, rng, -2.f, 2.f));
  return result;
}

}  // namespace

TEST_CASE("pyramid_ground_truth: the four cell cases, hand-built") {
  // L = 2, s_L = 1: one level-1 cell of 2 x 2 pixels per case, side by side.
  const auto labels = from_vector<int32_t>(shape{1, 2, 8}, {3, 3, 3, 5, 3, ignore, ignore, ignore,
                                                            3, 3, 3, 3, 3, 3, ignore, ignore});
  const auto t = run_ground_truth({2, 1, ignore}, labels);
  CHECK(to_vector(t.unity[0]) == std::vector<int32_t>{1, 0, ignore, ignore});
  CHECK(to_vector(t.semantic[0]) == std::vector<int32_t>{3, ignore, ignore, ignore});
  CHECK(to_vector(t.semantic[1]) == to_vector(labels));  // s_L = 1: Y(L) is the map
  // Two classes plus ignore is mixed; s_L = 2: Y(L) is each 2 x 2 cell's top-left pixel.
  const auto more = from_vector<int32_t>(shape{1, 4, 4}, {ignore, 7, 2, 2,  //
                                                          7, 7, 2, 2,       //
                                                          9, 9, 9, 9,       //
                                                          4, 9, 9, 9});
  const auto m = run_ground_truth({2, 2, ignore}, more);
  CHECK(to_vector(m.unity[0]) == std::vector<int32_t>{0});
  CHECK(to_vector(m.semantic[0]) == std::vector<int32_t>{ignore});
  CHECK(to_vector(m.semantic[1]) == std::vector<int32_t>{ignore, 2, 9, 9});
}

TEST_CASE("pyramid_ground_truth matches a pixel-by-pixel brute force") {
  struct config {
    int64_t n, h, w;
    int levels;
    int64_t stride;
  };
  const config configs[] = {{2, 8, 12, 2, 2},  {1, 16, 32, 3, 2},  {3, 32, 16, 4, 2},
                            {2, 64, 96, 4, 4}, {1, 64, 32, 5, 1},  {2, 24, 8, 3, 1},
                            {1, 64, 128, 4, 4}, {2, 96, 36, 2, 3}};
  unsigned seed = 1;
  for (const auto& c : configs) {
    INFO("N " << c.n << " " << c.h << "x" << c.w << " L " << c.levels << " s_L " << c.stride);
    const pyramid_ground_truth_params p{c.levels, c.stride, ignore};
    const auto labels = random_labels(c.n, c.h, c.w, seed++);
    const auto t = run_ground_truth(p, labels);
    require_same(t, brute_force(p, labels));
    // Every case of the table appears at some level in these maps.
    std::set<int32_t> seen;
    for (const auto& u : t.unity)
      for (int64_t i = 0; i < u.numel(); ++i) seen.insert(u[i]);
    if (c.h * c.w >= 1024) CHECK(seen.size() == 3);
    for (relabel_mode mode : {relabel_mode::raw, relabel_mode::ground_truth, relabel_mode::true_positive}) {
      INFO("relabel mode " << int(mode));
      const auto predicted = random_predictions(t, seed++);
      auto r = run_ground_truth(p, labels);
      ops::pyramid_relabel({mode, ignore, 0.6f}, r.semantic, r.unity, &predicted);
      require_same(r, brute_force_relabel(t, mode, 0.6f, predicted));
    }
  }
}

TEST_CASE("pyramid_relabel hand-built: GT vs true-positive, ignore is never a true positive") {
  // L = 3, s_L = 1, 4 x 8 pixels: level 1 is 1 x 2 cells of 4 x 4.
  // Left half: one class (unit at level 1). Right half: class 1 with ignore in its top-left
  // 2 x 2 cell... U(1) = ignore, and its other level-2 cells are units.
  const auto labels = from_vector<int32_t>(shape{1, 4, 8}, {2, 2, 2, 2, ignore, 1, 1, 1,  //
                                                            2, 2, 2, 2, 1, 1, 1, 1,       //
                                                            2, 2, 2, 2, 1, 1, 1, 1,       //
                                                            2, 2, 2, 2, 1, 1, 1, 1});
  const pyramid_ground_truth_params p{3, 1, ignore};
  const auto t = run_ground_truth(p, labels);
  CHECK(to_vector(t.unity[0]) == std::vector<int32_t>{1, ignore});
  CHECK(to_vector(t.unity[1]) == std::vector<int32_t>{1, 1, ignore, 1, 1, 1, 1, 1});
  std::vector<host_tensor<float>> predicted{from_vector<float>(shape{1, 1, 1, 2}, {-1.f, 5.f}),
                                            from_vector<float>(shape{1, 1, 2, 4}, {3, 3, 3, 3, 3, 3, 3, -3})};
  SECTION("GT: everything under the left unit cell is ignore; the right half keeps its labels") {
    auto r = run_ground_truth(p, labels);
    ops::pyramid_relabel({relabel_mode::ground_truth, ignore, 0.5f}, r.semantic, r.unity, nullptr);
    CHECK(to_vector(r.unity[1]) == std::vector<int32_t>{ignore, ignore, ignore, 1, ignore, ignore, 1, 1});
    CHECK(r.semantic[2].at(0, 0, 0) == ignore);
    CHECK(r.semantic[2].at(0, 1, 4) == 1);       // under (0, 2), U = ignore: not a unit cell
    CHECK(r.semantic[2].at(0, 3, 7) == ignore);  // under level-2 unit cell (1, 3)
    CHECK(r.semantic[2].at(0, 0, 7) == ignore);  // under level-2 unit cell (0, 3)
  }
  SECTION("TP: the left unit cell is predicted mixed, so nothing below it is done by coarser") {
    auto r = run_ground_truth(p, labels);
    ops::pyramid_relabel({relabel_mode::true_positive, ignore, 0.5f}, r.semantic, r.unity, &predicted);
    // Level 2: no level-1 true positive (left: predicted -1; right: U = ignore despite 5).
    CHECK(to_vector(r.unity[1]) == to_vector(t.unity[1]));
    // Level 3: under level-2 true positives (every unit cell except (1, 3), predicted -3).
    CHECK(r.semantic[2].at(0, 0, 0) == ignore);
    CHECK(r.semantic[2].at(0, 2, 4) == ignore);  // under (1, 2): unit, predicted 3
    CHECK(r.semantic[2].at(0, 1, 4) == 1);       // under (0, 2): U = ignore, never a TP
    CHECK(r.semantic[2].at(0, 3, 7) == 1);       // under (1, 3): unit but predicted -3
  }
}

TEST_CASE("pyramid_ground_truth rejects bad inputs") {
  const auto labels = random_labels(1, 16, 24, 3);
  const pyramid_ground_truth_params p{3, 2, ignore};
  CHECK_THROWS_WITH(run_ground_truth({4, 2, ignore}, labels),
                    Catch::Contains("[1, 16, 24]") && Catch::Contains("coarsest stride 16"));
  CHECK_THROWS_AS(run_ground_truth({3, 2, 1}, labels), value_error);
  CHECK_THROWS_AS(run_ground_truth({1, 2, ignore}, labels), value_error);
  CHECK_THROWS_AS(run_ground_truth({3, 0, ignore}, labels), value_error);
  auto t = run_ground_truth(p, labels);
  auto wrong = t;
  wrong.semantic[1] = host_tensor<int32_t>(shape{1, 4, 4});
  CHECK_THROWS_WITH(ops::pyramid_ground_truth(p, labels, wrong.semantic, wrong.unity),
                    Catch::Contains("semantic output of level 2 has shape [1, 4, 4]") &&
                        Catch::Contains("[1, 4, 6]"));
  wrong = t;
  wrong.unity.pop_back();
  CHECK_THROWS_WITH(ops::pyramid_ground_truth(p, labels, wrong.semantic, wrong.unity),
                    Catch::Contains("1 unity outputs for 3 levels"));
  CHECK_THROWS_WITH(ops::pyramid_relabel({relabel_mode::true_positive, ignore, 0.5f}, t.semantic, t.unity, nullptr),
                    Catch::Contains("predicted unity"));
  std::vector<host_tensor<float>> predicted{host_tensor<float>(shape{1, 1, 2, 3}),
                                            host_tensor<float>(shape{1, 1, 4, 4})};
  CHECK_THROWS_WITH(ops::pyramid_relabel({relabel_mode::true_positive, ignore, 0.5f}, t.semantic, t.unity, &predicted),
                    Catch::Contains("predicted unity level 2 has shape [1, 1, 4, 4]") && Catch::Contains("[1, 1, 4, 6]"));
  CHECK_THROWS_WITH(ops::pyramid_relabel({relabel_mode::true_positive, ignore, 1.f}, t.semantic, t.unity, &predicted),
                    Catch::Contains("tau"));
}

TEST_CASE("pyramid_ground_truth matches PyTorch (golden)") {
  auto file = tensor_file::load(SEGKIT_GOLDEN_DIR "/pyramid_ground_truth.safetensors");
  const int cases = std::stoi(file.metadata().at("cases"));
  REQUIRE(cases > 0);
  for (int k = 0; k < cases; ++k) {
    const std::string key = std::to_string(k);
    INFO("golden case " << k);
    const auto params = file.get<int32_t>(key + ".params");  // levels, stride, ignore
    const pyramid_ground_truth_params p{params[0], params[1], params[2]};
    const auto labels = file.get<int32_t>(key + ".labels");
    const auto t = run_ground_truth(p, labels);
    std::vector<host_tensor<float>> predicted;
    for (int l = 0; l + 1 < p.levels; ++l)
      predicted.push_back(file.get<float>(key + ".predicted" + std::to_string(l)));
    const float tau = file.get<float>(key + ".tau")[0];
    const char* names[] = {"raw", "gt", "tp"};
    for (int mode = 0; mode < 3; ++mode) {
      INFO("variant " << names[mode]);
      auto r = run_ground_truth(p, labels);
      ops::pyramid_relabel({relabel_mode(mode), p.ignore_index, tau}, r.semantic, r.unity, &predicted);
      for (int l = 0; l < p.levels; ++l) {
        INFO("level " << l + 1);
        const std::string prefix = key + "." + names[mode] + ".";
        CHECK(to_vector(r.semantic[size_t(l)]) == to_vector(file.get<int32_t>(prefix + "Y" + std::to_string(l))));
        if (l + 1 < p.levels)
          CHECK(to_vector(r.unity[size_t(l)]) == to_vector(file.get<int32_t>(prefix + "U" + std::to_string(l))));
      }
    }
  }
}
