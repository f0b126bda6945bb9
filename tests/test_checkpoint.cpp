// Tests of segkit/train/checkpoint.hpp with hand-written modules that implement the visit
// contract of segkit/nn/parameter.hpp (the names of torch.nn.Sequential(nn.Conv2d(3, 4, 3),
// nn.BatchNorm2d(4)).state_dict()) and a mock optimizer with visit_state. PyTorch -> segkit
// through tests/golden/checkpoint_from_torch.safetensors (tests/reference/checkpoint_roundtrip.py);
// segkit -> PyTorch: set SEGKIT_CHECKPOINT_EXPORT=<file> and this test also writes its round-trip
// checkpoint there, for `checkpoint_roundtrip.py verify <file>` (docs/checkpoints.md).
#include <catch2/catch.hpp>

#include "mock_modules.hpp"
#include "scratch_dir.hpp"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include "segkit/train/checkpoint.hpp"

using namespace segkit;
using segkit::testing::scratch_dir;
using segkit::train::checkpoint_error;
using segkit::train::load_options;
namespace fs = std::filesystem;

namespace {

using conv_bn = testing::torch_conv_bn;

// A network whose first part is a conv_bn under "backbone", plus a head.
struct with_backbone {
  conv_bn backbone;
  nn::parameter<> head{shape{2, 4}};
  template <class F>
  void visit_parameters(const std::string& prefix, F&& f) {
    backbone.visit_parameters(nn::join_name(prefix, "backbone"), f);
    f(nn::join_name(prefix, "head.weight"), head);
  }
  template <class F>
  void visit_buffers(const std::string& prefix, F&& f) {
    backbone.visit_buffers(nn::join_name(prefix, "backbone"), f);
  }
};

// SGD-with-momentum-like state: one buffer per parameter and an int64 step counter.
struct mock_optimizer {
  std::vector<std::pair<std::string, host_tensor<float>>> momentum;
  host_tensor<int64_t> step = host_tensor<int64_t>::zeros({1});
  template <class Module>
  explicit mock_optimizer(Module& module) {
    for (const auto& named : nn::parameters_of(module))
      momentum.push_back(
          {named.name + ".momentum_buffer", host_tensor<float>::zeros(named.param->shape())});
  }
  template <class F>
  void visit_state(F&& f) {
    for (auto& [name, value] : momentum) f(name, value);
    f("step", step);
  }
};

// A module that (wrongly) visits one name twice.
struct duplicate_names {
  nn::parameter<> a{shape{2}}, b{shape{2}};
  template <class F>
  void visit_parameters(const std::string& prefix, F&& f) {
    f(nn::join_name(prefix, "w"), a);
    f(nn::join_name(prefix, "w"), b);
  }
  template <class F>
  void visit_buffers(const std::string&, F&&) {}
};

// Every tensor of module (+ optimizer) by name, as raw bytes; optimizer names "optimizer.*".
template <class Module, class Optimizer = train::checkpoint_detail::no_optimizer>
std::map<std::string, std::vector<uint8_t>> snapshot(Module& module,
                                                     Optimizer* optimizer = nullptr) {
  std::map<std::string, std::vector<uint8_t>> result;
  auto grab = [&](const std::string& name, const auto& t) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(t.data());
    result[name] = std::vector<uint8_t>(bytes, bytes + t.bytes());
  };
  module.visit_parameters("", [&](const std::string& name, auto& p) { grab(name, p.value); });
  module.visit_buffers("", [&](const std::string& name, auto& t) { grab(name, t); });
  if (optimizer)
    optimizer->visit_state([&](const std::string& name, auto& t) { grab("optimizer." + name, t); });
  return result;
}

// The values checkpoint_roundtrip.py's expected_value() recomputes: float tensor number k (in
// sorted order of all float names, optimizer ones included) holds ((5i + 3k) % 19 - 9) / 16 + k;
// int64 tensors hold `counter`. Exact in float.
float expected_value(int64_t k, int64_t i) {
  return static_cast<float>((i * 5 + k * 3) % 19 - 9) * 0.0625f + static_cast<float>(k);
}
template <class Module, class Optimizer = train::checkpoint_detail::no_optimizer>
void fill_formula(Module& module, Optimizer* optimizer = nullptr, int64_t counter = 7,
                  float offset = 0.0f) {
  std::map<std::string, host_tensor<float>> floats;
  auto take = [&](const std::string& name, auto& t) {
    using T = typename std::decay_t<decltype(t)>::value_type;
    if constexpr (std::is_same_v<T, float>)
      floats[name] = t;
    else
      t.fill(counter);
  };
  module.visit_parameters("", [&](const std::string& name, auto& p) { take(name, p.value); });
  module.visit_buffers("", [&](const std::string& name, auto& t) { take(name, t); });
  if (optimizer)
    optimizer->visit_state([&](const std::string& name, auto& t) { take("optimizer." + name, t); });
  int64_t k = 0;
  for (auto& [name, t] : floats) {  // std::map: sorted like Python's sorted()
    for (int64_t i = 0; i < t.numel(); ++i) t[i] = expected_value(k, i) + offset;
    ++k;
  }
}

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}
void write_all(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}


std::string message_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const segkit::error& e) {
    return e.what();
  }
  return "(no exception)";
}

const std::vector<std::string> module_names = {
    "0.bias",         "0.weight",      "1.bias",  "1.num_batches_tracked",
    "1.running_mean", "1.running_var", "1.weight"};

}  // namespace

TEST_CASE("checkpoint: round trip of module, optimizer and metadata gives identical tensors") {
  scratch_dir dir("checkpoint");
  const std::string path = dir.file("model.safetensors");
  conv_bn source;
  mock_optimizer source_optimizer(source);
  fill_formula(source, &source_optimizer);
  train::save_checkpoint(path, source, source_optimizer, {{"iteration", "1200"}});

  conv_bn target;
  mock_optimizer target_optimizer(target);
  fill_formula(target, &target_optimizer, 0, 100.0f);  // different everywhere
  REQUIRE(snapshot(target, &target_optimizer) != snapshot(source, &source_optimizer));
  const train::load_report report = train::load_checkpoint(path, target, target_optimizer);
  CHECK(snapshot(target, &target_optimizer) == snapshot(source, &source_optimizer));
  CHECK(report.complete());
  CHECK(report.loaded.size() == 7 + 4 + 1);
  CHECK(report.metadata.at("iteration") == "1200");
  CHECK(report.metadata.at("format") == "segkit-checkpoint");
  CHECK(target.num_batches_tracked[0] == 7);

  // The file itself, read with segkit's own reader, in the layout golden.py reads: module names
  // as in torch's state_dict, F32 / I64, shapes as in the module, values as the formula.
  const tensor_file file = tensor_file::load(path);
  std::vector<std::string> expected_names = module_names;
  for (const char* p : {"0.bias", "0.weight", "1.bias", "1.weight"})
    expected_names.push_back(std::string("optimizer.") + p + ".momentum_buffer");
  expected_names.push_back("optimizer.step");
  std::sort(expected_names.begin(), expected_names.end());
  CHECK(file.names() == expected_names);
  CHECK(file.metadata() == std::map<std::string, std::string>{{"format", "segkit-checkpoint"},
                                                              {"iteration", "1200"},
                                                              {"version", "1"}});
  CHECK(file.type_of("1.num_batches_tracked") == dtype::i64);
  CHECK(file.type_of("optimizer.step") == dtype::i64);
  CHECK(file.shape_of("0.weight") == shape{4, 3, 3, 3});
  CHECK(file.shape_of("optimizer.0.weight.momentum_buffer") == shape{4, 3, 3, 3});
  CHECK(file.shape_of("1.running_var") == shape{4});
  CHECK(file.get<int64_t>("1.num_batches_tracked")[0] == 7);
  int64_t k = 0;
  for (const auto& name : file.names()) {
    if (file.type_of(name) != dtype::f32) continue;
    const auto values = file.get<float>(name);
    bool all_equal = true;
    for (int64_t i = 0; i < values.numel(); ++i) all_equal &= values[i] == expected_value(k, i);
    INFO(name);
    CHECK(all_equal);
    ++k;
  }
  CHECK(k == 10);

  // segkit -> PyTorch: keep a copy for `checkpoint_roundtrip.py verify <file>`.
  if (const char* export_path = std::getenv("SEGKIT_CHECKPOINT_EXPORT")) {
    train::save_checkpoint(export_path, source, source_optimizer, {{"iteration", "1200"}});
    WARN("wrote " << export_path << " for tests/reference/checkpoint_roundtrip.py verify");
  }
}

TEST_CASE("checkpoint: every mismatch is reported in one message and nothing is modified") {
  scratch_dir dir("checkpoint");
  const std::string path = dir.file("bad.safetensors");
  conv_bn source;
  fill_formula(source);
  train::save_checkpoint(path, source);
  tensor_file file = tensor_file::load(path);
  file.erase("1.bias");                                               // missing
  file.set("2.weight", host_tensor<float>::zeros({5}));               // unexpected
  file.set("0.weight", host_tensor<float>::zeros({4, 3, 5, 5}));      // wrong shape
  file.set("1.num_batches_tracked", host_tensor<float>::zeros({1}));  // wrong dtype
  file.save(path);

  conv_bn target;
  fill_formula(target, static_cast<train::checkpoint_detail::no_optimizer*>(nullptr), 3, 50.0f);
  const auto before = snapshot(target);
  const std::string message = message_of([&] { train::load_checkpoint(path, target); });
  CHECK_THAT(message, Catch::Contains(path) && Catch::Contains("4 problem"));
  CHECK_THAT(message, Catch::Contains("missing from the file: \"1.bias\""));
  CHECK_THAT(message, Catch::Contains("unexpected in the file: \"2.weight\""));
  CHECK_THAT(message, Catch::Contains("shape mismatch for \"0.weight\": file F32 [4, 3, 5, 5], "
                                      "module F32 [4, 3, 3, 3]"));
  CHECK_THAT(message, Catch::Contains("dtype mismatch for \"1.num_batches_tracked\": file F32 "
                                      "[1], module I64 [1]"));
  CHECK_THROWS_AS(train::load_checkpoint(path, target), checkpoint_error);
  CHECK_THROWS_AS(train::load_checkpoint(path, target), io_error);
  CHECK(snapshot(target) == before);  // validated first: nothing copied

  SECTION("strict = false loads what matches and reports the rest") {
    load_options options;
    options.strict = false;
    const train::load_report report = train::load_checkpoint(path, target, options);
    CHECK_FALSE(report.complete());
    CHECK(report.missing == std::vector<std::string>{"1.bias"});
    CHECK(report.unexpected == std::vector<std::string>{"2.weight"});
    CHECK(report.mismatched == std::vector<std::string>{"0.weight", "1.num_batches_tracked"});
    CHECK(report.loaded ==
          std::vector<std::string>{"0.bias", "1.weight", "1.running_mean", "1.running_var"});
    CHECK(report.problems.size() == 4);
    const auto after = snapshot(target), expected = snapshot(source);
    for (const auto& name : module_names) {
      INFO(name);
      const bool loaded =
          std::find(report.loaded.begin(), report.loaded.end(), name) != report.loaded.end();
      CHECK(after.at(name) == (loaded ? expected.at(name) : before.at(name)));
    }
  }
}

TEST_CASE("checkpoint: optimizer state is checked too, and ignored when not asked for") {
  scratch_dir dir("checkpoint");
  const std::string module_only = dir.file("module.safetensors");
  const std::string full = dir.file("full.safetensors");
  conv_bn source;
  mock_optimizer source_optimizer(source);
  fill_formula(source, &source_optimizer);
  train::save_checkpoint(module_only, source);
  train::save_checkpoint(full, source, source_optimizer);

  conv_bn target;
  mock_optimizer target_optimizer(target);
  const auto before = snapshot(target, &target_optimizer);
  const std::string message =
      message_of([&] { train::load_checkpoint(module_only, target, target_optimizer); });
  CHECK_THAT(message, Catch::Contains("5 problem") &&
                          Catch::Contains("missing from the file: \"optimizer.step\"") &&
                          Catch::Contains("\"optimizer.1.weight.momentum_buffer\""));
  CHECK(snapshot(target, &target_optimizer) == before);

  // A training checkpoint loads into a bare module (inference), and as pretrained weights.
  CHECK(train::load_checkpoint(full, target).loaded.size() == 7);
  CHECK(snapshot(target) == snapshot(source));
  conv_bn other;
  CHECK(train::load_module_weights(full, other).complete());
  CHECK(snapshot(other) == snapshot(source));

  // Wrong optimizer state shape.
  mock_optimizer wrong(target);
  wrong.momentum[0].second = host_tensor<float>::zeros({4, 3, 3, 1});  // "0.weight.momentum_buffer"
  CHECK_THAT(message_of([&] { train::load_checkpoint(full, target, wrong); }),
             Catch::Contains("shape mismatch for \"optimizer.0.weight.momentum_buffer\": file "
                             "F32 [4, 3, 3, 3], module F32 [4, 3, 3, 1]"));
}

TEST_CASE("checkpoint: load_module_weights maps name prefixes") {
  scratch_dir dir("checkpoint");
  const std::string torchvision_like = dir.file("backbone.safetensors");
  conv_bn pretrained;
  fill_formula(pretrained);
  train::save_checkpoint(torchvision_like, pretrained);

  with_backbone network;
  network.head.value.fill(0.5f);
  load_options options;
  options.module_prefix = "backbone.";
  const train::load_report report = train::load_module_weights(torchvision_like, network, options);
  CHECK(report.complete());
  CHECK(report.loaded.front() == "backbone.0.weight");
  CHECK(snapshot(network.backbone) == snapshot(pretrained));
  CHECK(network.head.value[0] == 0.5f);  // outside the prefix: untouched, not "missing"

  // The reverse: a network checkpoint's backbone into a bare conv_bn; "head.weight" lies
  // outside file_prefix, so it is not unexpected.
  const std::string network_file = dir.file("network.safetensors");
  train::save_checkpoint(network_file, network);
  conv_bn bare;
  load_options reverse;
  reverse.file_prefix = "backbone.";
  CHECK(train::load_module_weights(network_file, bare, reverse).complete());
  CHECK(snapshot(bare) == snapshot(pretrained));

  // A pretrained file with a classifier the backbone lacks: strict names it, non-strict skips.
  tensor_file with_fc = tensor_file::load(torchvision_like);
  with_fc.set("fc.weight", host_tensor<float>::zeros({10, 4}));
  with_fc.save(torchvision_like);
  CHECK_THAT(message_of([&] { train::load_module_weights(torchvision_like, network, options); }),
             Catch::Contains("unexpected in the file: \"fc.weight\" (F32 [10, 4])"));
  // A missing entry names both the file name and the module name.
  tensor_file without = tensor_file::load(torchvision_like);
  without.erase("1.running_var");
  without.save(torchvision_like);
  options.strict = false;
  const train::load_report partial = train::load_module_weights(torchvision_like, network, options);
  CHECK(partial.unexpected == std::vector<std::string>{"fc.weight"});
  CHECK(partial.missing == std::vector<std::string>{"backbone.1.running_var"});
  CHECK_THAT(partial.to_string(),
             Catch::Contains("\"1.running_var\" (for \"backbone.1.running_var\")"));
}

TEST_CASE("checkpoint: a failed save leaves the previous checkpoint intact") {
  scratch_dir dir("checkpoint");
  const std::string path = dir.file("model.safetensors");
  conv_bn model;
  fill_formula(model);
  train::save_checkpoint(path, model, {{"iteration", "1"}});
  const auto old_bytes = read_all(path);
  fill_formula(model, static_cast<train::checkpoint_detail::no_optimizer*>(nullptr), 9, 1.0f);

  // The write fails half way (the file size limit makes write() fail with EFBIG, even for root).
  {
    rlimit saved{};
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    rlimit small = saved;
    small.rlim_cur = 256;
    const auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    std::string message = message_of([&] {
      train::save_checkpoint(path, model, {{"iteration", "2"}});
    });
    setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, previous_handler);
    CHECK_THAT(message, Catch::Contains(path) && Catch::Contains("unchanged"));
  }
  CHECK(read_all(path) == old_bytes);
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});

  // Bad metadata and a module that visits a name twice fail before anything is written.
  CHECK_THROWS_AS(train::save_checkpoint(path, model, {{"note", "\xff"}}), value_error);
  CHECK_THROWS_WITH(train::save_checkpoint(path, model, {{"format", "pt"}}),
                    Catch::Contains("\"format\" is reserved"));
  duplicate_names twice;
  CHECK_THROWS_WITH(train::save_checkpoint(path, twice), Catch::Contains("\"w\" is visited twice"));
  CHECK(read_all(path) == old_bytes);

  // A directory in the way of the target: the rename fails, no temp file is left.
  fs::create_directories(dir.file("taken.safetensors/inside"));
  CHECK_THROWS_AS(train::save_checkpoint(dir.file("taken.safetensors"), model), io_error);
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors", "taken.safetensors"});
  CHECK(read_all(path) == old_bytes);
  CHECK(train::load_checkpoint(path, model).metadata.at("iteration") == "1");
}

TEST_CASE("checkpoint: truncated or foreign-version files are rejected, the module untouched") {
  scratch_dir dir("checkpoint");
  const std::string path = dir.file("model.safetensors");
  const std::string cut = dir.file("cut.safetensors");
  conv_bn model;
  fill_formula(model);
  train::save_checkpoint(path, model);
  const auto bytes = read_all(path);
  conv_bn target;
  const auto before = snapshot(target);
  size_t rejected = 0;
  for (size_t length = 0; length < bytes.size(); ++length) {
    write_all(cut, std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(length)));
    try {
      train::load_checkpoint(cut, target);
    } catch (const io_error&) {
      ++rejected;
    }
  }
  CHECK(rejected == bytes.size());
  CHECK(snapshot(target) == before);
  CHECK_THROWS_WITH(train::load_checkpoint(dir.file("absent.safetensors"), target),
                    Catch::Contains("absent.safetensors"));

  tensor_file future = tensor_file::load(path);
  future.metadata()["version"] = "2";
  future.save(path);
  CHECK_THROWS_WITH(train::load_checkpoint(path, target),
                    Catch::Contains("segkit checkpoint version 2, this build reads version 1"));

  duplicate_names twice;
  CHECK_THROWS_AS(train::load_checkpoint(path, twice), checkpoint_error);
}

TEST_CASE("checkpoint: a PyTorch state_dict (with int64 num_batches_tracked) loads strictly") {
  const std::string path = SEGKIT_GOLDEN_DIR "/checkpoint_from_torch.safetensors";
  conv_bn model;
  const train::load_report report = train::load_checkpoint(path, model);
  REQUIRE(report.complete());
  CHECK(report.loaded.size() == 7);
  CHECK(report.metadata.at("format") == "pt");
  CHECK(model.num_batches_tracked[0] == 1);  // one training forward

  // The loaded tensors are the file's (checked against the reader directly).
  const tensor_file file = tensor_file::load(path);
  CHECK(to_vector(file.get<float>("0.weight")) == to_vector(model.conv_weight.value));
  CHECK(to_vector(file.get<float>("1.weight")) == to_vector(model.bn_weight.value));
  for (int c = 0; c < 4; ++c) {
    CHECK(model.bn_weight.value[c] >= 0.5f);  // uniform_(0.5, 1.5) in the script
    CHECK(model.bn_weight.value[c] <= 1.5f);
    CHECK(std::abs(model.bn_bias.value[c]) <= 0.5f);
  }

  // Recompute the running statistics from the loaded convolution on the script's input
  // x[i] = ((7i) % 23 - 11) / 8, shape (2, 3, 6, 6): momentum 0.1 from mean 0 / var 1,
  // running_var uses the unbiased batch variance.
  std::vector<double> x(2 * 3 * 6 * 6);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<double>((int64_t(i) * 7) % 23 - 11) * 0.125;
  for (int c = 0; c < 4; ++c) {
    std::vector<double> outputs;
    for (int n = 0; n < 2; ++n)
      for (int oy = 0; oy < 4; ++oy)
        for (int ox = 0; ox < 4; ++ox) {
          double sum = model.conv_bias.value[c];
          for (int ci = 0; ci < 3; ++ci)
            for (int ky = 0; ky < 3; ++ky)
              for (int kx = 0; kx < 3; ++kx)
                sum += double(model.conv_weight.value.at(c, ci, ky, kx)) *
                       x[((n * 3 + ci) * 6 + oy + ky) * 6 + ox + kx];
          outputs.push_back(sum);
        }
    double mean = 0, square = 0;
    for (double v : outputs) mean += v;
    mean /= double(outputs.size());
    for (double v : outputs) square += (v - mean) * (v - mean);
    const double unbiased = square / double(outputs.size() - 1);
    INFO("channel " << c);
    CHECK(model.running_mean[c] == Approx(0.1 * mean).margin(1e-6).epsilon(1e-5));
    CHECK(model.running_var[c] == Approx(0.9 + 0.1 * unbiased).margin(1e-6).epsilon(1e-5));
  }
}
