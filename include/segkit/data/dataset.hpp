// segkit/data/dataset.hpp — what every dataset gives the loader, the trainer and the tools.
// Provides: data::dataset_info (name, classes, names, palette, ignore index), data::example
// (one decoded image + label), data::dataset (the interface every reader implements),
// data::data_error (a segkit::io_error naming the file and the bad value).
// Requires: nothing beyond the tensor headers. Guarantees: every reader maps its raw label
// values to train ids in [0, num_classes) or to ignore_index (always 255 in segkit, as in
// mmsegmentation), so the losses, metrics and tools never see dataset-specific encodings.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "segkit/tensor/error.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::data {

// A file is missing or unreadable, a label image has the wrong size, or a label holds a value
// that is neither a class nor ignore. The message names the file and the value.
struct data_error : io_error {
  using io_error::io_error;
};

constexpr int32_t ignore_label = 255;

struct dataset_info {
  std::string name;                               // "camvid", "ade20k", ...
  int num_classes = 0;
  std::vector<std::string> class_names;           // num_classes entries
  std::vector<std::array<uint8_t, 3>> palette;    // num_classes RGB colours for label PNGs
  int32_t ignore_index = ignore_label;
};

// One decoded sample: image [H, W, 3] uint8 RGB (interleaved, as stb gives it), label [H, W]
// int32 train ids or ignore_index. `image_path` / `label_path` name the files (or
// "synthetic:<index>") for error messages and the inference tool.
struct example {
  host_tensor<uint8_t> image;
  host_tensor<int32_t> label;
  std::string image_path, label_path;
};

// A finite, indexable collection of examples. load() is const and must be safe to call from
// several loader threads at once (readers keep only immutable state after construction).
class dataset {
 public:
  virtual ~dataset() = default;
  virtual const dataset_info& info() const = 0;
  virtual size_t size() const = 0;
  // Decodes example i (i < size()); throws data_error naming the file and value on bad input.
  virtual example load(size_t index) const = 0;
};

}  // namespace segkit::data
