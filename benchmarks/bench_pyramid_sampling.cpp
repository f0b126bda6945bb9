// bench_pyramid_sampling — PyramidSampling (sizes {1, 3, 6, 8}, S = 110) on an ANL-like input,
// N = 8, C = 256, 128 x 128: segkit's one-read kernel against the naive composition of segkit's
// own ops (one adaptive_avg_pool2d per size + a copy into the concatenation) and against
// PyTorch (four F.adaptive_avg_pool2d + flatten + cat), all measured in the same run.
// Memory-bound: reported as GB/s of compulsory traffic and as a fraction of the copy bandwidth
// measured here. Goal (CPU): forward >= 3x faster than PyTorch's four calls + cat.
// GPU (built with SEGKIT_WITH_CUDA, on a machine with a device): forward and forward+backward
// timed with CUDA events, the L2 flushed before each call (median of 20), against a 256 MiB
// device-to-device copy timed the same way; GPU goal: forward >= 80% of it.
#include <cstdio>
#include <random>
#include <string>

#include "bench_common.hpp"
#include "segkit/ops/pooling.hpp"
#include "segkit/ops/pyramid_sampling.hpp"

namespace {

using segkit::host_tensor;
using segkit::shape;
constexpr int64_t N = 8, C = 256, H = 128, W = 128;
const segkit::ops::pyramid_sampling_params params{{1, 3, 6, 8}};
constexpr int64_t S = 110;

struct fixture {
  host_tensor<float> x{shape{N, C, H, W}}, y{shape{N, C, S}}, dy{shape{N, C, S}},
      dx{shape{N, C, H, W}};
  std::vector<host_tensor<float>> pooled, pooled_grad;
  fixture() {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> pick(-1.f, 1.f);
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = pick(rng);
    for (int64_t i = 0; i < dy.numel(); ++i) dy[i] = pick(rng);
    dx.zero();
    for (int64_t n : params.sizes) {
      pooled.emplace_back(shape{N, C, n, n});
      pooled_grad.emplace_back(shape{N, C, n, n});
    }
  }
  void naive_forward() {
    int64_t offset = 0;
    for (size_t t = 0; t < params.sizes.size(); ++t) {
      const int64_t nn = params.sizes[t] * params.sizes[t];
      segkit::ops::adaptive_avg_pool2d_forward(x, pooled[t]);
      const float* from = pooled[t].data();
      float* to = y.data();
      segkit::parallel_for(0, N * C, 256, [&](int64_t a, int64_t b) {
        for (int64_t q = a; q < b; ++q)
          for (int64_t i = 0; i < nn; ++i) to[q * S + offset + i] = from[q * nn + i];
      });
      offset += nn;
    }
  }
  void naive_backward() {
    int64_t offset = 0;
    for (size_t t = 0; t < params.sizes.size(); ++t) {
      const int64_t nn = params.sizes[t] * params.sizes[t];
      float* to = pooled_grad[t].data();
      const float* from = dy.data();
      segkit::parallel_for(0, N * C, 256, [&](int64_t a, int64_t b) {
        for (int64_t q = a; q < b; ++q)
          for (int64_t i = 0; i < nn; ++i) to[q * nn + i] = from[q * S + offset + i];
      });
      segkit::ops::adaptive_avg_pool2d_backward(pooled_grad[t], dx);
      offset += nn;
    }
  }
};

fixture& data() {
  static fixture f;
  return f;
}

void segkit_fwd(benchmark::State& state) {
  auto& f = data();
  for (auto _ : state) {
    segkit::ops::pyramid_sampling_forward(params, f.x, f.y);
    benchmark::ClobberMemory();
  }
}
void naive_fwd(benchmark::State& state) {
  auto& f = data();
  for (auto _ : state) {
    f.naive_forward();
    benchmark::ClobberMemory();
  }
}
void segkit_fwdbwd(benchmark::State& state) {
  auto& f = data();
  for (auto _ : state) {
    segkit::ops::pyramid_sampling_forward(params, f.x, f.y);
    segkit::ops::pyramid_sampling_backward(params, f.dy, f.dx);
    benchmark::ClobberMemory();
  }
}
void naive_fwdbwd(benchmark::State& state) {
  auto& f = data();
  for (auto _ : state) {
    f.naive_forward();
    f.naive_backward();
    benchmark::ClobberMemory();
  }
}

}  // namespace

int main(int argc, char** argv) {
  const double copy_gbps = segkit::bench::measure_copy_gbps();
  std::printf("copy bandwidth (read + write, best of 5, 256 MiB): %.1f GB/s\n", copy_gbps);
  for (auto [name, fn] : {std::pair{"segkit_fwd", segkit_fwd}, std::pair{"naive_fwd", naive_fwd},
                          std::pair{"segkit_fwdbwd", segkit_fwdbwd},
                          std::pair{"naive_fwdbwd", naive_fwdbwd}})
    benchmark::RegisterBenchmark(name, fn)->UseRealTime()->Unit(benchmark::kMillisecond)
        ->MinTime(0.5)->Repetitions(3);
  benchmark::Initialize(&argc, argv);
  segkit::bench::recording_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  const std::string args = std::to_string(N) + " " + std::to_string(C) + " " + std::to_string(H) +
                           " " + std::to_string(W) + " 1,3,6,8 ";
  const auto torch_fwd = segkit::bench::run_torch("pyramid_sampling", args + "fwd");
  const auto torch_fwdbwd = segkit::bench::run_torch("pyramid_sampling", args + "fwdbwd");
  // Compulsory traffic: forward reads x and writes y; backward reads dy, reads and writes dx.
  const double x_bytes = 4.0 * N * C * H * W, y_bytes = 4.0 * N * C * S;
  const double fwd_bytes = x_bytes + y_bytes, fwdbwd_bytes = fwd_bytes + y_bytes + 2 * x_bytes;
  std::printf("\nSummary: N=%ld C=%ld %ldx%ld sizes {1,3,6,8} (S=110), threads = %d (torch too)\n",
              long(N), long(C), long(H), long(W), segkit::num_threads());
  std::printf("%-8s %10s %9s %8s %10s %9s %10s %9s\n", "pass", "segkit ms", "GB/s", "% copy",
              "naive ms", "x naive", "torch ms", "x torch");
  auto row = [&](const char* pass, const char* ours, const char* naive, double bytes,
                 const std::optional<segkit::bench::torch_result>& torch) {
    const double ms = reporter.ms(ours), naive_ms = reporter.ms(naive);
    if (ms <= 0) {  // filtered out with --benchmark_filter
      std::printf("%-8s %10s\n", pass, "not run");
      return 0.0;
    }
    const double gbps = bytes / ms * 1e-6;
    std::printf("%-8s %10.2f %9.1f %7.1f%% %10.2f %8.2fx", pass, ms, gbps, 100 * gbps / copy_gbps,
                naive_ms, naive_ms / ms);
    if (torch)
      std::printf(" %10.2f %8.2fx\n", torch->median_ms, torch->median_ms / ms);
    else
      std::printf(" %10s %9s\n", "n/a", "n/a");
    return torch ? torch->median_ms / ms : 0.0;
  };
  const double speedup = row("fwd", "segkit_fwd", "naive_fwd", fwd_bytes, torch_fwd);
  row("fwd+bwd", "segkit_fwdbwd", "naive_fwdbwd", fwdbwd_bytes, torch_fwdbwd);
  if (torch_fwd) std::printf("torch: %s\n", torch_fwd->line.c_str());
  std::printf("goal (forward >= 3x faster than PyTorch's four adaptive_avg_pool2d + cat): %s\n",
              !torch_fwd || speedup == 0 ? "NOT MEASURED"
              : speedup >= 3.0           ? "MET"
                                         : "NOT MET");
#ifdef SEGKIT_WITH_CUDA
  std::printf("\n");
  if (!segkit::bench::gpu_available()) return 0;
  const double gpu_copy = segkit::bench::gpu_copy_gbps();
  auto& f = data();
  using segkit::cuda;
  const auto x = segkit::to<cuda>(f.x), dy = segkit::to<cuda>(f.dy);
  auto dx = segkit::to<cuda>(f.dx);
  segkit::tensor<float, cuda> y(f.y.shape());
  const double fwd_ms =
      segkit::bench::gpu_median_ms([&] { segkit::ops::pyramid_sampling_forward(params, x, y); });
  const double fwdbwd_ms = segkit::bench::gpu_median_ms([&] {
    segkit::ops::pyramid_sampling_forward(params, x, y);
    segkit::ops::pyramid_sampling_backward(params, dy, dx);
  });
  std::printf("GPU (CUDA events, L2 flushed, median of 20): device copy %.1f GB/s\n", gpu_copy);
  std::printf("%-8s %10s %9s %8s\n", "pass", "ms", "GB/s", "% copy");
  const double fwd_percent = 100.0 * fwd_bytes / fwd_ms * 1e-6 / gpu_copy;
  std::printf("%-8s %10.3f %9.1f %7.1f%%\n", "fwd", fwd_ms, fwd_bytes / fwd_ms * 1e-6, fwd_percent);
  std::printf("%-8s %10.3f %9.1f %7.1f%%\n", "fwd+bwd", fwdbwd_ms, fwdbwd_bytes / fwdbwd_ms * 1e-6,
              100.0 * fwdbwd_bytes / fwdbwd_ms * 1e-6 / gpu_copy);
  std::printf("GPU goal (forward >= 80%% of the device copy): %s\n",
              fwd_percent >= 80.0 ? "MET" : "NOT MET");
#endif
  return 0;
}
