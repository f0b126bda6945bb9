// examples/tool_models.hpp — the per-model half of segkit_train, segkit_eval and segkit_infer.
// Each tool reads its command line, then calls train_model<M>, eval_model<M> or infer_model<M>
// for the zoo model M it was asked for (models::with_model). Those templates are defined in
// train_model.hpp, eval_model.hpp and infer_model.hpp, and explicitly instantiated once per
// zoo model: CMake writes one unit per model (tool_model_<name>.cpp, see tool_model_unit.hpp)
// into the library segkit_tool_models, which the three tools link. So each model's forward and
// backward code is compiled once for all three tools, and the models compile in parallel;
// when each tool instantiated all nine models itself, each tool was one unit of 4 to 9 minutes.
// Requires: M is one of models::zoo_models<> (the units instantiate exactly those).
#pragma once
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "eval_tools_common.hpp"
#include "segkit/data/dataset.hpp"
#include "segkit/eval/inference.hpp"
#include "train_settings.hpp"

namespace segkit::tools {

// What segkit_eval's per-model half needs from its command line.
struct eval_job {
  const arguments& args;
  const data::dataset& dataset;
  std::string model_options;
  eval::evaluate_options options;
  bool random_init = false;
};

// What segkit_infer's per-model half needs: a dataset split (`split`, with ground truth) or
// image files, the first `count` of which are segmented into `out_dir`.
struct infer_job {
  const arguments& args;
  data::dataset_info info;
  std::string model_options;
  eval::inference_options options;
  bool random_init = false;
  const data::dataset* split = nullptr;
  std::vector<std::filesystem::path> files;
  size_t count = 0;
  std::filesystem::path out_dir;
  double alpha = 0.5;
};

template <class Model>
int train_model(const train_cli::settings& s, const train_cli::datasets& data);
template <class Model>
int eval_model(const eval_job& job);
template <class Model>
int infer_model(const infer_job& job);

}  // namespace segkit::tools
