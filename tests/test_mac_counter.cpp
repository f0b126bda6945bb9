// MAC counter: every hooked op's count against its formula written out here from the shapes,
// scopes (zero outside, nesting, isolation), a small network's total against the sum of its
// layers, and ResNet-18 at 224 x 224 against torchvision's published 1.814 GMACs.
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "op_checker.hpp"
#include "segkit/nn/network.hpp"
#include "segkit/ops/attention2d.hpp"
#include "segkit/ops/axial_attention.hpp"
#include "segkit/ops/conv2d.hpp"
#include "segkit/ops/matmul.hpp"
#include "segkit/ops/ocr_gather.hpp"
#include "segkit/ops/pyramid_sampling.hpp"
#include "segkit/tensor/mac_counter.hpp"

#if __has_include("segkit/models/resnet.hpp")
#include "segkit/models/resnet.hpp"
#define SEGKIT_TEST_HAVE_RESNET 1
#endif

using namespace segkit;

namespace {

// PyTorch's output size of a convolution.
int64_t out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
  return (in + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
}

struct conv_case {
  int64_t n, cin, h, w, cout, kh, kw;
  ops::conv2d_params p;
};

// Runs one conv2d forward under a scope; returns its MACs.
int64_t conv_macs_measured(const conv_case& c) {
  std::mt19937 rng(3);
  const auto x = testing::random_tensor({c.n, c.cin, c.h, c.w}, rng);
  const auto w = testing::random_tensor({c.cout, c.cin / c.p.groups, c.kh, c.kw}, rng);
  host_tensor<float> y(ops::conv2d_output_shape(c.p, x.shape(), w.shape()));
  mac_count_scope scope;
  ops::conv2d_forward(c.p, x, w, nullptr, y);
  return scope.macs();
}

int64_t conv_macs_formula(const conv_case& c) {
  const int64_t ho = out_size(c.h, c.kh, c.p.stride_h, c.p.pad_h, c.p.dilation_h);
  const int64_t wo = out_size(c.w, c.kw, c.p.stride_w, c.p.pad_w, c.p.dilation_w);
  return c.n * c.cout * ho * wo * (c.cin / c.p.groups) * c.kh * c.kw;
}

}  // namespace

TEST_CASE("mac counter: conv2d counts N Cout Ho Wo (Cin/groups) kh kw") {
  std::vector<conv_case> cases = {
      {2, 3, 9, 11, 5, 3, 3, {1, 1, 1, 1, 1, 1, 1}},       // same padding
      {1, 4, 13, 10, 6, 3, 5, {2, 3, 1, 2, 1, 1, 1}},      // stride (2, 3), rectangular kernel
      {2, 4, 15, 15, 8, 3, 3, {1, 1, 2, 2, 2, 2, 1}},      // dilation 2
      {1, 6, 8, 7, 9, 3, 3, {1, 1, 1, 1, 1, 1, 3}},        // groups 3
      {3, 5, 6, 6, 5, 3, 3, {2, 2, 1, 1, 1, 1, 5}},        // depthwise, stride 2
      {1, 8, 5, 5, 4, 1, 1, {1, 1, 0, 0, 1, 1, 1}},        // 1x1
      {1, 1, 1, 1, 1, 1, 1, {1, 1, 0, 0, 1, 1, 1}},        // N = C = 1
  };
  for (const auto& c : cases) {
    INFO("conv Cin " << c.cin << " Cout " << c.cout << " k " << c.kh << "x" << c.kw << " stride "
                     << c.p.stride_h << "," << c.p.stride_w << " dilation " << c.p.dilation_h
                     << " groups " << c.p.groups);
    CHECK(conv_macs_measured(c) == conv_macs_formula(c));
  }
  // One worked number: ResNet's stem, 3 -> 64, 7x7 stride 2 pad 3 at 224: 112*112*64*3*49.
  CHECK(conv_macs_formula({1, 3, 224, 224, 64, 7, 7, {2, 2, 3, 3, 1, 1, 1}}) == 118013952);
}

TEST_CASE("mac counter: nothing is counted outside a scope; scopes nest; isolated scopes hide") {
  const conv_case c{1, 2, 6, 6, 3, 3, 3, {1, 1, 1, 1, 1, 1, 1}};
  const int64_t one = conv_macs_formula(c);
  CHECK_FALSE(mac_counting());
  {
    // ops run with no scope alive: a later scope starts from zero
    std::mt19937 rng(1);
    const auto x = testing::random_tensor({1, 2, 6, 6}, rng);
    const auto w = testing::random_tensor({3, 2, 3, 3}, rng);
    host_tensor<float> y({1, 3, 6, 6});
    ops::conv2d_forward(c.p, x, w, nullptr, y);
    add_macs(1000);
    mac_count_scope scope;
    CHECK(mac_counting());
    CHECK(scope.macs() == 0);
  }
  CHECK_FALSE(mac_counting());
  {
    mac_count_scope outer;
    CHECK(conv_macs_measured(c) == one);  // an inner scope
    CHECK(outer.macs() == one);           // the outer one saw it too
    {
      mac_count_scope hidden(mac_count_scope::isolated);
      add_macs(77);
      CHECK(hidden.macs() == 77);
    }
    CHECK(outer.macs() == one);  // the isolated scope's count is gone
    outer.reset();
    CHECK(outer.macs() == 0);
  }
}

TEST_CASE("mac counter: matmul counts batch M N K, broadcast batch included") {
  std::mt19937 rng(5);
  const auto check = [&](const shape& sa, const shape& sb, ops::matmul_params p, int64_t expected) {
    const auto a = testing::random_tensor(sa, rng);
    const auto b = testing::random_tensor(sb, rng);
    host_tensor<float> c(ops::matmul_output_shape(p, sa, sb));
    mac_count_scope scope;
    ops::matmul_forward(p, a, b, c);
    INFO(sa.to_string() << " x " << sb.to_string());
    CHECK(scope.macs() == expected);
  };
  check({5, 7}, {7, 3}, {}, 5 * 3 * 7);
  check({4, 5, 7}, {7, 3}, {}, 4 * 5 * 3 * 7);       // b broadcast
  check({6, 5}, {2, 6, 3}, {true, false}, 2 * 5 * 3 * 6);  // a broadcast and transposed
  check({2, 5, 7}, {2, 3, 7}, {false, true}, 2 * 5 * 3 * 7);
}

TEST_CASE("mac counter: attention2d counts N L S (d + d_v); ocr gather N K C HW; pyramid") {
  std::mt19937 rng(7);
  {
    const int64_t n = 2, d = 8, dv = 6, h = 5, w = 7, s = 11;
    const auto q = testing::random_tensor({n, d, h, w}, rng);
    const auto k = testing::random_tensor({n, d, s}, rng);
    const auto v = testing::random_tensor({n, dv, s}, rng);
    for (int heads : {1, 2}) {
      const ops::attention2d_params p{heads, 0.5f};
      host_tensor<float> o({n, dv, h, w}), lse({n, heads, h * w});
      mac_count_scope scope;
      ops::attention2d_forward(p, q, k, v, o, lse);
      CHECK(scope.macs() == n * (h * w) * s * (d + dv));  // heads split d, not the work
    }
  }
  {
    const int64_t n = 2, kk = 3, c = 5, h = 4, w = 6;
    const auto regions = testing::random_tensor({n, kk, h, w}, rng);
    const auto features = testing::random_tensor({n, c, h, w}, rng);
    host_tensor<float> probs({n, kk, h * w}), y({n, kk, c});
    mac_count_scope scope;
    ops::ocr_gather_forward(regions, features, probs, y);
    CHECK(scope.macs() == n * kk * c * h * w);
  }
  {
    const ops::pyramid_sampling_params p{{1, 3, 6, 8}};
    const auto x = testing::random_tensor({2, 3, 12, 10}, rng);
    host_tensor<float> y(ops::pyramid_sampling_output_shape(p, x.shape()));
    mac_count_scope scope;
    ops::pyramid_sampling_forward(p, x, y);
    CHECK(scope.macs() == 4 * 2 * 3 * 12 * 10);  // one per input element per pooled size
  }
}

TEST_CASE("mac counter: a network's total is the sum of its layers; cost() and count_macs agree") {
  // conv 3->8 3x3 stride 2 pad 1 (bias), BN, ReLU, max pool 2, conv 8->4 1x1, dropout, upsample
  using net_t = nn::network<3, nn::seq<nn::conv<8, 3, 2, 1, 1, 1, true>, nn::batch_norm, nn::relu,
                                       nn::max_pool<2>, nn::conv<4, 1>, nn::dropout<10>,
                                       nn::upsample<2>>>;
  net_t net(3);
  const shape input{2, 3, 17, 22};
  const int64_t h1 = out_size(17, 3, 2, 1, 1), w1 = out_size(22, 3, 2, 1, 1);  // 9, 11
  const int64_t h2 = h1 / 2, w2 = w1 / 2;                                        // 4, 5
  const int64_t expected = 2 * 8 * h1 * w1 * 3 * 9 + 2 * 4 * h2 * w2 * 8 * 1;
  {
    mac_count_scope caller;  // setup's warm-up forward and backward must not leak into it
    net.setup(input);
    CHECK(caller.macs() == 0);
  }
  CHECK(net.cost().macs == expected);
  CHECK(net.cost().parameters == net.parameter_count());
  CHECK(net.cost().parameters == 8 * 3 * 9 + 8 + 2 * 8 + 4 * 8);
  REQUIRE(net.training());
  CHECK(count_macs(net, input) == expected);
  CHECK(net.training());  // restored
  net.eval();
  CHECK(count_macs(net, host_tensor<float>::zeros(input)) == expected);
  CHECK_FALSE(net.training());
  // another shape: count_macs sets the net up for it
  const shape bigger{1, 3, 32, 32};
  CHECK(count_macs(net, bigger) == 1 * 8 * 16 * 16 * 27 + 1 * 4 * 8 * 8 * 8);
  CHECK(net.input_shape() == bigger);
  CHECK(net.cost().macs == 1 * 8 * 16 * 16 * 27 + 1 * 4 * 8 * 8 * 8);
}

TEST_CASE("mac counter: format_cost") {
  CHECK(format_cost({11689512, 1814073344}, shape{1, 3, 224, 224}) ==
        "11.69 M parameters, 1.81 GMACs (3.63 GFLOPs) per forward at [1, 3, 224, 224]");
  CHECK(format_cost({950, 12000}, shape{1, 3, 8, 8}) ==
        "950 parameters, 12.00 KMACs (24.00 KFLOPs) per forward at [1, 3, 8, 8]");
}

// torchvision's ResNet-18 at 224 x 224: 1.814 GMACs = 1,813,561,344 in its 20 convolutions
// + 512,000 in fc (what torchvision's table and fvcore report). Run here as a table of
// convolutions through the hooked ops (plus fc as a matmul), independent of models/.
TEST_CASE("mac counter: ResNet-18 at 224 x 224 is torchvision's 1.814 GMACs") {
  struct layer { int64_t cin, cout, k, stride, pad, h; };
  std::vector<layer> layers{{3, 64, 7, 2, 3, 224}};
  int64_t h = 56, cin = 64;  // after the stem and the 3x3 stride-2 max pool
  for (int64_t cout : {64, 128, 256, 512}) {
    for (int block = 0; block < 2; ++block) {
      const int64_t stride = block == 0 && cout != 64 ? 2 : 1;
      const int64_t ho = out_size(h, 3, stride, 1, 1);
      layers.push_back({cin, cout, 3, stride, 1, h});
      layers.push_back({cout, cout, 3, 1, 1, ho});
      if (stride != 1) layers.push_back({cin, cout, 1, stride, 0, h});  // downsample
      cin = cout;
      h = ho;
    }
  }
  REQUIRE(layers.size() == 20);
  mac_count_scope scope;
  for (const auto& l : layers) {
    const ops::conv2d_params p{l.stride, l.stride, l.pad, l.pad, 1, 1, 1};
    const auto x = host_tensor<float>::zeros({1, l.cin, l.h, l.h});
    const auto w = host_tensor<float>::zeros({l.cout, l.cin, l.k, l.k});
    host_tensor<float> y(ops::conv2d_output_shape(p, x.shape(), w.shape()));
    ops::conv2d_forward(p, x, w, nullptr, y);
  }
  const int64_t convs = scope.macs();
  CHECK(convs == 1813561344);
  host_tensor<float> pooled = host_tensor<float>::zeros({1, 512}), fc_w({512, 1000}), logits({1, 1000});
  fc_w.zero();
  ops::matmul_forward({}, pooled, fc_w, logits);
  CHECK(scope.macs() == 1814073344);
}

#ifdef SEGKIT_TEST_HAVE_RESNET
// models::resnet<18> has no fc (a backbone): its 20 convolutions only, 1.8136 GMACs.
TEST_CASE("mac counter: models::resnet<18> at 224 x 224 is 1.81-1.82 GMACs (convolutions)") {
  models::resnet<18, 100, 32> net;
  const int64_t macs = count_macs(net, shape{1, 3, 224, 224});
  CHECK(macs == 1813561344);
  CHECK(macs >= 1810000000);
  CHECK(macs <= 1820000000);
}
#endif

TEST_CASE("mac counter: axial attention counts 2 N C H W (H + W)") {
  std::mt19937 rng(11);
  for (int heads : {1, 2, 4}) {
    const int64_t n = 2, c = 8, h = 5, w = 7;
    const shape s{n, c, h, w};
    const auto q = testing::random_tensor(s, rng), k = testing::random_tensor(s, rng),
               v = testing::random_tensor(s, rng);
    const ops::axial_attention_params p{heads};
    host_tensor<float> out(s), mid(s), stats(ops::axial_attention_stats_shape(s, p));
    mac_count_scope scope;
    ops::axial_attention_forward(p, q, k, v, out, mid, stats);
    // column pass: for each (n, w), H x H scores over C channels and H x H weights of C values
    const int64_t column = n * w * (h * h * c + h * h * c);
    const int64_t row = n * h * (w * w * c + w * w * c);
    INFO("heads " << heads);
    CHECK(scope.macs() == column + row);
  }
}
