// CUDA OCR spatial gather against the CPU path: probabilities, output, and both (adding)
// gradients, each gradient alone, K = 1, C = 1 and a Cityscapes-like size.
#include <catch2/catch.hpp>

#include "op_checker.hpp"
#include "segkit/ops/ocr_gather.hpp"

using namespace segkit;

namespace {
void compare_gather(int64_t n, int64_t k, int64_t c, int64_t h, int64_t w, unsigned seed) {
  INFO("ocr gather N" << n << " K" << k << " C" << c << " " << h << "x" << w);
  std::mt19937 rng(seed);
  auto regions = testing::random_tensor({n, k, h, w}, rng, -4.f, 4.f);
  auto features = testing::random_tensor({n, c, h, w}, rng);
  const shape out = ops::ocr_gather_output_shape(regions.shape(), features.shape());
  const shape ps = ops::ocr_gather_probabilities_shape(regions.shape());
  auto dy = testing::random_tensor(out, rng);
  auto dr0 = testing::random_tensor(regions.shape(), rng), df0 = testing::random_tensor(features.shape(), rng);
  host_tensor<float> probs(ps), y(out);
  ops::ocr_gather_forward(regions, features, probs, y);
  auto dr = dr0.clone(), df = df0.clone();
  ops::ocr_gather_backward(features, probs, dy, &dr, &df);

  auto rd = to<cuda>(regions), fd = to<cuda>(features), dyd = to<cuda>(dy);
  tensor<float, cuda> probsd(ps), yd(out);
  ops::ocr_gather_forward(rd, fd, probsd, yd);
  auto drd = to<cuda>(dr0), dfd = to<cuda>(df0);
  ops::ocr_gather_backward(fd, probsd, dyd, &drd, &dfd);
  testing::require_all_close(to<cpu>(probsd), probs, 1e-7f, 1e-5f, "probabilities");
  testing::require_all_close(to<cpu>(yd), y, 1e-5f, 1e-4f, "y");
  testing::require_all_close(to<cpu>(drd), dr, 1e-5f, 1e-4f, "d_regions (added)");
  testing::require_all_close(to<cpu>(dfd), df, 1e-5f, 1e-4f, "d_features (added)");

  auto dr_only = to<cuda>(dr0);
  ops::ocr_gather_backward(fd, probsd, dyd, &dr_only, nullptr);
  testing::require_all_close(to<cpu>(dr_only), dr, 1e-5f, 1e-4f, "d_regions alone");
  auto df_only = to<cuda>(df0);
  ops::ocr_gather_backward(fd, probsd, dyd, nullptr, &df_only);
  testing::require_all_close(to<cpu>(df_only), df, 1e-5f, 1e-4f, "d_features alone");
}
}  // namespace

TEST_CASE("cuda ocr gather matches the cpu") {
  compare_gather(2, 5, 4, 6, 7, 1);
  compare_gather(1, 1, 3, 4, 5, 2);
  compare_gather(2, 3, 1, 5, 3, 3);
  compare_gather(2, 19, 64, 32, 32, 4);
}
