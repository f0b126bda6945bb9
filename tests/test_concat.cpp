#include "op_checker.hpp"
#include "segkit/ops/concat.hpp"

using namespace segkit;

namespace {

testing::op_case concat_case(const std::vector<shape>& shapes, int axis) {
  std::mt19937 rng(unsigned(shapes.size() * 31 + unsigned(axis + 5)));
  testing::op_case test;
  test.name = "concat axis " + std::to_string(axis) + " of " + shapes[0].to_string() + "...";
  for (const auto& s : shapes) test.inputs.push_back(testing::random_tensor(s, rng));
  const ops::concat_params params{axis};
  test.forward = [params](const testing::tensors& in) {
    host_tensor<float> y(ops::concat_output_shape(params, ops::detail::shapes_of(in)));
    ops::concat(params, in, y);
    return testing::tensors{y};
  };
  test.backward = [params](const testing::tensors&, const testing::tensors&,
                           const testing::tensors& dout, testing::tensors& din) {
    std::vector<host_tensor<float>*> grads;
    for (auto& g : din) grads.push_back(&g);
    ops::concat_backward(params, dout[0], grads);
  };
  return test;
}

// Naive: output coordinate along the axis picks the input and its local coordinate.
host_tensor<float> naive_concat(const testing::tensors& in, int axis) {
  const shape out_shape = ops::concat_output_shape({axis}, ops::detail::shapes_of(in));
  const int a = out_shape.normalize_axis(axis);
  const int64_t inner = out_shape.span(a + 1, out_shape.rank());
  host_tensor<float> y(out_shape);
  for (int64_t i = 0; i < y.numel(); ++i) {
    const int64_t o = i / (out_shape[a] * inner), c = i / inner % out_shape[a], r = i % inner;
    int64_t local = c;
    size_t k = 0;
    while (local >= in[k].shape()[a]) local -= in[k++].shape()[a];
    y[i] = in[k][(o * in[k].shape()[a] + local) * inner + r];
  }
  return y;
}

}  // namespace

TEST_CASE("concat: gradients for three inputs with different channel counts") {
  testing::check_op(concat_case({{2, 3, 4, 5}, {2, 1, 4, 5}, {2, 6, 4, 5}}, 1));
  testing::check_op(concat_case({{1, 3, 3, 5}, {1, 2, 3, 5}, {1, 1, 3, 5}}, 1));  // N=1, C=1
  testing::check_op(concat_case({{2, 3, 4, 5}, {2, 3, 4, 2}}, -1));
  testing::check_op(concat_case({{1, 3, 4}, {2, 3, 4}, {3, 3, 4}}, 0));
  testing::check_op(concat_case({{2, 2, 3, 2, 3}, {2, 2, 1, 2, 3}}, 2));
}

TEST_CASE("concat and split: values against the naive reference, round trip") {
  std::mt19937 rng(3);
  for (int axis : {0, 1, 2, -1}) {
    testing::tensors in;
    for (int64_t c : {3, 1, 5}) {
      shape s{2, 4, 3, 5};
      in.push_back(testing::random_tensor(s.with(axis, c), rng));
    }
    host_tensor<float> y(ops::concat_output_shape({axis}, ops::detail::shapes_of(in)));
    ops::concat({axis}, in, y);
    testing::require_all_close(y, naive_concat(in, axis), 1e-7f, 0, "concat axis " + std::to_string(axis));
    testing::tensors parts;
    for (const auto& t : in) parts.emplace_back(t.shape());
    ops::split({axis}, y, parts);
    for (size_t k = 0; k < in.size(); ++k) testing::require_all_close(parts[k], in[k], 1e-7f, 0, "split");
    // split's backward is a concat that adds; concat's backward (with a skipped gradient) a split that adds
    auto dx = testing::random_tensor(y.shape(), rng);
    auto expected = dx.clone();
    for (int64_t i = 0; i < y.numel(); ++i) expected[i] += y[i];
    ops::split_backward({axis}, in, dx);
    testing::require_all_close(dx, expected, 1e-6f, 0, "split_backward");
    auto g2 = host_tensor<float>::zeros(in[2].shape());
    ops::concat_backward<cpu>({axis}, y, ops::detail::shapes_of(in), {nullptr, nullptr, &g2});
    testing::require_all_close(g2, in[2], 1e-7f, 0, "concat_backward skipping gradients");
  }
}

TEST_CASE("concat: mismatched shapes name both shapes and the index") {
  host_tensor<float> a({2, 3, 4, 5}), b({2, 1, 4, 5}), c({2, 2, 4, 6});
  host_tensor<float> y({2, 6, 4, 5});
  CHECK_THROWS_WITH(ops::concat({1}, {a, b, c}, y), Catch::Contains("input 2") &&
                                                        Catch::Contains("[2, 2, 4, 6]") &&
                                                        Catch::Contains("[2, 3, 4, 5]"));
  host_tensor<float> wrong({2, 5, 4, 5});
  CHECK_THROWS_WITH(ops::concat({1}, {a, b}, wrong),
                    Catch::Contains("[2, 5, 4, 5]") && Catch::Contains("[2, 4, 4, 5]"));
  host_tensor<float> r3({2, 3, 4});
  CHECK_THROWS_AS(ops::concat({1}, {a, r3}, y), shape_error);
  CHECK_THROWS_AS(ops::concat({4}, {a, b}, y), shape_error);
  CHECK_THROWS_AS(ops::concat<cpu>({1}, {}, y), shape_error);
  CHECK_THROWS_AS(ops::concat_backward<cpu>({1}, y, {&a, nullptr}), shape_error);
}
