#include <cmath>
#include <fstream>

#include "op_checker.hpp"
#include "segkit/ops/attention2d.hpp"
#include "segkit/ops/matmul.hpp"
#include "segkit/ops/softmax.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;

namespace {

struct attention_result {
  host_tensor<float> o, dq, dk, dv;
};

// The naive composition of core ops, per (n, head): scores = Q^T K (matmul), softmax over S
// (ops::softmax on the last axis), O = V P^T (matmul); backward through the same ops.
attention_result naive_attention(const ops::attention2d_params& params,
                                 const host_tensor<float>& q, const host_tensor<float>& k,
                                 const host_tensor<float>& v, const host_tensor<float>* d_o) {
  const int64_t n = q.size(0), h = params.heads, d = q.size(1), dv = v.size(1);
  const int64_t l = q.shape().span(2, q.rank()), s = k.shape().span(2, k.rank());
  const int64_t b = n * h;
  const auto qv = q.view({b, d / h, l}), kv = k.view({b, d / h, s}), vv = v.view({b, dv / h, s});
  host_tensor<float> scores({b, l, s}), p({b, l, s}), o({b, dv / h, l});
  ops::matmul_forward({true, false}, qv, kv, scores);
  for (int64_t i = 0; i < scores.numel(); ++i) scores[i] *= params.scale;
  ops::softmax_forward({-1}, scores, p);
  ops::matmul_forward({false, true}, vv, p, o);
  attention_result r;
  r.o = o.view(q.shape().with(1, dv));
  if (!d_o) return r;
  const auto dov = d_o->view({b, dv / h, l});
  auto dq = host_tensor<float>::zeros({b, d / h, l}), dk = host_tensor<float>::zeros({b, d / h, s});
  auto dvt = host_tensor<float>::zeros({b, dv / h, s}), dp = host_tensor<float>::zeros({b, l, s});
  auto dscores = host_tensor<float>::zeros({b, l, s});
  ops::matmul_backward({false, true}, vv, p, dov, &dvt, &dp);
  ops::softmax_backward({-1}, p, dp, dscores);
  for (int64_t i = 0; i < dscores.numel(); ++i) dscores[i] *= params.scale;
  ops::matmul_backward({true, false}, qv, kv, dscores, &dq, &dk);
  r.dq = dq.view(q.shape());
  r.dk = dk.view(k.shape());
  r.dv = dvt.view(v.shape());
  return r;
}

attention_result fused_attention(const ops::attention2d_params& params,
                                 const host_tensor<float>& q, const host_tensor<float>& k,
                                 const host_tensor<float>& v, const host_tensor<float>* d_o) {
  attention_result r;
  r.o = host_tensor<float>(ops::attention2d_output_shape(params, q.shape(), k.shape(), v.shape()));
  host_tensor<float> lse(ops::attention2d_lse_shape(params, q.shape(), k.shape(), v.shape()));
  ops::attention2d_forward(params, q, k, v, r.o, lse);
  if (!d_o) return r;
  r.dq = host_tensor<float>::zeros(q.shape());
  r.dk = host_tensor<float>::zeros(k.shape());
  r.dv = host_tensor<float>::zeros(v.shape());
  ops::attention2d_backward(params, q, k, v, r.o, lse, *d_o, &r.dq, &r.dk, &r.dv);
  return r;
}

void compare_with_naive(const shape& qs, const shape& ks, int64_t dv, int heads, float scale,
                        unsigned seed, float spread = 1.f, float rtol = 2e-4f) {
  std::mt19937 rng(seed);
  const auto q = testing::random_tensor(qs, rng, -spread, spread);
  const auto k = testing::random_tensor(ks, rng, -spread, spread);
  const auto v = testing::random_tensor(ks.with(1, dv), rng);
  const auto d_o = testing::random_tensor(qs.with(1, dv), rng);
  const ops::attention2d_params params{heads, scale};
  const auto fused = fused_attention(params, q, k, v, &d_o);
  const auto naive = naive_attention(params, q, k, v, &d_o);
  const std::string what = "q " + qs.to_string() + " k " + ks.to_string() + " dv " +
                           std::to_string(dv) + " heads " + std::to_string(heads) + " scale " +
                           std::to_string(scale);
  testing::require_all_close(fused.o, naive.o, 1e-5f, rtol, "output, " + what);
  testing::require_all_close(fused.dq, naive.dq, 1e-5f, rtol, "dq, " + what);
  testing::require_all_close(fused.dk, naive.dk, 1e-5f, rtol, "dk, " + what);
  testing::require_all_close(fused.dv, naive.dv, 1e-5f, rtol, "dv, " + what);
}

testing::op_case attention_case(const shape& qs, const shape& ks, int64_t dv, int heads,
                                float scale, unsigned seed) {
  std::mt19937 rng(seed);
  testing::op_case test;
  test.name = "attention2d q " + qs.to_string() + " k " + ks.to_string() + " heads " +
              std::to_string(heads) + " scale " + std::to_string(scale);
  test.inputs = {testing::random_tensor(qs, rng), testing::random_tensor(ks, rng),
                 testing::random_tensor(ks.with(1, dv), rng)};
  const ops::attention2d_params params{heads, scale};
  test.forward = [params](const testing::tensors& in) {
    return testing::tensors{fused_attention(params, in[0], in[1], in[2], nullptr).o};
  };
  test.backward = [params](const testing::tensors& in, const testing::tensors& out,
                           const testing::tensors& dout, testing::tensors& din) {
    host_tensor<float> o(out[0].shape());
    host_tensor<float> lse(ops::attention2d_lse_shape(params, in[0].shape(), in[1].shape(),
                                                      in[2].shape()));
    ops::attention2d_forward(params, in[0], in[1], in[2], o, lse);
    ops::attention2d_backward(params, in[0], in[1], in[2], o, lse, dout[0], &din[0], &din[1],
                              &din[2]);
  };
  test.step = 3e-3f;
  return test;
}

}  // namespace

TEST_CASE("attention2d: matches matmul-softmax-matmul, SaF's 110 pooled keys") {
  compare_with_naive({2, 16, 20, 13}, {2, 16, 1, 110}, 24, 1, 0.25f, 1);       // L = 260
  compare_with_naive({1, 32, 300}, {1, 32, 110}, 16, 4, 1.f / std::sqrt(8.f), 2);
  compare_with_naive({2, 8, 129}, {2, 8, 110}, 8, 1, 1.f, 3);
  // L = 2100 over 1024-query tiles (the S = 110 tile size): 3 tiles, the last partial
  compare_with_naive({2, 4, 30, 70}, {2, 4, 1, 110}, 4, 2, 0.5f, 13);
}

TEST_CASE("attention2d: full self-attention over several key tiles (online softmax)") {
  // S = L = 1100 > key_tile (512): three key tiles, the last partial; rescaling is exercised.
  compare_with_naive({1, 8, 25, 44}, {1, 8, 25, 44}, 12, 1, 1.f, 4);
  compare_with_naive({2, 16, 600}, {2, 16, 600}, 8, 2, 0.25f, 5);
}

TEST_CASE("attention2d: odd sizes (S = 1, d = 1, L = 1, N = 1, L not a tile multiple)") {
  compare_with_naive({1, 1, 7}, {1, 1, 5}, 3, 1, 1.f, 6);      // d = 1
  compare_with_naive({2, 4, 9}, {2, 4, 1}, 2, 1, 1.f, 7);      // S = 1: output = V
  compare_with_naive({1, 6, 1}, {1, 6, 13}, 6, 3, 0.5f, 8);    // L = 1
  compare_with_naive({3, 2, 131}, {3, 2, 1, 3}, 2, 2, 1.f, 9);  // dh = dvh = 1
}

TEST_CASE("attention2d: large logits stay finite and exact (stability)") {
  // |scores| up to 30 * 30 * 8 = 7200: exp would overflow without the running maximum. Both
  // sides round the logits (~7200 * 6e-8 = 4e-4 absolute), which the probabilities inherit
  // as relative error, hence the looser rtol.
  compare_with_naive({1, 8, 70}, {1, 8, 110}, 4, 1, 1.f, 10, 30.f, 5e-3f);
  compare_with_naive({1, 8, 40}, {1, 8, 700}, 4, 1, 1.f, 11, 30.f, 5e-3f);
  std::mt19937 rng(12);
  const auto q = testing::random_tensor({1, 4, 10}, rng, -100.f, 100.f);
  const auto k = testing::random_tensor({1, 4, 600}, rng, -100.f, 100.f);
  const auto v = testing::random_tensor({1, 2, 600}, rng);
  const auto r = fused_attention({1, 1.f}, q, k, v, nullptr);
  for (int64_t i = 0; i < r.o.numel(); ++i) REQUIRE(std::isfinite(r.o[i]));
}

TEST_CASE("attention2d: finite-difference gradients of q, k, v") {
  testing::check_op(attention_case({2, 4, 3, 5}, {2, 4, 1, 7}, 3, 1, 0.5f, 20));
  testing::check_op(attention_case({1, 6, 11}, {1, 6, 9}, 4, 2, 1.f, 21));
  testing::check_op(attention_case({1, 2, 1}, {1, 2, 1}, 1, 1, 1.f, 22));   // L = S = 1
  testing::check_op(attention_case({1, 1, 5}, {1, 1, 4}, 2, 1, 1.f, 23));   // d = 1
  testing::check_op(attention_case({1, 4, 130}, {1, 4, 520}, 2, 1, 1.f, 24));  // 2 key tiles
}

TEST_CASE("attention2d: results do not depend on the thread count") {
  // S = 1100 (3 key tiles) with N x heads = 2: one thread takes the single-pass backward,
  // more threads may split key tiles and recompute for dQ; both must agree bit for bit.
  std::mt19937 rng(31);
  const auto q = testing::random_tensor({2, 4, 300}, rng), k = testing::random_tensor({2, 4, 1100}, rng);
  const auto v = testing::random_tensor({2, 2, 1100}, rng), d_o = testing::random_tensor({2, 2, 300}, rng);
  const int threads = num_threads();
  for (int t : {1, 2, 3}) {
    set_num_threads(1);
    const auto one = fused_attention({1, 1.f}, q, k, v, &d_o);
    set_num_threads(t);
    const auto many = fused_attention({1, 1.f}, q, k, v, &d_o);
    testing::require_all_close(many.o, one.o, 0.f, 0.f, "o, threads " + std::to_string(t));
    testing::require_all_close(many.dq, one.dq, 0.f, 0.f, "dq, threads " + std::to_string(t));
    testing::require_all_close(many.dk, one.dk, 0.f, 0.f, "dk, threads " + std::to_string(t));
    testing::require_all_close(many.dv, one.dv, 0.f, 0.f, "dv, threads " + std::to_string(t));
  }
  set_num_threads(threads);
}

TEST_CASE("attention2d: optional gradients, and backward adds") {
  std::mt19937 rng(30);
  const auto q = testing::random_tensor({1, 4, 50}, rng), k = testing::random_tensor({1, 4, 600}, rng);
  const auto v = testing::random_tensor({1, 3, 600}, rng), d_o = testing::random_tensor({1, 3, 50}, rng);
  const ops::attention2d_params params{1, 0.5f};
  const auto full = fused_attention(params, q, k, v, &d_o);
  host_tensor<float> o({1, 3, 50}), lse({1, 1, 50});
  ops::attention2d_forward(params, q, k, v, o, lse);
  auto dq = host_tensor<float>::zeros(q.shape());
  ops::attention2d_backward(params, q, k, v, o, lse, d_o, &dq, nullptr, nullptr);
  testing::require_all_close(dq, full.dq, 0.f, 0.f, "dq alone");
  auto dk = host_tensor<float>::zeros(k.shape());
  ops::attention2d_backward(params, q, k, v, o, lse, d_o, nullptr, &dk, nullptr);
  testing::require_all_close(dk, full.dk, 0.f, 0.f, "dk alone");
  auto dv = host_tensor<float>::zeros(v.shape());
  dv.fill(1.f);
  ops::attention2d_backward(params, q, k, v, o, lse, d_o, nullptr, nullptr, &dv);
  for (int64_t i = 0; i < dv.numel(); ++i) REQUIRE(dv[i] == Approx(1.f + full.dv[i]).margin(1e-6));
}

TEST_CASE("attention2d: bad inputs name the shapes") {
  host_tensor<float> q({2, 8, 4, 4}), k({2, 8, 1, 110}), v({2, 6, 1, 110}), o({2, 6, 4, 4});
  host_tensor<float> lse({2, 1, 16});
  const ops::attention2d_params params{1, 1.f};
  host_tensor<float> k_bad_d({2, 7, 1, 110});
  CHECK_THROWS_WITH(ops::attention2d_forward(params, q, k_bad_d, v, o, lse),
                    Catch::Contains("[2, 8, 4, 4]") && Catch::Contains("[2, 7, 1, 110]") &&
                        Catch::Contains("key channels"));
  host_tensor<float> v_bad_s({2, 6, 1, 109});
  CHECK_THROWS_WITH(ops::attention2d_forward(params, q, k, v_bad_s, o, lse),
                    Catch::Contains("[2, 8, 1, 110]") && Catch::Contains("[2, 6, 1, 109]") &&
                        Catch::Contains("key positions"));
  CHECK_THROWS_WITH(ops::attention2d_forward({3, 1.f}, q, k, v, o, lse),
                    Catch::Contains("heads=3") && Catch::Contains("[2, 8, 4, 4]"));
  CHECK_THROWS_AS(ops::attention2d_forward({4, 1.f}, q, k, v, o, lse), shape_error);  // 6 % 4
  host_tensor<float> o_bad({2, 8, 4, 4});
  CHECK_THROWS_WITH(ops::attention2d_forward(params, q, k, v, o_bad, lse),
                    Catch::Contains("[2, 8, 4, 4]") && Catch::Contains("[2, 6, 4, 4]"));
  host_tensor<float> k_bad_n({1, 8, 1, 110});
  CHECK_THROWS_AS(ops::attention2d_forward(params, q, k_bad_n, v, o, lse), shape_error);
  CHECK_THROWS_AS(ops::attention2d_forward({1, NAN}, q, k, v, o, lse), value_error);
  host_tensor<float> dq_bad({2, 8, 4, 5});
  CHECK_THROWS_WITH(ops::attention2d_backward(params, q, k, v, o, lse, o, &dq_bad, nullptr, nullptr),
                    Catch::Contains("[2, 8, 4, 5]") && Catch::Contains("dq"));
}

TEST_CASE("attention2d: PyTorch parity (tests/reference/gen_attention2d.py)") {
  const std::string path = SEGKIT_GOLDEN_DIR "/attention2d.safetensors";
  const auto file = tensor_file::load(path);
  for (const std::string prefix : {"saf", "full", "heads"}) {
    INFO(prefix);
    const auto q = file.get<float>(prefix + ".q"), k = file.get<float>(prefix + ".k");
    const auto v = file.get<float>(prefix + ".v"), d_o = file.get<float>(prefix + ".do");
    const auto meta = file.get<float>(prefix + ".params");  // [heads, scale]
    const ops::attention2d_params params{int(meta[0]), meta[1]};
    const auto r = fused_attention(params, q, k, v, &d_o);
    testing::require_all_close(r.o, file.get<float>(prefix + ".o"), 1e-5f, 1e-4f, prefix + " o");
    testing::require_all_close(r.dq, file.get<float>(prefix + ".dq"), 1e-5f, 2e-4f, prefix + " dq");
    testing::require_all_close(r.dk, file.get<float>(prefix + ".dk"), 1e-5f, 2e-4f, prefix + " dk");
    testing::require_all_close(r.dv, file.get<float>(prefix + ".dv"), 1e-5f, 2e-4f, prefix + " dv");
  }
}
