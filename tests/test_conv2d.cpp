#include <cmath>

#include "op_checker.hpp"
#include "segkit/ops/conv2d.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;

namespace {

// Direct convolution straight from the definition, in double.
host_tensor<float> naive_conv2d(const ops::conv2d_params& p, const host_tensor<float>& x,
                                const host_tensor<float>& w, const host_tensor<float>* bias) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t co = w.size(0), cg = w.size(1), kh = w.size(2), kw = w.size(3);
  const int64_t cog = co / p.groups;
  const int64_t ho = (h + 2 * p.pad_h - p.dilation_h * (kh - 1) - 1) / p.stride_h + 1;
  const int64_t wo = (wd + 2 * p.pad_w - p.dilation_w * (kw - 1) - 1) / p.stride_w + 1;
  (void)c;
  host_tensor<float> y({n, co, ho, wo});
  for (int64_t b = 0; b < n; ++b)
    for (int64_t o = 0; o < co; ++o)
      for (int64_t oh = 0; oh < ho; ++oh)
        for (int64_t ow = 0; ow < wo; ++ow) {
          double sum = bias ? (*bias)[o] : 0.0;
          const int64_t group = o / cog;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
                const int64_t iw = ow * p.stride_w - p.pad_w + j * p.dilation_w;
                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                sum += double(x.at(b, group * cg + ci, ih, iw)) * double(w.at(o, ci, i, j));
              }
          y.at(b, o, oh, ow) = static_cast<float>(sum);
        }
  return y;
}

struct conv_config {
  std::string name;
  ops::conv2d_params params;
  shape x, w;
  bool bias;
};

std::vector<conv_config> configs() {
  auto P = [](int64_t s, int64_t pad, int64_t d, int64_t g) {
    ops::conv2d_params p;
    p.stride_h = p.stride_w = s;
    p.pad_h = p.pad_w = pad;
    p.dilation_h = p.dilation_w = d;
    p.groups = g;
    return p;
  };
  ops::conv2d_params asym = P(1, 0, 1, 1);
  asym.stride_h = 2, asym.pad_w = 2, asym.dilation_h = 2;
  return {
      {"3x3 pad 1", P(1, 1, 1, 1), {2, 3, 6, 5}, {4, 3, 3, 3}, true},
      {"3x3 stride 2 pad 1, odd size", P(2, 1, 1, 1), {2, 3, 7, 9}, {5, 3, 3, 3}, true},
      {"3x3 dilation 2 pad 2", P(1, 2, 2, 1), {1, 2, 7, 6}, {3, 2, 3, 3}, false},
      {"groups 2", P(1, 1, 1, 2), {2, 4, 5, 5}, {6, 2, 3, 3}, true},
      {"depthwise 3x3", P(1, 1, 1, 4), {2, 4, 6, 7}, {4, 1, 3, 3}, true},
      {"depthwise stride 2 dilation 2", P(2, 2, 2, 3), {3, 3, 9, 8}, {3, 1, 3, 3}, false},
      {"depthwise multiplier 2 (im2col path)", P(1, 1, 1, 3), {1, 3, 5, 5}, {6, 1, 3, 3}, true},
      {"1x1", P(1, 0, 1, 1), {2, 5, 4, 3}, {3, 5, 1, 1}, true},
      {"1x1 stride 2", P(2, 0, 1, 1), {2, 4, 5, 5}, {3, 4, 1, 1}, false},
      {"1x1 groups 2", P(1, 0, 1, 2), {3, 4, 3, 3}, {2, 2, 1, 1}, true},
      {"5x3 kernel, asymmetric stride/pad/dilation", asym, {2, 2, 9, 6}, {3, 2, 2, 3}, true},
      {"N=1 C=1", P(1, 1, 1, 1), {1, 1, 5, 5}, {1, 1, 3, 3}, true},
      {"kernel equals padded input", P(1, 1, 1, 1), {2, 2, 1, 2}, {2, 2, 3, 3}, false},
  };
}

testing::op_case conv_case(const conv_config& cfg, unsigned seed) {
  std::mt19937 rng(seed);
  testing::op_case test;
  test.name = cfg.name;
  test.inputs = {testing::random_tensor(cfg.x, rng), testing::random_tensor(cfg.w, rng)};
  if (cfg.bias) test.inputs.push_back(testing::random_tensor({cfg.w[0]}, rng));
  const auto p = cfg.params;
  test.forward = [p](const testing::tensors& in) {
    host_tensor<float> y(ops::conv2d_output_shape(p, in[0].shape(), in[1].shape()));
    ops::conv2d_forward(p, in[0], in[1], in.size() > 2 ? &in[2] : nullptr, y);
    return testing::tensors{y};
  };
  test.backward = [p](const testing::tensors& in, const testing::tensors&,
                      const testing::tensors& dout, testing::tensors& din) {
    ops::conv2d_backward(p, in[0], in[1], dout[0], &din[0], &din[1],
                         in.size() > 2 ? &din[2] : nullptr);
  };
  return test;
}

}  // namespace

TEST_CASE("conv2d: forward matches the direct definition") {
  unsigned seed = 100;
  for (const auto& cfg : configs()) {
    INFO(cfg.name);
    std::mt19937 rng(seed++);
    auto x = testing::random_tensor(cfg.x, rng);
    auto w = testing::random_tensor(cfg.w, rng);
    auto b = testing::random_tensor({cfg.w[0]}, rng);
    host_tensor<float> y(ops::conv2d_output_shape(cfg.params, x.shape(), w.shape()));
    ops::conv2d_forward(cfg.params, x, w, cfg.bias ? &b : nullptr, y);
    testing::require_all_close(y, naive_conv2d(cfg.params, x, w, cfg.bias ? &b : nullptr), 1e-5f,
                               1e-5f, cfg.name);
  }
}

TEST_CASE("conv2d: gradients, accumulation and determinism") {
  unsigned seed = 200;
  for (const auto& cfg : configs()) testing::check_op(conv_case(cfg, seed++));
}

TEST_CASE("conv2d: threads over samples and threads inside the GEMM agree") {
  // N=5 runs whole samples per thread; the same samples one at a time (N=1) use the other path.
  std::mt19937 rng(7);
  ops::conv2d_params p;
  p.pad_h = p.pad_w = 1;
  auto x = testing::random_tensor({5, 6, 11, 10}, rng);
  auto w = testing::random_tensor({7, 6, 3, 3}, rng);
  auto dy = testing::random_tensor({5, 7, 11, 10}, rng);
  host_tensor<float> y({5, 7, 11, 10});
  ops::conv2d_forward(p, x, w, nullptr, y);
  auto dx = host_tensor<float>::zeros(x.shape()), dw = host_tensor<float>::zeros(w.shape());
  ops::conv2d_backward(p, x, w, dy, &dx, &dw, nullptr);
  auto dw_sum = host_tensor<float>::zeros(w.shape());
  for (int64_t n = 0; n < 5; ++n) {
    auto xn = x.slice(n, n + 1), dyn = dy.slice(n, n + 1);
    host_tensor<float> yn({1, 7, 11, 10});
    ops::conv2d_forward(p, xn, w, nullptr, yn);
    testing::require_all_close(yn, y.slice(n, n + 1).clone(), 1e-6f, 1e-6f, "forward sample");
    auto dxn = host_tensor<float>::zeros(xn.shape());
    ops::conv2d_backward(p, xn, w, dyn, &dxn, &dw_sum, nullptr);
    testing::require_all_close(dxn, dx.slice(n, n + 1).clone(), 1e-5f, 1e-5f, "dx sample");
  }
  testing::require_all_close(dw_sum, dw, 1e-4f, 1e-4f, "dw summed over samples");
}

TEST_CASE("conv2d: the workspace is grown once, then reused") {
  std::mt19937 rng(8);
  ops::conv2d_params p;
  p.pad_h = p.pad_w = 1;
  auto x = testing::random_tensor({2, 3, 8, 8}, rng);
  auto w = testing::random_tensor({4, 3, 3, 3}, rng);
  host_tensor<float> y({2, 4, 8, 8}), dx = host_tensor<float>::zeros(x.shape()),
                                      dw = host_tensor<float>::zeros(w.shape());
  workspace<cpu> ws;
  ops::conv2d_forward(p, x, w, nullptr, y, &ws);
  ops::conv2d_backward(p, x, w, y, &dx, &dw, nullptr, &ws);
  const auto before = allocations<cpu>().total.load();
  for (int i = 0; i < 3; ++i) {
    ops::conv2d_forward(p, x, w, nullptr, y, &ws);
    ops::conv2d_backward(p, x, w, y, &dx, &dw, nullptr, &ws);
  }
  CHECK(allocations<cpu>().total.load() == before);
}

TEST_CASE("conv2d: bad inputs name the values and shapes") {
  host_tensor<float> x({2, 4, 5, 5}), w({6, 2, 3, 3}), y({2, 6, 5, 5});
  ops::conv2d_params p;
  p.pad_h = p.pad_w = 1;
  p.groups = 3;  // 4 channels are not divisible by 3
  CHECK_THROWS_WITH(ops::conv2d_forward(p, x, w, nullptr, y),
                    Catch::Contains("groups=3") && Catch::Contains("[2, 4, 5, 5]") &&
                        Catch::Contains("[6, 2, 3, 3]"));
  p.groups = 1;  // weight dimension 1 must be 4
  CHECK_THROWS_WITH(ops::conv2d_forward(p, x, w, nullptr, y),
                    Catch::Contains("[6, 2, 3, 3]") && Catch::Contains("dimension 1 = 4"));
  host_tensor<float> w_big({6, 4, 9, 9});
  CHECK_THROWS_WITH(ops::conv2d_forward(p, x, w_big, nullptr, y),
                    Catch::Contains("9x9") && Catch::Contains("7x7") &&
                        Catch::Contains("[2, 4, 5, 5]"));
  ops::conv2d_params bad_stride;
  bad_stride.stride_w = 0;
  host_tensor<float> w_ok({6, 4, 3, 3});
  CHECK_THROWS_WITH(ops::conv2d_forward(bad_stride, x, w_ok, nullptr, y),
                    Catch::Contains("stride (1, 0)"));
  bad_stride.stride_w = -2;
  CHECK_THROWS_AS(ops::conv2d_output_shape(bad_stride, x.shape(), w_ok.shape()), value_error);
  ops::conv2d_params bad_pad;
  bad_pad.pad_h = -1;
  CHECK_THROWS_AS(ops::conv2d_forward(bad_pad, x, w_ok, nullptr, y), value_error);
  host_tensor<float> y_wrong({2, 6, 3, 3});
  CHECK_THROWS_WITH(ops::conv2d_forward(p, x, w_ok, nullptr, y_wrong),
                    Catch::Contains("[2, 6, 3, 3]") && Catch::Contains("[2, 6, 5, 5]"));
  host_tensor<float> bias({5});
  CHECK_THROWS_WITH(ops::conv2d_forward(p, x, w_ok, &bias, y),
                    Catch::Contains("bias") && Catch::Contains("[5]") && Catch::Contains("[6]"));
  host_tensor<float> x3({4, 5, 5});
  CHECK_THROWS_WITH(ops::conv2d_forward(p, x3, w_ok, nullptr, y), Catch::Contains("[4, 5, 5]"));
  host_tensor<float> dy({2, 6, 5, 5}), dw_wrong({6, 4, 1, 1});
  CHECK_THROWS_WITH(ops::conv2d_backward(p, x, w_ok, dy, nullptr, &dw_wrong, nullptr),
                    Catch::Contains("[6, 4, 1, 1]") && Catch::Contains("[6, 4, 3, 3]"));
  CHECK(ops::conv2d_output_shape(p, x.shape(), w_ok.shape()) == shape{2, 6, 5, 5});
}

TEST_CASE("conv2d: PyTorch parity (tests/golden/conv2d.safetensors from gen_conv2d.py)") {
  const auto file = tensor_file::load(SEGKIT_GOLDEN_DIR "/conv2d.safetensors");
  int cases = 0;
  for (const std::string& name : file.names()) {
    if (name.size() < 2 || name.compare(name.size() - 2, 2, ".x") != 0) continue;
    const std::string k = name.substr(0, name.size() - 2);
    INFO("golden case " << k);
    const auto prm = file.get<int32_t>(k + ".params");
    REQUIRE(prm.numel() == 7);
    ops::conv2d_params p;
    p.stride_h = prm[0], p.stride_w = prm[1], p.pad_h = prm[2], p.pad_w = prm[3];
    p.dilation_h = prm[4], p.dilation_w = prm[5], p.groups = prm[6];
    const auto x = file.get<float>(k + ".x");
    const auto w = file.get<float>(k + ".w");
    const bool has_bias = file.contains(k + ".b");
    host_tensor<float> b = has_bias ? file.get<float>(k + ".b") : host_tensor<float>();
    const auto y_ref = file.get<float>(k + ".y");
    REQUIRE(ops::conv2d_output_shape(p, x.shape(), w.shape()) == y_ref.shape());
    host_tensor<float> y(y_ref.shape());
    ops::conv2d_forward(p, x, w, has_bias ? &b : nullptr, y);
    testing::require_all_close(y, y_ref, 1e-4f, 1e-4f, k + ": y");
    const auto dy = file.get<float>(k + ".dy");
    auto dx = host_tensor<float>::zeros(x.shape()), dw = host_tensor<float>::zeros(w.shape());
    auto db = host_tensor<float>::zeros({w.size(0)});
    ops::conv2d_backward(p, x, w, dy, &dx, &dw, has_bias ? &db : nullptr);
    testing::require_all_close(dx, file.get<float>(k + ".dx"), 1e-4f, 1e-4f, k + ": dx");
    testing::require_all_close(dw, file.get<float>(k + ".dw"), 1e-4f, 1e-4f, k + ": dw");
    if (has_bias)
      testing::require_all_close(db, file.get<float>(k + ".db"), 1e-4f, 1e-4f, k + ": db");
    ++cases;
  }
  CHECK(cases == 7);
}
