// CUDA pyramid fuser against the CPU path: labels, logits and both level-map types, for
// L = 2..5, non-square, N = 1, C = 1, and a tau with unity values exactly on logit(tau).
#include <catch2/catch.hpp>

#include "op_checker.hpp"
#include "segkit/ops/pyramid_fuse.hpp"

using namespace segkit;

namespace {

template <class LevelT>
void compare_fuse(int64_t N, int64_t C, int64_t H, int64_t W, const std::vector<int>& shifts,
                  float tau, unsigned seed) {
  INFO("N " << N << " C " << C << " " << H << "x" << W << " L " << shifts.size() << " tau " << tau);
  std::mt19937 rng(seed);
  std::vector<host_tensor<float>> semantic, unity;
  std::vector<tensor<float, cuda>> semantic_d, unity_d;
  for (size_t l = 0; l < shifts.size(); ++l) {
    const int64_t h = H >> shifts[l], w = W >> shifts[l];
    semantic.push_back(testing::random_tensor(shape{N, C, h, w}, rng, -3.f, 3.f));
    semantic_d.push_back(to<cuda>(semantic.back()));
    if (l + 1 < shifts.size()) {
      auto u = testing::random_tensor(shape{N, 1, h, w}, rng, -2.f, 2.f);
      for (int64_t i = 0; i < u.numel(); i += 7) u[i] = ops::math::unity_threshold_logit(tau);
      unity.push_back(u);
      unity_d.push_back(to<cuda>(u));
    }
  }
  const shape out{N, H, W}, logit_shape{N, C, H, W};
  host_tensor<int32_t> labels(out);
  host_tensor<float> logits(logit_shape);
  host_tensor<LevelT> level(out);
  ops::pyramid_fuse(ops::pyramid_fuse_params{tau}, semantic, unity, labels, &logits, level);
  tensor<int32_t, cuda> labels_d(out);
  tensor<float, cuda> logits_d(logit_shape);
  tensor<LevelT, cuda> level_d(out);
  ops::pyramid_fuse(ops::pyramid_fuse_params{tau}, semantic_d, unity_d, labels_d, &logits_d, level_d);
  CHECK(to_vector(to<cpu>(labels_d)) == to_vector(labels));
  CHECK(to_vector(to<cpu>(level_d)) == to_vector(level));
  testing::require_all_close(to<cpu>(logits_d), logits, 0.f, 0.f, "fused logits");
  tensor<int32_t, cuda> labels_only(out);
  ops::pyramid_fuse(ops::pyramid_fuse_params{tau}, semantic_d, unity_d, labels_only, nullptr, level_d);
  CHECK(to_vector(to<cpu>(labels_only)) == to_vector(labels));
}

}  // namespace

TEST_CASE("cuda pyramid_fuse matches cpu") {
  compare_fuse<int32_t>(2, 5, 8, 12, {1, 0}, 0.5f, 1);
  compare_fuse<uint8_t>(1, 7, 16, 8, {2, 1, 0}, 0.3f, 2);
  compare_fuse<int32_t>(3, 1, 16, 16, {3, 2, 1, 0}, 0.5f, 3);
  compare_fuse<uint8_t>(2, 4, 32, 48, {4, 3, 2, 1, 0}, 0.7f, 4);
  compare_fuse<int32_t>(8, 150, 128, 128, {3, 2, 1, 0}, 0.5f, 5);
}
