// CUDA pyramid sampling against the CPU path: forward and (adding) backward on the ANL sizes,
// odd planes, n > H, S = 1, a plane wide enough to need opt-in shared memory.
#include <catch2/catch.hpp>

#include "op_checker.hpp"
#include "segkit/ops/pyramid_sampling.hpp"

using namespace segkit;

namespace {
void compare_pyramid(const std::vector<int64_t>& sizes, const shape& extent, unsigned seed) {
  const ops::pyramid_sampling_params p{sizes};
  INFO("pyramid sampling on " << extent.to_string() << " with " << sizes.size() << " sizes");
  std::mt19937 rng(seed);
  const shape out = ops::pyramid_sampling_output_shape(p, extent);
  auto x = testing::random_tensor(extent, rng);
  auto dy = testing::random_tensor(out, rng);
  auto prefill = testing::random_tensor(extent, rng);
  host_tensor<float> y(out);
  ops::pyramid_sampling_forward(p, x, y);
  auto dx = prefill.clone();
  ops::pyramid_sampling_backward(p, dy, dx);
  auto xd = to<cuda>(x), dyd = to<cuda>(dy), dxd = to<cuda>(prefill);
  tensor<float, cuda> yd(out);
  ops::pyramid_sampling_forward(p, xd, yd);
  ops::pyramid_sampling_backward(p, dyd, dxd);
  testing::require_all_close(to<cpu>(yd), y, 1e-6f, 1e-5f, "pyramid sampling forward");
  testing::require_all_close(to<cpu>(dxd), dx, 1e-6f, 1e-5f, "pyramid sampling backward (added)");
}
}  // namespace

TEST_CASE("cuda pyramid sampling matches the cpu") {
  compare_pyramid({1, 3, 6, 8}, {2, 16, 32, 32}, 1);
  compare_pyramid({1, 3, 6, 8}, {1, 3, 13, 11}, 2);
  compare_pyramid({1, 3, 6, 8}, {1, 1, 7, 5}, 3);
  compare_pyramid({1}, {2, 2, 5, 6}, 4);
  compare_pyramid({4, 2, 9}, {1, 2, 9, 10}, 5);
  compare_pyramid({1, 3, 6, 8}, {1, 2, 40, 20000}, 6);  // > 48 KiB of shared memory
}
