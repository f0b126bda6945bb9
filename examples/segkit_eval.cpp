// segkit_eval — evaluates a trained model on a dataset split: per-class IoU table, mIoU,
// boundary mIoU (pixels within --boundary-radius px of a label boundary), pixel accuracy,
// mean accuracy and time, with single-scale, multi-scale + flip or sliding-window inference.
// See docs/evaluation.md. This file is the command-line half; the per-model half is
// eval_model.hpp (tool_models.hpp says why it is compiled apart).
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "eval_tools_common.hpp"
#include "segkit/models/zoo.hpp"
#include "segkit/tensor/parallel.hpp"
#include "tool_models.hpp"

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


void print_usage(FILE* out) {
  std::string names, text = usage_text;
  for (const auto& n : models::model_names()) names += (names.empty() ? "" : ", ") + n;
  text.replace(text.find("MODEL_NAMES"), 11, names);
  std::fputs(text.c_str(), out);
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
    return tools::eval_model<model_type>({args, *dataset, model_options, options, random_init});
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
