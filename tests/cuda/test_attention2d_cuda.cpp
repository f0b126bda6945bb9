// CUDA attention2d against the CPU path: outputs, saved lse and all three gradients, for SaF's
// 110 pooled keys, full self-attention over several key tiles, multi-head and odd sizes. The
// forward runs on tensor cores (3xTF32) on sm_80+; a d_v too wide for its shared memory takes
// the plain FP32 kernel, and allow_tf32 is checked at TF32's accuracy.
#include "op_checker.hpp"
#include "segkit/ops/attention2d.hpp"

using namespace segkit;

TEST_CASE("cuda attention2d: forward and backward match the cpu") {
  std::mt19937 rng(41);
  struct config {
    shape q, k;
    int64_t dv;
    int heads;
    float scale;
  };
  const config configs[] = {
      {{2, 32, 17, 19}, {2, 32, 1, 110}, 48, 1, 1.f / std::sqrt(32.f)},
      {{1, 16, 24, 24}, {1, 16, 24, 24}, 32, 1, 1.f},            // full, 576 keys: 2 CPU key tiles
      {{2, 24, 130}, {2, 24, 70}, 12, 4, 1.f / std::sqrt(6.f)},  // multi-head
      {{1, 1, 5}, {1, 1, 1}, 1, 1, 1.f},                         // d = 1, S = 1
      {{3, 4, 1}, {3, 4, 33}, 2, 2, 0.5f},                       // L = 1
      // 3 Q/K channel chunks (the last partial), 2 V chunks, 3 key tiles, 2 query tiles
      {{2, 80, 10, 10}, {2, 80, 130}, 72, 1, 1.f / std::sqrt(80.f)},
      {{1, 8, 20}, {1, 8, 30}, 2048, 1, 0.5f},  // d_v too wide for the tensor-core kernel
  };
  for (const auto& c : configs) {
    INFO("q " << c.q.to_string() << " k " << c.k.to_string() << " heads " << c.heads);
    const ops::attention2d_params params{c.heads, c.scale};
    const auto q = testing::random_tensor(c.q, rng), k = testing::random_tensor(c.k, rng);
    const auto v = testing::random_tensor(c.k.with(1, c.dv), rng);
    const auto d_o = testing::random_tensor(c.q.with(1, c.dv), rng);
    host_tensor<float> o(c.q.with(1, c.dv)), lse(ops::attention2d_lse_shape(params, c.q, c.k, v.shape()));
    ops::attention2d_forward(params, q, k, v, o, lse);
    auto dq = testing::random_tensor(c.q, rng), dk = testing::random_tensor(c.k, rng);
    auto dv = testing::random_tensor(v.shape(), rng);
    auto q_d = to<cuda>(q), k_d = to<cuda>(k), v_d = to<cuda>(v), do_d = to<cuda>(d_o);
    auto dq_d = to<cuda>(dq), dk_d = to<cuda>(dk), dv_d = to<cuda>(dv);
    tensor<float, cuda> o_d(o.shape()), lse_d(lse.shape());
    ops::attention2d_forward(params, q_d, k_d, v_d, o_d, lse_d);
    testing::require_all_close(to<cpu>(o_d), o, 1e-5f, 1e-4f, "forward");
    testing::require_all_close(to<cpu>(lse_d), lse, 1e-5f, 1e-5f, "lse");
    ops::attention2d_backward(params, q, k, v, o, lse, d_o, &dq, &dk, &dv);
    ops::attention2d_backward(params, q_d, k_d, v_d, o_d, lse_d, do_d, &dq_d, &dk_d, &dv_d);
    testing::require_all_close(to<cpu>(dq_d), dq, 1e-5f, 2e-4f, "dq (added onto random values)");
    testing::require_all_close(to<cpu>(dk_d), dk, 1e-5f, 2e-4f, "dk (added onto random values)");
    testing::require_all_close(to<cpu>(dv_d), dv, 1e-5f, 2e-4f, "dv (added onto random values)");
  }
}

TEST_CASE("cuda attention2d: allow_tf32 forward is within TF32's accuracy") {
  std::mt19937 rng(47);
  ops::attention2d_params params{2, 1.f / std::sqrt(64.f)};
  params.allow_tf32 = true;
  const auto q = testing::random_tensor({2, 128, 300}, rng),
             k = testing::random_tensor({2, 128, 110}, rng);
  const auto v = testing::random_tensor({2, 96, 110}, rng);
  host_tensor<float> o({2, 96, 300}), lse({2, 2, 300});
  ops::attention2d_forward(params, q, k, v, o, lse);  // the CPU computes in FP32 regardless
  tensor<float, cuda> o_d(o.shape()), lse_d(lse.shape());
  ops::attention2d_forward(params, to<cuda>(q), to<cuda>(k), to<cuda>(v), o_d, lse_d);
  // TF32 rounds each operand to 11 significant bits (relative 2^-11 ~ 5e-4): the scaled scores
  // (64 products per head) are off by ~5e-5, outputs of magnitude ~0.05 by ~4e-5. The
  // tolerances leave 10x to that; a wrong tile is off by ~0.1.
  testing::require_all_close(to<cpu>(o_d), o, 5e-4f, 5e-3f, "forward, TF32 products");
  testing::require_all_close(to<cpu>(lse_d), lse, 5e-4f, 1e-3f, "lse, TF32 products");
}

TEST_CASE("cuda attention2d: large logits and bad shapes") {
  std::mt19937 rng(43);
  const ops::attention2d_params params{1, 1.f};
  const auto q = testing::random_tensor({1, 8, 40}, rng, -30.f, 30.f);
  const auto k = testing::random_tensor({1, 8, 200}, rng, -30.f, 30.f);
  const auto v = testing::random_tensor({1, 4, 200}, rng);
  host_tensor<float> o({1, 4, 40}), lse({1, 1, 40});
  ops::attention2d_forward(params, q, k, v, o, lse);
  tensor<float, cuda> o_d(o.shape()), lse_d(lse.shape());
  ops::attention2d_forward(params, to<cuda>(q), to<cuda>(k), to<cuda>(v), o_d, lse_d);
  testing::require_all_close(to<cpu>(o_d), o, 1e-4f, 5e-3f, "forward, logits up to ~7000");
  tensor<float, cuda> k_bad({1, 7, 200});
  CHECK_THROWS_AS(ops::attention2d_forward(params, to<cuda>(q), k_bad, to<cuda>(v), o_d, lse_d),
                  shape_error);
}
