// segkit/train/checkpoint.hpp — training checkpoints as safetensors files (PyTorch's format).
// Provides:
//   save_checkpoint(path, module [, optimizer] [, metadata])
//   load_checkpoint(path, module [, optimizer] [, load_options]) -> load_report
//   load_module_weights(path, module [, load_options]) -> load_report   (parameters + buffers)
//   checkpoint_error (a segkit::io_error), load_options, load_report.
// Requires: module.visit_parameters / visit_buffers as in segkit/nn/parameter.hpp (PyTorch
// state_dict names); an optimizer is any object with visit_state(f), which calls
// f(name, tensor<T, D>&) for each state tensor (T = float or int64_t, ...), with its final
// shape (allocate lazily created state before loading).
// Guarantees:
//   - one file holds every parameter and buffer under its own name, the optimizer state under
//     "optimizer.<name>", and __metadata__ {"format": "segkit-checkpoint", "version": "1",
//     user entries}; float tensors are F32, int64 counters (num_batches_tracked) I64, so
//     torch's load_state_dict(strict=True) takes the module part as is;
//   - tensors on a GPU are copied to the host first; the write is atomic (tensor_file::save:
//     temp file, fsync, rename): a failed or interrupted save leaves the previous file as it was;
//   - loading checks every name, shape and dtype first and reports ALL mismatches in one
//     checkpoint_error; nothing in the module or optimizer is modified unless the whole file
//     checks out. strict = false loads what matches and returns what it skipped (unlike
//     PyTorch, a shape or dtype mismatch is skipped and reported too, not an error);
//   - a module visiting the same name twice is an error (save and load), never a silent overwrite.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "segkit/nn/parameter.hpp"
#include "segkit/tensor/error.hpp"
#include "segkit/tensor/safetensors.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::train {

// A checkpoint file does not fit the module (or is not a checkpoint segkit can read).
struct checkpoint_error : io_error {
  using io_error::io_error;
};

inline constexpr const char* checkpoint_format = "segkit-checkpoint";
inline constexpr const char* checkpoint_version = "1";
inline constexpr const char* optimizer_state_prefix = "optimizer.";

using checkpoint_metadata = std::map<std::string, std::string>;

struct load_options {
  // true: any missing, unexpected or mismatched tensor is an error. false: load what matches.
  bool strict = true;
  // Name mapping: the module tensor "<module_prefix><rest>" is read from the file entry
  // "<file_prefix><rest>". With a module_prefix, module tensors outside it take no part in the
  // load; with a file_prefix, file entries outside it are not "unexpected". The optimizer's
  // names are never mapped. Example: backbone weights from a torchvision file:
  // {module_prefix = "backbone.", file_prefix = ""}.
  std::string module_prefix;
  std::string file_prefix;
};

struct load_report {
  std::vector<std::string> loaded;      // module / "optimizer." names that were copied
  std::vector<std::string> missing;     // module names the file lacks
  std::vector<std::string> unexpected;  // file names nothing in the module takes
  std::vector<std::string> mismatched;  // module names whose file entry has another shape/dtype
  std::vector<std::string> problems;    // one readable line per missing/unexpected/mismatched
  checkpoint_metadata metadata;         // the file's __metadata__ (iteration, ...)

  bool complete() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string to_string() const {
    std::string text;
    for (const auto& line : problems) text += "\n  " + line;
    return text;
  }
};

namespace checkpoint_detail {

struct probe_visitor {
  template <class T>
  void operator()(const std::string&, T&) const {}
};
template <class Optimizer, class = void>
struct has_visit_state : std::false_type {};
template <class Optimizer>
struct has_visit_state<
    Optimizer, std::void_t<decltype(std::declval<Optimizer&>().visit_state(probe_visitor{}))>>
    : std::true_type {};
template <class Optimizer>
using if_optimizer = std::enable_if_t<has_visit_state<Optimizer>::value, int>;

// No optimizer: visits nothing.
struct no_optimizer {
  template <class F>
  void visit_state(F&&) {}
};

inline bool starts_with(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

inline std::string quoted(const std::string& name) {
  return "\"" + name + "\"";
}

// f(name, tensor<T, D>&) for each parameter value, buffer and optimizer state tensor, in
// visit order; optimizer names get the "optimizer." prefix.
template <class Module, class Optimizer, class F>
void visit_all(Module& module, Optimizer& optimizer, F&& f) {
  module.visit_parameters(std::string(),
                          [&](const std::string& name, auto& param) { f(name, param.value); });
  module.visit_buffers(std::string(),
                       [&](const std::string& name, auto& buffer) { f(name, buffer); });
  optimizer.visit_state(
      [&](const std::string& name, auto& state) { f(optimizer_state_prefix + name, state); });
}

template <class T, class Device>
host_tensor<T> host_copy(const tensor<T, Device>& value) {
  if constexpr (std::is_same_v<Device, cpu>) {
    return value;  // tensor_file::set copies the bytes
  } else {
    return to<cpu>(value);
  }
}

template <class Module, class Optimizer>
void save(const std::string& path, Module& module, Optimizer& optimizer,
          const checkpoint_metadata& extra) {
  tensor_file file;
  for (const auto& [key, value] : extra) {
    require<value_error>(key != "format" && key != "version", "save_checkpoint: ", path,
                         ": the metadata key \"", key, "\" is reserved (it holds \"",
                         key == "format" ? checkpoint_format : checkpoint_version, "\")");
    file.metadata()[key] = value;
  }
  file.metadata()["format"] = checkpoint_format;
  file.metadata()["version"] = checkpoint_version;
  visit_all(module, optimizer, [&](const std::string& name, auto& value) {
    require<value_error>(!file.contains(name), "save_checkpoint: ", path, ": the name ",
                         quoted(name), " is visited twice (two tensors would share one entry)");
    file.set(name, host_copy(value));
  });
  file.save(path);
}

// One tensor of the module or optimizer that the file may fill.
struct slot {
  std::string name;       // module name ("optimizer.<name>" for optimizer state)
  std::string file_name;  // the entry it is read from
  dtype type;
  segkit::shape extent;
  std::function<void(const tensor_file&)> copy;  // file entry -> tensor (after validation)
};

inline std::string describe(dtype type, const segkit::shape& extent) {
  return std::string(safetensors_name(type)) + " " + extent.to_string();
}

// Checks the file against every slot; fills the report; copies only if nothing blocks.
inline load_report check_and_copy(const std::string& what, const std::string& path,
                                  const tensor_file& file, std::vector<slot>& slots,
                                  const std::function<bool(const std::string&)>& in_scope,
                                  bool strict) {
  load_report report;
  report.metadata = file.metadata();
  const auto format = report.metadata.find("format");
  if (format != report.metadata.end() && format->second == checkpoint_format) {
    const auto version = report.metadata.find("version");
    const std::string found = version == report.metadata.end() ? "(none)" : version->second;
    require<checkpoint_error>(found == checkpoint_version, what, ": ", path,
                              ": segkit checkpoint version ", found, ", this build reads version ",
                              checkpoint_version);
  }

  std::set<std::string> seen, claimed;
  std::vector<std::string> duplicates;
  for (const slot& s : slots) {
    if (!seen.insert(s.name).second) duplicates.push_back(quoted(s.name));
    claimed.insert(s.file_name);
  }
  if (!duplicates.empty()) {
    std::string list;
    for (const auto& name : duplicates) list += (list.empty() ? "" : ", ") + name;
    throw checkpoint_error(what + ": " + path + ": the module visits these names twice: " + list);
  }

  std::vector<const slot*> ready;
  for (const slot& s : slots) {
    const std::string from =
        s.file_name == s.name ? std::string() : " (for " + quoted(s.name) + ")";
    if (!file.contains(s.file_name)) {
      report.missing.push_back(s.name);
      report.problems.push_back("missing from the file: " + quoted(s.file_name) + from +
                                ", expected " + describe(s.type, s.extent));
      continue;
    }
    const dtype stored = file.type_of(s.file_name);
    const segkit::shape stored_shape = file.shape_of(s.file_name);
    const bool type_ok = stored == s.type, shape_ok = stored_shape == s.extent;
    if (!type_ok || !shape_ok) {
      report.mismatched.push_back(s.name);
      std::string line = std::string(!shape_ok && !type_ok ? "shape and dtype"
                                     : !shape_ok           ? "shape"
                                                           : "dtype") +
                         " mismatch for " + quoted(s.file_name) + from + ": file " +
                         describe(stored, stored_shape) + ", module " + describe(s.type, s.extent);
      report.problems.push_back(line);
      continue;
    }
    ready.push_back(&s);
  }
  for (const std::string& name : file.names()) {
    if (claimed.count(name) || !in_scope(name)) continue;
    report.unexpected.push_back(name);
    report.problems.push_back("unexpected in the file: " + quoted(name) + " (" +
                              describe(file.type_of(name), file.shape_of(name)) + ")");
  }

  if (strict && !report.complete()) {
    throw checkpoint_error(what + ": " + path + ": the file does not match the module, " +
                           std::to_string(report.problems.size()) +
                           " problem(s), nothing was loaded (strict = false loads what "
                           "matches):" +
                           report.to_string());
  }
  for (const slot* s : ready) {
    s->copy(file);
    report.loaded.push_back(s->name);
  }
  return report;
}

template <class Module, class Optimizer>
load_report load(const std::string& what, const std::string& path, Module& module,
                 Optimizer& optimizer, bool with_optimizer, const load_options& options) {
  const tensor_file file = tensor_file::load(path);
  std::vector<slot> slots;
  auto add = [&](const std::string& name, const std::string& file_name, auto& value) {
    using tensor_type = std::decay_t<decltype(value)>;
    using T = typename tensor_type::value_type;
    tensor_type* target = &value;
    slots.push_back({name, file_name, dtype_of<T>::value, value.shape(),
                     [target, file_name](const tensor_file& source) {
                       copy_into(source.get<T>(file_name), *target);
                     }});
  };
  auto add_module = [&](const std::string& name, auto& value) {
    if (!starts_with(name, options.module_prefix)) return;  // outside the mapped part
    add(name, options.file_prefix + name.substr(options.module_prefix.size()), value);
  };
  module.visit_parameters(
      std::string(), [&](const std::string& name, auto& param) { add_module(name, param.value); });
  module.visit_buffers(std::string(),
                       [&](const std::string& name, auto& buffer) { add_module(name, buffer); });
  optimizer.visit_state([&](const std::string& name, auto& state) {
    const std::string full = optimizer_state_prefix + name;
    add(full, full, state);
  });

  const std::string optimizer_prefix = optimizer_state_prefix;
  auto in_scope = [&](const std::string& name) {
    if (starts_with(name, optimizer_prefix)) return with_optimizer;
    return starts_with(name, options.file_prefix);
  };
  return check_and_copy(what, path, file, slots, in_scope, options.strict);
}

}  // namespace checkpoint_detail

// Writes every parameter, buffer and (with an optimizer) optimizer state tensor of `module`
// to `path` atomically; `metadata` adds string entries such as {"iteration", "1200"}.
template <class Module>
void save_checkpoint(const std::string& path, Module& module,
                     const checkpoint_metadata& metadata = {}) {
  checkpoint_detail::no_optimizer none;
  checkpoint_detail::save(path, module, none, metadata);
}
template <class Module, class Optimizer, checkpoint_detail::if_optimizer<Optimizer> = 0>
void save_checkpoint(const std::string& path, Module& module, Optimizer& optimizer,
                     const checkpoint_metadata& metadata = {}) {
  checkpoint_detail::save(path, module, optimizer, metadata);
}

// Loads parameters and buffers (and the optimizer state, when given) from `path`. Entries
// "optimizer.*" in the file are ignored when no optimizer is given. Throws checkpoint_error
// listing every mismatch (strict), io_error for an unreadable or malformed file.
template <class Module>
load_report load_checkpoint(const std::string& path, Module& module,
                            const load_options& options = {}) {
  checkpoint_detail::no_optimizer none;
  return checkpoint_detail::load("load_checkpoint", path, module, none, false, options);
}
template <class Module, class Optimizer, checkpoint_detail::if_optimizer<Optimizer> = 0>
load_report load_checkpoint(const std::string& path, Module& module, Optimizer& optimizer,
                            const load_options& options = {}) {
  return checkpoint_detail::load("load_checkpoint", path, module, optimizer, true, options);
}

// Parameters and buffers only (pretrained weights, e.g. a converted torchvision state_dict);
// "optimizer.*" entries in the file are ignored. See load_options for prefix mapping.
template <class Module>
load_report load_module_weights(const std::string& path, Module& module,
                                const load_options& options = {}) {
  checkpoint_detail::no_optimizer none;
  return checkpoint_detail::load("load_module_weights", path, module, none, false, options);
}

}  // namespace segkit::train
