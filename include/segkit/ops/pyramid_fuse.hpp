// segkit/ops/pyramid_fuse.hpp — the Specialize-and-Fuse fuser (SaF Eq. 2): every location of
// the finest grid takes the prediction of the coarsest pyramid level whose (nearest-upsampled)
// unity prediction is confident, all coarser levels being below the threshold; the finest
// level answers where no coarser level is confident.
// Provides: pyramid_fuse(...) for cpu (and cuda under SEGKIT_WITH_CUDA); through
// pyramid_fuse_geometry.hpp, pyramid_fuse_params, pyramid_fuse_geometry (checked shapes), the
// output-shape helpers and the per-location math the CUDA kernel shares; the CPU machinery is
// in pyramid_fuse_cpu.hpp and its level map in pyramid_fuse_level_map.hpp.
// Requires: L >= 2 semantic logit maps N x C x H_l x W_l ordered coarse (l = 1) to fine (l = L),
// every H_L / H_l = W_L / W_l a power of two (>= 2 between consecutive levels), the same N and
// C everywhere; L - 1 unity *logit* maps N x 1 x H_l x W_l (one per level l < L); threshold
// tau in (0, 1). shape_error names the level and both shapes; value_error names tau.
// Guarantees: confidence is `u >= logit(tau)` on the raw unity logit (one comparison, no exp:
// the same decision as sigmoid(u) >= tau up to float rounding of logit(tau); for tau = 0.5 it
// is u >= 0 exactly). The ancestor of finest (y, x) at level l is (y >> k, x >> k) with
// k = log2(H_L / H_l) (nearest upsampling by a power of two). labels = argmax over C of the
// answering level's logits (first maximum on ties, as torch.argmax); level_map = the 1-based
// index of the answering level; logits (optional, nullptr skips the work) = the answering
// level's C logits. One pass: each unity value is read once, and each answering cell's C
// logits once for the argmax (a confident coarse cell's argmax serves its whole 2^k x 2^k
// block; the CPU's copy into fused logits reads them once more); nothing upsampled is
// materialised.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "segkit/ops/pyramid_fuse_cpu.hpp"
#include "segkit/ops/pyramid_fuse_geometry.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::ops {

// Fuses the pyramid into labels (int32, N x H_L x W_L), optional logits (N x C x H_L x W_L;
// nullptr skips them) and the level map (int32 or uint8, N x H_L x W_L, 1-based levels).
template <class LevelT>
void pyramid_fuse(const pyramid_fuse_params& params, const std::vector<tensor<float, cpu>>& semantic,
                  const std::vector<tensor<float, cpu>>& unity, tensor<int32_t, cpu>& labels,
                  tensor<float, cpu>* logits, tensor<LevelT, cpu>& level_map) {
  const pyramid_fuse_args a =
      detail::prepare_pyramid_fuse(params, semantic, unity, labels, logits, level_map);
  const auto& g = a.g;
  const int64_t bands = g.height[0];  // a band: the finest rows under one row of level 1
  int32_t* label_data = labels.data();
  LevelT* level_data = level_map.data();
  parallel_for(0, g.batch * bands, 1, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i)
      detail::fill_level_map(a, i / bands, i % bands, level_data);
  });
  if (!logits) {
    // Level by level in chunks of the whole plane: a coarse level's few answering cells are
    // then fetched together rather than a band's handful at a time (measured 15% faster).
    // Levels write disjoint labels, so one parallel loop serves them all, the threads
    // taking the chunks in turn, finest level first (no barrier between levels, no idle
    // thread while the other finishes an unequal share).
    int64_t chunks[max_pyramid_levels], first_item[max_pyramid_levels + 1] = {};
    for (int i = 0; i < g.levels; ++i) {
      const int l = g.levels - 1 - i;
      chunks[l] = (g.height[l] * g.width[l] + detail::fuse_chunk - 1) / detail::fuse_chunk;
      first_item[i + 1] = first_item[i] + g.batch * chunks[l];
    }
    parallel_for_dynamic(0, first_item[g.levels], [&](int64_t item) {
      int i = 0;
      while (item >= first_item[i + 1]) ++i;
      const int l = g.levels - 1 - i;
      const int64_t chunk = item - first_item[i], plane = g.height[l] * g.width[l];
      const int64_t begin = chunk % chunks[l] * detail::fuse_chunk;
      detail::fuse_level_chunk(a, l, chunk / chunks[l], begin,
                               std::min(plane, begin + detail::fuse_chunk), label_data, level_data);
    });
    return;
  }
  // With logits, band by band (see fuse_band_with_logits).
  float* logit_data = logits->data();
  parallel_for(0, g.batch * bands, 1, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      const int64_t y_begin = i % bands << g.shift[0];
      detail::fuse_band_with_logits(a, i / bands, y_begin, y_begin + (int64_t(1) << g.shift[0]),
                                    label_data, logit_data, level_data);
    }
  });
}

#ifdef SEGKIT_WITH_CUDA
void pyramid_fuse(const pyramid_fuse_params& params,
                  const std::vector<tensor<float, cuda>>& semantic,
                  const std::vector<tensor<float, cuda>>& unity, tensor<int32_t, cuda>& labels,
                  tensor<float, cuda>* logits, tensor<int32_t, cuda>& level_map);
void pyramid_fuse(const pyramid_fuse_params& params,
                  const std::vector<tensor<float, cuda>>& semantic,
                  const std::vector<tensor<float, cuda>>& unity, tensor<int32_t, cuda>& labels,
                  tensor<float, cuda>* logits, tensor<uint8_t, cuda>& level_map);
#endif

}  // namespace segkit::ops
