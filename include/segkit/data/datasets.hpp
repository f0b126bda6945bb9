// segkit/data/datasets.hpp — readers for the standard segmentation dataset layouts.
// Provides: data::file_dataset (the shared base: a list of image/label file pairs and a raw label
// value -> train id table), data::camvid_dataset, data::ade20k_dataset,
// data::cityscapes_dataset, data::pascal_context_dataset (59 classes),
// data::coco_stuff_dataset (164k and 10k layouts), and data::open_dataset(name, root, split).
// Requires: the layouts described in docs/datasets.md (mmsegmentation's, after its converters
// where it has one). Guarantees:
//   - Constructors only list files: a missing root, folder or list file throws data_error
//     naming the path and what was expected; an unknown split throws value_error naming the
//     accepted ones; a split with no images throws data_error. Files are sorted, so index i is
//     the same file on every run.
//   - load(i) decodes image i and its label; a missing/undecodable file, a label whose size
//     differs from its image, or a raw label value that is neither a class nor the dataset's
//     ignore value throws data_error naming the file, the value and the pixel. Every reader
//     also accepts 255 as ignore (segkit's ignore_label, as in already-converted files).
//   - Returned labels hold train ids in [0, num_classes) or ignore_label (255).
//   - load() is const and touches only state fixed at construction: safe from many threads.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "segkit/data/dataset.hpp"
#include "segkit/data/image_io.hpp"
#include "segkit/data/palette.hpp"
#include "segkit/tensor/error.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::data {

// Raw 8-bit label value -> train id, ignore_label, or -1 for "not a valid value".
struct label_mapping {
  std::array<int32_t, 256> table;
  std::string expected;  // "class ids 0..10, 11 (ignore) or 255 (ignore)" for error messages

  label_mapping() { table.fill(-1); }
  // Raw values [first, first + count) -> train ids [0, count); `ignore_values` -> ignore_label.
  static label_mapping shifted(int first, int count, std::vector<int> ignore_values) {
    label_mapping m;
    for (int v = 0; v < count; ++v) m.table[static_cast<size_t>(first + v)] = v;
    ignore_values.push_back(ignore_label);
    for (int v : ignore_values) m.table[static_cast<size_t>(v)] = ignore_label;
    m.expected = "raw values " + std::to_string(first) + ".." + std::to_string(first + count - 1) +
                 " (classes)";
    for (int v : ignore_values) m.expected += ", " + std::to_string(v);
    m.expected += " (ignore)";
    return m;
  }
};

struct sample_files {
  std::string image, label;
  int mapping = 0;  // index into file_dataset's mappings
};

// A dataset given by image/label file pairs. Readers fill `files_` and `mappings_`.
class file_dataset : public dataset {
 public:
  const dataset_info& info() const override { return info_; }
  size_t size() const override { return files_.size(); }
  const std::vector<sample_files>& files() const { return files_; }
  const std::string& root() const { return root_; }
  const std::string& split() const { return split_; }

  example load(size_t index) const override {
    require<value_error>(index < files_.size(), info_.name, ": example index ", index,
                         " is outside [0, ", files_.size(), ") of split '", split_, "'");
    const sample_files& files = files_[index];
    example result;
    result.image_path = files.image;
    result.label_path = files.label;
    result.image = read_image(files.image);
    const host_tensor<uint8_t> raw = read_label_image(files.label);
    const int64_t height = result.image.size(0), width = result.image.size(1);
    if (raw.size(0) != height || raw.size(1) != width)
      throw data_error(files.label + ": label image is " + std::to_string(raw.size(1)) + "x" +
                       std::to_string(raw.size(0)) + " (WxH) but its image " + files.image +
                       " is " + std::to_string(width) + "x" + std::to_string(height));
    const label_mapping& mapping = mappings_[static_cast<size_t>(files.mapping)];
    result.label = host_tensor<int32_t>(shape{height, width});
    const uint8_t* source = raw.data();
    int32_t* target = result.label.data();
    for (int64_t i = 0; i < raw.numel(); ++i) {
      const int32_t id = mapping.table[source[i]];
      if (id < 0)
        throw data_error(files.label + ": label value " + std::to_string(int(source[i])) +
                         " at (x=" + std::to_string(i % width) +
                         ", y=" + std::to_string(i / width) + ") is neither a class nor ignore; " +
                         info_.name + " expects " + mapping.expected);
      target[i] = id;
    }
    return result;
  }

 protected:
  file_dataset(const std::string& name, std::string root, std::string split)
      : info_(known_dataset_info(name)), root_(std::move(root)), split_(std::move(split)) {
    require_directory(root_, "the data root");
  }

  // ---- helpers for the readers' constructors ----
  void require_directory(const std::string& path, const std::string& what) const {
    std::error_code ec;
    if (!std::filesystem::is_directory(path, ec))
      throw data_error(info_.name + ": " + path + " is not a directory; expected " + what +
                       " (see docs/datasets.md)");
  }
  void require_file(const std::string& path, const std::string& what) const {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
      throw data_error(info_.name + ": " + path + " does not exist; expected " + what +
                       " (see docs/datasets.md)");
  }
  // Non-empty, non-comment lines of a list file, trimmed.
  std::vector<std::string> read_list(const std::string& path, const std::string& what) const {
    require_file(path, what);
    std::ifstream in(path);
    if (!in) throw data_error(info_.name + ": cannot open list file " + path);
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) {
      const size_t begin = line.find_first_not_of(" \t\r\n");
      if (begin == std::string::npos || line[begin] == '#') continue;
      const size_t end = line.find_last_not_of(" \t\r\n");
      lines.push_back(line.substr(begin, end - begin + 1));
    }
    return lines;
  }
  // Sorted paths of the regular files in `dir` (recursively when `recursive`) ending in
  // `suffix`.
  std::vector<std::string> list_files(const std::string& dir, const std::string& suffix,
                                      bool recursive) const {
    require_directory(dir, "a folder of *" + suffix + " files");
    std::vector<std::string> paths;
    auto consider = [&](const std::filesystem::directory_entry& entry) {
      const std::string name = entry.path().filename().string();
      if (entry.is_regular_file() && name.size() > suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        paths.push_back(entry.path().string());
    };
    if (recursive)
      for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) consider(entry);
    else
      for (const auto& entry : std::filesystem::directory_iterator(dir)) consider(entry);
    std::sort(paths.begin(), paths.end());
    return paths;
  }
  // Maps a user split name to a folder name; value_error naming the accepted splits otherwise.
  std::string split_folder(const std::vector<std::pair<std::string, std::string>>& choices) const {
    std::string accepted;
    for (const auto& choice : choices) {
      if (choice.first == split_) return choice.second;
      accepted += (accepted.empty() ? "" : ", ") + choice.first;
    }
    throw value_error(info_.name + ": unknown split '" + split_ + "'; expected one of " + accepted);
  }
  void require_some_files(const std::string& where) const {
    if (files_.empty())
      throw data_error(info_.name + ": split '" + split_ + "' has no images: " + where);
  }
  static std::string join(const std::string& a, const std::string& b) {
    return (std::filesystem::path(a) / b).string();
  }
  static bool exists(const std::string& path) {
    std::error_code ec;
    return std::filesystem::exists(path, ec);
  }
  // "dir/name_suffix.png" -> "name" given the suffix.
  static std::string stem_before(const std::string& path, const std::string& suffix) {
    const std::string name = std::filesystem::path(path).filename().string();
    return name.substr(0, name.size() - suffix.size());
  }

  dataset_info info_;
  std::string root_, split_;
  std::vector<sample_files> files_;
  std::vector<label_mapping> mappings_;
};

// CamVid, SegNet layout: <root>/<split>.txt lists "image label" pairs relative to the root
// (absolute SegNet paths such as /SegNet/CamVid/train/x.png are taken as <root>/train/x.png).
// 11 classes (raw 0..10); raw 11 = Unlabelled -> ignore. Any split with a list file works
// (train, val, test).
class camvid_dataset : public file_dataset {
 public:
  camvid_dataset(const std::string& root, const std::string& split)
      : file_dataset("camvid", root, split) {
    mappings_.push_back(label_mapping::shifted(0, 11, {11}));
    const std::string list = join(root_, split_ + ".txt");
    const std::vector<std::string> lines =
        read_list(list, "the list of split '" + split_ + "' (lines 'image label')");
    for (size_t k = 0; k < lines.size(); ++k) {
      std::istringstream fields(lines[k]);
      std::string image, label, extra;
      if (!(fields >> image >> label) || (fields >> extra))
        throw data_error(list + ":" + std::to_string(k + 1) + ": expected 'image label', got '" +
                         lines[k] + "'");
      files_.push_back({resolve(image), resolve(label), 0});
    }
    require_some_files(list + " is empty");
  }

 private:
  std::string resolve(const std::string& listed) const {
    const std::filesystem::path path(listed);
    if (path.is_relative()) return join(root_, listed);
    if (exists(listed)) return listed;
    return (std::filesystem::path(root_) / path.parent_path().filename() / path.filename())
        .string();
  }
};

// ADE20K, ADEChallengeData2016 (the root is that folder or its parent):
// images/{training,validation}/*.jpg + annotations/{training,validation}/<same stem>.png.
// 150 classes: raw 0 (other) -> ignore, raw v in 1..150 -> v - 1 (mmseg's reduce_zero_label).
// Splits: train (training), val (validation).
class ade20k_dataset : public file_dataset {
 public:
  ade20k_dataset(const std::string& root, const std::string& split)
      : file_dataset("ade20k", root, split) {
    mappings_.push_back(label_mapping::shifted(1, 150, {0}));
    const std::string folder = split_folder({{"train", "training"},
                                             {"val", "validation"},
                                             {"training", "training"},
                                             {"validation", "validation"}});
    std::string base = join(root_, "ADEChallengeData2016");
    if (!exists(base)) base = root_;
    const std::string images = join(join(base, "images"), folder);
    const std::string labels = join(join(base, "annotations"), folder);
    require_directory(labels, "the label PNGs of split '" + split_ + "'");
    for (const std::string& image : list_files(images, ".jpg", false))
      files_.push_back({image, join(labels, stem_before(image, ".jpg") + ".png"), 0});
    require_some_files("no *.jpg in " + images);
  }
};

// Cityscapes: leftImg8bit/<split>/<city>/<id>_leftImg8bit.png +
// gtFine/<split>/<city>/<id>_gtFine_labelIds.png. The 34 label ids map to the 19 train ids
// (road 7 -> 0, ..., bicycle 33 -> 18); every other id is ignore. Where only mmseg's converted
// <id>_gtFine_labelTrainIds.png exists it is read as train ids (0..18, 255). Splits: train,
// val, test (test labels are all ignore).
class cityscapes_dataset : public file_dataset {
 public:
  cityscapes_dataset(const std::string& root, const std::string& split)
      : file_dataset("cityscapes", root, split) {
    label_mapping ids;
    static constexpr std::array<int, 19> train_to_id{7,  8,  11, 12, 13, 17, 19, 20, 21, 22,
                                                     23, 24, 25, 26, 27, 28, 31, 32, 33};
    for (int id = 0; id <= 33; ++id) ids.table[static_cast<size_t>(id)] = ignore_label;
    for (size_t t = 0; t < train_to_id.size(); ++t)
      ids.table[static_cast<size_t>(train_to_id[t])] = static_cast<int32_t>(t);
    ids.table[ignore_label] = ignore_label;
    ids.expected = "label ids 0..33 (7, 8, 11, ... 33 are the 19 classes, the rest ignore) or 255";
    mappings_.push_back(ids);
    mappings_.push_back(label_mapping::shifted(0, 19, {}));
    const std::string folder = split_folder({{"train", "train"}, {"val", "val"}, {"test", "test"}});
    const std::string images = join(join(root_, "leftImg8bit"), folder);
    const std::string labels = join(join(root_, "gtFine"), folder);
    require_directory(labels, "the gtFine label PNGs of split '" + split_ + "'");
    const std::string suffix = "_leftImg8bit.png";
    for (const std::string& image : list_files(images, suffix, true)) {
      const std::string city = std::filesystem::path(image).parent_path().filename().string();
      const std::string prefix = join(join(labels, city), stem_before(image, suffix));
      const std::string label_ids = prefix + "_gtFine_labelIds.png";
      const std::string train_ids = prefix + "_gtFine_labelTrainIds.png";
      if (!exists(label_ids) && exists(train_ids))
        files_.push_back({image, train_ids, 1});
      else
        files_.push_back({image, label_ids, 0});
    }
    require_some_files("no <city>/*" + suffix + " in " + images);
  }
};

// Pascal Context, 59 classes, mmseg layout (after tools/dataset_converters/pascal_context.py):
// VOC2010/JPEGImages/<id>.jpg, VOC2010/SegmentationClassContext/<id>.png,
// VOC2010/ImageSets/SegmentationContext/{train,val}.txt (ids). The root is VOC2010, or a folder
// holding VOC2010 or VOCdevkit/VOC2010. Raw 0 (background) -> ignore, raw v in 1..59 -> v - 1.
class pascal_context_dataset : public file_dataset {
 public:
  pascal_context_dataset(const std::string& root, const std::string& split)
      : file_dataset("pascal_context", root, split) {
    mappings_.push_back(label_mapping::shifted(1, 59, {0}));
    std::string base = root_;
    for (const std::string& candidate :
         {join(root_, "VOC2010"), join(join(root_, "VOCdevkit"), "VOC2010")})
      if (!exists(join(base, "JPEGImages")) && exists(join(candidate, "JPEGImages")))
        base = candidate;
    const std::string images = join(base, "JPEGImages");
    const std::string labels = join(base, "SegmentationClassContext");
    require_directory(images, "VOC2010/JPEGImages (the root is VOC2010 or holds it)");
    require_directory(labels, "VOC2010/SegmentationClassContext (mmseg's converted labels)");
    const std::string list =
        join(join(join(base, "ImageSets"), "SegmentationContext"), split_ + ".txt");
    for (const std::string& id : read_list(list, "the image ids of split '" + split_ + "'"))
      files_.push_back({join(images, id + ".jpg"), join(labels, id + ".png"), 0});
    require_some_files(list + " is empty");
  }
};

// COCO-Stuff, 171 classes, mmseg layouts (after its coco_stuff164k.py / coco_stuff10k.py):
//   164k: images/{train2017,val2017}/<id>.jpg + annotations/{...}/<id>_labelTrainIds.png,
//         train ids 0..170, 255 = ignore. Splits: train, val.
//   10k:  images/{train2014,test2014}/<id>.jpg + annotations/{...}/<id>_labelTrainIds.png,
//         ids from imageLists/{train,test}.txt (or the folder's *.jpg without a list);
//         raw 0 = ignore, raw v in 1..171 -> v - 1. Splits: train, test (val = test).
class coco_stuff_dataset : public file_dataset {
 public:
  enum class layout { detect, v164k, v10k };

  coco_stuff_dataset(const std::string& root, const std::string& split,
                     layout which = layout::detect)
      : file_dataset("coco_stuff", root, split), layout_(which) {
    const std::string images_root = join(root_, "images");
    if (layout_ == layout::detect) {
      if (exists(join(images_root, "train2017")) || exists(join(images_root, "val2017")))
        layout_ = layout::v164k;
      else if (exists(join(images_root, "train2014")) || exists(join(images_root, "test2014")))
        layout_ = layout::v10k;
      else
        throw data_error("coco_stuff: " + images_root +
                         " holds neither train2017/val2017 (COCO-Stuff 164k) nor "
                         "train2014/test2014 (COCO-Stuff 10k); see docs/datasets.md");
    }
    const bool is_164k = layout_ == layout::v164k;
    mappings_.push_back(is_164k ? label_mapping::shifted(0, 171, {})
                                : label_mapping::shifted(1, 171, {0}));
    const std::string folder =
        is_164k ? split_folder({{"train", "train2017"}, {"val", "val2017"}})
                : split_folder({{"train", "train2014"}, {"test", "test2014"}, {"val", "test2014"}});
    const std::string images = join(images_root, folder);
    const std::string labels = join(join(root_, "annotations"), folder);
    require_directory(images, "the images of split '" + split_ + "'");
    require_directory(labels, "the *_labelTrainIds.png of split '" + split_ + "'");
    auto add = [&](const std::string& id) {
      files_.push_back({join(images, id + ".jpg"), join(labels, id + "_labelTrainIds.png"), 0});
    };
    std::string list;
    if (!is_164k) {
      const std::string list_name = folder == "train2014" ? "train.txt" : "test.txt";
      for (const char* lists : {"imageLists", "imagesLists"})
        if (list.empty() && exists(join(join(root_, lists), list_name)))
          list = join(join(root_, lists), list_name);
    }
    if (!list.empty()) {
      for (std::string id : read_list(list, "the image ids of split '" + split_ + "'")) {
        if (id.size() > 4 && id.compare(id.size() - 4, 4, ".jpg") == 0) id.resize(id.size() - 4);
        add(std::filesystem::path(id).filename().string());
      }
    } else {
      for (const std::string& image : list_files(images, ".jpg", false))
        add(stem_before(image, ".jpg"));
    }
    require_some_files(list.empty() ? "no *.jpg in " + images : list + " is empty");
  }
  layout which_layout() const { return layout_; }

 private:
  layout layout_;
};

// The reader for a dataset name (see dataset_names(); value_error listing them otherwise).
inline std::unique_ptr<dataset> open_dataset(const std::string& name, const std::string& root,
                                             const std::string& split) {
  if (name == "camvid") return std::make_unique<camvid_dataset>(root, split);
  if (name == "ade20k") return std::make_unique<ade20k_dataset>(root, split);
  if (name == "cityscapes") return std::make_unique<cityscapes_dataset>(root, split);
  if (name == "pascal_context" || name == "pascal_context_59")
    return std::make_unique<pascal_context_dataset>(root, split);
  if (name == "coco_stuff") return std::make_unique<coco_stuff_dataset>(root, split);
  if (name == "coco_stuff164k")
    return std::make_unique<coco_stuff_dataset>(root, split, coco_stuff_dataset::layout::v164k);
  if (name == "coco_stuff10k")
    return std::make_unique<coco_stuff_dataset>(root, split, coco_stuff_dataset::layout::v10k);
  throw value_error("open_dataset: unknown dataset '" + name +
                    "'; known datasets: " + dataset_names_text() +
                    " (the synthetic scenes are data::synthetic_scenes_dataset, built in code)");
}

}  // namespace segkit::data
