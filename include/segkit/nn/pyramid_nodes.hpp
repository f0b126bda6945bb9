// segkit/nn/pyramid_nodes.hpp — the SaF fuser and pyramidal ground truth as non-differentiable
// nodes of a network (plain classes, no gradients: their outputs are int32 labels and a level
// map, or training targets).
// Provides: nn::pyramid_fuser_node<Device>, nn::pyramid_ground_truth_node<Device>.
// Requires: setup(shapes) before forward; forward's inputs of the shapes given to setup
// (ops' shape_error otherwise). Guarantees: setup checks the shapes and allocates every
// output; forward allocates nothing and returns references to the planned outputs, valid
// until the next forward.
#pragma once
#include <vector>

#include "segkit/ops/pyramid_fuse.hpp"
#include "segkit/ops/pyramid_ground_truth.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::nn {

// Fuses L semantic logit maps and L - 1 unity logit maps (SaF Eq. 2) into labels, the level
// map (uint8, 1-based) and, when asked at setup, the fused logits.
template <class Device = cpu>
class pyramid_fuser_node {
 public:
  explicit pyramid_fuser_node(ops::pyramid_fuse_params params = {}, bool with_logits = false)
      : params_(params), with_logits_(with_logits) {}

  // Checks the pyramid's shapes (and tau) and plans the outputs.
  void setup(const std::vector<shape>& semantic, const std::vector<shape>& unity) {
    require<value_error>(params_.threshold > 0.f && params_.threshold < 1.f,
                         "pyramid_fuser_node: threshold tau = ", params_.threshold,
                         ", expected a value in (0, 1)");
    const auto g = ops::make_pyramid_fuse_geometry(semantic, unity);
    labels_ = tensor<int32_t, Device>(ops::pyramid_fuse_labels_shape(g));
    level_map_ = tensor<uint8_t, Device>(ops::pyramid_fuse_labels_shape(g));
    if (with_logits_) logits_ = tensor<float, Device>(ops::pyramid_fuse_logits_shape(g));
  }

  const tensor<int32_t, Device>& forward(const std::vector<tensor<float, Device>>& semantic,
                                         const std::vector<tensor<float, Device>>& unity) {
    ops::pyramid_fuse(params_, semantic, unity, labels_, with_logits_ ? &logits_ : nullptr,
                      level_map_);
    return labels_;
  }

  const tensor<int32_t, Device>& labels() const { return labels_; }
  const tensor<uint8_t, Device>& level_map() const { return level_map_; }
  const tensor<float, Device>& logits() const { return logits_; }  // empty unless with_logits

 private:
  ops::pyramid_fuse_params params_;
  bool with_logits_;
  tensor<int32_t, Device> labels_;
  tensor<uint8_t, Device> level_map_;
  tensor<float, Device> logits_;
};

// Builds Y(l), U(l) from an int32 label map and re-labels them for the mini-batch (raw, GT or
// true-positive; the latter takes the predicted unity logits).
template <class Device = cpu>
class pyramid_ground_truth_node {
 public:
  explicit pyramid_ground_truth_node(ops::pyramid_ground_truth_params params = {},
                                     ops::relabel_mode mode = ops::relabel_mode::true_positive,
                                     float threshold = 0.5f)
      : params_(params), relabel_{mode, params.ignore_index, threshold} {}

  // Checks the label map's shape and plans Y(1..L), U(1..L-1).
  void setup(const shape& labels) {
    semantic_.clear();
    unity_.clear();
    for (int l = 0; l < params_.levels; ++l) {
      semantic_.emplace_back(ops::pyramid_semantic_shape(params_, labels, l));
      if (l + 1 < params_.levels) unity_.emplace_back(ops::pyramid_unity_shape(params_, labels, l));
    }
    ops::detail::check_ground_truth(params_, labels, ops::detail::shapes_of(semantic_),
                                    ops::detail::shapes_of(unity_));
    if (relabel_.mode == ops::relabel_mode::true_positive)
      require<value_error>(relabel_.threshold > 0.f && relabel_.threshold < 1.f,
                           "pyramid_ground_truth_node: threshold tau = ", relabel_.threshold,
                           ", expected a value in (0, 1)");
  }

  // predicted_unity: the unity logits N x 1 x h_l x w_l, l < L (true_positive only).
  void forward(const tensor<int32_t, Device>& labels,
               const std::vector<tensor<float, Device>>* predicted_unity = nullptr) {
    ops::pyramid_ground_truth(params_, labels, semantic_, unity_);
    ops::pyramid_relabel(relabel_, semantic_, unity_, predicted_unity);
  }

  const std::vector<tensor<int32_t, Device>>& semantic() const { return semantic_; }
  const std::vector<tensor<int32_t, Device>>& unity() const { return unity_; }

 private:
  ops::pyramid_ground_truth_params params_;
  ops::pyramid_relabel_params relabel_;
  std::vector<tensor<int32_t, Device>> semantic_, unity_;
};

}  // namespace segkit::nn
