// segkit/ops/gemm_kernel.hpp — segkit's own packed FP32 GEMM for AVX-512 CPUs, used by
// ops::gemm (matmul.hpp) for all but tiny products when compiled with AVX-512 (-march=native
// on such a machine); elsewhere ops::gemm uses Eigen.
// Why: Eigen 3.4's AVX-512 GEMM uses a 48x4 register tile (12 accumulators) and measured a
// third of one core's FP32 peak here; the 12x32 (or 8x48) tiles keep 24 accumulators in zmm
// registers and broadcast A from memory into each FMA, the layout BLIS and oneDNN use.
// Structure: for each KC depth slice and MC row block, pack op(A) into MR-tall panels (L2),
// then for each column panel pack op(B) (L1) and run the micro-kernel down the rows. Threads
// take disjoint chunks of C (see gemm()); inside an enclosing parallel region it runs on the
// calling thread only.
// Guarantees: BLAS semantics (beta == 0 never reads C), results independent of scheduling,
// no allocation once the per-thread packing buffers have grown.
#pragma once
#if defined(__AVX512F__) && !defined(__CUDACC__)
#define SEGKIT_HAVE_AVX512_GEMM 1
#include <immintrin.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/workspace.hpp"

namespace segkit::ops::gemm_kernel {

// Two register tiles, MR rows x NV 16-float vectors (MR * NV accumulators): 12x32 in general,
// 8x48 when M is a multiple of 8 but not of 12 (64-channel convolutions: no padded rows).
constexpr int64_t kc_max = 256;            // B micro-panel kc x (32 or 48) floats: L1
constexpr int64_t mc_max = 240;            // A block mc x kc = 240 KiB: L2
constexpr int64_t nc_max = 8192;           // packed B slots kc x nc <= 8 MiB

// C tile (rows x cols <= MR x 16 NV) = alpha * A_panel B_panel + beta * C (beta == 0: no read).
template <int MR, int NV>
inline void micro_kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                         float alpha, float beta, int64_t rows, int64_t cols) {
  constexpr int64_t nr = 16 * NV;
  // Start fetching the C tile now: it is read (beta != 0) and written only after the kc loop,
  // and after the first depth slice it usually sits in L3, not L2 (-5% time on 1024^3).
  for (int i = 0; i < MR && i < rows; ++i)
    for (int v = 0; v < NV; ++v)
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16 * v), _MM_HINT_T0);
  __m512 acc[MR][NV];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    __m512 bv[NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_load_ps(b + p * nr + 16 * v);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[p * MR + i]);
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  __mmask16 mask[NV];
  for (int v = 0; v < NV; ++v) {
    const int64_t left = cols - 16 * v;
    mask[v] = static_cast<__mmask16>(left >= 16 ? 0xFFFF : left <= 0 ? 0 : (1u << left) - 1u);
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    if (i >= rows) break;
    float* row = c + i * ldc;
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) {
      __m512 r = _mm512_mul_ps(va, acc[i][v]);
      if (beta != 0.f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], row + 16 * v), r);
      _mm512_mask_storeu_ps(row + 16 * v, mask[v], r);
    }
  }
}

// 16x16 transpose in registers, used by the packers. (All-lanes masked forms: GCC 12 warns
// that the plain ones' _mm512_undefined_ps() "may be used uninitialized"; same instructions.)
inline void transpose16(__m512* r) {  // in place: lane j of r[i] <-> lane i of r[j]
  constexpr __mmask16 all = 0xFFFF;
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_mask_unpacklo_ps(r[2 * i], all, r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_mask_unpackhi_ps(r[2 * i], all, r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_mask_shuffle_ps(t[4 * i], all, t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_mask_shuffle_ps(t[4 * i], all, t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_mask_shuffle_ps(t[4 * i + 1], all, t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_mask_shuffle_ps(t[4 * i + 1], all, t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = h; i < h + 4; ++i) {
      t[i] = _mm512_mask_shuffle_f32x4(r[i], all, r[i], r[i + 4], 0x88);
      t[i + 4] = _mm512_mask_shuffle_f32x4(r[i], all, r[i], r[i + 4], 0xDD);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_mask_shuffle_f32x4(t[i], all, t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_mask_shuffle_f32x4(t[i], all, t[i], t[i + 8], 0xDD);
  }
}

// Operands are given to the GEMM as packers, so that a convolution can pack its im2col matrix
// straight from the image (ops/conv2d_implicit.hpp) without materialising it.
//   PackA: pa(i0, rows, p0, kc, mr, dst) writes dst[p * mr + i] = op(A)[i0 + i][p0 + p]
//          for i < rows, p < kc (the GEMM zero-pads rows .. mr).
//   PackB: pb(p0, kc, j0, cols, nr, dst) writes dst[p * nr + j] = op(B)[p0 + p][j0 + j]
//          for j < cols, p < kc (the GEMM zero-pads cols .. nr).
//   COut:  out.at(i, j, run) returns &C[i][j] and sets run to how many columns from j on are
//          contiguous; rows are out.ld() floats apart within such a run.
struct matrix_a {
  bool ta;
  const float* a;
  int64_t lda;
  void operator()(int64_t i0, int64_t rows, int64_t p0, int64_t kc, int64_t mr, float* dst) const {
    if (ta) {  // op(A) rows are columns of A: each k reads a contiguous run of rows
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = a + (p0 + p) * lda + i0;
        for (int64_t i = 0; i < rows; ++i) dst[p * mr + i] = src[i];
      }
      return;
    }
    // 16 depth steps at a time: 16-float runs of the panel's rows (rows .. 16 as zeros) are
    // transposed in registers and stored mr (<= 16) lanes wide, not one float at a time.
    const __mmask16 lanes = static_cast<__mmask16>((1u << mr) - 1u);
    for (int64_t p = 0; p < kc; p += 16) {
      const int64_t w = std::min<int64_t>(16, kc - p);
      const __mmask16 load = static_cast<__mmask16>((1u << w) - 1u);
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i < rows ? _mm512_maskz_loadu_ps(load, a + (i0 + i) * lda + p0 + p)
                        : _mm512_setzero_ps();
      transpose16(r);
      for (int64_t q = 0; q < w; ++q) _mm512_mask_storeu_ps(dst + (p + q) * mr, lanes, r[q]);
    }
  }
};

struct matrix_b {
  bool tb;
  const float* b;
  int64_t ldb;
  void operator()(int64_t p0, int64_t kc, int64_t j0, int64_t cols, int64_t nr, float* dst) const {
    if (tb) {  // op(B) columns are rows of B: read each contiguously
      for (int64_t j = 0; j < cols; ++j) {
        const float* src = b + (j0 + j) * ldb + p0;
        for (int64_t p = 0; p < kc; ++p) dst[p * nr + j] = src[p];
      }
      return;
    }
    for (int64_t p = 0; p < kc; ++p) {
      const float* src = b + (p0 + p) * ldb + j0;
      for (int64_t j = 0; j < cols; ++j) dst[p * nr + j] = src[j];
    }
  }
};

struct matrix_c {
  float* c;
  int64_t ldc;
  float* at(int64_t i, int64_t j, int64_t& run) const {
    run = INT64_MAX;
    return c + i * ldc + j;
  }
  int64_t ld() const { return ldc; }
};

inline workspace<cpu>& packing_buffer() {
  thread_local workspace<cpu> buffer;
  return buffer;
}

// C[i][j] = alpha * tile[i][j] + beta * C[i][j] for a tile whose columns cross a break in C's
// layout; the same fused multiply-add as micro_kernel, so both give identical bits.
template <class COut>
void store_split(const COut& out, int64_t row, int64_t col, int64_t rows, int64_t cols,
                 const float* tile, int64_t ldt, float alpha, float beta) {
  for (int64_t c = 0; c < cols;) {
    int64_t run = 0;
    float* dst = out.at(row, col + c, run);
    const int64_t len = std::min(run, cols - c);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t t = 0; t < len; ++t) {
        const float v = alpha * tile[i * ldt + c + t];
        float& d = dst[i * out.ld() + t];
        d = beta == 0.f ? v : std::fma(beta, d, v);
      }
    c += len;
  }
}

// One thread's GEMM over rows [i_begin, i_end) and columns [j_begin, j_end) of C, depth k.
// The A block (up to 240 x 256) is packed once per depth slice and stays in L2. Each 256 x nr
// B panel is packed right before the first row block's micro-kernels use it (so they read it
// from L1) into a slot that later row blocks reuse instead of packing it again.
template <int MR, int NV, class PackA, class PackB, class COut>
void gemm_region(const PackA& pa, const PackB& pb, const COut& out, int64_t i_begin,
                 int64_t i_end, int64_t j_begin, int64_t j_end, int64_t k, float alpha,
                 float beta) {
  constexpr int64_t mr = MR, nr = 16 * NV;
  const int64_t m = i_end - i_begin, n = j_end - j_begin;
  const int64_t kc_full = std::min(k, kc_max), mc_full = std::min(m, mc_max);
  const int64_t nc_full = std::min(n, nc_max);
  const int64_t b_floats = ((nc_full + nr - 1) / nr) * nr * kc_full;
  const int64_t a_floats = ((mc_full + mr - 1) / mr) * mr * kc_full;
  float* packed_b = packing_buffer().reserve_elements<float>(size_t(a_floats + b_floats + 16));
  packed_b = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(packed_b) + 63) & ~uintptr_t(63));
  float* packed_a = packed_b + b_floats;  // b_floats is a multiple of 32: stays aligned
  alignas(64) float tile[MR * nr];
  for (int64_t j0 = 0; j0 < n; j0 += nc_max) {
    const int64_t nc = std::min(nc_max, n - j0), b_panels = (nc + nr - 1) / nr;
    for (int64_t p0 = 0; p0 < k; p0 += kc_max) {
      const int64_t kc = std::min(kc_max, k - p0);
      const float beta_here = p0 == 0 ? beta : 1.f;
      for (int64_t i0 = 0; i0 < m; i0 += mc_max) {
        const int64_t mc = std::min(mc_max, m - i0), a_panels = (mc + mr - 1) / mr;
        for (int64_t q = 0; q < a_panels; ++q) {
          const int64_t rows = std::min(mr, mc - q * mr);
          float* dst = packed_a + q * mr * kc;
          pa(i_begin + i0 + q * mr, rows, p0, kc, mr, dst);
          if (rows < mr)
            for (int64_t p = 0; p < kc; ++p)
              for (int64_t i = rows; i < mr; ++i) dst[p * mr + i] = 0.f;
        }
        for (int64_t jq = 0; jq < b_panels; ++jq) {
          float* panel = packed_b + jq * nr * kc;
          const int64_t cols = std::min(nr, nc - jq * nr), col = j_begin + j0 + jq * nr;
          if (i0 == 0) {
            pb(p0, kc, col, cols, nr, panel);
            if (cols < nr)
              for (int64_t p = 0; p < kc; ++p)
                for (int64_t j = cols; j < nr; ++j) panel[p * nr + j] = 0.f;
          }
          for (int64_t iq = 0; iq < a_panels; ++iq) {
            const int64_t rows = std::min(mr, mc - iq * mr), row = i_begin + i0 + iq * mr;
            int64_t run = 0;
            float* cp = out.at(row, col, run);
            if (run >= cols) {
              micro_kernel<MR, NV>(kc, packed_a + iq * mr * kc, panel, cp, out.ld(), alpha,
                                   beta_here, rows, cols);
            } else {
              micro_kernel<MR, NV>(kc, packed_a + iq * mr * kc, panel, tile, nr, 1.f, 0.f, rows,
                                   cols);
              store_split(out, row, col, rows, cols, tile, nr, alpha, beta_here);
            }
          }
        }
      }
    }
  }
}

// 8x48 tiles when they waste no rows and 12x32 tiles would.
inline bool use_8x48(int64_t m) { return m % 12 != 0 && m % 8 == 0; }

template <class PackA, class PackB, class COut>
void gemm_region(const PackA& pa, const PackB& pb, const COut& out, int64_t m, int64_t i_begin,
                 int64_t i_end, int64_t j_begin, int64_t j_end, int64_t k, float alpha,
                 float beta) {
  if (use_8x48(m))
    gemm_region<8, 3>(pa, pb, out, i_begin, i_end, j_begin, j_end, k, alpha, beta);
  else
    gemm_region<12, 2>(pa, pb, out, i_begin, i_end, j_begin, j_end, k, alpha, beta);
}

// C = alpha op(A) op(B) + beta C for m, n, k >= 1. C is cut into up to 2 chunks per thread
// of whole tiles (column ranges when there are enough panels, else row ranges); threads take
// chunks dynamically, each running the serial GEMM with its own packing buffers. There is no
// barrier but the final join, and a thread the OS deschedules on a busy machine leaves its
// remaining chunks to the others. Each element is computed by one chunk the same way whichever
// thread runs it, so results do not depend on scheduling or on the number of threads.
template <class PackA, class PackB, class COut>
void gemm_packed(const PackA& pa, const PackB& pb, const COut& out, int64_t m, int64_t n,
                 int64_t k, float alpha, float beta) {
  int64_t threads = 1;
#ifdef _OPENMP
  if (!omp_in_parallel() && double(m) * n * k >= 1e6) threads = num_threads();
#endif
  const int64_t mr = use_8x48(m) ? 8 : 12, nr = use_8x48(m) ? 48 : 32;
  const int64_t col_panels = (n + nr - 1) / nr, row_panels = (m + mr - 1) / mr;
  const bool split_columns = col_panels >= 4 * threads || col_panels >= row_panels;
  const int64_t panels = split_columns ? col_panels : row_panels;
  threads = std::min(threads, panels);
  if (threads <= 1) {
    gemm_region(pa, pb, out, m, 0, m, 0, n, k, alpha, beta);
    return;
  }
#ifdef _OPENMP
  // Every chunk packs the whole of the operand it does not split, so more chunks balance
  // better but pack more: 2 per thread keeps that repacking to ~10% of a 1024^3 product.
  // A tile costs the same full or partial, so chunks are counted in tiles, and the larger
  // chunks come first: the first panels % chunks of them get one tile more. Taken in order,
  // that splits the tiles as evenly as whole tiles allow (1024^3, 22 panels: 6+5 | 6+5;
  // the even spread 5,6,5,6 it replaces gave one thread 5+5 and the other 6+6).
  const int64_t chunks = std::min(panels, 2 * threads);
  const int64_t per = panels / chunks, extra = panels % chunks;
  const auto first_panel = [&](int64_t chunk) { return chunk * per + std::min(chunk, extra); };
#pragma omp parallel for num_threads(static_cast<int>(threads)) schedule(dynamic, 1)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    if (split_columns) {
      const int64_t j0 = first_panel(chunk) * nr;
      const int64_t j1 = std::min(n, first_panel(chunk + 1) * nr);
      if (j1 > j0) gemm_region(pa, pb, out, m, 0, m, j0, j1, k, alpha, beta);
    } else {
      const int64_t i0 = first_panel(chunk) * mr;
      const int64_t i1 = std::min(m, first_panel(chunk + 1) * mr);
      if (i1 > i0) gemm_region(pa, pb, out, m, i0, i1, 0, n, k, alpha, beta);
    }
  }
#endif
}

inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  gemm_packed(matrix_a{ta, a, lda}, matrix_b{tb, b, ldb}, matrix_c{c, ldc}, m, n, k, alpha, beta);
}

}  // namespace segkit::ops::gemm_kernel
#endif
