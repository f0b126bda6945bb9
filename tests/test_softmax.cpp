#include <cmath>

#include "op_checker.hpp"
#include "segkit/ops/softmax.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;

namespace {

// Naive reference in double: every element re-derives its row's max and sum.
host_tensor<float> naive_softmax(const host_tensor<float>& x, int axis, bool log) {
  const shape& s = x.shape();
  const int a = s.normalize_axis(axis);
  const int64_t n = s[a], inner = s.span(a + 1, s.rank());
  host_tensor<float> y(s);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t base = i / (n * inner) * n * inner + i % inner;
    double m = -INFINITY, sum = 0;
    for (int64_t k = 0; k < n; ++k) m = std::max<double>(m, x[base + k * inner]);
    for (int64_t k = 0; k < n; ++k) sum += std::exp(double(x[base + k * inner]) - m);
    y[i] = float(log ? double(x[i]) - m - std::log(sum) : std::exp(double(x[i]) - m) / sum);
  }
  return y;
}

testing::op_case softmax_case(const shape& s, int axis, bool log, unsigned seed) {
  std::mt19937 rng(seed);
  testing::op_case test;
  test.name = std::string(log ? "log_softmax " : "softmax ") + s.to_string() + " axis " +
              std::to_string(axis);
  test.inputs = {testing::random_tensor(s, rng, -3.f, 3.f)};
  const ops::softmax_params params{axis};
  test.forward = [params, log](const testing::tensors& in) {
    host_tensor<float> y(in[0].shape());
    log ? ops::log_softmax_forward(params, in[0], y) : ops::softmax_forward(params, in[0], y);
    return testing::tensors{y};
  };
  test.backward = [params, log](const testing::tensors&, const testing::tensors& out,
                                const testing::tensors& dout, testing::tensors& din) {
    log ? ops::log_softmax_backward(params, out[0], dout[0], din[0])
        : ops::softmax_backward(params, out[0], dout[0], din[0]);
  };
  test.step = 3e-3f;
  return test;
}

}  // namespace

TEST_CASE("softmax: gradients along every axis, negative axes included") {
  const shape s{2, 3, 5, 7};
  unsigned seed = 1;
  for (int axis : {0, 1, 2, 3, -1, -3})
    for (bool log : {false, true}) testing::check_op(softmax_case(s, axis, log, seed++));
  // odd sizes, N=1, C=1, an inner extent wider than one CPU tile (64), rank 5
  testing::check_op(softmax_case({1, 5, 9, 11}, 1, false, 20));
  testing::check_op(softmax_case({1, 5, 9, 11}, 1, true, 21));
  testing::check_op(softmax_case({2, 1, 3, 3}, 1, false, 22));
  testing::check_op(softmax_case({2, 1, 3, 3}, 1, true, 23));
  testing::check_op(softmax_case({2, 3, 2, 3, 2}, 2, true, 24));
}

TEST_CASE("softmax: values against a naive double reference") {
  std::mt19937 rng(7);
  for (const shape& s : {shape{2, 3, 5, 7}, shape{1, 19, 13, 11}, shape{3, 1, 4, 2}, shape{4, 300}})
    for (int axis = -s.rank(); axis < s.rank(); ++axis)
      for (bool log : {false, true}) {
        auto x = testing::random_tensor(s, rng, -20.f, 20.f);
        host_tensor<float> y(s);
        log ? ops::log_softmax_forward({axis}, x, y) : ops::softmax_forward({axis}, x, y);
        testing::require_all_close(y, naive_softmax(x, axis, log), 1e-5f, 1e-5f,
                                   s.to_string() + " axis " + std::to_string(axis));
      }
}

TEST_CASE("softmax: stable for large inputs, in place allowed") {
  auto x = from_vector<float>({1, 3}, {1000.f, 1001.f, 1002.f});
  host_tensor<float> y({1, 3});
  ops::softmax_forward({-1}, x, y);
  const double e = std::exp(1.0), denom = 1 + e + e * e;
  CHECK(y[0] == Approx(1 / denom));
  CHECK(y[2] == Approx(e * e / denom));
  ops::log_softmax_forward({-1}, x, x);  // y aliases x
  CHECK(x[1] == Approx(1 - std::log(denom)));
}

TEST_CASE("softmax: PyTorch parity over axes 1 and -1") {
  const auto file = tensor_file::load(SEGKIT_GOLDEN_DIR "/softmax.safetensors");
  const auto x = file.get<float>("x"), dy = file.get<float>("dy");
  for (auto [axis, tag] : {std::pair<int, const char*>{1, "axis1"}, {-1, "axis_last"}})
    for (bool log : {false, true}) {
      const std::string name = std::string(log ? "log_softmax_" : "softmax_") + tag;
      host_tensor<float> y(x.shape());
      auto dx = host_tensor<float>::zeros(x.shape());
      if (log) {
        ops::log_softmax_forward({axis}, x, y);
        ops::log_softmax_backward({axis}, y, dy, dx);
      } else {
        ops::softmax_forward({axis}, x, y);
        ops::softmax_backward({axis}, y, dy, dx);
      }
      testing::require_all_close(y, file.get<float>(name + "_y"), 1e-5f, 1e-5f, name + " forward");
      testing::require_all_close(dx, file.get<float>(name + "_dx"), 1e-5f, 1e-4f, name + " backward");
    }
}

TEST_CASE("softmax: bad inputs") {
  host_tensor<float> x({2, 3, 4}), y({2, 4, 3});
  CHECK_THROWS_WITH(ops::softmax_forward({1}, x, y), Catch::Contains("softmax_forward") &&
                                                         Catch::Contains("[2, 3, 4]") &&
                                                         Catch::Contains("[2, 4, 3]"));
  host_tensor<float> y_ok({2, 3, 4});
  CHECK_THROWS_WITH(ops::log_softmax_forward({3}, x, y_ok), Catch::Contains("axis 3"));
  CHECK_THROWS_AS(ops::softmax_forward({-4}, x, y_ok), shape_error);
  CHECK_THROWS_AS(ops::softmax_backward({1}, x, y_ok, y), shape_error);
}
