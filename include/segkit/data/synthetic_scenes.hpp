// segkit/data/synthetic_scenes.hpp — procedurally drawn street scenes with exact labels, for
// tests, smoke training and benchmarks without downloading anything.
// Provides: data::synthetic_scenes_dataset(count, height, width, seed), a data::dataset of 8
// classes (sky, building, road, vegetation, vehicle, person, pole, sign) with names and a
// palette in info(); data::synthetic_class enumerates them.
// Requires: height, width >= 16 (value_error otherwise), count >= 1.
// Guarantees: example i is a pure function of (seed, i, height, width) — the same bytes on every
// run, platform and thread (own splitmix64 random source, no std distributions, no globals), so
// load() is safe to call from several threads at once. Every label pixel is a class in [0, 8)
// (no ignore pixels). The scene: a sky gradient with clouds above a random horizon; a road in
// perspective towards a vanishing point with dashed lane marks, sidewalks or grass verges and a
// texture that gets finer with distance; distant hazy and near buildings with window grids;
// trees; vehicles, persons, poles and signs standing on the ground, scaled by their distance
// (camera 1.5 m above a flat ground) and drawn far to near (nearer objects occlude farther
// ones), with soft ground shadows, shading, a slight blur and mild noise.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "segkit/data/dataset.hpp"
#include "segkit/data/random.hpp"

namespace segkit::data {

enum synthetic_class : int32_t {
  scene_sky = 0,
  scene_building = 1,
  scene_road = 2,
  scene_vegetation = 3,
  scene_vehicle = 4,
  scene_person = 5,
  scene_pole = 6,
  scene_sign = 7,
};

namespace scene_detail {

using rgb = std::array<float, 3>;

inline rgb lerp(const rgb& a, const rgb& b, float t) {
  return {a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t};
}
inline rgb scale(const rgb& a, float s) { return {a[0] * s, a[1] * s, a[2] * s}; }

// Smooth value noise in about [-1, 1] on a lattice of spacing 1, keyed by `key`.
inline float lattice(uint64_t key, int64_t x, int64_t y) {
  const uint64_t h = splitmix64(key ^ (static_cast<uint64_t>(x) * 0x9E3779B97F4A7C15ull) ^
                                (static_cast<uint64_t>(y) * 0xC2B2AE3D27D4EB4Full));
  return static_cast<float>(h >> 40) * (2.f / 16777216.f) - 1.f;
}
inline float value_noise(uint64_t key, float x, float y) {
  const float fx = std::floor(x), fy = std::floor(y);
  const auto ix = static_cast<int64_t>(fx), iy = static_cast<int64_t>(fy);
  float tx = x - fx, ty = y - fy;
  tx = tx * tx * (3.f - 2.f * tx);
  ty = ty * ty * (3.f - 2.f * ty);
  const float a = lattice(key, ix, iy), b = lattice(key, ix + 1, iy);
  const float c = lattice(key, ix, iy + 1), d = lattice(key, ix + 1, iy + 1);
  return (a + (b - a) * tx) + ((c + (d - c) * tx) - (a + (b - a) * tx)) * ty;
}
inline float fbm(uint64_t key, float x, float y, int octaves = 3) {
  float sum = 0.f, amplitude = 0.5f;
  for (int o = 0; o < octaves; ++o) {
    sum += amplitude * value_noise(key + static_cast<uint64_t>(o), x, y);
    x *= 2.f;
    y *= 2.f;
    amplitude *= 0.5f;
  }
  return sum;
}

struct canvas {
  int h, w;
  std::vector<float> pixels;  // [h, w, 3]
  std::vector<int32_t> labels;
  canvas(int height, int width)
      : h(height), w(width), pixels(static_cast<size_t>(height) * width * 3, 0.f),
        labels(static_cast<size_t>(height) * width, scene_sky) {}
  void put(int x, int y, const rgb& c, int32_t cls) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    const size_t i = static_cast<size_t>(y) * w + x;
    pixels[3 * i] = c[0];
    pixels[3 * i + 1] = c[1];
    pixels[3 * i + 2] = c[2];
    labels[i] = cls;
  }
  // Darkens (shadow) without changing the label.
  void shade(int x, int y, float factor) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    const size_t i = static_cast<size_t>(y) * w + x;
    for (int c = 0; c < 3; ++c) pixels[3 * i + c] *= factor;
  }
  // Calls paint(x, y, u, v) for the pixels of the box [x0, x1) x [y0, y1) on the canvas, with
  // u, v in [0, 1) the position inside the box.
  template <class F>
  void box(float x0, float y0, float x1, float y1, F&& paint) {
    const int ix0 = std::max(0, static_cast<int>(std::floor(x0)));
    const int iy0 = std::max(0, static_cast<int>(std::floor(y0)));
    const int ix1 = std::min(w, static_cast<int>(std::ceil(x1)));
    const int iy1 = std::min(h, static_cast<int>(std::ceil(y1)));
    const float bw = std::max(x1 - x0, 1e-3f), bh = std::max(y1 - y0, 1e-3f);
    for (int y = iy0; y < iy1; ++y)
      for (int x = ix0; x < ix1; ++x) {
        const float cx = static_cast<float>(x) + 0.5f, cy = static_cast<float>(y) + 0.5f;
        if (cx < x0 || cx >= x1 || cy < y0 || cy >= y1) continue;
        paint(x, y, (cx - x0) / bw, (cy - y0) / bh);
      }
  }
};

inline rgb pick(rng& r, std::initializer_list<rgb> options) {
  const auto k = static_cast<size_t>(r.uniform_int(0, static_cast<int64_t>(options.size()) - 1));
  return *(options.begin() + k);
}
inline rgb jitter(rng& r, const rgb& c, float amount) {
  const float s = static_cast<float>(r.uniform(1.0 - amount, 1.0 + amount));
  return {c[0] * s, c[1] * s, c[2] * s};
}

class scene_painter {
 public:
  scene_painter(int height, int width, uint64_t seed)
      : c_(height, width), r_(seed), key_(mix_seed(seed, 0x5CE4E)) {}

  canvas paint() {
    const float h = static_cast<float>(c_.h), w = static_cast<float>(c_.w);
    horizon_ = h * static_cast<float>(r_.uniform(0.36, 0.52));
    vanish_x_ = w * static_cast<float>(r_.uniform(0.3, 0.7));
    road_half_ = w * static_cast<float>(r_.uniform(0.35, 0.7));  // at the bottom row
    sky_top_ = jitter(r_, {60.f, 110.f, 195.f}, 0.15f);
    sky_low_ = jitter(r_, {195.f, 212.f, 228.f}, 0.06f);
    left_grass_ = r_.bernoulli(0.4);
    right_grass_ = r_.bernoulli(0.4);
    sun_x_ = static_cast<float>(r_.uniform(-1.0, 1.0));  // light direction for shading
    sky();
    ground();
    buildings(true);
    buildings(false);
    trees();
    objects();
    finish();
    return std::move(c_);
  }

 private:
  // Pixels per metre at image row y on the ground (camera height 1.5 m: an object as tall as
  // the camera reaches the horizon).
  float unit(float y) const { return std::max(0.f, (y - horizon_) / 1.5f); }
  float road_half_width(float y) const {
    return road_half_ * (y - horizon_) / (static_cast<float>(c_.h) - horizon_);
  }
  rgb haze(const rgb& colour, float y) const {
    // Colours near the horizon fade towards the horizon's sky colour.
    const float d = std::abs(y - horizon_) / static_cast<float>(c_.h);
    return lerp(sky_low_, colour, std::min(1.f, 0.35f + d * 4.f));
  }

  void sky() {
    const float cloudiness = static_cast<float>(r_.uniform(-0.1, 0.35));
    const float cloud_scale = static_cast<float>(c_.w) / static_cast<float>(r_.uniform(3.0, 7.0));
    const int rows = std::min(c_.h, static_cast<int>(std::ceil(horizon_)) + 1);  // ground below
    for (int y = 0; y < rows; ++y) {
      const float t = std::min(1.f, static_cast<float>(y) / std::max(1.f, horizon_));
      const rgb base = lerp(sky_top_, sky_low_, std::pow(t, 0.8f));
      for (int x = 0; x < c_.w; ++x) {
        const float n = fbm(key_ + 10, static_cast<float>(x) / cloud_scale,
                            static_cast<float>(y) / (cloud_scale * 0.45f), 4);
        const float cloud = std::clamp((n + cloudiness) * 3.f, 0.f, 1.f) * (1.f - 0.5f * t);
        c_.put(x, y, lerp(base, {238.f, 240.f, 244.f}, cloud), scene_sky);
      }
    }
  }

  void ground() {
    const rgb asphalt = jitter(r_, {98.f, 98.f, 102.f}, 0.12f);
    const rgb sidewalk = jitter(r_, {170.f, 160.f, 145.f}, 0.1f);
    const rgb grass = jitter(r_, {85.f, 125.f, 60.f}, 0.12f);
    const float dash = static_cast<float>(r_.uniform(2.0, 4.0));  // metres
    const int y0 = static_cast<int>(std::ceil(horizon_));
    for (int y = y0; y < c_.h; ++y) {
      const float yc = static_cast<float>(y) + 0.5f;
      const float depth = 1.5f / std::max(1e-3f, (yc - horizon_) / (static_cast<float>(c_.h)));
      const float half = road_half_width(yc), u = std::max(1e-3f, unit(yc));
      const float light = 0.85f + 0.15f * std::min(1.f, (yc - horizon_) / (0.5f * c_.h));
      for (int x = 0; x < c_.w; ++x) {
        const float dx = static_cast<float>(x) + 0.5f - vanish_x_;
        const float metres_x = dx / u;  // lateral position on the ground in metres
        const float n = fbm(key_ + 20, metres_x * 1.5f, depth * 1.5f, 3);
        rgb colour;
        int32_t cls = scene_road;
        if (std::abs(dx) <= half) {
          colour = scale(asphalt, light * (1.f + 0.12f * n));
          // Dashed centre line and solid edge lines, 0.15 m wide.
          const bool centre = std::abs(metres_x) < 0.08f && std::fmod(depth, dash * 2.f) < dash;
          const bool edge = std::abs(std::abs(dx) - half) < 0.12f * u + 0.3f;
          if (centre || edge) colour = scale({215.f, 215.f, 205.f}, light * (1.f + 0.05f * n));
        } else {
          const bool is_grass = dx < 0 ? left_grass_ : right_grass_;
          if (is_grass) {
            cls = scene_vegetation;
            const float blades = fbm(key_ + 30, metres_x * 8.f, depth * 8.f, 2);
            colour = scale(grass, light * (1.f + 0.25f * n + 0.15f * blades));
          } else {
            // Paving slabs: a faint grid of joints every 0.6 m.
            const float gx = std::fmod(std::abs(metres_x), 0.6f), gz = std::fmod(depth, 0.6f);
            const float joint = (gx < 0.03f || gz < 0.03f) ? 0.85f : 1.f;
            colour = scale(sidewalk, light * joint * (1.f + 0.08f * n));
          }
        }
        c_.put(x, y, haze(colour, yc), cls);
      }
    }
  }

  // A row of building blocks standing on the horizon, leaving the street's far end open.
  void buildings(bool far) {
    const float h = static_cast<float>(c_.h), w = static_cast<float>(c_.w);
    float x = -static_cast<float>(r_.uniform(0.0, 0.1)) * w;
    const float street = w * static_cast<float>(r_.uniform(0.04, 0.12));
    while (x < w) {
      const float bw = w * static_cast<float>(far ? r_.uniform(0.06, 0.16) : r_.uniform(0.1, 0.3));
      const bool gap = r_.bernoulli(far ? 0.15 : 0.3);
      const float top = horizon_ - h * static_cast<float>(far ? r_.uniform(0.05, 0.2)
                                                              : r_.uniform(0.12, 0.42));
      const float bottom = horizon_ + h * static_cast<float>(far ? 0.005 : r_.uniform(0.0, 0.03));
      const rgb facade = jitter(r_, pick(r_, {{150.f, 80.f, 60.f}, {200.f, 185.f, 160.f},
                                              {130.f, 130.f, 135.f}, {220.f, 215.f, 205.f},
                                              {175.f, 140.f, 100.f}}), 0.1f);
      const rgb glass = jitter(r_, {55.f, 70.f, 90.f}, 0.2f);
      const int cols = static_cast<int>(r_.uniform_int(2, 7));
      const int rows = static_cast<int>(r_.uniform_int(3, 10));
      const float fill = static_cast<float>(r_.uniform(0.45, 0.7));
      const uint64_t wall_key = r_.next();
      const bool blocks_street = x + bw > vanish_x_ - street && x < vanish_x_ + street;
      if (!gap && !(blocks_street && !far)) {
        c_.box(x, top, x + bw, bottom, [&](int px, int py, float u, float v) {
          // Side light across the block, darker towards the ground.
          float shade = 1.f + 0.12f * sun_x_ * (u - 0.5f) - 0.15f * v;
          shade *= 1.f + 0.05f * value_noise(wall_key, static_cast<float>(px) / 4.f,
                                             static_cast<float>(py) / 4.f);
          rgb colour = scale(facade, shade);
          if (v < 0.03f) colour = scale(facade, 0.7f);  // cornice
          const float gu = u * static_cast<float>(cols), gv = v * static_cast<float>(rows) * 1.05f;
          const float fu = gu - std::floor(gu), fv = gv - std::floor(gv);
          if (gv < static_cast<float>(rows) && v > 0.05f &&
              std::abs(fu - 0.5f) < fill * 0.5f && std::abs(fv - 0.5f) < fill * 0.45f)
            colour = lerp(glass, {170.f, 185.f, 200.f}, 0.6f * (1.f - fv));  // sky reflection
          if (far) colour = lerp(colour, sky_low_, 0.45f);
          c_.put(px, py, colour, scene_building);
        });
      }
      x += bw;
    }
  }

  void tree(float base_x, float base_y) {
    const float u = unit(base_y);
    if (u < 0.4f) return;
    const float trunk_h = u * static_cast<float>(r_.uniform(1.5, 3.0));
    const float trunk_w = std::max(1.f, u * 0.25f);
    const rgb bark = jitter(r_, {80.f, 60.f, 45.f}, 0.15f);
    const rgb leaf = jitter(r_, {55.f, 105.f, 45.f}, 0.2f);
    c_.box(base_x - trunk_w / 2, base_y - trunk_h, base_x + trunk_w / 2, base_y,
           [&](int px, int py, float uu, float) {
             c_.put(px, py, scale(bark, 0.8f + 0.4f * uu), scene_vegetation);
           });
    const int blobs = static_cast<int>(r_.uniform_int(3, 6));
    const float crown = u * static_cast<float>(r_.uniform(1.5, 2.8));
    const uint64_t leaf_key = r_.next();
    for (int b = 0; b < blobs; ++b) {
      const float cx = base_x + crown * static_cast<float>(r_.uniform(-0.6, 0.6));
      const float cy = base_y - trunk_h - crown * static_cast<float>(r_.uniform(0.15, 0.6));
      const float rx = crown * static_cast<float>(r_.uniform(0.45, 0.8)), ry = rx * 0.85f;
      c_.box(cx - rx * 1.2f, cy - ry * 1.2f, cx + rx * 1.2f, cy + ry * 1.2f,
             [&](int px, int py, float, float) {
               const float dx = (static_cast<float>(px) + 0.5f - cx) / rx;
               const float dy = (static_cast<float>(py) + 0.5f - cy) / ry;
               const float n = fbm(leaf_key, static_cast<float>(px) / (0.15f * u + 1.f),
                                   static_cast<float>(py) / (0.15f * u + 1.f), 2);
               if (dx * dx + dy * dy > 1.f + 0.6f * n) return;
               const float light = 1.f - 0.25f * (dy + 1.f) * 0.5f + 0.15f * sun_x_ * dx + 0.3f * n;
               c_.put(px, py, haze(scale(leaf, light), base_y), scene_vegetation);
             });
    }
  }

  void trees() {
    const int count = static_cast<int>(r_.uniform_int(0, 4));
    for (int i = 0; i < count; ++i) {
      const float y = horizon_ + (static_cast<float>(c_.h) - horizon_) *
                                     static_cast<float>(r_.uniform(0.02, 0.5));
      const float side = r_.bernoulli(0.5) ? -1.f : 1.f;
      const float x = vanish_x_ + side * (road_half_width(y) + unit(y) * static_cast<float>(
                                                                   r_.uniform(1.0, 3.0)));
      tree(x, y);
    }
  }

  void shadow(float cx, float base_y, float half_width, float u) {
    const float depth = std::max(1.f, 0.25f * u);
    c_.box(cx - half_width * 1.1f, base_y - depth, cx + half_width * 1.1f, base_y + depth * 0.8f,
           [&](int px, int py, float uu, float vv) {
             const float d = std::pow(2.f * uu - 1.f, 2.f) + std::pow(2.f * vv - 1.f, 2.f);
             if (d < 1.f && c_.labels[static_cast<size_t>(py) * c_.w + px] != scene_sky)
               c_.shade(px, py, 0.55f + 0.45f * d);
           });
  }

  void vehicle(float cx, float base_y) {
    const float u = unit(base_y);
    const bool side_view = r_.bernoulli(0.5);
    const float half = u * (side_view ? static_cast<float>(r_.uniform(1.9, 2.4)) : 0.9f);
    const float height = u * static_cast<float>(r_.uniform(1.3, 1.7));
    const rgb paint = jitter(r_, pick(r_, {{170.f, 30.f, 35.f}, {30.f, 60.f, 140.f},
                                           {225.f, 225.f, 225.f}, {35.f, 35.f, 38.f},
                                           {140.f, 145.f, 150.f}, {200.f, 170.f, 40.f}}), 0.1f);
    shadow(cx, base_y, half, u);
    const float wheel_r = 0.33f * u, body_top = base_y - height * 0.62f;
    // Body: a rounded box; cabin: a trapezoid with dark glass on top.
    c_.box(cx - half, body_top, cx + half, base_y - wheel_r * 0.6f,
           [&](int px, int py, float uu, float vv) {
             const float ex = std::abs(2.f * uu - 1.f), ey = std::abs(2.f * vv - 1.f);
             if (ex > 0.92f && ey > 0.7f && (ex - 0.92f) * 12.f + (ey - 0.7f) * 3.f > 1.f) return;
             const float light = 1.1f - 0.35f * vv + 0.1f * sun_x_ * (uu - 0.5f);
             rgb colour = scale(paint, light);
             if (!side_view && vv > 0.25f && vv < 0.4f && (uu < 0.18f || uu > 0.82f))
               colour = {200.f, 30.f, 25.f};  // rear lights
             c_.put(px, py, colour, scene_vehicle);
           });
    const float cabin_half = half * (side_view ? 0.55f : 0.85f);
    const float cabin_x = cx + (side_view ? half * 0.1f : 0.f);
    c_.box(cabin_x - cabin_half, base_y - height, cabin_x + cabin_half, body_top + 1.f,
           [&](int px, int py, float uu, float vv) {
             const float taper = 0.22f * (1.f - vv);
             if (uu < taper || uu > 1.f - taper) return;
             const bool glass = vv > 0.15f && uu > taper + 0.06f && uu < 1.f - taper - 0.06f;
             const rgb colour = glass ? lerp({40.f, 50.f, 60.f}, {150.f, 165.f, 180.f}, 0.5f * (1 - vv))
                                      : scale(paint, 1.15f);
             c_.put(px, py, colour, scene_vehicle);
           });
    const float wheel_x[2] = {cx - half * 0.68f, cx + half * 0.68f};
    for (float wx : wheel_x)
      c_.box(wx - wheel_r * (side_view ? 1.f : 0.45f), base_y - 2.f * wheel_r, wx + wheel_r *
             (side_view ? 1.f : 0.45f), base_y, [&](int px, int py, float uu, float vv) {
               const float d = std::pow(2.f * uu - 1.f, 2.f) + std::pow(2.f * vv - 1.f, 2.f);
               if (side_view && d > 1.f) return;
               c_.put(px, py, d < 0.3f && side_view ? rgb{120.f, 120.f, 125.f} : rgb{25.f, 25.f, 28.f},
                      scene_vehicle);
             });
  }

  void person(float cx, float base_y) {
    const float u = unit(base_y);
    const float height = u * static_cast<float>(r_.uniform(1.55, 1.9)), half = height * 0.13f;
    const rgb skin = jitter(r_, pick(r_, {{225.f, 185.f, 155.f}, {160.f, 110.f, 80.f},
                                          {95.f, 65.f, 50.f}}), 0.08f);
    const rgb shirt = jitter(r_, pick(r_, {{180.f, 40.f, 40.f}, {40.f, 90.f, 160.f},
                                           {230.f, 230.f, 225.f}, {60.f, 130.f, 70.f},
                                           {230.f, 180.f, 40.f}}), 0.15f);
    const rgb trousers = jitter(r_, pick(r_, {{40.f, 45.f, 70.f}, {30.f, 30.f, 30.f},
                                              {110.f, 95.f, 75.f}}), 0.15f);
    const float stride = static_cast<float>(r_.uniform(0.0, 0.35));
    shadow(cx, base_y, half * 1.3f, u);
    const float head = height * 0.13f, torso_top = base_y - height + head, hips = base_y - height * 0.48f;
    for (int leg = -1; leg <= 1; leg += 2)
      c_.box(cx - half * 0.8f, hips, cx + half * 0.8f, base_y, [&](int px, int py, float, float vv) {
        const float centre = cx + static_cast<float>(leg) * half * (0.35f + stride * vv);
        if (std::abs(static_cast<float>(px) + 0.5f - centre) > std::max(0.6f, half * 0.32f)) return;
        c_.put(px, py, scale(trousers, 1.f - 0.2f * vv), scene_person);
      });
    c_.box(cx - half, torso_top, cx + half, hips + 1.f, [&](int px, int py, float uu, float vv) {
      if (vv < 0.15f && std::abs(2.f * uu - 1.f) > 0.75f + vv) return;  // shoulders
      c_.put(px, py, scale(shirt, 1.05f + 0.15f * sun_x_ * (uu - 0.5f) - 0.15f * vv), scene_person);
    });
    c_.box(cx - head * 0.42f, torso_top - head, cx + head * 0.42f, torso_top + 1.f,
           [&](int px, int py, float uu, float vv) {
             if (std::pow(2.f * uu - 1.f, 2.f) + std::pow(2.f * vv - 1.f, 2.f) > 1.f) return;
             c_.put(px, py, vv < 0.3f ? scale(trousers, 0.8f) : skin, scene_person);  // hair
           });
  }

  void pole(float cx, float base_y, bool with_sign) {
    const float u = unit(base_y);
    const float height = u * static_cast<float>(r_.uniform(3.0, 5.5));
    const float half = std::max(0.55f, u * 0.06f);
    const rgb metal = jitter(r_, {120.f, 122.f, 125.f}, 0.15f);
    c_.box(cx - half, base_y - height, cx + half, base_y, [&](int px, int py, float uu, float) {
      c_.put(px, py, scale(metal, 0.7f + 0.6f * (1.f - std::abs(uu - 0.5f - 0.2f * sun_x_))),
             scene_pole);
    });
    if (!with_sign) return;
    const float size = u * static_cast<float>(r_.uniform(0.5, 0.8));
    const int shape = static_cast<int>(r_.uniform_int(0, 2));  // 0 square, 1 disc, 2 triangle
    const rgb face = pick(r_, {{200.f, 30.f, 30.f}, {30.f, 70.f, 170.f}, {230.f, 190.f, 30.f},
                               {235.f, 235.f, 235.f}});
    const float top = base_y - height;
    c_.box(cx - size / 2, top, cx + size / 2, top + size, [&](int px, int py, float uu, float vv) {
      const float ex = 2.f * uu - 1.f, ey = 2.f * vv - 1.f;
      if (shape == 1 && ex * ex + ey * ey > 1.f) return;
      if (shape == 2 && std::abs(ex) > vv) return;
      const bool rim = shape == 1 ? ex * ex + ey * ey > 0.6f : (std::abs(ex) > 0.75f || std::abs(ey) > 0.75f);
      c_.put(px, py, rim ? rgb{235.f, 235.f, 235.f} : face, scene_sign);
    });
  }

  void objects() {
    struct item { float y, x; int kind; };
    std::vector<item> items;
    const float h = static_cast<float>(c_.h);
    const int count = static_cast<int>(r_.uniform_int(3, 12));
    for (int i = 0; i < count; ++i) {
      const int kind = static_cast<int>(r_.uniform_int(0, 9));
      // Vehicles stay in the far 70% of the ground so that one never fills the frame.
      const double reach = kind < 4 ? 0.7 : 1.0;
      const float y = horizon_ + (h - horizon_) *
                                     static_cast<float>(reach * std::pow(r_.uniform(0.05, 1.0), 1.6));
      const float half = road_half_width(y);
      float x;
      if (kind < 4) {  // vehicle on the road
        x = vanish_x_ + half * static_cast<float>(r_.uniform(-0.75, 0.75));
      } else {  // persons, poles and signs on the sidewalk / verge
        const float side = r_.bernoulli(0.5) ? -1.f : 1.f;
        x = vanish_x_ + side * (half + unit(y) * static_cast<float>(r_.uniform(0.3, 2.5)));
      }
      items.push_back({y, x, kind});
    }
    std::stable_sort(items.begin(), items.end(), [](const item& a, const item& b) { return a.y < b.y; });
    for (const auto& it : items) {
      if (it.kind < 4) vehicle(it.x, it.y);
      else if (it.kind < 7) person(it.x, it.y);
      else pole(it.x, it.y, it.kind != 7);
    }
  }

  // Vignette, a slight [1 2 1] blur (a camera's soft edges) and mild sensor noise.
  void finish() {
    const int h = c_.h, w = c_.w;
    std::vector<float> tmp(c_.pixels.size());
    const float noise_amplitude = 8.f;  // uniform +-4 (std 2.3) per channel
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int ch = 0; ch < 3; ++ch) {
          const int xl = std::max(0, x - 1), xr = std::min(w - 1, x + 1);
          const auto at = [&](int xx) { return c_.pixels[(static_cast<size_t>(y) * w + xx) * 3 + ch]; };
          tmp[(static_cast<size_t>(y) * w + x) * 3 + ch] = 0.25f * at(xl) + 0.5f * at(x) + 0.25f * at(xr);
        }
    for (int y = 0; y < h; ++y) {
      const int yu = std::max(0, y - 1), yd = std::min(h - 1, y + 1);
      for (int x = 0; x < w; ++x) {
        const float dx = (static_cast<float>(x) / w - 0.5f), dy = (static_cast<float>(y) / h - 0.5f);
        const float vignette = 1.f - 0.35f * (dx * dx + dy * dy);
        for (int ch = 0; ch < 3; ++ch) {
          const auto at = [&](int yy) { return tmp[(static_cast<size_t>(yy) * w + x) * 3 + ch]; };
          const float v = (0.25f * at(yu) + 0.5f * at(y) + 0.25f * at(yd)) * vignette +
                          noise_amplitude * (static_cast<float>(r_.next() >> 40) * (1.f / 16777216.f) - 0.5f);
          c_.pixels[(static_cast<size_t>(y) * w + x) * 3 + ch] = v;
        }
      }
    }
  }

  canvas c_;
  rng r_;
  uint64_t key_;
  float horizon_ = 0, vanish_x_ = 0, road_half_ = 0, sun_x_ = 0;
  rgb sky_top_{}, sky_low_{};
  bool left_grass_ = false, right_grass_ = false;
};

}  // namespace scene_detail

class synthetic_scenes_dataset : public dataset {
 public:
  synthetic_scenes_dataset(size_t count, int height, int width, uint64_t seed)
      : count_(count), height_(height), width_(width), seed_(seed) {
    require<value_error>(height >= 16 && width >= 16, "synthetic_scenes_dataset: size ", height,
                         "x", width, " must be at least 16x16");
    require<value_error>(count >= 1, "synthetic_scenes_dataset: count must be at least 1");
  }
  static const dataset_info& scene_info() {
    static const dataset_info info{
        "synthetic_scenes", 8,
        {"sky", "building", "road", "vegetation", "vehicle", "person", "pole", "sign"},
        {{{70, 130, 180}}, {{70, 70, 70}}, {{128, 64, 128}}, {{107, 142, 35}}, {{0, 0, 142}},
         {{220, 20, 60}}, {{153, 153, 153}}, {{220, 220, 0}}},
        ignore_label};
    return info;
  }
  const dataset_info& info() const override { return scene_info(); }
  size_t size() const override { return count_; }
  example load(size_t index) const override {
    require<value_error>(index < count_, "synthetic_scenes_dataset::load: index ", index,
                         " is out of range for ", count_, " scenes");
    scene_detail::scene_painter painter(height_, width_, mix_seed(seed_, index));
    const scene_detail::canvas c = painter.paint();
    example e;
    e.image = host_tensor<uint8_t>(shape{height_, width_, 3});
    e.label = host_tensor<int32_t>(shape{height_, width_});
    for (size_t i = 0; i < c.pixels.size(); ++i)
      e.image[static_cast<int64_t>(i)] =
          static_cast<uint8_t>(std::clamp(std::lround(c.pixels[i]), 0l, 255l));
    std::copy(c.labels.begin(), c.labels.end(), e.label.data());
    e.image_path = e.label_path = "synthetic:" + std::to_string(index);
    return e;
  }

 private:
  size_t count_;
  int height_, width_;
  uint64_t seed_;
};

}  // namespace segkit::data
