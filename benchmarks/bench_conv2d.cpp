// bench_conv2d — segkit's CPU conv2d (im2col + packed GEMM; direct GEMM for 1x1; direct loop
// for depthwise) on ResNet/MobileNet-like layers at batch 8, forward and forward+backward
// (dx and dw), against PyTorch's F.conv2d (oneDNN where available) measured in the same run.
// Goal: segkit's forward+backward time <= 1.25x PyTorch's.
#include <cstdio>
#include <random>
#include <string>

#include "bench_common.hpp"
#include "segkit/ops/conv2d.hpp"

namespace {

struct layer {
  const char* name;
  int64_t n, c, h, w, co, k, stride, pad, groups;
  segkit::ops::conv2d_params params() const {
    segkit::ops::conv2d_params p;
    p.stride_h = p.stride_w = stride;
    p.pad_h = p.pad_w = pad;
    p.groups = groups;
    return p;
  }
  segkit::shape x_shape() const { return {n, c, h, w}; }
  segkit::shape w_shape() const { return {co, c / groups, k, k}; }
  double forward_flops() const {
    const auto y = segkit::ops::conv2d_output_shape(params(), x_shape(), w_shape());
    return 2.0 * double(y.numel()) * double(c / groups) * double(k * k);
  }
  std::string torch_args(const char* mode) const {
    return std::to_string(n) + " " + std::to_string(c) + " " + std::to_string(h) + " " +
           std::to_string(w) + " " + std::to_string(co) + " " + std::to_string(k) + " " +
           std::to_string(k) + " " + std::to_string(stride) + " " + std::to_string(pad) + " 1 " +
           std::to_string(groups) + " " + mode;
  }
};

const layer layers[] = {
    {"conv3x3_64_56", 8, 64, 56, 56, 64, 3, 1, 1, 1},
    {"conv3x3_128_28", 8, 128, 28, 28, 128, 3, 1, 1, 1},
    {"conv3x3_256_14", 8, 256, 14, 14, 256, 3, 1, 1, 1},
    {"conv3x3_s2_128to256_28", 8, 128, 28, 28, 256, 3, 2, 1, 1},
    {"conv1x1_256to64_56", 8, 256, 56, 56, 64, 1, 1, 0, 1},
    {"depthwise3x3_128_56", 8, 128, 56, 56, 128, 3, 1, 1, 128},
};

struct buffers {
  segkit::host_tensor<float> x, w, b, y, dy, dx, dw;
  explicit buffers(const layer& l) {
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> pick(-1.f, 1.f);
    auto random = [&](const segkit::shape& s) {
      segkit::host_tensor<float> t(s);
      for (int64_t i = 0; i < t.numel(); ++i) t[i] = pick(rng);
      return t;
    };
    x = random(l.x_shape());
    w = random(l.w_shape());
    b = random({l.co});
    const auto out = segkit::ops::conv2d_output_shape(l.params(), l.x_shape(), l.w_shape());
    y = segkit::host_tensor<float>(out);
    dy = random(out);
    dx = segkit::host_tensor<float>::zeros(x.shape());
    dw = segkit::host_tensor<float>::zeros(w.shape());
  }
};

void bench_forward(benchmark::State& state, layer l) {
  buffers t(l);
  for (auto _ : state) {
    segkit::ops::conv2d_forward(l.params(), t.x, t.w, &t.b, t.y);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(l.forward_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

// What a training step runs: forward, then dx and dw (PyTorch's .backward() computes both).
void bench_forward_backward(benchmark::State& state, layer l) {
  buffers t(l);
  for (auto _ : state) {
    segkit::ops::conv2d_forward(l.params(), t.x, t.w, &t.b, t.y);
    segkit::ops::conv2d_backward(l.params(), t.x, t.w, t.dy, &t.dx, &t.dw, nullptr);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(3 * l.forward_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

int main(int argc, char** argv) {
  const auto peak = segkit::bench::detect_peak();
  for (const auto& l : layers) {
    benchmark::RegisterBenchmark((std::string(l.name) + "/fwd").c_str(), bench_forward, l)
        ->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.3);
    benchmark::RegisterBenchmark((std::string(l.name) + "/fwdbwd").c_str(), bench_forward_backward, l)
        ->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.3);
  }
  benchmark::Initialize(&argc, argv);
  segkit::bench::recording_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::printf("\nSummary, batch 8 (segkit threads = torch threads = %d; peak %.0f GFLOP/s)\n",
              segkit::num_threads(), peak.gflops());
  std::printf("%-24s %9s %9s %8s %7s %9s %9s %9s  %s\n", "layer", "fwd ms", "f+b ms", "GF/s f+b",
              "% peak", "torch fwd", "torch f+b", "f+b ratio", "goal (<= 1.25x torch)");
  int met = 0, measured = 0;
  for (const auto& l : layers) {
    const double fwd = reporter.ms(std::string(l.name) + "/fwd");
    const double both = reporter.ms(std::string(l.name) + "/fwdbwd");
    if (fwd <= 0 || both <= 0) continue;
    const double gflops = 3 * l.forward_flops() / both * 1e-6;
    const auto torch_fwd = segkit::bench::run_torch("conv2d", l.torch_args("fwd"));
    const auto torch_both = segkit::bench::run_torch("conv2d", l.torch_args("fwdbwd"));
    if (torch_fwd && torch_both) {
      const double ratio = both / torch_both->median_ms;
      ++measured;
      met += ratio <= 1.25;
      std::printf("%-24s %9.2f %9.2f %8.1f %6.1f%% %9.2f %9.2f %8.2fx  %s\n", l.name, fwd, both,
                  gflops, 100 * gflops / peak.gflops(), torch_fwd->median_ms,
                  torch_both->median_ms, ratio, ratio <= 1.25 ? "MET" : "NOT MET");
    } else {
      std::printf("%-24s %9.2f %9.2f %8.1f %6.1f%% %9s %9s %9s  %s\n", l.name, fwd, both, gflops,
                  100 * gflops / peak.gflops(), "n/a", "n/a", "n/a", "no baseline");
    }
  }
  if (auto t = segkit::bench::run_torch("conv2d", layers[0].torch_args("fwd")))
    std::printf("torch: %s\n", t->line.c_str());
  std::printf("goal (fwd+bwd <= 1.25x PyTorch): met on %d of %d layers\n", met, measured);
  return 0;
}
