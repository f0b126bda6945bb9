// examples/eval_model.hpp — the per-model half of segkit_eval: builds the zoo model, loads the
// checkpoint, evaluates, prints the per-class table (and SaF's levels), writes --json.
// Compiled once per zoo model (see tool_models.hpp), not in segkit_eval.cpp.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "segkit/eval/inference.hpp"
#include "segkit/eval/saf_diagnostics.hpp"
#include "segkit/models/zoo.hpp"
#include "segkit/tensor/parallel.hpp"
#include "tool_models.hpp"

namespace segkit::tools {

inline std::string json_number(double v) {
  if (std::isnan(v)) return "null";
  char text[64];
  std::snprintf(text, sizeof text, "%.6f", v);
  return text;
}

inline std::string percent(double v) {
  if (std::isnan(v)) return "     n/a";
  char text[32];
  std::snprintf(text, sizeof text, "%8.2f", 100 * v);
  return text;
}

// Supplementary Fig. C: each level's own per-class IoU minus the fused prediction's.
template <class Model>
void print_saf_levels(Model& model, const data::dataset& dataset, size_t limit,
                      const data::dataset_info& info) {
  const auto r = eval::saf_level_iou(model, dataset, limit);
  const size_t nl = r.levels.size();
  std::printf("\nSaF levels (scale 1, whole image): IoU of each level's own prediction minus the "
              "fused IoU\n%-24s %8s", "class", "fused");
  for (size_t l = 0; l < nl; ++l) std::printf("   level %zu", l + 1);
  std::printf("\n");
  for (int k = 0; k < info.num_classes; ++k) {
    const std::string name =
        k < static_cast<int>(info.class_names.size()) ? info.class_names[size_t(k)] : std::to_string(k);
    const double fused = r.fused.iou(k);
    std::printf("%-24s %s", name.c_str(), percent(fused).c_str());
    for (size_t l = 0; l < nl; ++l) {
      const double d = r.levels[l].iou(k) - fused;
      if (std::isnan(d)) std::printf(" %9s", "-");
      else std::printf(" %+9.2f", 100 * d);
    }
    std::printf("\n");
  }
  int64_t labelled = 0;
  for (int64_t a : r.answered) labelled += a;
  std::printf("%-24s %s", "mIoU", percent(r.fused.miou()).c_str());
  for (size_t l = 0; l < nl; ++l) std::printf(" %+9.2f", 100 * (r.levels[l].miou() - r.fused.miou()));
  std::printf("\n%-24s %8s", "pixels answered", "");
  for (size_t l = 0; l < nl; ++l)
    std::printf(" %8.1f%%", labelled ? 100.0 * double(r.answered[l]) / double(labelled) : 0.0);
  std::printf("\n");
}

template <class Model>
int eval_model(const eval_job& job) {
  const arguments& args = job.args;
  const data::dataset& dataset = job.dataset;
  const eval::evaluate_options& options = job.options;
  const auto& info = dataset.info();
  auto model = models::make_model<Model>(info.num_classes, job.model_options);
  if (!job.random_init) load_weights(model, args.get("--checkpoint"));
  const size_t count = options.max_images ? std::min(options.max_images, dataset.size())
                                          : dataset.size();
  std::printf("segkit_eval: %s on %s %s (%zu images, %d classes), %s, %d threads\n",
              model.name().c_str(), info.name.c_str(), args.get("--split", "val").c_str(), count,
              info.num_classes, describe(options.inference).c_str(), num_threads());
  std::fflush(stdout);
  progress_line progress("evaluating", args.has("--quiet"));
  const eval::evaluation result =
      eval::evaluate(model, dataset, options, [&](size_t d, size_t t) { progress(d, t); });

  std::printf("\n%-24s %8s %10s %8s %12s\n", "class", "IoU", "boundary", "acc", "pixels");
  for (int k = 0; k < info.num_classes; ++k) {
    const std::string name =
        k < static_cast<int>(info.class_names.size()) ? info.class_names[size_t(k)] : std::to_string(k);
    std::printf("%-24s %s %s %s %12lld\n", name.c_str(), percent(result.all.iou(k)).c_str(),
                (percent(result.boundary.iou(k)) + "  ").c_str(),
                percent(result.all.accuracy(k)).c_str(),
                static_cast<long long>(result.all.label_area(k)));
  }
  std::printf("\nmIoU            %6.2f\n", 100 * result.miou);
  std::printf("boundary mIoU   %6.2f   (pixels within %d px of a label boundary: %lld of %lld)\n",
              100 * result.boundary_miou, options.boundary.radius,
              static_cast<long long>(result.boundary.total()),
              static_cast<long long>(result.all.total()));
  std::printf("pixel accuracy  %6.2f\n", 100 * result.pixel_accuracy);
  std::printf("mean accuracy   %6.2f\n", 100 * result.mean_accuracy);
  std::printf("time            %.1f s for %zu images (%.3f s/image)\n", result.seconds,
              result.images, result.images ? result.seconds / double(result.images) : 0.0);

  if constexpr (eval::has_level_map<Model>::value) {
    if (args.has("--saf-levels")) print_saf_levels(model, dataset, options.max_images, info);
  } else {
    require<usage_error>(!args.has("--saf-levels"), "--saf-levels needs a SaF model, not ",
                         model.name());
  }

  if (args.has("--json")) {
    std::ofstream out(args.get("--json"));
    require<io_error>(bool(out), "segkit_eval: cannot write ", args.get("--json"));
    out << "{\"model\": \"" << model.name() << "\", \"dataset\": \"" << info.name
        << "\", \"split\": \"" << args.get("--split", "val") << "\", \"images\": " << result.images
        << ", \"inference\": \"" << describe(options.inference)
        << "\", \"miou\": " << json_number(result.miou)
        << ", \"boundary_miou\": " << json_number(result.boundary_miou)
        << ", \"boundary_radius\": " << options.boundary.radius
        << ", \"pixel_accuracy\": " << json_number(result.pixel_accuracy)
        << ", \"mean_accuracy\": " << json_number(result.mean_accuracy)
        << ", \"seconds\": " << json_number(result.seconds) << ", \"per_class_iou\": {";
    for (int k = 0; k < info.num_classes; ++k)
      out << (k ? ", " : "") << "\""
          << (k < static_cast<int>(info.class_names.size()) ? info.class_names[size_t(k)]
                                                            : std::to_string(k))
          << "\": " << json_number(result.all.iou(k));
    out << "}}\n";
    require<io_error>(bool(out), "segkit_eval: writing ", args.get("--json"), " failed");
  }
  return 0;
}

}  // namespace segkit::tools
