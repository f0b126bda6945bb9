// CUDA activations against the CPU path, forward and backward (added onto a prefilled dx),
// for every kind. Inputs keep away from the kinks (0 for relu/leaky_relu, 0 and 6 for relu6)
// so both paths take the same branch on every element.
#include "op_checker.hpp"
#include "segkit/ops/activation.hpp"

using namespace segkit;

namespace {

// Uniform in [-8, 8], nudged at least 0.05 away from 0 and 6.
host_tensor<float> away_from_kinks(const shape& s, std::mt19937& rng) {
  auto x = testing::random_tensor(s, rng, -8.f, 8.f);
  for (int64_t i = 0; i < x.numel(); ++i) {
    for (float kink : {0.f, 6.f})
      if (std::abs(x[i] - kink) < 0.05f) x[i] = kink + (x[i] < kink ? -0.05f : 0.05f);
  }
  return x;
}

}  // namespace

TEST_CASE("cuda activations: forward and backward match the cpu for every kind") {
  std::mt19937 rng(18);
  for (ops::activation kind :
       {ops::activation::relu, ops::activation::relu6, ops::activation::leaky_relu,
        ops::activation::gelu, ops::activation::sigmoid, ops::activation::tanh})
    for (const shape& s : {shape{2, 3, 33, 35}, shape{1}, shape{7, 5}, shape{1, 1, 1, 513}}) {
      INFO(ops::activation_name(kind) << " on " << s.to_string());
      const ops::activation_params params{kind, 0.2f};
      auto x = away_from_kinks(s, rng);
      auto dy = testing::random_tensor(s, rng), dx = testing::random_tensor(s, rng);
      auto x_d = to<cuda>(x), dy_d = to<cuda>(dy), dx_d = to<cuda>(dx);
      host_tensor<float> y(s);
      tensor<float, cuda> y_d(s);
      ops::activation_forward(params, x, y);
      ops::activation_forward(params, x_d, y_d);
      testing::require_all_close(to<cpu>(y_d), y, 1e-6f, 1e-5f, "forward");
      ops::activation_backward(params, x, y, dy, dx);
      ops::activation_backward(params, x_d, y_d, dy_d, dx_d);
      testing::require_all_close(to<cpu>(dx_d), dx, 1e-6f, 1e-5f, "backward (added to a prefill)");

      // In place (y aliasing x), as the header allows.
      auto inplace_d = to<cuda>(x);
      ops::activation_forward(params, inplace_d, inplace_d);
      testing::require_all_close(to<cpu>(inplace_d), y, 1e-6f, 1e-5f, "forward in place");
    }
}
