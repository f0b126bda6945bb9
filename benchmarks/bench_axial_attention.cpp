// bench_axial_attention — HFGD's axial attention (ops::axial_attention: column pass, then row
// pass on its result) at the shape, 128 x 256 pixels, 256 channels, 4 heads, batch 1,
// against the machine's FP32 peak, the naive composition of segkit's own ops (permute,
// matmul, scale, softmax, matmul, twice, with every map materialised; backward through
// matmul_backward, softmax_backward, permute_backward) and PyTorch CPU's einsum + softmax
// written the way a PyTorch user writes it, measured in the same run.
// FLOPs counted: forward 4 N C H W (H + W) (QK^T and AV of both passes); forward+backward 3x
// that (the customary count: the backward's recompute of QK^T is not credited).
// Debian's python3-torch runs matmul on reference BLAS (no MKL/OpenBLAS), so the PyTorch
// baseline is slow here; the ratio against the naive composition is the fairer measure.
// GPU: under SEGKIT_WITH_CUDA the same shapes are timed with CUDA events after warm-up, with
// the L2 flushed before each timed run, against a device copy and cuBLAS SGEMM measured in the
// same run (% of each, and of the slower of the two: the roofline).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "bench_common.hpp"
#include "segkit/ops/axial_attention.hpp"
#include "segkit/ops/elementwise.hpp"
#include "segkit/ops/matmul.hpp"
#include "segkit/ops/permute.hpp"
#include "segkit/ops/softmax.hpp"

namespace {

using namespace segkit;

struct axial_shape {
  const char* name;
  int64_t n, c, h, w;
  int heads;
  bool backward;
  double flops() const { return (backward ? 3.0 : 1.0) * 4.0 * n * c * h * w * double(h + w); }
  shape extent() const { return shape{n, c, h, w}; }
  // Compulsory traffic: forward reads q, k, v and writes the output, the column pass's result
  // (mid) and the softmax stats; backward reads q, k, v, mid, stats and the output gradient,
  // and reads and writes dq, dk, dv (it adds).
  double bytes() const {
    const double map = 4.0 * n * c * h * w;
    const double stats = 4.0 * double(ops::axial_attention_stats_shape(extent(), {heads}).numel());
    const double forward = 5 * map + stats;
    return backward ? forward + 6 * map + stats + 6 * map : forward;
  }
};

const axial_shape shapes[] = {
    {"hfgd_fwd", 1, 256, 128, 256, 4, false},
    {"hfgd_fwdbwd", 1, 256, 128, 256, 4, true},
};

struct problem {
  host_tensor<float> q, k, v, out, mid, stats, d_out, dq, dk, dv;
  ops::axial_attention_params params;
  explicit problem(const axial_shape& s)
      : q(s.extent()), k(s.extent()), v(s.extent()), out(s.extent()), mid(s.extent()),
        stats(ops::axial_attention_stats_shape(s.extent(), {s.heads})), d_out(s.extent()),
        dq(s.extent()), dk(s.extent()), dv(s.extent()), params{s.heads} {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> pick(-1.f, 1.f);
    for (auto* t : {&q, &k, &v, &d_out})
      for (int64_t i = 0; i < t->numel(); ++i) (*t)[i] = pick(rng);
    dq.zero(), dk.zero(), dv.zero();
  }
};

void bench_fused(benchmark::State& state, axial_shape s) {
  problem p(s);
  for (auto _ : state) {
    ops::axial_attention_forward(p.params, p.q, p.k, p.v, p.out, p.mid, p.stats);
    if (s.backward)
      ops::axial_attention_backward(p.params, p.q, p.k, p.v, p.mid, p.stats, p.d_out, &p.dq,
                                    &p.dk, &p.dv);
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(s.flops(), benchmark::Counter::kIsIterationInvariantRate);
}

// One pass of the naive composition, with its intermediates kept for backward.
struct naive_pass {
  ops::permute_params to_lines;
  shape head_view, lines, batched;
  float scale;
  host_tensor<float> lq, lk, lv, scores, probs, y_lines, dprobs, dscores, dlq, dlk, dlv, dy_lines;

  naive_pass(const axial_shape& s, std::vector<int> axes)
      : to_lines{std::move(axes)}, head_view{s.n, s.heads, s.c / s.heads, s.h, s.w},
        scale(1.f / std::sqrt(float(s.c / s.heads))) {
    lines = ops::permute_output_shape(head_view, to_lines);
    batched = shape{lines[0] * lines[1] * lines[2], lines[3], lines[4]};
    for (auto* t : {&lq, &lk, &lv, &y_lines, &dlq, &dlk, &dlv, &dy_lines}) *t = host_tensor<float>(batched);
    for (auto* t : {&scores, &probs, &dprobs, &dscores})
      *t = host_tensor<float>({batched[0], batched[1], batched[1]});
  }
  void forward(const host_tensor<float>& q, const host_tensor<float>& k,
               const host_tensor<float>& v, host_tensor<float>& y) {
    for (auto [x, l] : {std::pair{&q, &lq}, std::pair{&k, &lk}, std::pair{&v, &lv}}) {
      auto view = l->view(lines);
      ops::permute(to_lines, x->view(head_view), view);
    }
    ops::matmul_forward({false, true}, lq, lk, scores);
    ops::scale(scores, scale, scores);
    ops::softmax_forward({-1}, scores, probs);
    ops::matmul_forward({}, probs, lv, y_lines);
    auto back = y.view(head_view);
    ops::permute(ops::inverse_permutation(head_view, to_lines), y_lines.view(lines), back);
  }
  void backward(const host_tensor<float>& dy, host_tensor<float>& dq, host_tensor<float>& dk,
                host_tensor<float>& dv) {
    auto dyl = dy_lines.view(lines);
    ops::permute(to_lines, dy.view(head_view), dyl);
    for (auto* t : {&dprobs, &dscores, &dlq, &dlk, &dlv}) t->zero();
    ops::matmul_backward({}, probs, lv, dy_lines, &dprobs, &dlv);
    ops::softmax_backward({-1}, probs, dprobs, dscores);
    ops::scale(dscores, scale, dscores);
    ops::matmul_backward({false, true}, lq, lk, dscores, &dlq, &dlk);
    for (auto [l, d] : {std::pair{&dlq, &dq}, std::pair{&dlk, &dk}, std::pair{&dlv, &dv}}) {
      auto view = d->view(head_view);
      ops::permute_backward(to_lines, l->view(lines), view);
    }
  }
};

void bench_naive(benchmark::State& state, axial_shape s) {
  problem p(s);
  naive_pass column(s, {0, 1, 4, 3, 2}), row(s, {0, 1, 3, 4, 2});
  host_tensor<float> y1(s.extent()), dy1(s.extent());
  for (auto _ : state) {
    column.forward(p.q, p.k, p.v, y1);
    row.forward(p.q, p.k, y1, p.out);
    if (s.backward) {
      dy1.zero();
      row.backward(p.d_out, p.dq, p.dk, dy1);
      column.backward(dy1, p.dq, p.dk, p.dv);
    }
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(s.flops(), benchmark::Counter::kIsIterationInvariantRate);
}

#ifdef SEGKIT_WITH_CUDA
// Median of 20 event-timed runs after 3 warm-ups; a 256 MiB buffer is overwritten before each
// run so the inputs are not served from the 50 MiB L2.
double gpu_ms(const axial_shape& s) {
  problem p(s);
  auto q = to<cuda>(p.q), k = to<cuda>(p.k), v = to<cuda>(p.v), d_out = to<cuda>(p.d_out);
  auto dq = to<cuda>(p.dq), dk = to<cuda>(p.dk), dv = to<cuda>(p.dv);
  tensor<float, cuda> out(p.out.shape()), mid(p.mid.shape()), stats(p.stats.shape());
  auto run = [&] {
    ops::axial_attention_forward(p.params, q, k, v, out, mid, stats);
    if (s.backward)
      ops::axial_attention_backward(p.params, q, k, v, mid, stats, d_out, &dq, &dk, &dv);
  };
  return segkit::bench::gpu_median_ms(run);
}
#endif

std::string naive_name(const axial_shape& s) { return std::string("naive_") + s.name; }

}  // namespace

int main(int argc, char** argv) {
  const auto peak = segkit::bench::detect_peak();
  for (const auto& s : shapes) {
    benchmark::RegisterBenchmark(s.name, bench_fused, s)
        ->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(1.0)->Repetitions(3);
    benchmark::RegisterBenchmark(naive_name(s).c_str(), bench_naive, s)
        ->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(1.0)->Repetitions(3);
  }
  benchmark::Initialize(&argc, argv);
  segkit::bench::recording_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::printf("\nSummary (best of the repetitions; segkit threads = torch threads = %d)\n",
              segkit::num_threads());
  std::printf("%-12s %-20s %9s %8s %7s %9s %8s %9s %8s\n", "case", "N,C,H,W,heads", "op ms",
              "GFLOP/s", "% peak", "naive ms", "vs naive", "torch ms", "vs torch");
#ifdef SEGKIT_WITH_CUDA
  const bool gpu_ready = segkit::bench::gpu_available();
  const auto limits = gpu_ready ? segkit::bench::measure_gpu_limits() : segkit::bench::gpu_limits{};
#endif
  for (const auto& s : shapes) {
    const double ms = reporter.ms(s.name), naive = reporter.ms(naive_name(s));
    if (ms <= 0) continue;
    const double gflops = s.flops() / ms * 1e-6;
    char dims[64];
    std::snprintf(dims, sizeof dims, "%ld,%ld,%ld,%ld,%d", long(s.n), long(s.c), long(s.h),
                  long(s.w), s.heads);
    const auto torch = segkit::bench::run_torch(
        "axial_attention", std::to_string(s.n) + " " + std::to_string(s.c) + " " +
                               std::to_string(s.h) + " " + std::to_string(s.w) + " " +
                               std::to_string(s.heads) + (s.backward ? " fwdbwd" : " fwd"));
    std::printf("%-12s %-20s %9.1f %8.1f %6.1f%% %9.1f %7.2fx %9.1f %7.2fx\n", s.name, dims, ms,
                gflops, 100.0 * gflops / peak.gflops(), naive, naive > 0 ? naive / ms : 0.0,
                torch ? torch->median_ms : 0.0, torch ? torch->median_ms / ms : 0.0);
#ifdef SEGKIT_WITH_CUDA
    if (!gpu_ready) continue;
    const double gms = gpu_ms(s), gpu_gflops = s.flops() / gms * 1e-6;
    const double gpu_gbps = s.bytes() / gms * 1e-6;
    // The slower of the two limits is the roofline's time for this shape.
    const double limit_ms = limits.roofline_ms(s.bytes(), s.flops());
    std::printf(
        "%-12s GPU: %.3f ms, %.0f GFLOP/s (%.1f%% of SGEMM), %.0f GB/s (%.1f%% of copy), "
        "%.1f%% of the roofline\n",
        s.name, gms, gpu_gflops, 100 * gpu_gflops / limits.sgemm_gflops, gpu_gbps,
        100 * gpu_gbps / limits.copy_gbps, 100 * limit_ms / gms);
#endif
  }
  if (auto t = segkit::bench::run_torch("axial_attention", "1 8 6 7 4 fwd"))
    std::printf("torch: %s\n", t->line.c_str());
  std::printf("note: Debian's python3-torch runs matmul on reference BLAS (no MKL/OpenBLAS), so "
              "the PyTorch baseline's matmuls are slow on this machine.\n");
  return 0;
}
