// segkit/ops/pyramid_fuse.hpp — the Specialize-and-Fuse fuser (SaF Eq. 2): every location of
// the finest grid takes the prediction of the coarsest pyramid level whose (nearest-upsampled)
// unity prediction is confident, all coarser levels being below the threshold; the finest
// level answers where no coarser level is confident.
// Provides: pyramid_fuse_params, pyramid_fuse_geometry (checked shapes), the output-shape
// helpers, and pyramid_fuse(...) for cpu (and cuda under SEGKIT_WITH_CUDA).
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
// level's C logits. One pass: each unity value on a location's path is read once per
// location, and each answering cell's C logits are read once (a confident coarse cell's
// argmax serves its whole 2^k x 2^k block); nothing upsampled is materialised.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "segkit/tensor/config.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::ops {

constexpr int max_pyramid_levels = 8;

struct pyramid_fuse_params {
  float threshold = 0.5f;  // tau, on sigmoid(unity logit); METHODS.md's choice is 0.5
};

// Checked extents of a pyramid: level 0 is the coarsest (the paper's l = 1).
struct pyramid_fuse_geometry {
  int levels = 0;
  int64_t batch = 0, channels = 0;
  int64_t height[max_pyramid_levels] = {}, width[max_pyramid_levels] = {};
  int shift[max_pyramid_levels] = {};  // log2(H_L / H_l)
};

// Raw pointers for one call, passed by value to the CUDA kernel.
struct pyramid_fuse_args {
  const float* semantic[max_pyramid_levels] = {};
  const float* unity[max_pyramid_levels] = {};
  pyramid_fuse_geometry g;
  float unity_logit_threshold = 0.f;
};

namespace math {

// logit(tau), the threshold on the raw unity logit; computed in double, rounded once.
inline float unity_threshold_logit(float tau) {
  return static_cast<float>(std::log(double(tau) / (1.0 - double(tau))));
}

// The 0-based answering level of finest column x, given for each level l < L - 1 the row of
// its unity map that holds x's ancestor: the first (coarsest) confident level, else L - 1.
SEGKIT_HOST_DEVICE int fuse_level_at(const float* const* unity_rows, const int* shift, int levels,
                                     int64_t x, float threshold_logit) {
  int l = 0;
  while (l < levels - 1 && unity_rows[l][x >> shift[l]] < threshold_logit) ++l;
  return l;
}

// argmax over `count` values spaced `stride` apart; the first maximum wins ties.
SEGKIT_HOST_DEVICE int32_t argmax_strided(const float* p, int64_t stride, int64_t count) {
  float best = p[0];
  int32_t index = 0;
  for (int64_t c = 1; c < count; ++c) {
    const float v = p[c * stride];
    if (v > best) {
      best = v;
      index = static_cast<int32_t>(c);
    }
  }
  return index;
}

}  // namespace math

namespace detail {

inline int exact_log2(int64_t ratio) {
  int k = 0;
  while ((int64_t(1) << k) < ratio) ++k;
  return (int64_t(1) << k) == ratio ? k : -1;
}

}  // namespace detail

// Checks the pyramid's shapes and returns its geometry.
inline pyramid_fuse_geometry make_pyramid_fuse_geometry(const std::vector<shape>& semantic,
                                                        const std::vector<shape>& unity) {
  const char* op = "pyramid_fuse";
  const int levels = static_cast<int>(semantic.size());
  require<shape_error>(levels >= 2 && levels <= max_pyramid_levels, op, ": got ", levels,
                       " semantic levels, expected 2 to ", max_pyramid_levels);
  require<shape_error>(static_cast<int>(unity.size()) == levels - 1, op, ": got ", unity.size(),
                       " unity maps for ", levels, " semantic levels, expected ", levels - 1,
                       " (one per level except the finest)");
  pyramid_fuse_geometry g;
  g.levels = levels;
  for (int l = 0; l < levels; ++l)
    require<shape_error>(semantic[size_t(l)].rank() == 4, op, ": semantic level ", l + 1,
                         " has shape ", semantic[size_t(l)].to_string(), ", expected rank 4 (NCHW)");
  const shape& finest = semantic[size_t(levels - 1)];
  g.batch = finest[0];
  g.channels = finest[1];
  require<shape_error>(g.channels >= 1 && finest[2] >= 1 && finest[3] >= 1, op,
                       ": finest semantic level has shape ", finest.to_string(),
                       ", expected C, H, W >= 1");
  for (int l = 0; l < levels; ++l) {
    const shape& s = semantic[size_t(l)];
    require<shape_error>(s[0] == g.batch && s[1] == g.channels, op, ": semantic level ", l + 1,
                         " has shape ", s.to_string(), " but the finest level ", levels,
                         " has shape ", finest.to_string(), "; expected the same N and C");
    const bool positive = s[2] >= 1 && s[3] >= 1;
    const int ky = positive && finest[2] % s[2] == 0 ? detail::exact_log2(finest[2] / s[2]) : -1;
    const int kx = positive && finest[3] % s[3] == 0 ? detail::exact_log2(finest[3] / s[3]) : -1;
    require<shape_error>(ky >= 0 && ky == kx, op, ": semantic level ", l + 1, " has shape ",
                         s.to_string(), " and the finest level ", levels, " has shape ",
                         finest.to_string(),
                         "; expected H and W smaller by the same power-of-two factor");
    g.height[l] = s[2];
    g.width[l] = s[3];
    g.shift[l] = ky;
    if (l > 0)
      require<shape_error>(g.shift[l] < g.shift[l - 1], op, ": semantic level ", l,
                           " has shape ", semantic[size_t(l - 1)].to_string(), " and level ",
                           l + 1, " has shape ", s.to_string(),
                           "; expected levels ordered coarse to fine (each finer by >= 2x)");
  }
  for (int l = 0; l < levels - 1; ++l) {
    const shape expected{g.batch, 1, g.height[l], g.width[l]};
    require<shape_error>(unity[size_t(l)] == expected, op, ": unity map of level ", l + 1,
                         " has shape ", unity[size_t(l)].to_string(), " but semantic level ",
                         l + 1, " has shape ", semantic[size_t(l)].to_string(), "; expected ",
                         expected.to_string());
  }
  return g;
}

// N x H_L x W_L: the labels and the level map.
inline shape pyramid_fuse_labels_shape(const pyramid_fuse_geometry& g) {
  const int last = g.levels - 1;
  return shape{g.batch, g.height[last], g.width[last]};
}
// N x C x H_L x W_L: the fused logits.
inline shape pyramid_fuse_logits_shape(const pyramid_fuse_geometry& g) {
  const int last = g.levels - 1;
  return shape{g.batch, g.channels, g.height[last], g.width[last]};
}

namespace detail {

inline void check_tau(const char* op, float tau) {
  require<value_error>(tau > 0.f && tau < 1.f, op, ": threshold tau = ", tau,
                       ", expected a value in (0, 1)");
}

template <class T, class Device>
std::vector<shape> shapes_of(const std::vector<tensor<T, Device>>& tensors) {
  std::vector<shape> result;
  result.reserve(tensors.size());
  for (const auto& t : tensors) result.push_back(t.shape());
  return result;
}

// Checks everything and gathers the raw pointers.
template <class LevelT, class Device>
pyramid_fuse_args prepare_pyramid_fuse(const pyramid_fuse_params& params,
                                       const std::vector<tensor<float, Device>>& semantic,
                                       const std::vector<tensor<float, Device>>& unity,
                                       const tensor<int32_t, Device>& labels,
                                       const tensor<float, Device>* logits,
                                       const tensor<LevelT, Device>& level_map) {
  static_assert(std::is_same_v<LevelT, int32_t> || std::is_same_v<LevelT, uint8_t>,
                "pyramid_fuse: the level map is int32_t or uint8_t");
  check_tau("pyramid_fuse", params.threshold);
  pyramid_fuse_args args;
  args.g = make_pyramid_fuse_geometry(shapes_of(semantic), shapes_of(unity));
  require_shape("pyramid_fuse", "labels", labels.shape(), pyramid_fuse_labels_shape(args.g));
  require_shape("pyramid_fuse", "level map", level_map.shape(), pyramid_fuse_labels_shape(args.g));
  if (logits)
    require_shape("pyramid_fuse", "fused logits", logits->shape(),
                  pyramid_fuse_logits_shape(args.g));
  for (int l = 0; l < args.g.levels; ++l) args.semantic[l] = semantic[size_t(l)].data();
  for (int l = 0; l + 1 < args.g.levels; ++l) args.unity[l] = unity[size_t(l)].data();
  args.unity_logit_threshold = math::unity_threshold_logit(params.threshold);
  return args;
}

// Argmax of `count` consecutive cells of one row over C planes, channel-outer so the inner
// loop runs over contiguous memory and vectorises.
constexpr int64_t fuse_chunk = 256;
inline void argmax_row_chunk(const float* row, int64_t plane, int64_t channels, int64_t count,
                             int32_t* arg) {
  float best[fuse_chunk];
  for (int64_t j = 0; j < count; ++j) {
    best[j] = row[j];
    arg[j] = 0;
  }
  for (int64_t c = 1; c < channels; ++c) {
    const float* p = row + c * plane;
    const int32_t cc = static_cast<int32_t>(c);
    for (int64_t j = 0; j < count; ++j) {
      const bool greater = p[j] > best[j];
      best[j] = greater ? p[j] : best[j];
      arg[j] = greater ? cc : arg[j];
    }
  }
}

// One band: the finest rows under row `coarse_row` of level 1 in image n.
template <class LevelT>
void fuse_band(const pyramid_fuse_args& a, int64_t n, int64_t coarse_row, int32_t* labels,
               float* logits, LevelT* level_map) {
  const auto& g = a.g;
  const int L = g.levels;
  const int64_t H = g.height[L - 1], W = g.width[L - 1], C = g.channels;
  const int64_t y_begin = coarse_row << g.shift[0], y_end = (coarse_row + 1) << g.shift[0];
  // 1. The level map: per location, one unity value per level on its path.
  for (int64_t y = y_begin; y < y_end; ++y) {
    const float* rows[max_pyramid_levels];
    for (int l = 0; l + 1 < L; ++l)
      rows[l] = a.unity[l] + (n * g.height[l] + (y >> g.shift[l])) * g.width[l];
    LevelT* out = level_map + (n * H + y) * W;
    for (int64_t x = 0; x < W; ++x)
      out[x] = static_cast<LevelT>(
          1 + math::fuse_level_at(rows, g.shift, L, x, a.unity_logit_threshold));
  }
  // 2. Each level's answering cells in the band: one argmax per cell, written to its block.
  for (int l = 0; l < L; ++l) {
    const int k = g.shift[l];
    const int64_t block = int64_t(1) << k, hl = g.height[l], wl = g.width[l], plane = hl * wl;
    const LevelT answer = static_cast<LevelT>(l + 1);
    for (int64_t yl = y_begin >> k; yl < (y_end >> k); ++yl) {
      const LevelT* lev = level_map + (n * H + (yl << k)) * W;  // top row of the blocks
      const float* row = a.semantic[l] + n * C * plane + yl * wl;
      for (int64_t x0 = 0; x0 < wl; x0 += fuse_chunk) {
        int64_t first = -1, last = -1;
        for (int64_t xl = x0; xl < std::min(wl, x0 + fuse_chunk); ++xl)
          if (lev[xl << k] == answer) {
            if (first < 0) first = xl;
            last = xl;
          }
        if (first < 0) continue;
        int32_t arg[fuse_chunk];
        argmax_row_chunk(row + first, plane, C, last - first + 1, arg);
        for (int64_t fy = yl << k; fy < (yl + 1) << k; ++fy) {
          int32_t* out = labels + (n * H + fy) * W;
          for (int64_t xl = first; xl <= last; ++xl)
            if (lev[xl << k] == answer)
              for (int64_t x = xl << k; x < (xl + 1) << k; ++x) out[x] = arg[xl - first];
        }
        if (!logits) continue;
        for (int64_t c = 0; c < C; ++c) {
          const float* src = row + c * plane;
          for (int64_t fy = yl << k; fy < (yl + 1) << k; ++fy) {
            float* out = logits + ((n * C + c) * H + fy) * W;
            for (int64_t xl = first; xl <= last; ++xl)
              if (lev[xl << k] == answer)
                for (int64_t x = xl << k; x < (xl << k) + block; ++x) out[x] = src[xl];
          }
        }
      }
    }
  }
}

}  // namespace detail

// Fuses the pyramid into labels (int32, N x H_L x W_L), optional logits (N x C x H_L x W_L;
// nullptr skips them) and the level map (int32 or uint8, N x H_L x W_L, 1-based levels).
template <class LevelT>
void pyramid_fuse(const pyramid_fuse_params& params, const std::vector<tensor<float, cpu>>& semantic,
                  const std::vector<tensor<float, cpu>>& unity, tensor<int32_t, cpu>& labels,
                  tensor<float, cpu>* logits, tensor<LevelT, cpu>& level_map) {
  const pyramid_fuse_args a =
      detail::prepare_pyramid_fuse(params, semantic, unity, labels, logits, level_map);
  const int64_t bands = a.g.height[0];
  int32_t* label_data = labels.data();
  float* logit_data = logits ? logits->data() : nullptr;
  LevelT* level_data = level_map.data();
  parallel_for(0, a.g.batch * bands, 1, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i)
      detail::fuse_band(a, i / bands, i % bands, label_data, logit_data, level_data);
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
