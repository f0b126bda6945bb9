// kernels/pyramid_fuse.cuh — CUDA path of ops/pyramid_fuse.hpp: one thread per finest
// location (grid-stride), consecutive threads on consecutive x, so the unity and logit reads
// of a warp are coalesced (finest level) or broadcast (a coarse cell shared by the warp), and
// the label, level and logit writes are coalesced. The thread walks the levels coarse to fine
// with math::fuse_level_at, then reads only the answering level's C logits
// (math::argmax_strided): the same arithmetic as the CPU path.
#pragma once
#include "launch.cuh"
#include "segkit/ops/pyramid_fuse.hpp"

namespace segkit::ops {
namespace cuda_kernels {

template <class LevelT>
__global__ void pyramid_fuse_kernel(pyramid_fuse_args a, int32_t* labels, float* logits,
                                    LevelT* level_map) {
  const auto& g = a.g;
  const int L = g.levels;
  const int64_t H = g.height[L - 1], W = g.width[L - 1], C = g.channels;
  const int64_t count = g.batch * H * W;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t x = i % W, y = (i / W) % H, n = i / (W * H);
    const float* rows[max_pyramid_levels];
    for (int l = 0; l + 1 < L; ++l)
      rows[l] = a.unity[l] + (n * g.height[l] + (y >> g.shift[l])) * g.width[l];
    const int l = math::fuse_level_at(rows, g.shift, L, x, a.unity_logit_threshold);
    const int64_t plane = g.height[l] * g.width[l];
    const float* cell = a.semantic[l] + n * C * plane + (y >> g.shift[l]) * g.width[l] +
                        (x >> g.shift[l]);
    labels[i] = math::argmax_strided(cell, plane, C);
    level_map[i] = static_cast<LevelT>(l + 1);
    if (logits) {
      float* out = logits + n * C * H * W + y * W + x;
      for (int64_t c = 0; c < C; ++c) out[c * H * W] = cell[c * plane];
    }
  }
}

template <class LevelT>
void launch_pyramid_fuse(const pyramid_fuse_params& params,
                         const std::vector<tensor<float, cuda>>& semantic,
                         const std::vector<tensor<float, cuda>>& unity,
                         tensor<int32_t, cuda>& labels, tensor<float, cuda>* logits,
                         tensor<LevelT, cuda>& level_map) {
  const pyramid_fuse_args a =
      detail::prepare_pyramid_fuse(params, semantic, unity, labels, logits, level_map);
  const int64_t count = labels.numel();
  if (count == 0) return;
  SEGKIT_LAUNCH(pyramid_fuse_kernel<LevelT>, cuda_detail::blocks_for(count),
                cuda_detail::threads_per_block, 0, nullptr, a, labels.data(),
                logits ? logits->data() : nullptr, level_map.data());
}

}  // namespace cuda_kernels

void pyramid_fuse(const pyramid_fuse_params& params,
                  const std::vector<tensor<float, cuda>>& semantic,
                  const std::vector<tensor<float, cuda>>& unity, tensor<int32_t, cuda>& labels,
                  tensor<float, cuda>* logits, tensor<int32_t, cuda>& level_map) {
  cuda_kernels::launch_pyramid_fuse(params, semantic, unity, labels, logits, level_map);
}

void pyramid_fuse(const pyramid_fuse_params& params,
                  const std::vector<tensor<float, cuda>>& semantic,
                  const std::vector<tensor<float, cuda>>& unity, tensor<int32_t, cuda>& labels,
                  tensor<float, cuda>* logits, tensor<uint8_t, cuda>& level_map) {
  cuda_kernels::launch_pyramid_fuse(params, semantic, unity, labels, logits, level_map);
}

}  // namespace segkit::ops
