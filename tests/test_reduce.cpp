#include "op_checker.hpp"
#include "segkit/ops/reduce.hpp"

using namespace segkit;

namespace {

// Naive: for every input element, add it into the output slot with the reduced coordinates
// dropped (or set to 0), in double.
host_tensor<float> naive_reduce(const host_tensor<float>& x, const ops::reduce_params& params,
                                bool average) {
  const shape out_shape = ops::reduce_output_shape(x.shape(), params);
  const shape kept = ops::reduce_keepdim_shape(x.shape(), params);
  std::vector<double> acc(size_t(out_shape.numel()), 0.0);
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t rest = i, out_index = 0, scale = 1;
    for (int axis = x.rank() - 1; axis >= 0; --axis) {
      const int64_t c = rest % x.shape()[axis];
      rest /= x.shape()[axis];
      if (kept[axis] != 1 || x.shape()[axis] == 1) {
        out_index += (kept[axis] == 1 ? 0 : c) * scale;
        scale *= kept[axis];
      }
    }
    acc[size_t(out_index)] += x[i];
  }
  const double count = double(x.numel()) / double(out_shape.numel());
  host_tensor<float> y(out_shape);
  for (int64_t i = 0; i < y.numel(); ++i) y[i] = float(average ? acc[size_t(i)] / count : acc[size_t(i)]);
  return y;
}

testing::op_case reduce_case(const shape& s, ops::reduce_params params, bool average) {
  std::mt19937 rng(unsigned(s.numel()) + (average ? 7u : 0u));
  testing::op_case test;
  test.name = std::string(average ? "mean " : "sum ") + s.to_string() + " axes " +
              std::to_string(params.axes.size()) + (params.keepdim ? " keepdim" : "");
  test.inputs = {testing::random_tensor(s, rng)};
  test.forward = [params, average](const testing::tensors& in) {
    host_tensor<float> y(ops::reduce_output_shape(in[0].shape(), params));
    if (average)
      ops::mean(params, in[0], y);
    else
      ops::sum(params, in[0], y);
    return testing::tensors{y};
  };
  test.backward = [params, average](const testing::tensors&, const testing::tensors&,
                                    const testing::tensors& dout, testing::tensors& din) {
    if (average)
      ops::mean_backward(params, dout[0], din[0]);
    else
      ops::sum_backward(params, dout[0], din[0]);
  };
  return test;
}

const std::vector<std::pair<shape, std::vector<int>>> cases = {
    {{2, 3, 5, 7}, {1}},        {{2, 3, 5, 7}, {2, 3}},   {{2, 3, 5, 7}, {0, 2, 3}},
    {{2, 3, 5, 7}, {-1}},       {{2, 3, 5, 7}, {}},       {{1, 1, 4, 3}, {0, -2}},
    {{2, 3, 4, 2, 3}, {1, 3}},  {{7}, {0}},               {{3, 5, 1}, {2}},
};

}  // namespace

TEST_CASE("reduce: sum and mean gradients over several axes, with and without keepdim") {
  for (const auto& [s, axes] : cases)
    for (bool keepdim : {false, true})
      for (bool average : {false, true}) testing::check_op(reduce_case(s, {axes, keepdim}, average));
}

TEST_CASE("reduce: values against a naive double reference") {
  std::mt19937 rng(2);
  for (const auto& [s, axes] : cases)
    for (bool keepdim : {false, true})
      for (bool average : {false, true}) {
        const ops::reduce_params params{axes, keepdim};
        auto x = testing::random_tensor(s, rng);
        host_tensor<float> y(ops::reduce_output_shape(s, params));
        average ? ops::mean(params, x, y) : ops::sum(params, x, y);
        testing::require_all_close(y, naive_reduce(x, params, average), 1e-6f, 1e-6f,
                                   "reduce " + s.to_string());
      }
}

TEST_CASE("reduce: output shapes") {
  CHECK(ops::reduce_output_shape({2, 3, 5, 7}, {{1, -1}, false}) == shape{2, 5});
  CHECK(ops::reduce_output_shape({2, 3, 5, 7}, {{1, -1}, true}) == shape{2, 1, 5, 1});
  CHECK(ops::reduce_output_shape({2, 3}, {{}, false}) == shape{1});
  CHECK(ops::reduce_count({2, 3, 5, 7}, {{0, 3}, false}) == 14);
}

TEST_CASE("reduce: large sums are accurate and thread-count independent") {
  std::mt19937 rng(4);
  auto x = testing::random_tensor({3, 200000}, rng, 0.f, 1.f);
  const int threads = num_threads();
  std::vector<float> runs[2];
  for (int run = 0; run < 2; ++run) {
    set_num_threads(run + 1);
    host_tensor<float> y({3});
    ops::sum({{1}, false}, x, y);
    runs[run] = to_vector(y);
  }
  set_num_threads(threads);
  CHECK(runs[0] == runs[1]);
  const auto expected = naive_reduce(x, {{1}, false}, false);
  for (int i = 0; i < 3; ++i) CHECK(runs[0][size_t(i)] == Approx(expected[i]).epsilon(1e-7));
}

TEST_CASE("reduce: bad inputs") {
  host_tensor<float> x({2, 3, 4}), y({2, 4}), wrong({3, 4});
  CHECK_THROWS_WITH(ops::sum({{1}, false}, x, wrong),
                    Catch::Contains("sum") && Catch::Contains("[3, 4]") && Catch::Contains("[2, 4]"));
  CHECK_THROWS_AS(ops::sum({{1, -2}, false}, x, y), value_error);
  CHECK_THROWS_WITH(ops::mean({{3}, false}, x, y), Catch::Contains("axis 3") && Catch::Contains("[2, 3, 4]"));
  CHECK_THROWS_AS(ops::sum_backward({{1}, false}, wrong, x), shape_error);
}
