// CUDA elementwise ops against the CPU path on the same inputs, forward and backward.
#include "op_checker.hpp"
#include "segkit/ops/elementwise.hpp"

using namespace segkit;

TEST_CASE("cuda elementwise: add, multiply, scale, add_into match the cpu") {
  std::mt19937 rng(11);
  const std::vector<std::pair<shape, shape>> pairs = {
      {{2, 3, 5, 7}, {2, 3, 5, 7}}, {{2, 3, 5, 7}, {1, 3, 1, 1}}, {{2, 3, 5, 7}, {7}},
      {{2, 1, 5, 7}, {2, 3, 1, 1}}, {{3, 1}, {1, 4}},             {{4, 16, 33, 35}, {16, 1, 1}}};
  for (const auto& [sa, sb] : pairs) {
    INFO(sa.to_string() << " x " << sb.to_string());
    auto a = testing::random_tensor(sa, rng), b = testing::random_tensor(sb, rng);
    const shape out_shape = ops::broadcast_output_shape(sa, sb);
    auto dy = testing::random_tensor(out_shape, rng);
    auto ga = testing::random_tensor(sa, rng), gb = testing::random_tensor(sb, rng);
    auto a_d = to<cuda>(a), b_d = to<cuda>(b), dy_d = to<cuda>(dy);
    for (bool mul : {false, true}) {
      host_tensor<float> out(out_shape);
      tensor<float, cuda> out_d(out_shape);
      auto da = ga.clone(), db = gb.clone();
      auto da_d = to<cuda>(ga), db_d = to<cuda>(gb);
      if (mul) {
        ops::multiply(a, b, out);
        ops::multiply(a_d, b_d, out_d);
        ops::multiply_backward(a, b, dy, &da, &db);
        ops::multiply_backward(a_d, b_d, dy_d, &da_d, &db_d);
      } else {
        ops::add(a, b, out);
        ops::add(a_d, b_d, out_d);
        ops::add_backward(dy, &da, &db);
        ops::add_backward(dy_d, &da_d, &db_d);
      }
      testing::require_all_close(to<cpu>(out_d), out, 1e-6f, 1e-6f, "forward");
      testing::require_all_close(to<cpu>(da_d), da, 1e-4f, 1e-4f, "first gradient");
      testing::require_all_close(to<cpu>(db_d), db, 1e-4f, 1e-4f, "second gradient");
    }
    host_tensor<float> scaled(sa);
    tensor<float, cuda> scaled_d(sa);
    ops::scale(a, 0.75f, scaled);
    ops::scale(a_d, 0.75f, scaled_d);
    testing::require_all_close(to<cpu>(scaled_d), scaled, 1e-6f, 1e-6f, "scale");
    auto dscaled = testing::random_tensor(sa, rng), gx = testing::random_tensor(sa, rng);
    auto dscaled_d = to<cuda>(dscaled), gx_d = to<cuda>(gx);
    ops::scale_backward(0.75f, dscaled, gx);
    ops::scale_backward(0.75f, dscaled_d, gx_d);
    testing::require_all_close(to<cpu>(gx_d), gx, 1e-6f, 1e-6f, "scale_backward (added)");
    auto dst = testing::random_tensor(out_shape, rng);
    auto dst_d = to<cuda>(dst);
    ops::add_into(dst, b);
    ops::add_into(dst_d, b_d);
    testing::require_all_close(to<cpu>(dst_d), dst, 1e-6f, 1e-6f, "add_into");
  }
}
