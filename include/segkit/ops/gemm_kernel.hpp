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

// Panel q of op(A)[i0 .. i0+mc, p0 .. p0+kc] (rows q*mr ..), k-major, zero-padded.
inline void pack_a_panel(int64_t mr, bool ta, const float* a, int64_t lda, int64_t i0,
                         int64_t p0, int64_t mc, int64_t kc, int64_t q, float* out) {
  const int64_t rows = std::min(mr, mc - q * mr);
  float* dst = out + q * mr * kc;
  if (ta) {  // op(A) rows are columns of A: each k reads a contiguous run of rows
    for (int64_t p = 0; p < kc; ++p) {
      const float* src = a + (p0 + p) * lda + i0 + q * mr;
      for (int64_t i = 0; i < rows; ++i) dst[p * mr + i] = src[i];
      for (int64_t i = rows; i < mr; ++i) dst[p * mr + i] = 0.f;
    }
    return;
  }
  for (int64_t i = 0; i < rows; ++i) {  // read each row of A contiguously
    const float* src = a + (i0 + q * mr + i) * lda + p0;
    for (int64_t p = 0; p < kc; ++p) dst[p * mr + i] = src[p];
  }
  for (int64_t i = rows; i < mr; ++i)
    for (int64_t p = 0; p < kc; ++p) dst[p * mr + i] = 0.f;
}

// Panel q of op(B)[p0 .. p0+kc, j0 .. j0+nc] (columns j0 + q*nr ..) into out, zero-padded.
inline void pack_b_panel(int64_t nr, bool tb, const float* b, int64_t ldb, int64_t p0,
                         int64_t j0, int64_t kc, int64_t nc, int64_t q, float* out) {
  const int64_t cols = std::min(nr, nc - q * nr);
  float* dst = out;
  if (tb) {  // op(B) columns are rows of B: read each contiguously
    for (int64_t j = 0; j < cols; ++j) {
      const float* src = b + (j0 + q * nr + j) * ldb + p0;
      for (int64_t p = 0; p < kc; ++p) dst[p * nr + j] = src[p];
    }
  } else {
    for (int64_t p = 0; p < kc; ++p) {
      const float* src = b + (p0 + p) * ldb + j0 + q * nr;
      for (int64_t j = 0; j < cols; ++j) dst[p * nr + j] = src[j];
    }
  }
  if (cols < nr)
    for (int64_t p = 0; p < kc; ++p)
      for (int64_t j = cols; j < nr; ++j) dst[p * nr + j] = 0.f;
}

inline workspace<cpu>& packing_buffer() {
  thread_local workspace<cpu> buffer;
  return buffer;
}

// One thread's GEMM: C = alpha op(A) op(B) + beta C for m, n, k >= 1. The A block (up to
// 240 x 256) is packed once per depth slice and stays in L2. Each 256 x 32 B panel is packed
// right before the first row block's micro-kernels use it (so they read it from L1) into a
// slot that later row blocks reuse instead of packing it again.
template <int MR, int NV>
void gemm_serial_tiled(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                        const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                        float* c, int64_t ldc) {
  constexpr int64_t mr = MR, nr = 16 * NV;
  const int64_t kc_full = std::min(k, kc_max), mc_full = std::min(m, mc_max);
  const int64_t nc_full = std::min(n, nc_max);
  const int64_t b_floats = ((nc_full + nr - 1) / nr) * nr * kc_full;
  const int64_t a_floats = ((mc_full + mr - 1) / mr) * mr * kc_full;
  float* packed_b = packing_buffer().reserve_elements<float>(size_t(a_floats + b_floats + 16));
  packed_b = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(packed_b) + 63) & ~uintptr_t(63));
  float* packed_a = packed_b + b_floats;  // b_floats is a multiple of 32: stays aligned
  for (int64_t j0 = 0; j0 < n; j0 += nc_max) {
    const int64_t nc = std::min(nc_max, n - j0), b_panels = (nc + nr - 1) / nr;
    for (int64_t p0 = 0; p0 < k; p0 += kc_max) {
      const int64_t kc = std::min(kc_max, k - p0);
      const float beta_here = p0 == 0 ? beta : 1.f;
      for (int64_t i0 = 0; i0 < m; i0 += mc_max) {
        const int64_t mc = std::min(mc_max, m - i0), a_panels = (mc + mr - 1) / mr;
        for (int64_t q = 0; q < a_panels; ++q) pack_a_panel(mr, ta, a, lda, i0, p0, mc, kc, q, packed_a);
        for (int64_t jq = 0; jq < b_panels; ++jq) {
          float* panel = packed_b + jq * nr * kc;
          if (i0 == 0) pack_b_panel(nr, tb, b, ldb, p0, j0, kc, nc, jq, panel);
          for (int64_t iq = 0; iq < a_panels; ++iq)
            micro_kernel<MR, NV>(kc, packed_a + iq * mr * kc, panel,
                         c + (i0 + iq * mr) * ldc + j0 + jq * nr, ldc, alpha, beta_here,
                         std::min(mr, mc - iq * mr), std::min(nr, nc - jq * nr));
        }
      }
    }
  }
}

// 8x48 tiles when they waste no rows and 12x32 tiles would.
inline bool use_8x48(int64_t m) { return m % 12 != 0 && m % 8 == 0; }

inline void gemm_serial(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                        const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                        float* c, int64_t ldc) {
  if (use_8x48(m))
    gemm_serial_tiled<8, 3>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else
    gemm_serial_tiled<12, 2>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// C = alpha op(A) op(B) + beta C for m, n, k >= 1. C is cut into up to 2 chunks per thread
// of whole tiles (column ranges when there are enough panels, else row ranges); threads take
// chunks dynamically, each running the serial GEMM with its own packing buffers. There is no
// barrier but the final join, and a thread the OS deschedules on a busy machine leaves its
// remaining chunks to the others. Each element is computed by one chunk the same way whichever
// thread runs it, so results do not depend on scheduling.
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
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
    gemm_serial(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
#ifdef _OPENMP
  // Every chunk packs the whole of the operand it does not split, so more chunks balance
  // better but pack more: 2 per thread keeps that repacking to ~10% of a 1024^3 product.
  const int64_t chunks = std::min(panels, 2 * threads);
#pragma omp parallel for num_threads(static_cast<int>(threads)) schedule(dynamic, 1)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    if (split_columns) {
      const int64_t j0 = panels * chunk / chunks * nr;
      const int64_t j1 = std::min(n, panels * (chunk + 1) / chunks * nr);
      if (j1 > j0)
        gemm_serial(ta, tb, m, j1 - j0, k, alpha, a, lda, tb ? b + j0 * ldb : b + j0, ldb, beta,
                    c + j0, ldc);
    } else {
      const int64_t i0 = panels * chunk / chunks * mr;
      const int64_t i1 = std::min(m, panels * (chunk + 1) / chunks * mr);
      if (i1 > i0)
        gemm_serial(ta, tb, i1 - i0, n, k, alpha, ta ? a + i0 : a + i0 * lda, lda, b, ldb, beta,
                    c + i0 * ldc, ldc);
    }
  }
#endif
}

}  // namespace segkit::ops::gemm_kernel
#endif
