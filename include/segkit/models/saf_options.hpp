// segkit/models/saf_options.hpp — the SaF head's configuration: saf_options (every ablation of
// the supplementary Table A is a value of it), saf_ablation('A'..'K'), parse_saf_options
// ("ablation=G,tau=0.4,...") and to_string (the canonical option string).
// Requires: models/option_string.hpp (the key=value parser shared by the three methods).
// Guarantees: parse_saf_options(to_string(o)) == o for every valid o; a bad key or value throws
//   value_error naming it and the accepted ones; validate() states every rule the head checks.
// Structure knobs (see models/saf_head.hpp and docs/saf_ablations.md):
//   context  none | anl | anl_multi | coarse_to_fine   (what refines X(l) before each level's
//            final projection: nothing, ANL's APNB on X(L) before pooling, APNB on each level,
//            SaF's coarse-to-fine contextual module)
//   output   pyramidal (Eq. 1 + unity head + fuser) | single (finest level only, plain CE)
//            | auxiliary (every level predicted, the coarser ones only in an auxiliary CE on
//            the raw pyramidal ground truth, weight aux_weight; inference = finest level)
//   levels / scales  the pyramid: `scales` lists each level's cell size in finest-grid cells,
//            coarse first, ending with 1, powers of two (e.g. {8, 1} = strides {32, 4} on a
//            stride-4 feature: ablation K). Empty scales = `levels` consecutive levels
//            {2^(L-1), ..., 2, 1}.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "segkit/models/option_string.hpp"
#include "segkit/ops/pyramid_ground_truth.hpp"
#include "segkit/tensor/error.hpp"

namespace segkit::models {

enum class saf_context { none, anl, anl_multi, coarse_to_fine };
enum class saf_output { pyramidal, single, auxiliary };

struct saf_options {
  int levels = 4;               // L (when scales is empty: consecutive levels, 2x apart)
  std::vector<int64_t> scales;  // per-level cell size in finest cells, coarse first; {} = 2^(L-1-l)
  int semantic_channels = 64;   // D_s
  int unity_channels = 64;      // D_u (METHODS.md's choice)
  ops::relabel_mode relabel = ops::relabel_mode::true_positive;  // F (TP), E (GT), D (raw)
  float tau = 0.5f;                                              // fuser and TP threshold
  std::vector<int64_t> sampling_sizes{1, 3, 6, 8};               // S = 110
  int32_t ignore_index = 255;
  saf_context context = saf_context::coarse_to_fine;
  saf_output output = saf_output::pyramidal;
  float aux_weight = 0.4f;   // output = auxiliary: weight of the coarser levels' mean CE
  int anl_key_channels = 0;  // APNB key / value channels; 0 = D_s / 2 (ANL's setting)
  int anl_value_channels = 0;

  bool operator==(const saf_options& o) const {
    return levels == o.levels && scales == o.scales && semantic_channels == o.semantic_channels &&
           unity_channels == o.unity_channels && relabel == o.relabel && tau == o.tau &&
           sampling_sizes == o.sampling_sizes && ignore_index == o.ignore_index &&
           context == o.context && output == o.output && aux_weight == o.aux_weight &&
           anl_key_channels == o.anl_key_channels && anl_value_channels == o.anl_value_channels;
  }
  bool operator!=(const saf_options& o) const { return !(*this == o); }
};

// The per-level cell sizes (coarse first, last = 1) the options describe.
inline std::vector<int64_t> saf_level_scales(const saf_options& o) {
  if (!o.scales.empty()) return o.scales;
  std::vector<int64_t> s;
  for (int l = 0; l < o.levels; ++l) s.push_back(int64_t(1) << (o.levels - 1 - l));
  return s;
}
inline int saf_anl_key_channels(const saf_options& o) {
  return o.anl_key_channels > 0 ? o.anl_key_channels : std::max(1, o.semantic_channels / 2);
}
inline int saf_anl_value_channels(const saf_options& o) {
  return o.anl_value_channels > 0 ? o.anl_value_channels : std::max(1, o.semantic_channels / 2);
}

namespace detail {
inline const char* saf_context_names[] = {"none", "anl", "anl_multi", "coarse_to_fine"};
inline const char* saf_output_names[] = {"pyramidal", "single", "auxiliary"};
inline const char* saf_relabel_names[] = {"raw", "gt", "tp"};
}  // namespace detail

inline std::string to_string(saf_context c) {
  return detail::saf_context_names[int(c)];
}
inline std::string to_string(saf_output o) {
  return detail::saf_output_names[int(o)];
}
inline std::string to_string(ops::relabel_mode m) {
  return detail::saf_relabel_names[int(m)];
}

// Every rule the head checks on its options (value_error naming the value and the range).
inline void validate(const saf_options& o) {
  require<value_error>(o.semantic_channels >= 1 && o.unity_channels >= 1, "saf_options: D_s ",
                       o.semantic_channels, ", D_u ", o.unity_channels, "; expected each >= 1");
  require<value_error>(o.tau > 0.f && o.tau < 1.f, "saf_options: tau = ", o.tau,
                       ", expected a value in (0, 1)");
  require<value_error>(o.aux_weight >= 0.f, "saf_options: aux_weight = ", o.aux_weight,
                       ", expected >= 0");
  require<value_error>(o.anl_key_channels >= 0 && o.anl_value_channels >= 0,
                       "saf_options: anl key / value channels ", o.anl_key_channels, " / ",
                       o.anl_value_channels, ", expected >= 0 (0 = D_s / 2)");
  require<value_error>(!o.sampling_sizes.empty(), "saf_options: sampling_sizes is empty");
  if (o.scales.empty()) {
    require<value_error>(o.levels >= 2 && o.levels <= ops::max_pyramid_levels,
                         "saf_options: levels = ", o.levels, ", expected 2 to ",
                         ops::max_pyramid_levels);
    return;
  }
  std::ostringstream list;
  for (size_t i = 0; i < o.scales.size(); ++i) list << (i ? ":" : "") << o.scales[i];
  bool ok = o.scales.size() >= 2 && o.scales.back() == 1 && int(o.scales.size()) == o.levels;
  for (size_t i = 0; ok && i < o.scales.size(); ++i) {
    const int64_t s = o.scales[i];
    ok = s >= 1 && (s & (s - 1)) == 0 && s <= (int64_t(1) << (ops::max_pyramid_levels - 1)) &&
         (i == 0 || s < o.scales[i - 1]);
  }
  require<value_error>(ok, "saf_options: scales = ", list.str(), " with levels = ", o.levels,
                       "; expected levels = the number of scales (>= 2), decreasing powers of two "
                       "ending with 1, the first at most 2^",
                       ops::max_pyramid_levels - 1);
}

// The configuration of one row of the supplementary Table A (A..K; I = the full method =
// saf_options{}). Channel counts, tau, sampling sizes stay at the defaults.
inline saf_options saf_ablation(char id) {
  saf_options o;
  switch (id) {
    case 'A':
      o.context = saf_context::none;
      o.output = saf_output::single;
      break;
    case 'B':
      o.context = saf_context::anl;
      o.output = saf_output::single;
      break;
    case 'C': o.output = saf_output::single; break;
    case 'D':
      o.context = saf_context::none;
      o.relabel = ops::relabel_mode::raw;
      break;
    case 'E':
      o.context = saf_context::none;
      o.relabel = ops::relabel_mode::ground_truth;
      break;
    case 'F': o.context = saf_context::none; break;
    case 'G': o.context = saf_context::anl; break;
    case 'H': o.context = saf_context::anl_multi; break;
    case 'I': break;
    case 'J': o.output = saf_output::auxiliary; break;
    case 'K':
      o.levels = 2;
      o.scales = {8, 1};
      break;
    default:
      throw value_error(std::string("saf_ablation: unknown id '") + id +
                        "', expected one of A B C D E F G H I J K (supplementary Table A)");
  }
  return o;
}

namespace detail {
inline std::vector<int64_t> parse_saf_list(const std::string& key, const std::string& value) {
  std::vector<int64_t> out;
  std::string item;
  std::istringstream in(value);
  while (std::getline(in, item, ':')) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    require<value_error>(!item.empty() && end && *end == '\0' && v >= 1 && v <= (1 << 20),
                         "saf options: ", key, " = \"", value,
                         "\", expected positive integers separated by ':' (e.g. 8:1)");
    out.push_back(v);
  }
  require<value_error>(!out.empty(), "saf options: ", key, " = \"", value,
                       "\", expected positive integers separated by ':' (e.g. 8:1)");
  return out;
}
template <size_t N>
std::vector<std::string> saf_names(const char* const (&names)[N]) {
  return std::vector<std::string>(names, names + N);
}
}  // namespace detail

// Parses "key=value,key=value,..." (models/option_string.hpp): `ablation=A..K` first (the
// Table-A row as the starting point, wherever it stands; else `base`, default the full method),
// then levels, scales (8:1), ds (D_s), du (D_u), relabel (raw|gt|tp), tau, sampling (1:3:6:8),
// ignore, context (none|anl|anl_multi|coarse_to_fine), output (pyramidal|single|auxiliary),
// aux_weight, anl_key, anl_value. `scales` also sets levels to its length; `levels` alone
// clears scales. The result is validated; every error is a value_error naming key and value.
inline saf_options parse_saf_options(const std::string& text, saf_options base = {}) {
  const option_string s(text, "saf options",
                        {"ablation", "levels", "scales", "ds", "du", "relabel", "tau", "sampling",
                         "ignore", "context", "output", "aux_weight", "anl_key", "anl_value"});
  saf_options o = base;
  if (s.has("ablation")) {
    const std::string id = s.text("ablation", "");
    require<value_error>(id.size() == 1 && id[0] >= 'A' && id[0] <= 'K',
                         "saf options: ablation = \"", id,
                         "\", expected one of A, B, C, D, E, F, G, H, I, J, K (Table A)");
    o = saf_ablation(id[0]);
  }
  if (s.has("levels")) {
    o.levels = s.integer("levels", o.levels, 2, ops::max_pyramid_levels);
    o.scales.clear();
  }
  if (s.has("scales")) {
    o.scales = detail::parse_saf_list("scales", s.text("scales", ""));
    o.levels = int(o.scales.size());
  }
  o.semantic_channels = s.integer("ds", o.semantic_channels, 1, 1 << 16);
  o.unity_channels = s.integer("du", o.unity_channels, 1, 1 << 16);
  o.relabel = ops::relabel_mode(
      s.choice("relabel", size_t(o.relabel), detail::saf_names(detail::saf_relabel_names)));
  o.tau = float(s.number("tau", o.tau, 0.0, 1.0));
  if (s.has("sampling"))
    o.sampling_sizes = detail::parse_saf_list("sampling", s.text("sampling", ""));
  o.ignore_index = s.integer("ignore", o.ignore_index, -(1 << 30), 1 << 30);
  o.context = saf_context(
      s.choice("context", size_t(o.context), detail::saf_names(detail::saf_context_names)));
  o.output =
      saf_output(s.choice("output", size_t(o.output), detail::saf_names(detail::saf_output_names)));
  o.aux_weight = float(s.number("aux_weight", o.aux_weight, 0.0, 1e3));
  o.anl_key_channels = s.integer("anl_key", o.anl_key_channels, 0, 1 << 16);
  o.anl_value_channels = s.integer("anl_value", o.anl_value_channels, 0, 1 << 16);
  validate(o);
  return o;
}

// The canonical option string (every field; parse_saf_options reads it back).
inline std::string to_string(const saf_options& o) {
  auto list = [](const std::vector<int64_t>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ":" : "") + std::to_string(v[i]);
    return s;
  };
  std::ostringstream out;
  out.precision(9);
  out << "context=" << to_string(o.context) << ",output=" << to_string(o.output)
      << ",relabel=" << to_string(o.relabel);
  if (o.scales.empty())
    out << ",levels=" << o.levels;
  else
    out << ",scales=" << list(o.scales);
  out << ",ds=" << o.semantic_channels << ",du=" << o.unity_channels << ",tau=" << o.tau
      << ",sampling=" << list(o.sampling_sizes) << ",ignore=" << o.ignore_index
      << ",aux_weight=" << o.aux_weight << ",anl_key=" << o.anl_key_channels
      << ",anl_value=" << o.anl_value_channels;
  return out.str();
}

}  // namespace segkit::models
