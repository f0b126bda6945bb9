// CUDA permute against the CPU path (tiled there), forward and backward.
#include "op_checker.hpp"
#include "segkit/ops/permute.hpp"

using namespace segkit;

TEST_CASE("cuda permute matches the cpu") {
  std::mt19937 rng(16);
  const std::vector<std::pair<shape, std::vector<int>>> cases = {
      {{2, 19, 33, 35}, {0, 2, 3, 1}}, {{2, 33, 35, 19}, {0, 3, 1, 2}}, {{3, 4, 5}, {2, 0, 1}},
      {{2, 3, 4, 2, 3}, {4, 1, 3, 0, 2}}};
  for (const auto& [s, axes] : cases) {
    INFO(s.to_string());
    const ops::permute_params params{axes};
    const shape out_shape = ops::permute_output_shape(s, params);
    auto x = testing::random_tensor(s, rng), dy = testing::random_tensor(out_shape, rng);
    auto dx = testing::random_tensor(s, rng);
    auto x_d = to<cuda>(x), dy_d = to<cuda>(dy), dx_d = to<cuda>(dx);
    host_tensor<float> y(out_shape);
    tensor<float, cuda> y_d(out_shape);
    ops::permute(params, x, y);
    ops::permute(params, x_d, y_d);
    testing::require_all_close(to<cpu>(y_d), y, 1e-7f, 0, "forward");
    ops::permute_backward(params, dy, dx);
    ops::permute_backward(params, dy_d, dx_d);
    testing::require_all_close(to<cpu>(dx_d), dx, 1e-6f, 1e-6f, "backward");
  }
}
