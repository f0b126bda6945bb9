#include <string>
#include <vector>

#include "layer_checker.hpp"
#include "op_checker.hpp"
#include "segkit/nn/pyramid_sampling_layer.hpp"
#include "segkit/ops/pooling.hpp"
#include "segkit/ops/pyramid_sampling.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;
using ops::pyramid_sampling_params;

namespace {

std::string describe(const shape& x, const std::vector<int64_t>& sizes) {
  std::string text = x.to_string() + " sizes {";
  for (size_t i = 0; i < sizes.size(); ++i) text += (i ? "," : "") + std::to_string(sizes[i]);
  return text + "}";
}

// The naive composition: one adaptive_avg_pool2d per size, copied into the concatenation.
host_tensor<float> naive_forward(const pyramid_sampling_params& p, const host_tensor<float>& x) {
  const int64_t planes = x.size(0) * x.size(1), positions = ops::pyramid_sampling_positions(p);
  host_tensor<float> y({x.size(0), x.size(1), positions});
  int64_t offset = 0;
  for (int64_t n : p.sizes) {
    host_tensor<float> pooled({x.size(0), x.size(1), n, n});
    ops::adaptive_avg_pool2d_forward(x, pooled);
    for (int64_t q = 0; q < planes; ++q)
      for (int64_t i = 0; i < n * n; ++i) y[q * positions + offset + i] = pooled[q * n * n + i];
    offset += n * n;
  }
  return y;
}

void naive_backward(const pyramid_sampling_params& p, const host_tensor<float>& dy,
                    host_tensor<float>& dx) {
  const int64_t planes = dx.size(0) * dx.size(1), positions = dy.size(2);
  int64_t offset = 0;
  for (int64_t n : p.sizes) {
    host_tensor<float> part({dx.size(0), dx.size(1), n, n});
    for (int64_t q = 0; q < planes; ++q)
      for (int64_t i = 0; i < n * n; ++i) part[q * n * n + i] = dy[q * positions + offset + i];
    ops::adaptive_avg_pool2d_backward(part, dx);
    offset += n * n;
  }
}

testing::op_case pyramid_case(const pyramid_sampling_params& p, const shape& x_shape) {
  testing::op_case test;
  test.name = "pyramid_sampling " + describe(x_shape, p.sizes);
  std::mt19937 rng(5);
  test.inputs = {testing::random_tensor(x_shape, rng)};
  test.forward = [p](const testing::tensors& in) {
    host_tensor<float> y(ops::pyramid_sampling_output_shape(p, in[0].shape()));
    ops::pyramid_sampling_forward(p, in[0], y);
    return testing::tensors{y};
  };
  test.backward = [p](const testing::tensors&, const testing::tensors&,
                      const testing::tensors& dout, testing::tensors& din) {
    ops::pyramid_sampling_backward(p, dout[0], din[0]);
  };
  test.max_checked_elements = 48;
  return test;
}

struct geometry_case {
  shape x;
  std::vector<int64_t> sizes;
};
const geometry_case cases[] = {
    {{2, 3, 16, 16}, {1, 3, 6, 8}},  // the ANL setting, some bins overlap (16 / 3, 16 / 6)
    {{1, 2, 13, 11}, {1, 3, 6, 8}},  // H, W not divisible by any n
    {{1, 1, 7, 5}, {1, 3, 6, 8}},    // n > H and n > W: bins overlap and repeat pixels
    {{2, 2, 5, 6}, {1}},             // S = 1: global average
    {{1, 1, 1, 1}, {1, 3}},          // a single pixel fans out to every bin
    {{1, 2, 9, 10}, {4, 2, 9}},      // sizes in any order, positions follow it
    {{3, 1, 24, 32}, {1, 3, 6, 8}},  // C = 1, divisible sizes
};

}  // namespace

TEST_CASE("pyramid sampling: output shape and positions") {
  pyramid_sampling_params p;
  CHECK(ops::pyramid_sampling_positions(p) == 110);
  CHECK(ops::pyramid_sampling_output_shape(p, {2, 256, 64, 48}) == shape{2, 256, 110});
  p.sizes = {1};
  CHECK(ops::pyramid_sampling_output_shape(p, {1, 1, 3, 3}) == shape{1, 1, 1});
}

TEST_CASE("pyramid sampling: gradients, accumulation and determinism") {
  for (const auto& c : cases) testing::check_op(pyramid_case({c.sizes}, c.x));
}

TEST_CASE("pyramid sampling: equals adaptive_avg_pool2d per size plus concatenation") {
  for (const auto& c : cases) {
    const pyramid_sampling_params p{c.sizes};
    INFO(describe(c.x, c.sizes));
    std::mt19937 rng(17);
    const auto x = testing::random_tensor(c.x, rng);
    host_tensor<float> y(ops::pyramid_sampling_output_shape(p, c.x));
    ops::pyramid_sampling_forward(p, x, y);
    testing::require_all_close(y, naive_forward(p, x), 1e-6f, 1e-5f, "forward");

    const auto dy = testing::random_tensor(y.shape(), rng);
    auto dx = testing::random_tensor(c.x, rng);  // backward adds: start from random values
    auto dx_naive = dx.clone();
    ops::pyramid_sampling_backward(p, dy, dx);
    naive_backward(p, dy, dx_naive);
    testing::require_all_close(dx, dx_naive, 1e-6f, 1e-5f, "backward");
  }
}

TEST_CASE("pyramid sampling: constant input gives the constant, gradient mass is conserved") {
  const pyramid_sampling_params p{{1, 3, 6, 8}};
  auto x = host_tensor<float>({1, 1, 7, 5});
  x.fill(2.5f);
  host_tensor<float> y({1, 1, 110});
  ops::pyramid_sampling_forward(p, x, y);
  for (int64_t i = 0; i < y.numel(); ++i) CHECK(y[i] == Approx(2.5f).epsilon(1e-6));
  // d(sum of all bin means)/dx summed over pixels = number of bins (each bin's weights sum to 1)
  auto dy = host_tensor<float>({1, 1, 110});
  dy.fill(1.f);
  auto dx = host_tensor<float>::zeros(x.shape());
  ops::pyramid_sampling_backward(p, dy, dx);
  double total = 0;
  for (int64_t i = 0; i < dx.numel(); ++i) total += dx[i];
  CHECK(total == Approx(110.0).epsilon(1e-5));
}

TEST_CASE("pyramid sampling: matches PyTorch (tests/golden/pyramid_sampling.safetensors)") {
  const auto file = tensor_file::load(SEGKIT_GOLDEN_DIR "/pyramid_sampling.safetensors");
  int count = 0;
  for (const std::string& name : file.names()) {
    if (name.size() < 2 || name.compare(name.size() - 2, 2, ".x") != 0) continue;
    const std::string k = name.substr(0, name.size() - 2);
    INFO("golden case " << k);
    const auto x = file.get<float>(k + ".x");
    const auto sizes = file.get<int32_t>(k + ".sizes");
    pyramid_sampling_params p;
    p.sizes.assign(sizes.data(), sizes.data() + sizes.numel());
    const auto y_ref = file.get<float>(k + ".y");
    REQUIRE(ops::pyramid_sampling_output_shape(p, x.shape()) == y_ref.shape());
    host_tensor<float> y(y_ref.shape());
    ops::pyramid_sampling_forward(p, x, y);
    auto dx = host_tensor<float>::zeros(x.shape());
    ops::pyramid_sampling_backward(p, file.get<float>(k + ".dy"), dx);
    testing::require_all_close(y, y_ref, 1e-6f, 1e-5f, k + ": y");
    testing::require_all_close(dx, file.get<float>(k + ".dx"), 1e-6f, 1e-5f, k + ": dx");
    ++count;
  }
  CHECK(count == 5);
}

TEST_CASE("pyramid sampling: bad inputs name the values and shapes") {
  host_tensor<float> x({2, 3, 8, 8}), y({2, 3, 110});
  CHECK_THROWS_WITH(ops::pyramid_sampling_forward({{}}, x, y),
                    Catch::Contains("pyramid_sampling_forward") && Catch::Contains("empty"));
  CHECK_THROWS_AS(ops::pyramid_sampling_forward({{}}, x, y), value_error);
  CHECK_THROWS_WITH(ops::pyramid_sampling_forward({{1, 0, 6}}, x, y),
                    Catch::Contains("size 1 is 0") && Catch::Contains("n >= 1"));
  CHECK_THROWS_AS(ops::pyramid_sampling_positions({{3, -2}}), value_error);
  host_tensor<float> y_bad({2, 3, 109});
  CHECK_THROWS_WITH(ops::pyramid_sampling_forward({}, x, y_bad),
                    Catch::Contains("[2, 3, 109]") && Catch::Contains("[2, 3, 110]") &&
                        Catch::Contains("[2, 3, 8, 8]"));
  host_tensor<float> y_other_batch({1, 3, 110});
  CHECK_THROWS_AS(ops::pyramid_sampling_forward({}, x, y_other_batch), shape_error);
  host_tensor<float> x_rank3({3, 8, 8});
  CHECK_THROWS_WITH(ops::pyramid_sampling_forward({}, x_rank3, y),
                    Catch::Contains("[3, 8, 8]") && Catch::Contains("[N, C, H, W]"));
  host_tensor<float> dx_bad({2, 4, 8, 8});
  CHECK_THROWS_WITH(ops::pyramid_sampling_backward({}, y, dx_bad),
                    Catch::Contains("pyramid_sampling_backward") && Catch::Contains("[2, 4, 8, 8]") &&
                        Catch::Contains("[2, 3, 110]"));
}

TEST_CASE("pyramid sampling layer: [N, C, 1, S] through the layer checker") {
  using layer_type = nn::bind<nn::pyramid_sampling<1, 3, 6, 8>, 3, true, cpu>;
  static_assert(nn::pyramid_sampling<1, 3, 6, 8>::positions == 110);
  static_assert(layer_type::out_channels == 3);
  layer_type layer;
  nn::setup_context<cpu> context;
  CHECK(layer.setup({2, 3, 13, 11}, context) == shape{2, 3, 1, 110});
  // The layer's output is the op's, viewed with height 1.
  std::mt19937 rng(3);
  const auto x = testing::random_tensor({2, 3, 13, 11}, rng);
  host_tensor<float> y({2, 3, 110});
  ops::pyramid_sampling_forward({{1, 3, 6, 8}}, x, y);
  CHECK(to_vector(layer.forward(x)) == to_vector(y));

  testing::check_op(testing::layer_case<nn::pyramid_sampling<1, 3, 6, 8>, 3>(
      "pyramid_sampling<1,3,6,8> layer", {2, 3, 13, 11}));
  testing::check_op(testing::layer_case<nn::seq<nn::pyramid_sampling<2, 1>, nn::conv<4, 1>>, 3>(
      "pyramid_sampling<2,1> then a 1x1 conv", {1, 3, 7, 5}));
}
