// tests/test_axial_attention.cpp — ops/axial_attention.hpp against a plain loop reference in
// double, against the naive composition of segkit's core ops (permute, matmul, scale,
// softmax, matmul; column pass then row pass), against PyTorch (einsum + softmax), finite
// differences for q, k, v, odd sizes and bad inputs; and the nn::axial_attention layer.
#include <cmath>

#include "layer_checker.hpp"
#include "op_checker.hpp"
#include "segkit/nn/axial_attention_layer.hpp"
#include "segkit/ops/axial_attention.hpp"
#include "segkit/ops/elementwise.hpp"
#include "segkit/ops/softmax.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;
using testing::tensors;

namespace {

struct forward_result {
  host_tensor<float> out, mid, stats;
};

forward_result run_forward(int heads, const host_tensor<float>& q, const host_tensor<float>& k,
                           const host_tensor<float>& v) {
  const ops::axial_attention_params params{heads};
  forward_result r{host_tensor<float>(q.shape()), host_tensor<float>(q.shape()),
                   host_tensor<float>(ops::axial_attention_stats_shape(q.shape(), params))};
  ops::axial_attention_forward(params, q, k, v, r.out, r.mid, r.stats);
  return r;
}

// Plain loops in double, straight from the definition (METHODS §2).
host_tensor<float> loop_reference(int heads, const host_tensor<float>& q,
                                  const host_tensor<float>& k, const host_tensor<float>& v) {
  const int64_t N = q.size(0), C = q.size(1), H = q.size(2), W = q.size(3), c = C / heads;
  const double scale = 1.0 / std::sqrt(double(c));
  std::vector<double> y1(size_t(q.numel()));
  host_tensor<float> out(q.shape());
  auto at = [&](int64_t n, int64_t ch, int64_t i, int64_t w) { return ((n * C + ch) * H + i) * W + w; };
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t w = 0; w < W; ++w)
        for (int64_t i = 0; i < H; ++i) {
          std::vector<double> s(static_cast<size_t>(H));
          double m = -INFINITY, sum = 0;
          for (int64_t j = 0; j < H; ++j) {
            double dot = 0;
            for (int64_t d = 0; d < c; ++d) dot += double(q[at(n, h * c + d, i, w)]) * k[at(n, h * c + d, j, w)];
            s[size_t(j)] = dot * scale;
            m = std::max(m, s[size_t(j)]);
          }
          for (auto& x : s) sum += (x = std::exp(x - m));
          for (int64_t d = 0; d < c; ++d) {
            double acc = 0;
            for (int64_t j = 0; j < H; ++j) acc += s[size_t(j)] / sum * v[at(n, h * c + d, j, w)];
            y1[size_t(at(n, h * c + d, i, w))] = acc;
          }
        }
      for (int64_t i = 0; i < H; ++i)
        for (int64_t a = 0; a < W; ++a) {
          std::vector<double> s(static_cast<size_t>(W));
          double m = -INFINITY, sum = 0;
          for (int64_t b = 0; b < W; ++b) {
            double dot = 0;
            for (int64_t d = 0; d < c; ++d) dot += double(q[at(n, h * c + d, i, a)]) * k[at(n, h * c + d, i, b)];
            s[size_t(b)] = dot * scale;
            m = std::max(m, s[size_t(b)]);
          }
          for (auto& x : s) sum += (x = std::exp(x - m));
          for (int64_t d = 0; d < c; ++d) {
            double acc = 0;
            for (int64_t b = 0; b < W; ++b) acc += s[size_t(b)] / sum * y1[size_t(at(n, h * c + d, i, b))];
            out[at(n, h * c + d, i, a)] = float(acc);
          }
        }
    }
  return out;
}

// One attention pass with core ops: x viewed [N, h, c, H, W], permuted by `axes` to
// [N, h, lines, L, c]; softmax(scale q k^T) v per line; permuted back.
host_tensor<float> composed_pass(int heads, const std::vector<int>& axes, const host_tensor<float>& q,
                                 const host_tensor<float>& k, const host_tensor<float>& v) {
  const int64_t N = q.size(0), C = q.size(1), H = q.size(2), W = q.size(3), c = C / heads;
  const shape hv{N, heads, c, H, W};
  const ops::permute_params to_lines{axes};
  const shape ls = ops::permute_output_shape(hv, to_lines);
  const shape batched{ls[0] * ls[1] * ls[2], ls[3], ls[4]};
  auto lines = [&](const host_tensor<float>& x) {
    host_tensor<float> y(ls);
    ops::permute(to_lines, x.view(hv), y);
    return y.view(batched);
  };
  const auto lq = lines(q), lk = lines(k), lv = lines(v);
  host_tensor<float> scores({batched[0], batched[1], batched[1]}), probs(scores.shape());
  ops::matmul_forward({false, true}, lq, lk, scores);
  ops::scale(scores, float(1.0 / std::sqrt(double(c))), scores);
  ops::softmax_forward({-1}, scores, probs);
  host_tensor<float> y(batched);
  ops::matmul_forward({}, probs, lv, y);
  host_tensor<float> back(hv);
  ops::permute(ops::inverse_permutation(hv, to_lines), y.view(ls), back);
  return back.view(q.shape());
}

host_tensor<float> composed_reference(int heads, const host_tensor<float>& q,
                                      const host_tensor<float>& k, const host_tensor<float>& v) {
  const auto y1 = composed_pass(heads, {0, 1, 4, 3, 2}, q, k, v);
  return composed_pass(heads, {0, 1, 3, 4, 2}, q, k, y1);
}

testing::op_case axial_case(const shape& s, int heads, unsigned seed) {
  std::mt19937 rng(seed);
  testing::op_case test;
  test.name = "axial_attention " + s.to_string() + " heads " + std::to_string(heads);
  for (int i = 0; i < 3; ++i) test.inputs.push_back(testing::random_tensor(s, rng));
  test.forward = [heads](const tensors& in) {
    return tensors{run_forward(heads, in[0], in[1], in[2]).out};
  };
  test.backward = [heads](const tensors& in, const tensors&, const tensors& dout, tensors& din) {
    const auto r = run_forward(heads, in[0], in[1], in[2]);
    ops::axial_attention_backward({heads}, in[0], in[1], in[2], r.mid, r.stats, dout[0], &din[0],
                                  &din[1], &din[2]);
  };
  test.step = 3e-3f;
  return test;
}

}  // namespace

TEST_CASE("axial_attention: values against plain loops and the composition of core ops") {
  std::mt19937 rng(3);
  struct sizes { shape s; int heads; };
  for (const auto& t : {sizes{{2, 8, 5, 7}, 4}, sizes{{1, 4, 6, 3}, 1}, sizes{{1, 4, 1, 9}, 4},
                        sizes{{2, 6, 7, 1}, 3}, sizes{{1, 32, 9, 12}, 2}, sizes{{1, 3, 1, 1}, 3},
                        sizes{{3, 64, 4, 5}, 4}}) {
    INFO("shape " << t.s.to_string() << " heads " << t.heads);
    const auto q = testing::random_tensor(t.s, rng, -2.f, 2.f), k = testing::random_tensor(t.s, rng, -2.f, 2.f),
               v = testing::random_tensor(t.s, rng);
    const auto r = run_forward(t.heads, q, k, v);
    testing::require_all_close(r.out, loop_reference(t.heads, q, k, v), 1e-5f, 1e-4f, "vs loops");
    testing::require_all_close(r.out, composed_reference(t.heads, q, k, v), 1e-5f, 1e-4f, "vs composition");
    // mid holds the column pass alone
    testing::require_all_close(r.mid, composed_pass(t.heads, {0, 1, 4, 3, 2}, q, k, v), 1e-5f, 1e-4f,
                               "mid vs the column pass");
  }
}

TEST_CASE("axial_attention: gradients of q, k, v by finite differences, odd sizes") {
  testing::check_op(axial_case({2, 8, 5, 7}, 4, 1));
  testing::check_op(axial_case({1, 4, 3, 6}, 1, 2));
  testing::check_op(axial_case({1, 4, 1, 5}, 4, 3));   // H = 1, C = heads
  testing::check_op(axial_case({2, 2, 4, 1}, 1, 4));   // W = 1
  testing::check_op(axial_case({1, 6, 3, 3}, 2, 5));
}

TEST_CASE("axial_attention: gradients wanted selectively, and the workspace stops growing") {
  std::mt19937 rng(11);
  const shape s{2, 8, 5, 6};
  const auto q = testing::random_tensor(s, rng), k = testing::random_tensor(s, rng),
             v = testing::random_tensor(s, rng), dout = testing::random_tensor(s, rng);
  workspace<cpu> ws;
  const ops::axial_attention_params params{4};
  host_tensor<float> out(s), mid(s), stats(ops::axial_attention_stats_shape(s, params));
  ops::axial_attention_forward(params, q, k, v, out, mid, stats, &ws);
  auto dq = host_tensor<float>::zeros(s), dk = dq.clone(), dv = dq.clone();
  ops::axial_attention_backward(params, q, k, v, mid, stats, dout, &dq, &dk, &dv, &ws);
  const size_t capacity = ws.capacity();
  auto dv_only = host_tensor<float>::zeros(s), dk_only = dv_only.clone();
  ops::axial_attention_backward(params, q, k, v, mid, stats, dout, nullptr, nullptr, &dv_only, &ws);
  ops::axial_attention_backward(params, q, k, v, mid, stats, dout, nullptr, &dk_only, nullptr, &ws);
  ops::axial_attention_forward(params, q, k, v, out, mid, stats, &ws);
  CHECK(ws.capacity() == capacity);
  testing::require_all_close(dv_only, dv, 0.f, 0.f, "dv alone");
  testing::require_all_close(dk_only, dk, 0.f, 0.f, "dk alone");
}

TEST_CASE("axial_attention: matches PyTorch (einsum + softmax), outputs and gradients") {
  const auto file = tensor_file::load(SEGKIT_GOLDEN_DIR "/axial_attention.safetensors");
  for (const std::string name : {"a", "b", "c"}) {
    INFO("golden case " << name);
    const int heads = file.get<int32_t>(name + ".heads")[0];
    const auto q = file.get<float>(name + ".q"), k = file.get<float>(name + ".k"),
               v = file.get<float>(name + ".v");
    const auto r = run_forward(heads, q, k, v);
    testing::require_all_close(r.out, file.get<float>(name + ".out"), 1e-5f, 1e-4f, "out");
    auto dq = host_tensor<float>::zeros(q.shape()), dk = dq.clone(), dv = dq.clone();
    ops::axial_attention_backward({heads}, q, k, v, r.mid, r.stats, file.get<float>(name + ".d_out"),
                                  &dq, &dk, &dv);
    testing::require_all_close(dq, file.get<float>(name + ".dq"), 1e-4f, 1e-3f, "dq");
    testing::require_all_close(dk, file.get<float>(name + ".dk"), 1e-4f, 1e-3f, "dk");
    testing::require_all_close(dv, file.get<float>(name + ".dv"), 1e-4f, 1e-3f, "dv");
  }
}

TEST_CASE("axial_attention: bad inputs name the shapes") {
  const shape s{1, 8, 4, 5};
  host_tensor<float> q(s), k(s), v(s), out(s), mid(s), stats(ops::axial_attention_stats_shape(s, {4}));
  host_tensor<float> other({1, 8, 5, 4});
  CHECK_THROWS_WITH(ops::axial_attention_forward({4}, q, other, v, out, mid, stats),
                    Catch::Contains("key has shape [1, 8, 5, 4]") && Catch::Contains("[1, 8, 4, 5]"));
  CHECK_THROWS_WITH(ops::axial_attention_forward({4}, q, k, other, out, mid, stats),
                    Catch::Contains("value has shape [1, 8, 5, 4]"));
  CHECK_THROWS_AS(ops::axial_attention_forward({4}, q, k, v, other, mid, stats), shape_error);
  CHECK_THROWS_WITH(ops::axial_attention_forward({3}, q, k, v, out, mid, stats),
                    Catch::Contains("heads=3") && Catch::Contains("C=8") && Catch::Contains("[1, 8, 4, 5]"));
  CHECK_THROWS_AS(ops::axial_attention_forward({0}, q, k, v, out, mid, stats), value_error);
  host_tensor<float> wrong_stats({1, 4, 2, 5, 4});
  CHECK_THROWS_WITH(ops::axial_attention_forward({4}, q, k, v, out, mid, wrong_stats),
                    Catch::Contains("stats has shape [1, 4, 2, 5, 4], expected [1, 4, 2, 4, 5]"));
  host_tensor<float> rank3({8, 4, 5});
  CHECK_THROWS_WITH(ops::axial_attention_forward({4}, rank3, rank3, rank3, out, mid, stats),
                    Catch::Contains("[8, 4, 5]") && Catch::Contains("rank 4"));
  CHECK_THROWS_WITH(ops::axial_attention_backward({4}, q, k, v, mid, stats, other, &q, &k, &v),
                    Catch::Contains("output gradient has shape [1, 8, 5, 4]"));
  CHECK_THROWS_WITH(ops::axial_attention_backward({4}, q, k, v, mid, stats, out, &other, nullptr, nullptr),
                    Catch::Contains("query gradient has shape [1, 8, 5, 4]"));
}

// ---- the layer ---------------------------------------------------------------------------------
TEST_CASE("axial_attention layer: gradients of input and all six parameters, with and without residual") {
  testing::check_op(testing::layer_case<nn::axial_attention<4>, 8>("axial layer residual", {2, 8, 4, 5}));
  testing::check_op(testing::layer_case<nn::axial_attention<2, false>, 4>("axial layer plain", {1, 4, 3, 6}));
}

TEST_CASE("axial_attention layer: names, Q and K initialised equal, output = op + input") {
  using layer_type = nn::bind<nn::axial_attention<2>, 4, true, cpu>;
  layer_type layer;
  nn::setup_context<cpu> context;
  std::mt19937_64 init(5);
  layer.initialize(init);
  const shape s{1, 4, 3, 5};
  layer.setup(s, context);
  std::vector<std::string> names;
  layer.visit_parameters("aa", [&](const std::string& name, nn::parameter<cpu>&) { names.push_back(name); });
  CHECK(names == std::vector<std::string>{"aa.query.weight", "aa.query.bias", "aa.key.weight",
                                          "aa.key.bias", "aa.value.weight", "aa.value.bias"});
  testing::require_all_close(layer.key.weight.value, layer.query.weight.value, 0.f, 0.f, "K = Q weight");
  testing::require_all_close(layer.key.bias.value, layer.query.bias.value, 0.f, 0.f, "K = Q bias");
  std::mt19937 rng(6);
  const auto x = testing::random_tensor(s, rng);
  const auto y = layer.forward(x).clone();
  // reference: the projections by hand, the op, plus x
  auto project = [&](const nn::parameter<cpu>& w, const nn::parameter<cpu>& b) {
    host_tensor<float> p(s);
    for (int64_t o = 0; o < 4; ++o)
      for (int64_t i = 0; i < 15; ++i) {
        double acc = b.value[o];
        for (int64_t c = 0; c < 4; ++c) acc += double(w.value[o * 4 + c]) * x[c * 15 + i];
        p[o * 15 + i] = float(acc);
      }
    return p;
  };
  auto expected = loop_reference(2, project(layer.query.weight, layer.query.bias),
                                 project(layer.key.weight, layer.key.bias),
                                 project(layer.value.weight, layer.value.bias));
  for (int64_t i = 0; i < expected.numel(); ++i) expected[i] += x[i];
  testing::require_all_close(y, expected, 1e-5f, 1e-4f, "layer output");
}
