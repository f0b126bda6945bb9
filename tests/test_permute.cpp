#include "op_checker.hpp"
#include "segkit/ops/permute.hpp"

using namespace segkit;

namespace {

// Naive: for each output coordinate, the input coordinate is coord_in[axes[k]] = coord_out[k].
host_tensor<float> naive_permute(const host_tensor<float>& x, const std::vector<int>& axes) {
  const shape& s = x.shape();
  const shape out_shape = ops::permute_output_shape(s, {axes});
  host_tensor<float> y(out_shape);
  std::vector<int64_t> out_c(size_t(s.rank())), in_c(size_t(s.rank()));
  for (int64_t i = 0; i < y.numel(); ++i) {
    int64_t rest = i;
    for (int k = s.rank() - 1; k >= 0; --k) out_c[size_t(k)] = rest % out_shape[k], rest /= out_shape[k];
    for (int k = 0; k < s.rank(); ++k) {
      const int a = axes[size_t(k)] < 0 ? axes[size_t(k)] + s.rank() : axes[size_t(k)];
      in_c[size_t(a)] = out_c[size_t(k)];
    }
    int64_t offset = 0;
    for (int a = 0; a < s.rank(); ++a) offset = offset * s[a] + in_c[size_t(a)];
    y[i] = x[offset];
  }
  return y;
}

testing::op_case permute_case(const shape& s, const std::vector<int>& axes) {
  std::mt19937 rng(unsigned(s.numel()));
  testing::op_case test;
  test.name = "permute " + s.to_string();
  test.inputs = {testing::random_tensor(s, rng)};
  const ops::permute_params params{axes};
  test.forward = [params](const testing::tensors& in) {
    host_tensor<float> y(ops::permute_output_shape(in[0].shape(), params));
    ops::permute(params, in[0], y);
    return testing::tensors{y};
  };
  test.backward = [params](const testing::tensors&, const testing::tensors&,
                           const testing::tensors& dout, testing::tensors& din) {
    ops::permute_backward(params, dout[0], din[0]);
  };
  return test;
}

const std::vector<std::pair<shape, std::vector<int>>> cases = {
    {{3, 4, 5}, {2, 0, 1}},           {{3, 4, 5}, {0, 2, 1}},
    {{2, 3, 5, 7}, {0, 2, 3, 1}},     // NCHW -> NHWC
    {{2, 5, 7, 3}, {0, 3, 1, 2}},     // NHWC -> NCHW
    {{1, 1, 5, 7}, {0, 2, 3, 1}},     // N=1, C=1
    {{2, 3, 5, 7}, {3, 2, 1, 0}},     {{2, 3, 5, 7}, {-1, 0, -2, 1}},
    {{2, 3, 4, 2, 3}, {4, 1, 3, 0, 2}}, {{2, 3, 4, 2, 3}, {0, 1, 2, 3, 4}},
    {{2, 40, 70}, {0, 2, 1}},         // several 32 x 32 tiles with ragged edges
};

}  // namespace

TEST_CASE("permute: gradients for rank 3, 4 and 5 permutations") {
  for (const auto& [s, axes] : cases) testing::check_op(permute_case(s, axes));
}

TEST_CASE("permute: values against the naive reference, and the inverse undoes it") {
  std::mt19937 rng(6);
  for (const auto& [s, axes] : cases) {
    auto x = testing::random_tensor(s, rng);
    host_tensor<float> y(ops::permute_output_shape(s, {axes}));
    ops::permute({axes}, x, y);
    testing::require_all_close(y, naive_permute(x, axes), 1e-7f, 0, "permute " + s.to_string());
    host_tensor<float> back(s);
    ops::permute(ops::inverse_permutation(s, {axes}), y, back);
    testing::require_all_close(back, x, 1e-7f, 0, "inverse");
  }
}

TEST_CASE("reshape: a free view whose gradient is a view") {
  std::mt19937 rng(2);
  auto x = testing::random_tensor({2, 3, 4}, rng);
  auto v = ops::reshape(x, {6, 4});
  CHECK(v.data() == x.data());
  CHECK(v.shape() == shape{6, 4});
  auto dy = testing::random_tensor({6, 4}, rng);
  CHECK(ops::reshape_gradient(dy, x.shape()).data() == dy.data());
  auto dx = testing::random_tensor({2, 3, 4}, rng);
  auto before = dx.clone();
  ops::reshape_backward(dy, dx);
  for (int64_t i = 0; i < dx.numel(); ++i) CHECK(dx[i] == before[i] + dy[i]);
  CHECK_THROWS_WITH(ops::reshape(x, {5, 5}), Catch::Contains("[2, 3, 4]") && Catch::Contains("[5, 5]"));
}

TEST_CASE("permute: bad inputs") {
  host_tensor<float> x({2, 3, 4}), y({4, 2, 3}), wrong({2, 4, 3});
  CHECK_THROWS_WITH(ops::permute({{2, 0, 1}}, x, wrong), Catch::Contains("permute") &&
                                                            Catch::Contains("[2, 4, 3]") &&
                                                            Catch::Contains("[4, 2, 3]"));
  CHECK_THROWS_WITH(ops::permute({{0, 0, 1}}, x, y), Catch::Contains("[0, 0, 1]") &&
                                                         Catch::Contains("not a permutation"));
  CHECK_THROWS_AS(ops::permute({{0, 1}}, x, y), value_error);
  CHECK_THROWS_AS(ops::permute({{0, 1, 3}}, x, y), value_error);
  CHECK_THROWS_AS(ops::permute_backward({{2, 0, 1}}, x, y), shape_error);
}
