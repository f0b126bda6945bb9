// segkit/ops/conv2d.hpp — 2-D convolution (PyTorch's F.conv2d: cross-correlation, NCHW,
// weight [Cout, Cin/groups, kh, kw]) with stride, zero padding, dilation and groups.
// Provides: conv2d_params, conv2d_output_shape, conv2d_forward, conv2d_backward (cpu here,
// cuda through cuDNN in kernels/conv2d.cuh).
// Requires: x [N,Cin,H,W], w [Cout,Cin/groups,kh,kw], optional bias [Cout]; Cin and Cout
// divisible by groups; the dilated kernel fits in the padded input; strides and dilations
// >= 1, padding >= 0. Violations throw shape_error / value_error naming the values and shapes.
// Guarantees: forward overwrites y; backward *adds* into dx, dw, dbias (nullptr = skipped).
// Scratch (im2col columns, per-thread weight-gradient partials) comes from the workspace and
// is allocated only when it must grow. CPU strategy: depthwise (groups == Cin == Cout) runs a
// direct loop. With the AVX-512 GEMM (SEGKIT_HAVE_AVX512_GEMM), other convolutions are implicit
// GEMMs over the whole batch (ops/conv2d_implicit.hpp: im2col is packed straight from the
// images into the GEMM's panels): forward and dw for all but 1x1 stride-1 unpadded ones, dx
// for stride 1 (a convolution of dy with the flipped weights). Everything else (and everything without AVX-512)
// is a per-sample GEMM on im2col columns (the input itself for 1x1) plus col2im for dx; with
// N >= threads each thread takes whole samples, else each GEMM is threaded.
#pragma once
#include <algorithm>
#include <cstdint>

#include "segkit/ops/conv2d_geometry.hpp"
#include "segkit/ops/conv2d_implicit.hpp"
#include "segkit/ops/matmul.hpp"
#include "segkit/tensor/mac_counter.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"
#include "segkit/tensor/workspace.hpp"

namespace segkit::ops {

namespace detail {
// Multiply-adds of one forward (mac_counter.hpp): N * Cout * Ho * Wo * (Cin / groups) * kh * kw.
inline int64_t conv2d_macs(const conv2d_geometry& g) {
  return g.n * g.co * g.ho * g.wo * g.cg * g.kh * g.kw;
}
}  // namespace detail

#ifndef __CUDACC__  // the cpu path uses the Eigen gemm, which CUDA translation units do not see
namespace detail {

// Calls visit(row, in_row, out, first, last) for every (kernel row i, output row oh) pair
// that reads a real input row; `out` points at output row oh.
template <class Visit>
void for_each_tap(const conv2d_params& prm, const conv2d_geometry& g, const Visit& visit) {
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t off_w = j * prm.dilation_w - prm.pad_w;
      const index_range cols = valid_outputs(off_w, prm.stride_w, g.w, g.wo);
      for (int64_t oh = 0; oh < g.ho; ++oh) {
        const int64_t ih = oh * prm.stride_h - prm.pad_h + i * prm.dilation_h;
        visit(i, j, oh, ih, off_w, cols);
      }
    }
}

// col[(c*kh + i)*kw + j][oh*Wo + ow] = x[c][ih][iw], zero where the tap reads padding.
inline void im2col(const conv2d_params& prm, const conv2d_geometry& g, const float* x,
                   float* col) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, g.kh * g.kw * g.p));
  parallel_for(0, g.c, grain, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const float* plane = x + c * g.h * g.w;
      float* rows = col + c * g.kh * g.kw * g.p;
      for_each_tap(prm, g, [&](int64_t i, int64_t j, int64_t oh, int64_t ih, int64_t off_w,
                               index_range r) {
        float* dst = rows + (i * g.kw + j) * g.p + oh * g.wo;
        if (ih < 0 || ih >= g.h) {
          std::fill(dst, dst + g.wo, 0.f);
          return;
        }
        const float* src = plane + ih * g.w + off_w;
        std::fill(dst, dst + r.first, 0.f);
        if (prm.stride_w == 1)
          std::copy(src + r.first, src + r.last, dst + r.first);
        else
          for (int64_t ow = r.first; ow < r.last; ++ow) dst[ow] = src[ow * prm.stride_w];
        std::fill(dst + r.last, dst + g.wo, 0.f);
      });
    }
  });
}

// The adjoint of im2col: dx[c][ih][iw] += col[...] over every tap that read it.
inline void col2im_add(const conv2d_params& prm, const conv2d_geometry& g, const float* col,
                       float* dx) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, g.kh * g.kw * g.p));
  parallel_for(0, g.c, grain, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      float* plane = dx + c * g.h * g.w;
      const float* rows = col + c * g.kh * g.kw * g.p;
      for_each_tap(prm, g, [&](int64_t i, int64_t j, int64_t oh, int64_t ih, int64_t off_w,
                               index_range r) {
        if (ih < 0 || ih >= g.h) return;
        const float* src = rows + (i * g.kw + j) * g.p + oh * g.wo;
        float* dst = plane + ih * g.w + off_w;
        for (int64_t ow = r.first; ow < r.last; ++ow) dst[ow * prm.stride_w] += src[ow];
      });
    }
  });
}

// Whole samples per thread (one scratch slot each) when there are at least as many samples
// as threads and we are not already inside a parallel region; otherwise one slot.
inline int64_t conv2d_sample_slots(const conv2d_geometry& g) {
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;
#endif
  return (num_threads() > 1 && g.n >= num_threads()) ? num_threads() : 1;
}

inline void depthwise_forward(const conv2d_params& prm, const conv2d_geometry& g, const float* x,
                              const float* w, const float* bias, float* y) {
  parallel_for(0, g.n * g.c, 1, [&](int64_t first, int64_t last) {
    for (int64_t plane = first; plane < last; ++plane) {
      const int64_t c = plane % g.c;
      const float* in = x + plane * g.h * g.w;
      float* out = y + plane * g.p;
      std::fill(out, out + g.p, bias ? bias[c] : 0.f);
      for_each_tap(prm, g, [&](int64_t i, int64_t j, int64_t oh, int64_t ih, int64_t off_w,
                               index_range r) {
        if (ih < 0 || ih >= g.h) return;
        const float weight = w[(c * g.kh + i) * g.kw + j];
        const float* src = in + ih * g.w + off_w;
        float* dst = out + oh * g.wo;
        for (int64_t ow = r.first; ow < r.last; ++ow) dst[ow] += weight * src[ow * prm.stride_w];
      });
    }
  });
}

inline void depthwise_backward(const conv2d_params& prm, const conv2d_geometry& g,
                               const float* x, const float* w, const float* dy, float* dx,
                               float* dw) {
  if (dx)
    parallel_for(0, g.n * g.c, 1, [&](int64_t first, int64_t last) {
      for (int64_t plane = first; plane < last; ++plane) {
        const int64_t c = plane % g.c;
        const float* grad_out = dy + plane * g.p;
        float* grad_in = dx + plane * g.h * g.w;
        for_each_tap(prm, g, [&](int64_t i, int64_t j, int64_t oh, int64_t ih, int64_t off_w,
                                 index_range r) {
          if (ih < 0 || ih >= g.h) return;
          const float weight = w[(c * g.kh + i) * g.kw + j];
          const float* src = grad_out + oh * g.wo;
          float* dst = grad_in + ih * g.w + off_w;
          for (int64_t ow = r.first; ow < r.last; ++ow) dst[ow * prm.stride_w] += weight * src[ow];
        });
      }
    });
  if (dw)  // per channel, summing over the batch in order: no races, deterministic
    parallel_for(0, g.c, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t n = 0; n < g.n; ++n) {
          const float* in = x + (n * g.c + c) * g.h * g.w;
          const float* grad_out = dy + (n * g.c + c) * g.p;
          for_each_tap(prm, g, [&](int64_t i, int64_t j, int64_t oh, int64_t ih, int64_t off_w,
                                   index_range r) {
            if (ih < 0 || ih >= g.h) return;
            const float* src = in + ih * g.w + off_w;
            const float* go = grad_out + oh * g.wo;
            float sum = 0.f;
            if (prm.stride_w == 1) {  // contiguous: a vector reduction, no gathers
#ifdef _OPENMP
#pragma omp simd reduction(+ : sum)
#endif
              for (int64_t ow = r.first; ow < r.last; ++ow) sum += go[ow] * src[ow];
            } else {
              for (int64_t ow = r.first; ow < r.last; ++ow) sum += go[ow] * src[ow * prm.stride_w];
            }
            dw[(c * g.kh + i) * g.kw + j] += sum;
          });
        }
    });
}

inline void bias_backward(const conv2d_geometry& g, const float* dy, float* dbias) {
  parallel_for(0, g.co, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      float sum = 0.f;
      for (int64_t n = 0; n < g.n; ++n) {
        const float* row = dy + (n * g.co + c) * g.p;
#ifdef _OPENMP
#pragma omp simd reduction(+ : sum)
#endif
        for (int64_t i = 0; i < g.p; ++i) sum += row[i];
      }
      dbias[c] += sum;
    }
  });
}

// Runs sample(n, slot) for every sample, either whole samples per thread (slot = thread) or
// one after another (slot 0) with the GEMMs and im2col threaded inside.
template <class Sample>
void for_each_sample(const conv2d_geometry& g, int64_t slots, const Sample& sample) {
#ifdef _OPENMP
  if (slots > 1 && !omp_in_parallel()) {
#pragma omp parallel for num_threads(static_cast<int>(slots)) schedule(static, 1)
    for (int64_t slot = 0; slot < slots; ++slot)
      for (int64_t n = g.n * slot / slots; n < g.n * (slot + 1) / slots; ++n)
        sample(n, slot);
    return;
  }
#endif
  (void)slots;  // serial: one slot
  for (int64_t n = 0; n < g.n; ++n) sample(n, 0);
}

}  // namespace detail

inline void conv2d_forward(const conv2d_params& params, const tensor<float, cpu>& x,
                           const tensor<float, cpu>& w, const tensor<float, cpu>* bias,
                           tensor<float, cpu>& y, workspace<cpu>* ws = nullptr) {
  const auto g = detail::conv2d_check_forward(params, x, w, bias, y);
  add_macs(detail::conv2d_macs(g));
  if (y.empty()) return;
  const float* b = bias ? bias->data() : nullptr;
  if (g.groups == g.c && g.co == g.c) {
    detail::depthwise_forward(params, g, x.data(), w.data(), b, y.data());
    return;
  }
#ifdef SEGKIT_HAVE_AVX512_GEMM
  if (!g.pointwise()) {  // pointwise: the input already is the columns (per-sample GEMMs below)
    detail::conv_forward_implicit(params, g, x.data(), w.data(), b, y.data(), 0.f);
    return;
  }
#endif
  const int64_t slots = detail::conv2d_sample_slots(g);
  const int64_t col_size = g.pointwise() ? 0 : g.c * g.kh * g.kw * g.p;
  float* scratch = (ws ? *ws : default_workspace<cpu>())
                       .reserve_elements<float>(static_cast<size_t>(std::max<int64_t>(1, slots * col_size)));
  detail::for_each_sample(g, slots, [&](int64_t n, int slot) {
    const float* input = x.data() + n * g.c * g.h * g.w;
    const float* cols = input;
    if (!g.pointwise()) {
      float* col = scratch + slot * col_size;
      detail::im2col(params, g, input, col);
      cols = col;
    }
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      float* out = y.data() + (n * g.co + grp * g.cog) * g.p;
      if (b)
        for (int64_t o = 0; o < g.cog; ++o)
          std::fill(out + o * g.p, out + (o + 1) * g.p, b[grp * g.cog + o]);
      gemm(cpu{}, false, false, g.cog, g.p, g.ck, 1.f, w.data() + grp * g.cog * g.ck, g.ck,
           cols + grp * g.ck * g.p, g.p, b ? 1.f : 0.f, out, g.p);
    }
  });
}

inline void conv2d_backward(const conv2d_params& params, const tensor<float, cpu>& x,
                            const tensor<float, cpu>& w, const tensor<float, cpu>& dy,
                            tensor<float, cpu>* dx, tensor<float, cpu>* dw,
                            tensor<float, cpu>* dbias, workspace<cpu>* ws = nullptr) {
  const auto g = detail::conv2d_check_backward(params, x, w, dy, dx, dw, dbias);
  if (dbias && !dy.empty()) detail::bias_backward(g, dy.data(), dbias->data());
  if ((!dx && !dw) || x.empty() || dy.empty()) return;
  if (g.groups == g.c && g.co == g.c) {
    detail::depthwise_backward(params, g, x.data(), w.data(), dy.data(),
                               dx ? dx->data() : nullptr, dw ? dw->data() : nullptr);
    return;
  }
#ifdef SEGKIT_HAVE_AVX512_GEMM
  // Implicit GEMMs over the whole batch where they measured faster (docs/benchmarks.md); the
  // rest (pointwise dw, dx of strided convolutions) goes through
  // per-sample GEMMs on columns (plus col2im for dx) below.
  if (dw && !g.pointwise()) {
    detail::conv_weight_grad_implicit(params, g, x.data(), dy.data(), dw->data());
    dw = nullptr;
  }
  if (dx) {
    float* flipped = (ws ? *ws : default_workspace<cpu>())
                         .reserve_elements<float>(static_cast<size_t>(g.co * g.ck));
    if (detail::conv_input_grad_implicit(params, g, w.data(), dy.data(), dx->data(), flipped))
      dx = nullptr;
  }
  if (!dx && !dw) return;
#endif
  const int64_t slots = detail::conv2d_sample_slots(g);
  const int64_t col_size = g.pointwise() ? 0 : g.c * g.kh * g.kw * g.p;
  // Each thread sums its samples' weight gradients into its own partial, added at the end.
  const int64_t partial_size = (dw && slots > 1) ? g.co * g.ck : 0;
  const int64_t slot_size = col_size + partial_size;
  float* scratch = (ws ? *ws : default_workspace<cpu>())
                       .reserve_elements<float>(static_cast<size_t>(std::max<int64_t>(1, slots * slot_size)));
  if (partial_size) std::fill(scratch, scratch + slots * slot_size, 0.f);
  detail::for_each_sample(g, slots, [&](int64_t n, int slot) {
    const float* input = x.data() + n * g.c * g.h * g.w;
    const float* grad_out = dy.data() + n * g.co * g.p;
    float* col = scratch + slot * slot_size;
    float* weight_grad = partial_size ? col + col_size : (dw ? dw->data() : nullptr);
    if (dw) {
      const float* cols = input;
      if (!g.pointwise()) {
        detail::im2col(params, g, input, col);
        cols = col;
      }
      for (int64_t grp = 0; grp < g.groups; ++grp)
        gemm(cpu{}, false, true, g.cog, g.ck, g.p, 1.f, grad_out + grp * g.cog * g.p, g.p,
             cols + grp * g.ck * g.p, g.p, 1.f, weight_grad + grp * g.cog * g.ck, g.ck);
    }
    if (dx) {
      // The columns are no longer needed: their buffer receives the column gradients.
      float* grad_in = dx->data() + n * g.c * g.h * g.w;
      float* target = g.pointwise() ? grad_in : col;
      for (int64_t grp = 0; grp < g.groups; ++grp)
        gemm(cpu{}, true, false, g.ck, g.p, g.cog, 1.f, w.data() + grp * g.cog * g.ck, g.ck,
             grad_out + grp * g.cog * g.p, g.p, g.pointwise() ? 1.f : 0.f,
             target + grp * g.ck * g.p, g.p);
      if (!g.pointwise()) detail::col2im_add(params, g, col, grad_in);
    }
  });
  if (partial_size) {
    float* out = dw->data();
    parallel_for(0, partial_size, 4096, [&](int64_t first, int64_t last) {
      for (int64_t s = 0; s < slots; ++s) {
        const float* part = scratch + s * slot_size + col_size;
        for (int64_t i = first; i < last; ++i) out[i] += part[i];
      }
    });
  }
}
#endif  // __CUDACC__

#ifdef SEGKIT_WITH_CUDA
// cuDNN, algorithms chosen once per shape (cudnnGet*_v7) and cached per thread; scratch from
// the shared cuda workspace. `ws` is accepted for symmetry and used as that workspace if given.
void conv2d_forward(const conv2d_params& params, const tensor<float, cuda>& x,
                    const tensor<float, cuda>& w, const tensor<float, cuda>* bias,
                    tensor<float, cuda>& y, workspace<cuda>* ws = nullptr);
void conv2d_backward(const conv2d_params& params, const tensor<float, cuda>& x,
                     const tensor<float, cuda>& w, const tensor<float, cuda>& dy,
                     tensor<float, cuda>* dx, tensor<float, cuda>* dw,
                     tensor<float, cuda>* dbias, workspace<cuda>* ws = nullptr);
#endif

}  // namespace segkit::ops
