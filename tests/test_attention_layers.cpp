// The attention layers of the static graph (nn/attention_layers.hpp): gradients of the input
// and of every projection parameter by finite differences, parameter names, the equal Q/K
// initialisation of the CAE, and the layer output against the op on explicitly projected
// features.
#include <set>

#include "layer_checker.hpp"
#include "segkit/nn/attention_layers.hpp"
#include "segkit/nn/branches.hpp"
#include "segkit/nn/merge.hpp"

using namespace segkit;

namespace {
// SaF-style: queries from the feature map, keys/values from a pooled 3x3 context (S = 9).
using context_attention =
    nn::merge<nn::identity, nn::adaptive_avg_pool<3>, nn::attention2d_op<4, 6, 2>>;
using cae = nn::self_attention<4, 5>;  // Dk 4, Dv = C = 5, no scaling, residual
using plain_self = nn::self_attention<6, 3, 3, nn::attention_scale::inverse_sqrt, false>;

template <class Layer>
std::vector<std::string> names_of(Layer& layer) {
  std::vector<std::string> names;
  layer.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>&) { names.push_back(name); });
  return names;
}
}  // namespace

TEST_CASE("attention layers: finite-difference gradients of input and parameters") {
  auto a = testing::layer_case<context_attention, 5>("merge(identity, pool3, attention2d_op)",
                                                     {2, 5, 4, 3});
  a.step = 3e-3f;
  testing::check_op(a);
  auto b = testing::layer_case<cae, 5>("self_attention (CAE, residual)", {1, 5, 3, 4});
  b.step = 3e-3f;
  testing::check_op(b);
  auto c = testing::layer_case<plain_self, 4>("self_attention 3 heads, scaled", {2, 4, 2, 3});
  c.step = 3e-3f;
  testing::check_op(c);
}

TEST_CASE("attention layers: PyTorch parameter names, equal Q/K at initialisation") {
  nn::bind<cae, 5, true, cpu> layer;
  const auto names = names_of(layer);
  const std::vector<std::string> expected{"query.weight", "query.bias", "key.weight",
                                          "key.bias",     "value.weight", "value.bias"};
  CHECK(names == expected);
  std::mt19937_64 rng(3);
  layer.initialize(rng);
  std::vector<nn::parameter<cpu>*> params;
  layer.visit_parameters("", [&](const std::string&, nn::parameter<cpu>& p) { params.push_back(&p); });
  REQUIRE(params.size() == 6);
  testing::require_all_close(params[2]->value, params[0]->value, 0.f, 0.f, "key.weight == query.weight");
  testing::require_all_close(params[3]->value, params[1]->value, 0.f, 0.f, "key.bias == query.bias");
  bool nonzero = false;
  for (int64_t i = 0; i < params[0]->value.numel(); ++i) nonzero |= params[0]->value[i] != 0.f;
  CHECK(nonzero);

  nn::bind<context_attention, 5, true, cpu> merged;
  const auto merged_names = names_of(merged);
  CHECK(merged_names == std::vector<std::string>{"op.query.weight", "op.query.bias",
                                                 "op.key.weight", "op.key.bias",
                                                 "op.value.weight", "op.value.bias"});
}

TEST_CASE("attention layers: self_attention equals the op on projected features plus input") {
  nn::bind<cae, 5, true, cpu> layer;
  nn::setup_context<cpu> context;
  std::mt19937_64 init(7);
  layer.initialize(init);
  const shape in{2, 5, 3, 3};
  REQUIRE(layer.setup(in, context) == in);
  std::mt19937 rng(8);
  const auto x = testing::random_tensor(in, rng);
  const auto y = layer.forward(x).clone();
  std::vector<nn::parameter<cpu>*> p;
  layer.visit_parameters("", [&](const std::string&, nn::parameter<cpu>& param) { p.push_back(&param); });
  // 1x1 projections by hand: out[n, o, i] = b[o] + sum_c w[o, c] x[n, c, i]
  auto project = [&](const nn::parameter<cpu>& w, const nn::parameter<cpu>& b) {
    const int64_t out = w.shape()[0];
    host_tensor<float> r({2, out, 9});
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < 9; ++i) {
          double s = b.value[o];
          for (int64_t c = 0; c < 5; ++c) s += double(w.value[o * 5 + c]) * x[(n * 5 + c) * 9 + i];
          r[(n * out + o) * 9 + i] = float(s);
        }
    return r;
  };
  const auto q = project(*p[0], *p[1]), k = project(*p[2], *p[3]), v = project(*p[4], *p[5]);
  host_tensor<float> o({2, 5, 9}), lse({2, 1, 9});
  ops::attention2d_forward({1, 1.f}, q, k, v, o, lse);
  for (int64_t i = 0; i < o.numel(); ++i) o[i] += x[i];
  testing::require_all_close(y.view({2, 5, 9}), o, 1e-5f, 1e-4f, "layer vs op");
}
