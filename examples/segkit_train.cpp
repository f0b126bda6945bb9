// segkit_train — train a segkit model (models/zoo.hpp) on a dataset with the shared trainer
// (train/trainer.hpp): augmentation and background loading (data/loader.hpp), SGD or AdamW
// with a poly schedule, periodic evaluation on the val split (eval/inference.hpp), atomic
// checkpoints, --resume, SIGINT, NaN stop. See docs/training.md.
//
// Settings come from, lowest priority first: the dataset's defaults, out/config.conf (only
// with --resume: the configuration the run was started with), --config FILE, the command
// line. The resolved settings are written to out/config.conf and into every checkpoint.
// This file is the command-line half; the per-model half is train_model.hpp (tool_models.hpp
// says why it is compiled apart).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "segkit/data/datasets.hpp"
#include "segkit/data/synthetic_scenes.hpp"
#include "segkit/models/zoo.hpp"
#include "segkit/train/trainer.hpp"
#include "tool_models.hpp"
#include "train_settings.hpp"

using namespace segkit;
using namespace segkit::tools::train_cli;
using segkit::tools::usage_error;

namespace {

const char* const usage_text = R"(usage: segkit_train [options]

  --config FILE          key=value lines (keys are the option names without "--"; # comments)
  --dataset NAME         camvid (default), ade20k, cityscapes, pascal_context, coco_stuff,
                         coco_stuff164k, coco_stuff10k, synthetic
  --data-root DIR        dataset folder (default ../shared/data/<dataset>)
  --model NAME           fcn-resnet18 (default), fcn-resnet50, saf-resnet18, hfgd-resnet18,
                         ocr-resnet18, and the quarter-width fcn/saf/hfgd/ocr-resnet18-w25
  --options K=V,...      the method's options (docs/saf.md, docs/hfgd.md, docs/ocr.md), e.g.
                         "ablation=C" or "relabel=gt,tau=0.4" (saf), "hfgm=0,output_stride=2"
                         (hfgd), "object_context=0" (ocr: the plain baseline head)
  --width PERCENT        backbone width: 100 = the model as named, else "<model>-w<PERCENT>"
  --pretrained FILE      backbone weights (safetensors, torchvision names; see docs/backbones.md)
  --crop HxW             training crop                                  [dataset default]
  --scale-range A,B      random scale range (ratio of the image size)   [dataset default]
  --no-flip, --no-photometric   switch augmentations off
  --batch N              images per step                                [dataset default]
  --iters N              total iterations                               [dataset default]
  --optimizer sgd|adamw  sgd: momentum 0.9, L2 weight decay; adamw: decoupled decay
  --lr X  --weight-decay X  --momentum X  --min-lr X
  --schedule poly|cosine|constant  --warmup N (linear warm-up iterations, ratio 0.1)
  --eval-every N         evaluate on the val split every N iterations (0 = only at the end)
  --eval-images N        evaluate on the first N val images only (0 = all)
  --eval-scale X         inference scale for evaluation (logits resized back to the label size)
  --checkpoint-every N   write out/last.safetensors every N iterations (also at the end)
  --keep-checkpoints     also keep out/iter_<k>.safetensors
  --out DIR              output folder (default runs/<dataset>-<model>)
  --resume               continue from out/last.safetensors, bit-identically
  --stop-after N         stop (and save) after N iterations; --resume continues
  --skip-bad             skip unreadable / bad samples (counted and listed at the end)
  --threads N            loader threads (default 2)
  --seed N               seed of the model init, sample order, augmentation, dropout
  --log-every N          progress line + metrics record every N iterations (default 10)
  --progress auto|bar|lines   progress bar on a terminal (auto), or plain lines
  --synthetic-count N  --synthetic-size HxW   the synthetic dataset (train; val uses seed+1)
  --preview N            after training, write out/preview_<i>.png for the first N val images:
                         input | ground truth | prediction (| SaF's level map) (default 0)
  --help

Outputs in --out: config.conf, metrics.csv (train logs), eval.csv, metrics.jsonl (both),
last.safetensors, best.safetensors (best val mIoU), iter_<k>.safetensors (--keep-checkpoints).
Exit status: 0 done (or --stop-after), 130 interrupted by SIGINT (checkpoint saved),
1 error or divergence (NaN/Inf), 2 bad command line.
)";

const std::set<std::string> flag_keys{"no-flip", "no-photometric", "keep-checkpoints", "resume",
                                      "skip-bad", "help"};
const std::set<std::string> value_keys{
    "config",     "dataset",      "data-root",      "model",          "width",
    "pretrained", "crop",         "scale-range",    "batch",          "iters",
    "optimizer",  "lr",           "weight-decay",   "momentum",       "min-lr",
    "schedule",   "warmup",       "eval-every",     "eval-images",    "eval-scale",
    "checkpoint-every", "out",    "stop-after",     "threads",        "seed",
    "log-every",  "progress",     "synthetic-count", "synthetic-size", "options",
    "preview"};

settings dataset_defaults(const std::string& dataset) {
  settings s{{"model", "fcn-resnet18"}, {"width", "100"},     {"optimizer", "sgd"},
             {"lr", "0.01"},            {"momentum", "0.9"},  {"weight-decay", "0.0005"},
             {"min-lr", "0.0001"},      {"schedule", "poly"}, {"warmup", "0"},
             {"scale-range", "0.5,2"},  {"eval-images", "0"}, {"eval-scale", "1"},
             {"threads", "2"},          {"seed", "0"},        {"log-every", "10"},
             {"progress", "auto"},      {"stop-after", "0"},  {"synthetic-count", "200"},
             {"synthetic-size", "256x256"}, {"options", ""},      {"preview", "0"}};
  auto set = [&](settings more) {
    for (auto& [k, v] : more) s[k] = v;
  };
  if (dataset == "camvid")  // 360x480 images at reduced resolution: the 25-minute CPU baseline
    set({{"crop", "192x192"}, {"scale-range", "0.25,1"}, {"eval-scale", "0.5"}, {"batch", "8"},
         {"iters", "650"}, {"lr", "0.02"}, {"warmup", "50"}, {"eval-every", "250"},
         {"checkpoint-every", "50"}});
  else if (dataset == "ade20k")  // mmseg's 512x512 80k schedule
    set({{"crop", "512x512"}, {"batch", "16"}, {"iters", "80000"}, {"eval-every", "8000"},
         {"checkpoint-every", "8000"}});
  else if (dataset == "cityscapes")
    set({{"crop", "512x1024"}, {"batch", "8"}, {"iters", "80000"}, {"eval-every", "8000"},
         {"checkpoint-every", "8000"}});
  else if (dataset == "pascal_context" || dataset == "pascal_context_59")
    set({{"crop", "480x480"}, {"batch", "16"}, {"iters", "40000"}, {"lr", "0.004"},
         {"weight-decay", "0.0001"}, {"eval-every", "4000"}, {"checkpoint-every", "4000"}});
  else if (dataset.rfind("coco_stuff", 0) == 0)
    set({{"crop", "512x512"}, {"batch", "16"}, {"iters", "80000"}, {"eval-every", "8000"},
         {"checkpoint-every", "8000"}});
  else  // synthetic: a smoke run in minutes
    set({{"crop", "128x128"}, {"batch", "4"}, {"iters", "200"}, {"eval-every", "100"},
         {"eval-images", "16"}, {"checkpoint-every", "50"}, {"model", "saf-resnet18-w25"}});
  return s;
}

void read_config(const std::string& path, settings& into) {
  std::ifstream in(path);
  require<usage_error>(bool(in), "cannot read the config file ", path);
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    const auto hash = line.find('#');
    if (hash != std::string::npos) line.erase(hash);
    const auto trim = [](std::string t) {
      const auto b = t.find_first_not_of(" \t\r"), e = t.find_last_not_of(" \t\r");
      return b == std::string::npos ? std::string() : t.substr(b, e - b + 1);
    };
    line = trim(line);
    if (line.empty()) continue;
    const auto eq = line.find('=');
    require<usage_error>(eq != std::string::npos, path, ":", number,
                         ": expected key = value, got \"", line, "\"");
    std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    if (key.rfind("--", 0) == 0) key.erase(0, 2);
    require<usage_error>(key != "config" && (value_keys.count(key) || flag_keys.count(key)), path,
                         ":", number, ": unknown key \"", key, "\"");
    into[key] = value;
  }
}

settings parse_command_line(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    require<usage_error>(arg.rfind("--", 0) == 0, "unexpected argument \"", arg, "\"");
    arg.erase(0, 2);
    const auto eq = arg.find('=');
    if (eq != std::string::npos) value = arg.substr(eq + 1), arg.erase(eq);
    if (arg == "h") arg = "help";
    if (flag_keys.count(arg)) {
      s[arg] = "1";
    } else if (value_keys.count(arg)) {
      if (eq == std::string::npos) {
        require<usage_error>(i + 1 < argc, "--", arg, " needs a value");
        value = argv[++i];
      }
      s[arg] = value;
    } else {
      throw usage_error("unknown option --" + arg);
    }
  }
  return s;
}

datasets open_datasets(const settings& s) {
  const std::string& name = s.at("dataset");
  datasets d;
  if (name == "synthetic") {
    const auto size = size_of(s, "synthetic-size");
    const auto count = static_cast<size_t>(integer(s, "synthetic-count", 1));
    const auto seed = static_cast<uint64_t>(integer(s, "seed"));
    d.train = std::make_unique<data::synthetic_scenes_dataset>(count, int(size.first),
                                                               int(size.second), seed);
    d.val = std::make_unique<data::synthetic_scenes_dataset>(std::max<size_t>(count / 8, 8),
                                                             int(size.first), int(size.second),
                                                             seed + 1);
  } else {
    d.train = data::open_dataset(name, s.at("data-root"), "train");
    d.val = data::open_dataset(name, s.at("data-root"), "val");
  }
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const settings cli = parse_command_line(argc, argv);
    if (flag(cli, "help")) {
      std::printf("%s", usage_text);
      return 0;
    }
    settings file;
    if (cli.count("config")) read_config(cli.at("config"), file);
    auto pick = [&](const std::string& key, const std::string& fallback) {
      if (cli.count(key)) return cli.at(key);
      if (file.count(key)) return file.at(key);
      return fallback;
    };
    const bool resume = flag(cli, "resume") || flag(file, "resume");
    std::string dataset = pick("dataset", "camvid");
    std::string out = pick("out", "");
    settings s = dataset_defaults(dataset);
    if (resume && !out.empty() && std::filesystem::exists(out + "/config.conf")) {
      settings saved;
      read_config(out + "/config.conf", saved);
      if (!cli.count("dataset") && !file.count("dataset") && saved.count("dataset")) {
        dataset = saved.at("dataset");
        s = dataset_defaults(dataset);
      }
      for (auto& [k, v] : saved) s[k] = v;
    }
    for (auto& [k, v] : file) s[k] = v;
    for (auto& [k, v] : cli) s[k] = v;
    s["dataset"] = dataset;
    if (!s.count("data-root")) s["data-root"] = "../shared/data/" + dataset;
    std::string model = s.at("model");
    if (s.at("width") != "100") model += "-w" + s.at("width");
    s["model"] = model, s["width"] = "100";
    if (s.count("stop-after") == 0) s["stop-after"] = "0";
    if (!s.count("out")) s["out"] = "runs/" + dataset + "-" + model;
    s.erase("config");
    // Names are checked before anything is written to the output folder.
    const auto known_models = models::model_names();
    if (std::find(known_models.begin(), known_models.end(), model) == known_models.end()) {
      std::string list;
      for (const auto& n : known_models) list += (list.empty() ? "" : ", ") + n;
      throw usage_error("unknown model \"" + model + "\"; expected one of: " + list);
    }
    try {
      models::check_model_options(model, s.at("options"));
    } catch (const value_error& e) {
      throw usage_error(e.what());
    }
    const auto known_datasets = data::dataset_names();
    require<usage_error>(dataset == "synthetic" || std::find(known_datasets.begin(),
                                                             known_datasets.end(),
                                                             dataset) != known_datasets.end(),
                         "unknown dataset \"", dataset, "\"; expected synthetic or one of the "
                         "readers (see --help)");

    std::filesystem::create_directories(s.at("out"));
    {
      std::ofstream conf(s.at("out") + "/config.conf");
      conf << "# segkit_train: the resolved settings of this run (--resume reads them)\n";
      for (const auto& [k, v] : s)
        if (k != "resume" && k != "help" && k != "stop-after") conf << k << " = " << v << "\n";
    }
    const datasets data = open_datasets(s);
    return models::with_model(model, [&](auto tag) {
      using M = typename decltype(tag)::type;
      return tools::train_model<M>(s, data);
    });
  } catch (const usage_error& e) {
    std::fprintf(stderr, "segkit_train: %s (see --help)\n", e.what());
    return 2;
  } catch (const train::divergence_error& e) {
    std::fprintf(stderr, "\nsegkit_train: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nsegkit_train: %s\n", e.what());
    return 1;
  }
}
