// examples/train_settings.hpp — segkit_train's resolved settings and the typed reads of them
// that both its command-line half (segkit_train.cpp) and its per-model half (train_model.hpp)
// use. A bad value is a usage_error naming the option and the value.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "eval_tools_common.hpp"
#include "segkit/data/dataset.hpp"

namespace segkit::tools::train_cli {

// Option name (without "--") -> value: the dataset's defaults, overridden by out/config.conf
// (with --resume), --config FILE and the command line, in that order.
using settings = std::map<std::string, std::string>;

inline int64_t integer(const settings& s, const std::string& key, int64_t min = 0) {
  const std::string& text = s.at(key);
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  require<usage_error>(end != text.c_str() && *end == '\0' && v >= min, "--", key,
                       " must be an integer >= ", min, ", got \"", text, "\"");
  return v;
}
inline double real(const settings& s, const std::string& key) {
  const std::string& text = s.at(key);
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  require<usage_error>(end != text.c_str() && *end == '\0' && std::isfinite(v), "--", key,
                       " must be a number, got \"", text, "\"");
  return v;
}
inline std::pair<double, double> pair_of(const settings& s, const std::string& key, char sep) {
  const std::string& text = s.at(key);
  const auto at = text.find(sep);
  require<usage_error>(at != std::string::npos, "--", key, " must look like A", sep, "B, got \"",
                       text, "\"");
  settings parts{{"a", text.substr(0, at)}, {"b", text.substr(at + 1)}};
  try {
    return {real(parts, "a"), real(parts, "b")};
  } catch (const usage_error&) {
    throw usage_error("--" + key + " must look like A" + sep + "B (numbers), got \"" + text + "\"");
  }
}
// An image size HxW in whole pixels; the backbones downsample by 32, so smaller is refused here
// rather than deep inside a convolution.
inline std::pair<int, int> size_of(const settings& s, const std::string& key) {
  const auto [h, w] = pair_of(s, key, 'x');
  require<usage_error>(h >= 32 && w >= 32 && h == std::floor(h) && w == std::floor(w) &&
                           h <= 1 << 16 && w <= 1 << 16,
                       "--", key, " must be HxW with whole numbers of at least 32 pixels (the "
                       "backbones downsample by 32), got \"", s.at(key), "\"");
  return {int(h), int(w)};
}
inline bool flag(const settings& s, const std::string& key) {
  const auto it = s.find(key);
  return it != s.end() && it->second != "0" && it->second != "false" && !it->second.empty();
}

// The train and val splits the run reads.
struct datasets {
  std::unique_ptr<data::dataset> train, val;
};

}  // namespace segkit::tools::train_cli
