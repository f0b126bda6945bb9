// examples/infer_model.hpp — the per-model half of segkit_infer: builds the zoo model, loads the
// checkpoint, segments each image and writes the label, overlay (and compare) PNGs.
// Compiled once per zoo model (see tool_models.hpp), not in segkit_infer.cpp.
#pragma once
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "segkit/data/augment.hpp"
#include "segkit/data/image_io.hpp"
#include "segkit/data/palette.hpp"
#include "segkit/eval/inference.hpp"
#include "segkit/eval/metrics.hpp"
#include "segkit/models/zoo.hpp"
#include "tool_models.hpp"

namespace segkit::tools {

template <class Model>
int infer_model(const infer_job& job) {
  namespace fs = std::filesystem;
  const data::dataset_info& info = job.info;
  const eval::inference_options& options = job.options;
  const fs::path& out_dir = job.out_dir;
  const size_t count = job.count;
  const double alpha = job.alpha;
  auto model = models::make_model<Model>(info.num_classes, job.model_options);
  if (!job.random_init) load_weights(model, job.args.get("--checkpoint"));
  model.eval();
  std::printf("segkit_infer: %s, %d classes, %s, %zu image(s) -> %s\n", model.name().c_str(),
              info.num_classes, describe(options).c_str(), count, out_dir.string().c_str());
  std::fflush(stdout);
  for (size_t i = 0; i < count; ++i) {
    const auto start = std::chrono::steady_clock::now();
    data::example example;
    if (job.split) {
      example = job.split->load(i);
    } else {
      example.image = data::read_image(job.files[i].string());
      example.label = host_tensor<int32_t>::zeros({example.image.size(0), example.image.size(1)});
      example.image_path = job.files[i].string();
    }
    const fs::path file(example.image_path);
    const auto sample = data::normalize(example);
    const shape& s = sample.image.shape();
    const auto logits =
        eval::predict_logits(model, sample.image.view({1, s[0], s[1], s[2]}), options);
    const auto labels = eval::argmax_classes(logits).view({s[1], s[2]});
    const auto colour = data::colorize(labels, info.palette, info.ignore_index);
    const std::string stem = file.stem().string();
    const std::string labels_path = (out_dir / (stem + "_labels.png")).string();
    const std::string overlay_path = (out_dir / (stem + "_overlay.png")).string();
    data::write_png(labels_path, colour);
    data::write_png(overlay_path, data::overlay(example.image, colour, alpha));
    if (job.split) {
      const auto truth = data::colorize(example.label, info.palette, info.ignore_index);
      data::write_png((out_dir / (stem + "_compare.png")).string(),
                      data::side_by_side({example.image, truth, colour}, 4));
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("  %s (%lldx%lld): %s, %s  %.2f s\n", file.filename().string().c_str(),
                static_cast<long long>(s[1]), static_cast<long long>(s[2]), labels_path.c_str(),
                overlay_path.c_str(), seconds);
  }
  return 0;
}

}  // namespace segkit::tools
