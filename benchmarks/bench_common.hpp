// benchmarks/bench_common.hpp — what every segkit benchmark reports its timings against:
//   * the machine's FP32 peak: vector width (as compiled) x FMA issue rate x clock (both
//     measured) x threads;
//   * a measured copy bandwidth, for memory-bound kernels;
//   * on a GPU (SEGKIT_WITH_CUDA): a device copy and a cuBLAS SGEMM rate measured in the run,
//     and CUDA-event timing with the L2 flushed;
//   * a PyTorch baseline timed in the same run (benchmarks/torch_baseline.py via popen);
//   * a reporter that records Google Benchmark's timings so main() can print a summary.
// What is measured is printed. The FMA issue rate is measured, not assumed: Intel's server
// cores issue two 512-bit FMAs a cycle, AMD's Zen 4 one (two 256-bit halves), and assuming
// either would put the other's % of peak off by 2x.
#pragma once
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"

#ifdef SEGKIT_WITH_CUDA
#include <cuda_runtime.h>

#include "segkit/ops/matmul.hpp"
#endif

namespace segkit::bench {

struct machine_peak {
  int vector_floats = 1;  // floats per SIMD register used by FMA
  int fma_units = 1;      // full-width FMAs issued per cycle per thread (measured, rounded)
  double mhz = 0;         // measured sustained clock
  int cores = 1;          // segkit::num_threads()
  double gflops() const { return 2.0 * vector_floats * fma_units * mhz * 1e-3 * cores; }
};

// A chain of dependent register-register adds retires one per cycle, so adds per second is
// the clock. (Adds of an immediate would not do: recent Intel cores fold chains of them at
// rename and run them faster than one per cycle.) With `wide`, the chain is AVX-512 vpaddd
// (also 1-cycle latency): Intel cores lower their clock while 512-bit instructions run, and
// that lower clock is the one an AVX-512 FMA kernel gets.
inline double measure_mhz_one_thread(bool wide) {
  // Many short attempts, keeping the fastest: on a shared machine some are preempted.
  constexpr int64_t iterations = 2'000'000;
  double best = 0;
  for (int attempt = 0; attempt < 40; ++attempt) {
    uint64_t value = 0, one = 1;
    asm volatile("" : "+r"(one));
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iterations; ++i) {
#if defined(__x86_64__) && defined(__AVX512F__)
      if (wide) {
        asm volatile(
            "vpaddd %%zmm1, %%zmm0, %%zmm0\n\tvpaddd %%zmm1, %%zmm0, %%zmm0\n\t"
            "vpaddd %%zmm1, %%zmm0, %%zmm0\n\tvpaddd %%zmm1, %%zmm0, %%zmm0\n\t"
            "vpaddd %%zmm1, %%zmm0, %%zmm0\n\tvpaddd %%zmm1, %%zmm0, %%zmm0\n\t"
            "vpaddd %%zmm1, %%zmm0, %%zmm0\n\tvpaddd %%zmm1, %%zmm0, %%zmm0\n\t"
            "vpaddd %%zmm1, %%zmm0, %%zmm0\n\tvpaddd %%zmm1, %%zmm0, %%zmm0\n\t" ::
                : "xmm0", "xmm1");
        continue;
      }
#endif
      (void)wide;
#if defined(__x86_64__)
      asm volatile(
          "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
          "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
          : "+r"(value)
          : "r"(one));
#else
      value += 10;
      asm volatile("" : "+r"(value));
#endif
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, 10.0 * double(iterations) / seconds * 1e-6);
  }
  return best;
}

// measure() run on every thread at once; the slowest thread's figure.
template <class Measure>
double slowest_thread(const Measure& measure) {
  const int threads = num_threads();
  std::vector<double> per_thread(static_cast<size_t>(threads), 0.0);
  parallel_for(0, threads, 1, [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) per_thread[size_t(t)] = measure();
  });
  return *std::min_element(per_thread.begin(), per_thread.end());
}

// The clock every thread holds while all of them run the chain at once (the slowest one):
// what a multi-threaded kernel gets, not one core's turbo.
inline double measure_mhz(bool wide) {
  return slowest_thread([wide] { return measure_mhz_one_thread(wide); });
}

// Full-width FMAs one thread issues per cycle while every thread runs them at once (two
// threads may share a core's FMA pipes): 12 independent vfmadd231ps chains, enough to cover a
// 4-cycle latency on two pipes, timed against the clock `mhz` measured the same way. Each asm
// block zeroes its registers first (zeros, not whatever the registers held: a denormal could
// slow an FMA down), then issues 4 x 12 FMAs.
// clang-format off
#define SEGKIT_ZERO(n) "vpxor %%xmm" #n ", %%xmm" #n ", %%xmm" #n "\n\t"
#define SEGKIT_FMA(r, n) "vfmadd231ps %%" r "12, %%" r "13, %%" r #n "\n\t"
#define SEGKIT_FMA12(r)                                                                    \
  SEGKIT_FMA(r, 0) SEGKIT_FMA(r, 1) SEGKIT_FMA(r, 2) SEGKIT_FMA(r, 3) SEGKIT_FMA(r, 4)     \
  SEGKIT_FMA(r, 5) SEGKIT_FMA(r, 6) SEGKIT_FMA(r, 7) SEGKIT_FMA(r, 8) SEGKIT_FMA(r, 9)     \
  SEGKIT_FMA(r, 10) SEGKIT_FMA(r, 11)
// (A VEX-encoded vpxor of an xmm register zeroes the whole zmm.)
#define SEGKIT_FMA_BLOCK(r)                                                                \
  asm volatile(SEGKIT_ZERO(0) SEGKIT_ZERO(1) SEGKIT_ZERO(2) SEGKIT_ZERO(3) SEGKIT_ZERO(4)  \
               SEGKIT_ZERO(5) SEGKIT_ZERO(6) SEGKIT_ZERO(7) SEGKIT_ZERO(8) SEGKIT_ZERO(9)  \
               SEGKIT_ZERO(10) SEGKIT_ZERO(11) SEGKIT_ZERO(12) SEGKIT_ZERO(13)             \
               SEGKIT_FMA12(r) SEGKIT_FMA12(r) SEGKIT_FMA12(r) SEGKIT_FMA12(r)             \
               ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", \
                   "xmm9", "xmm10", "xmm11", "xmm12", "xmm13")
// clang-format on
inline double measure_fma_per_cycle(int vector_floats, double mhz) {
  const auto one_thread = [vector_floats, mhz] {
    constexpr int64_t blocks = 250'000;  // 48 FMAs each
    double best = 0;
    for (int attempt = 0; attempt < 20; ++attempt) {
      const auto start = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < blocks; ++i) {
#if defined(__x86_64__) && defined(__AVX512F__)
        if (vector_floats == 16) {
          SEGKIT_FMA_BLOCK("zmm");
          continue;
        }
#endif
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
        SEGKIT_FMA_BLOCK("ymm");
#else
        (void)vector_floats;
        return 1.0;  // no FMA in this build (detect_peak does not ask then)
#endif
      }
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      best = std::max(best, 48.0 * double(blocks) / seconds * 1e-6 / mhz);
    }
    return best;
  };
  return slowest_thread(one_thread);
}
#undef SEGKIT_FMA_BLOCK
#undef SEGKIT_FMA12
#undef SEGKIT_FMA
#undef SEGKIT_ZERO

inline machine_peak detect_peak(bool print = true) {
  machine_peak peak;
  bool measured = false;  // an FMA width this build has and the CPU runs
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  peak.vector_floats = 4;  // SSE: a multiply and an add a cycle, counted as one FMA
#if defined(__AVX2__) && defined(__FMA__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    peak.vector_floats = 8;
    measured = true;
  }
#endif
#if defined(__AVX512F__)
  if (__builtin_cpu_supports("avx512f")) peak.vector_floats = 16;
#endif
#endif
  const bool wide = peak.vector_floats == 16;
  peak.mhz = measure_mhz(wide);
  peak.cores = num_threads();
  const double fma_rate = measured ? measure_fma_per_cycle(peak.vector_floats, peak.mhz) : 1.0;
  peak.fma_units = std::max(1, static_cast<int>(fma_rate + 0.5));
  if (print) {
    char rate[64] = "assumed: no FMA in this build";
    if (measured)
      std::snprintf(rate, sizeof rate, "measured %.2f on all threads at once", fma_rate);
    std::printf(
        "machine: %d threads, %d floats/vector (as compiled), %d FMA/cycle/thread (%s), clock "
        "%.0f MHz measured on all threads at once%s (one thread, scalar: %.0f MHz) -> FP32 peak "
        "%.1f GFLOP/s\n",
        peak.cores, peak.vector_floats, peak.fma_units, rate, peak.mhz,
        wide ? " under AVX-512" : "", measure_mhz_one_thread(false), peak.gflops());
  }
  return peak;
}

// target[0, bytes) = source[0, bytes), one memcpy per thread over an equal share.
inline void parallel_copy(const char* source, char* target, size_t bytes) {
  const int64_t threads = num_threads();
  parallel_for(0, threads, 1, [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      const size_t begin = bytes * size_t(t) / size_t(threads);
      const size_t end = bytes * size_t(t + 1) / size_t(threads);
      std::memcpy(target + begin, source + begin, end - begin);
    }
  });
}

// Best-of-5 copy of a 256 MiB buffer; bytes read + bytes written per second, in GB/s.
inline double measure_copy_gbps(size_t bytes = size_t(256) << 20) {
  std::vector<char> source(bytes, 1), target(bytes, 0);
  double best = 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    const auto start = std::chrono::steady_clock::now();
    parallel_copy(source.data(), target.data(), bytes);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, 2.0 * double(bytes) / seconds * 1e-9);
  }
  benchmark::DoNotOptimize(target.data());
  return best;
}

// ---- the PyTorch baseline ------------------------------------------------------------------
// The interpreter: $SEGKIT_PYTHON, else the first of python3 and /usr/bin/python3 that can
// import torch (a pyenv or venv python3 first on PATH often cannot see Debian's python3-torch).
inline const std::string& torch_python() {
  static const std::string chosen = [] {
    if (const char* env = std::getenv("SEGKIT_PYTHON")) return std::string(env);
    for (const char* candidate : {"python3", "/usr/bin/python3"}) {
      const std::string probe = std::string(candidate) + " -c 'import torch' >/dev/null 2>&1";
      if (std::system(probe.c_str()) == 0) return std::string(candidate);
    }
    return std::string();
  }();
  return chosen;
}

struct torch_result {
  double median_ms = 0;
  std::string line;  // the JSON line, for the record
};

inline double json_number(const std::string& line, const std::string& key) {
  const auto at = line.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::strtod(line.c_str() + at + key.size() + 3, nullptr);
}

// Runs torch_baseline.py <op> <args...> with torch threads = segkit::num_threads(); nullopt
// (after printing why, once) when PyTorch is unavailable or the script fails.
inline std::optional<torch_result> run_torch(const std::string& op, const std::string& args) {
  static bool warned = false;
  if (torch_python().empty()) {
    if (!warned)
      std::printf("PyTorch baseline: SKIPPED, python3-torch is not importable from python3 or "
                  "/usr/bin/python3 (install with: apt-get install python3-torch, or set "
                  "SEGKIT_PYTHON)\n");
    warned = true;
    return std::nullopt;
  }
  const std::string command = torch_python() + " " SEGKIT_BENCHMARK_DIR "/torch_baseline.py " +
                              op + " " + args + " --threads " + std::to_string(num_threads());
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return std::nullopt;
  std::string output;
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, pipe)) output += buffer;
  const int status = pclose(pipe);
  torch_result result;
  const auto brace = output.rfind('{');
  if (status != 0 || brace == std::string::npos) {
    std::printf("PyTorch baseline failed (%s): %s\n", command.c_str(), output.c_str());
    return std::nullopt;
  }
  result.line = output.substr(brace);
  while (!result.line.empty() && (result.line.back() == '\n' || result.line.back() == '\r'))
    result.line.pop_back();
  result.median_ms = json_number(result.line, "median_ms");
  if (result.median_ms <= 0) return std::nullopt;
  return result;
}

// ---- recording Google Benchmark's results ----------------------------------------------------
class recording_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    benchmark::ConsoleReporter::ReportRuns(runs);
    for (const auto& run : runs) {
      if (run.error_occurred || run.run_type != Run::RT_Iteration) continue;
      const double ms =
          run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit) * 1e3;
      auto& best = milliseconds_[run.run_name.function_name];
      best = best == 0 ? ms : std::min(best, ms);
    }
  }
  // The per-iteration real time of the benchmark registered as `name`, in ms (0 if absent).
  double ms(const std::string& name) const {
    const auto found = milliseconds_.find(name);
    return found == milliseconds_.end() ? 0 : found->second;
  }

 private:
  std::map<std::string, double> milliseconds_;
};

#ifdef SEGKIT_WITH_CUDA
// Whether a CUDA device can run here. If not, says why (no device, or a driver older than the
// runtime), so that a benchmark built with CUDA still runs and reports its CPU part.
inline bool gpu_available() {
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status == cudaSuccess && devices > 0) {
    int device = 0;
    cudaDeviceProp properties{};
    cudaGetDevice(&device);
    cudaGetDeviceProperties(&properties, device);
    std::printf("GPU: %s, %d SMs, %.1f GiB\n", properties.name, properties.multiProcessorCount,
                double(properties.totalGlobalMem) / (1 << 30));
    return true;
  }
  std::printf("GPU: skipped (%s)\n",
              status == cudaSuccess ? "no CUDA device" : cudaGetErrorString(status));
  return false;
}

// Median GPU time of run() in ms: a few warm-up calls, then CUDA events around each call,
// with a 256 MiB memset before each one so the L2 cache holds nothing of the previous call.
template <class Run>
double gpu_median_ms(const Run& run, int warmup = 3, int repeats = 20) {
  tensor<float, cuda> flush({int64_t(64) << 20});
  for (int i = 0; i < warmup; ++i) run();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<float> times;
  for (int i = 0; i < repeats; ++i) {
    cudaMemsetAsync(flush.data(), i, flush.bytes());
    cudaEventRecord(start);
    run();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// The GPU's limit for a memory-bound kernel, measured as the CPU copy is: a 256 MiB
// device-to-device copy (read + write bytes), timed like the kernels (gpu_median_ms).
inline double gpu_copy_gbps() {
  const int64_t floats = int64_t(64) << 20;
  tensor<float, cuda> source({floats}), target({floats});
  const double ms = gpu_median_ms([&] {
    cudaMemcpyAsync(target.data(), source.data(), source.bytes(), cudaMemcpyDeviceToDevice);
  });
  return 2.0 * double(source.bytes()) / ms * 1e-6;
}

// The GPU's limit for a compute-bound FP32 kernel, measured: cuBLAS SGEMM (ops::gemm on cuda,
// FP32 math, no TF32) on 4096^3, timed like the kernels.
inline double gpu_sgemm_gflops() {
  const int64_t n = 4096;
  tensor<float, cpu> values({n, n});
  for (int64_t i = 0; i < values.numel(); ++i) values[i] = float(i % 1021) / 1021.f - 0.5f;
  const auto a = to<cuda>(values), b = to<cuda>(values);  // not zeros: zeros draw less power
  tensor<float, cuda> c({n, n});
  const double ms = gpu_median_ms([&] {
    ops::gemm(cuda{}, false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  });
  return 2.0 * double(n) * double(n) * double(n) / ms * 1e-6;
}

// The two limits a GPU kernel is set against, measured in the same run.
struct gpu_limits {
  double copy_gbps = 0, sgemm_gflops = 0;
  // The time the slower limit needs for `bytes` and `flops`, in ms: the roofline's time.
  double roofline_ms(double bytes, double flops) const {
    return std::max(bytes / copy_gbps, flops / sgemm_gflops) * 1e-6;
  }
};

// Measures and prints both limits.
inline gpu_limits measure_gpu_limits() {
  const gpu_limits limits{gpu_copy_gbps(), gpu_sgemm_gflops()};
  std::printf(
      "GPU limits measured now (CUDA events, L2 flushed, median of 20): device copy "
      "%.1f GB/s, cuBLAS SGEMM 4096^3 %.0f GFLOP/s\n",
      limits.copy_gbps, limits.sgemm_gflops);
  return limits;
}
#endif

}  // namespace segkit::bench
