// CUDA dropout against the CPU path: the same mask for the same seed, same outputs/gradients.
#include "op_checker.hpp"
#include "segkit/ops/dropout.hpp"

using namespace segkit;

TEST_CASE("cuda dropout: same mask, outputs and gradients as the cpu") {
  std::mt19937 rng(14);
  const shape s{2, 16, 33, 35};
  for (const ops::dropout_params params :
       {ops::dropout_params{0.3f, true, 5}, ops::dropout_params{0.3f, false, 5},
        ops::dropout_params{1.f, true, 5}}) {
    auto x = testing::random_tensor(s, rng), dy = testing::random_tensor(s, rng);
    auto dx = testing::random_tensor(s, rng);
    host_tensor<float> y(s);
    host_tensor<uint8_t> mask(s);
    tensor<float, cuda> y_d(s);
    tensor<uint8_t, cuda> mask_d(s);
    auto x_d = to<cuda>(x), dy_d = to<cuda>(dy), dx_d = to<cuda>(dx);
    ops::dropout_forward(params, x, y, mask);
    ops::dropout_forward(params, x_d, y_d, mask_d);
    CHECK(to_vector(to<cpu>(mask_d)) == to_vector(mask));
    testing::require_all_close(to<cpu>(y_d), y, 1e-6f, 1e-6f, "forward");
    ops::dropout_backward(params, mask, dy, dx);
    ops::dropout_backward(params, mask_d, dy_d, dx_d);
    testing::require_all_close(to<cpu>(dx_d), dx, 1e-6f, 1e-6f, "backward");
  }
}
