// The MAC counter sees the CUDA forwards exactly as the CPU ones (same hook, same count).
#include <catch2/catch.hpp>

#include <random>

#include "op_checker.hpp"
#include "segkit/ops/conv2d.hpp"
#include "segkit/ops/matmul.hpp"
#include "segkit/ops/ocr_gather.hpp"
#include "segkit/ops/pyramid_sampling.hpp"
#include "segkit/tensor/mac_counter.hpp"

using namespace segkit;

TEST_CASE("cuda mac counter: conv2d, matmul, ocr gather and pyramid sampling count as on cpu") {
  std::mt19937 rng(2);
  const ops::conv2d_params p{2, 1, 1, 1, 2, 1, 2};
  const auto x = testing::random_tensor({2, 4, 11, 9}, rng);
  const auto w = testing::random_tensor({6, 2, 3, 3}, rng);
  const shape ys = ops::conv2d_output_shape(p, x.shape(), w.shape());
  host_tensor<float> y(ys);
  tensor<float, cuda> y_gpu(ys);
  const auto x_gpu = to<cuda>(x), w_gpu = to<cuda>(w);
  int64_t on_cpu = 0, on_gpu = 0;
  {
    mac_count_scope scope;
    ops::conv2d_forward(p, x, w, nullptr, y);
    on_cpu = scope.macs();
  }
  {
    mac_count_scope scope;
    ops::conv2d_forward(p, x_gpu, w_gpu, nullptr, y_gpu);
    on_gpu = scope.macs();
  }
  CHECK(on_cpu == ys.numel() * 2 * 3 * 3);
  CHECK(on_gpu == on_cpu);

  const auto a = to<cuda>(testing::random_tensor({3, 5, 7}, rng));
  const auto b = to<cuda>(testing::random_tensor({7, 4}, rng));
  tensor<float, cuda> c({3, 5, 4});
  {
    mac_count_scope scope;
    ops::matmul_forward({}, a, b, c);
    CHECK(scope.macs() == 3 * 5 * 4 * 7);
  }

  const auto regions = to<cuda>(testing::random_tensor({2, 3, 4, 5}, rng));
  const auto features = to<cuda>(testing::random_tensor({2, 6, 4, 5}, rng));
  tensor<float, cuda> probs({2, 3, 20}), gathered({2, 3, 6});
  {
    mac_count_scope scope;
    ops::ocr_gather_forward(regions, features, probs, gathered);
    CHECK(scope.macs() == 2 * 3 * 6 * 20);
  }

  const ops::pyramid_sampling_params pp{{1, 2, 3}};
  const auto px = to<cuda>(testing::random_tensor({1, 2, 6, 7}, rng));
  tensor<float, cuda> py(ops::pyramid_sampling_output_shape(pp, px.shape()));
  {
    mac_count_scope scope;
    ops::pyramid_sampling_forward(pp, px, py);
    CHECK(scope.macs() == 3 * 2 * 6 * 7);
  }
}
