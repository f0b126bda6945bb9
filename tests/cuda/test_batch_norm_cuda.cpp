// CUDA batch norm (cuDNN) against the CPU path: forward, running statistics, saved statistics
// and backward (which must add), in training and eval mode.
#include <catch2/catch.hpp>

#include "op_checker.hpp"
#include "segkit/ops/batch_norm.hpp"

using namespace segkit;

namespace {

void compare_batch_norm(bool training, const shape& extent, unsigned seed) {
  INFO("batch_norm " << (training ? "training" : "eval") << " " << extent.to_string());
  std::mt19937 rng(seed);
  const int64_t c = extent[1];
  auto x = testing::random_tensor(extent, rng, -2.f, 3.f);
  auto gamma = testing::random_tensor({c}, rng, 0.5f, 1.5f);
  auto beta = testing::random_tensor({c}, rng);
  auto rm = testing::random_tensor({c}, rng, -0.5f, 0.5f);
  auto rv = testing::random_tensor({c}, rng, 0.5f, 2.f);
  auto dy = testing::random_tensor(extent, rng);
  auto prefill_x = testing::random_tensor(extent, rng);
  auto prefill_g = testing::random_tensor({c}, rng);
  auto prefill_b = testing::random_tensor({c}, rng);
  ops::batch_norm_params params;
  params.training = training;
  params.momentum = 0.2f;

  auto rm_cpu = rm.clone(), rv_cpu = rv.clone();
  host_tensor<float> y_cpu(extent), mean_cpu({c}), inv_cpu({c});
  ops::batch_norm_forward(params, x, gamma, beta, rm_cpu, rv_cpu, y_cpu, mean_cpu, inv_cpu);
  auto dx_cpu = prefill_x.clone(), dg_cpu = prefill_g.clone(), db_cpu = prefill_b.clone();
  ops::batch_norm_backward(params, x, gamma, mean_cpu, inv_cpu, dy, &dx_cpu, &dg_cpu, &db_cpu);

  auto xd = to<cuda>(x), gd = to<cuda>(gamma), bd = to<cuda>(beta), rmd = to<cuda>(rm),
       rvd = to<cuda>(rv), dyd = to<cuda>(dy);
  tensor<float, cuda> yd(extent), meand(shape{c}), invd(shape{c});
  ops::batch_norm_forward(params, xd, gd, bd, rmd, rvd, yd, meand, invd);
  auto dxd = to<cuda>(prefill_x), dgd = to<cuda>(prefill_g), dbd = to<cuda>(prefill_b);
  ops::batch_norm_backward(params, xd, gd, meand, invd, dyd, &dxd, &dgd, &dbd);

  testing::require_all_close(to<cpu>(yd), y_cpu, 1e-4f, 1e-4f, "y");
  testing::require_all_close(to<cpu>(rmd), rm_cpu, 1e-5f, 1e-4f, "running_mean");
  testing::require_all_close(to<cpu>(rvd), rv_cpu, 1e-5f, 1e-4f, "running_var");
  testing::require_all_close(to<cpu>(meand), mean_cpu, 1e-5f, 1e-4f, "saved_mean");
  testing::require_all_close(to<cpu>(invd), inv_cpu, 1e-5f, 1e-4f, "saved_inv_std");
  testing::require_all_close(to<cpu>(dxd), dx_cpu, 1e-4f, 1e-3f, "dx (added to a prefill)");
  testing::require_all_close(to<cpu>(dgd), dg_cpu, 1e-3f, 1e-3f, "dgamma (added to a prefill)");
  testing::require_all_close(to<cpu>(dbd), db_cpu, 1e-3f, 1e-3f, "dbeta (added to a prefill)");

  // Optional gradients: dgamma alone, and dx alone, still add and match.
  auto dg_only = to<cuda>(prefill_g);
  ops::batch_norm_backward(params, xd, gd, meand, invd, dyd, nullptr, &dg_only, nullptr);
  testing::require_all_close(to<cpu>(dg_only), dg_cpu, 1e-3f, 1e-3f, "dgamma alone");
  auto dx_only = to<cuda>(prefill_x);
  ops::batch_norm_backward(params, xd, gd, meand, invd, dyd, &dx_only, nullptr, nullptr);
  testing::require_all_close(to<cpu>(dx_only), dx_cpu, 1e-4f, 1e-3f, "dx alone");
}

}  // namespace

TEST_CASE("cuda batch_norm matches the CPU path") {
  for (bool training : {true, false}) {
    compare_batch_norm(training, {2, 3, 5, 7}, 1);
    compare_batch_norm(training, {1, 2, 3, 5}, 2);
    compare_batch_norm(training, {4, 1, 9, 9}, 3);
    compare_batch_norm(training, {8, 16, 32, 32}, 4);
  }
}

TEST_CASE("cuda batch_norm rejects one value per channel in training") {
  tensor<float, cuda> x(shape{1, 2, 1, 1}), y(shape{1, 2, 1, 1}), a(shape{2}), b(shape{2}),
      m(shape{2}), v(shape{2}), sm(shape{2}), si(shape{2});
  CHECK_THROWS_WITH(ops::batch_norm_forward({}, x, a, b, m, v, y, sm, si),
                    Catch::Contains("more than 1 value per channel"));
}
