// segkit_eval — evaluates a trained model on a dataset split: per-class IoU table, mIoU,
// boundary mIoU (pixels within --boundary-radius px of a label boundary), pixel accuracy,
// mean accuracy and time, with single-scale, multi-scale + flip or sliding-window inference.
// See docs/evaluation.md.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "eval_tools_common.hpp"
#include "segkit/eval/saf_diagnostics.hpp"
#include "segkit/models/zoo.hpp"
#include "segkit/tensor/parallel.hpp"

using namespace segkit;

namespace {

const char* const usage_text =
    R"(usage: segkit_eval --dataset NAME [--data-root DIR] [--split val] --checkpoint FILE
                   [--model NAME] [--scales 0.5,0.75,1,1.25,1.5,1.75] [--flip] [--window HxW]
                   [--boundary-radius 8] [--limit N] [--threads N] [--json FILE] [--quiet]

Evaluates a model on a dataset split and prints the per-class IoU table, mIoU, boundary mIoU,
pixel accuracy, mean accuracy and the time taken.

  --dataset NAME       camvid, ade20k, cityscapes, pascal_context, coco_stuff, coco_stuff164k,
                       coco_stuff10k, or synthetic (generated scenes, no files)
  --data-root DIR      the dataset's root folder (not for synthetic)
  --split NAME         split to evaluate (default val)
  --checkpoint FILE    weights (a trainer checkpoint or any file with the model's tensor names)
  --model NAME         model type (default: the checkpoint's "model" metadata); one of
                       MODEL_NAMES
  --options K=V,...    the method's options (default: the checkpoint's, else the defaults)
  --random-init        no checkpoint: random weights (smoke tests of the tool itself)
  --scales LIST        inference scales, comma separated (default 1)
  --flip               also run each scale mirrored; all logits are summed
  --window HxW         sliding-window inference, stride 2/3 of the window (default: whole image)
  --boundary-radius R  boundary band radius in pixels, Euclidean (default 8)
  --limit N            evaluate only the first N images
  --threads N          CPU threads (default: OMP_NUM_THREADS or all cores)
  --json FILE          also write the results as JSON
  --saf-levels         SaF models: also each pyramid level's per-class IoU against the fused
                       result (supplementary Fig. C) and the share of pixels each level answered
  --quiet              no progress line
  synthetic only: --synthetic-count N (100) --synthetic-size HxW (256x256) --synthetic-seed S
                       (1000; the trainer's default training seed is different, so these scenes
                       are held out)
)";

std::string json_number(double v) {
  if (std::isnan(v)) return "null";
  char text[64];
  std::snprintf(text, sizeof text, "%.6f", v);
  return text;
}

void print_usage(FILE* out) {
  std::string names, text = usage_text;
  for (const auto& n : models::model_names()) names += (names.empty() ? "" : ", ") + n;
  text.replace(text.find("MODEL_NAMES"), 11, names);
  std::fputs(text.c_str(), out);
}

std::string percent(double v) {
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

int run(const tools::arguments& args) {
  if (args.has("--help")) {
    print_usage(stdout);
    return 0;
  }
  require<tools::usage_error>(args.positional().empty(), "unexpected argument \"",
                              args.positional().empty() ? "" : args.positional()[0], "\"");
  require<tools::usage_error>(args.has("--dataset"), "--dataset is required");
  const std::string dataset_name = args.get("--dataset");
  const bool random_init = args.has("--random-init");
  require<tools::usage_error>(random_init != args.has("--checkpoint"),
                              random_init ? "--random-init and --checkpoint exclude each other"
                                          : "--checkpoint FILE is required (or --random-init)");
  if (args.has("--threads")) set_num_threads(static_cast<int>(args.get_int("--threads", 1)));

  std::unique_ptr<data::dataset> dataset;
  if (dataset_name == "synthetic" || dataset_name == "synthetic_scenes") {
    const auto [h, w] = tools::parse_size("--synthetic-size", args.get("--synthetic-size", "256x256"));
    dataset = std::make_unique<data::synthetic_scenes_dataset>(
        static_cast<size_t>(args.get_int("--synthetic-count", 100)), h, w,
        static_cast<uint64_t>(args.get_int("--synthetic-seed", 1000)));
  } else {
    require<tools::usage_error>(args.has("--data-root"), "--data-root DIR is required for ",
                                dataset_name);
    dataset = data::open_dataset(dataset_name, args.get("--data-root"), args.get("--split", "val"));
  }
  const auto& info = dataset->info();

  std::string model_name = args.get("--model");
  std::map<std::string, std::string> meta;
  if (!random_init) meta = tools::checkpoint_metadata_of(args.get("--checkpoint"));
  if (model_name.empty() && !random_init) {
    const auto it = meta.find("model");
    require<tools::usage_error>(it != meta.end(), "--model is required: ", args.get("--checkpoint"),
                                " has no \"model\" metadata entry");
    model_name = it->second;
  }
  require<tools::usage_error>(!model_name.empty(), "--model is required with --random-init");
  tools::require_known_model(model_name, models::model_names());
  const std::string model_options = tools::model_options(args, meta, model_name);

  eval::evaluate_options options;
  options.inference = tools::inference_from(args);
  options.boundary.radius = static_cast<int>(args.get_int("--boundary-radius", 8));
  require<tools::usage_error>(options.boundary.radius >= 0, "--boundary-radius must be >= 0");
  const long long limit = args.get_int("--limit", 0);
  require<tools::usage_error>(limit >= 0, "--limit must be >= 0");
  options.max_images = static_cast<size_t>(limit);

  return models::with_model(model_name, [&](auto tag) {
    using model_type = typename decltype(tag)::type;
    auto model = models::make_model<model_type>(info.num_classes, model_options);
    if (!random_init) tools::load_weights(model, args.get("--checkpoint"));
    const size_t count = options.max_images ? std::min(options.max_images, dataset->size())
                                            : dataset->size();
    std::printf("segkit_eval: %s on %s %s (%zu images, %d classes), %s, %d threads\n",
                model.name().c_str(), info.name.c_str(), args.get("--split", "val").c_str(), count,
                info.num_classes, tools::describe(options.inference).c_str(), num_threads());
    std::fflush(stdout);
    tools::progress_line progress("evaluating", args.has("--quiet"));
    const eval::evaluation result =
        eval::evaluate(model, *dataset, options, [&](size_t d, size_t t) { progress(d, t); });

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

    if constexpr (eval::has_level_map<model_type>::value) {
      if (args.has("--saf-levels")) print_saf_levels(model, *dataset, options.max_images, info);
    } else {
      require<tools::usage_error>(!args.has("--saf-levels"), "--saf-levels needs a SaF model, not ",
                                  model.name());
    }

    if (args.has("--json")) {
      std::ofstream out(args.get("--json"));
      require<io_error>(bool(out), "segkit_eval: cannot write ", args.get("--json"));
      out << "{\"model\": \"" << model.name() << "\", \"dataset\": \"" << info.name
          << "\", \"split\": \"" << args.get("--split", "val") << "\", \"images\": " << result.images
          << ", \"inference\": \"" << tools::describe(options.inference)
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
  });
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const tools::arguments args(
        argc, argv, {"--help", "--flip", "--quiet", "--random-init", "--saf-levels"},
        {"--dataset", "--data-root", "--split", "--checkpoint", "--model", "--options", "--scales", "--window",
         "--boundary-radius", "--limit", "--threads", "--json", "--synthetic-count",
         "--synthetic-size", "--synthetic-seed"});
    return run(args);
  } catch (const tools::usage_error& e) {
    std::fprintf(stderr, "segkit_eval: %s\n(see segkit_eval --help)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "segkit_eval: error: %s\n", e.what());
    return 1;
  }
}
