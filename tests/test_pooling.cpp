#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "op_checker.hpp"
#include "segkit/ops/pooling.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;
using ops::pool2d_params;

namespace {

// Distinct values 0.03 apart, shuffled: a finite-difference step of 0.01 never changes which
// element is the maximum of a window.
host_tensor<float> distinct_values(const shape& extent, unsigned seed) {
  host_tensor<float> x(extent);
  std::vector<int64_t> order(static_cast<size_t>(x.numel()));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  for (int64_t i = 0; i < x.numel(); ++i)
    x[i] = 0.03f * float(order[static_cast<size_t>(i)]) - 0.015f * float(x.numel());
  return x;
}

std::string describe(const pool2d_params& p) {
  std::ostringstream text;
  text << "k" << p.kernel_h << "x" << p.kernel_w << " s" << p.stride_h << "x" << p.stride_w << " p"
       << p.pad_h << "x" << p.pad_w << (p.ceil_mode ? " ceil" : "")
       << (p.count_include_pad ? "" : " exclude_pad");
  return text.str();
}

pool2d_params pool(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                   bool ceil = false, bool include_pad = true) {
  return {kh, kw, sh, sw, ph, pw, ceil, include_pad};
}

// ---- naive references, written from PyTorch's definitions, scatter-style ------------------
int64_t naive_out(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  const double span = double(in + 2 * p - k) / double(s);
  int64_t out = static_cast<int64_t>(ceil_mode ? std::ceil(span) : std::floor(span)) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

struct naive_window {
  int64_t h0, h1, w0, w1;  // clipped to the input
  int64_t padded_count;    // clipped to the padded input
};
naive_window window_of(const pool2d_params& p, int64_t in_h, int64_t in_w, int64_t oh, int64_t ow) {
  const int64_t hs = oh * p.stride_h - p.pad_h, ws = ow * p.stride_w - p.pad_w;
  const int64_t he = std::min(hs + p.kernel_h, in_h + p.pad_h);
  const int64_t we = std::min(ws + p.kernel_w, in_w + p.pad_w);
  return {std::max<int64_t>(hs, 0), std::min(he, in_h), std::max<int64_t>(ws, 0),
          std::min(we, in_w), (he - hs) * (we - ws)};
}

void naive_max_pool(const pool2d_params& p, const host_tensor<float>& x, host_tensor<float>& y,
                    host_tensor<int32_t>& argmax) {
  const int64_t H = x.size(2), W = x.size(3);
  for (int64_t n = 0; n < x.size(0); ++n)
    for (int64_t c = 0; c < x.size(1); ++c)
      for (int64_t oh = 0; oh < y.size(2); ++oh)
        for (int64_t ow = 0; ow < y.size(3); ++ow) {
          const auto win = window_of(p, H, W, oh, ow);
          float best = x.at(n, c, win.h0, win.w0);
          int64_t at = win.h0 * W + win.w0;
          for (int64_t h = win.h0; h < win.h1; ++h)
            for (int64_t w = win.w0; w < win.w1; ++w)
              if (x.at(n, c, h, w) > best) {
                best = x.at(n, c, h, w);
                at = h * W + w;
              }
          y.at(n, c, oh, ow) = best;
          argmax.at(n, c, oh, ow) = static_cast<int32_t>(at);
        }
}

void naive_avg_pool(const pool2d_params& p, const host_tensor<float>& x, host_tensor<float>& y,
                    const host_tensor<float>& dy, host_tensor<float>& dx) {
  const int64_t H = x.size(2), W = x.size(3);
  for (int64_t n = 0; n < x.size(0); ++n)
    for (int64_t c = 0; c < x.size(1); ++c)
      for (int64_t oh = 0; oh < y.size(2); ++oh)
        for (int64_t ow = 0; ow < y.size(3); ++ow) {
          const auto win = window_of(p, H, W, oh, ow);
          const double divisor = p.count_include_pad
                                     ? double(win.padded_count)
                                     : double((win.h1 - win.h0) * (win.w1 - win.w0));
          double sum = 0;
          for (int64_t h = win.h0; h < win.h1; ++h)
            for (int64_t w = win.w0; w < win.w1; ++w) {
              sum += x.at(n, c, h, w);
              dx.at(n, c, h, w) += static_cast<float>(dy.at(n, c, oh, ow) / divisor);
            }
          y.at(n, c, oh, ow) = static_cast<float>(sum / divisor);
        }
}

void naive_adaptive(const host_tensor<float>& x, host_tensor<float>& y,
                    const host_tensor<float>& dy, host_tensor<float>& dx) {
  const int64_t H = x.size(2), W = x.size(3), OH = y.size(2), OW = y.size(3);
  for (int64_t n = 0; n < x.size(0); ++n)
    for (int64_t c = 0; c < x.size(1); ++c)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          // floor(i H / n) and ceil((i + 1) H / n), in floating point
          const auto h0 = static_cast<int64_t>(std::floor(double(oh * H) / double(OH)));
          const auto h1 = static_cast<int64_t>(std::ceil(double((oh + 1) * H) / double(OH)));
          const auto w0 = static_cast<int64_t>(std::floor(double(ow * W) / double(OW)));
          const auto w1 = static_cast<int64_t>(std::ceil(double((ow + 1) * W) / double(OW)));
          const double count = double((h1 - h0) * (w1 - w0));
          double sum = 0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) {
              sum += x.at(n, c, h, w);
              dx.at(n, c, h, w) += static_cast<float>(dy.at(n, c, oh, ow) / count);
            }
          y.at(n, c, oh, ow) = static_cast<float>(sum / count);
        }
}

// ---- check_op cases -----------------------------------------------------------------------
testing::op_case max_case(const pool2d_params& p, const shape& extent, unsigned seed) {
  testing::op_case test;
  test.name = "max_pool2d " + describe(p) + " " + extent.to_string();
  test.inputs = {distinct_values(extent, seed)};
  test.forward = [p](const testing::tensors& in) {
    host_tensor<float> y(ops::pool2d_output_shape(p, in[0].shape()));
    ops::max_pool2d_forward(p, in[0], y, nullptr);
    return testing::tensors{y};
  };
  test.backward = [p](const testing::tensors& in, const testing::tensors& out,
                      const testing::tensors& dout, testing::tensors& din) {
    host_tensor<float> y(out[0].shape());
    host_tensor<int32_t> argmax(out[0].shape());
    ops::max_pool2d_forward(p, in[0], y, &argmax);
    ops::max_pool2d_backward(p, argmax, dout[0], din[0]);
  };
  return test;
}

testing::op_case avg_case(const pool2d_params& p, const shape& extent, unsigned seed) {
  std::mt19937 rng(seed);
  testing::op_case test;
  test.name = "avg_pool2d " + describe(p) + " " + extent.to_string();
  test.inputs = {testing::random_tensor(extent, rng)};
  test.forward = [p](const testing::tensors& in) {
    host_tensor<float> y(ops::pool2d_output_shape(p, in[0].shape()));
    ops::avg_pool2d_forward(p, in[0], y);
    return testing::tensors{y};
  };
  test.backward = [p](const testing::tensors&, const testing::tensors&,
                      const testing::tensors& dout,
                      testing::tensors& din) { ops::avg_pool2d_backward(p, dout[0], din[0]); };
  return test;
}

testing::op_case adaptive_case(const shape& extent, int64_t oh, int64_t ow, unsigned seed) {
  std::mt19937 rng(seed);
  testing::op_case test;
  const shape out{extent[0], extent[1], oh, ow};
  test.name = "adaptive_avg_pool2d " + extent.to_string() + " -> " + out.to_string();
  test.inputs = {testing::random_tensor(extent, rng)};
  test.forward = [out](const testing::tensors& in) {
    host_tensor<float> y(out);
    ops::adaptive_avg_pool2d_forward(in[0], y);
    return testing::tensors{y};
  };
  test.backward = [](const testing::tensors&, const testing::tensors&, const testing::tensors& dout,
                     testing::tensors& din) { ops::adaptive_avg_pool2d_backward(dout[0], din[0]); };
  return test;
}

const std::vector<pool2d_params>& pool_variants() {
  static const std::vector<pool2d_params> variants = {
      pool(2, 2, 2, 2, 0, 0),                // the common 2x2/2
      pool(3, 3, 2, 2, 1, 1),                // ResNet stem: stride != kernel, padding
      pool(3, 3, 1, 1, 0, 0),                // overlapping windows
      pool(2, 3, 1, 2, 1, 1),                // rectangular kernel, mixed strides
      pool(2, 2, 2, 2, 0, 0, true),          // ceil_mode on odd sizes
      pool(3, 3, 2, 2, 1, 1, true),          // ceil_mode with padding
      pool(2, 2, 2, 2, 1, 1, true),          // ceil_mode where the last window is dropped
      pool(3, 3, 2, 2, 1, 1, false, false),  // count_include_pad = false
      pool(3, 2, 2, 3, 1, 1, true, false),   // both, clipped ceil windows
      pool(4, 4, 3, 3, 2, 2, true, true),    // ceil windows clipped at the padded edge
  };
  return variants;
}

}  // namespace

TEST_CASE("pool2d_output_shape follows PyTorch's formula and ceil rule") {
  for (const auto& p : pool_variants())
    for (int64_t h : {1, 2, 5, 6, 7, 10})
      for (int64_t w : {3, 4, 9}) {
        const int64_t eh = naive_out(h, p.kernel_h, p.stride_h, p.pad_h, p.ceil_mode);
        const int64_t ew = naive_out(w, p.kernel_w, p.stride_w, p.pad_w, p.ceil_mode);
        if (eh < 1 || ew < 1) {
          CHECK_THROWS_AS(ops::pool2d_output_shape(p, {1, 1, h, w}), shape_error);
          continue;
        }
        INFO(describe(p) << " on " << h << "x" << w);
        CHECK(ops::pool2d_output_shape(p, {2, 3, h, w}) == shape{2, 3, eh, ew});
      }
  // Known PyTorch values: MaxPool2d(2, 2, padding=1, ceil_mode=True) on 5 gives 3, not 4.
  CHECK(ops::pool2d_output_shape(pool(2, 2, 2, 2, 1, 1, true), {1, 1, 5, 5}) == shape{1, 1, 3, 3});
  CHECK(ops::pool2d_output_shape(pool(2, 2, 2, 2, 0, 0, true), {1, 1, 5, 5}) == shape{1, 1, 3, 3});
  CHECK(ops::pool2d_output_shape(pool(2, 2, 2, 2, 0, 0), {1, 1, 5, 5}) == shape{1, 1, 2, 2});
  CHECK(ops::pool2d_output_shape(pool(3, 3, 2, 2, 1, 1), {1, 1, 224, 224}) ==
        shape{1, 1, 112, 112});
}

TEST_CASE("max_pool2d: gradients, accumulation and determinism") {
  unsigned seed = 1;
  for (const auto& p : pool_variants()) {
    testing::check_op(max_case(p, {2, 3, 7, 9}, seed++));
    testing::check_op(max_case(p, {1, 1, 5, 6}, seed++));
  }
}

TEST_CASE("avg_pool2d: gradients, accumulation and determinism") {
  unsigned seed = 100;
  for (const auto& p : pool_variants()) {
    testing::check_op(avg_case(p, {2, 3, 7, 9}, seed++));
    testing::check_op(avg_case(p, {1, 1, 5, 6}, seed++));
  }
}

TEST_CASE("adaptive_avg_pool2d: gradients, accumulation and determinism") {
  testing::check_op(adaptive_case({2, 3, 7, 5}, 3, 2, 1));    // down, uneven bins
  testing::check_op(adaptive_case({1, 2, 5, 5}, 7, 9, 2));    // up: output larger than input
  testing::check_op(adaptive_case({2, 1, 6, 4}, 1, 1, 3));    // global average
  testing::check_op(adaptive_case({1, 1, 4, 6}, 4, 6, 4));    // identity size
  testing::check_op(adaptive_case({1, 3, 13, 11}, 6, 3, 5));  // PSP-like bins
  testing::check_op(adaptive_case({1, 1, 1, 1}, 3, 2, 6));    // one input element
}

TEST_CASE("max_pool2d: values and argmax against a naive reference") {
  unsigned seed = 200;
  for (const auto& p : pool_variants())
    for (const shape& extent : {shape{2, 3, 7, 9}, shape{1, 1, 5, 6}, shape{1, 2, 10, 4}}) {
      INFO(describe(p) << " " << extent.to_string());
      std::mt19937 rng(seed++);
      auto x = testing::random_tensor(extent, rng);
      const shape out = ops::pool2d_output_shape(p, extent);
      host_tensor<float> y(out), y_ref(out);
      host_tensor<int32_t> argmax(out), argmax_ref(out);
      ops::max_pool2d_forward(p, x, y, &argmax);
      naive_max_pool(p, x, y_ref, argmax_ref);
      CHECK(to_vector(y) == to_vector(y_ref));
      CHECK(to_vector(argmax) == to_vector(argmax_ref));
      // Backward: each dy goes to its argmax.
      auto dy = testing::random_tensor(out, rng);
      auto dx = host_tensor<float>::zeros(extent), dx_ref = host_tensor<float>::zeros(extent);
      ops::max_pool2d_backward(p, argmax, dy, dx);
      const int64_t plane = extent[2] * extent[3], out_plane = out[2] * out[3];
      for (int64_t i = 0; i < dy.numel(); ++i)
        dx_ref[(i / out_plane) * plane + argmax_ref[i]] += dy[i];
      testing::require_all_close(dx, dx_ref, 1e-6f, 1e-5f, "max_pool2d_backward");
    }
}

TEST_CASE("max_pool2d: ties go to the first maximum and NaN propagates") {
  auto x = from_vector<float>({1, 1, 2, 4}, {1.f, 1.f, 5.f, 5.f,  //
                                             1.f, 1.f, 5.f, NAN});
  host_tensor<float> y({1, 1, 1, 2});
  host_tensor<int32_t> argmax({1, 1, 1, 2});
  ops::max_pool2d_forward(pool(2, 2, 2, 2, 0, 0), x, y, &argmax);
  CHECK(y[0] == 1.f);
  CHECK(argmax[0] == 0);  // the first of four equal values
  CHECK(std::isnan(y[1]));
  CHECK(argmax[1] == 7);
  // A window of all -inf still points inside the window.
  auto neg = from_vector<float>({1, 1, 2, 2}, std::vector<float>(4, -INFINITY));
  host_tensor<float> y1({1, 1, 1, 1});
  host_tensor<int32_t> a1({1, 1, 1, 1});
  ops::max_pool2d_forward(pool(2, 2, 2, 2, 0, 0), neg, y1, &a1);
  CHECK(a1[0] == 0);
  CHECK(y1[0] == -INFINITY);
}

TEST_CASE("avg_pool2d: values and gradients against a naive reference") {
  unsigned seed = 300;
  for (const auto& p : pool_variants())
    for (const shape& extent : {shape{2, 3, 7, 9}, shape{1, 1, 5, 6}, shape{1, 2, 10, 4}}) {
      INFO(describe(p) << " " << extent.to_string());
      std::mt19937 rng(seed++);
      auto x = testing::random_tensor(extent, rng);
      const shape out = ops::pool2d_output_shape(p, extent);
      auto dy = testing::random_tensor(out, rng);
      host_tensor<float> y(out), y_ref(out);
      auto dx = host_tensor<float>::zeros(extent), dx_ref = host_tensor<float>::zeros(extent);
      ops::avg_pool2d_forward(p, x, y);
      ops::avg_pool2d_backward(p, dy, dx);
      naive_avg_pool(p, x, y_ref, dy, dx_ref);
      testing::require_all_close(y, y_ref, 1e-6f, 1e-5f, "avg_pool2d_forward");
      testing::require_all_close(dx, dx_ref, 1e-6f, 1e-5f, "avg_pool2d_backward");
    }
  // count_include_pad: a 3x3/1 pad 1 corner window sees 4 inputs out of 9 slots.
  host_tensor<float> ones({1, 1, 3, 3}), y({1, 1, 3, 3});
  ones.fill(1.f);
  ops::avg_pool2d_forward(pool(3, 3, 1, 1, 1, 1), ones, y);
  CHECK(y[0] == Approx(4.0 / 9.0));
  CHECK(y[4] == Approx(1.0));
  ops::avg_pool2d_forward(pool(3, 3, 1, 1, 1, 1, false, false), ones, y);
  CHECK(y[0] == Approx(1.0));
}

TEST_CASE("adaptive_avg_pool2d: bins, values and gradients against a naive reference") {
  // PyTorch's bins for 5 -> 3: [0, 2), [1, 4), [3, 5); for 2 -> 3: [0, 1), [0, 2), [1, 2).
  CHECK(ops::math::adaptive_start(1, 5, 3) == 1);
  CHECK(ops::math::adaptive_end(1, 5, 3) == 4);
  CHECK(ops::math::adaptive_start(2, 5, 3) == 3);
  CHECK(ops::math::adaptive_end(0, 5, 3) == 2);
  CHECK(ops::math::adaptive_start(1, 2, 3) == 0);
  CHECK(ops::math::adaptive_end(1, 2, 3) == 2);
  unsigned seed = 400;
  for (const auto& sizes : std::vector<std::array<int64_t, 4>>{{7, 5, 3, 2},
                                                               {5, 5, 7, 9},
                                                               {6, 4, 1, 1},
                                                               {4, 6, 4, 6},
                                                               {13, 11, 6, 3},
                                                               {1, 1, 3, 2},
                                                               {10, 3, 3, 10},
                                                               {2, 9, 5, 4}}) {
    const shape extent{2, 2, sizes[0], sizes[1]}, out{2, 2, sizes[2], sizes[3]};
    INFO(extent.to_string() << " -> " << out.to_string());
    std::mt19937 rng(seed++);
    auto x = testing::random_tensor(extent, rng);
    auto dy = testing::random_tensor(out, rng);
    host_tensor<float> y(out), y_ref(out);
    auto dx = host_tensor<float>::zeros(extent), dx_ref = host_tensor<float>::zeros(extent);
    ops::adaptive_avg_pool2d_forward(x, y);
    ops::adaptive_avg_pool2d_backward(dy, dx);
    naive_adaptive(x, y_ref, dy, dx_ref);
    testing::require_all_close(y, y_ref, 1e-6f, 1e-5f, "adaptive forward");
    testing::require_all_close(dx, dx_ref, 1e-6f, 1e-5f, "adaptive backward");
  }
}

TEST_CASE("pooling: bad inputs are rejected with the values named") {
  host_tensor<float> x({1, 2, 6, 6}), y({1, 2, 3, 3});
  CHECK_THROWS_WITH(
      ops::max_pool2d_forward(pool(2, 2, 2, 2, 2, 0), x, y, nullptr),
      Catch::Contains("padding") && Catch::Contains("2x0") && Catch::Contains("kernel 2x2"));
  CHECK_THROWS_AS(ops::avg_pool2d_forward(pool(0, 2, 2, 2, 0, 0), x, y), value_error);
  CHECK_THROWS_WITH(ops::avg_pool2d_forward(pool(2, 2, 0, 2, 0, 0), x, y),
                    Catch::Contains("stride") && Catch::Contains("0x2"));
  CHECK_THROWS_AS(ops::avg_pool2d_forward(pool(2, 2, 2, 2, -1, 0), x, y), value_error);
  // Wrong output shape names both shapes.
  host_tensor<float> y_bad({1, 2, 4, 3});
  CHECK_THROWS_WITH(ops::max_pool2d_forward(pool(2, 2, 2, 2, 0, 0), x, y_bad, nullptr),
                    Catch::Contains("max_pool2d_forward") && Catch::Contains("[1, 2, 4, 3]") &&
                        Catch::Contains("[1, 2, 3, 3]") && Catch::Contains("[1, 2, 6, 6]"));
  host_tensor<int32_t> argmax_bad({1, 2, 3, 2});
  CHECK_THROWS_WITH(ops::max_pool2d_forward(pool(2, 2, 2, 2, 0, 0), x, y, &argmax_bad),
                    Catch::Contains("argmax") && Catch::Contains("[1, 2, 3, 2]"));
  // Output too small: a 5x5 kernel on a 3x3 input.
  host_tensor<float> small({1, 1, 3, 3}), y1({1, 1, 1, 1});
  CHECK_THROWS_WITH(ops::avg_pool2d_forward(pool(5, 5, 1, 1, 0, 0), small, y1),
                    Catch::Contains("too small") && Catch::Contains("[1, 1, 3, 3]"));
  // Rank and empty planes.
  host_tensor<float> x3({2, 6, 6});
  CHECK_THROWS_AS(ops::avg_pool2d_forward(pool(2, 2, 2, 2, 0, 0), x3, y), shape_error);
  host_tensor<float> empty({1, 1, 0, 4}), y2({1, 1, 2, 2});
  CHECK_THROWS_WITH(ops::adaptive_avg_pool2d_forward(empty, y2), Catch::Contains("[1, 1, 0, 4]"));
  // Adaptive: output must keep N and C.
  host_tensor<float> y_nc({1, 3, 2, 2});
  CHECK_THROWS_WITH(ops::adaptive_avg_pool2d_forward(x, y_nc),
                    Catch::Contains("[1, 3, 2, 2]") && Catch::Contains("[1, 2, 6, 6]"));
  host_tensor<float> y0({1, 2, 0, 2});
  CHECK_THROWS_AS(ops::adaptive_avg_pool2d_forward(x, y0), shape_error);
  // Backward checks dx against dy.
  host_tensor<float> dx_bad({1, 2, 5, 6});
  host_tensor<int32_t> argmax({1, 2, 3, 3});
  CHECK_THROWS_WITH(ops::max_pool2d_backward(pool(2, 2, 2, 2, 0, 0), argmax, y, dx_bad),
                    Catch::Contains("max_pool2d_backward") && Catch::Contains("[1, 2, 5, 6]"));
  CHECK_THROWS_AS(ops::avg_pool2d_backward(pool(2, 2, 2, 2, 0, 0), y_bad, x), shape_error);
}

TEST_CASE("pooling: matches PyTorch (tests/golden/pooling.safetensors)") {
  const auto file = tensor_file::load(SEGKIT_GOLDEN_DIR "/pooling.safetensors");
  int max_cases = 0, avg_cases = 0, adaptive_cases = 0;
  for (const std::string& name : file.names()) {
    if (name.size() < 2 || name.compare(name.size() - 2, 2, ".x") != 0) continue;
    const std::string k = name.substr(0, name.size() - 2);
    INFO("golden case " << k);
    const auto x = file.get<float>(k + ".x");
    const auto y_ref = file.get<float>(k + ".y");
    const auto dy = file.get<float>(k + ".dy");
    const auto dx_ref = file.get<float>(k + ".dx");
    host_tensor<float> y(y_ref.shape());
    auto dx = host_tensor<float>::zeros(x.shape());
    if (k.rfind("adaptive_", 0) == 0) {
      ops::adaptive_avg_pool2d_forward(x, y);
      ops::adaptive_avg_pool2d_backward(dy, dx);
      ++adaptive_cases;
    } else {
      const auto v = file.get<int32_t>(k + ".params");
      const pool2d_params p = pool(v[0], v[1], v[2], v[3], v[4], v[5], v[6] != 0, v[7] != 0);
      REQUIRE(ops::pool2d_output_shape(p, x.shape()) == y_ref.shape());
      if (k.rfind("max_", 0) == 0) {
        host_tensor<int32_t> argmax(y_ref.shape());
        ops::max_pool2d_forward(p, x, y, &argmax);
        CHECK(to_vector(argmax) == to_vector(file.get<int32_t>(k + ".argmax")));
        ops::max_pool2d_backward(p, argmax, dy, dx);
        ++max_cases;
      } else {
        ops::avg_pool2d_forward(p, x, y);
        ops::avg_pool2d_backward(p, dy, dx);
        ++avg_cases;
      }
    }
    testing::require_all_close(y, y_ref, 1e-6f, 1e-5f, k + ": y");
    testing::require_all_close(dx, dx_ref, 1e-6f, 1e-5f, k + ": dx");
  }
  CHECK(max_cases == 10);
  CHECK(avg_cases == 10);
  CHECK(adaptive_cases == 5);
}
