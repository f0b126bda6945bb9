// segkit/ops/conv2d_implicit.hpp — conv2d as implicit GEMMs on the packed AVX-512 kernel
// (gemm_kernel.hpp): the im2col matrix is never materialised; the GEMM's B-panel packer reads
// the images with the convolution's index math. Used by conv2d.hpp when SEGKIT_HAVE_AVX512_GEMM.
// Provides (namespace detail): conv_forward_implicit (y = W * cols(x) over the whole batch,
// one GEMM per group with N = batch * Ho * Wo columns), conv_weight_grad_implicit (dW +=
// dY * cols(x)^T, one GEMM per group with K = batch * Ho * Wo), conv_input_grad_implicit (for
// stride 1: dx += the convolution of dy with the flipped, transposed weights, again a forward
// implicit GEMM; no column buffer and no col2im).
// Guarantees: every output element is computed by one GEMM chunk with a fixed summation order,
// so results are bit-identical across runs and independent of the thread count.
#pragma once
#include "segkit/ops/conv2d_geometry.hpp"
#include "segkit/ops/gemm_kernel.hpp"

#ifdef SEGKIT_HAVE_AVX512_GEMM
namespace segkit::ops::detail {

// Lanes l of a 16-float vector with lo <= l < hi.
inline __mmask16 lane_mask(int64_t lo, int64_t hi) {
  lo = std::max<int64_t>(lo, 0);
  hi = std::min<int64_t>(hi, 16);
  if (hi <= lo) return 0;
  return static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

// The im2col matrix of one group of a batch: [cg*kh*kw rows][n*ho*wo columns]; row
// (c*kh + i)*kw + j, column s*ho*wo + oh*wo + ow holds x[s][c][oh*sh - ph + i*dh][ow*sw - pw +
// j*dw], or 0 where that is padding. A pointwise convolution is seen as one 1 x (H*W) row.
struct conv_columns {
  struct run {  // consecutive columns within one output row
    int64_t s, oh, ow, len;
  };
  static constexpr int64_t max_runs = gemm_kernel::kc_max > 48 ? gemm_kernel::kc_max : 48;  // runs <= columns asked for

  const float* x;  // sample 0, first channel of the group
  int64_t sample, h, w, kh, kw, ho, wo, p, sh, sw, ph, pw, dh, dw;

  conv_columns(const conv2d_params& prm, const conv2d_geometry& g, const float* x_group)
      : x(x_group), sample(g.c * g.h * g.w), h(g.h), w(g.w), kh(g.kh), kw(g.kw), ho(g.ho),
        wo(g.wo), p(g.p), sh(prm.stride_h), sw(prm.stride_w), ph(prm.pad_h), pw(prm.pad_w),
        dh(prm.dilation_h), dw(prm.dilation_w) {
    if (g.pointwise()) h = ho = 1, w = wo = g.p;
  }

  int runs(int64_t col0, int64_t len, run* out) const {
    int64_t s = col0 / p, pix = col0 - s * p, oh = pix / wo, ow = pix - oh * wo;
    int count = 0;
    while (len > 0) {
      const int64_t n = std::min(len, wo - ow);
      out[count++] = {s, oh, ow, n};
      len -= n;
      ow = 0;
      if (++oh == ho) oh = 0, ++s;
    }
    return count;
  }

  // Row (c, i, j) at the given runs into dst[t * step], t counting along the runs.
  void row(int64_t c, int64_t i, int64_t j, const run* runs, int count, float* dst,
           int64_t step) const {
    const int64_t off_w = j * dw - pw;
    const index_range valid = valid_outputs(off_w, sw, w, wo);
    const float* plane = x + c * h * w;
    for (int r = 0; r < count; ++r) {
      const run& u = runs[r];
      float* d = dst;
      dst += u.len * step;
      const int64_t ih = u.oh * sh - ph + i * dh;
      if (ih < 0 || ih >= h) {
        if (step == 1)
          std::fill(d, d + u.len, 0.f);
        else
          for (int64_t t = 0; t < u.len; ++t) d[t * step] = 0.f;
        continue;
      }
      const float* src = plane + u.s * sample + ih * w + off_w;  // src[ow * sw]
      const int64_t lo = valid.first - u.ow, hi = valid.last - u.ow;
      if (step == 1 && sw == 1) {
        const float* from = src + u.ow;
        for (int64_t t = 0; t < u.len; t += 16) {
          const __mmask16 store = lane_mask(0, u.len - t), load = lane_mask(lo - t, hi - t);
          _mm512_mask_storeu_ps(d + t, store, _mm512_maskz_loadu_ps(load, from + t));
        }
      } else {
        const int64_t a = std::clamp<int64_t>(lo, 0, u.len), b = std::clamp<int64_t>(hi, a, u.len);
        for (int64_t t = 0; t < a; ++t) d[t * step] = 0.f;
        if (sw == 1) {
          const float* from = src + u.ow;
          for (int64_t t = a; t < b; ++t) d[t * step] = from[t];
        } else {
          for (int64_t t = a; t < b; ++t) d[t * step] = src[(u.ow + t) * sw];
        }
        for (int64_t t = b; t < u.len; ++t) d[t * step] = 0.f;
      }
    }
  }
};

// B = cols(x): panel rows are matrix rows (k), read along output pixels.
struct conv_columns_b {
  conv_columns cols;
  void operator()(int64_t p0, int64_t kc, int64_t j0, int64_t n, int64_t nr, float* dst) const {
    conv_columns::run runs[conv_columns::max_runs];
    const int count = cols.runs(j0, n, runs);
    const int64_t taps = cols.kh * cols.kw;
    int64_t c = p0 / taps, i = (p0 % taps) / cols.kw, j = p0 % cols.kw;
    if (cols.sw == 1 && count <= 4 && cols.kw <= 8) return fast(p0, kc, runs, count, nr, dst);
    for (int64_t p = 0; p < kc; ++p) {
      cols.row(c, i, j, runs, count, dst + p * nr, 1);
      if (++j == cols.kw) {
        j = 0;
        if (++i == cols.kh) i = 0, ++c;
      }
    }
  }

  // Unit column stride, few runs (the common case): the masks and offsets of each (run, kernel
  // column j) are computed once per panel, leaving per matrix row one row check and <= 3
  // masked loads/stores per run.
  void fast(int64_t p0, int64_t kc, const conv_columns::run* runs, int count, int64_t nr,
            float* dst) const {
    const conv_columns& g = cols;
    __mmask16 load[4][8][3], store[4][3];
    const float* base[4];
    int64_t row0[4], at[4], vecs[4];
    for (int r = 0, t = 0; r < count; ++r) {
      const auto& u = runs[r];
      base[r] = g.x + u.s * g.sample + u.ow - g.pw;
      row0[r] = u.oh * g.sh - g.ph;
      at[r] = t;
      vecs[r] = (u.len + 15) / 16;
      for (int v = 0; v < 3; ++v) store[r][v] = lane_mask(0, u.len - 16 * v);
      for (int64_t j = 0; j < g.kw; ++j) {
        const index_range valid = valid_outputs(j * g.dw - g.pw, 1, g.w, g.wo);
        for (int v = 0; v < 3; ++v)
          load[r][j][v] = lane_mask(valid.first - u.ow - 16 * v, valid.last - u.ow - 16 * v) &
                          store[r][v];
      }
      t += static_cast<int>(u.len);
    }
    const int64_t taps = g.kh * g.kw, plane = g.h * g.w;
    int64_t c = p0 / taps, i = (p0 % taps) / g.kw, j = p0 % g.kw;
    for (int64_t p = 0; p < kc; ++p) {
      float* out = dst + p * nr;
      for (int r = 0; r < count; ++r) {
        const int64_t ih = row0[r] + i * g.dh;
        float* d = out + at[r];
        if (ih < 0 || ih >= g.h) {
          for (int v = 0; v < vecs[r]; ++v)
            _mm512_mask_storeu_ps(d + 16 * v, store[r][v], _mm512_setzero_ps());
          continue;
        }
        const float* src = base[r] + c * plane + ih * g.w + j * g.dw;
        for (int v = 0; v < vecs[r]; ++v)
          _mm512_mask_storeu_ps(d + 16 * v, store[r][v],
                                _mm512_maskz_loadu_ps(load[r][j][v], src + 16 * v));
      }
      if (++j == g.kw) {
        j = 0;
        if (++i == g.kh) i = 0, ++c;
      }
    }
  }
};

// dst[j * ldd + i] = src[i * lds + j] for i, j < 16, storing only the first `rows` rows of dst.
inline void transpose16(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows) {
  __m512 r[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_load_ps(src + i * lds);
  gemm_kernel::transpose16(r);
  for (int i = 0; i < 16 && i < rows; ++i) _mm512_store_ps(dst + i * ldd, r[i]);
}

// B = cols(x)^T: the depth is output pixels, the columns are matrix rows. Sixteen matrix rows
// at a time are gathered contiguously (vector loads) into a strip, which is then transposed
// 16x16 into the panel: storing the panel one float at a time cost as much as the dw GEMM's
// arithmetic (64 channels, 56x56).
struct conv_columns_bt {
  conv_columns cols;
  void operator()(int64_t p0, int64_t kc, int64_t j0, int64_t n, int64_t nr, float* dst) const {
    static_assert(gemm_kernel::kc_max % 16 == 0, "strip rows are whole vectors");
    conv_columns::run runs[conv_columns::max_runs];
    const int count = cols.runs(p0, kc, runs);
    const int64_t taps = cols.kh * cols.kw, ld = (kc + 15) / 16 * 16;
    alignas(64) float strip[16 * gemm_kernel::kc_max];
    for (int64_t q0 = 0; q0 < n; q0 += 16) {  // nr is a multiple of 16: q0 + 16 <= nr
      for (int64_t q = 0; q < 16; ++q) {
        float* s = strip + q * ld;
        const int64_t row = j0 + q0 + q;
        if (q0 + q < n) {
          cols.row(row / taps, (row % taps) / cols.kw, row % cols.kw, runs, count, s, 1);
          std::fill(s + kc, s + ld, 0.f);
        } else {
          std::fill(s, s + ld, 0.f);
        }
      }
      for (int64_t p = 0; p < kc; p += 16)
        transpose16(strip + p, ld, dst + p * nr + q0, nr, kc - p);
    }
  }
};

// A = one group's channels of an NCHW batch as [channels][n * p] (rows: channels).
struct nchw_rows_a {
  const float* y;  // sample 0, first channel of the group
  int64_t sample, p;
  // 16 depth steps at a time: the rows' 16-float runs are loaded as vectors (rows .. 16 as
  // zeros), transposed in registers and stored mr lanes wide (the scalar version was one
  // strided store per float, repeated by every 2-thread chunk of dw's GEMM). mr is 8 or 12.
  void operator()(int64_t i0, int64_t rows, int64_t p0, int64_t kc, int64_t mr, float* dst) const {
    const __mmask16 lanes = static_cast<__mmask16>((1u << mr) - 1u);
    for (int64_t t = 0, k = p0; t < kc;) {
      const int64_t s = k / p, pix = k - s * p, len = std::min(kc - t, p - pix);
      const float* src = y + s * sample + i0 * p + pix;
      for (int64_t u = 0; u < len; u += 16) {
        const int64_t w = std::min<int64_t>(16, len - u);
        const __mmask16 load = static_cast<__mmask16>((1u << w) - 1u);
        __m512 r[16];
        for (int i = 0; i < 16; ++i)
          r[i] = i < rows ? _mm512_maskz_loadu_ps(load, src + i * p + u) : _mm512_setzero_ps();
        gemm_kernel::transpose16(r);
        for (int64_t q = 0; q < w; ++q) _mm512_mask_storeu_ps(dst + (t + u + q) * mr, lanes, r[q]);
      }
      t += len, k += len;
    }
  }
};

// C = one group's channels of an NCHW batch as [channels][n * p].
struct nchw_c {
  float* y;
  int64_t sample, p;
  float* at(int64_t i, int64_t j, int64_t& run) const {
    const int64_t s = j / p, pix = j - s * p;
    run = p - pix;
    return y + s * sample + i * p + pix;
  }
  int64_t ld() const { return p; }
};

// y = W cols(x) (+ bias) when beta == 0, y += W cols(x) when beta == 1 (bias must be null).
inline void conv_forward_implicit(const conv2d_params& prm, const conv2d_geometry& g,
                                  const float* x, const float* w, const float* bias, float* y,
                                  float beta) {
  if (bias) {
    parallel_for(0, g.n * g.co, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, g.p)),
                 [&](int64_t first, int64_t last) {
                   for (int64_t plane = first; plane < last; ++plane)
                     std::fill(y + plane * g.p, y + (plane + 1) * g.p, bias[plane % g.co]);
                 });
    beta = 1.f;
  }
  for (int64_t grp = 0; grp < g.groups; ++grp)
    gemm_kernel::gemm_packed(gemm_kernel::matrix_a{false, w + grp * g.cog * g.ck, g.ck},
                             conv_columns_b{conv_columns(prm, g, x + grp * g.cg * g.h * g.w)},
                             nchw_c{y + grp * g.cog * g.p, g.co * g.p, g.p}, g.cog, g.n * g.p,
                             g.ck, 1.f, beta);
}

// dw += dy cols(x)^T, summed over the batch inside one GEMM per group.
inline void conv_weight_grad_implicit(const conv2d_params& prm, const conv2d_geometry& g,
                                      const float* x, const float* dy, float* dw) {
  for (int64_t grp = 0; grp < g.groups; ++grp)
    gemm_kernel::gemm_packed(nchw_rows_a{dy + grp * g.cog * g.p, g.co * g.p, g.p},
                             conv_columns_bt{conv_columns(prm, g, x + grp * g.cg * g.h * g.w)},
                             gemm_kernel::matrix_c{dw + grp * g.cog * g.ck, g.ck}, g.cog, g.ck,
                             g.n * g.p, 1.f, 1.f);
}

// For stride 1 the input gradient is a stride-1 convolution of dy with the weights flipped in
// space and with in/out channels swapped, padded by dilation * (k - 1) - pad. Returns false
// (nothing done) where that does not apply: strides > 1 or padding beyond the dilated kernel.
// scratch: room for the weights (g.co * g.ck floats).
inline bool conv_input_grad_implicit(const conv2d_params& prm, const conv2d_geometry& g,
                                     const float* w, const float* dy, float* dx,
                                     float* scratch) {
  conv2d_params flipped = prm;
  flipped.pad_h = prm.dilation_h * (g.kh - 1) - prm.pad_h;
  flipped.pad_w = prm.dilation_w * (g.kw - 1) - prm.pad_w;
  // Serves every size: with the C-tile prefetch in the micro-kernel it measured 3-7% faster
  // than per-sample column GEMMs + col2im also at 28x28 and 56x56 (docs/benchmarks.md), and
  // needs no column buffer.
  if (prm.stride_h != 1 || prm.stride_w != 1 || flipped.pad_h < 0 || flipped.pad_w < 0)
    return false;
  const auto g2 = conv2d_check("conv2d_backward", flipped, shape{g.n, g.co, g.ho, g.wo},
                               shape{g.c, g.cog, g.kh, g.kw});
  if (g2.ho != g.h || g2.wo != g.w) return false;
  // scratch[grp*cg + c][o][i][j] = w[grp*cog + o][c][kh-1-i][kw-1-j]
  const int64_t taps = g.kh * g.kw;
  parallel_for(0, g.c, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t cc = c0; cc < c1; ++cc) {
      const int64_t grp = cc / g.cg, c = cc % g.cg;
      for (int64_t o = 0; o < g.cog; ++o) {
        const float* src = w + ((grp * g.cog + o) * g.cg + c) * taps;
        float* dst = scratch + (cc * g.cog + o) * taps;
        for (int64_t t = 0; t < taps; ++t) dst[t] = src[taps - 1 - t];
      }
    }
  });
  conv_forward_implicit(flipped, g2, dy, scratch, nullptr, dx, 1.f);
  return true;
}

}  // namespace segkit::ops::detail
#endif
