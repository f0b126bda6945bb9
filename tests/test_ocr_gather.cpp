#include <string>

#include "layer_checker.hpp"
#include "op_checker.hpp"
#include "segkit/nn/ocr_gather_layer.hpp"
#include "segkit/ops/matmul.hpp"
#include "segkit/ops/ocr_gather.hpp"
#include "segkit/ops/softmax.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;

namespace {

struct gather_result {
  host_tensor<float> probabilities, y;
};

gather_result run_gather(const host_tensor<float>& regions, const host_tensor<float>& features) {
  gather_result r{host_tensor<float>(ops::ocr_gather_probabilities_shape(regions.shape())),
                  host_tensor<float>(ops::ocr_gather_output_shape(regions.shape(), features.shape()))};
  ops::ocr_gather_forward(regions, features, r.probabilities, r.y);
  return r;
}

// Inputs: 0 = regions [N, K, H, W], 1 = features [N, C, H, W].
testing::op_case gather_case(const std::string& name, int64_t n, int64_t k, int64_t c, int64_t h,
                             int64_t w) {
  testing::op_case test;
  test.name = "ocr_gather " + name;
  std::mt19937 rng(21);
  test.inputs = {testing::random_tensor({n, k, h, w}, rng, -2.f, 2.f),
                 testing::random_tensor({n, c, h, w}, rng)};
  test.forward = [](const testing::tensors& in) {
    return testing::tensors{run_gather(in[0], in[1]).y};
  };
  test.backward = [](const testing::tensors& in, const testing::tensors&,
                     const testing::tensors& dout, testing::tensors& din) {
    const auto r = run_gather(in[0], in[1]);
    ops::ocr_gather_backward(in[1], r.probabilities, dout[0], &din[0], &din[1]);
  };
  test.max_checked_elements = 48;
  return test;
}

struct dims {
  const char* name;
  int64_t n, k, c, h, w;
};
const dims cases[] = {
    {"N2 K5 C4 6x7", 2, 5, 4, 6, 7},
    {"K1", 1, 1, 3, 4, 5},   // one region: the softmax is over pixels, not regions
    {"C1", 2, 3, 1, 5, 3},
    {"1x1 plane", 2, 3, 4, 1, 1},
    {"odd 7x5", 1, 4, 6, 7, 5},
};

// The naive composition: ops::softmax over a [N, K, HW] view, then ops::matmul with the
// features viewed [N, C, HW] and used transposed.
gather_result naive_forward(const host_tensor<float>& regions, const host_tensor<float>& features) {
  const int64_t n = regions.size(0), k = regions.size(1), c = features.size(1);
  const int64_t hw = regions.size(2) * regions.size(3);
  gather_result r{host_tensor<float>({n, k, hw}), host_tensor<float>({n, k, c})};
  ops::softmax_forward({-1}, regions.view({n, k, hw}), r.probabilities);
  ops::matmul_forward({false, true}, r.probabilities, features.view({n, c, hw}), r.y);
  return r;
}

}  // namespace

TEST_CASE("ocr gather: shapes") {
  CHECK(ops::ocr_gather_output_shape({2, 19, 32, 16}, {2, 512, 32, 16}) == shape{2, 19, 512});
  CHECK(ops::ocr_gather_probabilities_shape({2, 19, 32, 16}) == shape{2, 19, 512});
}

TEST_CASE("ocr gather: gradients, accumulation and determinism") {
  for (const auto& d : cases) testing::check_op(gather_case(d.name, d.n, d.k, d.c, d.h, d.w));
}

TEST_CASE("ocr gather: equals softmax over a reshaped view plus matmul") {
  for (const auto& d : cases) {
    INFO(d.name);
    std::mt19937 rng(31);
    const auto regions = testing::random_tensor({d.n, d.k, d.h, d.w}, rng, -4.f, 4.f);
    const auto features = testing::random_tensor({d.n, d.c, d.h, d.w}, rng);
    const auto got = run_gather(regions, features);
    const auto want = naive_forward(regions, features);
    testing::require_all_close(got.probabilities, want.probabilities, 1e-7f, 1e-5f, "probabilities");
    testing::require_all_close(got.y, want.y, 1e-6f, 1e-5f, "y");

    const int64_t hw = d.h * d.w;
    const auto dy = testing::random_tensor(got.y.shape(), rng);
    auto dr = testing::random_tensor(regions.shape(), rng), df = testing::random_tensor(features.shape(), rng);
    auto dr_naive = dr.clone(), df_naive = df.clone();
    ops::ocr_gather_backward(features, got.probabilities, dy, &dr, &df);
    // naive: dP = dy F (matmul backward into a zeroed dP), dF, then the softmax backward.
    auto dp = host_tensor<float>::zeros({d.n, d.k, hw});
    auto df_view = df_naive.view({d.n, d.c, hw});
    ops::matmul_backward({false, true}, want.probabilities, features.view({d.n, d.c, hw}), dy, &dp,
                         &df_view);
    auto dr_view = dr_naive.view({d.n, d.k, hw});
    ops::softmax_backward({-1}, want.probabilities, dp, dr_view);
    testing::require_all_close(dr, dr_naive, 1e-6f, 1e-5f, "d_regions");
    testing::require_all_close(df, df_naive, 1e-6f, 1e-5f, "d_features");
  }
}

TEST_CASE("ocr gather: gradients can be skipped one at a time") {
  std::mt19937 rng(41);
  const auto regions = testing::random_tensor({2, 3, 4, 5}, rng);
  const auto features = testing::random_tensor({2, 6, 4, 5}, rng);
  const auto r = run_gather(regions, features);
  const auto dy = testing::random_tensor(r.y.shape(), rng);
  auto dr_both = host_tensor<float>::zeros(regions.shape()), df_both = host_tensor<float>::zeros(features.shape());
  ops::ocr_gather_backward(features, r.probabilities, dy, &dr_both, &df_both);
  auto dr = host_tensor<float>::zeros(regions.shape());
  ops::ocr_gather_backward(features, r.probabilities, dy, &dr, nullptr);
  auto df = host_tensor<float>::zeros(features.shape());
  ops::ocr_gather_backward(features, r.probabilities, dy, nullptr, &df);
  CHECK(to_vector(dr) == to_vector(dr_both));
  CHECK(to_vector(df) == to_vector(df_both));
}

TEST_CASE("ocr gather: large logits stay finite (the softmax subtracts the maximum)") {
  auto regions = host_tensor<float>({1, 2, 2, 2});
  for (int64_t i = 0; i < regions.numel(); ++i) regions[i] = 1000.f + float(i % 4);
  auto features = host_tensor<float>({1, 1, 2, 2});
  for (int64_t i = 0; i < 4; ++i) features[i] = float(i);
  const auto r = run_gather(regions, features);
  // weights e^{0..3} / sum: expected value sum_i i e^i / sum_i e^i
  double num = 0, den = 0;
  for (int i = 0; i < 4; ++i) num += i * std::exp(double(i)), den += std::exp(double(i));
  CHECK(r.y[0] == Approx(num / den).epsilon(1e-5));
  CHECK(r.y[1] == Approx(num / den).epsilon(1e-5));
}

TEST_CASE("ocr gather: matches PyTorch's SpatialGather_Module (tests/golden/ocr_gather.safetensors)") {
  const auto file = tensor_file::load(SEGKIT_GOLDEN_DIR "/ocr_gather.safetensors");
  int count = 0;
  const std::string suffix = ".regions";
  for (const std::string& name : file.names()) {
    if (name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string k = name.substr(0, name.size() - suffix.size());
    INFO("golden case " << k);
    const auto regions = file.get<float>(k + ".regions");
    const auto features = file.get<float>(k + ".features");
    const auto r = run_gather(regions, features);
    testing::require_all_close(r.y, file.get<float>(k + ".y"), 1e-5f, 1e-4f, k + ": y");
    auto dr = host_tensor<float>::zeros(regions.shape()), df = host_tensor<float>::zeros(features.shape());
    ops::ocr_gather_backward(features, r.probabilities, file.get<float>(k + ".dy"), &dr, &df);
    testing::require_all_close(dr, file.get<float>(k + ".d_regions"), 1e-5f, 1e-4f, k + ": d_regions");
    testing::require_all_close(df, file.get<float>(k + ".d_features"), 1e-5f, 1e-4f, k + ": d_features");
    ++count;
  }
  CHECK(count == 4);
}

TEST_CASE("ocr gather: bad inputs name both shapes") {
  host_tensor<float> regions({2, 3, 4, 5}), features({2, 6, 4, 5}), probs({2, 3, 20}), y({2, 3, 6});
  host_tensor<float> features_bad_hw({2, 6, 5, 4});
  CHECK_THROWS_WITH(ops::ocr_gather_forward(regions, features_bad_hw, probs, y),
                    Catch::Contains("ocr_gather_forward") && Catch::Contains("[2, 3, 4, 5]") &&
                        Catch::Contains("[2, 6, 5, 4]"));
  host_tensor<float> features_bad_n({1, 6, 4, 5});
  CHECK_THROWS_AS(ops::ocr_gather_forward(regions, features_bad_n, probs, y), shape_error);
  CHECK_THROWS_WITH(ops::ocr_gather_output_shape({2, 3, 4, 5}, {1, 6, 4, 5}),
                    Catch::Contains("[2, 3, 4, 5]") && Catch::Contains("[1, 6, 4, 5]"));
  host_tensor<float> y_bad({2, 6, 3});
  CHECK_THROWS_WITH(ops::ocr_gather_forward(regions, features, probs, y_bad),
                    Catch::Contains("[2, 6, 3]") && Catch::Contains("[2, 3, 6]"));
  host_tensor<float> probs_bad({2, 3, 19});
  CHECK_THROWS_WITH(ops::ocr_gather_forward(regions, features, probs_bad, y),
                    Catch::Contains("[2, 3, 19]") && Catch::Contains("[2, 3, 20]"));
  host_tensor<float> dy_bad({2, 3, 7});
  CHECK_THROWS_WITH(ops::ocr_gather_backward(features, probs, dy_bad, nullptr, &features),
                    Catch::Contains("ocr_gather_backward") && Catch::Contains("[2, 3, 7]"));
  host_tensor<float> dr_bad({2, 3, 5, 4});
  CHECK_THROWS_WITH(ops::ocr_gather_backward(features, probs, y, &dr_bad, nullptr),
                    Catch::Contains("[2, 3, 5, 4]") && Catch::Contains("[2, 3, 4, 5]"));
  host_tensor<float> regions_rank3({2, 3, 20});
  CHECK_THROWS_AS(ops::ocr_gather_forward(regions_rank3, features, probs, y), shape_error);
}

TEST_CASE("ocr gather layer: merge<features, regions, ocr_gather> gives [N, C_f, K, 1]") {
  // features = x itself (4 channels), regions = a 1x1 conv to K = 3 logits.
  using gather = nn::merge<nn::identity, nn::conv<3, 1>, nn::ocr_gather>;
  using layer_type = nn::bind<gather, 4, true, cpu>;
  static_assert(layer_type::out_channels == 4);
  layer_type layer;
  nn::setup_context<cpu> context;
  std::mt19937_64 init(5);
  layer.initialize(init);
  CHECK(layer.setup({2, 4, 5, 6}, context) == shape{2, 4, 3, 1});
  // The layer's output is the op's [N, K, C] transposed.
  std::mt19937 rng(8);
  const auto x = testing::random_tensor({2, 4, 5, 6}, rng);
  const auto& y = layer.forward(x);
  host_tensor<float> regions({2, 3, 5, 6});
  ops::conv2d_forward(layer.right().params(), x, layer.right().weight.value, nullptr, regions);
  const auto want = run_gather(regions, x);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t k = 0; k < 3; ++k)
      for (int64_t c = 0; c < 4; ++c) CHECK(y[(n * 4 + c) * 3 + k] == want.y[(n * 3 + k) * 4 + c]);

  testing::check_op(testing::layer_case<gather, 4>("merge<identity, conv1x1, ocr_gather>", {2, 4, 5, 6}));
  // Features from a conv too, so both sides carry parameter gradients.
  testing::check_op(testing::layer_case<nn::merge<nn::conv<5, 1>, nn::conv<2, 1>, nn::ocr_gather>, 3>(
      "merge<conv1x1, conv1x1, ocr_gather>", {1, 3, 4, 3}));
}
