// segkit/ops/axial_attention.hpp — multi-head axial attention as HFGD uses it (METHODS §2):
// column (H-axis) attention first, then row (W-axis) attention applied to its result, both
// maps computed from the same Q and K; scale 1/sqrt(C/heads); softmax in fp32; no positional
// encoding. The 1x1 projections and the residual add belong to the layer
// (nn/axial_attention_layer.hpp), not to this op.
// For each n, head (channels [h*c, (h+1)*c), c = C/heads), column w and row i:
//   A_col[i,j] = softmax_j(scale q[:,i,w].k[:,j,w]),  Y1[:,i,w]  = sum_j A_col[i,j] v[:,j,w]
//   A_row[a,b] = softmax_b(scale q[:,i,a].k[:,i,b]),  out[:,i,a] = sum_b A_row[a,b] Y1[:,i,b]
// Requires: q, k, v, out of one shape N x C x H x W (shape_error naming both shapes);
// heads >= 1 dividing C (value_error). `mid` is N x C x H x W and `stats` is
// axial_attention_stats_shape(): forward writes Y1 into mid and the per-row log-sum-exp of both
// softmaxes into stats (stats[n,h,0,i,w] for column row i at column w, stats[n,h,1,i,a] for
// row-attention row a at image row i); backward reads them and recomputes the attention maps
// (flash style) instead of keeping N*h*(W*H*H + H*W*W) floats (docs/kernels.md has the sizes).
// Guarantees: forward overwrites out, mid, stats; backward *adds* into dq, dk, dv (nullptr =
// not wanted: dv alone skips the score gradients). No allocation once the workspace is big
// enough. CPU: each line (one column or row of one head) is a few small GEMMs on contiguous
// [L, c] copies, lines spread over threads, the L x L scores in per-thread scratch.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "segkit/ops/matmul.hpp"
#include "segkit/ops/softmax.hpp"
#include "segkit/ops/permute.hpp"
#include "segkit/tensor/config.hpp"
#include "segkit/tensor/mac_counter.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"
#include "segkit/tensor/workspace.hpp"

namespace segkit::ops {

struct axial_attention_params {
  int heads = 4;
};

namespace math {

// Softmax of one row of n scores in place; returns its log-sum-exp (max + log sum exp).
SEGKIT_HOST_DEVICE float attention_softmax_row(float* s, int64_t n) {
  float m = -INFINITY, sum = 0.f;
  for (int64_t k = 0; k < n; ++k) m = fmaxf(m, s[k]);
  for (int64_t k = 0; k < n; ++k) {
    s[k] = expf(s[k] - m);
    sum += s[k];
  }
  const float inv = 1.f / sum;
  for (int64_t k = 0; k < n; ++k) s[k] *= inv;
  return m + logf(sum);
}

// One probability from its score and the row's log-sum-exp (the recomputation in backward).
SEGKIT_HOST_DEVICE float attention_probability(float score, float lse) {
  return expf(score - lse);
}

// Scores -> probabilities in place from a saved log-sum-exp.
SEGKIT_HOST_DEVICE void attention_probabilities_row(float* s, int64_t n, float lse) {
  for (int64_t k = 0; k < n; ++k) s[k] = attention_probability(s[k], lse);
}


// Softmax backward of one row: dp (gradient w.r.t. probabilities p) becomes the score
// gradient in place.
SEGKIT_HOST_DEVICE void attention_softmax_row_backward(const float* p, float* dp, int64_t n) {
  float total = 0.f;
  for (int64_t k = 0; k < n; ++k) total += p[k] * dp[k];
  for (int64_t k = 0; k < n; ++k) dp[k] = softmax_gradient<false>(p[k], dp[k], total);
}

}  // namespace math

// ---- shapes and checks ----------------------------------------------------------------------
inline shape axial_attention_output_shape(const shape& q) { return q; }
inline shape axial_attention_stats_shape(const shape& q, const axial_attention_params& params) {
  return shape{q[0], int64_t(params.heads), 2, q[2], q[3]};
}

namespace detail {

struct axial_geometry {
  int64_t n, heads, c, h, w;
  float scale;
};

template <class Device>
axial_geometry check_axial_attention(const char* op, const axial_attention_params& params,
                                     const tensor<float, Device>& q, const tensor<float, Device>& k,
                                     const tensor<float, Device>& v) {
  require<shape_error>(q.rank() == 4, op, ": query has shape ", q.shape().to_string(),
                       ", expected rank 4 N x C x H x W");
  require_same_shape(op, "query", q.shape(), "key", k.shape());
  require_same_shape(op, "query", q.shape(), "value", v.shape());
  const int64_t channels = q.size(1);
  require<value_error>(params.heads >= 1 && channels % params.heads == 0, op, ": heads=",
                       params.heads, " must be >= 1 and divide the channel count C=", channels,
                       " of query shape ", q.shape().to_string());
  axial_geometry g{q.size(0), params.heads, channels / params.heads, q.size(2), q.size(3), 0.f};
  g.scale = 1.f / std::sqrt(float(g.c));
  return g;
}

// Multiply-adds of one forward (mac_counter.hpp): scores and values of the column pass
// (N C W H^2) and of the row pass (N C H W^2), 2 N C H W (H + W).
inline int64_t axial_attention_macs(const axial_geometry& g) {
  return 2 * g.n * g.heads * g.c * g.h * g.w * (g.h + g.w);
}

// Permutations between N x C x H x W viewed as [N, h, c, H, W] and the line layouts.
inline const std::vector<int>& column_layout() {  // -> [N, h, W, H, c]
  static const std::vector<int> axes{0, 1, 4, 3, 2};
  return axes;
}
inline const std::vector<int>& row_layout() {  // -> [N, h, H, W, c]
  static const std::vector<int> axes{0, 1, 3, 4, 2};
  return axes;
}
inline shape head_view(const axial_geometry& g) { return shape{g.n, g.heads, g.c, g.h, g.w}; }

// Scratch: `count` (<= 8) line buffers of N*C*H*W floats, the two log-sum-exp planes in line
// order, then per-thread score blocks (2 x L*L each).
struct axial_scratch {
  float* lines[8] = {};
  float* lse_col = nullptr;  // [N*h, W, H]
  float* lse_row = nullptr;  // [N*h, H, W]
  float* scores = nullptr;
};

inline int64_t axial_score_floats(const axial_geometry& g) {
  const int64_t longest = std::max(g.h, g.w);
  return int64_t(num_threads()) * 2 * longest * longest;
}

template <class Device>
axial_scratch reserve_axial_scratch(workspace<Device>* ws, const axial_geometry& g, int count,
                                    int64_t score_floats) {
  workspace<Device>& space = ws ? *ws : default_workspace<Device>();
  const int64_t numel = g.n * g.heads * g.c * g.h * g.w, lse = g.n * g.heads * g.h * g.w;
  float* base = space.template reserve_elements<float>(size_t(numel * count + 2 * lse + score_floats));
  axial_scratch s;
  for (int i = 0; i < count; ++i) s.lines[i] = base + i * numel;
  s.lse_col = base + numel * count;
  s.lse_row = s.lse_col + lse;
  s.scores = s.lse_row + lse;
  return s;
}

inline int64_t axial_thread() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

inline void to_lines(const axial_geometry& g, const std::vector<int>& axes, const float* x,
                     float* lines) {
  run_permute<cpu>(head_view(g), axes, x, lines, false);
}

// Lines permuted back to N x C x H x W: added into x, or written over it.
inline void from_lines(const axial_geometry& g, const std::vector<int>& axes, const float* lines,
                       float* x, bool accumulate) {
  const shape hv = head_view(g);
  const permute_params inverse = inverse_permutation(hv, permute_params{axes});
  run_permute<cpu>(permute_output_shape(hv, permute_params{axes}), inverse.axes, lines, x,
                   accumulate);
}

// The log-sum-exp planes in line order ([N*h, W, H] and [N*h, H, W]) to stats[n, h, 0|1, H, W]
// and back.
inline void lse_to_stats(const axial_geometry& g, const float* col, const float* row, float* st) {
  const int64_t plane = g.h * g.w;
  parallel_for(0, g.n * g.heads, 1, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      for (int64_t i = 0; i < g.h; ++i)
        for (int64_t w = 0; w < g.w; ++w) st[b * 2 * plane + i * g.w + w] = col[b * plane + w * g.h + i];
      std::copy(row + b * plane, row + (b + 1) * plane, st + (b * 2 + 1) * plane);
    }
  });
}
inline void stats_to_lse(const axial_geometry& g, const float* st, float* col, float* row) {
  const int64_t plane = g.h * g.w;
  parallel_for(0, g.n * g.heads, 1, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      for (int64_t i = 0; i < g.h; ++i)
        for (int64_t w = 0; w < g.w; ++w) col[b * plane + w * g.h + i] = st[b * 2 * plane + i * g.w + w];
      std::copy(st + (b * 2 + 1) * plane, st + (b * 2 + 2) * plane, row + b * plane);
    }
  });
}

inline int64_t axial_line_grain(int64_t len, int64_t c) {
  return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, len * len * c));
}

#ifndef __CUDACC__  // the cpu GEMM is hidden from CUDA translation units (matmul.hpp)
// One attention pass over `lines` lines of length len (all [len, c] contiguous): y = A v with
// A = softmax(scale q k^T) per row; lse gets one value per (line, query row).
inline void attention_lines_forward(int64_t lines, int64_t len, int64_t c, float scale,
                                    const float* q, const float* k, const float* v, float* y,
                                    float* lse, float* scores) {
  const int64_t block = len * c;
  parallel_for(0, lines, axial_line_grain(len, c), [&](int64_t first, int64_t last) {
    float* s = scores + axial_thread() * 2 * len * len;
    for (int64_t l = first; l < last; ++l) {
      const int64_t o = l * block;
      gemm(cpu{}, false, true, len, len, c, scale, q + o, c, k + o, c, 0.f, s, len);
      for (int64_t r = 0; r < len; ++r) lse[l * len + r] = math::attention_softmax_row(s + r * len, len);
      gemm(cpu{}, false, false, len, c, len, 1.f, s, len, v + o, c, 0.f, y + o, c);
    }
  });
}

// Its backward: writes (not adds) dv = A^T dy, and when dq is given dq = scale dS k and
// dk = scale dS^T q, where dS is the softmax backward of dA = dy v^T.
inline void attention_lines_backward(int64_t lines, int64_t len, int64_t c, float scale,
                                     const float* q, const float* k, const float* v,
                                     const float* lse, const float* dy, float* dq, float* dk,
                                     float* dv, float* scores) {
  const int64_t block = len * c;
  parallel_for(0, lines, axial_line_grain(len, c), [&](int64_t first, int64_t last) {
    float* p = scores + axial_thread() * 2 * len * len;
    float* dp = p + len * len;
    for (int64_t l = first; l < last; ++l) {
      const int64_t o = l * block;
      gemm(cpu{}, false, true, len, len, c, scale, q + o, c, k + o, c, 0.f, p, len);
      for (int64_t r = 0; r < len; ++r)
        math::attention_probabilities_row(p + r * len, len, lse[l * len + r]);
      gemm(cpu{}, true, false, len, c, len, 1.f, p, len, dy + o, c, 0.f, dv + o, c);
      if (!dq) continue;
      gemm(cpu{}, false, true, len, len, c, 1.f, dy + o, c, v + o, c, 0.f, dp, len);
      for (int64_t r = 0; r < len; ++r)
        math::attention_softmax_row_backward(p + r * len, dp + r * len, len);
      gemm(cpu{}, false, false, len, c, len, scale, dp, len, k + o, c, 0.f, dq + o, c);
      gemm(cpu{}, true, false, len, c, len, scale, dp, len, q + o, c, 0.f, dk + o, c);
    }
  });
}

#endif  // __CUDACC__

}  // namespace detail

// ---- forward / backward ---------------------------------------------------------------------
#ifndef __CUDACC__
inline void axial_attention_forward(const axial_attention_params& params,
                                    const tensor<float, cpu>& q, const tensor<float, cpu>& k,
                                    const tensor<float, cpu>& v, tensor<float, cpu>& out,
                                    tensor<float, cpu>& mid, tensor<float, cpu>& stats,
                                    workspace<cpu>* ws = nullptr) {
  const char* op = "axial_attention_forward";
  const auto g = detail::check_axial_attention(op, params, q, k, v);
  require_same_shape(op, "query", q.shape(), "output", out.shape());
  require_same_shape(op, "query", q.shape(), "mid (column result)", mid.shape());
  require_shape(op, "stats", stats.shape(), axial_attention_stats_shape(q.shape(), params));
  add_macs(detail::axial_attention_macs(g));
  if (q.numel() == 0) return;
  auto s = detail::reserve_axial_scratch(ws, g, 4, detail::axial_score_floats(g));
  float *lq = s.lines[0], *lk = s.lines[1], *lv = s.lines[2], *ly = s.lines[3];
  const int64_t nh = g.n * g.heads;
  // column pass on [N, h, W, H, c]
  detail::to_lines(g, detail::column_layout(), q.data(), lq);
  detail::to_lines(g, detail::column_layout(), k.data(), lk);
  detail::to_lines(g, detail::column_layout(), v.data(), lv);
  detail::attention_lines_forward(nh * g.w, g.h, g.c, g.scale, lq, lk, lv, ly, s.lse_col, s.scores);
  // Y1 back to N x C x H x W (kept for backward), then the row pass on [N, h, H, W, c]
  detail::from_lines(g, detail::column_layout(), ly, mid.data(), false);
  detail::to_lines(g, detail::row_layout(), q.data(), lq);
  detail::to_lines(g, detail::row_layout(), k.data(), lk);
  detail::to_lines(g, detail::row_layout(), mid.data(), lv);
  detail::attention_lines_forward(nh * g.h, g.w, g.c, g.scale, lq, lk, lv, ly, s.lse_row, s.scores);
  detail::from_lines(g, detail::row_layout(), ly, out.data(), false);
  detail::lse_to_stats(g, s.lse_col, s.lse_row, stats.data());
}

inline void axial_attention_backward(const axial_attention_params& params,
                                     const tensor<float, cpu>& q, const tensor<float, cpu>& k,
                                     const tensor<float, cpu>& v, const tensor<float, cpu>& mid,
                                     const tensor<float, cpu>& stats, const tensor<float, cpu>& dout,
                                     tensor<float, cpu>* dq, tensor<float, cpu>* dk,
                                     tensor<float, cpu>* dv, workspace<cpu>* ws = nullptr) {
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
  auto s = detail::reserve_axial_scratch(ws, g, 8, detail::axial_score_floats(g));
  float *lq = s.lines[0], *lk = s.lines[1], *lv = s.lines[2], *ldy = s.lines[3];
  float *ldq = s.lines[4], *ldk = s.lines[5], *ldv = s.lines[6], *dmid = s.lines[7];
  const int64_t nh = g.n * g.heads;
  detail::stats_to_lse(g, stats.data(), s.lse_col, s.lse_row);
  // row pass: dY1 (and the row map's share of dq, dk)
  detail::to_lines(g, detail::row_layout(), q.data(), lq);
  detail::to_lines(g, detail::row_layout(), k.data(), lk);
  detail::to_lines(g, detail::row_layout(), mid.data(), lv);
  detail::to_lines(g, detail::row_layout(), dout.data(), ldy);
  detail::attention_lines_backward(nh * g.h, g.w, g.c, g.scale, lq, lk, lv, s.lse_row, ldy,
                                   want_qk ? ldq : nullptr, ldk, ldv, s.scores);
  if (dq) detail::from_lines(g, detail::row_layout(), ldq, dq->data(), true);
  if (dk) detail::from_lines(g, detail::row_layout(), ldk, dk->data(), true);
  detail::from_lines(g, detail::row_layout(), ldv, dmid, false);
  // column pass: dv (and the column map's share of dq, dk)
  detail::to_lines(g, detail::column_layout(), q.data(), lq);
  detail::to_lines(g, detail::column_layout(), k.data(), lk);
  detail::to_lines(g, detail::column_layout(), v.data(), lv);
  detail::to_lines(g, detail::column_layout(), dmid, ldy);
  detail::attention_lines_backward(nh * g.w, g.h, g.c, g.scale, lq, lk, lv, s.lse_col, ldy,
                                   want_qk ? ldq : nullptr, ldk, ldv, s.scores);
  if (dq) detail::from_lines(g, detail::column_layout(), ldq, dq->data(), true);
  if (dk) detail::from_lines(g, detail::column_layout(), ldk, dk->data(), true);
  if (dv) detail::from_lines(g, detail::column_layout(), ldv, dv->data(), true);
}

#endif  // __CUDACC__

#ifdef SEGKIT_WITH_CUDA
void axial_attention_forward(const axial_attention_params& params, const tensor<float, cuda>& q,
                             const tensor<float, cuda>& k, const tensor<float, cuda>& v,
                             tensor<float, cuda>& out, tensor<float, cuda>& mid,
                             tensor<float, cuda>& stats, workspace<cuda>* ws = nullptr);
void axial_attention_backward(const axial_attention_params& params, const tensor<float, cuda>& q,
                              const tensor<float, cuda>& k, const tensor<float, cuda>& v,
                              const tensor<float, cuda>& mid, const tensor<float, cuda>& stats,
                              const tensor<float, cuda>& dout, tensor<float, cuda>* dq,
                              tensor<float, cuda>* dk, tensor<float, cuda>* dv,
                              workspace<cuda>* ws = nullptr);
#endif

}  // namespace segkit::ops
