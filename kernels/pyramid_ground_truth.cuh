// kernels/pyramid_ground_truth.cuh — CUDA path of ops/pyramid_ground_truth.hpp.
// Ground truth, bottom-up in L launches: one thread per finest cell summarises its s_L x s_L
// pixels (math::summarise_block; the label map is read once, consecutive threads on
// consecutive cells) and writes Y(L); then one launch per coarser level, one thread per cell,
// combines its four children's summaries (math::combine_cells, kept in the shared workspace)
// and writes U(l), Y(l) (math::cell_targets). Re-labeling: one launch per level l >= 2, finest
// first (so ancestors are read before they change), one thread per cell running
// math::done_by_coarser. Same arithmetic as the CPU path.
#pragma once
#include "cuda_context.cuh"
#include "launch.cuh"
#include "segkit/ops/pyramid_ground_truth.hpp"

namespace segkit::ops {
namespace cuda_kernels {

__global__ void ground_truth_leaf_kernel(detail::ground_truth_args a, math::cell_summary* out) {
  const int l = a.levels - 1;
  const int64_t w = a.width[l], cells = a.height[l] * w;
  const int64_t n = blockIdx.y;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < cells;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t y = i / w, x = i % w, s = a.finest_stride;
    const int32_t* block = a.labels + (n * a.image_h + y * s) * a.image_w + x * s;
    a.semantic[l][n * cells + i] = block[0];
    out[n * cells + i] = math::summarise_block(block, a.image_w, s, a.ignore);
  }
}

__global__ void ground_truth_combine_kernel(detail::ground_truth_args a, int l,
                                            const math::cell_summary* children,
                                            math::cell_summary* out) {
  const int64_t h = a.height[l], w = a.width[l], cells = h * w, cw = a.width[l + 1];
  const int64_t n = blockIdx.y;
  const math::cell_summary* child = children + n * cells * 4;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < cells;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t y = i / w, x = i % w;
    const math::cell_summary* top = child + (2 * y) * cw + 2 * x;
    const math::cell_summary s = math::combine_cells(math::combine_cells(top[0], top[1]),
                                                     math::combine_cells(top[cw], top[cw + 1]));
    out[n * cells + i] = s;
    math::cell_targets(s, a.ignore, a.unity[l] + n * cells + i, a.semantic[l] + n * cells + i);
  }
}

__global__ void relabel_kernel(detail::relabel_args a, int l) {
  const int64_t w = a.width[l], cells = a.height[l] * w;
  const int64_t n = blockIdx.y;
  const detail::relabel_image im = detail::relabel_image_of(a, n);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < cells;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (!math::done_by_coarser(im.unity, a.use_predictions ? im.predicted : nullptr, a.width, l,
                               i / w, i % w, a.threshold_logit))
      continue;
    a.semantic[l][n * cells + i] = a.ignore;
    if (l + 1 < a.levels) a.unity[l][n * cells + i] = a.ignore;
  }
}

inline dim3 per_image_grid(int64_t cells, int64_t batch) {
  // x: blocks over one image's cells (grid-stride beyond), y: the image.
  const unsigned per_image = cuda_detail::blocks_for(cells);
  const unsigned cap = batch >= 64 ? 64u : 1024u;
  return dim3(per_image < cap ? per_image : cap, static_cast<unsigned>(batch));
}

}  // namespace cuda_kernels

void pyramid_ground_truth(const pyramid_ground_truth_params& p,
                          const tensor<int32_t, cuda>& labels,
                          std::vector<tensor<int32_t, cuda>>& semantic,
                          std::vector<tensor<int32_t, cuda>>& unity, workspace<cuda>* ws) {
  const detail::ground_truth_args a = detail::prepare_ground_truth(p, labels, semantic, unity);
  const int64_t batch = labels.size(0);
  require<value_error>(batch <= 65535, "pyramid_ground_truth (cuda): batch ", batch,
                       " exceeds 65535");
  if (batch == 0) return;
  // Summaries of every level, finest first: level l at offset[l].
  int64_t offset[max_pyramid_levels] = {}, total = 0;
  for (int l = a.levels - 1; l >= 0; --l) {
    offset[l] = total;
    total += batch * a.height[l] * a.width[l];
  }
  workspace<cuda>& scratch = ws ? *ws : default_workspace<cuda>();
  auto* summaries = scratch.reserve_elements<math::cell_summary>(static_cast<size_t>(total));
  const int last = a.levels - 1;
  SEGKIT_LAUNCH(cuda_kernels::ground_truth_leaf_kernel,
                cuda_kernels::per_image_grid(a.height[last] * a.width[last], batch),
                cuda_detail::threads_per_block, 0, nullptr, a, summaries + offset[last]);
  for (int l = last - 1; l >= 0; --l)
    SEGKIT_LAUNCH(cuda_kernels::ground_truth_combine_kernel,
                  cuda_kernels::per_image_grid(a.height[l] * a.width[l], batch),
                  cuda_detail::threads_per_block, 0, nullptr, a, l, summaries + offset[l + 1],
                  summaries + offset[l]);
}

void pyramid_relabel(const pyramid_relabel_params& p, std::vector<tensor<int32_t, cuda>>& semantic,
                     std::vector<tensor<int32_t, cuda>>& unity,
                     const std::vector<tensor<float, cuda>>* predicted_unity) {
  const detail::relabel_args a = detail::prepare_relabel(p, semantic, unity, predicted_unity);
  if (p.mode == relabel_mode::raw || a.batch == 0) return;
  require<value_error>(a.batch <= 65535, "pyramid_relabel (cuda): batch ", a.batch,
                       " exceeds 65535");
  for (int l = a.levels - 1; l >= 1; --l)
    SEGKIT_LAUNCH(cuda_kernels::relabel_kernel,
                  cuda_kernels::per_image_grid(a.height[l] * a.width[l], a.batch),
                  cuda_detail::threads_per_block, 0, nullptr, a, l);
}

}  // namespace segkit::ops
