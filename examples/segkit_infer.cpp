// segkit_infer — segments an image or every image of a folder with a trained model and writes,
// per input <name>.<ext>: <name>_labels.png (colour label image) and <name>_overlay.png
// (the colours blended over the image). With --data-root it reads a dataset split instead and
// also writes <name>_compare.png: image | ground truth | prediction. See docs/evaluation.md.
// This file is the command-line half; the per-model half is infer_model.hpp (tool_models.hpp
// says why it is compiled apart).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "eval_tools_common.hpp"
#include "segkit/data/datasets.hpp"
#include "segkit/data/palette.hpp"
#include "segkit/models/zoo.hpp"
#include "segkit/tensor/parallel.hpp"
#include "tool_models.hpp"

using namespace segkit;
namespace fs = std::filesystem;

namespace {

const char* const usage_text =
    R"(usage: segkit_infer --checkpoint FILE [--model NAME] (--dataset NAME | --classes K)
                    (INPUT | --data-root DIR [--split val] [--limit N]) --out DIR
                    [--scales LIST] [--flip] [--window HxW] [--alpha 0.5] [--threads N]

Segments INPUT (an image file, or a folder: every .png .jpg .jpeg .bmp in it, not recursive)
and writes <name>_labels.png (colour label image) and <name>_overlay.png into DIR.
With --data-root (and --dataset), segments the first --limit images of a dataset split instead
and also writes <name>_compare.png: the image, its ground truth and the prediction side by side.

  --checkpoint FILE  weights (a trainer checkpoint or any file with the model's tensor names)
  --options K=V,...  the method's options (default: the checkpoint's, else the defaults)
  --model NAME       model type (default: the checkpoint's "model" metadata); one of
                     MODEL_NAMES
  --dataset NAME     class count, names and palette of a dataset (camvid, ade20k, cityscapes,
                     pascal_context, coco_stuff, synthetic); no files needed. Default: the
                     checkpoint's "dataset" metadata
  --classes K        or just a class count (PASCAL VOC colour map)
  --random-init      no checkpoint: random weights (smoke tests of the tool itself)
  --out DIR          output folder (created)
  --scales LIST      inference scales, comma separated (default 1)
  --flip             also run each scale mirrored; all logits are summed
  --window HxW       sliding-window inference, stride 2/3 of the window (default: whole image)
  --alpha A          overlay opacity of the label colours in [0, 1] (default 0.5)
  --threads N        CPU threads
  --data-root DIR    read the --dataset split from DIR instead of INPUT (ground truth shown)
  --split NAME       with --data-root: the split (default val)
  --limit N          with --data-root: the first N images (default 4)
)";

void print_usage(FILE* out) {
  std::string names, text = usage_text;
  for (const auto& n : models::model_names()) names += (names.empty() ? "" : ", ") + n;
  text.replace(text.find("MODEL_NAMES"), 11, names);
  std::fputs(text.c_str(), out);
}

bool is_image_file(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

std::vector<fs::path> input_files(const std::string& input) {
  const fs::path path(input);
  require<io_error>(fs::exists(path), "input ", input, " does not exist");
  if (!fs::is_directory(path)) return {path};
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(path))
    if (entry.is_regular_file() && is_image_file(entry.path())) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  require<io_error>(!files.empty(), "input folder ", input,
                    " holds no .png, .jpg, .jpeg or .bmp files");
  return files;
}

int run(const tools::arguments& args) {
  if (args.has("--help")) {
    print_usage(stdout);
    return 0;
  }
  const bool from_dataset = args.has("--data-root");
  require<tools::usage_error>(args.positional().size() == (from_dataset ? 0u : 1u),
                              from_dataset ? "give INPUT or --data-root, not both"
                              : args.positional().empty()
                                  ? "INPUT (an image or a folder) or --data-root DIR is required"
                                  : "one INPUT expected, got several");
  require<tools::usage_error>(!from_dataset || args.has("--dataset"),
                              "--data-root needs --dataset NAME (which reader to use)");
  require<tools::usage_error>(args.has("--out"), "--out DIR is required");
  const bool random_init = args.has("--random-init");
  require<tools::usage_error>(random_init != args.has("--checkpoint"),
                              random_init ? "--random-init and --checkpoint exclude each other"
                                          : "--checkpoint FILE is required (or --random-init)");
  require<tools::usage_error>(!(args.has("--dataset") && args.has("--classes")),
                              "give --dataset or --classes, not both");
  if (args.has("--threads")) set_num_threads(static_cast<int>(args.get_int("--threads", 1)));
  const double alpha = std::strtod(args.get("--alpha", "0.5").c_str(), nullptr);
  require<tools::usage_error>(alpha >= 0 && alpha <= 1, "--alpha must be in [0, 1]");

  std::map<std::string, std::string> meta;
  if (!random_init) meta = tools::checkpoint_metadata_of(args.get("--checkpoint"));
  std::string model_name = args.get("--model");
  if (model_name.empty() && meta.count("model")) model_name = meta["model"];
  require<tools::usage_error>(!model_name.empty(), "--model is required (",
                              random_init ? "--random-init" : "the checkpoint has no \"model\" metadata",
                              ")");
  tools::require_known_model(model_name, models::model_names());
  const std::string model_options = tools::model_options(args, meta, model_name);

  data::dataset_info info;
  if (args.has("--classes")) {
    const long long k = args.get_int("--classes", 0);
    require<tools::usage_error>(k >= 1 && k <= 65535, "--classes must be in [1, 65535]");
    info.num_classes = static_cast<int>(k);
    info.palette = data::generic_palette(info.num_classes);
  } else {
    std::string name = args.get("--dataset");
    if (name.empty() && meta.count("dataset")) name = meta["dataset"];
    require<tools::usage_error>(!name.empty(), "--dataset NAME or --classes K is required (the ",
                                "checkpoint has no \"dataset\" metadata)");
    info = tools::info_by_name(name);
  }
  if (info.num_classes == 0) info.num_classes = static_cast<int>(info.palette.size());

  // Either files (no ground truth) or a dataset split (labels mapped by its reader).
  std::vector<fs::path> files;
  std::unique_ptr<data::dataset> split;
  size_t count = 0;
  if (from_dataset) {
    split = data::open_dataset(args.get("--dataset"), args.get("--data-root"), args.get("--split", "val"));
    const long long limit = args.get_int("--limit", 4);
    require<tools::usage_error>(limit >= 1, "--limit must be at least 1, got ", limit);
    count = std::min(split->size(), static_cast<size_t>(limit));
  } else {
    files = input_files(args.positional()[0]);
    count = files.size();
  }
  const fs::path out_dir(args.get("--out"));
  fs::create_directories(out_dir);
  const auto options = tools::inference_from(args);

  return models::with_model(model_name, [&](auto tag) {
    using model_type = typename decltype(tag)::type;
    return tools::infer_model<model_type>({args, info, model_options, options, random_init,
                                           split.get(), files, count, out_dir, alpha});
  });
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const tools::arguments args(argc, argv, {"--help", "--flip", "--random-init"},
                                {"--checkpoint", "--model", "--options", "--dataset", "--classes", "--out",
                                 "--scales", "--window", "--alpha", "--threads", "--data-root",
                                 "--split", "--limit"});
    return run(args);
  } catch (const tools::usage_error& e) {
    std::fprintf(stderr, "segkit_infer: %s\n(see segkit_infer --help)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "segkit_infer: error: %s\n", e.what());
    return 1;
  }
}
