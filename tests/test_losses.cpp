// Losses (train/losses.hpp): gradients by finite differences through check_op (the loss is a
// one-element output), values and gradients against naive double references, the all-ignored
// and bad-label cases, shape messages, thread-count independence, no allocation once sized,
// and PyTorch parity through tests/golden/losses.safetensors (tests/reference/gen_losses.py).
#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "op_checker.hpp"
#include "segkit/tensor/safetensors.hpp"
#include "segkit/train/losses.hpp"

using namespace segkit;
using train::loss_reduction;

namespace {

host_tensor<int32_t> random_labels(const shape& s, int32_t classes, double ignore_fraction,
                                   int32_t ignore_index, std::mt19937& rng) {
  host_tensor<int32_t> labels(s);
  std::uniform_int_distribution<int32_t> pick(0, classes - 1);
  std::uniform_real_distribution<double> coin(0, 1);
  for (int64_t i = 0; i < labels.numel(); ++i)
    labels[i] = coin(rng) < ignore_fraction ? ignore_index : pick(rng);
  return labels;
}

struct naive_result {
  double loss = 0;
  std::vector<double> grad;  // dloss/dlogits
};

// Logits [N, C, inner...] viewed through flat pixel indices, computed in double.
struct pixel_view {
  int64_t classes, inner;
  int64_t at(int64_t p, int64_t c) const {
    return p / inner * classes * inner + c * inner + p % inner;
  }
};

double naive_lse(const host_tensor<float>& x, const pixel_view& v, int64_t p) {
  double m = -INFINITY, s = 0;
  for (int64_t c = 0; c < v.classes; ++c) m = std::max(m, double(x[v.at(p, c)]));
  for (int64_t c = 0; c < v.classes; ++c) s += std::exp(double(x[v.at(p, c)]) - m);
  return m + std::log(s);
}

// Weighted CE over the pixels with keep[p] true, divided by `divisor(sum_w, count)`.
naive_result naive_weighted_ce(const host_tensor<float>& x, const host_tensor<int32_t>& y,
                               const std::vector<float>& weight, const std::vector<bool>& keep,
                               int mode /*0 mean by weight, 1 sum, 2 mean by count*/) {
  const pixel_view v{x.size(1), x.shape().span(2, x.rank())};
  naive_result r;
  r.grad.assign(size_t(x.numel()), 0.0);
  double sum = 0, wsum = 0, count = 0;
  for (int64_t p = 0; p < y.numel(); ++p) {
    if (!keep[size_t(p)]) continue;
    const double w = weight.empty() ? 1.0 : weight[size_t(y[p])];
    sum += w * (naive_lse(x, v, p) - x[v.at(p, y[p])]);
    wsum += w;
    count += 1;
  }
  const double divisor = mode == 0 ? wsum : mode == 1 ? 1.0 : count;
  if (count == 0 || divisor == 0) return r;
  r.loss = sum / divisor;
  for (int64_t p = 0; p < y.numel(); ++p) {
    if (!keep[size_t(p)]) continue;
    const double w = weight.empty() ? 1.0 : weight[size_t(y[p])];
    const double lse = naive_lse(x, v, p);
    for (int64_t c = 0; c < v.classes; ++c)
      r.grad[size_t(v.at(p, c))] += w / divisor * (std::exp(x[v.at(p, c)] - lse) - (c == y[p]));
  }
  return r;
}

std::vector<bool> not_ignored(const host_tensor<int32_t>& y, int32_t ignore_index) {
  std::vector<bool> keep(size_t(y.numel()));
  for (int64_t p = 0; p < y.numel(); ++p) keep[size_t(p)] = y[p] != ignore_index;
  return keep;
}

// HRNet's OHEM in double: sort the valid pixels' target probabilities, threshold, keep p < t.
std::vector<bool> naive_ohem_keep(const host_tensor<float>& x, const host_tensor<int32_t>& y,
                                  const train::ohem_params& params) {
  const pixel_view v{x.size(1), x.shape().span(2, x.rank())};
  std::vector<float> prob(size_t(y.numel()), 0.f), sorted;
  for (int64_t p = 0; p < y.numel(); ++p) {
    if (y[p] == params.ignore_index) continue;
    prob[size_t(p)] = float(std::exp(double(x[v.at(p, y[p])]) - naive_lse(x, v, p)));
    sorted.push_back(prob[size_t(p)]);
  }
  std::vector<bool> keep(size_t(y.numel()), false);
  if (sorted.empty()) return keep;
  std::sort(sorted.begin(), sorted.end());
  const int64_t k =
      std::min<int64_t>(std::max<int64_t>(1, params.min_kept), int64_t(sorted.size()) - 1);
  const float threshold = std::max(sorted[size_t(k)], params.thresh);
  for (int64_t p = 0; p < y.numel(); ++p)
    keep[size_t(p)] = y[p] != params.ignore_index && prob[size_t(p)] < threshold;
  return keep;
}

host_tensor<float> as_tensor(const std::vector<double>& values, const shape& s) {
  host_tensor<float> t(s);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = float(values[size_t(i)]);
  return t;
}

// One loss as an op for check_op: forward returns [loss]; backward re-runs forward to fill the
// state, then adds upstream * dloss/dlogits.
template <class Forward, class Backward>
testing::op_case loss_case(std::string name, host_tensor<float> logits, Forward forward,
                           Backward backward) {
  testing::op_case test;
  test.name = std::move(name);
  test.inputs = {std::move(logits)};
  test.forward = [forward](const testing::tensors& in) {
    train::loss_state<cpu> state;
    host_tensor<float> out({1});
    out[0] = forward(in[0], state);
    return testing::tensors{out};
  };
  test.backward = [forward, backward](const testing::tensors& in, const testing::tensors&,
                                      const testing::tensors& dout, testing::tensors& din) {
    train::loss_state<cpu> state;
    forward(in[0], state);
    backward(in[0], state, dout[0][0], din[0]);
  };
  test.step = 3e-3f;
  test.absolute_tolerance = 1e-3f;
  return test;
}

testing::op_case ce_case(const shape& s, bool weighted, double ignore_fraction,
                         loss_reduction reduction, unsigned seed) {
  std::mt19937 rng(seed);
  const train::cross_entropy_params params{255, reduction};
  const auto labels =
      random_labels(train::detail::labels_shape_for(s), int32_t(s[1]), ignore_fraction, 255, rng);
  host_tensor<float> weight;
  if (weighted) weight = testing::random_tensor({s[1]}, rng, 0.2f, 2.f);
  auto forward = [=](const host_tensor<float>& x, train::loss_state<cpu>& state) {
    return train::cross_entropy_forward(params, x, labels, state, weighted ? &weight : nullptr);
  };
  auto backward = [=](const host_tensor<float>& x, const train::loss_state<cpu>& state, float up,
                      host_tensor<float>& dx) {
    train::cross_entropy_backward(params, x, labels, state, up, dx);
  };
  return loss_case("cross_entropy " + s.to_string() + (weighted ? " weighted" : "") +
                       (reduction == loss_reduction::sum ? " sum" : " mean") + " ignore " +
                       std::to_string(ignore_fraction),
                   testing::random_tensor(s, rng, -3.f, 3.f), forward, backward);
}

}  // namespace

TEST_CASE("cross_entropy: gradients by finite differences") {
  unsigned seed = 1;
  for (const shape& s :
       {shape{2, 3, 4, 5}, shape{1, 5, 3, 7}, shape{2, 1, 3, 3}, shape{6, 4}, shape{2, 3, 5}})
    for (bool weighted : {false, true})
      for (auto reduction : {loss_reduction::mean, loss_reduction::sum})
        for (double ignore : {0.0, 0.3})
          testing::check_op(ce_case(s, weighted, ignore, reduction, seed++));
}

TEST_CASE("cross_entropy: values and gradients against a naive double reference") {
  std::mt19937 rng(5);
  for (const shape& s : {shape{2, 7, 9, 11}, shape{3, 19, 70, 65}, shape{5, 3}})
    for (bool weighted : {false, true})
      for (auto reduction : {loss_reduction::mean, loss_reduction::sum}) {
        INFO(s.to_string() << " weighted " << weighted << " sum "
                           << (reduction == loss_reduction::sum));
        const auto x = testing::random_tensor(s, rng, -8.f, 8.f);
        const auto y =
            random_labels(train::detail::labels_shape_for(s), int32_t(s[1]), 0.25, 7, rng);
        std::vector<float> w;
        host_tensor<float> weight;
        if (weighted) {
          weight = testing::random_tensor({s[1]}, rng, 0.1f, 3.f);
          w = to_vector(weight);
        }
        train::loss_state<cpu> state;
        const train::cross_entropy_params params{7, reduction};
        const float loss =
            train::cross_entropy_forward(params, x, y, state, weighted ? &weight : nullptr);
        auto dx = host_tensor<float>::zeros(s);
        train::cross_entropy_backward(params, x, y, state, 1.5f, dx);
        const auto ref =
            naive_weighted_ce(x, y, w, not_ignored(y, 7), reduction == loss_reduction::sum ? 1 : 0);
        CHECK(loss == Approx(ref.loss).epsilon(1e-5));
        auto expected = as_tensor(ref.grad, s);
        for (int64_t i = 0; i < expected.numel(); ++i) expected[i] *= 1.5f;
        testing::require_all_close(dx, expected, 1e-6f, 1e-4f, "dlogits");
      }
}

TEST_CASE("cross_entropy: all pixels ignored gives loss 0 and a zero gradient") {
  std::mt19937 rng(9);
  const auto x = testing::random_tensor({2, 4, 3, 3}, rng);
  host_tensor<int32_t> y({2, 3, 3});
  y.fill(255);
  for (auto reduction : {loss_reduction::mean, loss_reduction::sum}) {
    train::loss_state<cpu> state;
    CHECK(train::cross_entropy_forward({255, reduction}, x, y, state) == 0.f);
    CHECK(state.counted == 0);
    auto dx = testing::random_tensor(x.shape(), rng);
    const auto before = dx.clone();
    train::cross_entropy_backward({255, reduction}, x, y, state, 1.f, dx);
    testing::require_all_close(dx, before, 0.f, 0.f, "dlogits unchanged");
  }
  train::loss_state<cpu> state;
  CHECK(train::ohem_cross_entropy_forward({0.7f, 10, 255}, x, y, state) == 0.f);
  host_tensor<int32_t> t({2, 1, 3, 3});
  t.fill(255);
  const auto b = testing::random_tensor({2, 1, 3, 3}, rng);
  CHECK(train::bce_with_logits_forward({}, b, t, state) == 0.f);
}

TEST_CASE("cross_entropy: a bad label names its value, position and the class count") {
  std::mt19937 rng(3);
  const auto x = testing::random_tensor({2, 4, 3, 5}, rng);
  auto y = random_labels({2, 3, 5}, 4, 0.2, 255, rng);
  train::loss_state<cpu> state;
  y.at(1, 2, 3) = 4;
  CHECK_THROWS_AS(train::cross_entropy_forward({}, x, y, state), value_error);
  CHECK_THROWS_WITH(
      train::cross_entropy_forward({}, x, y, state),
      Catch::Contains("label 4") && Catch::Contains("[1, 2, 3]") && Catch::Contains("[0, 4)"));
  y.at(0, 0, 1) = -1;
  CHECK_THROWS_WITH(train::cross_entropy_forward({}, x, y, state),
                    Catch::Contains("label -1") && Catch::Contains("[0, 0, 1]"));
  CHECK_THROWS_WITH(train::ohem_cross_entropy_forward({}, x, y, state),
                    Catch::Contains("ohem_cross_entropy_forward: label -1"));
  // 255 is a class when ignore_index is something else
  y.fill(255);
  CHECK_THROWS_WITH(train::cross_entropy_forward({-100, loss_reduction::mean}, x, y, state),
                    Catch::Contains("label 255") && Catch::Contains("ignore_index -100"));
  CHECK(train::cross_entropy_forward({255, loss_reduction::mean}, x, y, state) == 0.f);
}

TEST_CASE("losses: shape mismatches name both shapes") {
  std::mt19937 rng(4);
  const auto x = testing::random_tensor({2, 4, 3, 5}, rng);
  const auto y = random_labels({2, 3, 4}, 4, 0, 255, rng);
  train::loss_state<cpu> state;
  CHECK_THROWS_AS(train::cross_entropy_forward({}, x, y, state), shape_error);
  CHECK_THROWS_WITH(train::cross_entropy_forward({}, x, y, state),
                    Catch::Contains("[2, 3, 4]") && Catch::Contains("[2, 4, 3, 5]") &&
                        Catch::Contains("[2, 3, 5]"));
  const auto good = random_labels({2, 3, 5}, 4, 0, 255, rng);
  const auto weight = testing::random_tensor({3}, rng);
  CHECK_THROWS_WITH(train::cross_entropy_forward({}, x, good, state, &weight),
                    Catch::Contains("weight has shape [3]") && Catch::Contains("[4]"));
  train::cross_entropy_forward({}, x, good, state);
  host_tensor<float> dx({2, 4, 3, 4});
  CHECK_THROWS_WITH(train::cross_entropy_backward({}, x, good, state, 1.f, dx),
                    Catch::Contains("[2, 4, 3, 4]") && Catch::Contains("[2, 4, 3, 5]"));
  const auto bx = testing::random_tensor({2, 2, 3, 5}, rng);
  CHECK_THROWS_WITH(train::bce_with_logits_forward({}, bx, good, state),
                    Catch::Contains("[2, 2, 3, 5]") && Catch::Contains("[2, 3, 5]"));
  // A state from another forward is refused by the backward.
  const auto small = testing::random_tensor({1, 4, 3, 5}, rng);
  const auto small_y = random_labels({1, 3, 5}, 4, 0, 255, rng);
  host_tensor<float> dsmall({1, 4, 3, 5});
  CHECK_THROWS_AS(train::cross_entropy_backward({}, small, small_y, state, 1.f, dsmall),
                  value_error);
  CHECK_THROWS_AS(train::ohem_cross_entropy_forward({1.5f, 10, 255}, x, good, state), value_error);
  CHECK_THROWS_AS(train::ohem_cross_entropy_forward({0.7f, -1, 255}, x, good, state), value_error);
}

TEST_CASE("bce_with_logits: gradients, values against a naive reference, bad targets") {
  std::mt19937 rng(11);
  unsigned seed = 100;
  for (const shape& s : {shape{2, 1, 4, 5}, shape{1, 1, 7, 3}, shape{3, 6}})
    for (auto reduction : {loss_reduction::mean, loss_reduction::sum})
      for (bool channel : {true, false}) {
        const shape ts = channel && s.rank() == 4 ? shape{s[0], s[2], s[3]} : s;
        std::mt19937 local(seed++);
        const auto t = random_labels(ts, 2, 0.3, 255, local);
        const train::bce_params params{255, reduction};
        auto forward = [=](const host_tensor<float>& x, train::loss_state<cpu>& state) {
          return train::bce_with_logits_forward(params, x, t, state);
        };
        auto backward = [=](const host_tensor<float>& x, const train::loss_state<cpu>& state,
                            float up, host_tensor<float>& dx) {
          train::bce_with_logits_backward(params, x, t, state, up, dx);
        };
        testing::check_op(loss_case("bce " + s.to_string(),
                                    testing::random_tensor(s, local, -4.f, 4.f), forward,
                                    backward));
      }
  // naive double reference, large |x| included (the stable form matters there)
  const auto x = testing::random_tensor({3, 1, 40, 37}, rng, -60.f, 60.f);
  const auto t = random_labels({3, 40, 37}, 2, 0.2, 255, rng);
  double sum = 0, count = 0;
  host_tensor<float> expected(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) {
    expected[i] = 0;
    if (t[i] == 255) continue;
    const double xi = x[i], ti = t[i];
    sum += std::max(xi, 0.0) - xi * ti + std::log1p(std::exp(-std::abs(xi)));
    count += 1;
  }
  for (int64_t i = 0; i < x.numel(); ++i)
    if (t[i] != 255) expected[i] = float((1.0 / (1.0 + std::exp(-double(x[i]))) - t[i]) / count);
  train::loss_state<cpu> state;
  CHECK(train::bce_with_logits_forward({}, x, t, state) == Approx(sum / count).epsilon(1e-5));
  auto dx = host_tensor<float>::zeros(x.shape());
  train::bce_with_logits_backward({}, x, t, state, 1.f, dx);
  testing::require_all_close(dx, expected, 1e-7f, 1e-4f, "bce dlogits");
  auto bad = t.clone();
  bad.at(2, 5, 6) = 2;
  CHECK_THROWS_WITH(train::bce_with_logits_forward({}, x, bad, state),
                    Catch::Contains("target 2") && Catch::Contains("[2, 5, 6]"));
}

TEST_CASE("ohem_cross_entropy: kept set, values and gradients against a naive reference") {
  std::mt19937 rng(21);
  struct variant {
    float thresh;
    int64_t min_kept;
  };
  // threshold from thresh (min_kept small), from p_(k) (thresh low), min_kept >= n_valid,
  // min_kept 0 (HRNet clamps it to 1)
  for (variant v :
       {variant{0.7f, 10}, variant{0.05f, 150}, variant{0.6f, 100000}, variant{0.2f, 0}})
    for (bool weighted : {false, true}) {
      INFO("thresh " << v.thresh << " min_kept " << v.min_kept << " weighted " << weighted);
      const shape s{2, 5, 13, 11};
      const auto x = testing::random_tensor(s, rng, -3.f, 3.f);
      const auto y = random_labels({2, 13, 11}, 5, 0.1, 255, rng);
      host_tensor<float> weight;
      std::vector<float> w;
      if (weighted) {
        weight = testing::random_tensor({5}, rng, 0.2f, 2.f);
        w = to_vector(weight);
      }
      const train::ohem_params params{v.thresh, v.min_kept, 255};
      train::loss_state<cpu> state;
      const float loss =
          train::ohem_cross_entropy_forward(params, x, y, state, weighted ? &weight : nullptr);
      const auto keep = naive_ohem_keep(x, y, params);
      const auto ref = naive_weighted_ce(x, y, w, keep, 2);
      CHECK(state.counted == std::count(keep.begin(), keep.end(), true));
      CHECK(state.counted > 0);
      CHECK(loss == Approx(ref.loss).epsilon(1e-5));
      auto dx = host_tensor<float>::zeros(s);
      train::ohem_cross_entropy_backward(params, x, y, state, 0.5f, dx);
      auto expected = as_tensor(ref.grad, s);
      for (int64_t i = 0; i < expected.numel(); ++i) expected[i] *= 0.5f;
      testing::require_all_close(dx, expected, 1e-7f, 1e-4f, "ohem dlogits");
    }
}

TEST_CASE("ohem_cross_entropy: gradients by finite differences with a stable kept set") {
  std::mt19937 rng(31);
  const shape s{2, 4, 5, 6};
  auto x = testing::random_tensor(s, rng, -3.f, 3.f);
  auto y = random_labels({2, 5, 6}, 4, 0.1, 255, rng);
  // Ignore pixels whose target probability is near the threshold 0.7 (the finite-difference
  // steps must not move a pixel across it); min_kept 3 puts p_(3) below 0.7.
  const pixel_view v{4, 30};
  for (int64_t p = 0; p < y.numel(); ++p) {
    if (y[p] == 255) continue;
    const double prob = std::exp(double(x[v.at(p, y[p])]) - naive_lse(x, v, p));
    if (prob > 0.62 && prob < 0.78) y[p] = 255;
  }
  const train::ohem_params params{0.7f, 3, 255};
  for (bool weighted : {false, true}) {
    const auto weight = testing::random_tensor({4}, rng, 0.2f, 2.f);
    auto forward = [=](const host_tensor<float>& in, train::loss_state<cpu>& state) {
      const float loss =
          train::ohem_cross_entropy_forward(params, in, y, state, weighted ? &weight : nullptr);
      REQUIRE(state.threshold == 0.7f);
      return loss;
    };
    auto backward = [=](const host_tensor<float>& in, const train::loss_state<cpu>& state, float up,
                        host_tensor<float>& dx) {
      train::ohem_cross_entropy_backward(params, in, y, state, up, dx);
    };
    testing::check_op(
        loss_case(std::string("ohem") + (weighted ? " weighted" : ""), x, forward, backward));
  }
}

TEST_CASE("losses: results do not depend on the thread count; no allocation once sized") {
  std::mt19937 rng(41);
  const shape s{2, 6, 70, 90};  // several reduction chunks
  const auto x = testing::random_tensor(s, rng, -4.f, 4.f);
  const auto y = random_labels({2, 70, 90}, 6, 0.2, 255, rng);
  const auto b = testing::random_tensor({2, 1, 70, 90}, rng, -4.f, 4.f);
  const auto t = random_labels({2, 70, 90}, 2, 0.2, 255, rng);
  const auto weight = testing::random_tensor({6}, rng, 0.5f, 2.f);
  auto run = [&](train::loss_state<cpu>& state, workspace<cpu>& ws, host_tensor<float>& dx,
                 host_tensor<float>& db) {
    std::vector<float> losses;
    losses.push_back(train::cross_entropy_forward({}, x, y, state, &weight, &ws));
    train::cross_entropy_backward({}, x, y, state, 1.f, dx);
    losses.push_back(
        train::ohem_cross_entropy_forward({0.7f, 5000, 255}, x, y, state, &weight, &ws));
    train::ohem_cross_entropy_backward({0.7f, 5000, 255}, x, y, state, 1.f, dx);
    losses.push_back(train::bce_with_logits_forward({}, b, t, state, &ws));
    train::bce_with_logits_backward({}, b, t, state, 1.f, db);
    return losses;
  };
  const int threads = num_threads();
  std::vector<std::vector<float>> results;
  std::vector<host_tensor<float>> grads;
  for (int count : {1, 2, 3}) {
    set_num_threads(count);
    train::loss_state<cpu> state;
    workspace<cpu> ws;
    auto dx = host_tensor<float>::zeros(s), db = host_tensor<float>::zeros(b.shape());
    results.push_back(run(state, ws, dx, db));
    grads.push_back(dx);
    const long long before = allocations<cpu>().total;
    run(state, ws, dx, db);
    CHECK(allocations<cpu>().total == before);
  }
  set_num_threads(threads);
  for (size_t i = 1; i < results.size(); ++i) {
    CHECK(results[i] == results[0]);
    testing::require_all_close(grads[i], grads[0], 0.f, 0.f, "same gradient for any thread count");
  }
}

TEST_CASE("losses: PyTorch parity (tests/reference/gen_losses.py)") {
  const auto file = tensor_file::load(SEGKIT_GOLDEN_DIR "/losses.safetensors");
  auto check = [&](const std::string& tag, float loss, const host_tensor<float>& dx) {
    INFO(tag);
    CHECK(loss == Approx(file.get<float>(tag + "_loss")[0]).epsilon(1e-5));
    testing::require_all_close(dx, file.get<float>(tag + "_dx"), 1e-6f, 1e-4f, tag + " dlogits");
  };
  train::loss_state<cpu> state;
  {
    const auto x = file.get<float>("ce_x"), w = file.get<float>("ce_w");
    const auto y = file.get<int32_t>("ce_y");
    for (auto [tag, weighted, reduction] :
         {std::tuple<const char*, bool, loss_reduction>{"ce_mean", false, loss_reduction::mean},
          {"ce_weighted_mean", true, loss_reduction::mean},
          {"ce_weighted_sum", true, loss_reduction::sum}}) {
      const train::cross_entropy_params params{255, reduction};
      const float loss = train::cross_entropy_forward(params, x, y, state, weighted ? &w : nullptr);
      auto dx = host_tensor<float>::zeros(x.shape());
      train::cross_entropy_backward(params, x, y, state, 1.f, dx);
      check(tag, loss, dx);
    }
  }
  {
    const auto x = file.get<float>("ce2d_x"), w = file.get<float>("ce2d_w");
    const auto y = file.get<int32_t>("ce2d_y");
    const float loss = train::cross_entropy_forward({}, x, y, state, &w);
    auto dx = host_tensor<float>::zeros(x.shape());
    train::cross_entropy_backward({}, x, y, state, 1.f, dx);
    check("ce2d", loss, dx);
  }
  {
    const auto x = file.get<float>("bce_x");
    const auto t = file.get<int32_t>("bce_t");
    const float loss = train::bce_with_logits_forward({}, x, t, state);
    auto dx = host_tensor<float>::zeros(x.shape());
    train::bce_with_logits_backward({}, x, t, state, 1.f, dx);
    check("bce", loss, dx);
  }
  {
    const auto x = file.get<float>("ohem_x"), w = file.get<float>("ohem_w");
    const auto y = file.get<int32_t>("ohem_y");
    for (auto [tag, thresh, min_kept, weighted] :
         {std::tuple<std::string, float, int64_t, bool>{"ohem_thresh", 0.7f, 20, false},
          {"ohem_rank", 0.1f, 150, false},
          {"ohem_rank_weighted", 0.1f, 150, true},
          {"ohem_thresh_weighted", 0.7f, 20, true}}) {
      const train::ohem_params params{thresh, min_kept, 255};
      const float loss =
          train::ohem_cross_entropy_forward(params, x, y, state, weighted ? &w : nullptr);
      auto dx = host_tensor<float>::zeros(x.shape());
      train::ohem_cross_entropy_backward(params, x, y, state, 1.f, dx);
      INFO(tag);
      CHECK(state.counted == file.get<int32_t>(tag + "_kept")[0]);
      CHECK(state.threshold == Approx(file.get<float>(tag + "_threshold")[0]).epsilon(1e-6));
      check(tag, loss, dx);
    }
  }
}
