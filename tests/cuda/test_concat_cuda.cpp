// CUDA concat/split against the CPU path, forward and backward.
#include "op_checker.hpp"
#include "segkit/ops/concat.hpp"

using namespace segkit;

TEST_CASE("cuda concat and split match the cpu") {
  std::mt19937 rng(15);
  for (int axis : {0, 1, -1}) {
    testing::tensors in;
    std::vector<tensor<float, cuda>> in_d;
    for (int64_t c : {3, 1, 17}) {
      in.push_back(testing::random_tensor(shape{2, 4, 33, 35}.with(axis, c), rng));
      in_d.push_back(to<cuda>(in.back()));
    }
    const shape out_shape = ops::concat_output_shape({axis}, ops::detail::shapes_of(in));
    host_tensor<float> y(out_shape);
    tensor<float, cuda> y_d(out_shape);
    ops::concat({axis}, in, y);
    ops::concat({axis}, in_d, y_d);
    testing::require_all_close(to<cpu>(y_d), y, 1e-7f, 0, "concat");
    auto dy = testing::random_tensor(out_shape, rng);
    auto dy_d = to<cuda>(dy);
    testing::tensors grads;
    std::vector<tensor<float, cuda>> grads_d;
    for (const auto& t : in) {
      grads.push_back(testing::random_tensor(t.shape(), rng));
      grads_d.push_back(to<cuda>(grads.back()));
    }
    ops::concat_backward<cpu>({axis}, dy, {&grads[0], &grads[1], &grads[2]});
    ops::concat_backward<cuda>({axis}, dy_d, {&grads_d[0], &grads_d[1], &grads_d[2]});
    for (size_t k = 0; k < 3; ++k) testing::require_all_close(to<cpu>(grads_d[k]), grads[k], 1e-6f, 1e-6f, "concat_backward");
    ops::split({axis}, y_d, grads_d);
    for (size_t k = 0; k < 3; ++k) testing::require_all_close(to<cpu>(grads_d[k]), in[k], 1e-7f, 0, "split");
    auto dx = testing::random_tensor(out_shape, rng);
    auto dx_d = to<cuda>(dx);
    ops::split_backward({axis}, in, dx);
    ops::split_backward({axis}, in_d, dx_d);
    testing::require_all_close(to<cpu>(dx_d), dx, 1e-6f, 1e-6f, "split_backward");
  }
}
