// segkit/models/option_string.hpp — "key=value,key=value" model options from a command line or a
// checkpoint's metadata (the tools' --options; models/zoo.hpp's make_model).
// Provides: models::option_string: parsed against the list of accepted keys (an unknown key
//   or an item without '=' is refused at once), then read with typed accessors and defaults.
// Guarantees: every error is a value_error naming the model, the key, the value and what was
//   expected; an empty string means "all defaults".
#pragma once
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "segkit/tensor/error.hpp"

namespace segkit::models {

class option_string {
 public:
  // `owner` names the model in errors ("saf options"); `known` lists the accepted keys.
  option_string(const std::string& text, std::string owner, std::vector<std::string> known)
      : owner_(std::move(owner)), known_(std::move(known)) {
    size_t start = 0;
    while (start <= text.size()) {
      size_t end = text.find(',', start);
      if (end == std::string::npos) end = text.size();
      const std::string item = trim(text.substr(start, end - start));
      start = end + 1;
      if (item.empty()) continue;
      const auto eq = item.find('=');
      require<value_error>(eq != std::string::npos, owner_, ": \"", item,
                           "\" is not key=value; keys: ", known_list());
      const std::string key = trim(item.substr(0, eq));
      bool ok = false;
      for (const auto& k : known_) ok |= k == key;
      require<value_error>(ok, owner_, ": unknown key \"", key, "\"; keys: ", known_list());
      values_[key] = trim(item.substr(eq + 1));
    }
  }

  bool has(const std::string& key) const { return values_.count(key) > 0; }
  std::string text(const std::string& key, const std::string& fallback) const {
    const auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
  }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const std::string& v = values_.at(key);
    if (v == "1" || v == "true" || v == "on" || v == "yes") return true;
    if (v == "0" || v == "false" || v == "off" || v == "no") return false;
    throw value_error(owner_ + ": " + key + " = \"" + v + "\", expected true/false (1/0, on/off)");
  }
  double number(const std::string& key, double fallback, double low, double high) const {
    if (!has(key)) return fallback;
    const std::string& v = values_.at(key);
    char* end = nullptr;
    errno = 0;
    const double x = std::strtod(v.c_str(), &end);
    require<value_error>(end != v.c_str() && *end == '\0' && errno == 0 && std::isfinite(x) &&
                             x >= low && x <= high,
                         owner_, ": ", key, " = \"", v, "\", expected a number in [", low, ", ",
                         high, "]");
    return x;
  }
  int integer(const std::string& key, int fallback, int low, int high) const {
    if (!has(key)) return fallback;
    const double x = number(key, fallback, low, high);
    require<value_error>(x == std::floor(x), owner_, ": ", key, " = \"", values_.at(key),
                         "\", expected a whole number in [", low, ", ", high, "]");
    return int(x);
  }
  // One of `choices`; returns its index.
  size_t choice(const std::string& key, size_t fallback, const std::vector<std::string>& choices) const {
    if (!has(key)) return fallback;
    const std::string& v = values_.at(key);
    std::string list;
    for (size_t i = 0; i < choices.size(); ++i) {
      if (choices[i] == v) return i;
      list += (i ? ", " : "") + choices[i];
    }
    throw value_error(owner_ + ": " + key + " = \"" + v + "\", expected one of: " + list);
  }

 private:
  static std::string trim(const std::string& t) {
    const auto b = t.find_first_not_of(" \t"), e = t.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : t.substr(b, e - b + 1);
  }
  std::string known_list() const {
    std::string list;
    for (const auto& k : known_) list += (list.empty() ? "" : ", ") + k;
    return list;
  }

  std::string owner_;
  std::vector<std::string> known_;
  std::map<std::string, std::string> values_;
};

}  // namespace segkit::models
