// kernels/attention2d.cuh — CUDA path of ops/attention2d.hpp (flash attention).
// Forward: one block per (n * head, tile of 16 queries); key tiles of 64 positions; the
//   16 x 64 score tile lives in shared memory, one warp per row runs the online-softmax step
//   (math::online_softmax_rescale, the CPU's function) with shuffles, and the block's output
//   columns are rescaled and accumulated in place (the block owns them), then divided by the
//   running sum; only lse per query is written.
// Backward (FlashAttention-2 split): delta = rowsum(dO o O) per query; one block per
//   (n * head, 32 keys) walks every query tile and adds into its own dK/dV columns; one block
//   per (n * head, 32 queries) walks every key tile and adds into its dQ columns. P and dS are
//   recomputed from q, k and lse by math::attention_probability / softmax_gradient<false>.
// The forward runs on tensor cores where it can (attention2d_tensor_cores.cuh: sm_80+, and
//   the shared memory a head's d_v needs); the kernel here is its fallback. The backward is
//   plain FP32 (see docs/kernels.md).
#pragma once
#include <cmath>

#include "attention2d_tensor_cores.cuh"
#include "cuda_context.cuh"
#include "launch.cuh"
#include "segkit/ops/attention2d.hpp"
#include "warp_reduce.cuh"

namespace segkit::ops {
namespace cuda_kernels {

constexpr int attention_threads = 256;
constexpr int attention_fwd_queries = 16;
constexpr int attention_fwd_keys = 64;
constexpr int attention_bwd_tile = 32;

__global__ void attention2d_forward_kernel(const float* __restrict__ q,
                                           const float* __restrict__ k,
                                           const float* __restrict__ v, float* __restrict__ o,
                                           float* __restrict__ lse, attention_dims g) {
  constexpr int BQ = attention_fwd_queries, BK = attention_fwd_keys;
  __shared__ float p[BQ][BK + 1];
  __shared__ float rmax[BQ], rsum[BQ], factor[BQ];
  const int64_t nh = blockIdx.y, n = nh / g.heads, h = nh % g.heads;
  const int64_t l0 = int64_t(blockIdx.x) * BQ;
  const int rows = int(g.l - l0 < BQ ? g.l - l0 : BQ);
  const float* qp = q + (n * g.d + h * g.dh) * g.l + l0;
  const float* kp = k + (n * g.d + h * g.dh) * g.s;
  const float* vp = v + (n * g.dv + h * g.dvh) * g.s;
  float* op = o + (n * g.dv + h * g.dvh) * g.l + l0;
  const int t = threadIdx.x, lane = t % 32, warp = t / 32;
  if (t < BQ) {
    rmax[t] = -INFINITY;
    rsum[t] = 0.f;
  }
  for (int64_t s0 = 0; s0 < g.s; s0 += BK) {
    const int cols = int(g.s - s0 < BK ? g.s - s0 : BK);
    for (int e = t; e < BQ * BK; e += attention_threads) {
      const int r = e / BK, c = e % BK;
      float dot = 0.f;
      if (r < rows && c < cols)
        for (int64_t ch = 0; ch < g.dh; ++ch) dot += qp[ch * g.l + r] * kp[ch * g.s + s0 + c];
      p[r][c] = c < cols ? g.scale * dot : -INFINITY;
    }
    __syncthreads();
    for (int r = warp; r < BQ; r += attention_threads / 32) {
      const float x0 = p[r][lane], x1 = p[r][lane + 32];
      const float tile_max = cuda_detail::warp_max(fmaxf(x0, x1));
      float running = rmax[r];
      const float f = math::online_softmax_rescale(running, tile_max);
      const float e0 = lane < cols ? expf(x0 - running) : 0.f;
      const float e1 = lane + 32 < cols ? expf(x1 - running) : 0.f;
      p[r][lane] = e0;
      p[r][lane + 32] = e1;
      const float sum = cuda_detail::warp_sum(e0 + e1);
      __syncwarp();
      if (lane == 0) {
        rmax[r] = running;
        rsum[r] = rsum[r] * f + sum;
        factor[r] = f;
      }
    }
    __syncthreads();
    for (int64_t e = t; e < g.dvh * BQ; e += attention_threads) {
      const int r = int(e % BQ);
      const int64_t c = e / BQ;
      if (r >= rows) continue;
      float acc = s0 > 0 ? op[c * g.l + r] * factor[r] : 0.f;
      const float* vrow = vp + c * g.s + s0;
      for (int j = 0; j < cols; ++j) acc += vrow[j] * p[r][j];
      op[c * g.l + r] = acc;
    }
    __syncthreads();
  }
  for (int64_t e = t; e < g.dvh * BQ; e += attention_threads) {
    const int r = int(e % BQ);
    if (r < rows) op[(e / BQ) * g.l + r] /= rsum[r];
  }
  if (t < rows) lse[nh * g.l + l0 + t] = math::online_softmax_lse(rmax[t], rsum[t]);
}

__global__ void attention2d_delta_kernel(const float* __restrict__ o,
                                         const float* __restrict__ d_o,
                                         float* __restrict__ delta, attention_dims g,
                                         int64_t count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t l = i % g.l, nh = i / g.l, n = nh / g.heads, h = nh % g.heads;
    const int64_t base = (n * g.dv + h * g.dvh) * g.l + l;
    float sum = 0.f;
    for (int64_t c = 0; c < g.dvh; ++c) sum += d_o[base + c * g.l] * o[base + c * g.l];
    delta[i] = sum;
  }
}

// P and dS of a 32 x 32 tile (queries l0.., keys s0..) into shared p[query][key], ds[..][..].
__device__ void attention_gradient_tile(const float* qp, const float* kp, const float* vp,
                                        const float* dop, const float* lse_row,
                                        const float* delta_row, const attention_dims& g,
                                        int64_t l0, int64_t s0, float (*p)[attention_bwd_tile + 1],
                                        float (*ds)[attention_bwd_tile + 1]) {
  constexpr int B = attention_bwd_tile;
  for (int e = threadIdx.x; e < B * B; e += attention_threads) {
    const int r = e / B, c = e % B;
    const int64_t l = l0 + r, s = s0 + c;
    float pv = 0.f, dsv = 0.f;
    if (l < g.l && s < g.s) {
      float score = 0.f, dp = 0.f;
      for (int64_t ch = 0; ch < g.dh; ++ch) score += qp[ch * g.l + l] * kp[ch * g.s + s];
      for (int64_t ch = 0; ch < g.dvh; ++ch) dp += dop[ch * g.l + l] * vp[ch * g.s + s];
      pv = math::attention_probability(score, g.scale, lse_row[l]);
      dsv = math::softmax_gradient<false>(pv, dp, delta_row[l]);
    }
    p[r][c] = pv;
    ds[r][c] = dsv;
  }
}

__global__ void attention2d_dkdv_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                        const float* __restrict__ v,
                                        const float* __restrict__ d_o,
                                        const float* __restrict__ lse,
                                        const float* __restrict__ delta, float* dk, float* dv,
                                        attention_dims g) {
  constexpr int B = attention_bwd_tile;
  __shared__ float p[B][B + 1], ds[B][B + 1];
  const int64_t nh = blockIdx.y, n = nh / g.heads, h = nh % g.heads;
  const int64_t s0 = int64_t(blockIdx.x) * B;
  const float* qp = q + (n * g.d + h * g.dh) * g.l;
  const float* kp = k + (n * g.d + h * g.dh) * g.s;
  const float* vp = v + (n * g.dv + h * g.dvh) * g.s;
  const float* dop = d_o + (n * g.dv + h * g.dvh) * g.l;
  for (int64_t l0 = 0; l0 < g.l; l0 += B) {
    const int rows = int(g.l - l0 < B ? g.l - l0 : B);
    attention_gradient_tile(qp, kp, vp, dop, lse + nh * g.l, delta + nh * g.l, g, l0, s0, p, ds);
    __syncthreads();
    if (dv)
      for (int64_t e = threadIdx.x; e < g.dvh * B; e += attention_threads) {
        const int c = int(e % B);
        const int64_t ch = e / B;
        if (s0 + c >= g.s) continue;
        float acc = 0.f;
        for (int r = 0; r < rows; ++r) acc += p[r][c] * dop[ch * g.l + l0 + r];
        dv[(n * g.dv + h * g.dvh + ch) * g.s + s0 + c] += acc;
      }
    if (dk)
      for (int64_t e = threadIdx.x; e < g.dh * B; e += attention_threads) {
        const int c = int(e % B);
        const int64_t ch = e / B;
        if (s0 + c >= g.s) continue;
        float acc = 0.f;
        for (int r = 0; r < rows; ++r) acc += ds[r][c] * qp[ch * g.l + l0 + r];
        dk[(n * g.d + h * g.dh + ch) * g.s + s0 + c] += g.scale * acc;
      }
    __syncthreads();
  }
}

__global__ void attention2d_dq_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                      const float* __restrict__ v, const float* __restrict__ d_o,
                                      const float* __restrict__ lse,
                                      const float* __restrict__ delta, float* dq,
                                      attention_dims g) {
  constexpr int B = attention_bwd_tile;
  __shared__ float p[B][B + 1], ds[B][B + 1];
  const int64_t nh = blockIdx.y, n = nh / g.heads, h = nh % g.heads;
  const int64_t l0 = int64_t(blockIdx.x) * B;
  const float* qp = q + (n * g.d + h * g.dh) * g.l;
  const float* kp = k + (n * g.d + h * g.dh) * g.s;
  const float* vp = v + (n * g.dv + h * g.dvh) * g.s;
  const float* dop = d_o + (n * g.dv + h * g.dvh) * g.l;
  for (int64_t s0 = 0; s0 < g.s; s0 += B) {
    const int cols = int(g.s - s0 < B ? g.s - s0 : B);
    attention_gradient_tile(qp, kp, vp, dop, lse + nh * g.l, delta + nh * g.l, g, l0, s0, p, ds);
    __syncthreads();
    for (int64_t e = threadIdx.x; e < g.dh * B; e += attention_threads) {
      const int r = int(e % B);
      const int64_t ch = e / B;
      if (l0 + r >= g.l) continue;
      float acc = 0.f;
      for (int c = 0; c < cols; ++c) acc += ds[r][c] * kp[ch * g.s + s0 + c];
      dq[(n * g.d + h * g.dh + ch) * g.l + l0 + r] += g.scale * acc;
    }
    __syncthreads();
  }
}

inline attention_dims dims_of(const detail::attention2d_geometry& geo, float scale) {
  return attention_dims{geo.heads, geo.d, geo.dv, geo.dh, geo.dvh, geo.l, geo.s, scale};
}

}  // namespace cuda_kernels

void attention2d_forward(const attention2d_params& params, const tensor<float, cuda>& q,
                         const tensor<float, cuda>& k, const tensor<float, cuda>& v,
                         tensor<float, cuda>& o, tensor<float, cuda>& lse, workspace<cuda>*) {
  const auto g = detail::check_attention2d("attention2d_forward", params, q.shape(), k.shape(),
                                           v.shape());
  require_shape("attention2d_forward", "output o", o.shape(), q.shape().with(1, g.dv));
  require_shape("attention2d_forward", "saved lse", lse.shape(), shape{g.n, g.heads, g.l});
  add_macs(detail::attention2d_macs(g));
  if (o.empty()) return;
  if (g.s == 0) {
    o.zero();
    lse.fill(-INFINITY);
    return;
  }
  using namespace cuda_kernels;
  const auto dims = dims_of(g, params.scale);
  if (launch_attention2d_forward_tc(q.data(), k.data(), v.data(), o.data(), lse.data(), dims,
                                    g.n * g.heads, params.allow_tf32,
                                    cuda_detail::context().stream()))
    return;
  const int64_t tiles = (g.l + attention_fwd_queries - 1) / attention_fwd_queries;
  SEGKIT_LAUNCH(attention2d_forward_kernel, grid_of(tiles, g.n * g.heads), attention_threads, 0,
                cuda_detail::context().stream(), q.data(), k.data(), v.data(), o.data(), lse.data(),
                dims);
}

void attention2d_backward(const attention2d_params& params, const tensor<float, cuda>& q,
                          const tensor<float, cuda>& k, const tensor<float, cuda>& v,
                          const tensor<float, cuda>& o, const tensor<float, cuda>& lse,
                          const tensor<float, cuda>& d_o, tensor<float, cuda>* dq,
                          tensor<float, cuda>* dk, tensor<float, cuda>* dv,
                          workspace<cuda>* ws) {
  const char* op_name = "attention2d_backward";
  const auto g = detail::check_attention2d(op_name, params, q.shape(), k.shape(), v.shape());
  require_shape(op_name, "output o", o.shape(), q.shape().with(1, g.dv));
  require_same_shape(op_name, "output o", o.shape(), "output gradient", d_o.shape());
  require_shape(op_name, "saved lse", lse.shape(), shape{g.n, g.heads, g.l});
  if (dq) require_same_shape(op_name, "q", q.shape(), "gradient dq", dq->shape());
  if (dk) require_same_shape(op_name, "k", k.shape(), "gradient dk", dk->shape());
  if (dv) require_same_shape(op_name, "v", v.shape(), "gradient dv", dv->shape());
  if ((!dq && !dk && !dv) || g.s == 0 || g.l == 0 || g.n == 0) return;
  using namespace cuda_kernels;
  auto& context = cuda_detail::context();
  workspace<cuda>& scratch = ws ? *ws : context.workspace();
  const int64_t count = g.n * g.heads * g.l;
  float* delta = scratch.reserve_elements<float>(size_t(count));
  const auto dims = dims_of(g, params.scale);
  SEGKIT_LAUNCH(attention2d_delta_kernel, cuda_detail::blocks_for(count),
                cuda_detail::threads_per_block, 0, context.stream(), o.data(), d_o.data(), delta,
                dims, count);
  constexpr int64_t B = attention_bwd_tile;
  if (dk || dv)
    SEGKIT_LAUNCH(attention2d_dkdv_kernel, grid_of((g.s + B - 1) / B, g.n * g.heads),
                  attention_threads, 0, context.stream(), q.data(), k.data(), v.data(),
                  d_o.data(), lse.data(), delta, dk ? dk->data() : nullptr,
                  dv ? dv->data() : nullptr, dims);
  if (dq)
    SEGKIT_LAUNCH(attention2d_dq_kernel, grid_of((g.l + B - 1) / B, g.n * g.heads),
                  attention_threads, 0, context.stream(), q.data(), k.data(), v.data(),
                  d_o.data(), lse.data(), delta, dq->data(), dims);
}

}  // namespace segkit::ops
