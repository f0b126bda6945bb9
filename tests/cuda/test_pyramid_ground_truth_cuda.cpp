// CUDA pyramidal ground truth and re-labeling against the CPU path: random blocky label maps
// with ignore pixels, L = 2..5, strides 1..4, N = 1 and 3, all three re-labeling variants.
#include <catch2/catch.hpp>

#include "op_checker.hpp"
#include "segkit/ops/pyramid_ground_truth.hpp"

using namespace segkit;

namespace {

template <class Device>
struct pyramid_targets {
  std::vector<tensor<int32_t, Device>> semantic, unity;
};

template <class Device>
pyramid_targets<Device> allocate(const ops::pyramid_ground_truth_params& p, const shape& labels) {
  pyramid_targets<Device> t;
  for (int l = 0; l < p.levels; ++l) {
    t.semantic.emplace_back(ops::pyramid_semantic_shape(p, labels, l));
    if (l + 1 < p.levels) t.unity.emplace_back(ops::pyramid_unity_shape(p, labels, l));
  }
  return t;
}

void compare(int64_t N, int64_t H, int64_t W, int levels, int64_t stride, unsigned seed) {
  INFO("N " << N << " " << H << "x" << W << " L " << levels << " s_L " << stride);
  const ops::pyramid_ground_truth_params p{levels, stride, 255};
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> cls(0, 3), coin(0, 99);
  host_tensor<int32_t> labels(shape{N, H, W});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        labels.at(n, y, x) = coin(rng) < 3 ? 255 : ((y / 5 + x / 7 + n) % 3 == 0 ? cls(rng) % 2 : 2);
  for (auto mode : {ops::relabel_mode::raw, ops::relabel_mode::ground_truth,
                    ops::relabel_mode::true_positive}) {
    auto cpu_t = allocate<cpu>(p, labels.shape());
    ops::pyramid_ground_truth(p, labels, cpu_t.semantic, cpu_t.unity);
    std::vector<host_tensor<float>> predicted;
    std::vector<tensor<float, cuda>> predicted_d;
    for (const auto& u : cpu_t.unity) {
      predicted.push_back(testing::random_tensor(shape{N, 1, u.size(1), u.size(2)}, rng, -2.f, 2.f));
      predicted_d.push_back(to<cuda>(predicted.back()));
    }
    ops::pyramid_relabel({mode, 255, 0.5f}, cpu_t.semantic, cpu_t.unity, &predicted);
    const auto labels_d = to<cuda>(labels);
    auto gpu_t = allocate<cuda>(p, labels.shape());
    ops::pyramid_ground_truth(p, labels_d, gpu_t.semantic, gpu_t.unity);
    ops::pyramid_relabel({mode, 255, 0.5f}, gpu_t.semantic, gpu_t.unity, &predicted_d);
    for (int l = 0; l < levels; ++l) {
      INFO("level " << l + 1 << " mode " << int(mode));
      CHECK(to_vector(to<cpu>(gpu_t.semantic[size_t(l)])) == to_vector(cpu_t.semantic[size_t(l)]));
      if (l + 1 < levels)
        CHECK(to_vector(to<cpu>(gpu_t.unity[size_t(l)])) == to_vector(cpu_t.unity[size_t(l)]));
    }
  }
}

}  // namespace

TEST_CASE("cuda pyramid_ground_truth and pyramid_relabel match cpu") {
  compare(2, 8, 12, 2, 2, 1);
  compare(1, 16, 32, 3, 2, 2);
  compare(3, 64, 96, 4, 4, 3);
  compare(1, 64, 32, 5, 1, 4);
  compare(8, 512, 512, 4, 4, 5);
}
