// segkit/models/saf.hpp — the full Specialize-and-Fuse model (METHODS.md §1, supplementary §D):
// a standard (output stride 32) ResNet, the ResNet-decoder (models/resnet_decoder.hpp), the
// HRNetV2 feature (branches 1..3 bilinearly upsampled to branch 0, align_corners false, and
// concatenated: 15 * Width channels at stride 4) and the SaF head (models/saf_head.hpp).
// Implements the model concept of models/model.hpp.
// Provides:
//   models::saf<Backbone, Width = 48, Modules = 3, Blocks = 4>
//     forward(images) -> the fused logits (Eq. 2, tau) bilinearly resized to the image;
//       head() then holds the semantic and unity pyramids, fused labels and the level map of
//       that forward (at stride 4) for diagnostics (eval/saf_diagnostics.hpp);
//     forward_backward(images, labels) -> the head's Eq. 1 terms ("ce", "bce"; the ablations'
//       own terms under saf_options), backward through head, decoder and backbone.
//   saf(num_classes, seed) uses saf_options{} (the paper's final method, ablation I);
//   saf(num_classes, options, seed) any ablation (models/saf_parts.hpp: saf_options).
// Requires: image height and width multiples of 32 and of the coarsest cell, 4 * scales()[0]
//   (size_multiple(); setup names the shape, eval/inference.hpp pads to it).
// Names: backbone.<torchvision>, decoder.<resnet_decoder names>, decode_head.<saf_head names>.
// Guarantees: as models::fcn: setup plans every buffer and runs the shared warm-up
//   (models/warm_up.hpp), forward / forward_backward allocate nothing afterwards, backward ADDS
//   into parameter gradients, cost() = parameters and MACs of one inference forward.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "segkit/models/model.hpp"
#include "segkit/models/resnet_decoder.hpp"
#include "segkit/models/saf_head.hpp"
#include "segkit/models/warm_up.hpp"
#include "segkit/ops/concat.hpp"
#include "segkit/ops/resize.hpp"
#include "segkit/tensor/buffer_pool.hpp"

namespace segkit::models {

template <class Backbone, int Width = 48, int Modules = 3, int Blocks = 4>
class saf {
 public:
  using device_type = typename Backbone::device_type;
  using tensor_type = tensor<float, device_type>;
  using lease = typename buffer_pool<device_type>::lease;
  using label_tensor = tensor<int32_t, device_type>;
  using backbone_type = Backbone;
  using decoder_type = resnet_decoder_for<Backbone, Width, Modules, Blocks>;
  using head_type = saf_head<device_type>;
  static constexpr int feature_channels = 15 * Width;  // W + 2W + 4W + 8W
  static constexpr int64_t feature_stride = 4;

  explicit saf(int num_classes, uint64_t seed = 0) : saf(num_classes, saf_options{}, seed) {}
  saf(int num_classes, const saf_options& options, uint64_t seed = 0)
      : head_(feature_channels, num_classes, options) {
    std::mt19937_64 rng(seed);
    backbone_.initialize(rng);
    decoder_.initialize(rng);
    head_.initialize(rng);
  }

  static std::string model_name() { return "saf-" + Backbone::name(); }
  std::string name() const { return model_name(); }
  int num_classes() const { return head_.num_classes(); }

  // H and W must be multiples of this (eval/inference.hpp pads to it).
  int64_t size_multiple() const {
    return std::max<int64_t>(32, feature_stride * head_.scales()[0]);
  }

  shape setup(const shape& images) {
    const int64_t multiple = size_multiple();
    require<shape_error>(images.rank() == 4 && images[1] == 3 && images[2] % multiple == 0 &&
                             images[3] % multiple == 0 && images[2] > 0 && images[3] > 0,
                         model_name(), " setup: images of shape ", images.to_string(),
                         " are not [N, 3, H, W] with H and W positive multiples of ", multiple,
                         " (the backbone's stride 32 and the coarsest pyramid cell)");
    const auto f = backbone_.setup(images);
    const auto branches = decoder_.setup(f);
    std::vector<shape> parts;
    for (int k = 0; k < 4; ++k) {
      const shape up = branches[size_t(k)].with(2, branches[0][2]).with(3, branches[0][3]);
      upsampled_shapes_[size_t(k)] = up;
      branch_shapes_[size_t(k)] = branches[size_t(k)];
      feature_shapes_[size_t(k)] = f[size_t(k)];
      parts.push_back(up);
    }
    const shape feature = ops::concat_output_shape({1}, parts);
    feature_ = tensor_type(feature);
    head_.setup(feature, feature_stride);
    const shape full{images[0], head_.num_classes(), images[2], images[3]};
    logits_ = tensor_type(full);
    input_shape_ = images;
    cost_ = warm_up_model(*this, images, head_.options().ignore_index);
    return full;
  }
  const shape& input_shape() const { return input_shape_; }

  // Fused logits [N, K, H, W] at the image's resolution; head() holds the pyramids.
  const tensor_type& forward(const tensor_type& images) {
    require<error>(input_shape_.rank() == 4, model_name(), " forward: call setup first");
    head_.forward(hrnet_feature(images));
    head_.fuse();
    ops::resize_forward(resize_, head_.fused_logits(), logits_);
    return logits_;
  }

  loss_terms forward_backward(const tensor_type& images, const label_tensor& labels) {
    require<error>(input_shape_.rank() == 4, model_name(), " forward_backward: call setup first");
    head_.forward(hrnet_feature(images));
    const loss_terms terms = head_.loss(labels);
    // Activation gradients are leased from the pool, each given back once it is read.
    auto& pool = default_buffer_pool<device_type>();
    std::array<lease, 4> dbranches;
    {
      lease dfeature = pool.take_zeroed(feature_.shape());
      head_.backward(feature_, &dfeature.get());
      // The concat's backward splits the feature gradient; the resize's adds into each branch.
      std::array<lease, 4> dupsampled;
      for (int k = 0; k < 4; ++k) {
        lease& target = k == 0 ? dbranches[0] : dupsampled[size_t(k)];
        target = pool.take_zeroed(upsampled_shapes_[size_t(k)]);
        split_[size_t(k)] = &target.get();
      }
      ops::concat_backward<device_type>({1}, dfeature.get(), split_);
      dfeature.release();
      for (int k = 1; k < 4; ++k) {
        dbranches[size_t(k)] = pool.take_zeroed(branch_shapes_[size_t(k)]);
        ops::resize_backward(resize_, dupsampled[size_t(k)].get(), dbranches[size_t(k)].get());
        dupsampled[size_t(k)].release();
      }
    }
    std::array<lease, 4> dfeatures;
    for (int k = 0; k < 4; ++k) dfeatures[size_t(k)] = pool.take_zeroed(feature_shapes_[size_t(k)]);
    const auto& f = backbone_.features();
    decoder_.backward(f, {&dbranches[0].get(), &dbranches[1].get(), &dbranches[2].get(),
                          &dbranches[3].get()},
                      {&dfeatures[0].get(), &dfeatures[1].get(), &dfeatures[2].get(),
                       &dfeatures[3].get()});
    for (auto& d : dbranches) d.release();
    backbone_.backward(images, {&dfeatures[0].get(), &dfeatures[1].get(), &dfeatures[2].get(),
                                &dfeatures[3].get()});
    return terms;
  }

  void zero_grad() {
    visit_parameters("", [](const std::string&, nn::parameter<device_type>& p) { p.zero_grad(); });
  }
  void train() { set_training(true); }
  void eval() { set_training(false); }
  bool training() const { return training_; }

  template <class Visit>
  void visit_parameters(const std::string& prefix, Visit&& visit) {
    backbone_.visit_parameters(nn::join_name(prefix, "backbone"), visit);
    decoder_.visit_parameters(nn::join_name(prefix, "decoder"), visit);
    head_.visit_parameters(nn::join_name(prefix, "decode_head"), visit);
  }
  template <class Visit>
  void visit_buffers(const std::string& prefix, Visit&& visit) {
    backbone_.visit_buffers(nn::join_name(prefix, "backbone"), visit);
    decoder_.visit_buffers(nn::join_name(prefix, "decoder"), visit);
    head_.visit_buffers(nn::join_name(prefix, "decode_head"), visit);
  }

  model_cost cost() const { return cost_; }
  Backbone& backbone() { return backbone_; }
  decoder_type& decoder() { return decoder_; }
  head_type& head() { return head_; }
  const head_type& head() const { return head_; }
  const tensor_type& logits() const { return logits_; }

 private:
  // Backbone -> decoder -> HRNetV2's concat of the four branches at stride 4.
  const tensor_type& hrnet_feature(const tensor_type& images) {
    const auto branches = decoder_.forward(backbone_.forward(images));
    // The upsampled branches live only until the concat has copied them: neither backward
    // reads them.
    std::array<lease, 4> upsampled;
    parts_[0] = *branches[0];
    for (int k = 1; k < 4; ++k) {
      upsampled[size_t(k)] = default_buffer_pool<device_type>().take(upsampled_shapes_[size_t(k)]);
      parts_[size_t(k)] = upsampled[size_t(k)].get();
      ops::resize_forward(resize_, *branches[size_t(k)], parts_[size_t(k)]);
    }
    ops::concat<device_type>({1}, parts_, feature_);
    for (auto& part : parts_) part = tensor_type();  // no stale handle into the arena
    return feature_;
  }

  void set_training(bool training) {
    training_ = training;
    backbone_.set_training(training);
    decoder_.set_training(training);
    head_.set_training(training);
  }

  Backbone backbone_;
  decoder_type decoder_;
  head_type head_;
  std::array<shape, 4> upsampled_shapes_, branch_shapes_, feature_shapes_;
  tensor_type feature_, logits_;
  std::vector<tensor_type> parts_ = std::vector<tensor_type>(4);  // concat inputs (handles)
  std::vector<tensor_type*> split_ = std::vector<tensor_type*>(4);
  ops::resize_params resize_{ops::resize_mode::bilinear, false};
  shape input_shape_;
  model_cost cost_{};
  bool training_ = true;
};

}  // namespace segkit::models
