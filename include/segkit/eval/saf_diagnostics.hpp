// segkit/eval/saf_diagnostics.hpp — what SaF's supplementary shows about a trained model, and
// the side-by-side picture every tool writes for any model.
// Provides:
//   eval::level_map_colour(level_map [h, w] uint8, levels, stride, H, W) -> [H, W, 3] RGB:
//     each image pixel coloured by the pyramid level that answered it (the fuser's 1-based
//     levels, ops/pyramid_fuse.hpp; viridis, level 1 =
//     coarsest = dark purple ... level L = finest = yellow); stride = image pixels per cell.
//   eval::has_level_map<Model>: the model's head() has a fuser level map (models::saf).
//   eval::prediction_panels(model, example, info) -> {input, ground truth, prediction[, level
//     map]} ([H, W, 3] each, the level map only for models with one): single-scale inference.
//   eval::saf_level_report / saf_level_iou(model, dataset, max_images): per-level per-class
//     IoU (supplementary Fig. C): the argmax of each Ŷ(l) alone, nearest-upsampled to the label
//     grid, against the ground truth, beside the fused prediction's IoU; plus how many labelled
//     pixels each level answered in the fused result.
// Requires: a SaF model (models/saf.hpp) for the level map and the level report; whole-image,
//   scale-1 inference (the pyramids belong to one forward).
// Guarantees: the model is left in the mode it was in; nothing is cached between images.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "segkit/data/dataset.hpp"
#include "segkit/data/image_io.hpp"
#include "segkit/eval/inference.hpp"
#include "segkit/eval/metrics.hpp"

namespace segkit::eval {

inline host_tensor<uint8_t> level_map_colour(const host_tensor<uint8_t>& level_map, int levels,
                                             int64_t stride, int64_t height, int64_t width) {
  require<shape_error>(level_map.rank() == 2 && stride >= 1 && level_map.size(0) * stride >= height &&
                           level_map.size(1) * stride >= width,
                       "level_map_colour: a level map of shape ", level_map.shape().to_string(),
                       " at stride ", stride, " does not cover a ", height, " x ", width, " image");
  require<value_error>(levels >= 1, "level_map_colour: levels = ", levels, ", expected >= 1");
  static constexpr std::array<std::array<uint8_t, 3>, 5> viridis{
      {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}}};
  host_tensor<uint8_t> rgb(shape{height, width, 3});
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x) {
      const int level = level_map[(y / stride) * level_map.size(1) + x / stride];
      require<value_error>(level >= 1 && level <= levels, "level_map_colour: level ", level,
                           " at (x=", x, ", y=", y, ") is not in [1, ", levels, "]");
      const size_t index = levels == 1 ? 4 : size_t((level - 1) * 4 / (levels - 1));
      std::copy(viridis[index].begin(), viridis[index].end(), rgb.data() + 3 * (y * width + x));
    }
  return rgb;
}

template <class Model, class = void>
struct has_level_map : std::false_type {};
template <class Model>
struct has_level_map<Model, std::void_t<decltype(std::declval<Model&>().head().level_map())>>
    : std::true_type {};

// The image as RGB [H, W, 3] (data::example holds it so already).
template <class Model>
std::vector<host_tensor<uint8_t>> prediction_panels(Model& model, const data::example& example,
                                                    const data::dataset_info& info) {
  const bool was_training = model.training();
  model.eval();
  const auto sample = data::normalize(example);
  const shape& s = sample.image.shape();
  const auto logits = predict_logits(model, sample.image.view({1, s[0], s[1], s[2]}));
  const auto labels = argmax_classes(logits).view({s[1], s[2]});
  std::vector<host_tensor<uint8_t>> panels{
      example.image, data::colorize(example.label, info.palette, info.ignore_index),
      data::colorize(labels, info.palette, info.ignore_index)};
  if constexpr (has_level_map<Model>::value) {
    const auto map = to<cpu>(model.head().level_map());
    const auto one = map.view({map.size(1), map.size(2)});
    panels.push_back(level_map_colour(one, model.head().levels(), Model::feature_stride, s[1], s[2]));
  }
  if (was_training) model.train();
  return panels;
}

struct saf_level_report {
  std::vector<confusion_matrix> levels;  // Ŷ(l) alone, l = 1 (coarsest) .. L
  confusion_matrix fused;
  std::vector<int64_t> answered;         // labelled pixels each level answered in the fuser
  size_t images = 0;
};

template <class Model>
saf_level_report saf_level_iou(Model& model, const data::dataset& dataset, size_t max_images = 0) {
  static_assert(has_level_map<Model>::value, "saf_level_iou needs a SaF model (models/saf.hpp)");
  const auto& info = dataset.info();
  const bool was_training = model.training();
  model.eval();
  // levels() pyramid outputs: one for the single-output ablations (A, B, C).
  const int nl = int(model.head().semantic_logits().size());
  const int first_level = model.head().levels() - nl + 1;  // the level map's value of Ŷ(1)
  saf_level_report report;
  report.levels.assign(size_t(nl), confusion_matrix(info.num_classes, info.ignore_index));
  report.fused = confusion_matrix(info.num_classes, info.ignore_index);
  report.answered.assign(size_t(nl), 0);
  const size_t total = max_images ? std::min(max_images, dataset.size()) : dataset.size();
  for (size_t i = 0; i < total; ++i) {
    const data::example example = dataset.load(i);
    const auto sample = data::normalize(example);
    const shape& s = sample.image.shape();
    const int64_t h = s[1], w = s[2];
    const auto logits = predict_logits(model, sample.image.view({1, s[0], h, w}));
    report.fused.add(argmax_classes(logits).view({h, w}), sample.label);
    const auto map = to<cpu>(model.head().level_map());
    const int64_t stride = Model::feature_stride;
    for (int l = 0; l < nl; ++l) {
      const auto level = to<cpu>(model.head().semantic_logits()[size_t(l)]);
      const auto coarse = argmax_classes(level);  // [1, h_l, w_l]
      const int64_t cell = stride * (map.size(1) / level.size(2)), cw = coarse.size(2);
      host_tensor<int32_t> up(shape{h, w});
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          up[y * w + x] = coarse[(y / cell) * cw + x / cell];
          const int32_t label = sample.label[y * w + x];
          if (label != info.ignore_index &&
              map[(y / stride) * map.size(2) + x / stride] == uint8_t(l + first_level))
            ++report.answered[size_t(l)];
        }
      report.levels[size_t(l)].add(up, sample.label);
    }
    report.images = i + 1;
  }
  if (was_training) model.train();
  return report;
}

}  // namespace segkit::eval
