// segkit/ops/conv2d.hpp — 2-D convolution (PyTorch's F.conv2d: cross-correlation, NCHW,
// weight [Cout, Cin/groups, kh, kw]) with stride, zero padding, dilation and groups.
// Provides: conv2d_params, conv2d_output_shape, conv2d_forward, conv2d_backward (cpu here,
// cuda through cuDNN in kernels/conv2d.cuh).
// Requires: x [N,Cin,H,W], w [Cout,Cin/groups,kh,kw], optional bias [Cout]; Cin and Cout
// divisible by groups; the dilated kernel fits in the padded input; strides and dilations
// >= 1, padding >= 0. Violations throw shape_error / value_error naming the values and shapes.
// Guarantees: forward overwrites y; backward *adds* into dx, dw, dbias (nullptr = skipped).
// Scratch (im2col columns, per-thread weight-gradient partials) comes from the workspace and
// is allocated only when it must grow. CPU strategy: a 1x1 stride-1 unpadded convolution is a
// GEMM on the input as it is; depthwise (groups == Cin == Cout) runs a direct loop; the rest
// is im2col + GEMM per group. With N >= threads each thread takes whole samples (no GEMM
// synchronisation); with fewer samples, each GEMM is split by Eigen's threads instead.
#pragma once
#include <algorithm>
#include <cstdint>

#include "segkit/ops/matmul.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"
#include "segkit/tensor/workspace.hpp"

namespace segkit::ops {

struct conv2d_params {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};

namespace detail {

// Every size a convolution needs, validated once.
struct conv2d_geometry {
  int64_t n, c, h, w;          // input
  int64_t co, kh, kw;          // weight
  int64_t ho, wo;              // output
  int64_t groups, cg, cog;     // channels per group (in, out)
  int64_t ck;                  // cg * kh * kw: the GEMM inner size
  int64_t p;                   // ho * wo: output pixels per channel
  bool is_pointwise;           // 1x1, stride 1, no padding: the input already is the columns
  bool pointwise() const { return is_pointwise; }
};

inline conv2d_geometry conv2d_check(const char* op, const conv2d_params& prm, const shape& x,
                                    const shape& w) {
  require<value_error>(prm.stride_h >= 1 && prm.stride_w >= 1, op, ": stride (", prm.stride_h,
                       ", ", prm.stride_w, ") must be >= 1");
  require<value_error>(prm.dilation_h >= 1 && prm.dilation_w >= 1, op, ": dilation (",
                       prm.dilation_h, ", ", prm.dilation_w, ") must be >= 1");
  require<value_error>(prm.pad_h >= 0 && prm.pad_w >= 0, op, ": padding (", prm.pad_h, ", ",
                       prm.pad_w, ") must be >= 0");
  require<value_error>(prm.groups >= 1, op, ": groups=", prm.groups, " must be >= 1");
  require<shape_error>(x.rank() == 4 && w.rank() == 4, op, ": input has shape ", x.to_string(),
                       " and weight has shape ", w.to_string(),
                       "; expected input [N, Cin, H, W] and weight [Cout, Cin/groups, kh, kw]");
  conv2d_geometry g{};
  g.n = x[0], g.c = x[1], g.h = x[2], g.w = x[3];
  g.co = w[0], g.kh = w[2], g.kw = w[3];
  g.groups = prm.groups;
  require<shape_error>(g.c % g.groups == 0 && g.co % g.groups == 0, op, ": input has shape ",
                       x.to_string(), " and weight has shape ", w.to_string(), "; Cin=", g.c,
                       " and Cout=", g.co, " must both be divisible by groups=", g.groups);
  g.cg = g.c / g.groups;
  g.cog = g.co / g.groups;
  require<shape_error>(w[1] == g.cg, op, ": weight has shape ", w.to_string(), " for input ",
                       x.to_string(), " with groups=", g.groups, "; expected weight dimension 1 = ",
                       g.cg, " (Cin/groups)");
  require<shape_error>(g.kh >= 1 && g.kw >= 1, op, ": weight has shape ", w.to_string(),
                       "; the kernel must be at least 1x1");
  const int64_t span_h = (g.kh - 1) * prm.dilation_h + 1, span_w = (g.kw - 1) * prm.dilation_w + 1;
  const int64_t padded_h = g.h + 2 * prm.pad_h, padded_w = g.w + 2 * prm.pad_w;
  require<shape_error>(span_h <= padded_h && span_w <= padded_w, op, ": the dilated kernel ",
                       span_h, "x", span_w, " (weight ", w.to_string(), ", dilation ",
                       prm.dilation_h, "x", prm.dilation_w, ") is bigger than the padded input ",
                       padded_h, "x", padded_w, " (input ", x.to_string(), ", padding ",
                       prm.pad_h, "x", prm.pad_w, ")");
  g.ho = (padded_h - span_h) / prm.stride_h + 1;
  g.wo = (padded_w - span_w) / prm.stride_w + 1;
  g.ck = g.cg * g.kh * g.kw;
  g.p = g.ho * g.wo;
  g.is_pointwise = g.kh == 1 && g.kw == 1 && prm.stride_h == 1 && prm.stride_w == 1 &&
                   prm.pad_h == 0 && prm.pad_w == 0;
  return g;
}

template <class Device>
conv2d_geometry conv2d_check_forward(const conv2d_params& prm, const tensor<float, Device>& x,
                                     const tensor<float, Device>& w,
                                     const tensor<float, Device>* bias,
                                     const tensor<float, Device>& y) {
  const auto g = conv2d_check("conv2d_forward", prm, x.shape(), w.shape());
  if (bias) require_shape("conv2d_forward", "bias", bias->shape(), shape{g.co});
  require_shape("conv2d_forward", "output y", y.shape(), shape{g.n, g.co, g.ho, g.wo});
  return g;
}

template <class Device>
conv2d_geometry conv2d_check_backward(const conv2d_params& prm, const tensor<float, Device>& x,
                                      const tensor<float, Device>& w,
                                      const tensor<float, Device>& dy,
                                      const tensor<float, Device>* dx,
                                      const tensor<float, Device>* dw,
                                      const tensor<float, Device>* dbias) {
  const auto g = conv2d_check("conv2d_backward", prm, x.shape(), w.shape());
  require_shape("conv2d_backward", "output gradient dy", dy.shape(),
                shape{g.n, g.co, g.ho, g.wo});
  if (dx) require_same_shape("conv2d_backward", "input", x.shape(), "gradient dx", dx->shape());
  if (dw) require_same_shape("conv2d_backward", "weight", w.shape(), "gradient dw", dw->shape());
  if (dbias) require_shape("conv2d_backward", "bias gradient", dbias->shape(), shape{g.co});
  return g;
}

// Output positions o in [0, count) whose input coordinate o * stride + offset lies in
// [0, limit), as a half-open range [first, last).
struct index_range {
  int64_t first, last;
};
inline index_range valid_outputs(int64_t offset, int64_t stride, int64_t limit, int64_t count) {
  const int64_t first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  const int64_t last = offset > limit - 1 ? 0 : std::min(count, (limit - 1 - offset) / stride + 1);
  return {std::min(first, count), std::max(std::min(first, count), last)};
}

}  // namespace detail

// The shape y must have: [N, Cout, Ho, Wo], Ho = (H + 2 pad - dilation (kh - 1) - 1) / stride + 1.
inline shape conv2d_output_shape(const conv2d_params& params, const shape& x, const shape& w) {
  const auto g = detail::conv2d_check("conv2d_output_shape", params, x, w);
  return shape{g.n, g.co, g.ho, g.wo};
}

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
  if (y.empty()) return;
  const float* b = bias ? bias->data() : nullptr;
  if (g.groups == g.c && g.co == g.c) {
    detail::depthwise_forward(params, g, x.data(), w.data(), b, y.data());
    return;
  }
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
