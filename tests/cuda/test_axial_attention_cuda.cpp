// CUDA axial attention against the CPU path: output, the saved column result and
// log-sum-exp, and the gradients of q, k, v (all, and dv alone), odd sizes included.
#include "op_checker.hpp"
#include "segkit/ops/axial_attention.hpp"

using namespace segkit;

TEST_CASE("cuda axial_attention: forward and backward match the cpu") {
  std::mt19937 rng(41);
  struct sizes { shape s; int heads; };
  for (const auto& t : {sizes{{2, 8, 5, 7}, 4}, sizes{{1, 64, 16, 24}, 4}, sizes{{1, 4, 1, 9}, 4},
                        sizes{{2, 6, 7, 1}, 3}, sizes{{1, 256, 33, 40}, 4}}) {
    INFO(t.s.to_string() << " heads " << t.heads);
    const ops::axial_attention_params params{t.heads};
    const shape st = ops::axial_attention_stats_shape(t.s, params);
    const auto q = testing::random_tensor(t.s, rng), k = testing::random_tensor(t.s, rng),
               v = testing::random_tensor(t.s, rng), dout = testing::random_tensor(t.s, rng);
    host_tensor<float> out(t.s), mid(t.s), stats(st);
    ops::axial_attention_forward(params, q, k, v, out, mid, stats);
    auto q_d = to<cuda>(q), k_d = to<cuda>(k), v_d = to<cuda>(v), dout_d = to<cuda>(dout);
    tensor<float, cuda> out_d(t.s), mid_d(t.s), stats_d(st);
    ops::axial_attention_forward(params, q_d, k_d, v_d, out_d, mid_d, stats_d);
    testing::require_all_close(to<cpu>(out_d), out, 1e-5f, 1e-4f, "out");
    testing::require_all_close(to<cpu>(mid_d), mid, 1e-5f, 1e-4f, "mid");
    testing::require_all_close(to<cpu>(stats_d), stats, 1e-5f, 1e-4f, "stats");

    auto dq = testing::random_tensor(t.s, rng), dk = testing::random_tensor(t.s, rng),
         dv = testing::random_tensor(t.s, rng);
    auto dq_d = to<cuda>(dq), dk_d = to<cuda>(dk), dv_d = to<cuda>(dv);
    auto dv_only_d = to<cuda>(dv);
    ops::axial_attention_backward(params, q, k, v, mid, stats, dout, &dq, &dk, &dv);
    ops::axial_attention_backward(params, q_d, k_d, v_d, mid_d, stats_d, dout_d, &dq_d, &dk_d, &dv_d);
    ops::axial_attention_backward(params, q_d, k_d, v_d, mid_d, stats_d, dout_d, nullptr, nullptr,
                                  &dv_only_d);
    testing::require_all_close(to<cpu>(dq_d), dq, 1e-4f, 1e-3f, "dq");
    testing::require_all_close(to<cpu>(dk_d), dk, 1e-4f, 1e-3f, "dk");
    testing::require_all_close(to<cpu>(dv_d), dv, 1e-4f, 1e-3f, "dv");
    testing::require_all_close(to<cpu>(dv_only_d), dv, 1e-4f, 1e-3f, "dv alone");
  }
}
