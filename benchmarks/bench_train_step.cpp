// benchmarks/bench_train_step.cpp — one training step (forward, every loss, backward, SGD
// update) of each method at the CamVid configuration, against PyTorch (CPU) in the same run.
//
// Methods (zoo names, models/zoo.hpp): fcn-resnet18 (the baseline), saf-resnet18,
// hfgd-resnet18, ocr-resnet18. The PyTorch side is benchmarks/train_step_torch.py: the same
// architectures built from torchvision's ResNet-18 and the head re-implementations in
// tests/reference (gen_saf / gen_hfgd / gen_ocr / gen_hrnet.py), same hyper-parameters.
// Config: batch 8, images 3x192x192 (random normal), 11 classes, random labels with 10% ignore
// (255); SGD lr 0.01, momentum 0.9, weight decay 5e-4; BN in training mode.
// Threads: segkit's OpenMP threads (OMP_NUM_THREADS) = torch.set_num_threads.
// Time: median of --steps steps after --warmup steps (segkit's setup runs one more).
// Peak memory, both sides the same way, each model in its own process (segkit: a forked child;
// PyTorch: a fresh python3): baseline = VmRSS once the input batch exists, the peak-RSS mark is
// reset there (writing 5 to /proc/self/clear_refs), peak = VmHWM after the timed steps; printed
// is peak - baseline (MiB): parameters, gradients, optimizer state, activations, workspaces.
// Parameter counts must agree (a check that both sides built the same network): a mismatch
// prints PARAMETER COUNT MISMATCH and the program exits 1.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "bench_common.hpp"
#include "segkit/models/hfgd.hpp"
#include "segkit/models/ocr.hpp"
#include "segkit/models/saf.hpp"
#include "segkit/models/zoo.hpp"
#include "segkit/train/optimizer.hpp"

namespace {

using namespace segkit;
using zoo = models::zoo_models<cpu>;

// The zoo's type when the zoo has it; otherwise the plan's template arguments.
template <class Z, class = void>
struct pick_hfgd {
  using type = models::hfgd<models::resnet<18, 100, 32>, 64, 256, 64, 128>;
  static constexpr bool from_zoo = false;
};
template <class Z>
struct pick_hfgd<Z, std::void_t<typename Z::hfgd_resnet18>> {
  using type = typename Z::hfgd_resnet18;
  static constexpr bool from_zoo = true;
};
template <class Z, class = void>
struct pick_ocr {
  using type = models::ocr<models::resnet<18, 100, 8>, 256, 128, 128>;
  static constexpr bool from_zoo = false;
};
template <class Z>
struct pick_ocr<Z, std::void_t<typename Z::ocr_resnet18>> {
  using type = typename Z::ocr_resnet18;
  static constexpr bool from_zoo = true;
};
template <class Z, class = void>
struct pick_saf {
  using type = models::saf<models::resnet<18, 100, 32>, 48, 3, 4>;
  static constexpr bool from_zoo = false;
};
template <class Z>
struct pick_saf<Z, std::void_t<typename Z::saf_resnet18>> {
  using type = typename Z::saf_resnet18;
  static constexpr bool from_zoo = true;
};

struct config {
  int batch = 8, size = 192, classes = 11, steps = 5, warmup = 1;
  bool torch = true;
};

struct side_result {
  bool ok = false;
  std::string error;
  double median_ms = 0, peak_mb = 0;
  long long params = 0;
  double loss = 0;
};

long status_kb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(in, line))
    if (line.compare(0, key.size(), key) == 0) return std::atol(line.c_str() + key.size());
  return -1;
}

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return bool(out);
}

template <class M>
std::unique_ptr<M> make_model(int classes, uint64_t seed) {
  if constexpr (std::is_constructible_v<M, int, uint64_t>)
    return std::make_unique<M>(classes, seed);
  else
    return std::unique_ptr<M>(new M(classes, {}, seed));  // hfgd(classes, options, seed)
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs in the forked child: builds the model, times the steps, measures the peak.
template <class M>
side_result segkit_side(const config& c) {
  side_result r;
  std::mt19937_64 rng(1);
  tensor<float, cpu> images({c.batch, 3, c.size, c.size});
  tensor<int32_t, cpu> labels({c.batch, c.size, c.size});
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int32_t> label(0, c.classes - 1);
  std::uniform_real_distribution<float> unit;
  for (int64_t i = 0; i < images.numel(); ++i) images[i] = normal(rng);
  for (int64_t i = 0; i < labels.numel(); ++i) labels[i] = unit(rng) < 0.1f ? 255 : label(rng);

  const long baseline_kb = status_kb("VmRSS");
  reset_peak_rss();
  auto model = make_model<M>(c.classes, 1);
  model->setup(images.shape());
  model->train();
  model->visit_parameters(
      "", [&](const std::string&, nn::parameter<cpu>& p) { r.params += p.value.numel(); });
  train::sgd_options o;
  o.lr = 0.01, o.momentum = 0.9, o.weight_decay = 5e-4;
  train::sgd<cpu> optimizer(nn::parameters_of<cpu>(*model), o);
  auto step = [&] {
    model->zero_grad();
    const auto terms = model->forward_backward(images, labels);
    optimizer.step();
    return terms.total;
  };
  for (int i = 0; i < c.warmup; ++i) step();
  std::vector<double> ms;
  for (int i = 0; i < c.steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    r.loss = step();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  r.median_ms = median(ms);
  r.peak_mb = double(status_kb("VmHWM") - baseline_kb) / 1024.0;
  r.ok = true;
  return r;
}

// Forks, runs segkit_side<M> in the child (its own address space: a clean peak RSS, and
// memory freed by the previous model does not count), reads the result through a pipe. The
// parent runs no OpenMP region, so the child's OpenMP starts fresh.
template <class M>
side_result segkit_in_child(const config& c) {
  side_result r;
  int fd[2];
  if (pipe(fd) != 0) {
    r.error = "pipe failed";
    return r;
  }
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    std::string text;
    try {
      const side_result s = segkit_side<M>(c);
      char buffer[256];
      std::snprintf(buffer, sizeof buffer, "ok %.6f %.6f %lld %.6f", s.median_ms, s.peak_mb,
                    s.params, s.loss);
      text = buffer;
    } catch (const std::exception& e) {
      text = std::string("error ") + e.what();
    }
    const ssize_t written = write(fd[1], text.data(), text.size());
    close(fd[1]);
    _exit(written == ssize_t(text.size()) ? 0 : 1);
  }
  close(fd[1]);
  std::string text;
  char buffer[512];
  ssize_t n;
  while ((n = read(fd[0], buffer, sizeof buffer)) > 0) text.append(buffer, size_t(n));
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  std::istringstream in(text);
  std::string word;
  in >> word;
  if (word == "ok") {
    in >> r.median_ms >> r.peak_mb >> r.params >> r.loss;
    r.ok = bool(in);
  }
  if (!r.ok) {
    r.error = text.empty() ? "child died (status " + std::to_string(status) + ")" : text;
    if (WIFSIGNALED(status)) r.error += " (signal " + std::to_string(WTERMSIG(status)) + ")";
  }
  return r;
}

side_result torch_side(const std::string& method, const config& c) {
  side_result r;
  if (bench::torch_python().empty()) {
    r.error = "python3-torch not importable (set SEGKIT_PYTHON)";
    return r;
  }
  const std::string command =
      bench::torch_python() + " " SEGKIT_BENCHMARK_DIR "/train_step_torch.py " + method +
      " --batch " + std::to_string(c.batch) + " --size " + std::to_string(c.size) + " --classes " +
      std::to_string(c.classes) + " --steps " + std::to_string(c.steps) + " --warmup " +
      std::to_string(c.warmup) + " --threads " + std::to_string(num_threads()) + " 2>&1";
  std::fflush(stdout);
  FILE* p = popen(command.c_str(), "r");
  if (!p) {
    r.error = "popen failed";
    return r;
  }
  std::string output;
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, p)) output += buffer;
  const int status = pclose(p);
  const auto brace = output.rfind('{');
  if (status != 0 || brace == std::string::npos) {
    r.error = "train_step_torch.py failed: " + output;
    return r;
  }
  const std::string line = output.substr(brace);
  r.median_ms = bench::json_number(line, "median_ms");
  r.peak_mb = bench::json_number(line, "peak_mb");
  r.params = static_cast<long long>(bench::json_number(line, "params"));
  r.loss = bench::json_number(line, "loss");
  r.ok = r.median_ms > 0;
  if (!r.ok) r.error = "no timing in: " + line;
  return r;
}

struct method_info {
  std::string key, zoo_name;
};

void usage() {
  std::printf(
      "usage: bench_train_step [--methods fcn,saf,hfgd,ocr] [--steps N (5)] [--warmup N (1)]\n"
      "                        [--batch N (8)] [--size S (192)] [--classes K (11)] [--no-torch]\n");
}

}  // namespace

int main(int argc, char** argv) {
  config c;
  std::string methods = "fcn,saf,hfgd,ocr";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      usage();
      return 0;
    }
    if (arg == "--no-torch") {
      c.torch = false;
      continue;
    }
    if (i + 1 >= argc) {
      usage();
      return 2;
    }
    const char* value = argv[++i];
    if (arg == "--methods")
      methods = value;
    else if (arg == "--steps")
      c.steps = std::max(1, std::atoi(value));
    else if (arg == "--warmup")
      c.warmup = std::max(0, std::atoi(value));
    else if (arg == "--batch")
      c.batch = std::max(1, std::atoi(value));
    else if (arg == "--size")
      c.size = std::max(32, std::atoi(value));
    else if (arg == "--classes")
      c.classes = std::max(2, std::atoi(value));
    else {
      usage();
      return 2;
    }
  }
  const std::vector<method_info> known{{"fcn", "fcn-resnet18"},
                                       {"saf", "saf-resnet18"},
                                       {"hfgd", "hfgd-resnet18"},
                                       {"ocr", "ocr-resnet18"}};
  std::vector<method_info> chosen;
  {
    std::stringstream list(methods);
    std::string item;
    while (std::getline(list, item, ',')) {
      const auto found = std::find_if(known.begin(), known.end(),
                                      [&](const method_info& m) { return m.key == item; });
      if (found == known.end()) {
        std::fprintf(stderr, "bench_train_step: unknown method \"%s\" (fcn, saf, hfgd, ocr)\n",
                     item.c_str());
        return 2;
      }
      chosen.push_back(*found);
    }
  }

  std::printf(
      "bench_train_step: one training step = zero_grad + forward + every loss + backward + SGD\n"
      "  update (lr 0.01, momentum 0.9, weight decay 5e-4), BN in training mode.\n"
      "config: batch %d, images 3x%dx%d (random normal), %d classes, random labels with 10%% "
      "ignore (255)\n"
      "threads: %d (segkit OpenMP = torch.set_num_threads)\n"
      "time: median of %d step(s) after %d warm-up step(s) (segkit's setup runs one more)\n"
      "peak memory: each model in its own process (segkit: forked child; torch: fresh %s);\n"
      "  baseline = VmRSS once the input batch exists, peak-RSS mark reset there\n"
      "  (/proc/self/clear_refs), peak = VmHWM after the timed steps; shown: peak - baseline,\n"
      "  MiB (parameters + gradients + optimizer state + activations + workspaces/caches)\n"
      "torch side: benchmarks/train_step_torch.py (torchvision ResNet-18 + tests/reference "
      "heads)\n\n",
      c.batch, c.size, c.size, c.classes, num_threads(), c.steps, c.warmup,
      c.torch ? (bench::torch_python().empty() ? "(python3-torch not found)"
                                               : bench::torch_python().c_str())
              : "(--no-torch)");
  std::printf("%-14s | %14s | %13s | %18s | %14s | %13s | %s\n", "method", "segkit ms/step",
              "torch ms/step", "ratio torch/segkit", "segkit peak MB", "torch peak MB", "params");
  std::fflush(stdout);

  int failures = 0;
  for (const auto& m : chosen) {
    side_result s;
    std::string note;
    if (m.key == "fcn") {
      s = segkit_in_child<zoo::fcn_resnet18>(c);
    } else if (m.key == "hfgd") {
      using pick = pick_hfgd<zoo>;
      s = segkit_in_child<typename pick::type>(c);
      if (!pick::from_zoo) note = " [type built from hfgd.hpp: not in the zoo]";
    } else if (m.key == "ocr") {
      using pick = pick_ocr<zoo>;
      s = segkit_in_child<typename pick::type>(c);
      if (!pick::from_zoo) note = " [type built from ocr.hpp: not in the zoo]";
    } else {
      using pick = pick_saf<zoo>;
      s = segkit_in_child<typename pick::type>(c);
      if (!pick::from_zoo) note = " [type built from saf.hpp: not in the zoo]";
    }
    side_result t;
    if (c.torch) t = torch_side(m.key, c);
    char torch_ms[32] = "-", ratio[32] = "-", torch_mb[32] = "-";
    if (t.ok) {
      std::snprintf(torch_ms, sizeof torch_ms, "%.1f", t.median_ms);
      std::snprintf(torch_mb, sizeof torch_mb, "%.1f", t.peak_mb);
      if (s.ok) std::snprintf(ratio, sizeof ratio, "%.2fx", t.median_ms / s.median_ms);
    }
    if (s.ok) {
      std::string params = std::to_string(s.params);
      if (t.ok && t.params != s.params) params += " vs torch " + std::to_string(t.params);
      std::printf("%-14s | %14.1f | %13s | %18s | %14.1f | %13s | %s%s\n", m.zoo_name.c_str(),
                  s.median_ms, torch_ms, ratio, s.peak_mb, torch_mb, params.c_str(), note.c_str());
    } else {
      std::printf("%-14s | %14s | %13s | %18s | %14s | %13s | %s  segkit FAILED: %s\n",
                  m.zoo_name.c_str(), "-", torch_ms, "-", "-", torch_mb,
                  t.ok ? std::to_string(t.params).c_str() : "-", s.error.c_str());
      ++failures;
    }
    if (c.torch && !t.ok) {
      std::printf("  %s torch FAILED: %s\n", m.zoo_name.c_str(), t.error.c_str());
      ++failures;
    }
    if (s.ok && t.ok && s.params != t.params) {
      std::printf(
          "  PARAMETER COUNT MISMATCH for %s: segkit %lld, PyTorch %lld: the PyTorch "
          "model is not the same architecture\n",
          m.zoo_name.c_str(), s.params, t.params);
      ++failures;
    }
    std::fflush(stdout);
  }
  if (failures) std::printf("\n%d problem(s); see above\n", failures);
  return failures ? 1 : 0;
}
