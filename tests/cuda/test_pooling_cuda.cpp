// CUDA pooling against the CPU path: max (values, argmax, backward), average (both divisor
// rules, ceil_mode) and adaptive average (down, up, global); every backward must add.
#include <catch2/catch.hpp>

#include "op_checker.hpp"
#include "segkit/ops/pooling.hpp"

using namespace segkit;
using ops::pool2d_params;

namespace {

const std::vector<pool2d_params> cuda_pool_variants = {
    {2, 2, 2, 2, 0, 0, false, true}, {3, 3, 2, 2, 1, 1, false, true},
    {3, 3, 1, 1, 0, 0, false, true}, {2, 3, 1, 2, 1, 1, false, true},
    {2, 2, 2, 2, 1, 1, true, true},  {3, 3, 2, 2, 1, 1, true, false},
    {4, 4, 3, 3, 2, 2, true, true},
};

void compare_pool(const pool2d_params& p, const shape& extent, unsigned seed) {
  INFO("pool k" << p.kernel_h << "x" << p.kernel_w << " s" << p.stride_h << "x" << p.stride_w
                << " p" << p.pad_h << "x" << p.pad_w << " ceil " << p.ceil_mode << " include_pad "
                << p.count_include_pad << " on " << extent.to_string());
  std::mt19937 rng(seed);
  const shape out = ops::pool2d_output_shape(p, extent);
  auto x = testing::random_tensor(extent, rng);
  auto dy = testing::random_tensor(out, rng);
  auto prefill = testing::random_tensor(extent, rng);
  auto xd = to<cuda>(x), dyd = to<cuda>(dy);

  // max
  host_tensor<float> y(out);
  host_tensor<int32_t> argmax(out);
  ops::max_pool2d_forward(p, x, y, &argmax);
  auto dx = prefill.clone();
  ops::max_pool2d_backward(p, argmax, dy, dx);
  tensor<float, cuda> yd(out);
  tensor<int32_t, cuda> argmaxd(out);
  ops::max_pool2d_forward(p, xd, yd, &argmaxd);
  auto dxd = to<cuda>(prefill);
  ops::max_pool2d_backward(p, argmaxd, dyd, dxd);
  CHECK(to_vector(to<cpu>(yd)) == to_vector(y));  // a max is exact
  CHECK(to_vector(to<cpu>(argmaxd)) == to_vector(argmax));
  testing::require_all_close(to<cpu>(dxd), dx, 1e-6f, 1e-6f, "max_pool2d backward (added)");
  tensor<float, cuda> y_no_index(out);
  ops::max_pool2d_forward(p, xd, y_no_index, nullptr);
  CHECK(to_vector(to<cpu>(y_no_index)) == to_vector(y));

  // avg
  ops::avg_pool2d_forward(p, x, y);
  dx = prefill.clone();
  ops::avg_pool2d_backward(p, dy, dx);
  ops::avg_pool2d_forward(p, xd, yd);
  dxd = to<cuda>(prefill);
  ops::avg_pool2d_backward(p, dyd, dxd);
  testing::require_all_close(to<cpu>(yd), y, 1e-6f, 1e-5f, "avg_pool2d forward");
  testing::require_all_close(to<cpu>(dxd), dx, 1e-6f, 1e-5f, "avg_pool2d backward (added)");
}

void compare_adaptive(const shape& extent, int64_t oh, int64_t ow, unsigned seed) {
  const shape out{extent[0], extent[1], oh, ow};
  INFO("adaptive " << extent.to_string() << " -> " << out.to_string());
  std::mt19937 rng(seed);
  auto x = testing::random_tensor(extent, rng);
  auto dy = testing::random_tensor(out, rng);
  auto prefill = testing::random_tensor(extent, rng);
  host_tensor<float> y(out);
  ops::adaptive_avg_pool2d_forward(x, y);
  auto dx = prefill.clone();
  ops::adaptive_avg_pool2d_backward(dy, dx);
  auto xd = to<cuda>(x), dyd = to<cuda>(dy), dxd = to<cuda>(prefill);
  tensor<float, cuda> yd(out);
  ops::adaptive_avg_pool2d_forward(xd, yd);
  ops::adaptive_avg_pool2d_backward(dyd, dxd);
  testing::require_all_close(to<cpu>(yd), y, 1e-6f, 1e-5f, "adaptive forward");
  testing::require_all_close(to<cpu>(dxd), dx, 1e-6f, 1e-5f, "adaptive backward (added)");
}

}  // namespace

TEST_CASE("cuda max/avg pooling matches the CPU path") {
  unsigned seed = 1;
  for (const auto& p : cuda_pool_variants) {
    compare_pool(p, {2, 3, 7, 9}, seed++);
    compare_pool(p, {1, 1, 5, 6}, seed++);
    compare_pool(p, {4, 16, 33, 47}, seed++);
  }
}

TEST_CASE("cuda adaptive average pooling matches the CPU path") {
  compare_adaptive({2, 3, 13, 11}, 6, 3, 1);
  compare_adaptive({1, 2, 5, 5}, 7, 9, 2);
  compare_adaptive({2, 4, 32, 32}, 1, 1, 3);
  compare_adaptive({2, 8, 65, 65}, 6, 6, 4);
  compare_adaptive({1, 1, 1, 1}, 3, 2, 5);
}

TEST_CASE("cuda pooling validates shapes like the CPU path") {
  tensor<float, cuda> x(shape{1, 2, 6, 6}), y(shape{1, 2, 4, 3});
  CHECK_THROWS_WITH(ops::avg_pool2d_forward({2, 2, 2, 2, 0, 0, false, true}, x, y),
                    Catch::Contains("[1, 2, 4, 3]") && Catch::Contains("[1, 2, 3, 3]"));
}
