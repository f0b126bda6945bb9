// Tests for data/synthetic_scenes.hpp: determinism, label range, scene structure, info().
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <thread>

#include "segkit/data/synthetic_scenes.hpp"

using namespace segkit;

TEST_CASE("synthetic scenes: example i is a pure function of (seed, i)") {
  const data::synthetic_scenes_dataset a(20, 48, 64, 7), b(20, 48, 64, 7), c(20, 48, 64, 8);
  // Load b in reverse order and from threads: nothing depends on the order or the thread.
  std::vector<data::example> from_threads(20);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        for (size_t i = 19 - static_cast<size_t>(t); i < 20; i -= 4) {
          from_threads[i] = b.load(i);
          if (i < 4) break;
        }
      });
    for (auto& t : threads) t.join();
  }
  int differs_from_other_seed = 0;
  for (size_t i = 0; i < 20; ++i) {
    const auto x = a.load(i), z = c.load(i);
    const auto& y = from_threads[i];
    REQUIRE(x.image.shape() == shape{48, 64, 3});
    REQUIRE(x.label.shape() == shape{48, 64});
    for (int64_t p = 0; p < x.image.numel(); ++p) REQUIRE(x.image[p] == y.image[p]);
    for (int64_t p = 0; p < x.label.numel(); ++p) REQUIRE(x.label[p] == y.label[p]);
    bool differ = false;
    for (int64_t p = 0; p < x.label.numel(); ++p) differ |= x.label[p] != z.label[p];
    differs_from_other_seed += differ;
    CHECK(x.image_path == "synthetic:" + std::to_string(i));
  }
  CHECK(differs_from_other_seed >= 18);
  // Neighbouring indices are different scenes.
  const auto s0 = a.load(0), s1 = a.load(1);
  int64_t same = 0;
  for (int64_t p = 0; p < s0.label.numel(); ++p) same += s0.label[p] == s1.label[p];
  CHECK(same < s0.label.numel());
}

TEST_CASE("synthetic scenes: labels are the 8 classes and the scene is laid out like a street") {
  const data::synthetic_scenes_dataset scenes(40, 90, 120, 3);
  std::array<int64_t, 8> pixels{};
  std::array<int, 8> scenes_with{};
  for (size_t i = 0; i < scenes.size(); ++i) {
    const auto e = scenes.load(i);
    std::array<bool, 8> present{};
    int64_t sky_top = 0, sky_bottom = 0, ground_bottom = 0;
    for (int y = 0; y < 90; ++y)
      for (int x = 0; x < 120; ++x) {
        const int32_t v = e.label.at(y, x);
        REQUIRE(v >= 0);
        REQUIRE(v < 8);
        ++pixels[static_cast<size_t>(v)];
        present[static_cast<size_t>(v)] = true;
        if (y < 10) sky_top += v == data::scene_sky;
        if (y >= 80) {
          sky_bottom += v == data::scene_sky;
          ground_bottom += v == data::scene_road || v == data::scene_vegetation;
        }
      }
    for (size_t k = 0; k < 8; ++k) scenes_with[k] += present[k];
    // Sky is above, ground below: never sky in the bottom rows, ground dominates there.
    CHECK(sky_bottom == 0);
    CHECK(ground_bottom > 10 * 120 / 3);
    CHECK(sky_top > 0);
    // The image is a picture, not flat colour: a spread of intensities.
    double mean = 0, sq = 0;
    for (int64_t p = 0; p < e.image.numel(); ++p) {
      mean += e.image[p];
      sq += static_cast<double>(e.image[p]) * e.image[p];
    }
    mean /= static_cast<double>(e.image.numel());
    const double stddev = std::sqrt(sq / static_cast<double>(e.image.numel()) - mean * mean);
    CHECK(stddev > 15);
    CHECK(mean > 60);
    CHECK(mean < 200);
  }
  // Every class appears, the small ones (person, pole, sign) in several scenes.
  for (size_t k = 0; k < 8; ++k) {
    INFO("class " << k);
    CHECK(scenes_with[k] >= 5);
  }
  // Large classes are large, small classes small.
  CHECK(pixels[data::scene_sky] > pixels[data::scene_person]);
  CHECK(pixels[data::scene_road] > pixels[data::scene_sign]);
}

TEST_CASE("synthetic scenes: colours follow labels (regions differ in colour)") {
  const data::synthetic_scenes_dataset scenes(10, 72, 96, 11);
  int bluer_sky = 0;
  for (size_t i = 0; i < scenes.size(); ++i) {
    const auto e = scenes.load(i);
    double sky_blue = 0, road_blue = 0;
    int64_t ns = 0, nr = 0;
    for (int y = 0; y < 72; ++y)
      for (int x = 0; x < 96; ++x) {
        const double blue_minus_red = double(e.image.at(y, x, 2)) - double(e.image.at(y, x, 0));
        if (e.label.at(y, x) == data::scene_sky) { sky_blue += blue_minus_red; ++ns; }
        if (e.label.at(y, x) == data::scene_road) { road_blue += blue_minus_red; ++nr; }
      }
    if (ns > 0 && nr > 0) bluer_sky += sky_blue / double(ns) > road_blue / double(nr) + 5;
  }
  CHECK(bluer_sky >= 8);
}

TEST_CASE("synthetic scenes: info, bounds and bad sizes") {
  const data::synthetic_scenes_dataset scenes(3, 16, 16, 0);
  const auto& info = scenes.info();
  CHECK(info.num_classes == 8);
  REQUIRE(info.class_names.size() == 8);
  CHECK(info.class_names[data::scene_person] == "person");
  CHECK(info.palette.size() == 8);
  CHECK(info.ignore_index == 255);
  CHECK(scenes.size() == 3);
  CHECK_THROWS_WITH(scenes.load(3), Catch::Contains("index 3"));
  CHECK_THROWS_WITH(data::synthetic_scenes_dataset(3, 8, 64, 0), Catch::Contains("8x64"));
}
