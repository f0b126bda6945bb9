#include <cmath>
#include <fstream>

#include "op_checker.hpp"
#include "segkit/ops/batch_norm.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;

namespace {

struct bn_state {
  host_tensor<float> running_mean, running_var;
};

bn_state random_state(int64_t channels, unsigned seed) {
  std::mt19937 rng(seed);
  return {testing::random_tensor({channels}, rng, -0.5f, 0.5f),
          testing::random_tensor({channels}, rng, 0.5f, 2.f)};
}

// check_op case over (x, gamma, beta); the running statistics are copied fresh for every
// forward so repeated forwards are identical (training mode updates them in place).
testing::op_case batch_norm_case(const std::string& name, bool training, const shape& extent,
                                 unsigned seed) {
  std::mt19937 rng(seed);
  const int64_t channels = extent[1];
  ops::batch_norm_params params;
  params.training = training;
  const bn_state state = random_state(channels, seed + 1);
  testing::op_case test;
  test.name = name;
  test.inputs = {testing::random_tensor(extent, rng, -2.f, 2.f),
                 testing::random_tensor({channels}, rng, 0.5f, 1.5f),
                 testing::random_tensor({channels}, rng, -1.f, 1.f)};
  test.forward = [params, state](const testing::tensors& in) {
    host_tensor<float> y(in[0].shape());
    auto rm = state.running_mean.clone(), rv = state.running_var.clone();
    host_tensor<float> mean(rm.shape()), inv_std(rm.shape());
    ops::batch_norm_forward(params, in[0], in[1], in[2], rm, rv, y, mean, inv_std);
    return testing::tensors{y};
  };
  test.backward = [params, state](const testing::tensors& in, const testing::tensors&,
                                  const testing::tensors& dout, testing::tensors& din) {
    host_tensor<float> y(in[0].shape());
    auto rm = state.running_mean.clone(), rv = state.running_var.clone();
    host_tensor<float> mean(rm.shape()), inv_std(rm.shape());
    ops::batch_norm_forward(params, in[0], in[1], in[2], rm, rv, y, mean, inv_std);
    ops::batch_norm_backward(params, in[0], in[1], mean, inv_std, dout[0], &din[0], &din[1],
                             &din[2]);
  };
  test.step = 1e-2f;
  test.absolute_tolerance = 3e-3f;
  test.relative_tolerance = 2e-2f;
  return test;
}

// Naive per-channel statistics in double, straight from the definition.
void naive_moments(const host_tensor<float>& x, int64_t c, double& mean, double& biased,
                   double& unbiased) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  double sum = 0;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) sum += x.at(b, c, i, j);
  const double count = double(n * h * w);
  mean = sum / count;
  double sq = 0;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) sq += (x.at(b, c, i, j) - mean) * (x.at(b, c, i, j) - mean);
  biased = sq / count;
  unbiased = sq / (count - 1);
}

}  // namespace

TEST_CASE("batch_norm: gradients in training mode") {
  testing::check_op(batch_norm_case("train [2,3,5,7]", true, {2, 3, 5, 7}, 11));
  testing::check_op(batch_norm_case("train N=1 odd HW [1,2,3,5]", true, {1, 2, 3, 5}, 12));
  testing::check_op(batch_norm_case("train C=1 [3,1,3,3]", true, {3, 1, 3, 3}, 13));
  testing::check_op(batch_norm_case("train 1x1 planes [4,3,1,1]", true, {4, 3, 1, 1}, 14));
}

TEST_CASE("batch_norm: gradients in eval mode") {
  testing::check_op(batch_norm_case("eval [2,3,5,7]", false, {2, 3, 5, 7}, 21));
  testing::check_op(batch_norm_case("eval N=1 [1,2,3,5]", false, {1, 2, 3, 5}, 22));
  testing::check_op(batch_norm_case("eval C=1 single value [1,1,1,1]", false, {1, 1, 1, 1}, 23));
}

TEST_CASE("batch_norm: training output, saved and running statistics against a naive computation") {
  std::mt19937 rng(5);
  const shape extent{3, 4, 5, 3};
  auto x = testing::random_tensor(extent, rng, -3.f, 5.f);
  auto gamma = testing::random_tensor({4}, rng, 0.5f, 1.5f);
  auto beta = testing::random_tensor({4}, rng, -1.f, 1.f);
  bn_state state = random_state(4, 6);
  auto rm = state.running_mean.clone(), rv = state.running_var.clone();
  host_tensor<float> y(extent), mean({4}), inv_std({4});
  ops::batch_norm_params params{1e-3f, 0.3f, true};
  ops::batch_norm_forward(params, x, gamma, beta, rm, rv, y, mean, inv_std);
  for (int64_t c = 0; c < 4; ++c) {
    double m, biased, unbiased;
    naive_moments(x, c, m, biased, unbiased);
    const double is = 1.0 / std::sqrt(biased + 1e-3);
    CHECK(mean[c] == Approx(m).epsilon(1e-6).margin(1e-6));
    CHECK(inv_std[c] == Approx(is).epsilon(1e-6));
    CHECK(rm[c] == Approx(0.7 * state.running_mean[c] + 0.3 * m).epsilon(1e-6).margin(1e-6));
    CHECK(rv[c] == Approx(0.7 * state.running_var[c] + 0.3 * unbiased).epsilon(1e-6));
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t j = 0; j < 3; ++j)
          CHECK(y.at(b, c, i, j) ==
                Approx((x.at(b, c, i, j) - m) * is * gamma[c] + beta[c]).margin(2e-5));
  }
}

TEST_CASE("batch_norm: eval mode uses and keeps the running statistics") {
  std::mt19937 rng(7);
  const shape extent{2, 3, 4, 5};
  auto x = testing::random_tensor(extent, rng);
  auto gamma = testing::random_tensor({3}, rng, 0.5f, 1.5f);
  auto beta = testing::random_tensor({3}, rng);
  bn_state state = random_state(3, 8);
  auto rm = state.running_mean.clone(), rv = state.running_var.clone();
  host_tensor<float> y(extent), mean({3}), inv_std({3});
  ops::batch_norm_params params;
  params.training = false;
  ops::batch_norm_forward(params, x, gamma, beta, rm, rv, y, mean, inv_std);
  for (int64_t c = 0; c < 3; ++c) {
    CHECK(rm[c] == state.running_mean[c]);
    CHECK(rv[c] == state.running_var[c]);
    const double is = 1.0 / std::sqrt(double(state.running_var[c]) + 1e-5);
    CHECK(mean[c] == state.running_mean[c]);
    CHECK(inv_std[c] == Approx(is).epsilon(1e-6));
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t j = 0; j < 5; ++j)
          CHECK(y.at(b, c, i, j) ==
                Approx((x.at(b, c, i, j) - state.running_mean[c]) * is * gamma[c] + beta[c])
                    .margin(1e-5));
  }
}

TEST_CASE("batch_norm: statistics stay accurate for a large offset and many values") {
  // Values 1000 + small noise over 2 * 256 * 256 elements per channel: a float one-pass
  // E[x^2] - E[x]^2 would lose the variance entirely.
  std::mt19937 rng(9);
  const shape extent{2, 2, 256, 256};
  auto x = testing::random_tensor(extent, rng, -1.f, 1.f);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = 1000.f + x[i] * 0.01f;
  host_tensor<float> gamma({2}), beta({2}), rm = host_tensor<float>::zeros({2}), rv({2}), y(extent),
                                            mean({2}), inv_std({2});
  gamma.fill(1.f);
  beta.fill(0.f);
  rv.fill(1.f);
  ops::batch_norm_forward({}, x, gamma, beta, rm, rv, y, mean, inv_std);
  for (int64_t c = 0; c < 2; ++c) {
    double m, biased, unbiased;
    naive_moments(x, c, m, biased, unbiased);
    CHECK(mean[c] == Approx(m).epsilon(1e-7));
    CHECK(inv_std[c] == Approx(1.0 / std::sqrt(biased + 1e-5)).epsilon(1e-5));
    CHECK(rv[c] == Approx(0.9 + 0.1 * unbiased).epsilon(1e-6));
  }
}

TEST_CASE("batch_norm: backward skips gradients that are not wanted and adds into the others") {
  std::mt19937 rng(10);
  const shape extent{2, 3, 3, 3};
  auto x = testing::random_tensor(extent, rng);
  auto gamma = testing::random_tensor({3}, rng, 0.5f, 1.5f);
  auto beta = testing::random_tensor({3}, rng);
  auto dy = testing::random_tensor(extent, rng);
  for (bool training : {true, false}) {
    ops::batch_norm_params params;
    params.training = training;
    bn_state state = random_state(3, 11);
    host_tensor<float> y(extent), mean({3}), inv_std({3});
    ops::batch_norm_forward(params, x, gamma, beta, state.running_mean, state.running_var, y, mean,
                            inv_std);
    auto dx_all = host_tensor<float>::zeros(extent), dg_all = host_tensor<float>::zeros({3}),
         db_all = host_tensor<float>::zeros({3});
    ops::batch_norm_backward(params, x, gamma, mean, inv_std, dy, &dx_all, &dg_all, &db_all);
    auto dx_only = host_tensor<float>::zeros(extent);
    ops::batch_norm_backward(params, x, gamma, mean, inv_std, dy, &dx_only, nullptr, nullptr);
    testing::require_all_close(dx_only, dx_all, 1e-6f, 1e-6f, "dx alone");
    auto db_only = host_tensor<float>::zeros({3});
    ops::batch_norm_backward(params, x, gamma, mean, inv_std, dy, nullptr, nullptr, &db_only);
    testing::require_all_close(db_only, db_all, 1e-6f, 1e-6f, "dbeta alone");
    for (int64_t c = 0; c < 3; ++c) {
      double sum = 0;
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t i = 0; i < 9; ++i) sum += dy[(b * 3 + c) * 9 + i];
      CHECK(db_all[c] == Approx(sum).margin(1e-5));
    }
    if (!training) {
      for (int64_t i = 0; i < x.numel(); ++i) {
        const int64_t c = (i / 9) % 3;
        CHECK(dx_all[i] == Approx(dy[i] * gamma[c] * inv_std[c]).margin(1e-6));
      }
    }
  }
}

TEST_CASE("batch_norm: bad inputs are rejected with the shapes and values named") {
  host_tensor<float> x({2, 3, 4, 4}), y({2, 3, 4, 4}), c3({3}), c4({4}), a({3}), b({3}), m({3}),
      v({3}), sm({3}), si({3});
  ops::batch_norm_params params;
  CHECK_THROWS_WITH(ops::batch_norm_forward(params, x, c4, b, m, v, y, sm, si),
                    Catch::Contains("batch_norm_forward") && Catch::Contains("gamma") &&
                        Catch::Contains("[4]") && Catch::Contains("[3]"));
  host_tensor<float> y_bad({2, 3, 4, 5});
  CHECK_THROWS_WITH(ops::batch_norm_forward(params, x, a, b, m, v, y_bad, sm, si),
                    Catch::Contains("[2, 3, 4, 4]") && Catch::Contains("[2, 3, 4, 5]"));
  host_tensor<float> x3({2, 3, 4});
  CHECK_THROWS_AS(ops::batch_norm_forward(params, x3, a, b, m, v, x3, sm, si), shape_error);
  // One value per channel cannot be normalised with batch statistics (PyTorch raises too).
  host_tensor<float> one({1, 3, 1, 1}), one_y({1, 3, 1, 1});
  one.fill(1.f);
  a.fill(1.f);
  b.fill(0.f);
  m.fill(0.f);
  v.fill(1.f);
  CHECK_THROWS_WITH(
      ops::batch_norm_forward(params, one, a, b, m, v, one_y, sm, si),
      Catch::Contains("more than 1 value per channel") && Catch::Contains("[1, 3, 1, 1]"));
  CHECK_THROWS_AS(ops::batch_norm_forward(params, one, a, b, m, v, one_y, sm, si), value_error);
  params.training = false;
  CHECK_NOTHROW(ops::batch_norm_forward(params, one, a, b, m, v, one_y, sm, si));
  params = {};
  params.eps = 0.f;
  CHECK_THROWS_WITH(ops::batch_norm_forward(params, x, a, b, m, v, y, sm, si),
                    Catch::Contains("eps") && Catch::Contains("> 0"));
  params = {};
  params.momentum = 1.5f;
  CHECK_THROWS_AS(ops::batch_norm_forward(params, x, a, b, m, v, y, sm, si), value_error);
  params = {};
  host_tensor<float> dx_bad({2, 3, 4, 5});
  CHECK_THROWS_WITH(ops::batch_norm_backward(params, x, a, sm, si, y, &dx_bad, nullptr, nullptr),
                    Catch::Contains("batch_norm_backward") && Catch::Contains("[2, 3, 4, 5]"));
  CHECK_THROWS_WITH(ops::batch_norm_backward(params, x, a, sm, si, y, nullptr, &c4, nullptr),
                    Catch::Contains("gamma gradient") && Catch::Contains("[4]"));
}

TEST_CASE("batch_norm: matches PyTorch's nn.BatchNorm2d (tests/golden/batch_norm.safetensors)") {
  const auto file = tensor_file::load(SEGKIT_GOLDEN_DIR "/batch_norm.safetensors");
  int cases = 0;
  for (const char* name :
       {"train", "train_n1_odd", "train_c1_momentum", "train_offset", "eval", "eval_n1"}) {
    const std::string k = name;
    INFO("golden case " << k);
    REQUIRE(file.contains(k + ".x"));
    const auto x = file.get<float>(k + ".x");
    const auto gamma = file.get<float>(k + ".gamma"), beta = file.get<float>(k + ".beta");
    const auto p = file.get<float>(k + ".params");
    ops::batch_norm_params params{p[0], p[1], p[2] != 0.f};
    auto rm = file.get<float>(k + ".running_mean"), rv = file.get<float>(k + ".running_var");
    host_tensor<float> y(x.shape()), mean(gamma.shape()), inv_std(gamma.shape());
    ops::batch_norm_forward(params, x, gamma, beta, rm, rv, y, mean, inv_std);
    testing::require_all_close(y, file.get<float>(k + ".y"), 1e-5f, 1e-4f, k + ": y");
    testing::require_all_close(rm, file.get<float>(k + ".running_mean_after"), 1e-5f, 1e-4f,
                               k + ": running_mean");
    testing::require_all_close(rv, file.get<float>(k + ".running_var_after"), 1e-5f, 1e-4f,
                               k + ": running_var");
    auto dx = host_tensor<float>::zeros(x.shape());
    auto dgamma = host_tensor<float>::zeros(gamma.shape()),
         dbeta = host_tensor<float>::zeros(gamma.shape());
    ops::batch_norm_backward(params, x, gamma, mean, inv_std, file.get<float>(k + ".dy"), &dx,
                             &dgamma, &dbeta);
    testing::require_all_close(dx, file.get<float>(k + ".dx"), 1e-4f, 1e-3f, k + ": dx");
    testing::require_all_close(dgamma, file.get<float>(k + ".dgamma"), 1e-4f, 1e-4f,
                               k + ": dgamma");
    testing::require_all_close(dbeta, file.get<float>(k + ".dbeta"), 1e-4f, 1e-4f, k + ": dbeta");
    ++cases;
  }
  CHECK(cases == 6);
}
