// segkit/ops/attention2d.hpp — fused dot-product attention of a 2-D feature map over a set of
// context positions (SaF/ANL's Attention2D, OCR's object attention, HFGD's CAE self-attention),
// forward and backward, flash-attention style.
// Provides: O[n, :, l] = sum_s softmax_s(scale * Q[n, :, l] . K[n, :, s]) V[n, :, s], per head.
//   q: [N, d, L...]   (rank 3 [N, d, L] or rank 4 [N, d, H, W]; L = product of the trailing dims)
//   k: [N, d, S...]   v: [N, d_v, S...]   (same trailing dims as k)
//   o: [N, d_v, L...] (q's shape with d_v channels)   lse: [N, heads, L] (saved for backward)
//   heads split d and d_v into equal channel groups; each head has its own softmax over S.
// Requires: matching N, d (q/k), S (k/v); heads >= 1 dividing d and d_v; finite scale
//   (shape_error / value_error naming both shapes or the value).
// Guarantees: no L x S probability matrix is written: queries are processed in tiles of
//   query_tile, keys in tiles of key_tile with a running max and sum per query (online softmax)
//   and the output accumulator rescaled between key tiles; only lse = max + log(sum) per query
//   is saved. Backward recomputes P tile by tile from q, k and lse (FlashAttention-2):
//   dV += P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO o O)), dQ += scale dS K, dK += scale dS^T Q,
//   each gradient optional (nullptr) and *added*. Results do not depend on the thread count.
// CPU: tile products through ops::gemm (segkit's packed AVX-512 kernel), parallel over
//   N x heads x query tiles (forward) and N x heads (x key tiles when S > key_tile) (backward).
// CUDA (kernels/attention2d.cuh): one block per (n, head, query tile), K/V tiles in shared
//   memory, the same math:: row updates as the CPU. The forward's tile products run on tensor
//   cores on sm_80+ (kernels/attention2d_tensor_cores.cuh), FP32-accurate by default
//   (3xTF32) or one TF32 product with allow_tf32; the backward is plain FP32.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "segkit/ops/matmul.hpp"
#include "segkit/ops/softmax.hpp"
#include "segkit/tensor/config.hpp"
#include "segkit/tensor/mac_counter.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"
#include "segkit/tensor/workspace.hpp"

#if defined(__AVX512F__) && !defined(__CUDACC__)
#include <immintrin.h>  // the vectorised exp of the CPU softmax step
#endif

namespace segkit::ops {

struct attention2d_params {
  int heads = 1;
  float scale = 1.f;  // 1/sqrt(d/heads) for SaF/ANL/OCR; 1 for HFGD's CAE
  // CUDA forward on tensor cores: one TF32 product per multiply (~1e-3 relative error in the
  // scores, as PyTorch's allow_tf32) instead of three (3xTF32, FP32 accuracy). The CPU path
  // and the CUDA backward always compute in FP32.
  bool allow_tf32 = false;
};

namespace math {

// The online-softmax row state: running maximum of the scaled logits and sum of exp(x - max).
// Folds a new tile's maximum into the running maximum; returns the factor by which everything
// accumulated so far (the sum and the output row) must be multiplied.
SEGKIT_HOST_DEVICE float online_softmax_rescale(float& running_max, float tile_max) {
  const float new_max = running_max > tile_max ? running_max : tile_max;
  const float factor = running_max == -INFINITY ? 0.f : expf(running_max - new_max);
  running_max = new_max;
  return factor;
}

// Combines two partial states (max_a, sum_a) and (max_b, sum_b) of disjoint key sets into a;
// returns the factor for a's accumulator; *factor_b receives the one for b's.
SEGKIT_HOST_DEVICE float online_softmax_combine(float& max_a, float& sum_a, float max_b,
                                                float sum_b, float* factor_b) {
  const float new_max = max_a > max_b ? max_a : max_b;
  const float fa = max_a == -INFINITY ? 0.f : expf(max_a - new_max);
  const float fb = max_b == -INFINITY ? 0.f : expf(max_b - new_max);
  sum_a = sum_a * fa + sum_b * fb;
  max_a = new_max;
  *factor_b = fb;
  return fa;
}

SEGKIT_HOST_DEVICE float online_softmax_lse(float running_max, float running_sum) {
  return running_max + logf(running_sum);
}

// The probability of a raw score once the row's log-sum-exp is known (backward recompute).
SEGKIT_HOST_DEVICE float attention_probability(float score, float scale, float lse) {
  return expf(scale * score - lse);
}


}  // namespace math

namespace detail {

struct attention2d_geometry {
  int64_t n = 0, d = 0, dv = 0, l = 0, s = 0, heads = 1, dh = 0, dvh = 0;
};

inline attention2d_geometry check_attention2d(const char* op, const attention2d_params& params,
                                              const shape& q, const shape& k, const shape& v) {
  const auto rank_ok = [](const shape& x) { return x.rank() == 3 || x.rank() == 4; };
  require<shape_error>(rank_ok(q) && rank_ok(k) && rank_ok(v), op, ": q has shape ",
                       q.to_string(), ", k has shape ", k.to_string(), ", v has shape ",
                       v.to_string(), "; expected [N, C, L] or [N, C, H, W] each");
  require<shape_error>(q[0] == k[0] && k[0] == v[0], op, ": q has shape ", q.to_string(),
                       ", k has shape ", k.to_string(), ", v has shape ", v.to_string(),
                       "; batch sizes differ");
  require<shape_error>(q[1] == k[1], op, ": q has shape ", q.to_string(), " and k has shape ",
                       k.to_string(), "; the query and key channels (d) differ");
  require<shape_error>(k.rank() == v.rank() && k.span(2, k.rank()) == v.span(2, v.rank()) &&
                           (k.rank() == 3 || (k[2] == v[2] && k[3] == v[3])),
                       op, ": k has shape ", k.to_string(), " and v has shape ", v.to_string(),
                       "; the key positions (S) differ");
  require<value_error>(params.heads >= 1, op, ": heads=", params.heads, " must be >= 1");
  require<shape_error>(q[1] % params.heads == 0 && v[1] % params.heads == 0, op,
                       ": heads=", params.heads, " does not divide the key channels of q ",
                       q.to_string(), " and the value channels of v ", v.to_string());
  require<value_error>(std::isfinite(params.scale), op, ": scale=", params.scale,
                       " must be finite");
  attention2d_geometry g;
  g.n = q[0];
  g.d = q[1];
  g.dv = v[1];
  g.l = q.span(2, q.rank());
  g.s = k.span(2, k.rank());
  g.heads = params.heads;
  g.dh = g.d / g.heads;
  g.dvh = g.dv / g.heads;
  return g;
}

// Multiply-adds of one forward (mac_counter.hpp): Q.K scores and P.V, N * L * S * (d + d_v).
inline int64_t attention2d_macs(const attention2d_geometry& g) {
  return g.n * g.l * g.s * (g.d + g.dv);
}

constexpr int64_t attention_key_tile = 512;     // keys per online-softmax step
constexpr int64_t attention_tile_floats = 131072;  // a key x query score tile: 512 KiB (L2)

// Queries per CPU work item: as many as keep the score tile at 512 KiB, a multiple of 16, at
// most 1024 (256 with 512-key tiles; 1024 for SaF's 110 keys, so K is packed for the GEMM 8x
// less often than with 128-query tiles). One thread, CAE forward: 55 ms at 256 KiB, 50 at 512.
inline int64_t attention_query_tile(int64_t key_tile) {
  return std::max<int64_t>(16, std::min<int64_t>(1024, attention_tile_floats / key_tile) / 16 * 16);
}

}  // namespace detail

inline shape attention2d_output_shape(const attention2d_params& params, const shape& q,
                                      const shape& k, const shape& v) {
  detail::check_attention2d("attention2d_output_shape", params, q, k, v);
  return q.with(1, v[1]);
}

inline shape attention2d_lse_shape(const attention2d_params& params, const shape& q,
                                   const shape& k, const shape& v) {
  const auto g = detail::check_attention2d("attention2d_lse_shape", params, q, k, v);
  return shape{g.n, g.heads, g.l};
}

#ifndef __CUDACC__
namespace detail {

#ifdef __AVX512F__
// exp(x) for 16 floats: 2^n * p(r), n = round(x log2 e), r = x - n ln 2 (Cody-Waite split),
// p a degree-6 polynomial (Cephes expf coefficients); |relative error| < 2e-7 on the range
// used here (x <= 0); x < -87.3 gives 0. (The masked forms with an all-ones mask: the plain
// _mm512_max_ps / roundscale / scalef pass _mm512_undefined_ps(), which trips GCC 12's false
// -Wmaybe-uninitialized, bug 105593, wherever immintrin.h was not included under a pragma.)
inline __m512 exp16(__m512 x) {
  constexpr __mmask16 all = 0xFFFF;
  x = _mm512_mask_max_ps(x, all, x, _mm512_set1_ps(-87.33654f));
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
  const __m512 n =
      _mm512_mask_roundscale_ps(t, all, t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_mask_scalef_ps(p, all, p, n);
}
#endif

// Score tiles are stored key-major, [cols keys x rows queries] (row stride `rows`): with q and
// the output stored [d, L], every tile product is then a plain GEMM (K^T Q, V P^T, ...) whose
// B operand is read along L, and the per-query softmax runs vectorised across queries.

// x[i] = exp(scale * x[i] - shift[i]), sum[i] += x[i], for i < count.
inline void attention_exp_add(float* x, const float* shift, float* sum, int64_t count,
                              float scale) {
  int64_t i = 0;
#ifdef __AVX512F__
  const __m512 vs = _mm512_set1_ps(scale);
  for (; i + 16 <= count; i += 16) {
    const __m512 e = exp16(_mm512_fmsub_ps(vs, _mm512_loadu_ps(x + i), _mm512_loadu_ps(shift + i)));
    _mm512_storeu_ps(x + i, e);
    _mm512_storeu_ps(sum + i, _mm512_add_ps(_mm512_loadu_ps(sum + i), e));
  }
#endif
  for (; i < count; ++i) {
    x[i] = std::exp(scale * x[i] - shift[i]);
    sum[i] += x[i];
  }
}

// Online-softmax step of a [cols x rows] key-major score tile: updates the running max and sum
// of each query (row of the softmax), turns the scores into exp(scale * x - new_max) and writes
// the factor that rescales each query's accumulated output.
inline void attention_tile_softmax(float* scores, int64_t rows, int64_t cols, float scale,
                                   float* running_max, float* running_sum, float* factor,
                                   float* tile_max, float* tile_sum) {
  for (int64_t r = 0; r < rows; ++r) tile_max[r] = -INFINITY, tile_sum[r] = 0.f;
  for (int64_t c = 0; c < cols; ++c) {
    const float* row = scores + c * rows;
    for (int64_t r = 0; r < rows; ++r) tile_max[r] = std::max(tile_max[r], scale * row[r]);
  }
  for (int64_t r = 0; r < rows; ++r)
    factor[r] = math::online_softmax_rescale(running_max[r], tile_max[r]);
  for (int64_t c = 0; c < cols; ++c)
    attention_exp_add(scores + c * rows, running_max, tile_sum, rows, scale);
  for (int64_t r = 0; r < rows; ++r) running_sum[r] = running_sum[r] * factor[r] + tile_sum[r];
}

}  // namespace detail

inline void attention2d_forward(const attention2d_params& params, const tensor<float, cpu>& q,
                                const tensor<float, cpu>& k, const tensor<float, cpu>& v,
                                tensor<float, cpu>& o, tensor<float, cpu>& lse,
                                workspace<cpu>* ws = nullptr) {
  const auto g = detail::check_attention2d("attention2d_forward", params, q.shape(), k.shape(),
                                           v.shape());
  require_shape("attention2d_forward", "output o", o.shape(), q.shape().with(1, g.dv));
  require_shape("attention2d_forward", "saved lse", lse.shape(), shape{g.n, g.heads, g.l});
  add_macs(detail::attention2d_macs(g));
  if (o.empty()) return;
  if (g.s == 0) {  // softmax over nothing: define the output as 0 and lse as -inf
    o.zero();
    lse.fill(-INFINITY);
    return;
  }
  const int64_t kt = std::min(detail::attention_key_tile, g.s);
  const int64_t qt = detail::attention_query_tile(kt);
  const int64_t tiles = (g.l + qt - 1) / qt, items = g.n * g.heads * tiles;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(num_threads(), items));
  const int64_t per_chunk = qt * kt + 5 * qt;
  workspace<cpu>& scratch = ws ? *ws : default_workspace<cpu>();
  float* base = scratch.reserve_elements<float>(size_t(chunks * per_chunk));
  const float scale = params.scale;
  const float *qd = q.data(), *kd = k.data(), *vd = v.data();
  float *od = o.data(), *lsed = lse.data();
  parallel_for(0, chunks, 1, [&](int64_t first_chunk, int64_t last_chunk) {
    for (int64_t chunk = first_chunk; chunk < last_chunk; ++chunk) {
      float* scores = base + chunk * per_chunk;
      float* rmax = scores + qt * kt;
      float* rsum = rmax + qt;
      float* factor = rsum + qt;
      float* tmax = factor + qt;
      float* tsum = tmax + qt;
      for (int64_t item = items * chunk / chunks; item < items * (chunk + 1) / chunks; ++item) {
        const int64_t tile = item % tiles, nh = item / tiles, n = nh / g.heads, h = nh % g.heads;
        const int64_t l0 = tile * qt, rows = std::min(qt, g.l - l0);
        const float* qp = qd + (n * g.d + h * g.dh) * g.l + l0;
        const float* kp = kd + (n * g.d + h * g.dh) * g.s;
        const float* vp = vd + (n * g.dv + h * g.dvh) * g.s;
        float* op = od + (n * g.dv + h * g.dvh) * g.l + l0;
        std::fill(rmax, rmax + rows, -INFINITY);
        std::fill(rsum, rsum + rows, 0.f);
        for (int64_t s0 = 0; s0 < g.s; s0 += kt) {
          const int64_t cols = std::min(kt, g.s - s0);
          // scores[cols, rows] = K_tile^T Q_tile
          gemm(cpu{}, true, false, cols, rows, g.dh, 1.f, kp + s0, g.s, qp, g.l, 0.f, scores,
               rows);
          detail::attention_tile_softmax(scores, rows, cols, scale, rmax, rsum, factor, tmax,
                                         tsum);
          if (s0 > 0)
            for (int64_t c = 0; c < g.dvh; ++c) {
              float* orow = op + c * g.l;
              for (int64_t r = 0; r < rows; ++r) orow[r] *= factor[r];
            }
          // O_tile[dvh, rows] (+)= V_tile[dvh, cols] P[cols, rows]
          gemm(cpu{}, false, false, g.dvh, rows, cols, 1.f, vp + s0, g.s, scores, rows,
               s0 > 0 ? 1.f : 0.f, op, g.l);
        }
        for (int64_t r = 0; r < rows; ++r) factor[r] = 1.f / rsum[r];
        for (int64_t c = 0; c < g.dvh; ++c) {
          float* orow = op + c * g.l;
          for (int64_t r = 0; r < rows; ++r) orow[r] *= factor[r];
        }
        float* lrow = lsed + nh * g.l + l0;
        for (int64_t r = 0; r < rows; ++r) lrow[r] = math::online_softmax_lse(rmax[r], rsum[r]);
      }
    }
  });
}

// Adds the gradients of sum(do * o) into dq, dk, dv (each optional). o and lse are the forward's.
inline void attention2d_backward(const attention2d_params& params, const tensor<float, cpu>& q,
                                 const tensor<float, cpu>& k, const tensor<float, cpu>& v,
                                 const tensor<float, cpu>& o, const tensor<float, cpu>& lse,
                                 const tensor<float, cpu>& d_o, tensor<float, cpu>* dq,
                                 tensor<float, cpu>* dk, tensor<float, cpu>* dv,
                                 workspace<cpu>* ws = nullptr) {
  const char* op_name = "attention2d_backward";
  const auto g = detail::check_attention2d(op_name, params, q.shape(), k.shape(), v.shape());
  require_shape(op_name, "output o", o.shape(), q.shape().with(1, g.dv));
  require_same_shape(op_name, "output o", o.shape(), "output gradient", d_o.shape());
  require_shape(op_name, "saved lse", lse.shape(), shape{g.n, g.heads, g.l});
  if (dq) require_same_shape(op_name, "q", q.shape(), "gradient dq", dq->shape());
  if (dk) require_same_shape(op_name, "k", k.shape(), "gradient dk", dk->shape());
  if (dv) require_same_shape(op_name, "v", v.shape(), "gradient dv", dv->shape());
  if ((!dq && !dk && !dv) || g.s == 0 || g.l == 0 || g.n == 0) return;
  const int64_t kt = std::min(detail::attention_key_tile, g.s);
  const int64_t qt = detail::attention_query_tile(kt);
  const int64_t ltiles = (g.l + qt - 1) / qt, stiles = (g.s + kt - 1) / kt;
  const float scale = params.scale;
  const float *qd = q.data(), *kd = k.data(), *vd = v.data(), *od = o.data(), *lsed = lse.data(),
              *dod = d_o.data();
  float *dqd = dq ? dq->data() : nullptr, *dkd = dk ? dk->data() : nullptr,
        *dvd = dv ? dv->data() : nullptr;
  // Pass A: items own dK/dV columns and walk every query tile in order: (n, head) items
  // walking every key tile when there are enough of them to occupy the threads (or a single
  // key tile), so they own dQ of (n, head) too and nothing is recomputed; otherwise
  // (n, head, key tile) items, and pass B, items (n, head, query tile), recomputes P and dS
  // for dQ. Every gradient element sums its tiles in the same order either way, so results do
  // not depend on the thread count.
  const bool whole_heads = stiles == 1 || g.n * g.heads >= num_threads();
  const bool dq_in_a = whole_heads;
  const int64_t per_chunk = 2 * qt * kt + 2 * qt;
  workspace<cpu>& scratch = ws ? *ws : default_workspace<cpu>();
  const int64_t max_items = g.n * g.heads * std::max(stiles, ltiles);
  const int64_t max_chunks = std::max<int64_t>(1, std::min<int64_t>(num_threads(), max_items));
  float* base = scratch.reserve_elements<float>(size_t(max_chunks * per_chunk));

  // Key-major P and dS ([cols, rows]) for query tile [l0, l0+rows) x key tile [s0, s0+cols).
  auto tile_gradients = [&](int64_t n, int64_t h, int64_t l0, int64_t rows, int64_t s0,
                            int64_t cols, float* p, float* ds, float* delta, float* unused) {
    const float* qp = qd + (n * g.d + h * g.dh) * g.l + l0;
    const float* kp = kd + (n * g.d + h * g.dh) * g.s + s0;
    const float* vp = vd + (n * g.dv + h * g.dvh) * g.s + s0;
    const float* opp = od + (n * g.dv + h * g.dvh) * g.l + l0;
    const float* dop = dod + (n * g.dv + h * g.dvh) * g.l + l0;
    const float* lrow = lsed + (n * g.heads + h) * g.l + l0;
    std::fill(delta, delta + rows, 0.f);
    for (int64_t c = 0; c < g.dvh; ++c)
      for (int64_t r = 0; r < rows; ++r) delta[r] += dop[c * g.l + r] * opp[c * g.l + r];
    gemm(cpu{}, true, false, cols, rows, g.dh, 1.f, kp, g.s, qp, g.l, 0.f, p, rows);
    // P = exp(scale * score - lse): math::attention_probability, vectorised
    std::fill(unused, unused + rows, 0.f);
    for (int64_t c = 0; c < cols; ++c) detail::attention_exp_add(p + c * rows, lrow, unused, rows, scale);
    gemm(cpu{}, true, false, cols, rows, g.dvh, 1.f, vp, g.s, dop, g.l, 0.f, ds, rows);
    for (int64_t c = 0; c < cols; ++c)
      for (int64_t r = 0; r < rows; ++r)
        ds[c * rows + r] = math::softmax_gradient<false>(p[c * rows + r], ds[c * rows + r], delta[r]);
  };

  auto run_items = [&](int64_t items, auto&& body) {
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(num_threads(), items));
    parallel_for(0, chunks, 1, [&](int64_t first_chunk, int64_t last_chunk) {
      for (int64_t chunk = first_chunk; chunk < last_chunk; ++chunk) {
        float* p = base + chunk * per_chunk;
        float* ds = p + qt * kt;
        float* delta = ds + qt * kt;
        float* unused = delta + qt;
        for (int64_t item = items * chunk / chunks; item < items * (chunk + 1) / chunks; ++item)
          body(item, p, ds, delta, unused);
      }
    });
  };

  const int64_t tiles_per_item = whole_heads ? stiles : 1;
  if (dk || dv || dq_in_a)
    run_items(g.n * g.heads * stiles / tiles_per_item, [&](int64_t item, float* p, float* ds,
                                                           float* delta, float* unused) {
      const int64_t first = item * tiles_per_item;
      for (int64_t tile = first; tile < first + tiles_per_item; ++tile) {
        const int64_t st = tile % stiles, nh = tile / stiles, n = nh / g.heads, h = nh % g.heads;
        const int64_t s0 = st * kt, cols = std::min(kt, g.s - s0);
        for (int64_t lt = 0; lt < ltiles; ++lt) {
        const int64_t l0 = lt * qt, rows = std::min(qt, g.l - l0);
        tile_gradients(n, h, l0, rows, s0, cols, p, ds, delta, unused);
        if (dvd)  // dV[dvh, cols] += dO[dvh, rows] P^T
          gemm(cpu{}, false, true, g.dvh, cols, rows, 1.f,
               dod + (n * g.dv + h * g.dvh) * g.l + l0, g.l, p, rows, 1.f,
               dvd + (n * g.dv + h * g.dvh) * g.s + s0, g.s);
        if (dkd)  // dK[dh, cols] += scale Q[dh, rows] dS^T
          gemm(cpu{}, false, true, g.dh, cols, rows, scale,
               qd + (n * g.d + h * g.dh) * g.l + l0, g.l, ds, rows, 1.f,
               dkd + (n * g.d + h * g.dh) * g.s + s0, g.s);
        if (dqd && dq_in_a)  // dQ[dh, rows] += scale K[dh, cols] dS
          gemm(cpu{}, false, false, g.dh, rows, cols, scale,
               kd + (n * g.d + h * g.dh) * g.s + s0, g.s, ds, rows, 1.f,
               dqd + (n * g.d + h * g.dh) * g.l + l0, g.l);
        }
      }
    });
  if (dqd && !dq_in_a)
    run_items(g.n * g.heads * ltiles, [&](int64_t item, float* p, float* ds, float* delta,
                                          float* unused) {
      const int64_t lt = item % ltiles, nh = item / ltiles, n = nh / g.heads, h = nh % g.heads;
      const int64_t l0 = lt * qt, rows = std::min(qt, g.l - l0);
      for (int64_t st = 0; st < stiles; ++st) {
        const int64_t s0 = st * kt, cols = std::min(kt, g.s - s0);
        tile_gradients(n, h, l0, rows, s0, cols, p, ds, delta, unused);
        gemm(cpu{}, false, false, g.dh, rows, cols, scale, kd + (n * g.d + h * g.dh) * g.s + s0,
             g.s, ds, rows, 1.f, dqd + (n * g.d + h * g.dh) * g.l + l0, g.l);
      }
    });
}
#endif  // __CUDACC__

#ifdef SEGKIT_WITH_CUDA
void attention2d_forward(const attention2d_params& params, const tensor<float, cuda>& q,
                         const tensor<float, cuda>& k, const tensor<float, cuda>& v,
                         tensor<float, cuda>& o, tensor<float, cuda>& lse,
                         workspace<cuda>* ws = nullptr);
void attention2d_backward(const attention2d_params& params, const tensor<float, cuda>& q,
                          const tensor<float, cuda>& k, const tensor<float, cuda>& v,
                          const tensor<float, cuda>& o, const tensor<float, cuda>& lse,
                          const tensor<float, cuda>& d_o, tensor<float, cuda>* dq,
                          tensor<float, cuda>* dk, tensor<float, cuda>* dv,
                          workspace<cuda>* ws = nullptr);
#endif

}  // namespace segkit::ops
