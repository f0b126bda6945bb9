// bench_ocr_gather — OCR's spatial gather, N = 8, C_f = 512, 128 x 128 features, K = 19
// (Cityscapes) and K = 150 (ADE20K): segkit's op against the naive composition of segkit's own
// ops (ops::softmax over a [N, K, HW] view + ops::matmul) and PyTorch (the authors' softmax +
// matmul), measured in the same run. Compute-bound by its GEMMs: GFLOP/s and % of FP32 peak
// (forward 2 N K C HW flops; forward+backward 3x that).
// GPU (built with SEGKIT_WITH_CUDA, on a machine with a device): the same cases timed with CUDA
// events, the L2 flushed before each call (median of 20), against two limits measured in the
// same run: a 256 MiB device copy (K = 19 streams 512 features per 19 regions, so it is close to
// memory-bound) and cuBLAS SGEMM on 4096^3. "% roofline" is the slower limit's time over ours.
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>

#include "bench_common.hpp"
#include "segkit/ops/matmul.hpp"
#include "segkit/ops/ocr_gather.hpp"
#include "segkit/ops/softmax.hpp"

namespace {
using segkit::host_tensor;
using segkit::shape;
constexpr int64_t N = 8, C = 512, H = 128, W = 128, HW = H * W;

struct fixture {
  int64_t k;
  host_tensor<float> regions, features, probs, y, dy, dr, df, dp;
  explicit fixture(int64_t regions_count)
      : k(regions_count), regions(shape{N, k, H, W}), features(shape{N, C, H, W}),
        probs(shape{N, k, HW}), y(shape{N, k, C}), dy(shape{N, k, C}), dr(shape{N, k, H, W}),
        df(shape{N, C, H, W}), dp(shape{N, k, HW}) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> pick(-1.f, 1.f);
    for (auto* t : {&regions, &features, &dy}) for (int64_t i = 0; i < t->numel(); ++i) (*t)[i] = pick(rng);
    dr.zero();
    df.zero();
  }
  void ours(bool backward) {
    segkit::ops::ocr_gather_forward(regions, features, probs, y);
    if (backward) segkit::ops::ocr_gather_backward(features, probs, dy, &dr, &df);
  }
  void naive(bool backward) {
    auto rows = regions.view({N, k, HW});
    const auto f = features.view({N, C, HW});
    segkit::ops::softmax_forward({-1}, rows, probs);
    segkit::ops::matmul_forward({false, true}, probs, f, y);
    if (!backward) return;
    dp.zero();
    auto df_view = df.view({N, C, HW});
    segkit::ops::matmul_backward({false, true}, probs, f, dy, &dp, &df_view);
    auto dr_view = dr.view({N, k, HW});
    segkit::ops::softmax_backward({-1}, probs, dp, dr_view);
  }
};

fixture& data(int64_t k) {
  static fixture k19(19), k150(150);
  return k == 19 ? k19 : k150;
}

double flops(int64_t k, bool backward) {
  return (backward ? 3.0 : 1.0) * 2.0 * N * k * C * HW;
}

#ifdef SEGKIT_WITH_CUDA
// Compulsory traffic. Forward reads regions and features, writes probabilities and y; backward
// reads features, probabilities and dy, and reads and writes d_regions and d_features (it adds).
double bytes(int64_t k, bool backward) {
  const double maps = 4.0 * N * k * HW, feats = 4.0 * N * C * HW, small = 4.0 * N * k * C;
  const double forward = 2 * maps + feats + small;
  return backward ? forward + 3 * maps + 3 * feats + small : forward;
}

double gpu_ms(int64_t k, bool backward) {
  using segkit::cuda;
  auto& f = data(k);
  const auto regions = segkit::to<cuda>(f.regions), features = segkit::to<cuda>(f.features);
  const auto dy = segkit::to<cuda>(f.dy);
  auto dr = segkit::to<cuda>(f.dr), df = segkit::to<cuda>(f.df);
  segkit::tensor<float, cuda> probs(f.probs.shape()), y(f.y.shape());
  return segkit::bench::gpu_median_ms([&] {
    segkit::ops::ocr_gather_forward(regions, features, probs, y);
    if (backward) segkit::ops::ocr_gather_backward(features, probs, dy, &dr, &df);
  });
}
#endif

void run(benchmark::State& state, int64_t k, bool naive, bool backward) {
  auto& f = data(k);
  for (auto _ : state) {
    naive ? f.naive(backward) : f.ours(backward);
    benchmark::ClobberMemory();
  }
}
}  // namespace

int main(int argc, char** argv) {
  const auto peak = segkit::bench::detect_peak();
  const char* names[] = {"ours", "naive"};
  for (int64_t k : {19, 150})
    for (int bwd = 0; bwd < 2; ++bwd)
      for (int naive = 0; naive < 2; ++naive) {
        const std::string name = std::string(names[naive]) + "_K" + std::to_string(k) + (bwd ? "_fwdbwd" : "_fwd");
        benchmark::RegisterBenchmark(name.c_str(), run, k, naive == 1, bwd == 1)
            ->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.3)->Repetitions(3);
      }
  benchmark::Initialize(&argc, argv);
  segkit::bench::recording_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::printf("\nSummary: N=%ld C_f=%ld %ldx%ld, threads = %d (torch too), FP32 peak %.1f GFLOP/s\n",
              long(N), long(C), long(H), long(W), segkit::num_threads(), peak.gflops());
  std::printf("%-12s %10s %9s %8s %10s %9s %10s %9s\n", "case", "segkit ms", "GFLOP/s", "% peak",
              "naive ms", "x naive", "torch ms", "x torch");
  for (int64_t k : {19, 150})
    for (int bwd = 0; bwd < 2; ++bwd) {
      const std::string suffix = "_K" + std::to_string(k) + (bwd ? "_fwdbwd" : "_fwd");
      const double ms = reporter.ms("ours" + suffix), naive_ms = reporter.ms("naive" + suffix);
      if (ms <= 0) continue;
      const double gflops = flops(k, bwd == 1) / ms * 1e-6;
      const auto torch = segkit::bench::run_torch(
          "ocr_gather", std::to_string(N) + " " + std::to_string(k) + " " + std::to_string(C) +
                            " " + std::to_string(H) + " " + std::to_string(W) + (bwd ? " fwdbwd" : " fwd"));
      std::printf("%-12s %10.2f %9.1f %7.1f%% %10.2f %8.2fx", suffix.c_str() + 1, ms, gflops,
                  100 * gflops / peak.gflops(), naive_ms, naive_ms / ms);
      if (torch)
        std::printf(" %10.2f %8.2fx\n", torch->median_ms, torch->median_ms / ms);
      else
        std::printf(" %10s %9s\n", "n/a", "n/a");
    }
#ifdef SEGKIT_WITH_CUDA
  std::printf("\n");
  if (!segkit::bench::gpu_available()) return 0;
  const auto limits = segkit::bench::measure_gpu_limits();
  std::printf("%-12s %9s %9s %8s %9s %8s %11s\n", "case", "ms", "GFLOP/s", "% SGEMM", "GB/s",
              "% copy", "% roofline");
  for (int64_t k : {19, 150})
    for (int bwd = 0; bwd < 2; ++bwd) {
      const double ms = gpu_ms(k, bwd == 1), gb = bytes(k, bwd == 1), fl = flops(k, bwd == 1);
      const double limit_ms = limits.roofline_ms(gb, fl);
      std::printf("K%-3ld %-7s %9.3f %9.0f %7.1f%% %9.1f %7.1f%% %10.1f%%\n", long(k),
                  bwd ? "fwdbwd" : "fwd", ms, fl / ms * 1e-6,
                  100 * fl / ms * 1e-6 / limits.sgemm_gflops, gb / ms * 1e-6,
                  100 * gb / ms * 1e-6 / limits.copy_gbps, 100 * limit_ms / ms);
    }
#endif
  return 0;
}
