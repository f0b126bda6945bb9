// Tests of segkit/data/image_io.hpp and segkit/data/palette.hpp: PNG/JPEG round trips, label
// images, atomic writes, errors naming the file, colorize / overlay / side_by_side against
// naive loops, and the datasets' class tables.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>

#include <stb/stb_image_write.h>

#include "scratch_dir.hpp"
#include "segkit/data/image_io.hpp"
#include "segkit/data/palette.hpp"

using namespace segkit;
using segkit::data::data_error;

namespace {

host_tensor<uint8_t> pattern(int64_t height, int64_t width, int64_t channels, unsigned seed) {
  host_tensor<uint8_t> image = channels == 1 ? host_tensor<uint8_t>(shape{height, width})
                                             : host_tensor<uint8_t>(shape{height, width, channels});
  for (int64_t i = 0; i < image.numel(); ++i)
    image[i] = static_cast<uint8_t>((i * 37 + seed * 101 + (i * i) % 13) % 256);
  return image;
}

bool equal(const host_tensor<uint8_t>& a, const host_tensor<uint8_t>& b) {
  if (a.shape() != b.shape()) return false;
  for (int64_t i = 0; i < a.numel(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

}  // namespace

TEST_CASE("write_png and read_image round-trip RGB exactly", "[image_io]") {
  testing::scratch_dir dir("image_io_rgb");
  for (auto hw : {std::pair<int64_t, int64_t>{1, 1}, {3, 7}, {17, 5}}) {
    const host_tensor<uint8_t> image = pattern(hw.first, hw.second, 3, 1);
    data::write_png(dir.file("rgb.png"), image);
    const host_tensor<uint8_t> back = data::read_image(dir.file("rgb.png"));
    CHECK(back.shape() == image.shape());
    CHECK(equal(back, image));
  }
}

TEST_CASE("grey and RGBA files are converted to RGB by read_image", "[image_io]") {
  testing::scratch_dir dir("image_io_convert");
  const host_tensor<uint8_t> grey = pattern(4, 6, 1, 2);
  data::write_png(dir.file("grey.png"), grey);
  const host_tensor<uint8_t> rgb = data::read_image(dir.file("grey.png"));
  REQUIRE(rgb.shape() == shape{4, 6, 3});
  for (int64_t y = 0; y < 4; ++y)
    for (int64_t x = 0; x < 6; ++x)
      for (int c = 0; c < 3; ++c) CHECK(rgb.at(y, x, c) == grey.at(y, x));

  const host_tensor<uint8_t> rgba = pattern(3, 5, 4, 3);
  data::write_png(dir.file("rgba.png"), rgba);
  const host_tensor<uint8_t> dropped = data::read_image(dir.file("rgba.png"));
  REQUIRE(dropped.shape() == shape{3, 5, 3});
  for (int64_t p = 0; p < 15; ++p)
    for (int c = 0; c < 3; ++c) CHECK(dropped[p * 3 + c] == rgba[p * 4 + c]);
}

TEST_CASE("read_label_image reads grey PNGs and equal-channel RGB, rejects colour", "[image_io]") {
  testing::scratch_dir dir("image_io_label");
  const host_tensor<uint8_t> grey = pattern(5, 4, 1, 4);
  data::write_png(dir.file("label.png"), grey);
  const host_tensor<uint8_t> back = data::read_label_image(dir.file("label.png"));
  CHECK(back.shape() == shape{5, 4});
  CHECK(equal(back, grey));

  host_tensor<uint8_t> same(shape{5, 4, 3});
  for (int64_t p = 0; p < 20; ++p)
    for (int c = 0; c < 3; ++c) same[p * 3 + c] = grey[p];
  data::write_png(dir.file("same.png"), same);
  CHECK(equal(data::read_label_image(dir.file("same.png")), grey));

  host_tensor<uint8_t> colour = same.clone();
  colour.at(2, 1, 1) = static_cast<uint8_t>(colour.at(2, 1, 0) + 1);
  data::write_png(dir.file("colour.png"), colour);
  CHECK_THROWS_AS(data::read_label_image(dir.file("colour.png")), data_error);
  CHECK_THROWS_WITH(data::read_label_image(dir.file("colour.png")),
                    Catch::Contains(dir.file("colour.png")) && Catch::Contains("(x=1, y=2)") &&
                        Catch::Contains("single-channel"));
}

TEST_CASE("JPEG files decode close to what was encoded", "[image_io]") {
  testing::scratch_dir dir("image_io_jpeg");
  host_tensor<uint8_t> smooth(shape{16, 24, 3});
  for (int64_t y = 0; y < 16; ++y)
    for (int64_t x = 0; x < 24; ++x) {
      smooth.at(y, x, 0) = static_cast<uint8_t>(40 + 6 * x);
      smooth.at(y, x, 1) = static_cast<uint8_t>(60 + 8 * y);
      smooth.at(y, x, 2) = 128;
    }
  data::write_jpeg(dir.file("ours.jpg"), smooth, 95);
  REQUIRE(stbi_write_jpg(dir.file("stb.jpg").c_str(), 24, 16, 3, smooth.data(), 95) != 0);
  for (const char* name : {"ours.jpg", "stb.jpg"}) {
    const host_tensor<uint8_t> back = data::read_image(dir.file(name));
    REQUIRE(back.shape() == smooth.shape());
    int worst = 0;
    for (int64_t i = 0; i < back.numel(); ++i)
      worst = std::max(worst, std::abs(int(back[i]) - int(smooth[i])));
    CHECK(worst <= 12);
  }
  CHECK_THROWS_AS(data::write_jpeg(dir.file("bad.jpg"), smooth, 0), value_error);
}

TEST_CASE("reading a missing or corrupt file throws data_error naming the file", "[image_io]") {
  testing::scratch_dir dir("image_io_errors");
  const std::string missing = dir.file("missing.png");
  CHECK_THROWS_AS(data::read_image(missing), data_error);
  CHECK_THROWS_WITH(data::read_image(missing), Catch::Contains(missing));
  CHECK_THROWS_WITH(data::read_label_image(missing), Catch::Contains(missing));
  CHECK_THROWS_AS(data::read_image(missing), io_error);  // data_error is an io_error

  const std::string garbage = dir.file("garbage.png");
  std::ofstream(garbage) << "this is not an image";
  CHECK_THROWS_WITH(data::read_image(garbage),
                    Catch::Contains(garbage) && Catch::Contains("cannot decode"));

  // A PNG cut short: the header is intact, the pixel data is not.
  data::write_png(dir.file("whole.png"), pattern(32, 32, 3, 5));
  std::ifstream in(dir.file("whole.png"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = dir.file("cut.png");
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  CHECK_THROWS_WITH(data::read_image(cut), Catch::Contains(cut));
}

TEST_CASE(
    "write_png is atomic: it replaces the file, leaves no temp file, and on failure "
    "leaves nothing",
    "[image_io]") {
  testing::scratch_dir dir("image_io_atomic");
  const std::string path = dir.file("out.png");
  data::write_png(path, pattern(4, 4, 3, 6));
  data::write_png(path, pattern(6, 2, 1, 7));
  CHECK(dir.entries() == std::vector<std::string>{"out.png"});
  CHECK(equal(data::read_label_image(path), pattern(6, 2, 1, 7)));

  const std::string unreachable = dir.file("no_such_dir/out.png");
  CHECK_THROWS_AS(data::write_png(unreachable, pattern(4, 4, 3, 6)), data_error);
  CHECK_THROWS_WITH(data::write_png(unreachable, pattern(4, 4, 3, 6)),
                    Catch::Contains(unreachable));
  CHECK(dir.entries() == std::vector<std::string>{"out.png"});
}

TEST_CASE("write_png rejects tensors that are not images, naming the shape", "[image_io]") {
  testing::scratch_dir dir("image_io_shapes");
  CHECK_THROWS_AS(data::write_png(dir.file("a.png"), host_tensor<uint8_t>(shape{3, 4, 2})),
                  shape_error);
  CHECK_THROWS_WITH(data::write_png(dir.file("a.png"), host_tensor<uint8_t>(shape{3, 4, 2})),
                    Catch::Contains("[3, 4, 2]"));
  CHECK_THROWS_AS(data::write_png(dir.file("a.png"), host_tensor<uint8_t>(shape{12})), shape_error);
  CHECK_THROWS_AS(data::write_png(dir.file("a.png"), host_tensor<uint8_t>(shape{0, 4, 3})),
                  shape_error);
  CHECK(dir.entries().empty());
}

TEST_CASE("colorize maps ids through the palette and ignore to black", "[image_io]") {
  const std::vector<std::array<uint8_t, 3>> palette{{10, 20, 30}, {200, 0, 7}, {1, 2, 3}};
  host_tensor<int32_t> labels(shape{3, 5});
  for (int64_t i = 0; i < 15; ++i) labels[i] = i % 4 == 3 ? 255 : static_cast<int32_t>(i % 3);
  const host_tensor<uint8_t> colour = data::colorize(labels, palette);
  REQUIRE(colour.shape() == shape{3, 5, 3});
  for (int64_t i = 0; i < 15; ++i)
    for (int c = 0; c < 3; ++c) {
      const int expected = labels[i] == 255 ? 0 : palette[size_t(labels[i])][size_t(c)];
      CHECK(int(colour[i * 3 + c]) == expected);
    }
  labels.at(1, 2) = 3;
  CHECK_THROWS_AS(data::colorize(labels, palette), value_error);
  CHECK_THROWS_WITH(data::colorize(labels, palette),
                    Catch::Contains("label 3") && Catch::Contains("(x=2, y=1)"));
  labels.at(1, 2) = -1;
  CHECK_THROWS_WITH(data::colorize(labels, palette), Catch::Contains("label -1"));
  CHECK_THROWS_AS(data::colorize(host_tensor<int32_t>(shape{2, 2, 2}), palette), shape_error);
}

TEST_CASE("overlay blends with alpha and checks its inputs", "[image_io]") {
  const host_tensor<uint8_t> image = pattern(3, 4, 3, 8), colour = pattern(3, 4, 3, 9);
  for (double alpha : {0.0, 0.3, 0.5, 1.0}) {
    const host_tensor<uint8_t> blend = data::overlay(image, colour, alpha);
    for (int64_t i = 0; i < image.numel(); ++i) {
      const double expected = (1 - alpha) * image[i] + alpha * colour[i];
      CHECK(std::abs(double(blend[i]) - expected) <= 0.5 + 1e-4);
    }
  }
  CHECK_THROWS_AS(data::overlay(image, colour, 1.5), value_error);
  CHECK_THROWS_AS(data::overlay(image, pattern(4, 3, 3, 1), 0.5), shape_error);
  CHECK_THROWS_WITH(data::overlay(image, pattern(4, 3, 3, 1), 0.5),
                    Catch::Contains("[3, 4, 3]") && Catch::Contains("[4, 3, 3]"));
}

TEST_CASE("side_by_side places images left to right with a gap", "[image_io]") {
  const host_tensor<uint8_t> a = pattern(3, 2, 3, 10), b = pattern(5, 4, 1, 11);
  const host_tensor<uint8_t> row = data::side_by_side({a, b}, 3, 77);
  REQUIRE(row.shape() == shape{5, 2 + 3 + 4, 3});
  for (int64_t y = 0; y < 5; ++y)
    for (int64_t x = 0; x < 9; ++x)
      for (int c = 0; c < 3; ++c) {
        int expected = 77;
        if (x < 2 && y < 3) expected = a.at(y, x, c);
        if (x >= 5) expected = b.at(y, x - 5);
        CHECK(int(row.at(y, x, c)) == expected);
      }
  CHECK(data::side_by_side({a}, 8).shape() == shape{3, 2, 3});
  CHECK_THROWS_AS(data::side_by_side({}, 8), value_error);
  CHECK_THROWS_AS(data::side_by_side({a, host_tensor<uint8_t>(shape{2, 2, 2})}, 8), shape_error);
}

TEST_CASE("dataset class tables: counts, palettes, names, unknown names", "[palette]") {
  const std::vector<std::pair<std::string, int>> expected{
      {"camvid", 11},         {"ade20k", 150},     {"cityscapes", 19},
      {"pascal_context", 59}, {"coco_stuff", 171}, {"coco_stuff10k", 171}};
  for (const auto& [name, classes] : expected) {
    const data::dataset_info info = data::known_dataset_info(name);
    CHECK(info.num_classes == classes);
    CHECK(info.class_names.size() == size_t(classes));
    CHECK(info.palette.size() == size_t(classes));
    CHECK(info.ignore_index == 255);
    for (const auto& n : info.class_names) CHECK((!n.empty() && n.back() != ' '));
  }
  CHECK(data::camvid_class_names().front() == "Sky");
  CHECK(data::camvid_class_names().back() == "Bicyclist");
  CHECK(data::ade20k_class_names()[7] == "bed");
  CHECK(data::ade20k_class_names().back() == "flag");
  CHECK(data::cityscapes_class_names()[0] == "road");
  CHECK(data::cityscapes_class_names()[18] == "bicycle");
  CHECK((data::cityscapes_palette()[0] == std::array<uint8_t, 3>{128, 64, 128}));
  CHECK(data::pascal_context_class_names()[0] == "aeroplane");
  CHECK(data::pascal_context_class_names()[58] == "wood");
  CHECK((data::pascal_context_palette()[0] == std::array<uint8_t, 3>{180, 120, 120}));
  CHECK(data::coco_stuff_class_names()[0] == "person");
  CHECK(data::coco_stuff_class_names()[170] == "wood");
  CHECK_THROWS_AS(data::known_dataset_info("kitti"), value_error);
  CHECK_THROWS_WITH(data::known_dataset_info("kitti"), Catch::Contains("kitti") &&
                                                           Catch::Contains("camvid") &&
                                                           Catch::Contains("coco_stuff10k"));
}

TEST_CASE("generic_palette gives distinct colours", "[palette]") {
  const auto colours = data::generic_palette(300);
  REQUIRE(colours.size() == 300);
  std::set<std::array<uint8_t, 3>> unique(colours.begin(), colours.end());
  CHECK(unique.size() == 300);
  CHECK(unique.count({0, 0, 0}) == 0);
  CHECK((data::generic_palette(2, false)[0] == std::array<uint8_t, 3>{0, 0, 0}));
  CHECK(data::generic_palette(0).empty());
}
