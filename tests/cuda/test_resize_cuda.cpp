// CUDA resize against the CPU path: forward, and backward added onto a prefilled dx, for
// nearest and bilinear with both align_corners, up- and downsampling.
#include <catch2/catch.hpp>

#include "op_checker.hpp"
#include "segkit/ops/resize.hpp"

using namespace segkit;

namespace {

void compare_resize(const ops::resize_params& p, const shape& in, int64_t oh, int64_t ow,
                    unsigned seed) {
  const shape out = ops::resize_output_shape(in, oh, ow);
  INFO("resize " << ops::resize_mode_name(p.mode) << (p.align_corners ? " align_corners" : "")
                 << " " << in.to_string() << " -> " << out.to_string());
  std::mt19937 rng(seed);
  const auto x = testing::random_tensor(in, rng);
  const auto dy = testing::random_tensor(out, rng);
  const auto prefill = testing::random_tensor(in, rng);

  host_tensor<float> y_cpu(out);
  ops::resize_forward(p, x, y_cpu);
  auto dx_cpu = prefill.clone();
  ops::resize_backward(p, dy, dx_cpu);

  const auto xd = to<cuda>(x), dyd = to<cuda>(dy);
  tensor<float, cuda> yd(out);
  ops::resize_forward(p, xd, yd);
  auto dxd = to<cuda>(prefill);
  ops::resize_backward(p, dyd, dxd);

  testing::require_all_close(to<cpu>(yd), y_cpu, 1e-5f, 1e-5f, "y");
  // atomicAdd order differs from the CPU's serial scatter.
  testing::require_all_close(to<cpu>(dxd), dx_cpu, 1e-5f, 1e-4f, "dx (added to a prefill)");
}

}  // namespace

TEST_CASE("cuda resize matches cpu") {
  const ops::resize_params variants[] = {{ops::resize_mode::nearest, false},
                                         {ops::resize_mode::bilinear, false},
                                         {ops::resize_mode::bilinear, true}};
  unsigned seed = 11;
  for (const auto& p : variants) {
    compare_resize(p, {2, 3, 17, 23}, 34, 46, seed++);    // x2 up
    compare_resize(p, {1, 2, 7, 7}, 12, 12, seed++);      // non-integer up
    compare_resize(p, {2, 4, 64, 48}, 5, 13, seed++);     // strong down: many dy per dx
    compare_resize(p, {1, 1, 5, 3}, 1, 1, seed++);        // 1x1 output
    compare_resize(p, {3, 5, 33, 65}, 129, 257, seed++);  // larger, odd
  }
}
