// Tests of ops/pyramid_fuse.hpp (SaF Eq. 2): the op against a literal composition of Eq. 2
// written here with core ops (ops::resize nearest upsampling of every level, sigmoid, >= tau,
// products of indicators, sum, argmax) on random and hand-built pyramids (L = 2..5,
// non-square, N = 1, C = 1, levels more than 2x apart), tau at the boundary, both level-map
// types, logits skipped, bad inputs, and PyTorch parity through
// tests/golden/pyramid_fuse.safetensors (tests/reference/gen_pyramid_fuse.py).
#include <cmath>
#include <random>

#include "op_checker.hpp"
#include "segkit/ops/pyramid_fuse.hpp"
#include "segkit/ops/resize.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;
using ops::pyramid_fuse_params;

namespace {

struct pyramid {
  std::vector<host_tensor<float>> semantic, unity;
};

struct fused {
  host_tensor<int32_t> labels;
  host_tensor<float> logits;
  host_tensor<int32_t> level;
};

// Eq. 2 as written: Y = sum_l prod_{k<l} 1[Up(sigmoid U_k) < tau] * 1[Up(sigmoid U_l) >= tau]
// * Up(Y_l), with U_L = 1; the level map is the same sum with l in place of Up(Y_l).
fused naive_fuse(const pyramid& p, float tau) {
  const size_t L = p.semantic.size();
  const shape finest = p.semantic.back().shape();
  const int64_t N = finest[0], C = finest[1], H = finest[2], W = finest[3];
  const ops::resize_params nearest{ops::resize_mode::nearest, false};
  auto sum = host_tensor<float>::zeros(finest);
  auto level = host_tensor<float>::zeros(shape{N, 1, H, W});
  auto still = host_tensor<float>(shape{N, 1, H, W});
  still.fill(1.f);  // prod_{k<l} 1[... < tau]
  for (size_t l = 0; l < L; ++l) {
    host_tensor<float> up_y(finest);
    ops::resize_forward(nearest, p.semantic[l], up_y);
    host_tensor<float> indicator(shape{N, 1, H, W});
    if (l + 1 < L) {
      host_tensor<float> up_u(shape{N, 1, H, W});
      ops::resize_forward(nearest, p.unity[l], up_u);
      for (int64_t i = 0; i < up_u.numel(); ++i)
        indicator[i] = 1.f / (1.f + std::exp(-up_u[i])) >= tau ? 1.f : 0.f;
    } else {
      indicator.fill(1.f);
    }
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < H * W; ++i) {
        const float weight = still[n * H * W + i] * indicator[n * H * W + i];
        for (int64_t c = 0; c < C; ++c)
          sum[(n * C + c) * H * W + i] += weight * up_y[(n * C + c) * H * W + i];
        level[n * H * W + i] += weight * float(l + 1);
        still[n * H * W + i] *= 1.f - indicator[n * H * W + i];
      }
  }
  fused result{host_tensor<int32_t>(shape{N, H, W}), sum, host_tensor<int32_t>(shape{N, H, W})};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < H * W; ++i) {
      int32_t best = 0;
      for (int64_t c = 1; c < C; ++c)
        if (sum[(n * C + c) * H * W + i] > sum[(n * C + best) * H * W + i]) best = int32_t(c);
      result.labels[n * H * W + i] = best;
      result.level[n * H * W + i] = int32_t(level[n * H * W + i]);
    }
  return result;
}

template <class LevelT = int32_t>
fused run_fuse(const pyramid& p, float tau, bool with_logits = true) {
  const auto g = ops::make_pyramid_fuse_geometry(ops::detail::shapes_of(p.semantic),
                                                 ops::detail::shapes_of(p.unity));
  host_tensor<int32_t> labels(ops::pyramid_fuse_labels_shape(g));
  host_tensor<float> logits(ops::pyramid_fuse_logits_shape(g));
  logits.fill(-123.f);
  host_tensor<LevelT> level(ops::pyramid_fuse_labels_shape(g));
  ops::pyramid_fuse(pyramid_fuse_params{tau}, p.semantic, p.unity, labels,
                    with_logits ? &logits : nullptr, level);
  host_tensor<int32_t> level32(level.shape());
  for (int64_t i = 0; i < level.numel(); ++i) level32[i] = int32_t(level[i]);
  return {labels, logits, level32};
}

// Finest H x W, levels at H >> shifts[l] (shifts descending, last 0).
pyramid random_pyramid(int64_t N, int64_t C, int64_t H, int64_t W, std::vector<int> shifts,
                       unsigned seed, float unity_spread = 2.f) {
  std::mt19937 rng(seed);
  pyramid p;
  for (size_t l = 0; l < shifts.size(); ++l) {
    const int64_t h = H >> shifts[l], w = W >> shifts[l];
    p.semantic.push_back(testing::random_tensor(shape{N, C, h, w}, rng, -3.f, 3.f));
    if (l + 1 < shifts.size())
      p.unity.push_back(testing::random_tensor(shape{N, 1, h, w}, rng, -unity_spread, unity_spread));
  }
  return p;
}

void require_equal(const host_tensor<int32_t>& a, const host_tensor<int32_t>& b, const char* what) {
  INFO(what);
  REQUIRE(a.shape() == b.shape());
  int64_t mismatches = 0, first = -1;
  for (int64_t i = 0; i < a.numel(); ++i)
    if (a[i] != b[i]) {
      if (first < 0) first = i;
      ++mismatches;
    }
  INFO("first mismatch at " << first << " of " << a.numel());
  CHECK(mismatches == 0);
}

void check_against_naive(const pyramid& p, float tau) {
  const auto expected = naive_fuse(p, tau);
  const auto actual = run_fuse(p, tau);
  require_equal(actual.labels, expected.labels, "labels");
  require_equal(actual.level, expected.level, "level map");
  testing::require_all_close(actual.logits, expected.logits, 0.f, 0.f, "fused logits");
  const auto small = run_fuse<uint8_t>(p, tau, false);
  require_equal(small.labels, expected.labels, "labels (uint8 level map, no logits)");
  require_equal(small.level, expected.level, "uint8 level map");
}

}  // namespace

TEST_CASE("pyramid_fuse matches Eq. 2 composed of core ops on random pyramids") {
  struct config {
    int64_t n, c, h, w;
    std::vector<int> shifts;
    float tau;
  };
  const config configs[] = {
      {2, 5, 8, 12, {1, 0}, 0.5f},                 // L = 2, non-square
      {1, 7, 16, 8, {2, 1, 0}, 0.5f},              // L = 3, N = 1
      {3, 1, 16, 16, {3, 2, 1, 0}, 0.5f},          // L = 4, C = 1
      {2, 4, 32, 48, {4, 3, 2, 1, 0}, 0.7f},       // L = 5, non-square
      {2, 6, 16, 24, {3, 1, 0}, 0.3f},             // a 4x gap between levels 1 and 2
      {1, 3, 4, 2, {1, 0}, 0.5f},                  // tiny
      {2, 150, 16, 16, {3, 2, 1, 0}, 0.5f},        // the benchmark's C
      {1, 3, 4, 600, {2, 1, 0}, 0.5f},             // rows wider than one CPU chunk
      {2, 9, 64, 96, {5, 1, 0}, 0.5f},             // a 32x block; CPU chunks split rows
      {1, 2, 8, 1100, {1, 0}, 0.5f},               // a row split across CPU chunks
  };
  unsigned seed = 1;
  for (const auto& c : configs) {
    INFO("N " << c.n << " C " << c.c << " " << c.h << "x" << c.w << " L " << c.shifts.size()
              << " tau " << c.tau);
    check_against_naive(random_pyramid(c.n, c.c, c.h, c.w, c.shifts, seed++), c.tau);
  }
}

// Logits drawn from {0, 1, 2}: most locations have tied maxima, so the first channel holding
// the maximum must win in the CPU path's vectorised blocks of channels as in Eq. 2's argmax.
// Unity maps are smooth fields (confident regions contiguous, as a trained head gives): whole
// lines of cells answer or not, and runs of one level span many cells.
TEST_CASE("pyramid_fuse: ties go to the first maximum; coherent unity maps") {
  const std::vector<int> shifts{3, 2, 1, 0};
  for (const int64_t channels : {int64_t(150), int64_t(6)}) {
    INFO("C " << channels);
    pyramid p = random_pyramid(2, channels, 64, 96, shifts, 11);
    for (auto& level : p.semantic)
      for (int64_t i = 0; i < level.numel(); ++i) level[i] = std::floor(level[i] / 2.f) + 2.f;
    for (size_t l = 0; l < p.unity.size(); ++l) {
      auto& u = p.unity[l];
      for (int64_t n = 0; n < u.size(0); ++n)
        for (int64_t y = 0; y < u.size(2); ++y)
          for (int64_t x = 0; x < u.size(3); ++x)
            u.at(n, 0, y, x) = float(std::sin(7.0 * y / u.size(2) + l + n) *
                                     std::cos(5.0 * x / u.size(3) - 0.5 * l));
    }
    check_against_naive(p, 0.5f);
  }
}

// The CPU path fills the level map by runs of confident cells; the CUDA kernel walks each
// location's levels with math::fuse_level_at. Both must decide alike, tau off 0.5 included.
TEST_CASE("pyramid_fuse level map equals math::fuse_level_at per location") {
  const pyramid p = random_pyramid(2, 3, 32, 48, {4, 2, 1, 0}, 5, 1.f);
  for (const float tau : {0.5f, 0.3f, 0.8f}) {
    INFO("tau " << tau);
    const auto g = ops::make_pyramid_fuse_geometry(ops::detail::shapes_of(p.semantic),
                                                   ops::detail::shapes_of(p.unity));
    const fused result = run_fuse(p, tau, false);
    const float threshold = ops::math::unity_threshold_logit(tau);
    int64_t mismatches = 0;
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t y = 0; y < 32; ++y) {
        const float* rows[ops::max_pyramid_levels];
        for (int l = 0; l + 1 < g.levels; ++l)
          rows[l] = p.unity[size_t(l)].data() + (n * g.height[l] + (y >> g.shift[l])) * g.width[l];
        for (int64_t x = 0; x < 48; ++x)
          mismatches += result.level.at(n, y, x) !=
                        1 + ops::math::fuse_level_at(rows, g.shift, g.levels, x, threshold);
      }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("pyramid_fuse hand-built: all confident at level 1, none confident, mixed") {
  auto p = random_pyramid(2, 4, 16, 8, {3, 2, 1, 0}, 11);
  SECTION("all confident at level 1") {
    for (auto& u : p.unity) u.fill(5.f);
    const auto out = run_fuse(p, 0.5f);
    for (int64_t i = 0; i < out.level.numel(); ++i) REQUIRE(out.level[i] == 1);
    // Labels are the coarsest level's argmax, upsampled by 8.
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t y = 0; y < 16; ++y)
        for (int64_t x = 0; x < 8; ++x) {
          int32_t best = 0;
          for (int32_t c = 1; c < 4; ++c)
            if (p.semantic[0].at(n, c, y / 8, x / 8) > p.semantic[0].at(n, best, y / 8, x / 8))
              best = c;
          REQUIRE(out.labels.at(n, y, x) == best);
        }
  }
  SECTION("none confident") {
    for (auto& u : p.unity) u.fill(-5.f);
    const auto out = run_fuse(p, 0.5f);
    for (int64_t i = 0; i < out.level.numel(); ++i) REQUIRE(out.level[i] == 4);
    testing::require_all_close(out.logits, p.semantic[3], 0.f, 0.f, "logits = finest level");
  }
  SECTION("mixed, two levels: a confident coarse cell decides its whole block") {
    pyramid q;
    // Level 1: 1 x 2 cells, C = 2 (planes c0 = [0, 3], c1 = [1, -1]): cell 0 says class 1,
    // cell 1 says class 0.
    q.semantic.push_back(from_vector<float>(shape{1, 2, 1, 2}, {0.f, 3.f, /*c1*/ 1.f, -1.f}));
    q.unity.push_back(from_vector<float>(shape{1, 1, 1, 2}, {2.f, -2.f}));  // only cell 0 sure
    // Level 2: 2 x 4, class 1 wins at even x, class 0 at odd x.
    q.semantic.push_back(from_vector<float>(
        shape{1, 2, 2, 4}, {0, 1, 0, 1, 0, 1, 0, 1, /*c1*/ 1, 0, 1, 0, 1, 0, 1, 0}));
    const auto out = run_fuse(q, 0.5f);
    const std::vector<int32_t> labels{1, 1, 1, 0, 1, 1, 1, 0};
    const std::vector<int32_t> levels{1, 1, 2, 2, 1, 1, 2, 2};
    CHECK(to_vector(out.labels) == labels);
    CHECK(to_vector(out.level) == levels);
    CHECK(out.logits.at(0, 1, 1, 0) == 1.f);  // level 1's cell 0, class 1
    CHECK(out.logits.at(0, 0, 0, 1) == 0.f);  // level 1's cell 0, class 0
    CHECK(out.logits.at(0, 0, 1, 3) == 1.f);  // level 2's (1, 3), class 0
  }
}

TEST_CASE("pyramid_fuse threshold boundary: u exactly logit(tau) is confident") {
  for (float tau : {0.5f, 0.3f, 0.8f}) {
    INFO("tau " << tau);
    auto p = random_pyramid(1, 3, 4, 4, {1, 0}, 5);
    const float t = ops::math::unity_threshold_logit(tau);
    if (tau == 0.5f) CHECK(t == 0.f);
    p.unity[0].fill(t);
    CHECK(run_fuse(p, tau).level[0] == 1);
    p.unity[0].fill(std::nextafter(t, -1e9f));
    CHECK(run_fuse(p, tau).level[0] == 2);
  }
  // tau = 0.5 and u = 0: sigmoid(0) = 0.5 >= 0.5 exactly, so Eq. 2 agrees with the op.
  auto p = random_pyramid(2, 3, 8, 8, {2, 1, 0}, 6);
  for (auto& u : p.unity)
    for (int64_t i = 0; i < u.numel(); i += 2) u[i] = 0.f;
  check_against_naive(p, 0.5f);
}

TEST_CASE("pyramid_fuse rejects bad inputs with the level and both shapes") {
  auto p = random_pyramid(2, 3, 8, 8, {2, 1, 0}, 9);
  host_tensor<int32_t> labels(shape{2, 8, 8}), level(shape{2, 8, 8});
  host_tensor<float> logits(shape{2, 3, 8, 8});
  auto call = [&](const pyramid& q, float tau) {
    ops::pyramid_fuse(pyramid_fuse_params{tau}, q.semantic, q.unity, labels, &logits, level);
  };
  for (float tau : {0.f, 1.f, -0.5f, 1.5f, std::nanf("")})
    CHECK_THROWS_WITH(call(p, tau), Catch::Contains("tau") && Catch::Contains("(0, 1)"));
  {
    auto q = p;
    q.semantic[1] = host_tensor<float>(shape{2, 4, 4, 4});
    CHECK_THROWS_WITH(call(q, 0.5f), Catch::Contains("semantic level 2") &&
                                         Catch::Contains("[2, 4, 4, 4]") &&
                                         Catch::Contains("[2, 3, 8, 8]") && Catch::Contains("N and C"));
  }
  {
    auto q = p;
    q.semantic[0] = host_tensor<float>(shape{2, 3, 3, 3});
    q.unity[0] = host_tensor<float>(shape{2, 1, 3, 3});
    CHECK_THROWS_WITH(call(q, 0.5f), Catch::Contains("semantic level 1") &&
                                         Catch::Contains("[2, 3, 3, 3]") && Catch::Contains("power-of-two"));
  }
  {
    auto q = p;  // 2x in H, 4x in W
    q.semantic[1] = host_tensor<float>(shape{2, 3, 4, 2});
    q.unity[1] = host_tensor<float>(shape{2, 1, 4, 2});
    CHECK_THROWS_WITH(call(q, 0.5f), Catch::Contains("semantic level 2") && Catch::Contains("power-of-two"));
  }
  {
    auto q = p;  // levels 1 and 2 swapped
    std::swap(q.semantic[0], q.semantic[1]);
    std::swap(q.unity[0], q.unity[1]);
    CHECK_THROWS_WITH(call(q, 0.5f), Catch::Contains("coarse to fine") &&
                                         Catch::Contains("[2, 3, 4, 4]") && Catch::Contains("[2, 3, 2, 2]"));
  }
  {
    auto q = p;
    q.unity.pop_back();
    CHECK_THROWS_WITH(call(q, 0.5f), Catch::Contains("1 unity maps for 3 semantic levels"));
  }
  {
    auto q = p;
    q.unity[1] = host_tensor<float>(shape{2, 1, 2, 2});
    CHECK_THROWS_WITH(call(q, 0.5f), Catch::Contains("unity map of level 2") &&
                                         Catch::Contains("[2, 1, 2, 2]") && Catch::Contains("[2, 3, 4, 4]"));
  }
  {
    pyramid q;
    q.semantic.push_back(p.semantic.back());
    CHECK_THROWS_AS(call(q, 0.5f), shape_error);
  }
  host_tensor<int32_t> wrong(shape{2, 8, 4});
  CHECK_THROWS_WITH(ops::pyramid_fuse(pyramid_fuse_params{}, p.semantic, p.unity, wrong, &logits, level),
                    Catch::Contains("labels has shape [2, 8, 4]") && Catch::Contains("[2, 8, 8]"));
  host_tensor<float> wrong_logits(shape{2, 2, 8, 8});
  CHECK_THROWS_WITH(ops::pyramid_fuse(pyramid_fuse_params{}, p.semantic, p.unity, labels, &wrong_logits, level),
                    Catch::Contains("fused logits has shape [2, 2, 8, 8]"));
}

TEST_CASE("pyramid_fuse matches PyTorch's Eq. 2 (golden)") {
  auto file = tensor_file::load(SEGKIT_GOLDEN_DIR "/pyramid_fuse.safetensors");
  const int cases = std::stoi(file.metadata().at("cases"));
  REQUIRE(cases > 0);
  for (int k = 0; k < cases; ++k) {
    const std::string key = std::to_string(k);
    INFO("golden case " << k);
    const auto meta = file.get<int32_t>(key + ".levels");
    pyramid p;
    for (int l = 0; l < meta[0]; ++l) {
      p.semantic.push_back(file.get<float>(key + ".semantic" + std::to_string(l)));
      if (l + 1 < meta[0]) p.unity.push_back(file.get<float>(key + ".unity" + std::to_string(l)));
    }
    const float tau = file.get<float>(key + ".tau")[0];
    const auto out = run_fuse(p, tau);
    require_equal(out.labels, file.get<int32_t>(key + ".labels"), "labels");
    require_equal(out.level, file.get<int32_t>(key + ".level"), "level map");
    testing::require_all_close(out.logits, file.get<float>(key + ".logits"), 0.f, 0.f, "logits");
  }
}

#include "segkit/nn/pyramid_nodes.hpp"

TEST_CASE("pyramid nodes: planned at setup, no allocation per forward, same results as the ops") {
  auto p = random_pyramid(2, 5, 16, 16, {3, 2, 1, 0}, 21);
  nn::pyramid_fuser_node<cpu> fuser({0.5f}, true);
  fuser.setup(ops::detail::shapes_of(p.semantic), ops::detail::shapes_of(p.unity));
  const auto expected = naive_fuse(p, 0.5f);
  const long long before = allocations<cpu>().total;
  const auto& labels = fuser.forward(p.semantic, p.unity);
  CHECK(allocations<cpu>().total == before);
  require_equal(labels, expected.labels, "node labels");
  testing::require_all_close(fuser.logits(), expected.logits, 0.f, 0.f, "node logits");
  CHECK(int(fuser.level_map()[0]) == expected.level[0]);
  CHECK_THROWS_AS(fuser.setup({shape{2, 5, 4, 4}}, {}), shape_error);

  nn::pyramid_ground_truth_node<cpu> gt({3, 2, 255}, ops::relabel_mode::ground_truth);
  const auto map = from_vector<int32_t>(shape{1, 8, 8}, std::vector<int32_t>(64, 3));
  gt.setup(map.shape());
  const long long before_gt = allocations<cpu>().total;
  gt.forward(map);
  CHECK(allocations<cpu>().total == before_gt);
  CHECK(gt.unity()[0][0] == 1);
  CHECK(gt.semantic()[0][0] == 3);
  CHECK(gt.semantic()[2][0] == 255);  // done by coarser
  CHECK_THROWS_AS(gt.setup(shape{1, 8, 12}), shape_error);
}
