// kernels/elementwise.cuh — CUDA executors of ops/elementwise.hpp: a grid-stride kernel over a
// coalesced strided loop (math::loop_offsets, the CPU's index math) and a reduction kernel, one
// block per gradient element, summing over the broadcast axes with warp shuffles.
#pragma once
#include "launch.cuh"
#include "segkit/ops/elementwise.hpp"
#include "warp_reduce.cuh"

namespace segkit::ops {
namespace cuda_kernels {

template <math::binary_kind Kind, bool Accumulate>
__global__ void binary_kernel(math::strided_loop loop, const float* a, const float* b,
                              float alpha, float* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < loop.count;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t oa, ob;
    math::loop_offsets(loop, i, oa, ob);
    const float value = math::binary<Kind>(a[oa], b[ob], alpha);
    if (Accumulate)
      out[i] += value;
    else
      out[i] = value;
  }
}

// target[t] += scale * sum_r src0[o0] (* src1[o1]); one block per target element t.
template <bool Product>
__global__ void reduce_into_kernel(detail::reduction_plan plan, const float* src0,
                                   const float* src1, float scale, float* target) {
  __shared__ float scratch[32];
  for (int64_t t = blockIdx.x; t < plan.kept.count; t += gridDim.x) {
    int64_t k0, k1;
    math::loop_offsets(plan.kept, t, k0, k1);
    float total = 0.f;
    for (int64_t r = threadIdx.x; r < plan.reduced.count; r += blockDim.x) {
      int64_t r0, r1;
      math::loop_offsets(plan.reduced, r, r0, r1);
      total += Product ? src0[k0 + r0] * src1[k1 + r1] : src0[k0 + r0];
    }
    total = cuda_detail::block_sum(total, scratch);
    if (threadIdx.x == 0) target[t] += scale * total;
  }
}

}  // namespace cuda_kernels

namespace detail {

template <math::binary_kind Kind>
void launch_binary(bool accumulate, const math::strided_loop& loop, const float* a,
                   const float* b, float alpha, float* out) {
  const unsigned blocks = cuda_detail::blocks_for(loop.count);
  if (accumulate)
    SEGKIT_LAUNCH((cuda_kernels::binary_kernel<Kind, true>), blocks,
                  cuda_detail::threads_per_block, 0, nullptr, loop, a, b, alpha, out);
  else
    SEGKIT_LAUNCH((cuda_kernels::binary_kernel<Kind, false>), blocks,
                  cuda_detail::threads_per_block, 0, nullptr, loop, a, b, alpha, out);
}

void run_binary(cuda, math::binary_kind kind, bool accumulate, const math::strided_loop& loop,
                const float* a, const float* b, float alpha, float* out) {
  if (loop.count == 0) return;
  switch (kind) {
    case math::binary_kind::add:
      return launch_binary<math::binary_kind::add>(accumulate, loop, a, b, alpha, out);
    case math::binary_kind::multiply:
      return launch_binary<math::binary_kind::multiply>(accumulate, loop, a, b, alpha, out);
    case math::binary_kind::scale:
      return launch_binary<math::binary_kind::scale>(accumulate, loop, a, b, alpha, out);
  }
}

void run_reduce_into(cuda, const reduction_plan& plan, const float* src0, const float* src1,
                     float scale, float* target) {
  if (plan.kept.count == 0) return;
  const int threads = cuda_detail::reduction_threads(plan.reduced.count);
  const unsigned blocks =
      static_cast<unsigned>(plan.kept.count < (1 << 20) ? plan.kept.count : (1 << 20));
  if (src1)
    SEGKIT_LAUNCH(cuda_kernels::reduce_into_kernel<true>, blocks, threads, 0, nullptr, plan, src0,
                  src1, scale, target);
  else
    SEGKIT_LAUNCH(cuda_kernels::reduce_into_kernel<false>, blocks, threads, 0, nullptr, plan,
                  src0, src1, scale, target);
}

}  // namespace detail
}  // namespace segkit::ops
