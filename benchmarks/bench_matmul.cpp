// bench_matmul — segkit's CPU GEMM (Eigen, OpenMP) on ResNet-like shapes, against the
// machine's FP32 peak and PyTorch's torch.matmul measured in the same run.
// Goal: >= 50% of FP32 peak on the large square shape.
#include <cstdio>
#include <random>

#include "bench_common.hpp"
#include "segkit/ops/matmul.hpp"

namespace {

struct gemm_shape {
  const char* name;
  int64_t m, n, k;
};
// Square, and convolutions as GEMMs: [Cout, Cin*9] x [Cin*9, Ho*Wo] for ResNet stages.
const gemm_shape shapes[] = {
    {"square_1024", 1024, 1024, 1024},
    {"conv_64x3136x576", 64, 3136, 576},
    {"conv_128x784x1152", 128, 784, 1152},
    {"conv_256x196x2304", 256, 196, 2304},
};

void bench_gemm(benchmark::State& state, gemm_shape s) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> pick(-1.f, 1.f);
  std::vector<float> a(size_t(s.m * s.k)), b(size_t(s.k * s.n)), c(size_t(s.m * s.n));
  for (auto& v : a) v = pick(rng);
  for (auto& v : b) v = pick(rng);
  for (auto _ : state) {
    segkit::ops::gemm(segkit::cpu{}, false, false, s.m, s.n, s.k, 1.f, a.data(), s.k, b.data(),
                      s.n, 0.f, c.data(), s.n);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * s.m * s.n * s.k,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

int main(int argc, char** argv) {
  const auto peak = segkit::bench::detect_peak();
  for (const auto& s : shapes)
    benchmark::RegisterBenchmark(s.name, bench_gemm, s)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);
  benchmark::Initialize(&argc, argv);
  segkit::bench::recording_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::printf("\nSummary (segkit threads = torch threads = %d)\n", segkit::num_threads());
  std::printf("%-20s %10s %10s %8s %12s %12s %8s  %s\n", "shape MxNxK", "segkit ms", "GFLOP/s",
              "% peak", "torch ms", "torch GF/s", "speedup", "goal");
  bool all_met = true, goal_measured = false;
  for (const auto& s : shapes) {
    const double ms = reporter.ms(s.name);
    if (ms <= 0) continue;
    const double flops = 2.0 * s.m * s.n * s.k;
    const double gflops = flops / ms * 1e-6;
    const double percent = 100.0 * gflops / peak.gflops();
    const auto torch = segkit::bench::run_torch(
        "matmul", std::to_string(s.m) + " " + std::to_string(s.n) + " " + std::to_string(s.k));
    const bool is_goal_shape = s.m == 1024 && s.n == 1024 && s.k == 1024;
    const bool met = percent >= 50.0;
    if (is_goal_shape) all_met = all_met && met, goal_measured = true;
    char label[64];
    std::snprintf(label, sizeof label, "%ldx%ldx%ld", long(s.m), long(s.n), long(s.k));
    if (torch)
      std::printf("%-20s %10.2f %10.1f %7.1f%% %12.2f %12.1f %7.2fx  %s\n", label, ms, gflops,
                  percent, torch->median_ms, flops / torch->median_ms * 1e-6,
                  torch->median_ms / ms, is_goal_shape ? (met ? ">=50% peak: MET" : ">=50% peak: NOT MET") : "-");
    else
      std::printf("%-20s %10.2f %10.1f %7.1f%% %12s %12s %8s  %s\n", label, ms, gflops, percent,
                  "n/a", "n/a", "n/a", is_goal_shape ? (met ? ">=50% peak: MET" : ">=50% peak: NOT MET") : "-");
  }
  if (auto t = segkit::bench::run_torch("matmul", "64 64 64")) std::printf("torch: %s\n", t->line.c_str());
  std::printf("goal (GEMM >= 50%% of FP32 peak on 1024^3): %s\n",
              !goal_measured ? "NOT MEASURED (1024^3 did not run)"
              : all_met      ? "MET"
                             : "NOT MET");
  return 0;
}
