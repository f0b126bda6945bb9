// kernels/softmax.cuh — CUDA path of ops/softmax.hpp. Contiguous rows (axis last): one block
// per row, max and sum by warp shuffles. Strided rows (inner > 1, e.g. channels of NCHW): one
// thread per row running the CPU's math::softmax_row, so adjacent threads read adjacent
// addresses.
// The per-element math is math::softmax_value / softmax_gradient, as on the CPU.
#pragma once
#include "launch.cuh"
#include "segkit/ops/softmax.hpp"
#include "warp_reduce.cuh"

namespace segkit::ops {
namespace cuda_kernels {

template <bool Log>
__global__ void softmax_rows_kernel(const float* x, float* y, int64_t rows, int64_t n) {
  __shared__ float scratch[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* in = x + row * n;
    float* out = y + row * n;
    float m = -INFINITY;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) m = fmaxf(m, in[k]);
    m = cuda_detail::block_max(m, scratch);
    float s = 0.f;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) s += expf(in[k] - m);
    s = cuda_detail::block_sum(s, scratch);
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) out[k] = math::softmax_value<Log>(in[k], m, s);
  }
}

template <bool Log>
__global__ void softmax_rows_backward_kernel(const float* y, const float* dy, float* dx,
                                             int64_t rows, int64_t n) {
  __shared__ float scratch[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * n;
    float total = 0.f;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x)
      total += math::softmax_gradient_term<Log>(y[base + k], dy[base + k]);
    total = cuda_detail::block_sum(total, scratch);
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x)
      dx[base + k] += math::softmax_gradient<Log>(y[base + k], dy[base + k], total);
  }
}

template <bool Log>
__global__ void softmax_strided_kernel(const float* x, float* y, int64_t outer, int64_t n,
                                       int64_t inner) {
  for (int64_t column = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; column < outer * inner;
       column += int64_t(gridDim.x) * blockDim.x) {
    // The CPU's two-pass row (max, then sum): the online normaliser would give NaN for a row
    // that starts with -inf (exp(-inf - -inf)), where the CPU gives the right answer.
    const int64_t base = column / inner * n * inner + column % inner;
    math::softmax_row<Log>(x + base, y + base, n, inner);
  }
}

template <bool Log>
__global__ void softmax_strided_backward_kernel(const float* y, const float* dy, float* dx,
                                                int64_t outer, int64_t n, int64_t inner) {
  for (int64_t column = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; column < outer * inner;
       column += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = column / inner * n * inner + column % inner;
    math::softmax_row_backward<Log>(y + base, dy + base, dx + base, n, inner);
  }
}

}  // namespace cuda_kernels

namespace detail {

template <bool Log>
void softmax_forward_cuda(const softmax_layout& l, const float* x, float* y) {
  if (l.outer * l.n * l.inner == 0) return;
  if (l.inner == 1) {
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(l.outer, 1 << 20));
    SEGKIT_LAUNCH(cuda_kernels::softmax_rows_kernel<Log>, blocks,
                  cuda_detail::reduction_threads(l.n), 0, nullptr, x, y, l.outer, l.n);
  } else {
    SEGKIT_LAUNCH(cuda_kernels::softmax_strided_kernel<Log>,
                  cuda_detail::blocks_for(l.outer * l.inner), cuda_detail::threads_per_block, 0,
                  nullptr, x, y, l.outer, l.n, l.inner);
  }
}

template <bool Log>
void softmax_backward_cuda(const softmax_layout& l, const float* y, const float* dy, float* dx) {
  if (l.outer * l.n * l.inner == 0) return;
  if (l.inner == 1) {
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(l.outer, 1 << 20));
    SEGKIT_LAUNCH(cuda_kernels::softmax_rows_backward_kernel<Log>, blocks,
                  cuda_detail::reduction_threads(l.n), 0, nullptr, y, dy, dx, l.outer, l.n);
  } else {
    SEGKIT_LAUNCH(cuda_kernels::softmax_strided_backward_kernel<Log>,
                  cuda_detail::blocks_for(l.outer * l.inner), cuda_detail::threads_per_block, 0,
                  nullptr, y, dy, dx, l.outer, l.n, l.inner);
  }
}

}  // namespace detail

void softmax_forward(const softmax_params& params, const tensor<float, cuda>& x,
                     tensor<float, cuda>& y) {
  const auto l = detail::check_softmax("softmax_forward", params, x, "output", y);
  detail::softmax_forward_cuda<false>(l, x.data(), y.data());
}
void log_softmax_forward(const softmax_params& params, const tensor<float, cuda>& x,
                         tensor<float, cuda>& y) {
  const auto l = detail::check_softmax("log_softmax_forward", params, x, "output", y);
  detail::softmax_forward_cuda<true>(l, x.data(), y.data());
}
void softmax_backward(const softmax_params& params, const tensor<float, cuda>& y,
                      const tensor<float, cuda>& dy, tensor<float, cuda>& dx) {
  const auto l = detail::check_softmax("softmax_backward", params, y, "output gradient", dy);
  require_same_shape("softmax_backward", "output", y.shape(), "input gradient", dx.shape());
  detail::softmax_backward_cuda<false>(l, y.data(), dy.data(), dx.data());
}
void log_softmax_backward(const softmax_params& params, const tensor<float, cuda>& y,
                          const tensor<float, cuda>& dy, tensor<float, cuda>& dx) {
  const auto l = detail::check_softmax("log_softmax_backward", params, y, "output gradient", dy);
  require_same_shape("log_softmax_backward", "output", y.shape(), "input gradient", dx.shape());
  detail::softmax_backward_cuda<true>(l, y.data(), dy.data(), dx.data());
}

}  // namespace segkit::ops
