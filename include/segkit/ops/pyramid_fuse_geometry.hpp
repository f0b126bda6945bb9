// segkit/ops/pyramid_fuse_geometry.hpp — what the fuser's CPU path and CUDA kernel share:
// the parameters, the checked geometry of a pyramid, the raw-pointer arguments of one call,
// and the per-location math (math::unity_confident, math::fuse_level_at, math::argmax_step,
// math::argmax_strided) that the CUDA kernel runs and the CPU tests execute.
// Requires: nothing beyond segkit/tensor. The fuser's contract is in pyramid_fuse.hpp.
// Guarantees: make_pyramid_fuse_geometry and detail::prepare_pyramid_fuse throw shape_error
// naming the level and both shapes, and value_error naming tau, for every input that
// pyramid_fuse.hpp's contract excludes.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "segkit/tensor/config.hpp"
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

// Whether a unity logit is confident: u >= logit(tau), the same decision as sigmoid(u) >= tau.
SEGKIT_HOST_DEVICE bool unity_confident(float unity_logit, float threshold_logit) {
  return unity_logit >= threshold_logit;
}

// The 0-based answering level of finest column x, given for each level l < L - 1 the row of
// its unity map that holds x's ancestor: the first (coarsest) confident level, else L - 1.
SEGKIT_HOST_DEVICE int fuse_level_at(const float* const* unity_rows, const int* shift, int levels,
                                     int64_t x, float threshold_logit) {
  int l = 0;
  while (l < levels - 1 && !unity_confident(unity_rows[l][x >> shift[l]], threshold_logit)) ++l;
  return l;
}

// One step of a running argmax over channels: channel c's value replaces the best so far only
// if strictly greater, so the first maximum wins ties (as torch.argmax).
SEGKIT_HOST_DEVICE void argmax_step(float value, int32_t c, float& best, int32_t& arg) {
  const bool greater = value > best;
  best = greater ? value : best;
  arg = greater ? c : arg;
}

// argmax over `count` values spaced `stride` apart; the first maximum wins ties.
SEGKIT_HOST_DEVICE int32_t argmax_strided(const float* p, int64_t stride, int64_t count) {
  float best = p[0];
  int32_t index = 0;
  for (int64_t c = 1; c < count; ++c)
    argmax_step(p[c * stride], static_cast<int32_t>(c), best, index);
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
                         " has shape ", semantic[size_t(l)].to_string(),
                         ", expected rank 4 (NCHW)");
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
      require<shape_error>(g.shift[l] < g.shift[l - 1], op, ": semantic level ", l, " has shape ",
                           semantic[size_t(l - 1)].to_string(), " and level ", l + 1, " has shape ",
                           s.to_string(),
                           "; expected levels ordered coarse to fine (each finer by >= 2x)");
  }
  for (int l = 0; l < levels - 1; ++l) {
    const shape expected{g.batch, 1, g.height[l], g.width[l]};
    require<shape_error>(unity[size_t(l)] == expected, op, ": unity map of level ", l + 1,
                         " has shape ", unity[size_t(l)].to_string(), " but semantic level ", l + 1,
                         " has shape ", semantic[size_t(l)].to_string(), "; expected ",
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

}  // namespace detail
}  // namespace segkit::ops
