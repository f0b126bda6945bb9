// kernels/losses.cuh — CUDA path of train/cross_entropy.hpp and train/binary_cross_entropy.hpp.
// One thread per pixel runs the CPU's per-pixel functions (detail::class_pixel,
// ohem_keep_pixel, class_pixel_backward, bce_element); adjacent threads read adjacent pixels.
// Reductions are deterministic: each block of loss_block threads writes double partials, and
// one block adds them in a fixed order. A bad label is found with atomicMin on its index (the
// first one, as on the CPU) and reported on the host.
// OHEM selection: an exact 4-pass radix select of the k-th smallest target probability. The
// probabilities are >= 0 (invalid pixels hold 2), so their float bits order like their values;
// each pass histograms 8 bits of the keys that match the prefix chosen so far, and the host
// reads the 256 counts back to pick the next byte. O(pixels) per pass, no sort.
#pragma once
#include <cstring>

#include "launch.cuh"
#include "segkit/train/losses.hpp"
#include "warp_reduce.cuh"

namespace segkit::train {
namespace cuda_kernels {

constexpr int loss_block = 256;
constexpr unsigned long long no_bad_index = ~0ull;

// Block sums of (a, b, c) into partials[3 * blockIdx.x + 0..2].
__device__ __forceinline__ void write_partials(double a, double b, double c, double* partials) {
  __shared__ double scratch[32];
  a = cuda_detail::block_sum(a, scratch);
  b = cuda_detail::block_sum(b, scratch);
  c = cuda_detail::block_sum(c, scratch);
  if (threadIdx.x == 0) {
    partials[3 * blockIdx.x + 0] = a;
    partials[3 * blockIdx.x + 1] = b;
    partials[3 * blockIdx.x + 2] = c;
  }
}

// One block: totals[0..2] = the partials summed in a fixed order.
__global__ void finish_partials_kernel(const double* partials, int64_t blocks, double* totals) {
  __shared__ double scratch[32];
  double a = 0, b = 0, c = 0;
  for (int64_t i = threadIdx.x; i < blocks; i += blockDim.x) {
    a += partials[3 * i + 0];
    b += partials[3 * i + 1];
    c += partials[3 * i + 2];
  }
  a = cuda_detail::block_sum(a, scratch);
  b = cuda_detail::block_sum(b, scratch);
  c = cuda_detail::block_sum(c, scratch);
  if (threadIdx.x == 0) totals[0] = a, totals[1] = b, totals[2] = c;
}

__global__ void class_pixels_kernel(detail::class_layout l, const float* x, const int32_t* labels,
                                    const float* weight, int32_t ignore_index, bool probabilities,
                                    float* lse, float* out, double* partials,
                                    unsigned long long* bad) {
  const int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  double sum = 0, weight_sum = 0, count = 0;
  if (p < l.pixels()) {
    const int status = detail::class_pixel(l, x, labels, weight, ignore_index, probabilities, lse,
                                           out, p, sum, weight_sum, count);
    if (status < 0) atomicMin(bad, static_cast<unsigned long long>(p));
  }
  write_partials(sum, weight_sum, count, partials);
}

__global__ void ohem_keep_kernel(detail::class_layout l, const float* x, const int32_t* labels,
                                 const float* weight, float threshold, const float* lse, float* pw,
                                 double* partials) {
  const int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  double sum = 0, weight_sum = 0, count = 0;
  if (p < l.pixels())
    detail::ohem_keep_pixel(l, x, labels, weight, threshold, lse, pw, p, sum, weight_sum, count);
  write_partials(sum, weight_sum, count, partials);
}

__global__ void class_backward_kernel(detail::class_layout l, const float* x, const int32_t* labels,
                                      const float* lse, const float* pw, double factor, float* dx) {
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < l.pixels();
       p += int64_t(gridDim.x) * blockDim.x)
    detail::class_pixel_backward(l, x, labels, lse, pw, factor, dx, p);
}

// Counts, into hist[256], byte (bits >> shift) & 255 of every key whose masked bits equal prefix.
__global__ void radix_histogram_kernel(const float* keys, int64_t count, unsigned prefix,
                                       unsigned mask, int shift, unsigned long long* hist) {
  __shared__ unsigned local[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) local[i] = 0;
  __syncthreads();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const unsigned bits = __float_as_uint(keys[i]);
    if ((bits & mask) == prefix) atomicAdd(&local[(bits >> shift) & 255u], 1u);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 256; i += blockDim.x)
    if (local[i]) atomicAdd(&hist[i], static_cast<unsigned long long>(local[i]));
}

__global__ void bce_kernel(const float* x, const int32_t* t, int32_t ignore_index, int64_t count,
                           float* pw, double* partials, unsigned long long* bad) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  double sum = 0, counted = 0;
  if (i < count && detail::bce_element(x, t, ignore_index, pw, i, sum, counted) < 0)
    atomicMin(bad, static_cast<unsigned long long>(i));
  write_partials(sum, 0.0, counted, partials);
}

__global__ void bce_backward_kernel(const float* x, const int32_t* t, const float* pw, float coef,
                                    int64_t count, float* dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    detail::bce_element_backward(x, t, pw, coef, dx, i);
}

}  // namespace cuda_kernels

namespace detail {

// The device scratch of one loss forward, carved from one workspace reserve.
struct loss_scratch {
  double* partials;  // 3 per block
  double* totals;    // 3, followed by the bad index
  unsigned long long* bad;
  unsigned long long* histogram;  // 256
  int64_t blocks;
};

inline loss_scratch reserve_loss_scratch(workspace<cuda>* ws, int64_t pixels) {
  loss_scratch s;
  s.blocks = (pixels + cuda_kernels::loss_block - 1) / cuda_kernels::loss_block;
  const size_t words = size_t(3 * s.blocks + 4 + 256);
  auto* base = (ws ? *ws : default_workspace<cuda>()).reserve_elements<double>(words);
  s.partials = base;
  s.totals = base + 3 * s.blocks;
  s.bad = reinterpret_cast<unsigned long long*>(s.totals + 3);
  s.histogram = reinterpret_cast<unsigned long long*>(s.totals + 4);
  return s;
}

struct loss_totals {
  double sum = 0, weight = 0, count = 0;
  unsigned long long bad = cuda_kernels::no_bad_index;
};

// Sums the partials the last kernel wrote and reads them (and the bad index) back.
inline loss_totals finish_loss_totals(const loss_scratch& s) {
  SEGKIT_LAUNCH(cuda_kernels::finish_partials_kernel, 1, cuda_kernels::loss_block, 0, nullptr,
                s.partials, s.blocks, s.totals);
  double host[4];
  check_cuda(cudaMemcpy(host, s.totals, sizeof(host), cudaMemcpyDeviceToHost), "cudaMemcpy");
  loss_totals t;
  t.sum = host[0], t.weight = host[1], t.count = host[2];
  std::memcpy(&t.bad, &host[3], sizeof(t.bad));
  return t;
}

inline int32_t read_label(const int32_t* labels, unsigned long long index) {
  int32_t value = 0;
  check_cuda(cudaMemcpy(&value, labels + index, sizeof(value), cudaMemcpyDeviceToHost),
             "cudaMemcpy");
  return value;
}

// The k-th smallest (0-based) of `count` non-negative float keys, by 4 radix passes.
inline float radix_select_kth(const float* keys, int64_t count, int64_t k,
                              unsigned long long* histogram) {
  unsigned prefix = 0, mask = 0;
  unsigned long long rank = static_cast<unsigned long long>(k);
  unsigned long long host[256];
  for (int shift = 24; shift >= 0; shift -= 8) {
    check_cuda(cudaMemset(histogram, 0, 256 * sizeof(unsigned long long)), "cudaMemset");
    SEGKIT_LAUNCH(cuda_kernels::radix_histogram_kernel, cuda_detail::blocks_for(count),
                  cuda_detail::threads_per_block, 0, nullptr, keys, count, prefix, mask, shift,
                  histogram);
    check_cuda(cudaMemcpy(host, histogram, sizeof(host), cudaMemcpyDeviceToHost), "cudaMemcpy");
    unsigned bin = 0;
    while (bin < 255 && rank >= host[bin]) rank -= host[bin++];
    prefix |= bin << shift;
    mask |= 255u << shift;
  }
  float value;
  std::memcpy(&value, &prefix, sizeof(value));
  return value;
}

inline void class_backward_cuda(const class_layout& l, const float* x, const int32_t* labels,
                                const loss_state<cuda>& state, float upstream, float* dx) {
  const double factor = double(upstream) * state.scale;
  if (factor == 0 || l.pixels() == 0) return;
  SEGKIT_LAUNCH(cuda_kernels::class_backward_kernel, cuda_detail::blocks_for(l.pixels()),
                cuda_detail::threads_per_block, 0, nullptr, l, x, labels, state.lse.data(),
                state.pixel_weight.data(), factor, dx);
}

// Runs the first pass of cross-entropy (probabilities = false) or OHEM (true) and checks labels.
inline loss_totals class_first_pass(const char* op, const class_layout& l,
                                    const tensor<float, cuda>& logits,
                                    const tensor<int32_t, cuda>& labels, const float* weight,
                                    int32_t ignore_index, bool probabilities,
                                    loss_state<cuda>& state, const loss_scratch& s) {
  check_cuda(cudaMemset(s.bad, 0xFF, sizeof(unsigned long long)), "cudaMemset");
  SEGKIT_LAUNCH(cuda_kernels::class_pixels_kernel, static_cast<unsigned>(s.blocks),
                cuda_kernels::loss_block, 0, nullptr, l, logits.data(), labels.data(), weight,
                ignore_index, probabilities, state.lse.data(), state.pixel_weight.data(),
                s.partials, s.bad);
  const loss_totals totals = finish_loss_totals(s);
  if (totals.bad != cuda_kernels::no_bad_index)
    throw_bad_label(op, labels.shape(), static_cast<int64_t>(totals.bad),
                    read_label(labels.data(), totals.bad), l.classes, ignore_index);
  return totals;
}

inline void reset_state(loss_state<cuda>& state, float threshold) {
  state.counted = 0, state.weight_sum = 0, state.scale = 0, state.loss = 0;
  state.threshold = threshold;
}

}  // namespace detail

float cross_entropy_forward(const cross_entropy_params& params, const tensor<float, cuda>& logits,
                            const tensor<int32_t, cuda>& labels, loss_state<cuda>& state,
                            const tensor<float, cuda>* weight, workspace<cuda>* ws) {
  const char* op = "cross_entropy_forward";
  detail::check_reduction(op, params.reduction);
  const auto l = detail::check_class_logits(op, logits, labels, weight);
  const int64_t pixels = l.pixels();
  detail::ensure_capacity(state.lse, pixels);
  detail::ensure_capacity(state.pixel_weight, pixels);
  state.pixels = pixels;
  detail::reset_state(state, 0.f);
  if (pixels == 0) return 0.f;
  const auto s = detail::reserve_loss_scratch(ws, pixels);
  const auto total =
      detail::class_first_pass(op, l, logits, labels, weight ? weight->data() : nullptr,
                               params.ignore_index, false, state, s);
  state.counted = static_cast<int64_t>(total.count);
  state.weight_sum = total.weight;
  state.scale = params.reduction == loss_reduction::sum ? (total.count > 0 ? 1.0 : 0.0)
                                                        : detail::inverse_or_zero(total.weight);
  state.loss = static_cast<float>(total.sum * state.scale);
  return state.loss;
}

void cross_entropy_backward(const cross_entropy_params& params, const tensor<float, cuda>& logits,
                            const tensor<int32_t, cuda>& labels, const loss_state<cuda>& state,
                            float upstream, tensor<float, cuda>& dlogits) {
  (void)params;
  const char* op = "cross_entropy_backward";
  const auto l = detail::check_class_logits<cuda>(op, logits, labels, nullptr);
  detail::check_class_backward(op, l, logits, state, dlogits);
  detail::class_backward_cuda(l, logits.data(), labels.data(), state, upstream, dlogits.data());
}

float ohem_cross_entropy_forward(const ohem_params& params, const tensor<float, cuda>& logits,
                                 const tensor<int32_t, cuda>& labels, loss_state<cuda>& state,
                                 const tensor<float, cuda>* weight, workspace<cuda>* ws) {
  const char* op = "ohem_cross_entropy_forward";
  detail::check_ohem(params);
  const auto l = detail::check_class_logits(op, logits, labels, weight);
  const int64_t pixels = l.pixels();
  detail::ensure_capacity(state.lse, pixels);
  detail::ensure_capacity(state.pixel_weight, pixels);
  state.pixels = pixels;
  detail::reset_state(state, params.thresh);
  if (pixels == 0) return 0.f;
  const auto s = detail::reserve_loss_scratch(ws, pixels);
  const float* w = weight ? weight->data() : nullptr;
  float* pw = state.pixel_weight.data();  // holds the probabilities until the keep pass
  const auto valid =
      detail::class_first_pass(op, l, logits, labels, w, params.ignore_index, true, state, s);
  const int64_t n_valid = static_cast<int64_t>(valid.count);
  if (n_valid == 0) {
    check_cuda(cudaMemset(pw, 0, size_t(pixels) * sizeof(float)), "cudaMemset");
    return 0.f;
  }
  const float kth = detail::radix_select_kth(
      pw, pixels, detail::ohem_rank(params.min_kept, n_valid), s.histogram);
  const float threshold = std::max(kth, params.thresh);
  state.threshold = threshold;
  SEGKIT_LAUNCH(cuda_kernels::ohem_keep_kernel, static_cast<unsigned>(s.blocks),
                cuda_kernels::loss_block, 0, nullptr, l, logits.data(), labels.data(), w, threshold,
                state.lse.data(), pw, s.partials);
  const auto kept = detail::finish_loss_totals(s);
  state.counted = static_cast<int64_t>(kept.count);
  state.weight_sum = kept.weight;
  state.scale = detail::inverse_or_zero(kept.count);
  state.loss = static_cast<float>(kept.sum * state.scale);
  return state.loss;
}

void ohem_cross_entropy_backward(const ohem_params& params, const tensor<float, cuda>& logits,
                                 const tensor<int32_t, cuda>& labels, const loss_state<cuda>& state,
                                 float upstream, tensor<float, cuda>& dlogits) {
  (void)params;
  const char* op = "ohem_cross_entropy_backward";
  const auto l = detail::check_class_logits<cuda>(op, logits, labels, nullptr);
  detail::check_class_backward(op, l, logits, state, dlogits);
  detail::class_backward_cuda(l, logits.data(), labels.data(), state, upstream, dlogits.data());
}

float bce_with_logits_forward(const bce_params& params, const tensor<float, cuda>& logits,
                              const tensor<int32_t, cuda>& targets, loss_state<cuda>& state,
                              workspace<cuda>* ws) {
  const char* op = "bce_with_logits_forward";
  detail::check_reduction(op, params.reduction);
  detail::check_bce_shapes(op, logits, targets);
  const int64_t count = logits.numel();
  detail::ensure_capacity(state.pixel_weight, count);
  state.pixels = count;
  detail::reset_state(state, 0.f);
  if (count == 0) return 0.f;
  const auto s = detail::reserve_loss_scratch(ws, count);
  check_cuda(cudaMemset(s.bad, 0xFF, sizeof(unsigned long long)), "cudaMemset");
  SEGKIT_LAUNCH(cuda_kernels::bce_kernel, static_cast<unsigned>(s.blocks), cuda_kernels::loss_block,
                0, nullptr, logits.data(), targets.data(), params.ignore_index, count,
                state.pixel_weight.data(), s.partials, s.bad);
  const auto total = detail::finish_loss_totals(s);
  if (total.bad != cuda_kernels::no_bad_index)
    detail::throw_bad_target(op, targets.shape(), static_cast<int64_t>(total.bad),
                             detail::read_label(targets.data(), total.bad), params.ignore_index);
  state.counted = static_cast<int64_t>(total.count);
  state.weight_sum = total.count;
  state.scale = params.reduction == loss_reduction::sum ? (total.count > 0 ? 1.0 : 0.0)
                                                        : detail::inverse_or_zero(total.count);
  state.loss = static_cast<float>(total.sum * state.scale);
  return state.loss;
}

void bce_with_logits_backward(const bce_params& params, const tensor<float, cuda>& logits,
                              const tensor<int32_t, cuda>& targets, const loss_state<cuda>& state,
                              float upstream, tensor<float, cuda>& dlogits) {
  (void)params;
  const char* op = "bce_with_logits_backward";
  detail::check_bce_shapes(op, logits, targets);
  require_same_shape(op, "logits", logits.shape(), "dlogits", dlogits.shape());
  require<value_error>(state.pixels == logits.numel(), op, ": the state holds a forward over ",
                       state.pixels, " elements but logits has shape ", logits.shape().to_string(),
                       "; run the forward with this state first");
  const float coef = static_cast<float>(double(upstream) * state.scale);
  if (coef == 0.f || logits.numel() == 0) return;
  SEGKIT_LAUNCH(cuda_kernels::bce_backward_kernel, cuda_detail::blocks_for(logits.numel()),
                cuda_detail::threads_per_block, 0, nullptr, logits.data(), targets.data(),
                state.pixel_weight.data(), coef, logits.numel(), dlogits.data());
}

}  // namespace segkit::train
