// Tests of ops/resize.hpp: gradients (check_op) for nearest and bilinear with both
// align_corners, up- and downsampling, odd sizes, N=1, C=1 and 1x1 outputs; values against a
// separable-matrix reference written here; bad-input messages; PyTorch parity through
// tests/golden/resize.safetensors (tests/reference/gen_resize.py).
#include <cmath>

#include "op_checker.hpp"
#include "segkit/ops/resize.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;
using ops::resize_mode;
using ops::resize_params;

namespace {

const resize_params all_variants[] = {
    {resize_mode::nearest, false}, {resize_mode::bilinear, false}, {resize_mode::bilinear, true}};

std::string variant_name(const resize_params& p) {
  return std::string(ops::resize_mode_name(p.mode)) + (p.align_corners ? " align_corners" : "");
}

// The 1-D interpolation matrix (out x in) of one axis, from the F.interpolate formulas as
// stated (scale computed in float, as PyTorch does), without the op's code.
std::vector<std::vector<double>> axis_matrix(const resize_params& p, int64_t in, int64_t out) {
  std::vector<std::vector<double>> m(size_t(out), std::vector<double>(size_t(in), 0.0));
  for (int64_t d = 0; d < out; ++d) {
    auto& row = m[size_t(d)];
    if (p.mode == resize_mode::nearest) {
      const float scale = float(in) / float(out);
      row[size_t(std::min<int64_t>(int64_t(std::floor(float(d) * scale)), in - 1))] = 1.0;
      continue;
    }
    float src;
    if (p.align_corners) {
      src = out == 1 ? 0.f : float(d) * (float(in - 1) / float(out - 1));
    } else {
      src = (float(d) + 0.5f) * (float(in) / float(out)) - 0.5f;
      if (src < 0.f) src = 0.f;
    }
    const int64_t low = std::min<int64_t>(int64_t(std::floor(src)), in - 1);
    const int64_t high = std::min<int64_t>(low + 1, in - 1);
    const double frac = std::clamp(double(src) - double(low), 0.0, 1.0);
    row[size_t(low)] += 1.0 - frac;
    row[size_t(high)] += frac;
  }
  return m;
}

// y = A_h x A_w^T per plane; transposed = true gives dx = A_h^T dy A_w.
host_tensor<float> naive_resize(const resize_params& p, const host_tensor<float>& t,
                                const shape& small, const shape& large, bool transposed) {
  const auto ah = axis_matrix(p, small[2], large[2]);
  const auto aw = axis_matrix(p, small[3], large[3]);
  const shape& out_shape = transposed ? small : large;
  auto result = host_tensor<float>::zeros(out_shape);
  for (int64_t n = 0; n < small[0]; ++n)
    for (int64_t c = 0; c < small[1]; ++c)
      for (int64_t oy = 0; oy < large[2]; ++oy)
        for (int64_t ox = 0; ox < large[3]; ++ox)
          for (int64_t iy = 0; iy < small[2]; ++iy)
            for (int64_t ix = 0; ix < small[3]; ++ix) {
              const double w = ah[size_t(oy)][size_t(iy)] * aw[size_t(ox)][size_t(ix)];
              if (w == 0.0) continue;
              if (transposed)
                result.at(n, c, iy, ix) += float(w * t.at(n, c, oy, ox));
              else
                result.at(n, c, oy, ox) += float(w * t.at(n, c, iy, ix));
            }
  return result;
}

testing::op_case resize_case(const resize_params& p, const shape& in, int64_t oh, int64_t ow,
                             unsigned seed) {
  std::mt19937 rng(seed);
  testing::op_case test;
  test.name = variant_name(p) + " " + in.to_string() + " -> " + std::to_string(oh) + "x" +
              std::to_string(ow);
  test.inputs = {testing::random_tensor(in, rng)};
  const shape out = ops::resize_output_shape(in, oh, ow);
  test.forward = [p, out](const testing::tensors& x) {
    host_tensor<float> y(out);
    ops::resize_forward(p, x[0], y);
    return testing::tensors{y};
  };
  test.backward = [p](const testing::tensors&, const testing::tensors&, const testing::tensors& dy,
                      testing::tensors& dx) { ops::resize_backward(p, dy[0], dx[0]); };
  return test;
}

struct size_case {
  shape in;
  int64_t oh, ow;
};
const size_case size_cases[] = {
    {{2, 3, 5, 7}, 9, 4},    // up in H, down in W, odd sizes
    {{1, 1, 4, 4}, 8, 8},    // exact x2, N=1, C=1
    {{1, 2, 7, 5}, 12, 9},   // non-integer up
    {{2, 1, 12, 10}, 5, 4},  // non-integer down
    {{1, 1, 3, 3}, 1, 1},    // 1x1 output
    {{1, 3, 1, 1}, 3, 2},    // from 1x1
    {{2, 2, 6, 6}, 6, 6},    // same size
};

}  // namespace

TEST_CASE("resize: gradients, accumulation and determinism") {
  unsigned seed = 1;
  for (const auto& p : all_variants)
    for (const auto& c : size_cases) testing::check_op(resize_case(p, c.in, c.oh, c.ow, seed++));
}

TEST_CASE("resize: forward and backward match the separable-matrix reference") {
  std::mt19937 rng(99);
  for (const auto& p : all_variants) {
    for (const auto& c : size_cases) {
      const shape out = ops::resize_output_shape(c.in, c.oh, c.ow);
      INFO(variant_name(p) << " " << c.in.to_string() << " -> " << out.to_string());
      const auto x = testing::random_tensor(c.in, rng);
      host_tensor<float> y(out);
      ops::resize_forward(p, x, y);
      testing::require_all_close(y, naive_resize(p, x, c.in, out, false), 1e-5f, 1e-5f, "y");
      const auto dy = testing::random_tensor(out, rng);
      auto dx = host_tensor<float>::zeros(c.in);
      ops::resize_backward(p, dy, dx);
      testing::require_all_close(dx, naive_resize(p, dy, c.in, out, true), 1e-5f, 1e-5f, "dx");
    }
  }
}

TEST_CASE("resize: known values") {
  // 2 -> 4: nearest repeats; bilinear align_corners=false gives 1/4, 3/4 weights clamped at the
  // border; align_corners=true hits both ends exactly.
  const auto x = from_vector<float>({1, 1, 1, 2}, {0.f, 4.f});
  host_tensor<float> y({1, 1, 1, 4});
  ops::resize_forward({resize_mode::nearest, false}, x, y);
  CHECK(to_vector(y) == std::vector<float>{0, 0, 4, 4});
  ops::resize_forward({resize_mode::bilinear, false}, x, y);
  CHECK(to_vector(y) == std::vector<float>{0, 1, 3, 4});
  ops::resize_forward({resize_mode::bilinear, true}, x, y);
  const auto corners = to_vector(y);
  CHECK(corners[0] == 0.f);
  CHECK(corners[1] == Approx(4.f / 3.f));
  CHECK(corners[2] == Approx(8.f / 3.f));
  CHECK(corners[3] == 4.f);
}

TEST_CASE("resize: bad input names the op and both shapes") {
  host_tensor<float> x({2, 3, 4, 4}), rank3({2, 3, 4}), n1({1, 3, 8, 8}), c4({2, 4, 8, 8});
  host_tensor<float> y({2, 3, 8, 8});
  const resize_params p{resize_mode::bilinear, false};
  CHECK_THROWS_AS(ops::resize_forward(p, rank3, y), shape_error);
  CHECK_THROWS_WITH(ops::resize_forward(p, rank3, y),
                    Catch::Contains("resize_forward") && Catch::Contains("[2, 3, 4]") &&
                        Catch::Contains("[2, 3, 8, 8]") && Catch::Contains("rank 4"));
  CHECK_THROWS_WITH(ops::resize_forward(p, x, n1), Catch::Contains("[2, 3, 4, 4]") &&
                                                       Catch::Contains("[1, 3, 8, 8]") &&
                                                       Catch::Contains("same N and C"));
  CHECK_THROWS_WITH(ops::resize_forward(p, x, c4), Catch::Contains("[2, 4, 8, 8]"));
  CHECK_THROWS_WITH(ops::resize_backward(p, c4, x), Catch::Contains("resize_backward") &&
                                                        Catch::Contains("[2, 4, 8, 8]") &&
                                                        Catch::Contains("[2, 3, 4, 4]"));
  host_tensor<float> empty_hw({2, 3, 0, 4});
  CHECK_THROWS_AS(ops::resize_forward(p, empty_hw, y), shape_error);
  CHECK_THROWS_AS(ops::resize_forward({resize_mode::nearest, true}, x, y), value_error);
  CHECK(ops::resize_output_shape({2, 3, 4, 5}, 7, 9) == shape{2, 3, 7, 9});
  CHECK_THROWS_AS(ops::resize_output_shape({2, 3, 4, 5}, 0, 9), value_error);
  CHECK_THROWS_AS(ops::resize_output_shape({3, 4, 5}, 2, 2), shape_error);
}

TEST_CASE("resize: matches PyTorch's F.interpolate (tests/golden/resize.safetensors)") {
  const auto file = tensor_file::load(SEGKIT_GOLDEN_DIR "/resize.safetensors");
  const int cases = std::stoi(file.metadata().at("cases"));
  REQUIRE(cases >= 15);
  for (int k = 0; k < cases; ++k) {
    const std::string key = std::to_string(k) + ".";
    const auto params = file.get<int32_t>(key + "params");
    const resize_params p{params[0] == 0 ? resize_mode::nearest : resize_mode::bilinear,
                          params[1] != 0};
    const auto x = file.get<float>(key + "x");
    const auto expected_y = file.get<float>(key + "y");
    INFO("golden case " << k << ": " << variant_name(p) << " " << x.shape().to_string() << " -> "
                        << expected_y.shape().to_string());
    host_tensor<float> y(expected_y.shape());
    ops::resize_forward(p, x, y);
    testing::require_all_close(y, expected_y, 1e-5f, 1e-5f, "y");
    auto dx = host_tensor<float>::zeros(x.shape());
    ops::resize_backward(p, file.get<float>(key + "dy"), dx);
    testing::require_all_close(dx, file.get<float>(key + "dx"), 1e-5f, 1e-5f, "dx");
  }
}
