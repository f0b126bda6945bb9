// kernels/attention2d_tensor_cores.cuh — the tensor-core forward of attention2d (sm_80 and up):
// the online softmax of attention2d_forward_kernel, with the two tile products (scores = QᵀK
// and O += P V) on WMMA TF32 fragments (m16n16k8).
// Requires: attention_dims of a checked problem; a device and a binary of sm_80 or newer, and
//   tc_forward_shared_bytes(dvh) of shared memory per block (launch_attention2d_forward_tc
//   checks both; attention2d_forward falls back to the plain FP32 kernel).
// Guarantees:
//   - accuracy: by default every product is split "3xTF32": x = big + small, both rounded to
//     TF32, and a·b ≈ small_a·big_b + big_a·small_b + big_a·big_b (the dropped small·small
//     term is ~2^-22 relative, a few FP32 ulps), so results stay within FP32 rounding noise
//     of the CPU path (magnitudes within an ulp of FLT_MAX round to inf in TF32: NaN here).
//     With attention2d_params::allow_tf32 one big·big product is used, like PyTorch's
//     allow_tf32 (10-bit mantissa: ~1e-3 relative error in the scores), 3x fewer products;
//   - the softmax state, the rescaling and lse are the CPU's math:: functions in FP32;
//   - only lse and O are written; no L x S matrix exists outside shared memory.
// Tiling: one block of 4 warps per (n * head, 64 queries); key tiles of 64. Warp w owns query
//   rows 16w..16w+15 of the score tile, of the O accumulator and of the row max/sum, so the
//   softmax and the rescaling of O need no block barrier: only the staging of Q, K and V
//   chunks (32 channels of Q and K, or 64 of V, zero-padded past L, S and the channel count)
//   is shared. O stays in shared memory because a WMMA accumulator's element-to-row mapping
//   is unspecified, and each key tile must rescale O's rows.
#pragma once
#include <mma.h>

#include <cmath>
#include <cstddef>
#include <map>
#include <mutex>

#include "launch.cuh"
#include "segkit/ops/attention2d.hpp"
#include "warp_reduce.cuh"

namespace segkit::ops::cuda_kernels {

// A checked problem's dimensions as both attention2d kernel families take them.
struct attention_dims {
  int64_t heads, d, dv, dh, dvh, l, s;
  float scale;
};

inline dim3 grid_of(int64_t tiles, int64_t nh) {
  require<cuda_error>(tiles <= 0x7fffffff && nh <= 65535, "attention2d: grid of ", tiles, " x ", nh,
                      " blocks exceeds the CUDA limits (N x heads must be <= 65535)");
  return dim3(unsigned(tiles), unsigned(nh));
}

namespace tensor_core_tile {
constexpr int queries = 64, keys = 64, threads = 128;  // 4 warps x 16 query rows
constexpr int qk_channels = 32, v_channels = 64;       // channels per staged chunk
constexpr int ld = keys + 8;  // row stride of the staged chunks and the score tile: a multiple
                              // of 8 floats keeps every fragment pointer 32-byte aligned
static_assert(queries == keys, "Q and K chunks share one staging loop");
static_assert(queries == 16 * (threads / 32), "each warp owns 16 query rows");
static_assert(keys == 64, "the softmax step gives each lane keys lane and lane + 32");
constexpr int staged_rows = 2 * qk_channels > v_channels ? 2 * qk_channels : v_channels;
constexpr int staging_floats = staged_rows * ld;  // a Q and a K chunk, or a V chunk
}  // namespace tensor_core_tile

// O accumulator geometry: dvh rounded up to whole 16-column fragments, rows padded by 4 floats
// (WMMA's ldm must be a multiple of 4; a warp's first row, 16w, is then 64w·ld bytes in: a
// multiple of 32, as fragment pointers must be).
struct tc_output_layout {
  int64_t columns, ld;
};
__host__ __device__ inline tc_output_layout tc_output_layout_of(int64_t dvh) {
  const int64_t columns = (dvh + 15) / 16 * 16;
  return {columns, columns + 4};
}

inline size_t tc_forward_shared_bytes(int64_t dvh) {
  using namespace tensor_core_tile;
  const auto out = tc_output_layout_of(dvh);
  return sizeof(float) * size_t(queries * out.ld + queries * ld + staging_floats + 2 * queries);
}

// TF32 fragments exist from sm_80 on: older device passes compile neither the helpers nor the
// kernel's body.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define SEGKIT_ATTENTION_TF32 1
#else
#define SEGKIT_ATTENTION_TF32 0
#endif
#if SEGKIT_ATTENTION_TF32
namespace tc_detail {
namespace wmma = nvcuda::wmma;
template <class Use, class Layout>
using tf32_fragment = wmma::fragment<Use, 16, 16, 8, wmma::precision::tf32, Layout>;
using accumulator = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;

// Rounds a loaded fragment to TF32 in place; with `keep_small`, `small` gets the remainder.
template <class Fragment>
__device__ __forceinline__ void split_tf32(Fragment& big, Fragment& small, bool keep_small) {
#pragma unroll
  for (int i = 0; i < big.num_elements; ++i) {
    const float x = big.x[i];
    big.x[i] = wmma::__float_to_tf32(x);
    if (keep_small) small.x[i] = wmma::__float_to_tf32(x - big.x[i]);
  }
}

// c += a b, as three TF32 products (small terms first) or one.
template <bool three_products, class A, class B>
__device__ __forceinline__ void mma_tf32(accumulator& c, const A& a_big, const A& a_small,
                                         const B& b_big, const B& b_small) {
  if constexpr (three_products) {
    wmma::mma_sync(c, a_small, b_big, c);
    wmma::mma_sync(c, a_big, b_small, c);
  }
  wmma::mma_sync(c, a_big, b_big, c);
}
}  // namespace tc_detail
#endif

template <bool three_products>
__global__ void __launch_bounds__(tensor_core_tile::threads)
    attention2d_forward_tc_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                  const float* __restrict__ v, float* __restrict__ o,
                                  float* __restrict__ lse, attention_dims g) {
#if !SEGKIT_ATTENTION_TF32
  __trap();  // TF32 fragments need sm_80; the launcher checks the binary's version first
#else
  using namespace tensor_core_tile;
  using namespace tc_detail;
  SEGKIT_DYNAMIC_SHARED(float, shared);
  const auto out = tc_output_layout_of(g.dvh);
  float* os = shared;                 // [queries][out.ld]: the O accumulator
  float* ps = os + queries * out.ld;  // [queries][ld]: scores, then probabilities
  float* staging = ps + queries * ld;
  float* qs = staging;                     // [qk_channels][ld]: Q chunk, column = query
  float* ks = staging + qk_channels * ld;  // [qk_channels][ld]: K chunk, column = key
  float* vs = staging;                     // [v_channels][ld]: V chunk, column = key
  float* row_max = staging + staging_floats;
  float* row_sum = row_max + queries;

  const int64_t nh = blockIdx.y, n = nh / g.heads, h = nh % g.heads;
  const int64_t l0 = int64_t(blockIdx.x) * queries;
  const int rows = int(g.l - l0 < queries ? g.l - l0 : queries);
  const float* qp = q + (n * g.d + h * g.dh) * g.l + l0;
  const float* kp = k + (n * g.d + h * g.dh) * g.s;
  const float* vp = v + (n * g.dv + h * g.dvh) * g.s;
  const int t = threadIdx.x, lane = t % 32, row0 = (t / 32) * 16;

  for (int64_t e = t; e < queries * out.ld; e += threads) os[e] = 0.f;
  if (t < queries) {
    row_max[t] = -INFINITY;
    row_sum[t] = 0.f;
  }
  __syncthreads();  // the channel loop's barriers do not run when d = 0
  for (int64_t s0 = 0; s0 < g.s; s0 += keys) {
    const int cols = int(g.s - s0 < keys ? g.s - s0 : keys);
    const float* kt = kp + s0;
    // scores[query][key] = sum over channels of Q[ch][query] K[ch][key]
    accumulator score[keys / 16];
#pragma unroll
    for (int j = 0; j < keys / 16; ++j) wmma::fill_fragment(score[j], 0.f);
    for (int64_t c0 = 0; c0 < g.dh; c0 += qk_channels) {
      const int chunk = int(g.dh - c0 < qk_channels ? g.dh - c0 : qk_channels);
      __syncthreads();  // the staging area's previous readers are done
      for (int e = t; e < qk_channels * queries; e += threads) {
        const int i = e % queries, c = e / queries;
        const bool channel = c < chunk;
        qs[c * ld + i] = channel && i < rows ? qp[(c0 + c) * g.l + i] : 0.f;
        ks[c * ld + i] = channel && i < cols ? kt[(c0 + c) * g.s + i] : 0.f;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < qk_channels; kk += 8) {
        if (kk >= chunk) continue;  // warp-uniform; channels past the chunk are zeros
        tf32_fragment<wmma::matrix_a, wmma::col_major> a_big, a_small;
        wmma::load_matrix_sync(a_big, qs + kk * ld + row0, ld);
        split_tf32(a_big, a_small, three_products);
#pragma unroll
        for (int j = 0; j < keys / 16; ++j) {
          if (16 * j >= cols) continue;  // no key of this fragment exists: its scores stay 0
          tf32_fragment<wmma::matrix_b, wmma::row_major> b_big, b_small;
          wmma::load_matrix_sync(b_big, ks + kk * ld + 16 * j, ld);
          split_tf32(b_big, b_small, three_products);
          mma_tf32<three_products>(score[j], a_big, a_small, b_big, b_small);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < keys / 16; ++j)
      wmma::store_matrix_sync(ps + row0 * ld + 16 * j, score[j], ld, wmma::mem_row_major);
    __syncwarp();
    // The online-softmax step on this warp's rows (the CPU's math::), then O's rows rescaled.
    for (int i = 0; i < 16; ++i) {
      const int r = row0 + i;
      float* row = ps + r * ld;
      const float x0 = lane < cols ? g.scale * row[lane] : -INFINITY;
      const float x1 = lane + 32 < cols ? g.scale * row[lane + 32] : -INFINITY;
      const float tile_max = cuda_detail::warp_max(fmaxf(x0, x1));
      float running = row_max[r];
      const float factor = math::online_softmax_rescale(running, tile_max);
      const float e0 = lane < cols ? expf(x0 - running) : 0.f;
      const float e1 = lane + 32 < cols ? expf(x1 - running) : 0.f;
      row[lane] = e0;
      row[lane + 32] = e1;
      const float sum = cuda_detail::warp_sum(e0 + e1);
      __syncwarp();  // every lane has read row_max[r] before lane 0 replaces it
      if (lane == 0) {
        row_max[r] = running;
        row_sum[r] = row_sum[r] * factor + sum;
      }
      for (int64_t c = lane; c < out.columns; c += 32) os[r * out.ld + c] *= factor;
    }
    __syncwarp();
    // O[query][ch] += sum over keys of P[query][key] V[ch][key], one V chunk at a time
    for (int64_t c0 = 0; c0 < out.columns; c0 += v_channels) {
      const int chunk = int(out.columns - c0 < v_channels ? out.columns - c0 : v_channels);
      __syncthreads();  // the staging area's previous readers are done
      for (int e = t; e < v_channels * keys; e += threads) {
        const int key = e % keys, c = e / keys;
        vs[c * ld + key] = c0 + c < g.dvh && key < cols ? vp[(c0 + c) * g.s + s0 + key] : 0.f;
      }
      __syncthreads();
      accumulator acc[v_channels / 16];
#pragma unroll
      for (int j = 0; j < v_channels / 16; ++j)
        if (16 * j < chunk)
          wmma::load_matrix_sync(acc[j], os + row0 * out.ld + c0 + 16 * j, out.ld,
                                 wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < keys; kk += 8) {
        if (kk >= cols) continue;  // probabilities and V past the last key are zeros
        tf32_fragment<wmma::matrix_a, wmma::row_major> a_big, a_small;
        wmma::load_matrix_sync(a_big, ps + row0 * ld + kk, ld);
        split_tf32(a_big, a_small, three_products);
#pragma unroll
        for (int j = 0; j < v_channels / 16; ++j) {
          if (16 * j >= chunk) continue;
          tf32_fragment<wmma::matrix_b, wmma::col_major> b_big, b_small;
          wmma::load_matrix_sync(b_big, vs + 16 * j * ld + kk, ld);
          split_tf32(b_big, b_small, three_products);
          mma_tf32<three_products>(acc[j], a_big, a_small, b_big, b_small);
        }
      }
#pragma unroll
      for (int j = 0; j < v_channels / 16; ++j)
        if (16 * j < chunk)
          wmma::store_matrix_sync(os + row0 * out.ld + c0 + 16 * j, acc[j], out.ld,
                                  wmma::mem_row_major);
    }
  }
  __syncthreads();
  float* op = o + (n * g.dv + h * g.dvh) * g.l + l0;
  for (int64_t e = t; e < g.dvh * queries; e += threads) {
    const int r = int(e % queries);
    if (r < rows) op[(e / queries) * g.l + r] = os[r * out.ld + e / queries] / row_sum[r];
  }
  if (t < rows) lse[nh * g.l + l0 + t] = math::online_softmax_lse(row_max[t], row_sum[t]);
#endif
}

// Whether the current device can run this binary's tensor-core kernels, and the shared memory
// a block may opt into there. Found once per device, when both kernels' opt-in maximum is set
// to that limit: setting it per call to the call's need would let two host threads with
// different d_v lower it under each other's launch.
struct tc_device_support {
  bool usable = false;
  size_t shared_limit = 0;
};

inline tc_device_support tc_support_of_current_device() {
  static std::mutex mutex;
  static std::map<int, tc_device_support> known;
  int device = 0;
  cudaGetDevice(&device);
  const std::lock_guard<std::mutex> lock(mutex);
  const auto found = known.find(device);
  if (found != known.end()) return found->second;
  tc_device_support support;
  const void* kernels[] = {reinterpret_cast<const void*>(&attention2d_forward_tc_kernel<true>),
                           reinterpret_cast<const void*>(&attention2d_forward_tc_kernel<false>)};
  cudaFuncAttributes attributes{};
  int limit = 0;
  // ptxVersion is the architecture the kernel was compiled for (10 x major + minor; the
  // __CUDA_ARCH__ it saw): a build for sm_75 only, JIT-compiled on a newer device, reports
  // binaryVersion = the device's but runs the trap above.
  bool usable = cudaFuncGetAttributes(&attributes, kernels[0]) == cudaSuccess &&
                attributes.ptxVersion >= 80 &&
                cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) ==
                    cudaSuccess;
  for (const void* kernel : kernels)
    usable = usable && cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            limit) == cudaSuccess;
  if (usable) {
    support = {true, size_t(limit)};
  } else {
    cudaGetLastError();  // a failed query must not surface at the fallback's launch check
  }
  known[device] = support;
  return support;
}

// Launches the tensor-core forward if this binary and device can run it with the shared
// memory dvh needs; returns false (nothing launched) otherwise.
inline bool launch_attention2d_forward_tc(const float* q, const float* k, const float* v, float* o,
                                          float* lse, const attention_dims& g, int64_t nh,
                                          bool allow_tf32, cudaStream_t stream) {
  using namespace tensor_core_tile;
  const auto support = tc_support_of_current_device();
  const size_t bytes = tc_forward_shared_bytes(g.dvh);
  if (!support.usable || bytes > support.shared_limit) return false;
  const dim3 grid = grid_of((g.l + queries - 1) / queries, nh);
  if (allow_tf32)
    SEGKIT_LAUNCH(attention2d_forward_tc_kernel<false>, grid, threads, bytes, stream, q, k, v, o,
                  lse, g);
  else
    SEGKIT_LAUNCH(attention2d_forward_tc_kernel<true>, grid, threads, bytes, stream, q, k, v, o,
                  lse, g);
  return true;
}

}  // namespace segkit::ops::cuda_kernels
