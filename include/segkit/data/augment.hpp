// segkit/data/augment.hpp — mmsegmentation's training augmentation and the evaluation
// normalisation, on data::example.
// Provides: data::augment_options, data::augmented_sample, data::augment_plan (every random
// choice of one call), data::plan_augment, data::apply_augment, data::augment (= apply(plan)),
// data::photometric_distort, data::normalize (evaluation: no augmentation, full size).
// Pipeline (mmseg 1.x order): random scale r in [min_scale, max_scale] of the image's own size
// (new size round(H r) x round(W r), at least 1; keep ratio) -> random crop (crop_h x crop_w,
// offsets uniform over the valid range; with cat_max_ratio < 1 up to 10 tries for a crop whose
// largest class holds < cat_max_ratio of the non-ignore pixels and that has >= 2 classes, as
// mmseg's RandomCrop) -> horizontal flip with probability flip_prob -> photometric distortion
// (mmseg's PhotoMetricDistortion: brightness +-32, contrast x[0.5, 1.5] before or after the
// HSV steps, saturation x[0.5, 1.5], hue +-18 in OpenCV's 0..180 units, each step with
// probability 1/2) -> normalise ((v - mean) / std, RGB, CHW) -> pad bottom/right to the crop
// size with 0 in the image (i.e. the mean colour) and ignore (255) in the label.
// Resampling: the image is bilinear with half-pixel centres and the label nearest, with exactly
// ops::resize's tap math (PyTorch F.interpolate, align_corners=false; nearest = floor(dst *
// in / out)), evaluated only at the pixels the crop keeps (the result equals a full resize
// followed by the crop, at a fraction of the cost). Values stay float after resizing (no
// re-rounding to uint8 as OpenCV does) and the photometric steps clip to [0, 255] in float
// with a float HSV conversion, so results match mmseg's distribution, not its bytes.
// Requires: crop_h, crop_w >= 0 (0 = no crop: the whole scaled image), 0 < min_scale <=
// max_scale, std > 0 (value_error naming the value otherwise); the example's image [H, W, 3]
// and label [H, W] (shape_error naming both shapes otherwise).
// Guarantees: the result is a pure function of (example, options, seed) — single-threaded,
// the portable data::rng, the same draws in the same order whether or not photometric or flip
// is enabled (so turning photometric off changes only the image, never the geometry).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "segkit/data/dataset.hpp"
#include "segkit/data/random.hpp"
#include "segkit/ops/resize.hpp"

namespace segkit::data {

struct augment_options {
  double min_scale = 0.5, max_scale = 2.0;
  int crop_h = 512, crop_w = 512;  // 0 = no crop
  bool flip = true;
  double flip_prob = 0.5;
  bool photometric = true;
  double cat_max_ratio = 0.75;  // >= 1 disables the retries
  std::array<float, 3> mean{123.675f, 116.28f, 103.53f};
  std::array<float, 3> std{58.395f, 57.12f, 57.375f};
};

struct augmented_sample {
  host_tensor<float> image;    // [3, H, W] normalised RGB
  host_tensor<int32_t> label;  // [H, W] train ids or 255
};

struct photometric_params {
  bool brightness = false;
  float brightness_delta = 0;  // added
  bool contrast = false;
  float contrast_alpha = 1;  // multiplied
  bool contrast_first = false;
  bool saturation = false;
  float saturation_alpha = 1;
  bool hue = false;
  int hue_delta = 0;  // OpenCV hue units (2 degrees)
};

struct augment_plan {
  int scaled_h = 0, scaled_w = 0;  // the image size after the random scale
  int crop_y = 0, crop_x = 0;      // top-left of the crop in the scaled image
  int out_h = 0, out_w = 0;        // crop size actually inside the scaled image
  int pad_h = 0, pad_w = 0;        // final size (crop size, or out size without a crop)
  bool flip = false;
  photometric_params photometric;  // drawn always; applied only with options.photometric
};

namespace augment_detail {

inline void check_options(const augment_options& o) {
  require<value_error>(o.min_scale > 0 && o.min_scale <= o.max_scale, "augment: scale range [",
                       o.min_scale, ", ", o.max_scale, "] must satisfy 0 < min <= max");
  require<value_error>(o.crop_h >= 0 && o.crop_w >= 0, "augment: crop ", o.crop_h, "x", o.crop_w,
                       " must be >= 0 (0 = no crop)");
  require<value_error>(o.flip_prob >= 0 && o.flip_prob <= 1, "augment: flip_prob ", o.flip_prob,
                       " must be in [0, 1]");
  for (int c = 0; c < 3; ++c)
    require<value_error>(o.std[static_cast<size_t>(c)] > 0, "augment: std[", c, "] = ",
                         o.std[static_cast<size_t>(c)], " must be > 0");
}

inline void check_example(const char* op, const example& e) {
  const shape& is = e.image.shape();
  const shape& ls = e.label.shape();
  require<shape_error>(is.rank() == 3 && is[2] == 3 && ls.rank() == 2 && is[0] == ls[0] &&
                           is[1] == ls[1] && is[0] >= 1 && is[1] >= 1,
                       op, ": image has shape ", is.to_string(), " and label has shape ",
                       ls.to_string(), "; expected [H, W, 3] and [H, W] (",
                       e.image_path.empty() ? std::string("unnamed") : e.image_path, ")");
}

// Source row / column of the scaled image's index `dst` (nearest, as ops::resize).
inline int64_t nearest_tap(int64_t dst, int64_t in, int64_t out) {
  return ops::math::nearest_source(dst, in, out);
}

// The crop's nearest-resampled label, before flipping: out_h x out_w.
inline std::vector<int32_t> crop_label(const example& e, int scaled_h, int scaled_w, int y0,
                                       int x0, int out_h, int out_w) {
  const int64_t in_h = e.label.size(0), in_w = e.label.size(1);
  std::vector<int64_t> cols(static_cast<size_t>(out_w));
  for (int x = 0; x < out_w; ++x) cols[static_cast<size_t>(x)] = nearest_tap(x0 + x, in_w, scaled_w);
  std::vector<int32_t> out(static_cast<size_t>(out_h) * out_w);
  for (int y = 0; y < out_h; ++y) {
    const int32_t* row = e.label.data() + nearest_tap(y0 + y, in_h, scaled_h) * in_w;
    for (int x = 0; x < out_w; ++x)
      out[static_cast<size_t>(y) * out_w + x] = row[cols[static_cast<size_t>(x)]];
  }
  return out;
}

// mmseg's cat_max_ratio test: >= 2 classes and the largest below the ratio (ignore excluded).
inline bool crop_is_balanced(const std::vector<int32_t>& labels, double ratio, int32_t ignore) {
  std::vector<int64_t> counts;
  int64_t total = 0;
  for (int32_t v : labels) {
    if (v == ignore || v < 0) continue;
    if (static_cast<size_t>(v) >= counts.size()) counts.resize(static_cast<size_t>(v) + 1, 0);
    ++counts[static_cast<size_t>(v)];
    ++total;
  }
  int64_t classes = 0, largest = 0;
  for (int64_t c : counts)
    if (c > 0) {
      ++classes;
      largest = std::max(largest, c);
    }
  return classes > 1 && static_cast<double>(largest) < ratio * static_cast<double>(total);
}

inline void rgb_to_hsv(float r, float g, float b, float& h, float& s, float& v) {
  const float mx = std::max(r, std::max(g, b)), mn = std::min(r, std::min(g, b));
  const float d = mx - mn;
  v = mx;
  s = mx > 0 ? d / mx : 0.f;
  if (d <= 0) {
    h = 0;
    return;
  }
  if (mx == r) h = 60.f * (g - b) / d;
  else if (mx == g) h = 120.f + 60.f * (b - r) / d;
  else h = 240.f + 60.f * (r - g) / d;
  if (h < 0) h += 360.f;
}

inline void hsv_to_rgb(float h, float s, float v, float& r, float& g, float& b) {
  const float c = v * s;
  const float hp = h / 60.f;
  const float x = c * (1.f - std::abs(std::fmod(hp, 2.f) - 1.f));
  float r1 = 0, g1 = 0, b1 = 0;
  if (hp < 1) { r1 = c; g1 = x; }
  else if (hp < 2) { r1 = x; g1 = c; }
  else if (hp < 3) { g1 = c; b1 = x; }
  else if (hp < 4) { g1 = x; b1 = c; }
  else if (hp < 5) { r1 = x; b1 = c; }
  else { r1 = c; b1 = x; }
  const float m = v - c;
  r = r1 + m;
  g = g1 + m;
  b = b1 + m;
}

}  // namespace augment_detail

// mmseg's PhotoMetricDistortion on `pixels` interleaved RGB float values in [0, 255].
inline void photometric_distort(float* pixels, int64_t count, const photometric_params& p) {
  const auto clip = [](float v) { return std::min(255.f, std::max(0.f, v)); };
  const auto contrast = [&] {
    if (!p.contrast) return;
    for (int64_t i = 0; i < 3 * count; ++i) pixels[i] = clip(pixels[i] * p.contrast_alpha);
  };
  if (p.brightness)
    for (int64_t i = 0; i < 3 * count; ++i) pixels[i] = clip(pixels[i] + p.brightness_delta);
  if (p.contrast_first) contrast();
  if (p.saturation || p.hue) {
    for (int64_t i = 0; i < count; ++i) {
      float* px = pixels + 3 * i;
      float h, s, v;
      augment_detail::rgb_to_hsv(px[0], px[1], px[2], h, s, v);
      if (p.saturation) s = std::min(1.f, std::max(0.f, s * p.saturation_alpha));
      if (p.hue) {
        h = std::fmod(h + 2.f * static_cast<float>(p.hue_delta), 360.f);
        if (h < 0) h += 360.f;
      }
      augment_detail::hsv_to_rgb(h, s, v, px[0], px[1], px[2]);
    }
  }
  if (!p.contrast_first) contrast();
}

// Every random choice of augment(e, options, seed), in a fixed order of draws.
inline augment_plan plan_augment(const example& e, const augment_options& o, uint64_t seed) {
  augment_detail::check_options(o);
  augment_detail::check_example("plan_augment", e);
  rng r(seed);
  augment_plan plan;
  const auto h = static_cast<double>(e.image.size(0)), w = static_cast<double>(e.image.size(1));
  const double ratio = r.uniform(o.min_scale, o.max_scale);
  plan.scaled_h = std::max(1, static_cast<int>(std::lround(h * ratio)));
  plan.scaled_w = std::max(1, static_cast<int>(std::lround(w * ratio)));
  const bool crop = o.crop_h > 0 && o.crop_w > 0;
  plan.out_h = crop ? std::min(o.crop_h, plan.scaled_h) : plan.scaled_h;
  plan.out_w = crop ? std::min(o.crop_w, plan.scaled_w) : plan.scaled_w;
  plan.pad_h = crop ? o.crop_h : plan.out_h;
  plan.pad_w = crop ? o.crop_w : plan.out_w;
  const int tries = crop && o.cat_max_ratio < 1.0 ? 10 : 1;
  for (int t = 0; t < tries; ++t) {
    plan.crop_y = static_cast<int>(r.uniform_int(0, plan.scaled_h - plan.out_h));
    plan.crop_x = static_cast<int>(r.uniform_int(0, plan.scaled_w - plan.out_w));
    if (tries == 1) break;
    const auto labels = augment_detail::crop_label(e, plan.scaled_h, plan.scaled_w, plan.crop_y,
                                                   plan.crop_x, plan.out_h, plan.out_w);
    if (augment_detail::crop_is_balanced(labels, o.cat_max_ratio, ignore_label)) break;
  }
  plan.flip = r.bernoulli(o.flip_prob) && o.flip;
  auto& p = plan.photometric;
  p.brightness = r.bernoulli(0.5);
  p.brightness_delta = static_cast<float>(r.uniform(-32.0, 32.0));
  p.contrast_first = r.bernoulli(0.5);
  p.contrast = r.bernoulli(0.5);
  p.contrast_alpha = static_cast<float>(r.uniform(0.5, 1.5));
  p.saturation = r.bernoulli(0.5);
  p.saturation_alpha = static_cast<float>(r.uniform(0.5, 1.5));
  p.hue = r.bernoulli(0.5);
  p.hue_delta = static_cast<int>(r.uniform_int(-18, 18));
  return plan;
}

// Applies a plan (from plan_augment on the same example and options).
inline augmented_sample apply_augment(const example& e, const augment_plan& plan,
                                      const augment_options& o) {
  augment_detail::check_options(o);
  augment_detail::check_example("apply_augment", e);
  const int64_t in_h = e.image.size(0), in_w = e.image.size(1);
  const int oh = plan.out_h, ow = plan.out_w;
  require<value_error>(oh >= 1 && ow >= 1 && plan.crop_y >= 0 && plan.crop_x >= 0 &&
                           plan.crop_y + oh <= plan.scaled_h && plan.crop_x + ow <= plan.scaled_w &&
                           plan.pad_h >= oh && plan.pad_w >= ow,
                       "apply_augment: the plan's crop does not fit its scaled size");
  // Taps per output column / row (flip folded into the columns).
  const float scale_h = ops::math::linear_scale(in_h, plan.scaled_h, false);
  const float scale_w = ops::math::linear_scale(in_w, plan.scaled_w, false);
  std::vector<ops::math::linear_taps> tx(static_cast<size_t>(ow));
  std::vector<int64_t> nx(static_cast<size_t>(ow));
  for (int x = 0; x < ow; ++x) {
    const int64_t sx = plan.crop_x + (plan.flip ? ow - 1 - x : x);
    tx[static_cast<size_t>(x)] = ops::math::linear_source(sx, in_w, plan.scaled_w, scale_w, false);
    nx[static_cast<size_t>(x)] = augment_detail::nearest_tap(sx, in_w, plan.scaled_w);
  }
  std::vector<float> pixels(static_cast<size_t>(oh) * ow * 3);
  augmented_sample result;
  result.label = host_tensor<int32_t>(shape{plan.pad_h, plan.pad_w});
  result.label.fill(ignore_label);
  const uint8_t* src = e.image.data();
  for (int y = 0; y < oh; ++y) {
    const int64_t sy = plan.crop_y + y;
    const auto ty = ops::math::linear_source(sy, in_h, plan.scaled_h, scale_h, false);
    const uint8_t* row0 = src + ty.i0 * in_w * 3;
    const uint8_t* row1 = src + ty.i1 * in_w * 3;
    float* out = pixels.data() + static_cast<size_t>(y) * ow * 3;
    for (int x = 0; x < ow; ++x) {
      const auto& t = tx[static_cast<size_t>(x)];
      for (int c = 0; c < 3; ++c) {
        const float top = t.w0 * row0[t.i0 * 3 + c] + t.w1 * row0[t.i1 * 3 + c];
        const float bottom = t.w0 * row1[t.i0 * 3 + c] + t.w1 * row1[t.i1 * 3 + c];
        out[x * 3 + c] = ty.w0 * top + ty.w1 * bottom;
      }
    }
    const int32_t* lrow =
        e.label.data() + augment_detail::nearest_tap(sy, in_h, plan.scaled_h) * in_w;
    int32_t* lout = result.label.data() + static_cast<int64_t>(y) * plan.pad_w;
    for (int x = 0; x < ow; ++x) lout[x] = lrow[nx[static_cast<size_t>(x)]];
  }
  if (o.photometric) photometric_distort(pixels.data(), static_cast<int64_t>(oh) * ow, plan.photometric);
  result.image = host_tensor<float>::zeros(shape{3, plan.pad_h, plan.pad_w});
  for (int c = 0; c < 3; ++c) {
    const float mean = o.mean[static_cast<size_t>(c)], inv = 1.f / o.std[static_cast<size_t>(c)];
    float* plane = result.image.data() + static_cast<int64_t>(c) * plan.pad_h * plan.pad_w;
    for (int y = 0; y < oh; ++y)
      for (int x = 0; x < ow; ++x)
        plane[static_cast<int64_t>(y) * plan.pad_w + x] =
            (pixels[(static_cast<size_t>(y) * ow + x) * 3 + c] - mean) * inv;
  }
  return result;
}

inline augmented_sample augment(const example& e, const augment_options& o, uint64_t seed) {
  return apply_augment(e, plan_augment(e, o, seed), o);
}

// Evaluation input: the whole image normalised to [3, H, W], the label copied.
inline augmented_sample normalize(const example& e, const std::array<float, 3>& mean = {123.675f, 116.28f, 103.53f},
                                  const std::array<float, 3>& std = {58.395f, 57.12f, 57.375f}) {
  augment_detail::check_example("normalize", e);
  const int64_t h = e.image.size(0), w = e.image.size(1);
  augmented_sample result;
  result.image = host_tensor<float>(shape{3, h, w});
  for (int c = 0; c < 3; ++c) {
    require<value_error>(std[static_cast<size_t>(c)] > 0, "normalize: std[", c, "] must be > 0");
    const float m = mean[static_cast<size_t>(c)], inv = 1.f / std[static_cast<size_t>(c)];
    float* plane = result.image.data() + c * h * w;
    for (int64_t i = 0; i < h * w; ++i) plane[i] = (static_cast<float>(e.image[i * 3 + c]) - m) * inv;
  }
  result.label = e.label.clone();
  return result;
}

}  // namespace segkit::data
