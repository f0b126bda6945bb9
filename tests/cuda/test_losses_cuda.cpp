// CUDA losses against the CPU path: loss values, state (kept count, threshold) and dlogits
// (added onto a random prefill), for cross-entropy, OHEM and BCE; bad labels; all ignored.
#include "op_checker.hpp"
#include "segkit/train/losses.hpp"

using namespace segkit;
using train::loss_reduction;

namespace {

host_tensor<int32_t> random_labels_cuda_test(const shape& s, int32_t classes,
                                             double ignore_fraction, std::mt19937& rng) {
  host_tensor<int32_t> labels(s);
  std::uniform_int_distribution<int32_t> pick(0, classes - 1);
  std::uniform_real_distribution<double> coin(0, 1);
  for (int64_t i = 0; i < labels.numel(); ++i)
    labels[i] = coin(rng) < ignore_fraction ? 255 : pick(rng);
  return labels;
}

}  // namespace

TEST_CASE("cuda losses: cross-entropy and OHEM match the cpu") {
  std::mt19937 rng(51);
  for (const shape& s : {shape{2, 19, 33, 35}, shape{1, 3, 5, 7}, shape{300, 10}, shape{2, 1, 4, 4},
                         shape{3, 150, 64, 48}})
    for (bool weighted : {false, true}) {
      INFO(s.to_string() << " weighted " << weighted);
      const auto x = testing::random_tensor(s, rng, -5.f, 5.f);
      const auto y =
          random_labels_cuda_test(train::detail::labels_shape_for(s), int32_t(s[1]), 0.2, rng);
      const auto w = testing::random_tensor({s[1]}, rng, 0.2f, 2.f);
      const auto x_d = to<cuda>(x);
      const auto y_d = to<cuda>(y);
      const auto w_d = to<cuda>(w);
      train::loss_state<cpu> state;
      train::loss_state<cuda> state_d;
      for (auto reduction : {loss_reduction::mean, loss_reduction::sum}) {
        const train::cross_entropy_params params{255, reduction};
        const float loss =
            train::cross_entropy_forward(params, x, y, state, weighted ? &w : nullptr);
        const float loss_d =
            train::cross_entropy_forward(params, x_d, y_d, state_d, weighted ? &w_d : nullptr);
        CHECK(loss_d == Approx(loss).epsilon(1e-5));
        CHECK(state_d.counted == state.counted);
        auto dx = testing::random_tensor(s, rng);
        auto dx_d = to<cuda>(dx);
        train::cross_entropy_backward(params, x, y, state, 0.75f, dx);
        train::cross_entropy_backward(params, x_d, y_d, state_d, 0.75f, dx_d);
        testing::require_all_close(to<cpu>(dx_d), dx, 1e-6f, 1e-4f, "cross-entropy dlogits");
      }
      for (auto [thresh, min_kept] :
           {std::pair<float, int64_t>{0.7f, 16}, {0.05f, 500}, {0.6f, 100000}}) {
        INFO("ohem thresh " << thresh << " min_kept " << min_kept);
        const train::ohem_params params{thresh, min_kept, 255};
        const float loss =
            train::ohem_cross_entropy_forward(params, x, y, state, weighted ? &w : nullptr);
        const float loss_d =
            train::ohem_cross_entropy_forward(params, x_d, y_d, state_d, weighted ? &w_d : nullptr);
        CHECK(loss_d == Approx(loss).epsilon(1e-5));
        CHECK(state_d.threshold == Approx(state.threshold).epsilon(1e-5));
        // expf may differ by an ulp between host and device: a pixel within that of the
        // threshold could flip, so allow one.
        CHECK(std::abs(state_d.counted - state.counted) <= 1);
        if (state_d.counted == state.counted) {
          auto dx = testing::random_tensor(s, rng);
          auto dx_d = to<cuda>(dx);
          train::ohem_cross_entropy_backward(params, x, y, state, 1.f, dx);
          train::ohem_cross_entropy_backward(params, x_d, y_d, state_d, 1.f, dx_d);
          testing::require_all_close(to<cpu>(dx_d), dx, 1e-6f, 1e-4f, "ohem dlogits");
        }
      }
    }
}

TEST_CASE("cuda losses: BCE with logits matches the cpu") {
  std::mt19937 rng(52);
  for (const shape& s : {shape{2, 1, 65, 67}, shape{1, 1, 3, 3}, shape{4, 1000}})
    for (auto reduction : {loss_reduction::mean, loss_reduction::sum}) {
      INFO(s.to_string());
      const auto x = testing::random_tensor(s, rng, -30.f, 30.f);
      const auto t = random_labels_cuda_test(s, 2, 0.2, rng);
      train::loss_state<cpu> state;
      train::loss_state<cuda> state_d;
      const train::bce_params params{255, reduction};
      const float loss = train::bce_with_logits_forward(params, x, t, state);
      const float loss_d =
          train::bce_with_logits_forward(params, to<cuda>(x), to<cuda>(t), state_d);
      CHECK(loss_d == Approx(loss).epsilon(1e-5));
      auto dx = testing::random_tensor(s, rng);
      auto dx_d = to<cuda>(dx);
      train::bce_with_logits_backward(params, x, t, state, 2.f, dx);
      train::bce_with_logits_backward(params, to<cuda>(x), to<cuda>(t), state_d, 2.f, dx_d);
      testing::require_all_close(to<cpu>(dx_d), dx, 1e-6f, 1e-4f, "bce dlogits");
    }
}

TEST_CASE("cuda losses: bad labels and all-ignored inputs as on the cpu") {
  std::mt19937 rng(53);
  const auto x = testing::random_tensor({2, 4, 3, 5}, rng);
  auto y = random_labels_cuda_test({2, 3, 5}, 4, 0.2, rng);
  y.at(1, 2, 3) = 9;
  y.at(1, 2, 4) = -3;
  train::loss_state<cuda> state;
  const auto x_d = to<cuda>(x);
  CHECK_THROWS_WITH(
      train::cross_entropy_forward({}, x_d, to<cuda>(y), state),
      Catch::Contains("label 9") && Catch::Contains("[1, 2, 3]") && Catch::Contains("[0, 4)"));
  CHECK_THROWS_WITH(train::ohem_cross_entropy_forward({}, x_d, to<cuda>(y), state),
                    Catch::Contains("label 9") && Catch::Contains("[1, 2, 3]"));
  auto t = random_labels_cuda_test({2, 4, 3, 5}, 2, 0.2, rng);
  t.at(0, 1, 2, 3) = 3;
  CHECK_THROWS_WITH(train::bce_with_logits_forward({}, x_d, to<cuda>(t), state),
                    Catch::Contains("target 3") && Catch::Contains("[0, 1, 2, 3]"));
  y.fill(255);
  const auto y_d = to<cuda>(y);
  CHECK(train::cross_entropy_forward({}, x_d, y_d, state) == 0.f);
  auto dx = testing::random_tensor(x.shape(), rng);
  auto dx_d = to<cuda>(dx);
  train::cross_entropy_backward({}, x_d, y_d, state, 1.f, dx_d);
  CHECK(train::ohem_cross_entropy_forward({}, x_d, y_d, state) == 0.f);
  train::ohem_cross_entropy_backward({}, x_d, y_d, state, 1.f, dx_d);
  testing::require_all_close(to<cpu>(dx_d), dx, 0.f, 0.f, "dlogits unchanged");
}
