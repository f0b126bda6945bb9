// examples/eval_tools_common.hpp — what segkit_eval and segkit_infer share: a tiny argument
// parser, option parsing (scales, HxW), checkpoint metadata lookup, dataset info by name,
// loading weights into a model, a progress line.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "segkit/data/datasets.hpp"
#include "segkit/data/palette.hpp"
#include "segkit/data/synthetic_scenes.hpp"
#include "segkit/eval/inference.hpp"
#include "segkit/models/zoo.hpp"
#include "segkit/tensor/error.hpp"
#include "segkit/tensor/safetensors.hpp"
#include "segkit/train/checkpoint.hpp"

namespace segkit::tools {

// A bad command line: main prints the message and the usage hint, exits 2.
struct usage_error : error {
  using error::error;
};

// "--name value" and "--flag" options plus positional arguments. `flags` lists the options
// that take no value; every other "--x" takes the next argument.
class arguments {
 public:
  arguments(int argc, char** argv, const std::set<std::string>& flags,
            const std::set<std::string>& valued) {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg.rfind("--", 0) != 0 || arg == "--") {
        positional_.push_back(arg);
        continue;
      }
      std::string name = arg, value;
      const auto eq = arg.find('=');
      const bool inline_value = eq != std::string::npos;
      if (inline_value) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
      }
      if (flags.count(name)) {
        require<usage_error>(!inline_value, name, " takes no value");
        values_[name] = "1";
      } else if (valued.count(name)) {
        if (!inline_value) {
          require<usage_error>(i + 1 < argc, name, " needs a value");
          value = argv[++i];
        }
        values_[name] = value;
      } else {
        throw usage_error("unknown option " + name);
      }
    }
  }
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const {
    const auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
  }
  long long get_int(const std::string& name, long long fallback) const {
    if (!has(name)) return fallback;
    const std::string text = get(name);
    char* end = nullptr;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    require<usage_error>(!text.empty() && *end == '\0', name, " wants an integer, got \"", text,
                         "\"");
    return v;
  }
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

inline std::vector<double> parse_scales(const std::string& text) {
  std::vector<double> scales;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    require<usage_error>(!item.empty() && *end == '\0' && v > 0, "--scales wants positive ",
                         "numbers separated by commas (e.g. 0.5,0.75,1), got \"", text, "\"");
    scales.push_back(v);
  }
  require<usage_error>(!scales.empty(), "--scales is empty");
  return scales;
}

// "HxW" -> {H, W}, both >= 1.
inline std::pair<int, int> parse_size(const std::string& option, const std::string& text) {
  int h = 0, w = 0;
  char tail = 0;
  require<usage_error>(std::sscanf(text.c_str(), "%dx%d%c", &h, &w, &tail) == 2 && h >= 1 && w >= 1,
                       option, " wants HxW (e.g. 512x512), got \"", text, "\"");
  return {h, w};
}

// The checkpoint's __metadata__ (empty when there is none); io_error for a bad file.
inline std::map<std::string, std::string> checkpoint_metadata_of(const std::string& path) {
  auto file = tensor_file::load(path);
  return file.metadata();
}

// Classes, names and palette of a dataset by name, without its files.
inline data::dataset_info info_by_name(const std::string& name) {
  if (name == "synthetic" || name == "synthetic_scenes")
    return data::synthetic_scenes_dataset::scene_info();
  return data::known_dataset_info(name);
}

// A bad model name is a command-line error (exit 2), found before any file is read.
template <class Names>
void require_known_model(const std::string& name, const Names& names) {
  std::string known;
  bool found = false;
  for (const auto& n : names) {
    known += (known.empty() ? "" : ", ") + n;
    found = found || n == name;
  }
  require<usage_error>(found, "unknown model \"", name, "\"; expected one of: ", known);
}

// The model's method options: --options, else the checkpoint's "config.options" (what the
// trainer ran with), else the defaults. A bad string is a command-line error (exit 2).
inline std::string model_options(const arguments& args, const std::map<std::string, std::string>& meta,
                                 const std::string& model_name) {
  std::string options = args.get("--options");
  if (!args.has("--options") && meta.count("config.options")) options = meta.at("config.options");
  try {
    models::check_model_options(model_name, options);
  } catch (const value_error& e) {
    throw usage_error(std::string(e.what()));
  }
  return options;
}

inline eval::inference_options inference_from(const arguments& args) {
  eval::inference_options o;
  if (args.has("--scales")) o.scales = parse_scales(args.get("--scales"));
  o.flip = args.has("--flip");
  if (args.has("--window")) {
    const auto [h, w] = parse_size("--window", args.get("--window"));
    o.window_h = h;
    o.window_w = w;
  }
  return o;
}

inline std::string describe(const eval::inference_options& o) {
  std::ostringstream text;
  text << "scales";
  for (double s : o.scales) text << ' ' << s;
  text << (o.flip ? ", flip" : ", no flip");
  if (o.window_h > 0)
    text << ", sliding window " << o.window_h << "x" << o.window_w << " (stride "
         << eval::detail::window_stride(o.window_h) << "x" << eval::detail::window_stride(o.window_w)
         << ")";
  else
    text << ", whole image";
  return text.str();
}

// Loads the checkpoint's parameters and buffers into `model` (strict: every tensor must fit;
// optimizer state in the file is ignored). Prints what was loaded.
template <class Model>
void load_weights(Model& model, const std::string& path) {
  const auto report = train::load_checkpoint(path, model);
  std::fprintf(stderr, "loaded %zu tensors from %s", report.loaded.size(), path.c_str());
  const auto it = report.metadata.find("iteration");
  if (it != report.metadata.end()) std::fprintf(stderr, " (iteration %s)", it->second.c_str());
  std::fprintf(stderr, "\n");
}

// A one-line progress display on a terminal (\r), else a line every 10%.
class progress_line {
 public:
  explicit progress_line(const char* what, bool quiet = false)
      : what_(what), quiet_(quiet), tty_(::isatty(2) != 0) {}
  void operator()(size_t done, size_t total) {
    if (quiet_) return;
    if (tty_) {
      std::fprintf(stderr, "\r%s %zu/%zu", what_, done, total);
      if (done == total) std::fprintf(stderr, "\n");
    } else if (done == total || (total >= 10 && done % (total / 10) == 0)) {
      std::fprintf(stderr, "%s %zu/%zu\n", what_, done, total);
    }
    std::fflush(stderr);
  }

 private:
  const char* what_;
  bool quiet_, tty_;
};

}  // namespace segkit::tools
