// examples/segkit_scenes.cpp — writes a few synthetic scenes as PNGs: each image side by side
// with its colourised label map, then one training augmentation of it (random scale 0.5-2,
// crop to the scene's size with ignore padding = black, flip, photometric) and its labels, to
// look at what data::synthetic_scenes_dataset draws and what data::augment makes of it.
// Usage: segkit_scenes [--out DIR] [--count N] [--size HxW] [--seed S] [--no-augment]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "segkit/data/augment.hpp"
#include "segkit/data/image_io.hpp"
#include "segkit/data/synthetic_scenes.hpp"

namespace {

// Normalised [3, H, W] back to [H, W, 3] uint8.
segkit::host_tensor<uint8_t> denormalize(const segkit::host_tensor<float>& image,
                                         const segkit::data::augment_options& o) {
  const int64_t h = image.size(1), w = image.size(2);
  segkit::host_tensor<uint8_t> out(segkit::shape{h, w, 3});
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < h * w; ++i) {
      const float v = image[c * h * w + i] * o.std[static_cast<size_t>(c)] + o.mean[static_cast<size_t>(c)];
      out[i * 3 + c] = static_cast<uint8_t>(std::clamp(std::lround(v), 0l, 255l));
    }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out = "scenes";
  int count = 6, height = 360, width = 480;
  uint64_t seed = 1;
  bool with_augment = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "segkit_scenes: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--out") out = value();
    else if (arg == "--count") count = std::atoi(value().c_str());
    else if (arg == "--seed") seed = std::strtoull(value().c_str(), nullptr, 10);
    else if (arg == "--no-augment") with_augment = false;
    else if (arg == "--size") {
      const std::string v = value();
      if (std::sscanf(v.c_str(), "%dx%d", &height, &width) != 2) {
        std::fprintf(stderr, "segkit_scenes: --size wants HxW, got %s\n", v.c_str());
        return 2;
      }
    } else {
      std::printf("usage: segkit_scenes [--out DIR] [--count N] [--size HxW] [--seed S] [--no-augment]\n");
      return arg == "--help" ? 0 : 2;
    }
  }
  try {
    std::filesystem::create_directories(out);
    const segkit::data::synthetic_scenes_dataset scenes(static_cast<size_t>(count), height, width, seed);
    const auto& palette = scenes.info().palette;
    segkit::data::augment_options o;
    o.crop_h = height;
    o.crop_w = width;
    for (int i = 0; i < count; ++i) {
      const auto e = scenes.load(static_cast<size_t>(i));
      std::vector<segkit::host_tensor<uint8_t>> panels{e.image, segkit::data::colorize(e.label, palette)};
      if (with_augment) {
        const auto a = segkit::data::augment(e, o, seed * 1000 + static_cast<uint64_t>(i));
        panels.push_back(denormalize(a.image, o));
        panels.push_back(segkit::data::colorize(a.label, palette));
      }
      const std::string path = out + "/scene_" + std::to_string(i) + ".png";
      segkit::data::write_png(path, segkit::data::side_by_side(panels, 8));
      std::printf("wrote %s\n", path.c_str());
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "segkit_scenes: %s\n", error.what());
    return 1;
  }
  return 0;
}
