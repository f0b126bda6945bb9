// CUDA softmax / log-softmax against the CPU path, forward and backward, every axis.
#include "op_checker.hpp"
#include "segkit/ops/softmax.hpp"

using namespace segkit;

TEST_CASE("cuda softmax: forward and backward match the cpu on every axis") {
  std::mt19937 rng(13);
  for (const shape& s : {shape{2, 19, 33, 35}, shape{1, 3, 5, 7}, shape{4, 2000}, shape{3, 1, 5}})
    for (int axis = -1; axis < s.rank(); ++axis)
      for (bool log : {false, true}) {
        INFO(s.to_string() << " axis " << axis << " log " << log);
        const ops::softmax_params params{axis};
        auto x = testing::random_tensor(s, rng, -10.f, 10.f);
        auto dy = testing::random_tensor(s, rng);
        auto dx = testing::random_tensor(s, rng);
        auto x_d = to<cuda>(x), dy_d = to<cuda>(dy), dx_d = to<cuda>(dx);
        host_tensor<float> y(s);
        tensor<float, cuda> y_d(s);
        if (log) {
          ops::log_softmax_forward(params, x, y), ops::log_softmax_forward(params, x_d, y_d);
          ops::log_softmax_backward(params, y, dy, dx);
          ops::log_softmax_backward(params, y_d, dy_d, dx_d);
        } else {
          ops::softmax_forward(params, x, y), ops::softmax_forward(params, x_d, y_d);
          ops::softmax_backward(params, y, dy, dx);
          ops::softmax_backward(params, y_d, dy_d, dx_d);
        }
        testing::require_all_close(to<cpu>(y_d), y, 1e-5f, 1e-4f, "forward");
        testing::require_all_close(to<cpu>(dx_d), dx, 1e-5f, 1e-4f, "backward");
      }
}

// Masked entries (-inf) as the first element of a row: the CPU gives them probability 0; a
// kernel that normalises online from m = -inf would compute exp(-inf - -inf) = NaN instead.
TEST_CASE("cuda softmax: rows that start with -inf match the cpu") {
  std::mt19937 rng(17);
  const shape s{2, 5, 3, 4};
  for (int axis : {1, -1}) {
    INFO("axis " << axis);
    const ops::softmax_params params{axis};
    auto x = testing::random_tensor(s, rng, -3.f, 3.f);
    // Element 0 along the axis of every row, and element 1 too in some rows.
    for (int64_t n = 0; n < s[0]; ++n)
      for (int64_t c = 0; c < s[1]; ++c)
        for (int64_t h = 0; h < s[2]; ++h)
          for (int64_t w = 0; w < s[3]; ++w) {
            const int64_t k = axis == 1 ? c : w, other = axis == 1 ? w : c;
            if (k == 0 || (k == 1 && other % 2 == 0)) x.at(n, c, h, w) = -INFINITY;
          }
    auto dy = testing::random_tensor(s, rng), dx = testing::random_tensor(s, rng);
    auto x_d = to<cuda>(x), dy_d = to<cuda>(dy), dx_d = to<cuda>(dx);
    host_tensor<float> y(s);
    tensor<float, cuda> y_d(s);
    ops::softmax_forward(params, x, y), ops::softmax_forward(params, x_d, y_d);
    ops::softmax_backward(params, y, dy, dx), ops::softmax_backward(params, y_d, dy_d, dx_d);
    testing::require_all_close(to<cpu>(y_d), y, 1e-5f, 1e-4f, "forward");
    testing::require_all_close(to<cpu>(dx_d), dx, 1e-5f, 1e-4f, "backward");
  }
}
