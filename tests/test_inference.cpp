// Tests for segkit/eval/inference.hpp with fake models whose logits are known in closed form:
// scales, flips and sliding windows must combine exactly as the header states (compared with
// a naive reference written here, pixel by pixel), setup runs only on a shape change, and
// evaluate() fills its confusion matrices with exactly the expected counts.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "op_checker.hpp"
#include "segkit/eval/inference.hpp"

using namespace segkit;

namespace {

// logits[k](y, x) = sum_c W[k][c] img[c](y, x) + b[k] + gx[k] * x + gy[k] * y, where (y, x)
// are coordinates inside the tensor the model is given: position-dependent, so a misplaced
// window, a missing flip-back or a wrong count map shows. mode colour: logits[k] =
// -|img[0] - centre(k)| with centre(k) the normalised red value 20 k (a "colour classifier").
struct fake_model {
  using device_type = cpu;
  enum class kind { affine, colour } mode = kind::affine;
  int classes;
  std::vector<float> w, b, gx, gy;
  int setups = 0, forwards = 0;
  shape in;
  host_tensor<float> out;
  bool training_ = true;

  explicit fake_model(int num_classes, uint64_t seed = 0) : classes(num_classes) {
    std::mt19937 rng(static_cast<unsigned>(seed));
    std::uniform_real_distribution<float> u(-1, 1);
    for (int i = 0; i < classes * 3; ++i) w.push_back(u(rng));
    for (int i = 0; i < classes; ++i) {
      b.push_back(u(rng));
      gx.push_back(0.3f * u(rng));
      gy.push_back(0.3f * u(rng));
    }
  }
  shape setup(const shape& s) {
    ++setups;
    in = s;
    out = host_tensor<float>({s[0], classes, s[2], s[3]});
    return out.shape();
  }
  const shape& input_shape() const { return in; }
  static float centre(int k) { return (20.f * float(k) - 123.675f) / 58.395f; }
  // The closed form at one pixel of an input tensor.
  float value(const host_tensor<float>& x, int64_t n, int k, int64_t y, int64_t xx) const {
    if (mode == kind::colour) return -std::fabs(x.at(n, 0, y, xx) - centre(k));
    float v = b[size_t(k)] + gx[size_t(k)] * float(xx) + gy[size_t(k)] * float(y);
    for (int c = 0; c < 3; ++c) v += w[size_t(k * 3 + c)] * x.at(n, c, y, xx);
    return v;
  }
  const host_tensor<float>& forward(const host_tensor<float>& x) {
    REQUIRE(x.shape() == in);
    ++forwards;
    for (int64_t n = 0; n < in[0]; ++n)
      for (int k = 0; k < classes; ++k)
        for (int64_t y = 0; y < in[2]; ++y)
          for (int64_t xx = 0; xx < in[3]; ++xx) out.at(n, k, y, xx) = value(x, n, k, y, xx);
    return out;
  }
  void train() { training_ = true; }
  void eval() { training_ = false; }
  bool training() const { return training_; }
  std::string name() const { return "fake"; }
};

host_tensor<float> random_image(int64_t n, int64_t h, int64_t w, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  host_tensor<float> t({n, 3, h, w});
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = normal(rng);
  return t;
}

host_tensor<float> resized(const host_tensor<float>& x, int64_t h, int64_t w) {
  host_tensor<float> y({x.size(0), x.size(1), h, w});
  ops::resize_forward({}, x, y);
  return y;
}

// Naive reference of one (scale, flip) term, written from the header's description.
host_tensor<float> naive_term(const fake_model& m, const host_tensor<float>& image, double scale,
                              bool flip, int win_h, int win_w) {
  const int64_t n = image.size(0), h = image.size(2), w = image.size(3);
  const int64_t sh_ = int64_t(h * scale + 0.5), sw_ = int64_t(w * scale + 0.5);
  host_tensor<float> x = resized(image, sh_, sw_);
  if (flip) {
    host_tensor<float> f(x.shape());
    for (int64_t i = 0; i < n; ++i)
      for (int c = 0; c < 3; ++c)
        for (int64_t y = 0; y < sh_; ++y)
          for (int64_t xx = 0; xx < sw_; ++xx) f.at(i, c, y, xx) = x.at(i, c, y, sw_ - 1 - xx);
    x = f;
  }
  host_tensor<float> logits = host_tensor<float>::zeros({n, m.classes, sh_, sw_});
  if (win_h == 0) {
    for (int64_t i = 0; i < n; ++i)
      for (int k = 0; k < m.classes; ++k)
        for (int64_t y = 0; y < sh_; ++y)
          for (int64_t xx = 0; xx < sw_; ++xx) logits.at(i, k, y, xx) = m.value(x, i, k, y, xx);
  } else {
    // Windows as mmseg's slide_inference, stride = round(2/3 window).
    const int64_t st_h = std::lround(2.0 * win_h / 3), st_w = std::lround(2.0 * win_w / 3);
    std::vector<std::pair<int64_t, int64_t>> ys, xs;
    for (int64_t g = 0; g <= std::max<int64_t>(sh_ - win_h + st_h - 1, 0) / st_h; ++g) {
      const int64_t y2 = std::min<int64_t>(g * st_h + win_h, sh_);
      ys.emplace_back(std::max<int64_t>(y2 - win_h, 0), y2);
    }
    for (int64_t g = 0; g <= std::max<int64_t>(sw_ - win_w + st_w - 1, 0) / st_w; ++g) {
      const int64_t x2 = std::min<int64_t>(g * st_w + win_w, sw_);
      xs.emplace_back(std::max<int64_t>(x2 - win_w, 0), x2);
    }
    for (int64_t i = 0; i < n; ++i)
      for (int k = 0; k < m.classes; ++k)
        for (int64_t y = 0; y < sh_; ++y)
          for (int64_t xx = 0; xx < sw_; ++xx) {
            double sum = 0;
            int count = 0;
            for (auto [y0, y1] : ys)
              for (auto [x0, x1] : xs) {
                if (y < y0 || y >= y1 || xx < x0 || xx >= x1) continue;
                // The model sees the crop: local coordinates, same pixel values.
                host_tensor<float> px({1, 3, 1, 1});
                for (int c = 0; c < 3; ++c) px.at(0, c, 0, 0) = x.at(i, c, y, xx);
                float v = m.value(px, 0, k, 0, 0);
                v += m.gx[size_t(k)] * float(xx - x0) + m.gy[size_t(k)] * float(y - y0);
                sum += v;
                ++count;
              }
            logits.at(i, k, y, xx) = float(sum / count);
          }
  }
  if (flip) {
    host_tensor<float> f(logits.shape());
    for (int64_t i = 0; i < n; ++i)
      for (int k = 0; k < m.classes; ++k)
        for (int64_t y = 0; y < sh_; ++y)
          for (int64_t xx = 0; xx < sw_; ++xx)
            f.at(i, k, y, xx) = logits.at(i, k, y, sw_ - 1 - xx);
    logits = f;
  }
  return resized(logits, h, w);
}

host_tensor<float> naive_predict(const fake_model& m, const host_tensor<float>& image,
                                 const eval::inference_options& o) {
  host_tensor<float> total;
  for (double s : o.scales)
    for (int f = 0; f < (o.flip ? 2 : 1); ++f) {
      auto term = naive_term(m, image, s, f == 1, o.window_h, o.window_w);
      if (total.empty()) {
        total = term;
      } else {
        for (int64_t i = 0; i < total.numel(); ++i) total[i] += term[i];
      }
    }
  return total;
}

}  // namespace

TEST_CASE("predict_logits: single scale is the model's logits, set up once", "[inference]") {
  fake_model m(3, 1);
  const auto image = random_image(1, 9, 13, 2);
  const auto a = eval::predict_logits(m, image, {});
  const auto b = eval::predict_logits(m, image, {});
  CHECK(m.setups == 1);
  CHECK(m.forwards == 2);
  testing::require_all_close(a, naive_predict(m, image, {}), 1e-5f, 1e-5f, "single scale");
  testing::require_all_close(a, b, 0, 0, "repeatable");
}

// A model that only takes multiples of 8 (as SaF and HFGD need multiples of 32).
struct multiple_of_8_model : fake_model {
  using fake_model::fake_model;
  int64_t size_multiple() const { return 8; }
  shape setup(const shape& s) {
    REQUIRE(s[2] % 8 == 0);
    REQUIRE(s[3] % 8 == 0);
    return fake_model::setup(s);
  }
};

TEST_CASE("predict_logits: padded to the model's size_multiple, logits cropped back",
          "[inference]") {
  multiple_of_8_model m(3, 1);
  fake_model plain(3, 1);  // same weights: the same closed form without padding
  const auto image = random_image(1, 9, 13, 2);
  const auto logits = eval::predict_logits(m, image, {});
  CHECK(m.input_shape() == shape{1, 3, 16, 16});
  REQUIRE(logits.shape() == shape{1, 3, 9, 13});
  // Padding is at the bottom and right, so every kept pixel keeps its coordinates and value.
  testing::require_all_close(logits, naive_predict(plain, image, {}), 1e-5f, 1e-5f, "padded");
  eval::inference_options scaled;
  scaled.scales = {0.75, 1.0};
  scaled.flip = true;
  CHECK(eval::predict_logits(m, image, scaled).shape() == shape{1, 3, 9, 13});
}

TEST_CASE("predict_logits: scales and flips summed after resizing back", "[inference]") {
  fake_model m(4, 3);
  const auto image = random_image(2, 12, 17, 4);
  for (bool flip : {false, true}) {
    eval::inference_options o;
    o.scales = {0.5, 0.75, 1.0, 1.25, 1.75};
    o.flip = flip;
    INFO("flip " << flip);
    const auto got = eval::predict_logits(m, image, o);
    REQUIRE(got.shape() == shape({2, 4, 12, 17}));
    testing::require_all_close(got, naive_predict(m, image, o), 1e-4f, 1e-5f, "multi-scale");
  }
  // Flip with one scale: the flipped term is not the unflipped one (the model is position
  // dependent), so forgetting to flip back would fail above; here check the sum explicitly.
  eval::inference_options one;
  one.flip = true;
  const auto sum = eval::predict_logits(m, image, one);
  const auto plain = naive_term(m, image, 1.0, false, 0, 0);
  const auto mirrored = naive_term(m, image, 1.0, true, 0, 0);
  host_tensor<float> expected(sum.shape());
  for (int64_t i = 0; i < expected.numel(); ++i) expected[i] = plain[i] + mirrored[i];
  testing::require_all_close(sum, expected, 1e-5f, 1e-5f, "flip sum");
}

TEST_CASE("predict_logits: sliding windows averaged by the count map", "[inference]") {
  fake_model m(3, 5);
  const auto image = random_image(1, 10, 7, 6);
  eval::inference_options o;
  o.window_h = 6;
  o.window_w = 4;  // strides 4 and 3: windows y [0,6) [4,10), x [0,4) [3,7)
  const auto got = eval::predict_logits(m, image, o);
  CHECK(m.forwards == 4);
  CHECK(m.setups == 1);  // every window has the window's shape
  CHECK(m.in == shape({1, 3, 6, 4}));
  testing::require_all_close(got, naive_predict(m, image, o), 1e-5f, 1e-5f, "windows");
  // Overlap column x = 3 is the mean of two windows with local x 3 and 0: not the whole-image
  // logit (which has x = 3), so averaging and placement both matter.
  const auto whole = eval::predict_logits(m, image, {});
  CHECK(std::fabs(got.at(0, 0, 1, 3) - whole.at(0, 0, 1, 3)) > 1e-4f);

  // Windows + scales + flip together, and an image smaller than the window at one scale.
  fake_model m2(2, 7);
  const auto image2 = random_image(1, 11, 14, 8);
  eval::inference_options all;
  all.scales = {0.5, 1.0, 1.5};
  all.flip = true;
  all.window_h = 8;
  all.window_w = 9;
  testing::require_all_close(eval::predict_logits(m2, image2, all), naive_predict(m2, image2, all),
                             1e-4f, 1e-5f, "windows, scales, flip");
}

TEST_CASE("predict_logits: stride 2/3 of the window as mmseg's configs", "[inference]") {
  CHECK(eval::detail::window_stride(512) == 341);
  CHECK(eval::detail::window_stride(769) == 513);
  CHECK(eval::detail::window_stride(1) == 1);
  CHECK(eval::detail::scaled_extent(360, 0.75) == 270);
  CHECK(eval::detail::scaled_extent(5, 0.5) == 3);  // int(2.5 + 0.5)
}

TEST_CASE("predict_logits: setup only when the shape changes", "[inference]") {
  fake_model m(2, 9);
  const auto a = random_image(1, 8, 8, 1), b = random_image(1, 6, 8, 2);
  eval::predict_logits(m, a, {});
  eval::predict_logits(m, a, {});
  eval::predict_logits(m, b, {});
  eval::predict_logits(m, b, {});
  eval::predict_logits(m, a, {});
  CHECK(m.setups == 3);
  eval::inference_options o;
  o.scales = {1.0, 0.5};
  eval::predict_logits(m, a, o);  // 8x8 is current: only 4x4 is new
  CHECK(m.setups == 4);
}

TEST_CASE("predict_logits: bad options and shapes", "[inference]") {
  fake_model m(2);
  const auto image = random_image(1, 4, 4, 0);
  eval::inference_options o;
  o.scales = {};
  CHECK_THROWS_AS(eval::predict_logits(m, image, o), value_error);
  o.scales = {0.0};
  CHECK_THROWS_WITH(eval::predict_logits(m, image, o), Catch::Contains("scale 0"));
  o.scales = {1.0};
  o.window_h = 4;
  CHECK_THROWS_AS(eval::predict_logits(m, image, o), value_error);  // window_w 0
  CHECK_THROWS_WITH(eval::predict_logits(m, host_tensor<float>({1, 4, 4, 4}), {}),
                    Catch::Contains("[1, 4, 4, 4]"));
}

namespace {

// Images whose red channel names a class (20 k), labels that mostly agree, with ignore and
// some deliberate disagreements, so the expected counts are known without any model.
class colour_dataset : public data::dataset {
 public:
  colour_dataset() {
    info_.name = "colour";
    info_.num_classes = 4;
    info_.class_names = {"a", "b", "c", "d"};
    info_.palette = {{0, 0, 0}, {1, 1, 1}, {2, 2, 2}, {3, 3, 3}};
  }
  const data::dataset_info& info() const override { return info_; }
  size_t size() const override { return 3; }
  data::example load(size_t index) const override {
    const int64_t h = 9 + int64_t(index), w = 12;
    data::example ex;
    ex.image = host_tensor<uint8_t>({h, w, 3});
    ex.label = host_tensor<int32_t>({h, w});
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const int32_t truth = int32_t((x / 4 + y / 5 + int64_t(index)) % 4);
        const int32_t shown = (x * 7 + y * 3 + int64_t(index)) % 11 == 0 ? (truth + 1) % 4 : truth;
        ex.image.at(y, x, 0) = uint8_t(20 * shown);
        ex.image.at(y, x, 1) = uint8_t(3 * x);
        ex.image.at(y, x, 2) = 200;
        ex.label.at(y, x) = (x + y) % 13 == 0 ? 255 : truth;
      }
    ex.image_path = "colour:" + std::to_string(index);
    return ex;
  }

 private:
  data::dataset_info info_;
};

}  // namespace

TEST_CASE("evaluate: confusion matrices equal the known counts; eval mode restored",
          "[inference]") {
  colour_dataset dataset;
  fake_model m(4);
  m.mode = fake_model::kind::colour;
  eval::confusion_matrix all(4), band(4);
  for (size_t i = 0; i < dataset.size(); ++i) {
    const auto ex = dataset.load(i);
    host_tensor<int32_t> shown(ex.label.shape());
    for (int64_t p = 0; p < shown.numel(); ++p) shown[p] = ex.image[p * 3] / 20;
    all.add(shown, ex.label);
    band.add(shown, ex.label, eval::boundary_mask(ex.label, {8}));
  }
  std::vector<size_t> progress;
  eval::evaluate_options options;
  const auto result = eval::evaluate(m, dataset, options,
                                     [&](size_t done, size_t total) {
                                       CHECK(total == 3);
                                       progress.push_back(done);
                                     });
  CHECK(result.all.counts() == all.counts());
  CHECK(result.boundary.counts() == band.counts());
  CHECK(result.miou == Approx(all.miou()));
  CHECK(result.boundary_miou == Approx(band.miou()));
  CHECK(result.pixel_accuracy == Approx(all.pixel_accuracy()));
  CHECK(result.pixel_accuracy < 1.0);
  CHECK(result.images == 3);
  CHECK(progress == std::vector<size_t>{1, 2, 3});
  CHECK(m.training());  // was training before: restored
  CHECK(m.setups == 3);  // three image sizes

  // With flip and two scales the colour classifier still sees the same colours at full size
  // only approximately; the whole-image path must still count every labelled pixel.
  options.max_images = 2;
  options.inference.flip = true;
  const auto two = eval::evaluate(m, dataset, options);
  CHECK(two.images == 2);

  fake_model wrong(5);
  wrong.mode = fake_model::kind::colour;
  CHECK_THROWS_WITH(eval::evaluate(wrong, dataset, eval::inference_options{}),
                    Catch::Contains("5 classes") && Catch::Contains("has 4"));
}
