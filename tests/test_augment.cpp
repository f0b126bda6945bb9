// Tests for data/augment.hpp: geometry against a naive full-resize-then-crop-then-flip
// reference (ops::resize on the whole image), padding, determinism, photometric steps.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>

#include "segkit/data/augment.hpp"
#include "segkit/data/random.hpp"
#include "segkit/ops/resize.hpp"

using namespace segkit;
using segkit::data::example;

namespace {

// A random image and a blocky label (blocks of random classes, a few ignore blocks).
example make_example(int h, int w, uint64_t seed) {
  data::rng r(seed);
  example e;
  e.image = host_tensor<uint8_t>(shape{h, w, 3});
  e.label = host_tensor<int32_t>(shape{h, w});
  for (int64_t i = 0; i < e.image.numel(); ++i) e.image[i] = static_cast<uint8_t>(r.uniform_int(0, 255));
  const int block = 5;
  std::vector<int32_t> classes(static_cast<size_t>((h / block + 1) * (w / block + 1)));
  for (auto& c : classes) c = r.bernoulli(0.05) ? 255 : static_cast<int32_t>(r.uniform_int(0, 6));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      e.label.at(y, x) = classes[static_cast<size_t>((y / block) * (w / block + 1) + x / block)];
  e.image_path = e.label_path = "test:" + std::to_string(seed);
  return e;
}

// Naive reference: full resize (ops::resize on [1, C, H, W]), crop, flip, normalise, pad.
data::augmented_sample reference(const example& e, const data::augment_plan& p,
                                 const data::augment_options& o) {
  const int64_t h = e.image.size(0), w = e.image.size(1);
  host_tensor<float> img(shape{1, 3, h, w}), lab(shape{1, 1, h, w});
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      for (int c = 0; c < 3; ++c) img.at(0, c, y, x) = e.image.at(y, x, c);
      lab.at(0, 0, y, x) = static_cast<float>(e.label.at(y, x));
    }
  host_tensor<float> big(shape{1, 3, p.scaled_h, p.scaled_w}), big_label(shape{1, 1, p.scaled_h, p.scaled_w});
  ops::resize_forward({ops::resize_mode::bilinear, false}, img, big);
  ops::resize_forward({ops::resize_mode::nearest, false}, lab, big_label);
  data::augmented_sample out;
  out.image = host_tensor<float>::zeros(shape{3, p.pad_h, p.pad_w});
  out.label = host_tensor<int32_t>(shape{p.pad_h, p.pad_w});
  out.label.fill(255);
  for (int y = 0; y < p.out_h; ++y)
    for (int x = 0; x < p.out_w; ++x) {
      const int sx = p.crop_x + (p.flip ? p.out_w - 1 - x : x), sy = p.crop_y + y;
      for (int c = 0; c < 3; ++c)
        out.image.at(c, y, x) = (big.at(0, c, sy, sx) - o.mean[static_cast<size_t>(c)]) / o.std[static_cast<size_t>(c)];
      out.label.at(y, x) = static_cast<int32_t>(big_label.at(0, 0, sy, sx));
    }
  return out;
}

}  // namespace

TEST_CASE("augment: scale, crop and flip match a full resize + crop + flip reference") {
  data::augment_options o;
  o.crop_h = 48;
  o.crop_w = 64;
  o.photometric = false;
  int flipped = 0, padded = 0, upscaled = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const example e = make_example(45 + static_cast<int>(seed % 7), 70 + static_cast<int>(seed % 5), seed);
    const auto plan = data::plan_augment(e, o, seed * 31 + 7);
    const auto got = data::apply_augment(e, plan, o);
    const auto want = reference(e, plan, o);
    REQUIRE(got.image.shape() == shape{3, 48, 64});
    REQUIRE(got.label.shape() == shape{48, 64});
    for (int64_t i = 0; i < got.label.numel(); ++i) REQUIRE(got.label[i] == want.label[i]);
    for (int64_t i = 0; i < got.image.numel(); ++i) REQUIRE(std::abs(got.image[i] - want.image[i]) < 1e-4f);
    flipped += plan.flip;
    padded += plan.out_h < 48 || plan.out_w < 64;
    upscaled += plan.scaled_h > e.image.size(0);
  }
  // The seeds cover both flips, padding and up- and down-scaling.
  CHECK(flipped > 5);
  CHECK(flipped < 35);
  CHECK(padded > 3);
  CHECK(upscaled > 3);
}

TEST_CASE("augment: padding is ignore in the label and 0 in the normalised image") {
  data::augment_options o;
  o.min_scale = o.max_scale = 0.5;
  o.crop_h = 40;
  o.crop_w = 50;
  const example e = make_example(30, 60, 3);  // scaled to 15 x 30
  const auto plan = data::plan_augment(e, o, 11);
  REQUIRE(plan.out_h == 15);
  REQUIRE(plan.out_w == 30);
  const auto s = data::augment(e, o, 11);
  for (int y = 0; y < 40; ++y)
    for (int x = 0; x < 50; ++x) {
      if (y < 15 && x < 30) continue;
      REQUIRE(s.label.at(y, x) == 255);
      for (int c = 0; c < 3; ++c) REQUIRE(s.image.at(c, y, x) == 0.f);
    }
}

TEST_CASE("augment: no crop keeps the whole scaled image; scale 1 without flip is normalize") {
  data::augment_options o;
  o.min_scale = o.max_scale = 1.0;
  o.crop_h = o.crop_w = 0;
  o.flip = false;
  o.photometric = false;
  const example e = make_example(21, 33, 5);
  const auto a = data::augment(e, o, 1);
  const auto b = data::normalize(e);
  REQUIRE(a.image.shape() == b.image.shape());
  for (int64_t i = 0; i < a.image.numel(); ++i) REQUIRE(std::abs(a.image[i] - b.image[i]) < 1e-5f);
  for (int64_t i = 0; i < a.label.numel(); ++i) REQUIRE(a.label[i] == b.label[i]);
  // normalize: (v - mean) / std per channel.
  CHECK(b.image.at(1, 3, 4) == Approx((e.image.at(3, 4, 1) - 116.28f) / 57.12f));
}

TEST_CASE("augment: deterministic in the seed, different across seeds") {
  data::augment_options o;
  o.crop_h = o.crop_w = 32;
  const example e = make_example(50, 60, 9);
  const auto a = data::augment(e, o, 1234), b = data::augment(e, o, 1234), c = data::augment(e, o, 1235);
  bool differ = false;
  for (int64_t i = 0; i < a.image.numel(); ++i) {
    REQUIRE(a.image[i] == b.image[i]);
    differ |= a.image[i] != c.image[i];
  }
  for (int64_t i = 0; i < a.label.numel(); ++i) REQUIRE(a.label[i] == b.label[i]);
  CHECK(differ);
}

TEST_CASE("augment: photometric changes the image, never the label or geometry") {
  data::augment_options on, off;
  on.crop_h = off.crop_h = 40;
  on.crop_w = off.crop_w = 40;
  off.photometric = false;
  int changed = 0;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const example e = make_example(50, 50, seed);
    const auto a = data::augment(e, on, seed), b = data::augment(e, off, seed);
    for (int64_t i = 0; i < a.label.numel(); ++i) REQUIRE(a.label[i] == b.label[i]);
    bool differ = false;
    for (int64_t i = 0; i < a.image.numel(); ++i) differ |= std::abs(a.image[i] - b.image[i]) > 1e-3f;
    changed += differ;
  }
  CHECK(changed >= 7);  // each of 4 steps fires with p = 1/2: all off has p = 1/16
}

TEST_CASE("photometric_distort: each step against its definition") {
  const auto run = [](std::array<float, 3> px, const data::photometric_params& p) {
    data::photometric_distort(px.data(), 1, p);
    return px;
  };
  data::photometric_params p;
  p.brightness = true;
  p.brightness_delta = 20;
  auto v = run({10.f, 100.f, 250.f}, p);
  CHECK(v[0] == Approx(30));
  CHECK(v[1] == Approx(120));
  CHECK(v[2] == Approx(255));  // clipped
  p = {};
  p.contrast = true;
  p.contrast_alpha = 1.5f;
  v = run({10.f, 100.f, 200.f}, p);
  CHECK(v[0] == Approx(15));
  CHECK(v[2] == Approx(255));
  // Grey has no saturation and no hue: both steps leave it unchanged.
  p = {};
  p.saturation = p.hue = true;
  p.saturation_alpha = 1.4f;
  p.hue_delta = 17;
  v = run({90.f, 90.f, 90.f}, p);
  CHECK(v[0] == Approx(90));
  CHECK(v[2] == Approx(90));
  // Hue +60 units = +120 degrees: pure red -> pure green.
  p = {};
  p.hue = true;
  p.hue_delta = 60;
  v = run({200.f, 0.f, 0.f}, p);
  CHECK(v[0] == Approx(0).margin(1e-3));
  CHECK(v[1] == Approx(200));
  CHECK(v[2] == Approx(0).margin(1e-3));
  // Saturation 0.5 halves the distance of each channel from the max (V kept).
  p = {};
  p.saturation = true;
  p.saturation_alpha = 0.5f;
  v = run({200.f, 100.f, 0.f}, p);
  CHECK(v[0] == Approx(200));
  CHECK(v[1] == Approx(150));
  CHECK(v[2] == Approx(100));
}

TEST_CASE("augment: cat_max_ratio prefers crops where no class dominates") {
  // Left 90% class 0, right 10% class 1: most random crops are a single class.
  example e;
  e.image = host_tensor<uint8_t>::zeros(shape{40, 200, 3});
  e.label = host_tensor<int32_t>(shape{40, 200});
  for (int y = 0; y < 40; ++y)
    for (int x = 0; x < 200; ++x) e.label.at(y, x) = x < 180 ? 0 : 1;
  data::augment_options with, without;
  with.min_scale = with.max_scale = without.min_scale = without.max_scale = 1.0;
  with.crop_h = without.crop_h = 40;
  with.crop_w = without.crop_w = 40;
  without.cat_max_ratio = 1.0;
  int balanced_with = 0, balanced_without = 0;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    const auto a = data::plan_augment(e, with, seed), b = data::plan_augment(e, without, seed);
    balanced_with += a.crop_x > 180 - 40 + 10;  // >= 25% of class 1... (class 0 < 75%)
    balanced_without += b.crop_x > 180 - 40 + 10;
  }
  CHECK(balanced_with > balanced_without + 10);
}

TEST_CASE("augment: bad options and shapes name the values") {
  const example e = make_example(20, 20, 1);
  data::augment_options o;
  o.min_scale = 2;
  o.max_scale = 1;
  CHECK_THROWS_AS(data::augment(e, o, 0), value_error);
  o = {};
  o.crop_h = -1;
  CHECK_THROWS_WITH(data::augment(e, o, 0), Catch::Contains("crop -1x512"));
  example bad = e;
  bad.label = host_tensor<int32_t>(shape{19, 20});
  CHECK_THROWS_WITH(data::augment(bad, {}, 0), Catch::Contains("[20, 20, 3]") && Catch::Contains("[19, 20]"));
}
