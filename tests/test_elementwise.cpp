#include <functional>

#include "op_checker.hpp"
#include "segkit/ops/elementwise.hpp"

using namespace segkit;

namespace {

// Naive broadcast reference: coordinates of out, each operand indexed with its own extents.
int64_t naive_offset(const shape& out, int64_t linear, const shape& s) {
  std::vector<int64_t> coord(static_cast<size_t>(out.rank()));
  for (int axis = out.rank() - 1; axis >= 0; --axis) {
    coord[size_t(axis)] = linear % out[axis];
    linear /= out[axis];
  }
  int64_t offset = 0;
  for (int axis = 0; axis < s.rank(); ++axis) {
    const int64_t c = coord[size_t(out.rank() - s.rank() + axis)];
    offset = offset * s[axis] + (s[axis] == 1 ? 0 : c);
  }
  return offset;
}

host_tensor<float> naive_binary(const host_tensor<float>& a, const host_tensor<float>& b,
                                const shape& out_shape, bool multiply) {
  host_tensor<float> out(out_shape);
  for (int64_t i = 0; i < out.numel(); ++i) {
    const float x = a[naive_offset(out_shape, i, a.shape())];
    const float y = b[naive_offset(out_shape, i, b.shape())];
    out[i] = multiply ? x * y : x + y;
  }
  return out;
}

testing::op_case binary_case(const shape& sa, const shape& sb, bool multiply, unsigned seed) {
  std::mt19937 rng(seed);
  testing::op_case test;
  test.name = std::string(multiply ? "multiply " : "add ") + sa.to_string() + " x " + sb.to_string();
  test.inputs = {testing::random_tensor(sa, rng), testing::random_tensor(sb, rng)};
  test.forward = [multiply](const testing::tensors& in) {
    host_tensor<float> y(ops::broadcast_output_shape(in[0].shape(), in[1].shape()));
    if (multiply)
      ops::multiply(in[0], in[1], y);
    else
      ops::add(in[0], in[1], y);
    return testing::tensors{y};
  };
  test.backward = [multiply](const testing::tensors& in, const testing::tensors&,
                             const testing::tensors& dout, testing::tensors& din) {
    if (multiply)
      ops::multiply_backward(in[0], in[1], dout[0], &din[0], &din[1]);
    else
      ops::add_backward(dout[0], &din[0], &din[1]);
  };
  return test;
}

const std::vector<std::pair<shape, shape>> broadcast_pairs = {
    {{2, 3, 5, 7}, {2, 3, 5, 7}},   // same shape
    {{2, 3, 5, 7}, {1, 3, 1, 1}},   // per channel
    {{1, 3, 5, 7}, {3, 1, 1}},      // per channel, lower rank, N=1
    {{2, 3, 5, 7}, {7}},            // NumPy: [W] along the last axis
    {{2, 1, 5, 7}, {2, 3, 1, 1}},   // both broadcast
    {{3, 1}, {1, 4}},               // outer product
    {{2, 3, 4, 5, 3}, {2, 1, 4, 1, 3}},  // rank 5
    {{1}, {2, 3, 5}},               // scalar
    {{2, 1, 5, 1}, {2, 1, 5, 1}},   // C=1
};

}  // namespace

TEST_CASE("elementwise: add and multiply gradients over broadcast shapes") {
  unsigned seed = 1;
  for (const auto& [sa, sb] : broadcast_pairs) {
    testing::check_op(binary_case(sa, sb, false, seed));
    testing::check_op(binary_case(sa, sb, true, seed));
    testing::check_op(binary_case(sb, sa, true, seed + 100));  // a broadcast instead of b
    ++seed;
  }
}

TEST_CASE("elementwise: values against the naive broadcast") {
  std::mt19937 rng(5);
  for (const auto& [sa, sb] : broadcast_pairs) {
    auto a = testing::random_tensor(sa, rng), b = testing::random_tensor(sb, rng);
    const shape out_shape = ops::broadcast_output_shape(sa, sb);
    host_tensor<float> out(out_shape);
    ops::add(a, b, out);
    testing::require_all_close(out, naive_binary(a, b, out_shape, false), 1e-6f, 0, "add " + out_shape.to_string());
    ops::multiply(b, a, out);
    testing::require_all_close(out, naive_binary(b, a, out_shape, true), 1e-6f, 0, "multiply " + out_shape.to_string());
  }
}

TEST_CASE("elementwise: large per-channel gradient sums are accurate and thread-independent") {
  std::mt19937 rng(9);
  const shape big{4, 3, 64, 65};
  auto dy = testing::random_tensor(big, rng);
  auto reference = [&](int64_t c) {
    double total = 0;
    for (int64_t n = 0; n < 4; ++n)
      for (int64_t i = 0; i < 64 * 65; ++i) total += dy[(n * 3 + c) * 64 * 65 + i];
    return total;
  };
  const int threads = num_threads();
  std::vector<float> results[2];
  for (int run = 0; run < 2; ++run) {
    set_num_threads(run == 0 ? 1 : 2);
    auto db = host_tensor<float>::zeros({1, 3, 1, 1});
    ops::add_backward<cpu>(dy, nullptr, &db);
    results[run] = to_vector(db);
    for (int64_t c = 0; c < 3; ++c) CHECK(db[c] == Approx(reference(c)).epsilon(1e-6));
  }
  set_num_threads(threads);
  CHECK(results[0] == results[1]);
}

TEST_CASE("elementwise: scale and add_into") {
  std::mt19937 rng(3);
  testing::op_case test;
  test.name = "scale";
  test.inputs = {testing::random_tensor({3, 1, 5}, rng)};
  test.forward = [](const testing::tensors& in) {
    host_tensor<float> y(in[0].shape());
    ops::scale(in[0], -2.5f, y);
    return testing::tensors{y};
  };
  test.backward = [](const testing::tensors&, const testing::tensors&,
                     const testing::tensors& dout, testing::tensors& din) {
    ops::scale_backward(-2.5f, dout[0], din[0]);
  };
  testing::check_op(test);

  auto dst = testing::random_tensor({2, 3, 4}, rng);
  auto src = testing::random_tensor({3, 1}, rng);
  auto expected = dst.clone();
  for (int64_t i = 0; i < expected.numel(); ++i) expected[i] += src[(i / 4) % 3];
  ops::add_into(dst, src);
  testing::require_all_close(dst, expected, 1e-6f, 0, "add_into broadcast");
  auto same = testing::random_tensor({2, 3, 4}, rng);
  auto before = dst.clone();
  ops::add_into(dst, same);
  for (int64_t i = 0; i < dst.numel(); ++i) CHECK(dst[i] == before[i] + same[i]);
  // in place: out aliases a
  ops::add(dst, src, dst);
  for (int64_t i = 0; i < dst.numel(); ++i) CHECK(dst[i] == before[i] + same[i] + src[(i / 4) % 3]);
}

TEST_CASE("elementwise: bad shapes name both shapes") {
  host_tensor<float> a({2, 3, 4}), b({2, 5, 4}), out({2, 3, 4});
  CHECK_THROWS_AS(ops::add(a, b, out), shape_error);
  CHECK_THROWS_WITH(ops::add(a, b, out), Catch::Contains("add") && Catch::Contains("[2, 3, 4]") &&
                                             Catch::Contains("[2, 5, 4]"));
  host_tensor<float> c({3, 1}), wrong_out({2, 3, 3});
  CHECK_THROWS_WITH(ops::multiply(a, c, wrong_out),
                    Catch::Contains("multiply") && Catch::Contains("[2, 3, 3]") &&
                        Catch::Contains("[2, 3, 4]"));
  host_tensor<float> big({2, 3, 4});
  CHECK_THROWS_WITH(ops::add_into(c, big), Catch::Contains("add_into") &&
                                               Catch::Contains("[2, 3, 4]") &&
                                               Catch::Contains("[3, 1]"));
  host_tensor<float> dy({2, 3, 4}), bad_grad({5});
  CHECK_THROWS_AS(ops::add_backward<cpu>(dy, &bad_grad, nullptr), shape_error);
  CHECK_THROWS_AS(ops::scale(a, 2.f, b), shape_error);
}
