// Tests of segkit/data/datasets.hpp: every reader on a tiny fixture of its layout written in a
// scratch dir (every raw label value checked against the dataset's documented mapping, written
// here independently), the errors for bad layouts and bad files, open_dataset, concurrent
// load(), and the real CamVid in ../shared/data/camvid (skipped with a warning when absent).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include "scratch_dir.hpp"
#include "segkit/data/datasets.hpp"
#include "segkit/data/image_io.hpp"

using namespace segkit;
using segkit::data::data_error;
namespace fs = std::filesystem;

namespace {

constexpr int64_t H = 8, W = 24;  // 192 pixels: room for every raw value of every dataset

host_tensor<uint8_t> test_image(unsigned seed, int64_t height = H, int64_t width = W) {
  host_tensor<uint8_t> image(shape{height, width, 3});
  for (int64_t i = 0; i < image.numel(); ++i)
    image[i] = static_cast<uint8_t>((i * 13 + seed * 71) % 251);
  return image;
}

void write_image(const fs::path& path, unsigned seed, bool jpeg = false) {
  fs::create_directories(path.parent_path());
  if (jpeg)
    data::write_jpeg(path.string(), test_image(seed));
  else
    data::write_png(path.string(), test_image(seed));
}

// A label image whose pixel i holds values[i % values.size()].
void write_label(const fs::path& path, const std::vector<int>& values, int64_t height = H,
                 int64_t width = W) {
  fs::create_directories(path.parent_path());
  host_tensor<uint8_t> label(shape{height, width});
  for (int64_t i = 0; i < label.numel(); ++i)
    label[i] = static_cast<uint8_t>(values[static_cast<size_t>(i) % values.size()]);
  data::write_png(path.string(), label);
}

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

std::vector<int> range(int first, int last, std::vector<int> extra = {}) {
  std::vector<int> values;
  for (int v = first; v <= last; ++v) values.push_back(v);
  values.insert(values.end(), extra.begin(), extra.end());
  return values;
}

// Loads example `index` and checks every pixel against expected(raw value written there).
void check_labels(const data::dataset& ds, size_t index, const std::vector<int>& raw,
                  const std::function<int(int)>& expected) {
  const data::example e = ds.load(index);
  REQUIRE(e.image.shape() == shape{H, W, 3});
  REQUIRE(e.label.shape() == shape{H, W});
  for (int64_t i = 0; i < e.label.numel(); ++i) {
    const int value = raw[static_cast<size_t>(i) % raw.size()];
    INFO("raw value " << value);
    CHECK(e.label[i] == expected(value));
  }
}

std::string message_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

// CamVid fixture: train (2 images, relative paths, a comment and a blank line) and val
// (1 image, absolute SegNet-style paths).
void camvid_fixture(const fs::path& root) {
  for (const char* name : {"a", "b"}) {
    write_image(root / "train" / (std::string(name) + ".png"), name[0]);
    write_label(root / "trainannot" / (std::string(name) + ".png"), range(0, 11, {255}));
  }
  write_image(root / "val" / "c.png", 3);
  write_label(root / "valannot" / "c.png", {3, 11});
  write_text(root / "train.txt",
             "# image label\ntrain/a.png trainannot/a.png\n\n  train/b.png\ttrainannot/b.png  \n");
  write_text(root / "val.txt", "/SegNet/CamVid/val/c.png /SegNet/CamVid/valannot/c.png\n");
}

}  // namespace

TEST_CASE("camvid: list files, 11 classes, 11 -> ignore", "[datasets]") {
  testing::scratch_dir dir("datasets_camvid");
  camvid_fixture(dir.path);
  data::camvid_dataset train(dir.path.string(), "train");
  CHECK(train.size() == 2);
  CHECK(train.info().name == "camvid");
  CHECK(train.info().num_classes == 11);
  CHECK(train.info().class_names[3] == "Road");
  const auto camvid = [](int v) { return v == 11 || v == 255 ? 255 : v; };
  check_labels(train, 0, range(0, 11, {255}), camvid);
  check_labels(train, 1, range(0, 11, {255}), camvid);
  const data::example e = train.load(1);
  CHECK(e.image_path == (dir.path / "train" / "b.png").string());
  CHECK(e.label_path == (dir.path / "trainannot" / "b.png").string());
  for (int64_t i = 0; i < e.image.numel(); ++i) REQUIRE(e.image[i] == test_image('b')[i]);

  data::camvid_dataset val(dir.path.string(), "val");
  REQUIRE(val.size() == 1);
  CHECK(val.files()[0].image == (dir.path / "val" / "c.png").string());
  check_labels(val, 0, {3, 11}, camvid);
  CHECK_THROWS_AS(train.load(2), value_error);
}

TEST_CASE("camvid: bad layouts and bad files are errors naming the path and value", "[datasets]") {
  testing::scratch_dir dir("datasets_camvid_bad");
  camvid_fixture(dir.path);
  const std::string root = dir.path.string();

  const std::string no_root = (dir.path / "nowhere").string();
  CHECK_THROWS_AS(data::camvid_dataset(no_root, "train"), data_error);
  CHECK_THROWS_WITH(data::camvid_dataset(no_root, "train"), Catch::Contains(no_root));
  CHECK_THROWS_WITH(
      data::camvid_dataset(root, "test"),
      Catch::Contains((dir.path / "test.txt").string()) && Catch::Contains("image label"));
  write_text(dir.path / "bad.txt", "train/a.png trainannot/a.png\ntrain/a.png x y\n");
  CHECK_THROWS_WITH(data::camvid_dataset(root, "bad"),
                    Catch::Contains((dir.path / "bad.txt").string() + ":2"));
  write_text(dir.path / "empty.txt", "# nothing\n");
  CHECK_THROWS_AS(data::camvid_dataset(root, "empty"), data_error);

  // A label value that is neither a class nor ignore, at a known pixel.
  std::vector<int> values(static_cast<size_t>(H * W), 4);
  values[static_cast<size_t>(2 * W + 5)] = 12;
  write_label(dir.path / "trainannot" / "b.png", values);
  data::camvid_dataset train(root, "train");
  const std::string label_b = (dir.path / "trainannot" / "b.png").string();
  CHECK_THROWS_AS(train.load(1), data_error);
  CHECK_THROWS_WITH(train.load(1), Catch::Contains(label_b) && Catch::Contains("label value 12") &&
                                       Catch::Contains("(x=5, y=2)"));
  CHECK_NOTHROW(train.load(0));

  // A label of another size than its image names both files and sizes.
  write_label(dir.path / "trainannot" / "b.png", {1}, H, W + 1);
  const std::string mismatch = message_of([&] { train.load(1); });
  CHECK_THAT(mismatch, Catch::Contains(label_b) &&
                           Catch::Contains((dir.path / "train" / "b.png").string()) &&
                           Catch::Contains("25x8") && Catch::Contains("24x8"));

  // Missing and corrupt files.
  fs::remove(dir.path / "train" / "a.png");
  CHECK_THROWS_AS(train.load(0), data_error);
  CHECK_THROWS_WITH(train.load(0), Catch::Contains((dir.path / "train" / "a.png").string()));
  write_text(dir.path / "valannot" / "c.png", "not a png");
  data::camvid_dataset val(root, "val");
  CHECK_THROWS_WITH(val.load(0), Catch::Contains((dir.path / "valannot" / "c.png").string()));
}

TEST_CASE("ade20k: ADEChallengeData2016, 0 -> ignore, v -> v - 1", "[datasets]") {
  testing::scratch_dir dir("datasets_ade");
  const fs::path base = dir.path / "ADEChallengeData2016";
  const std::vector<int> raw = range(0, 150, {255});
  for (const char* name : {"ADE_train_00000002", "ADE_train_00000001"}) {
    write_image(base / "images" / "training" / (std::string(name) + ".jpg"), 1, true);
    write_label(base / "annotations" / "training" / (std::string(name) + ".png"), raw);
  }
  write_image(base / "images" / "validation" / "ADE_val_00000001.jpg", 2, true);
  write_label(base / "annotations" / "validation" / "ADE_val_00000001.png", {0, 151});

  const auto ade = [](int v) { return v == 0 || v == 255 ? 255 : v - 1; };
  for (const fs::path& root : {dir.path, base}) {
    data::ade20k_dataset train(root.string(), "train");
    REQUIRE(train.size() == 2);
    CHECK(train.info().num_classes == 150);
    CHECK(train.files()[0].image ==
          (base / "images" / "training" / "ADE_train_00000001.jpg").string());
    CHECK(train.files()[0].label ==
          (base / "annotations" / "training" / "ADE_train_00000001.png").string());
    check_labels(train, 0, raw, ade);
  }
  data::ade20k_dataset val(dir.path.string(), "val");
  REQUIRE(val.size() == 1);
  CHECK_THROWS_WITH(val.load(0),
                    Catch::Contains("ADE_val_00000001.png") && Catch::Contains("label value 151"));
  CHECK_THROWS_AS(data::ade20k_dataset(dir.path.string(), "test"), value_error);
  CHECK_THROWS_WITH(data::ade20k_dataset(dir.path.string(), "test"),
                    Catch::Contains("'test'") && Catch::Contains("train, val"));
  fs::remove_all(base / "annotations" / "validation");
  CHECK_THROWS_WITH(data::ade20k_dataset(dir.path.string(), "val"),
                    Catch::Contains((base / "annotations" / "validation").string()));
}

TEST_CASE("cityscapes: labelIds -> 19 train ids, other ids ignore; labelTrainIds fallback",
          "[datasets]") {
  testing::scratch_dir dir("datasets_cityscapes");
  const fs::path images = dir.path / "leftImg8bit" / "train";
  const fs::path labels = dir.path / "gtFine" / "train";
  const std::vector<int> raw_ids = range(0, 33, {255});
  const std::vector<int> raw_train = range(0, 18, {255});
  write_image(images / "bremen" / "bremen_000000_000019_leftImg8bit.png", 1);
  write_label(labels / "bremen" / "bremen_000000_000019_gtFine_labelIds.png", raw_ids);
  write_label(labels / "bremen" / "bremen_000000_000019_gtFine_labelTrainIds.png", {0});
  write_image(images / "aachen" / "aachen_000000_000019_leftImg8bit.png", 2);
  write_label(labels / "aachen" / "aachen_000000_000019_gtFine_labelTrainIds.png", raw_train);
  write_image(images / "aachen" / "aachen_000001_000019_leftImg8bit.png", 3);
  write_label(labels / "aachen" / "aachen_000001_000019_gtFine_labelIds.png", {7, 34});

  data::cityscapes_dataset train(dir.path.string(), "train");
  REQUIRE(train.size() == 3);
  CHECK(train.info().num_classes == 19);
  CHECK(train.files()[2].label ==
        (labels / "bremen" / "bremen_000000_000019_gtFine_labelIds.png").string());
  // The official Cityscapes table (cityscapesScripts labels.py): id -> trainId.
  const std::map<int, int> official{{7, 0},   {8, 1},   {11, 2},  {12, 3},  {13, 4},
                                    {17, 5},  {19, 6},  {20, 7},  {21, 8},  {22, 9},
                                    {23, 10}, {24, 11}, {25, 12}, {26, 13}, {27, 14},
                                    {28, 15}, {31, 16}, {32, 17}, {33, 18}};
  check_labels(train, 2, raw_ids, [&](int v) {
    const auto found = official.find(v);
    return found == official.end() ? 255 : found->second;
  });
  const auto& names = train.info().class_names;
  CHECK(names[static_cast<size_t>(official.at(26))] == "car");
  CHECK(names[static_cast<size_t>(official.at(24))] == "person");
  CHECK(names[static_cast<size_t>(official.at(23))] == "sky");
  check_labels(train, 0, raw_train, [](int v) { return v; });
  CHECK_THROWS_WITH(train.load(1), Catch::Contains("aachen_000001_000019_gtFine_labelIds.png") &&
                                       Catch::Contains("label value 34"));
  CHECK_THROWS_AS(data::cityscapes_dataset(dir.path.string(), "val"), data_error);
  CHECK_THROWS_WITH(data::cityscapes_dataset(dir.path.string(), "val"),
                    Catch::Contains((dir.path / "leftImg8bit" / "val").string()) ||
                        Catch::Contains((dir.path / "gtFine" / "val").string()));
}

TEST_CASE("pascal_context: VOC2010 layout, 59 classes, 0 -> ignore", "[datasets]") {
  testing::scratch_dir dir("datasets_pascal");
  const fs::path voc = dir.path / "VOCdevkit" / "VOC2010";
  const std::vector<int> raw = range(0, 59, {255});
  for (const char* id : {"2008_000002", "2008_000003"}) {
    write_image(voc / "JPEGImages" / (std::string(id) + ".jpg"), 4, true);
    write_label(voc / "SegmentationClassContext" / (std::string(id) + ".png"), raw);
  }
  write_image(voc / "JPEGImages" / "2008_000004.jpg", 5, true);
  write_label(voc / "SegmentationClassContext" / "2008_000004.png", {60});
  write_text(voc / "ImageSets" / "SegmentationContext" / "train.txt", "2008_000002\n2008_000003\n");
  write_text(voc / "ImageSets" / "SegmentationContext" / "val.txt", "2008_000004\n");

  const auto context = [](int v) { return v == 0 || v == 255 ? 255 : v - 1; };
  for (const fs::path& root : {dir.path, dir.path / "VOCdevkit", voc}) {
    data::pascal_context_dataset train(root.string(), "train");
    REQUIRE(train.size() == 2);
    CHECK(train.info().num_classes == 59);
    CHECK(train.files()[1].image == (voc / "JPEGImages" / "2008_000003.jpg").string());
    check_labels(train, 1, raw, context);
  }
  data::pascal_context_dataset val(dir.path.string(), "val");
  CHECK_THROWS_WITH(val.load(0),
                    Catch::Contains("2008_000004.png") && Catch::Contains("label value 60"));
  CHECK_THROWS_WITH(data::pascal_context_dataset(dir.path.string(), "test"),
                    Catch::Contains("test.txt"));
  fs::remove_all(voc / "SegmentationClassContext");
  CHECK_THROWS_WITH(data::pascal_context_dataset(dir.path.string(), "train"),
                    Catch::Contains("SegmentationClassContext"));
}

TEST_CASE("coco_stuff 164k: train ids 0..170, 255 ignore", "[datasets]") {
  testing::scratch_dir dir("datasets_coco164k");
  const std::vector<int> raw = range(0, 170, {255});
  write_image(dir.path / "images" / "train2017" / "000000000009.jpg", 6, true);
  write_label(dir.path / "annotations" / "train2017" / "000000000009_labelTrainIds.png", raw);
  write_image(dir.path / "images" / "val2017" / "000000000139.jpg", 7, true);
  write_label(dir.path / "annotations" / "val2017" / "000000000139_labelTrainIds.png", {171});

  data::coco_stuff_dataset train(dir.path.string(), "train");
  CHECK(train.which_layout() == data::coco_stuff_dataset::layout::v164k);
  REQUIRE(train.size() == 1);
  CHECK(train.info().num_classes == 171);
  check_labels(train, 0, raw, [](int v) { return v; });
  data::coco_stuff_dataset val(dir.path.string(), "val");
  CHECK_THROWS_WITH(val.load(0), Catch::Contains("000000000139_labelTrainIds.png") &&
                                     Catch::Contains("label value 171"));
  CHECK_THROWS_AS(data::coco_stuff_dataset(dir.path.string(), "test"), value_error);
  CHECK_THROWS_WITH(data::open_dataset("coco_stuff10k", dir.path.string(), "train"),
                    Catch::Contains("train2014"));
}

TEST_CASE("coco_stuff 10k: image lists, 0 -> ignore, v -> v - 1", "[datasets]") {
  testing::scratch_dir dir("datasets_coco10k");
  const std::vector<int> raw = range(0, 171, {255});
  for (const char* id : {"COCO_train2014_000000000077", "COCO_train2014_000000000078"}) {
    write_image(dir.path / "images" / "train2014" / (std::string(id) + ".jpg"), 8, true);
    write_label(dir.path / "annotations" / "train2014" / (std::string(id) + "_labelTrainIds.png"),
                raw);
  }
  // The list names one of the two images (the other is not in the split).
  write_text(dir.path / "imageLists" / "train.txt", "COCO_train2014_000000000078.jpg\n");
  write_image(dir.path / "images" / "test2014" / "COCO_train2014_000000000100.jpg", 9, true);
  write_label(
      dir.path / "annotations" / "test2014" / "COCO_train2014_000000000100_labelTrainIds.png",
      {172});

  data::coco_stuff_dataset train(dir.path.string(), "train");
  CHECK(train.which_layout() == data::coco_stuff_dataset::layout::v10k);
  REQUIRE(train.size() == 1);
  CHECK(train.files()[0].image ==
        (dir.path / "images" / "train2014" / "COCO_train2014_000000000078.jpg").string());
  check_labels(train, 0, raw, [](int v) { return v == 0 || v == 255 ? 255 : v - 1; });
  for (const char* split : {"test", "val"}) {  // no test list: the folder is scanned
    data::coco_stuff_dataset test(dir.path.string(), split);
    REQUIRE(test.size() == 1);
    CHECK_THROWS_WITH(test.load(0), Catch::Contains("label value 172"));
  }
  testing::scratch_dir empty("datasets_coco_none");
  fs::create_directories(empty.path / "images");
  CHECK_THROWS_WITH(data::coco_stuff_dataset(empty.path.string(), "train"),
                    Catch::Contains("train2017") && Catch::Contains("train2014"));
}

TEST_CASE("open_dataset picks the reader by name and lists the names otherwise", "[datasets]") {
  testing::scratch_dir dir("datasets_open");
  camvid_fixture(dir.path);
  const std::unique_ptr<data::dataset> ds =
      data::open_dataset("camvid", dir.path.string(), "train");
  CHECK(ds->info().name == "camvid");
  CHECK(ds->size() == 2);
  CHECK_THROWS_AS(data::open_dataset("ade20k", dir.path.string(), "train"), data_error);
  CHECK_THROWS_AS(data::open_dataset("voc", dir.path.string(), "train"), value_error);
  CHECK_THROWS_WITH(data::open_dataset("voc", dir.path.string(), "train"),
                    Catch::Contains("'voc'") && Catch::Contains("camvid") &&
                        Catch::Contains("cityscapes") && Catch::Contains("pascal_context") &&
                        Catch::Contains("coco_stuff"));
  for (const auto& name : data::dataset_names())
    if (name != "camvid")
      CHECK_THROWS_AS(data::open_dataset(name, dir.path.string(), "train"), error);
}

TEST_CASE("load() from several threads at once gives the same examples", "[datasets]") {
  testing::scratch_dir dir("datasets_threads");
  camvid_fixture(dir.path);
  const data::camvid_dataset ds(dir.path.string(), "train");
  const data::example first = ds.load(0), second = ds.load(1);
  std::vector<int> mismatches(2, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        const size_t index = static_cast<size_t>((round + t) % 2);
        const data::example e = ds.load(index);
        const data::example& want = index == 0 ? first : second;
        for (int64_t i = 0; i < e.label.numel(); ++i)
          if (e.label[i] != want.label[i]) ++mismatches[static_cast<size_t>(t)];
        for (int64_t i = 0; i < e.image.numel(); ++i)
          if (e.image[i] != want.image[i]) ++mismatches[static_cast<size_t>(t)];
      }
    });
  for (auto& thread : threads) thread.join();
  CHECK(mismatches == std::vector<int>{0, 0});
}

TEST_CASE("the real CamVid in ../shared/data/camvid reads as 367 + 101 labelled images",
          "[datasets][camvid]") {
#ifdef SEGKIT_SHARED_DATA_DIR
  const std::string root = SEGKIT_SHARED_DATA_DIR "/camvid";
#else
  const std::string root = SEGKIT_GOLDEN_DIR "/../../../shared/data/camvid";
#endif
  if (!fs::is_directory(root)) {
    WARN("skipped: the real CamVid is absent (" << root << ")");
    return;
  }
  const data::camvid_dataset train(root, "train"), val(root, "val");
  CHECK(train.size() == 367);
  CHECK(val.size() == 101);
  std::vector<int64_t> counts(12, 0);
  int64_t outside = 0;
  for (size_t i = 0; i < val.size(); ++i) {
    const data::example e = val.load(i);
    REQUIRE(e.image.shape() == shape{360, 480, 3});
    REQUIRE(e.label.shape() == shape{360, 480});
    for (int64_t p = 0; p < e.label.numel(); ++p) {
      const int32_t v = e.label[p];
      if ((v >= 0 && v < 11) || v == 255)
        ++counts[v == 255 ? 11 : static_cast<size_t>(v)];
      else
        ++outside;
    }
  }
  CHECK(outside == 0);
  // Every class occurs in val, and road/building/sky dominate as the README says.
  for (size_t k = 0; k < 11; ++k) CHECK(counts[k] > 0);
  CHECK(counts[3] > counts[9]);  // road > pedestrian
  CHECK(counts[0] > counts[2]);  // sky > pole
  const data::example last = train.load(train.size() - 1);
  CHECK(last.image.shape() == shape{360, 480, 3});
  int64_t distinct_first_row = 0;
  for (int64_t x = 1; x < 480; ++x)
    distinct_first_row += last.image.at(0, x, 0) != last.image.at(0, x - 1, 0);
  CHECK(distinct_first_row > 10);  // a photograph, not a flat fill
}
