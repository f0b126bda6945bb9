// CUDA conv2d (cuDNN) against the CPU path (im2col + Eigen, depthwise direct).
#include <catch2/catch.hpp>

#include "op_checker.hpp"
#include "segkit/ops/conv2d.hpp"

using namespace segkit;

TEST_CASE("cuda conv2d forward and backward match cpu") {
  struct config {
    const char* name;
    int64_t stride, pad, dilation, groups;
    shape x, w;
    bool bias;
  };
  const config configs[] = {
      {"3x3 pad 1", 1, 1, 1, 1, {2, 8, 13, 11}, {16, 8, 3, 3}, true},
      {"3x3 stride 2", 2, 1, 1, 1, {3, 6, 15, 16}, {10, 6, 3, 3}, false},
      {"dilation 2", 1, 2, 2, 1, {1, 4, 12, 9}, {5, 4, 3, 3}, true},
      {"groups 2", 1, 1, 1, 2, {2, 8, 9, 9}, {6, 4, 3, 3}, true},
      {"depthwise", 1, 1, 1, 12, {2, 12, 10, 10}, {12, 1, 3, 3}, true},
      {"1x1", 1, 0, 1, 1, {4, 16, 7, 7}, {32, 16, 1, 1}, true},
  };
  std::mt19937 rng(31);
  for (const auto& cfg : configs) {
    INFO(cfg.name);
    ops::conv2d_params p;
    p.stride_h = p.stride_w = cfg.stride;
    p.pad_h = p.pad_w = cfg.pad;
    p.dilation_h = p.dilation_w = cfg.dilation;
    p.groups = cfg.groups;
    auto x = testing::random_tensor(cfg.x, rng), w = testing::random_tensor(cfg.w, rng);
    auto b = testing::random_tensor({cfg.w[0]}, rng);
    const shape out = ops::conv2d_output_shape(p, x.shape(), w.shape());
    host_tensor<float> y(out);
    ops::conv2d_forward(p, x, w, cfg.bias ? &b : nullptr, y);
    auto x_gpu = to<cuda>(x), w_gpu = to<cuda>(w), b_gpu = to<cuda>(b);
    tensor<float, cuda> y_gpu(out);
    ops::conv2d_forward(p, x_gpu, w_gpu, cfg.bias ? &b_gpu : nullptr, y_gpu);
    testing::require_all_close(to<cpu>(y_gpu), y, 1e-4f, 1e-4f, "forward");

    auto dy = testing::random_tensor(out, rng);
    auto dx = testing::random_tensor(x.shape(), rng), dw = testing::random_tensor(w.shape(), rng);
    auto db = testing::random_tensor(b.shape(), rng);
    auto dy_gpu = to<cuda>(dy), dx_gpu = to<cuda>(dx), dw_gpu = to<cuda>(dw), db_gpu = to<cuda>(db);
    ops::conv2d_backward(p, x, w, dy, &dx, &dw, &db);  // adds onto the same random prefill
    ops::conv2d_backward(p, x_gpu, w_gpu, dy_gpu, &dx_gpu, &dw_gpu, &db_gpu);
    testing::require_all_close(to<cpu>(dx_gpu), dx, 1e-4f, 1e-4f, "dx");
    testing::require_all_close(to<cpu>(dw_gpu), dw, 1e-3f, 1e-4f, "dw");
    testing::require_all_close(to<cpu>(db_gpu), db, 1e-3f, 1e-4f, "dbias");
  }
}

TEST_CASE("cuda conv2d rejects bad shapes like the cpu path") {
  tensor<float, cuda> x({2, 4, 5, 5}), w({6, 3, 3, 3}), y({2, 6, 3, 3});
  CHECK_THROWS_WITH(ops::conv2d_forward({}, x, w, nullptr, y),
                    Catch::Contains("[6, 3, 3, 3]") && Catch::Contains("[2, 4, 5, 5]"));
}
