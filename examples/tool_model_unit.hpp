// examples/tool_model_unit.hpp — included by the units CMake generates, one per zoo model
// (tool_model_<name>.cpp: this header, then SEGKIT_TOOL_MODEL(<name>)). Instantiates the
// three tools' per-model halves for that model (tool_models.hpp says why).
#pragma once
#include "eval_model.hpp"
#include "infer_model.hpp"
#include "train_model.hpp"

#define SEGKIT_TOOL_MODEL(zoo_name)                                                          \
  template int segkit::tools::train_model<segkit::models::zoo_models<>::zoo_name>(          \
      const segkit::tools::train_cli::settings&, const segkit::tools::train_cli::datasets&); \
  template int segkit::tools::eval_model<segkit::models::zoo_models<>::zoo_name>(           \
      const segkit::tools::eval_job&);                                                      \
  template int segkit::tools::infer_model<segkit::models::zoo_models<>::zoo_name>(          \
      const segkit::tools::infer_job&);
