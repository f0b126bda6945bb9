// CUDA sum/mean (the elementwise executors) against the CPU path, forward and backward.
#include "op_checker.hpp"
#include "segkit/ops/reduce.hpp"

using namespace segkit;

TEST_CASE("cuda reduce: sum and mean match the cpu") {
  std::mt19937 rng(12);
  const std::vector<std::pair<shape, std::vector<int>>> cases = {
      {{2, 3, 5, 7}, {1}}, {{2, 3, 5, 7}, {0, 2, 3}}, {{2, 3, 5, 7}, {}}, {{4, 19, 64, 65}, {-1}},
      {{2, 3, 4, 2, 3}, {1, 3}}};
  for (const auto& [s, axes] : cases)
    for (bool keepdim : {false, true})
      for (bool average : {false, true}) {
        INFO(s.to_string() << " keepdim " << keepdim << " mean " << average);
        const ops::reduce_params params{axes, keepdim};
        auto x = testing::random_tensor(s, rng);
        const shape out_shape = ops::reduce_output_shape(s, params);
        host_tensor<float> y(out_shape);
        tensor<float, cuda> y_d(out_shape);
        auto x_d = to<cuda>(x);
        auto dy = testing::random_tensor(out_shape, rng);
        auto dx = testing::random_tensor(s, rng);
        auto dy_d = to<cuda>(dy), dx_d = to<cuda>(dx);
        if (average) {
          ops::mean(params, x, y), ops::mean(params, x_d, y_d);
          ops::mean_backward(params, dy, dx), ops::mean_backward(params, dy_d, dx_d);
        } else {
          ops::sum(params, x, y), ops::sum(params, x_d, y_d);
          ops::sum_backward(params, dy, dx), ops::sum_backward(params, dy_d, dx_d);
        }
        testing::require_all_close(to<cpu>(y_d), y, 1e-4f, 1e-4f, "forward");
        testing::require_all_close(to<cpu>(dx_d), dx, 1e-6f, 1e-6f, "backward");
      }
}
