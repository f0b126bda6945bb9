// segkit/ops/pyramid_ground_truth.hpp — SaF's pyramidal ground truth (§3.1, supplementary §B)
// and the training re-labeling ("done by coarser": raw, GT, true-positive).
// Provides: pyramid_ground_truth_params, the shape helpers, pyramid_ground_truth(...) and
// pyramid_relabel(...) for cpu (and cuda under SEGKIT_WITH_CUDA).
// Requires: an int32 label map N x H x W (another element type does not compile: see the
// deleted overloads below); L >= 2 levels; finest stride s_L >= 1, s_{l-1} = 2 s_l; H and W
// divisible by s_1 = s_L 2^(L-1) (shape_error with the values); the ignore value not 0 or 1
// (U uses them; value_error). Outputs Y(l) int32 N x H/s_l x W/s_l for l = 1..L and U(l)
// int32 N x H/s_l x W/s_l for l = 1..L-1, preallocated (pyramid_semantic_shape /
// pyramid_unity_shape plan them). Level index 0 below is the paper's l = 1 (coarsest).
// Guarantees (exact integers): for a cell of level l < L covering s_l x s_l pixels
//   one class, no ignore        -> U = 1,      Y = the class
//   two or more classes (with or without ignore pixels) -> U = 0, Y = ignore
//   one class plus ignore       -> U = ignore, Y = ignore
//   only ignore                 -> U = ignore, Y = ignore
// and Y(L) = the nearest downsample of the label map: the top-left pixel of each s_L x s_L
// cell, (y s_L, x s_L), which is PyTorch's F.interpolate(mode='nearest') for an integer
// factor (src = floor(dst * in / out)). The label map is read once: each finest cell is
// summarised ({single class | mixed, has ignore}) and each coarser cell's summary combines its
// four children, bottom-up.
// Re-labeling (applied to one mini-batch, in place, to levels l >= 2): raw changes nothing;
// GT makes every descendant of a ground-truth unit-cell (U(k) = 1, k < l) ignore in Y(l) and
// U(l); true_positive does so only below cells with U(k) = 1 AND predicted unity logit
// >= logit(tau) (sigmoid(u) >= tau, as in the fuser); a cell whose U is ignore is never a true
// positive.
#pragma once
#include <cstdint>
#include <type_traits>
#include <vector>

#include "segkit/ops/pyramid_fuse.hpp"
#include "segkit/tensor/config.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"
#include "segkit/tensor/workspace.hpp"

namespace segkit::ops {

struct pyramid_ground_truth_params {
  int levels = 4;              // L
  int64_t finest_stride = 4;   // s_L, the backbone's output stride
  int32_t ignore_index = 255;  // the dataset's ignore label; must not be 0 or 1
};

enum class relabel_mode { raw, ground_truth, true_positive };

struct pyramid_relabel_params {
  relabel_mode mode = relabel_mode::true_positive;  // the paper's final variant (ablation F)
  int32_t ignore_index = 255;
  float threshold = 0.5f;  // tau, true_positive only
};

namespace math {

// What a cell holds: `label` is its single class when has_class && !mixed.
struct cell_summary {
  int32_t label;
  int32_t flags;
};
constexpr int32_t cell_has_class = 1, cell_mixed = 2, cell_has_ignore = 4;

// The summary of a block of `size` x `size` labels starting at p (rows `row_stride` apart).
SEGKIT_HOST_DEVICE cell_summary summarise_block(const int32_t* p, int64_t row_stride,
                                                int64_t size, int32_t ignore) {
  cell_summary s{0, 0};
  for (int64_t y = 0; y < size; ++y)
    for (int64_t x = 0; x < size; ++x) {
      const int32_t v = p[y * row_stride + x];
      if (v == ignore) {
        s.flags |= cell_has_ignore;
      } else if (!(s.flags & cell_has_class)) {
        s.label = v;
        s.flags |= cell_has_class;
      } else if (v != s.label) {
        s.flags |= cell_mixed;
      }
    }
  return s;
}

SEGKIT_HOST_DEVICE cell_summary combine_cells(cell_summary a, cell_summary b) {
  cell_summary s{a.label, a.flags | b.flags};
  if (!(a.flags & cell_has_class)) s.label = b.label;
  if ((a.flags & cell_has_class) && (b.flags & cell_has_class) && a.label != b.label)
    s.flags |= cell_mixed;
  return s;
}

// The four cases of the table above.
SEGKIT_HOST_DEVICE void cell_targets(cell_summary s, int32_t ignore, int32_t* unity,
                                     int32_t* semantic) {
  if (s.flags & cell_mixed) {
    *unity = 0;
    *semantic = ignore;
  } else if ((s.flags & cell_has_class) && !(s.flags & cell_has_ignore)) {
    *unity = 1;
    *semantic = s.label;
  } else {
    *unity = ignore;
    *semantic = ignore;
  }
}

// Whether cell (y, x) of level l (0-based) is "done by coarser": some ancestor at k < l is a
// ground-truth unit cell (and, with predictions, predicted confident). unity[k] / predicted[k]
// point at image n's map of level k, `width[k]` wide; shifts are levels apart.
SEGKIT_HOST_DEVICE bool done_by_coarser(const int32_t* const* unity, const float* const* predicted,
                                        const int64_t* width, int l, int64_t y, int64_t x,
                                        float threshold_logit) {
  for (int k = 0; k < l; ++k) {
    const int d = l - k;
    const int64_t i = (y >> d) * width[k] + (x >> d);
    if (unity[k][i] == 1 && (!predicted || predicted[k][i] >= threshold_logit)) return true;
  }
  return false;
}

}  // namespace math

inline shape pyramid_semantic_shape(const pyramid_ground_truth_params& p, const shape& labels,
                                    int level) {
  require<value_error>(p.levels >= 1 && p.levels <= max_pyramid_levels && level >= 0 &&
                           level < p.levels && p.finest_stride >= 1 &&
                           p.finest_stride <= (int64_t(1) << 20),
                       "pyramid_semantic_shape: level ", level, " of ", p.levels,
                       " with finest stride ", p.finest_stride,
                       ", expected 0 <= level < levels <= ", max_pyramid_levels, " and stride >= 1");
  require_rank("pyramid_semantic_shape", "label map", labels, 3);
  const int64_t stride = p.finest_stride << (p.levels - 1 - level);
  return shape{labels[0], labels[1] / stride, labels[2] / stride};
}
inline shape pyramid_unity_shape(const pyramid_ground_truth_params& p, const shape& labels,
                                 int level) {
  return pyramid_semantic_shape(p, labels, level);
}

namespace detail {

inline void check_ground_truth(const pyramid_ground_truth_params& p, const shape& labels,
                               const std::vector<shape>& semantic,
                               const std::vector<shape>& unity) {
  const char* op = "pyramid_ground_truth";
  require<value_error>(p.levels >= 2 && p.levels <= max_pyramid_levels, op, ": levels = ",
                       p.levels, ", expected 2 to ", max_pyramid_levels);
  require<value_error>(p.finest_stride >= 1 && p.finest_stride <= (int64_t(1) << 20), op,
                       ": finest stride = ", p.finest_stride, ", expected >= 1");
  require<value_error>(p.ignore_index != 0 && p.ignore_index != 1, op, ": ignore_index = ",
                       p.ignore_index, ", expected a value other than 0 and 1 (U uses them)");
  require_rank(op, "label map", labels, 3);
  const int64_t coarsest = p.finest_stride << (p.levels - 1);
  require<shape_error>(labels[1] % coarsest == 0 && labels[2] % coarsest == 0 && labels[1] > 0 &&
                           labels[2] > 0,
                       op, ": label map has shape ", labels.to_string(), "; H = ", labels[1],
                       " and W = ", labels[2], " must be positive multiples of the coarsest stride ",
                       coarsest, " (= ", p.finest_stride, " x 2^", p.levels - 1,
                       "); resize the input to a divisible size");
  require<shape_error>(static_cast<int>(semantic.size()) == p.levels &&
                           static_cast<int>(unity.size()) == p.levels - 1,
                       op, ": got ", semantic.size(), " semantic and ", unity.size(),
                       " unity outputs for ", p.levels, " levels, expected ", p.levels, " and ",
                       p.levels - 1);
  for (int l = 0; l < p.levels; ++l) {
    const std::string what = "semantic output of level " + std::to_string(l + 1);
    require_shape(op, what.c_str(), semantic[size_t(l)], pyramid_semantic_shape(p, labels, l));
    if (l + 1 < p.levels) {
      const std::string u = "unity output of level " + std::to_string(l + 1);
      require_shape(op, u.c_str(), unity[size_t(l)], pyramid_unity_shape(p, labels, l));
    }
  }
}

struct ground_truth_args {
  const int32_t* labels;
  int32_t* semantic[max_pyramid_levels];
  int32_t* unity[max_pyramid_levels];
  int64_t height[max_pyramid_levels], width[max_pyramid_levels];  // per level
  int64_t image_h, image_w, finest_stride;
  int levels;
  int32_t ignore;
};

template <class Device>
ground_truth_args prepare_ground_truth(const pyramid_ground_truth_params& p,
                                       const tensor<int32_t, Device>& labels,
                                       std::vector<tensor<int32_t, Device>>& semantic,
                                       std::vector<tensor<int32_t, Device>>& unity) {
  check_ground_truth(p, labels.shape(), shapes_of(semantic), shapes_of(unity));
  ground_truth_args a{};
  a.labels = labels.data();
  a.levels = p.levels;
  a.ignore = p.ignore_index;
  a.image_h = labels.size(1);
  a.image_w = labels.size(2);
  a.finest_stride = p.finest_stride;
  for (int l = 0; l < p.levels; ++l) {
    a.semantic[l] = semantic[size_t(l)].data();
    a.unity[l] = l + 1 < p.levels ? unity[size_t(l)].data() : nullptr;
    a.height[l] = semantic[size_t(l)].size(1);
    a.width[l] = semantic[size_t(l)].size(2);
  }
  return a;
}

// Summarises cell (y, x) of level l in image n from its four children (recursively down to
// the finest cells, which read their pixels), writing its targets on the way up.
inline math::cell_summary ground_truth_walk(const ground_truth_args& a, int64_t n, int l,
                                            int64_t y, int64_t x) {
  const int64_t index = (n * a.height[l] + y) * a.width[l] + x;
  if (l == a.levels - 1) {
    const int64_t s = a.finest_stride;
    const int32_t* block = a.labels + (n * a.image_h + y * s) * a.image_w + x * s;
    a.semantic[l][index] = block[0];  // nearest: the cell's top-left pixel
    return math::summarise_block(block, a.image_w, s, a.ignore);
  }
  const math::cell_summary s = math::combine_cells(
      math::combine_cells(ground_truth_walk(a, n, l + 1, 2 * y, 2 * x),
                          ground_truth_walk(a, n, l + 1, 2 * y, 2 * x + 1)),
      math::combine_cells(ground_truth_walk(a, n, l + 1, 2 * y + 1, 2 * x),
                          ground_truth_walk(a, n, l + 1, 2 * y + 1, 2 * x + 1)));
  math::cell_targets(s, a.ignore, a.unity[l] + index, a.semantic[l] + index);
  return s;
}

}  // namespace detail

// Fills Y(l) (semantic, L tensors) and U(l) (unity, L - 1 tensors) from the label map.
inline void pyramid_ground_truth(const pyramid_ground_truth_params& p,
                                 const tensor<int32_t, cpu>& labels,
                                 std::vector<tensor<int32_t, cpu>>& semantic,
                                 std::vector<tensor<int32_t, cpu>>& unity) {
  const detail::ground_truth_args a = detail::prepare_ground_truth(p, labels, semantic, unity);
  const int64_t rows = a.height[0], cols = a.width[0];
  // One task per row of coarsest cells: s_1 rows of the label map, each read once.
  parallel_for(0, labels.size(0) * rows, 1, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i)
      for (int64_t x = 0; x < cols; ++x) detail::ground_truth_walk(a, i / rows, 0, i % rows, x);
  });
}

// The label map must be int32: any other element type is rejected at compile time.
template <class T, class Device, class = std::enable_if_t<!std::is_same_v<T, int32_t>>>
void pyramid_ground_truth(const pyramid_ground_truth_params&, const tensor<T, Device>&,
                          std::vector<tensor<int32_t, Device>>&,
                          std::vector<tensor<int32_t, Device>>&) {
  static_assert(std::is_same_v<T, int32_t>,
                "pyramid_ground_truth: the label map must be tensor<int32_t> (convert int64 or "
                "uint8 labels to int32 first)");
}

namespace detail {

struct relabel_args {
  int32_t* semantic[max_pyramid_levels];
  int32_t* unity[max_pyramid_levels];
  const float* predicted[max_pyramid_levels];
  int64_t height[max_pyramid_levels], width[max_pyramid_levels];
  int64_t batch;
  int levels;
  int32_t ignore;
  float threshold_logit;
  bool use_predictions;
};

template <class Device>
relabel_args prepare_relabel(const pyramid_relabel_params& p,
                             std::vector<tensor<int32_t, Device>>& semantic,
                             std::vector<tensor<int32_t, Device>>& unity,
                             const std::vector<tensor<float, Device>>* predicted_unity) {
  const char* op = "pyramid_relabel";
  const int L = static_cast<int>(semantic.size());
  require<shape_error>(L >= 2 && L <= max_pyramid_levels && static_cast<int>(unity.size()) == L - 1,
                       op, ": got ", semantic.size(), " semantic and ", unity.size(),
                       " unity maps, expected L and L - 1 with 2 <= L <= ", max_pyramid_levels);
  require<value_error>(p.ignore_index != 0 && p.ignore_index != 1, op, ": ignore_index = ",
                       p.ignore_index, ", expected a value other than 0 and 1 (U uses them)");
  relabel_args a{};
  a.levels = L;
  a.ignore = p.ignore_index;
  a.use_predictions = p.mode == relabel_mode::true_positive;
  if (a.use_predictions) {
    check_tau(op, p.threshold);
    require<value_error>(predicted_unity != nullptr, op,
                         ": the true_positive variant needs the predicted unity logits");
    require<shape_error>(static_cast<int>(predicted_unity->size()) == L - 1, op, ": got ",
                         predicted_unity->size(), " predicted unity maps, expected ", L - 1);
    a.threshold_logit = math::unity_threshold_logit(p.threshold);
  }
  const shape& coarsest = semantic[0].shape();
  require_rank(op, "semantic level 1", coarsest, 3);
  a.batch = coarsest[0];
  for (int l = 0; l < L; ++l) {
    const shape expected{a.batch, coarsest[1] << l, coarsest[2] << l};
    const std::string what = "semantic level " + std::to_string(l + 1);
    require_shape(op, what.c_str(), semantic[size_t(l)].shape(), expected);
    a.semantic[l] = semantic[size_t(l)].data();
    a.height[l] = expected[1];
    a.width[l] = expected[2];
    if (l + 1 == L) continue;
    const std::string u = "unity level " + std::to_string(l + 1);
    require_shape(op, u.c_str(), unity[size_t(l)].shape(), expected);
    a.unity[l] = unity[size_t(l)].data();
    if (a.use_predictions) {
      const std::string pu = "predicted unity level " + std::to_string(l + 1);
      require_shape(op, pu.c_str(), (*predicted_unity)[size_t(l)].shape(),
                    shape{a.batch, 1, expected[1], expected[2]});
      a.predicted[l] = (*predicted_unity)[size_t(l)].data();
    }
  }
  return a;
}

// Image n's maps at every level (the pointers done_by_coarser reads).
struct relabel_image {
  const int32_t* unity[max_pyramid_levels];
  const float* predicted[max_pyramid_levels];
};
SEGKIT_HOST_DEVICE relabel_image relabel_image_of(const relabel_args& a, int64_t n) {
  relabel_image im{};
  for (int k = 0; k + 1 < a.levels; ++k) {
    const int64_t plane = a.height[k] * a.width[k];
    im.unity[k] = a.unity[k] + n * plane;
    im.predicted[k] = a.use_predictions ? a.predicted[k] + n * plane : nullptr;
  }
  return im;
}

}  // namespace detail

// Re-labels Y(l), U(l) for l >= 2 in place (levels are 2x apart; Y(l) and U(l) N x h_l x w_l).
// predicted_unity: the unity logits N x 1 x h_l x w_l for l < L (true_positive only).
inline void pyramid_relabel(const pyramid_relabel_params& p,
                            std::vector<tensor<int32_t, cpu>>& semantic,
                            std::vector<tensor<int32_t, cpu>>& unity,
                            const std::vector<tensor<float, cpu>>* predicted_unity = nullptr) {
  const detail::relabel_args a = detail::prepare_relabel(p, semantic, unity, predicted_unity);
  if (p.mode == relabel_mode::raw) return;
  // Finest level first, so every level reads its ancestors before they are re-labeled.
  for (int l = a.levels - 1; l >= 1; --l) {
    const int64_t h = a.height[l], w = a.width[l];
    parallel_for(0, a.batch * h, std::max<int64_t>(1, 4096 / w), [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) {
        const int64_t n = i / h, y = i % h;
        const detail::relabel_image im = detail::relabel_image_of(a, n);
        for (int64_t x = 0; x < w; ++x) {
          if (!math::done_by_coarser(im.unity, a.use_predictions ? im.predicted : nullptr,
                                     a.width, l, y, x, a.threshold_logit))
            continue;
          a.semantic[l][i * w + x] = a.ignore;
          if (l + 1 < a.levels) a.unity[l][i * w + x] = a.ignore;
        }
      }
    });
  }
}

#ifdef SEGKIT_WITH_CUDA
void pyramid_ground_truth(const pyramid_ground_truth_params& p,
                          const tensor<int32_t, cuda>& labels,
                          std::vector<tensor<int32_t, cuda>>& semantic,
                          std::vector<tensor<int32_t, cuda>>& unity,
                          workspace<cuda>* ws = nullptr);
void pyramid_relabel(const pyramid_relabel_params& p, std::vector<tensor<int32_t, cuda>>& semantic,
                     std::vector<tensor<int32_t, cuda>>& unity,
                     const std::vector<tensor<float, cuda>>* predicted_unity = nullptr);
#endif

}  // namespace segkit::ops
