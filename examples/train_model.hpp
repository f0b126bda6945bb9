// examples/train_model.hpp — the per-model half of segkit_train: builds the zoo model, the
// loader and the trainer from the resolved settings, runs it, writes the previews.
// Compiled once per zoo model (see tool_models.hpp), not in segkit_train.cpp.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "segkit/data/image_io.hpp"
#include "segkit/data/loader.hpp"
#include "segkit/eval/inference.hpp"
#include "segkit/eval/saf_diagnostics.hpp"
#include "segkit/models/zoo.hpp"
#include "segkit/tensor/mac_counter.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/train/trainer.hpp"
#include "tool_models.hpp"
#include "train_settings.hpp"

namespace segkit::tools {

template <class Model>
int train_model(const train_cli::settings& s, const train_cli::datasets& data) {
  using namespace train_cli;
  const auto& info = data.train->info();
  const auto seed = static_cast<uint64_t>(integer(s, "seed"));
  const auto crop = size_of(s, "crop");
  const auto scales = pair_of(s, "scale-range", ',');

  data::loader_options lo;
  lo.batch_size = int(integer(s, "batch", 1));
  lo.augment.crop_h = int(crop.first), lo.augment.crop_w = int(crop.second);
  lo.augment.min_scale = scales.first, lo.augment.max_scale = scales.second;
  lo.augment.flip = !flag(s, "no-flip");
  lo.augment.photometric = !flag(s, "no-photometric");
  lo.seed = seed;
  lo.threads = int(integer(s, "threads"));
  lo.skip_bad = flag(s, "skip-bad");
  data::loader loader(*data.train, lo);

  Model model = models::make_model<Model>(info.num_classes, s.at("options"), seed);
  const shape input{lo.batch_size, 3, lo.augment.crop_h, lo.augment.crop_w};
  model.setup(input);
  std::printf("segkit_train: %s on %s (%d classes, %zu train / %zu val images), %d threads\n",
              model.name().c_str(), info.name.c_str(), info.num_classes, data.train->size(),
              data.val->size(), num_threads());
  std::printf("  model: %s (training step: forward + backward ~3x)\n",
              format_cost(model.cost(), input).c_str());
  if (s.count("pretrained") && !s.at("pretrained").empty()) {
    train::load_options from;
    from.module_prefix = "backbone.";
    const auto report = train::load_module_weights(s.at("pretrained"), model, from);
    std::printf("  backbone weights: %zu tensors from %s\n", report.loaded.size(),
                s.at("pretrained").c_str());
  }

  train::trainer_options o;
  o.iterations = integer(s, "iters", 1);
  o.log_every = integer(s, "log-every", 1);
  o.eval_every = integer(s, "eval-every");
  o.checkpoint_every = integer(s, "checkpoint-every");
  o.keep_every_checkpoint = flag(s, "keep-checkpoints");
  o.out_dir = s.at("out");
  o.resume = flag(s, "resume");
  o.stop_after = integer(s, "stop-after");
  o.optimizer = s.at("optimizer");
  o.lr = real(s, "lr");
  o.momentum = real(s, "momentum");
  o.weight_decay = real(s, "weight-decay");
  o.schedule = s.at("schedule");
  o.min_lr = std::min(real(s, "min-lr"), o.lr);
  o.warmup_iters = integer(s, "warmup");
  o.seed = seed;
  const std::string& progress = s.at("progress");
  require<usage_error>(progress == "auto" || progress == "bar" || progress == "lines",
                       "--progress must be auto, bar or lines, got \"", progress, "\"");
  o.progress = progress == "bar"     ? train::progress_mode::bar
               : progress == "lines" ? train::progress_mode::lines
                                     : train::progress_mode::automatic;
  o.dataset_name = info.name;
  o.model_name = s.at("model");  // the zoo name (segkit_eval / segkit_infer rebuild it from this)
  for (const auto& [key, value] : s)
    if (key != "resume" && key != "help" && key != "config") o.metadata["config." + key] = value;

  eval::evaluate_options eo;
  eo.inference.scales = {real(s, "eval-scale")};
  eo.max_images = static_cast<size_t>(integer(s, "eval-images"));
  auto evaluate = [&](Model& m, int64_t) {
    const eval::evaluation e = eval::evaluate(m, *data.val, eo);
    train::eval_result r;
    r.miou = e.miou;
    r.values = {{"boundary_miou", e.boundary_miou},
                {"pixel_accuracy", e.pixel_accuracy},
                {"mean_accuracy", e.mean_accuracy},
                {"images", double(e.images)}};
    for (size_t k = 0; k < e.per_class_iou.size(); ++k) {
      const std::string name = k < info.class_names.size() ? info.class_names[k]
                                                           : std::to_string(k);
      r.values.push_back({"iou." + name, e.per_class_iou[k]});
    }
    return r;
  };

  train::trainer trainer(model, loader, o, evaluate);
  std::printf("  %lld iterations, batch %d, crop %dx%d, scale %.2f-%.2f, %s lr %g (%s), out %s\n",
              static_cast<long long>(o.iterations), lo.batch_size, lo.augment.crop_h,
              lo.augment.crop_w, scales.first, scales.second, o.optimizer.c_str(), o.lr,
              o.schedule.c_str(), o.out_dir.c_str());
  std::fflush(stdout);
  const train::train_result r = trainer.run();
  std::printf("segkit_train: %lld iterations (%lld this session) in %s",
              static_cast<long long>(r.iterations),
              static_cast<long long>(r.iterations - r.start_iteration),
              train::format_duration(r.seconds).c_str());
  if (std::isfinite(r.best_miou))
    std::printf(", best val mIoU %.2f%% at iteration %lld", 100 * r.best_miou,
                static_cast<long long>(r.best_iteration));
  std::printf("\n");
  if (loader.bad_count() > 0) {
    std::printf("  skipped %lld bad samples:\n", static_cast<long long>(loader.bad_count()));
    for (const auto& line : loader.bad_files()) std::printf("    %s\n", line.c_str());
  }
  if (!r.last_checkpoint.empty()) std::printf("  checkpoint: %s\n", r.last_checkpoint.c_str());
  if (r.interrupted) return 130;
  const auto previews = std::min<size_t>(size_t(integer(s, "preview")), data.val->size());
  for (size_t i = 0; i < previews; ++i) {
    const std::string path = o.out_dir + "/preview_" + std::to_string(i) + ".png";
    const auto panels = eval::prediction_panels(model, data.val->load(i), info);
    data::write_png(path, data::side_by_side(panels));
    std::printf("  preview: %s (input | ground truth | prediction%s)\n", path.c_str(),
                panels.size() > 3 ? " | level map: coarsest dark ... finest yellow" : "");
  }
  return 0;
}

}  // namespace segkit::tools
