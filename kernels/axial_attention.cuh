// kernels/axial_attention.cuh — CUDA path of ops/axial_attention.hpp.
// Same algorithm and layouts as the CPU: q, k, v permuted to line layouts ([N, h, W, H, c] for
// the column pass, [N, h, H, W, c] for the row pass), then per chunk of lines the scores
// S = scale q k^T and the products with V as cuBLAS strided-batched GEMMs (FP32), the row
// softmax by one warp per row running the shared math:: functions (attention_probability,
// softmax_gradient<false>), log-sum-exp saved, maps recomputed in backward.
// Chunks bound the score buffer to score_chunk_floats floats (x2 in backward).
// Not done yet (docs/kernels.md): a fused one-block-per-line kernel with the line staged in
// shared memory and WMMA/TF32 products; this path pays the L x L scores through HBM.
#pragma once
#include <algorithm>

#include "cuda_context.cuh"
#include "launch.cuh"
#include "segkit/ops/axial_attention.hpp"
#include "warp_reduce.cuh"

namespace segkit::ops {
namespace cuda_kernels {

constexpr int axial_rows_per_block = 8;  // one warp per row

// Row r of S (n scores) becomes probabilities; lse[r] gets its log-sum-exp.
__global__ void axial_softmax_rows_kernel(float* s, float* lse, int64_t rows, int64_t n) {
  const int64_t row = int64_t(blockIdx.x) * axial_rows_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  float* x = s + row * n;
  float m = -INFINITY;
  for (int64_t k = lane; k < n; k += 32) m = fmaxf(m, x[k]);
  m = cuda_detail::warp_max(m);
  float sum = 0.f;
  for (int64_t k = lane; k < n; k += 32) sum += expf(x[k] - m);
  sum = cuda_detail::warp_sum(sum);
  const float l = m + logf(sum);
  for (int64_t k = lane; k < n; k += 32) x[k] = math::attention_probability(x[k], l);
  if (lane == 0) lse[row] = l;
}

// Scores -> probabilities from the saved log-sum-exp.
__global__ void axial_probabilities_kernel(float* s, const float* lse, int64_t count, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    s[i] = math::attention_probability(s[i], lse[i / n]);
}

// dp (gradient w.r.t. the probabilities p) becomes the score gradient, one warp per row.
__global__ void axial_softmax_backward_kernel(const float* p, float* dp, int64_t rows, int64_t n) {
  const int64_t row = int64_t(blockIdx.x) * axial_rows_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float* pr = p + row * n;
  float* dr = dp + row * n;
  float total = 0.f;
  for (int64_t k = lane; k < n; k += 32) total += pr[k] * dr[k];
  total = cuda_detail::warp_sum(total);
  for (int64_t k = lane; k < n; k += 32) dr[k] = math::softmax_gradient<false>(pr[k], dr[k], total);
}

// Between the log-sum-exp planes in line order and stats[n, h, 0|1, H, W].
__global__ void axial_stats_kernel(float* col, float* row, float* stats, int64_t blocks,
                                   int64_t h, int64_t w, bool to_stats) {
  const int64_t plane = h * w;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < blocks * plane;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = e / plane, i = e % plane / w, x = e % w;
    float& s0 = stats[b * 2 * plane + i * w + x];
    float& s1 = stats[(b * 2 + 1) * plane + i * w + x];
    float& c = col[b * plane + x * h + i];
    float& r = row[b * plane + i * w + x];
    if (to_stats) {
      s0 = c;
      s1 = r;
    } else {
      c = s0;
      r = s1;
    }
  }
}

}  // namespace cuda_kernels

namespace detail {

constexpr int64_t score_chunk_floats = int64_t(1) << 25;  // 128 MiB per score buffer

inline int64_t axial_chunk(int64_t lines, int64_t len) {
  return std::max<int64_t>(1, std::min(lines, score_chunk_floats / std::max<int64_t>(1, len * len)));
}

inline unsigned axial_row_blocks(int64_t rows) {
  return static_cast<unsigned>((rows + cuda_kernels::axial_rows_per_block - 1) /
                               cuda_kernels::axial_rows_per_block);
}

inline void to_lines_cuda(const axial_geometry& g, const std::vector<int>& axes, const float* x,
                          float* lines) {
  run_permute<cuda>(head_view(g), axes, x, lines, false);
}
inline void from_lines_cuda(const axial_geometry& g, const std::vector<int>& axes,
                            const float* lines, float* x, bool accumulate) {
  const shape hv = head_view(g);
  const permute_params inverse = inverse_permutation(hv, permute_params{axes});
  run_permute<cuda>(permute_output_shape(hv, permute_params{axes}), inverse.axes, lines, x,
                    accumulate);
}

inline void attention_lines_forward_cuda(int64_t lines, int64_t len, int64_t c, float scale,
                                         const float* q, const float* k, const float* v, float* y,
                                         float* lse, float* s) {
  const int64_t block = len * c, chunk = axial_chunk(lines, len);
  for (int64_t first = 0; first < lines; first += chunk) {
    const int64_t count = std::min(chunk, lines - first), o = first * block;
    gemm_strided_batched(cuda{}, false, true, len, len, c, scale, q + o, c, block, k + o, c, block,
                         0.f, s, len, len * len, count);
    SEGKIT_LAUNCH(cuda_kernels::axial_softmax_rows_kernel, axial_row_blocks(count * len),
                  32 * cuda_kernels::axial_rows_per_block, 0, nullptr, s, lse + first * len,
                  count * len, len);
    gemm_strided_batched(cuda{}, false, false, len, c, len, 1.f, s, len, len * len, v + o, c,
                         block, 0.f, y + o, c, block, count);
  }
}

inline void attention_lines_backward_cuda(int64_t lines, int64_t len, int64_t c, float scale,
                                          const float* q, const float* k, const float* v,
                                          const float* lse, const float* dy, float* dq, float* dk,
                                          float* dv, float* p, float* dp) {
  const int64_t block = len * c, chunk = axial_chunk(lines, len), square = len * len;
  for (int64_t first = 0; first < lines; first += chunk) {
    const int64_t count = std::min(chunk, lines - first), o = first * block;
    gemm_strided_batched(cuda{}, false, true, len, len, c, scale, q + o, c, block, k + o, c, block,
                         0.f, p, len, square, count);
    SEGKIT_LAUNCH(cuda_kernels::axial_probabilities_kernel, cuda_detail::blocks_for(count * square),
                  cuda_detail::threads_per_block, 0, nullptr, p, lse + first * len, count * square,
                  len);
    gemm_strided_batched(cuda{}, true, false, len, c, len, 1.f, p, len, square, dy + o, c, block,
                         0.f, dv + o, c, block, count);
    if (!dq) continue;
    gemm_strided_batched(cuda{}, false, true, len, len, c, 1.f, dy + o, c, block, v + o, c, block,
                         0.f, dp, len, square, count);
    SEGKIT_LAUNCH(cuda_kernels::axial_softmax_backward_kernel, axial_row_blocks(count * len),
                  32 * cuda_kernels::axial_rows_per_block, 0, nullptr, p, dp, count * len, len);
    gemm_strided_batched(cuda{}, false, false, len, c, len, scale, dp, len, square, k + o, c,
                         block, 0.f, dq + o, c, block, count);
    gemm_strided_batched(cuda{}, true, false, len, c, len, scale, dp, len, square, q + o, c,
                         block, 0.f, dk + o, c, block, count);
  }
}

inline int64_t axial_cuda_score_floats(const axial_geometry& g) {
  const int64_t nh = g.n * g.heads;
  return 2 * std::max(axial_chunk(nh * g.w, g.h) * g.h * g.h, axial_chunk(nh * g.h, g.w) * g.w * g.w);
}

}  // namespace detail

void axial_attention_forward(const axial_attention_params& params, const tensor<float, cuda>& q,
                             const tensor<float, cuda>& k, const tensor<float, cuda>& v,
                             tensor<float, cuda>& out, tensor<float, cuda>& mid,
                             tensor<float, cuda>& stats, workspace<cuda>* ws) {
  const char* op = "axial_attention_forward";
  const auto g = detail::check_axial_attention(op, params, q, k, v);
  require_same_shape(op, "query", q.shape(), "output", out.shape());
  require_same_shape(op, "query", q.shape(), "mid (column result)", mid.shape());
  require_shape(op, "stats", stats.shape(), axial_attention_stats_shape(q.shape(), params));
  add_macs(detail::axial_attention_macs(g));
  if (q.numel() == 0) return;
  auto s = detail::reserve_axial_scratch(ws, g, 4, detail::axial_cuda_score_floats(g));
  float *lq = s.lines[0], *lk = s.lines[1], *lv = s.lines[2], *ly = s.lines[3];
  const int64_t nh = g.n * g.heads;
  detail::to_lines_cuda(g, detail::column_layout(), q.data(), lq);
  detail::to_lines_cuda(g, detail::column_layout(), k.data(), lk);
  detail::to_lines_cuda(g, detail::column_layout(), v.data(), lv);
  detail::attention_lines_forward_cuda(nh * g.w, g.h, g.c, g.scale, lq, lk, lv, ly, s.lse_col, s.scores);
  detail::from_lines_cuda(g, detail::column_layout(), ly, mid.data(), false);
  detail::to_lines_cuda(g, detail::row_layout(), q.data(), lq);
  detail::to_lines_cuda(g, detail::row_layout(), k.data(), lk);
  detail::to_lines_cuda(g, detail::row_layout(), mid.data(), lv);
  detail::attention_lines_forward_cuda(nh * g.h, g.w, g.c, g.scale, lq, lk, lv, ly, s.lse_row, s.scores);
  detail::from_lines_cuda(g, detail::row_layout(), ly, out.data(), false);
  SEGKIT_LAUNCH(cuda_kernels::axial_stats_kernel, cuda_detail::blocks_for(nh * g.h * g.w),
                cuda_detail::threads_per_block, 0, nullptr, s.lse_col, s.lse_row, stats.data(), nh,
                g.h, g.w, true);
}

void axial_attention_backward(const axial_attention_params& params, const tensor<float, cuda>& q,
                              const tensor<float, cuda>& k, const tensor<float, cuda>& v,
                              const tensor<float, cuda>& mid, const tensor<float, cuda>& stats,
                              const tensor<float, cuda>& dout, tensor<float, cuda>* dq,
                              tensor<float, cuda>* dk, tensor<float, cuda>* dv,
                              workspace<cuda>* ws) {
  const char* op = "axial_attention_backward";
  const auto g = detail::check_axial_attention(op, params, q, k, v);
  require_same_shape(op, "query", q.shape(), "mid (column result)", mid.shape());
  require_same_shape(op, "query", q.shape(), "output gradient", dout.shape());
  require_shape(op, "stats", stats.shape(), axial_attention_stats_shape(q.shape(), params));
  if (dq) require_same_shape(op, "query", q.shape(), "query gradient", dq->shape());
  if (dk) require_same_shape(op, "query", q.shape(), "key gradient", dk->shape());
  if (dv) require_same_shape(op, "query", q.shape(), "value gradient", dv->shape());
  const bool want_qk = dq || dk;
  if (q.numel() == 0 || (!want_qk && !dv)) return;
  const int64_t score_floats = detail::axial_cuda_score_floats(g);
  auto s = detail::reserve_axial_scratch(ws, g, 8, score_floats);
  float *lq = s.lines[0], *lk = s.lines[1], *lv = s.lines[2], *ldy = s.lines[3];
  float *ldq = s.lines[4], *ldk = s.lines[5], *ldv = s.lines[6], *dmid = s.lines[7];
  float *p = s.scores, *dp = s.scores + score_floats / 2;
  const int64_t nh = g.n * g.heads;
  SEGKIT_LAUNCH(cuda_kernels::axial_stats_kernel, cuda_detail::blocks_for(nh * g.h * g.w),
                cuda_detail::threads_per_block, 0, nullptr, s.lse_col, s.lse_row,
                stats.mutable_data(), nh, g.h, g.w, false);
  detail::to_lines_cuda(g, detail::row_layout(), q.data(), lq);
  detail::to_lines_cuda(g, detail::row_layout(), k.data(), lk);
  detail::to_lines_cuda(g, detail::row_layout(), mid.data(), lv);
  detail::to_lines_cuda(g, detail::row_layout(), dout.data(), ldy);
  detail::attention_lines_backward_cuda(nh * g.h, g.w, g.c, g.scale, lq, lk, lv, s.lse_row, ldy,
                                        want_qk ? ldq : nullptr, ldk, ldv, p, dp);
  if (dq) detail::from_lines_cuda(g, detail::row_layout(), ldq, dq->data(), true);
  if (dk) detail::from_lines_cuda(g, detail::row_layout(), ldk, dk->data(), true);
  detail::from_lines_cuda(g, detail::row_layout(), ldv, dmid, false);
  detail::to_lines_cuda(g, detail::column_layout(), q.data(), lq);
  detail::to_lines_cuda(g, detail::column_layout(), k.data(), lk);
  detail::to_lines_cuda(g, detail::column_layout(), v.data(), lv);
  detail::to_lines_cuda(g, detail::column_layout(), dmid, ldy);
  detail::attention_lines_backward_cuda(nh * g.w, g.h, g.c, g.scale, lq, lk, lv, s.lse_col, ldy,
                                        want_qk ? ldq : nullptr, ldk, ldv, p, dp);
  if (dq) detail::from_lines_cuda(g, detail::column_layout(), ldq, dq->data(), true);
  if (dk) detail::from_lines_cuda(g, detail::column_layout(), ldk, dk->data(), true);
  if (dv) detail::from_lines_cuda(g, detail::column_layout(), ldv, dv->data(), true);
}

}  // namespace segkit::ops
