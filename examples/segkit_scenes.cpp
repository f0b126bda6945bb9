// examples/segkit_scenes.cpp — writes a few synthetic scenes as PNGs, each image side by side
// with its colourised label map, to look at what data::synthetic_scenes_dataset draws.
// Usage: segkit_scenes [--out DIR] [--count N] [--size HxW] [--seed S]
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <stb/stb_image_write.h>

#include "segkit/data/synthetic_scenes.hpp"

int main(int argc, char** argv) {
  std::string out = "scenes";
  int count = 6, height = 360, width = 480;
  uint64_t seed = 1;
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
    else if (arg == "--size") {
      const std::string v = value();
      if (std::sscanf(v.c_str(), "%dx%d", &height, &width) != 2) {
        std::fprintf(stderr, "segkit_scenes: --size wants HxW, got %s\n", v.c_str());
        return 2;
      }
    } else {
      std::printf("usage: segkit_scenes [--out DIR] [--count N] [--size HxW] [--seed S]\n");
      return arg == "--help" ? 0 : 2;
    }
  }
  std::filesystem::create_directories(out);
  const segkit::data::synthetic_scenes_dataset scenes(static_cast<size_t>(count), height, width, seed);
  const auto& info = scenes.info();
  const int gap = 8, total_w = 2 * width + gap;
  for (int i = 0; i < count; ++i) {
    const auto e = scenes.load(static_cast<size_t>(i));
    // TODO(pipeline): switch to data::side_by_side / colorize / write_png from image_io.hpp.
    std::vector<uint8_t> canvas(static_cast<size_t>(height) * total_w * 3, 255);
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) {
        const size_t src = static_cast<size_t>(y) * width + x;
        const size_t left = (static_cast<size_t>(y) * total_w + x) * 3;
        const size_t right = left + static_cast<size_t>(width + gap) * 3;
        const auto& colour = info.palette[static_cast<size_t>(e.label[static_cast<int64_t>(src)])];
        for (int c = 0; c < 3; ++c) {
          canvas[left + c] = e.image[static_cast<int64_t>(src * 3 + c)];
          canvas[right + c] = colour[static_cast<size_t>(c)];
        }
      }
    const std::string path = out + "/scene_" + std::to_string(i) + ".png";
    if (!stbi_write_png(path.c_str(), total_w, height, 3, canvas.data(), total_w * 3)) {
      std::fprintf(stderr, "segkit_scenes: cannot write %s\n", path.c_str());
      return 1;
    }
    std::printf("wrote %s\n", path.c_str());
  }
  return 0;
}
