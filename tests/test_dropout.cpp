#include "op_checker.hpp"
#include "segkit/ops/dropout.hpp"

using namespace segkit;

namespace {

testing::op_case dropout_case(const ops::dropout_params& params, const shape& s) {
  std::mt19937 rng(unsigned(params.seed) + 1);
  testing::op_case test;
  test.name = std::string("dropout ") + (params.training ? "train p=" : "eval p=") +
              std::to_string(params.p);
  test.inputs = {testing::random_tensor(s, rng)};
  // The mask depends on (seed, index) only, so every forward of the checker uses the same one.
  test.forward = [params](const testing::tensors& in) {
    host_tensor<float> y(in[0].shape());
    host_tensor<uint8_t> mask(in[0].shape());
    ops::dropout_forward(params, in[0], y, mask);
    return testing::tensors{y};
  };
  test.backward = [params](const testing::tensors& in, const testing::tensors&,
                           const testing::tensors& dout, testing::tensors& din) {
    host_tensor<float> y(in[0].shape());
    host_tensor<uint8_t> mask(in[0].shape());
    ops::dropout_forward(params, in[0], y, mask);
    ops::dropout_backward(params, mask, dout[0], din[0]);
  };
  return test;
}

std::vector<uint8_t> mask_for(const ops::dropout_params& params, const shape& s) {
  host_tensor<float> x = host_tensor<float>::zeros(s), y(s);
  host_tensor<uint8_t> mask(s);
  ops::dropout_forward(params, x, y, mask);
  return to_vector(mask);
}

}  // namespace

TEST_CASE("dropout: gradients with a fixed mask, train and eval") {
  testing::check_op(dropout_case({0.3f, true, 42}, {2, 3, 5, 7}));
  testing::check_op(dropout_case({0.7f, true, 7}, {1, 1, 9, 11}));
  testing::check_op(dropout_case({0.5f, false, 42}, {2, 3, 5, 7}));
}

TEST_CASE("dropout: values are x * mask / (1 - p) in training, x in eval") {
  std::mt19937 rng(1);
  auto x = testing::random_tensor({3, 4, 17}, rng);
  host_tensor<float> y(x.shape());
  host_tensor<uint8_t> mask(x.shape());
  ops::dropout_forward({0.25f, true, 9}, x, y, mask);
  int kept = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    REQUIRE((mask[i] == 0 || mask[i] == 1));
    kept += mask[i];
    CHECK(y[i] == Approx(mask[i] ? x[i] / 0.75f : 0.f));
  }
  CHECK(kept > 0);
  CHECK(kept < x.numel());
  ops::dropout_forward({0.25f, false, 9}, x, y, mask);
  for (int64_t i = 0; i < x.numel(); ++i) CHECK((y[i] == x[i] && mask[i] == 1));
  ops::dropout_forward({1.f, true, 9}, x, y, mask);  // PyTorch: p = 1 zeroes everything
  for (int64_t i = 0; i < x.numel(); ++i) CHECK((y[i] == 0.f && mask[i] == 0));
  auto dx = host_tensor<float>::zeros(x.shape());
  ops::dropout_backward({1.f, true, 9}, mask, x, dx);
  for (int64_t i = 0; i < x.numel(); ++i) CHECK(dx[i] == 0.f);
  ops::dropout_forward({0.f, true, 9}, x, y, mask);
  for (int64_t i = 0; i < x.numel(); ++i) CHECK(y[i] == x[i]);
}

TEST_CASE("dropout: the mask fraction is close to p over a large tensor") {
  const shape s{4, 16, 64, 64};  // 262144 elements: std of the fraction ~ 0.001
  for (float p : {0.1f, 0.5f, 0.9f}) {
    const auto mask = mask_for({p, true, 123}, s);
    double dropped = 0;
    for (uint8_t k : mask) dropped += k == 0;
    CHECK(dropped / double(mask.size()) == Approx(p).margin(0.006));
  }
}

TEST_CASE("dropout: same seed same mask, another seed another, independent of threads") {
  const shape s{2, 8, 64, 64};
  const int threads = num_threads();
  set_num_threads(1);
  const auto one_thread = mask_for({0.5f, true, 77}, s);
  set_num_threads(2);
  const auto two_threads = mask_for({0.5f, true, 77}, s);
  set_num_threads(threads);
  CHECK(one_thread == two_threads);
  CHECK(mask_for({0.5f, true, 77}, s) == one_thread);
  const auto other = mask_for({0.5f, true, 78}, s);
  size_t differ = 0;
  for (size_t i = 0; i < other.size(); ++i) differ += other[i] != one_thread[i];
  CHECK(double(differ) / double(other.size()) == Approx(0.5).margin(0.02));  // independent
}

TEST_CASE("dropout: bad inputs") {
  host_tensor<float> x({2, 3}), y({2, 3}), wrong({3, 2});
  host_tensor<uint8_t> mask({2, 3}), wrong_mask({6});
  CHECK_THROWS_WITH(ops::dropout_forward({1.5f, true, 0}, x, y, mask),
                    Catch::Contains("p is 1.5") && Catch::Contains("[0, 1]"));
  CHECK_THROWS_AS(ops::dropout_forward({-0.1f, true, 0}, x, y, mask), value_error);
  CHECK_THROWS_WITH(ops::dropout_forward({0.5f, true, 0}, x, wrong, mask),
                    Catch::Contains("[2, 3]") && Catch::Contains("[3, 2]"));
  CHECK_THROWS_WITH(ops::dropout_forward({0.5f, true, 0}, x, y, wrong_mask),
                    Catch::Contains("mask") && Catch::Contains("[6]"));
  CHECK_THROWS_AS(ops::dropout_backward({0.5f, true, 0}, mask, x, wrong), shape_error);
}
