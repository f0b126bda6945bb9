// segkit/models/hfgd.hpp — the full HFGD model (METHODS §2) on a 4-feature backbone
// (models::resnet at output stride 32), implementing the model concept of models/model.hpp.
// Provides models::hfgd<Backbone, AuxChannels = 0, Cae = 512, Key = 64, Fpn = 256,
//   LeadKernel = 3>: backbone -> hfgd_head (models/hfgd_head.hpp) -> fine logits bilinearly
//   resized (align_corners = false) to the image size; forward_backward adds the head's losses
//   (ce_fine + ce_coarse + CAR intra/inter/c2p, weights 1) and, when AuxChannels > 0, mmseg's
//   auxiliary FCN head on feature 2 (stride 16, 1 conv) with weight 0.4 (METHODS recipe).
//   Variants (runtime): hfgd_options {hfgm, axial, output_stride 4/2, car_weight}, also from a
//   string (parse_hfgd_options); SFPN
//   instead of U-SFPN: LeadKernel = 1 with output_stride 4.
// Names: backbone.<torchvision>, decode_head.<hfgd_head names>, auxiliary_head.* (fcn's).
// Guarantees: as models::fcn (setup warm-up, no allocation afterwards in the graph parts,
//   backward adds into gradients, cost() = parameters and inference MACs of the decode head).
#pragma once
#include <array>
#include <random>
#include <string>

#include "segkit/models/fcn.hpp"
#include "segkit/models/hfgd_head.hpp"
#include "segkit/models/model.hpp"
#include "segkit/models/option_string.hpp"
#include "segkit/models/warm_up.hpp"

namespace segkit::models {

// "hfgm=0,axial=0,output_stride=2,car_weight=0.5" (any subset; "" = defaults): the tools'
// --options for HFGD models. SFPN instead of U-SFPN is a model name (hfgd-sfpn-*), not an option:
// it changes the lead convolutions' shape.
inline hfgd_options parse_hfgd_options(const std::string& text) {
  const option_string o(text, "hfgd options", {"hfgm", "axial", "output_stride", "car_weight"});
  hfgd_options r;
  r.hfgm = o.boolean("hfgm", r.hfgm);
  r.axial = o.boolean("axial", r.axial);
  r.output_stride = o.choice("output_stride", 0, {"4", "2"}) == 0 ? 4 : 2;
  r.car_weight = o.number("car_weight", r.car_weight, 0, 1e3);
  return r;
}

template <class Backbone, int AuxChannels = 0, int Cae = 512, int Key = 64, int Fpn = 256,
          int LeadKernel = 3>
class hfgd {
 public:
  using device_type = typename Backbone::device_type;
  using tensor_type = tensor<float, device_type>;
  using label_tensor = tensor<int32_t, device_type>;
  using backbone_type = Backbone;
  using head_type = hfgd_head<Backbone::channels[0], Backbone::channels[1], Backbone::channels[2],
                              Backbone::channels[3], device_type, Cae, Key, Fpn, LeadKernel>;
  static constexpr bool has_aux = AuxChannels > 0;
  static constexpr double aux_weight = 0.4;

  explicit hfgd(int num_classes, hfgd_options options = {}, uint64_t seed = 0)
      : head_(num_classes, options), aux_(has_aux ? num_classes : 1) {
    std::mt19937_64 rng(seed);
    backbone_.initialize(rng);
    head_.initialize(rng);
    if constexpr (has_aux) aux_.initialize(rng);
  }

  static std::string model_name() {
    return std::string(LeadKernel == 1 ? "hfgd-sfpn-" : "hfgd-") + Backbone::name();
  }
  std::string name() const { return model_name(); }
  int num_classes() const { return head_.num_classes(); }

  // H and W must be multiples of the backbone's stride 32 (eval/inference.hpp pads to it).
  int64_t size_multiple() const { return 32; }

  shape setup(const shape& images) {
    require<shape_error>(images.rank() == 4 && images[1] == 3 && images[2] > 0 && images[3] > 0 &&
                             images[2] % 32 == 0 && images[3] % 32 == 0,
                         model_name(), " setup: images of shape ", images.to_string(),
                         " are not [N, 3, H, W] with H and W positive multiples of 32 (the "
                         "FPN adds stride-32 features upsampled to stride 16, 8 and 4)");
    const auto features = backbone_.setup(images);
    std::array<shape, 4> fs;
    for (int i = 0; i < 4; ++i) fs[size_t(i)] = features[size_t(i)];
    head_.setup(fs, shape{images[0], images[2], images[3]});
    const shape full{images[0], head_.num_classes(), images[2], images[3]};
    logits_ = tensor_type(full);
    dlogits_ = tensor_type(full);
    for (int i = 0; i < 4; ++i) dfeatures_[size_t(i)] = tensor_type(fs[size_t(i)]);
    if constexpr (has_aux) {
      const shape aux_small = aux_.setup(fs[2]);
      aux_logits_ = tensor_type(full);
      daux_small_ = tensor_type(aux_small);
      daux_feature_ = tensor_type(fs[2]);
    }
    input_shape_ = images;
    cost_ = warm_up_model(*this, images, ce_params_.ignore_index);
    return full;
  }
  const shape& input_shape() const { return input_shape_; }

  // Fine logits [N, K, H, W] at the image's resolution.
  const tensor_type& forward(const tensor_type& images) {
    require<error>(input_shape_.rank() == 4, model_name(), " forward: call setup first");
    const auto f = backbone_.forward(images);
    ops::resize_forward(resize_, head_.forward({f[0], f[1], f[2], f[3]}), logits_);
    return logits_;
  }

  loss_terms forward_backward(const tensor_type& images, const label_tensor& labels) {
    const auto f = backbone_.forward(images);
    const std::array<const tensor_type*, 4> in{f[0], f[1], f[2], f[3]};
    head_.forward(in);
    std::array<tensor_type*, 4> d;
    for (int i = 0; i < 4; ++i) {
      dfeatures_[size_t(i)].zero();
      d[size_t(i)] = &dfeatures_[size_t(i)];
    }
    loss_terms result = head_.loss_backward(labels, in, d);
    copy_into(head_.fine_full(), logits_);
    if constexpr (has_aux) {
      ops::resize_forward(resize_, aux_.forward(*f[2]), aux_logits_);
      const float aux = train::cross_entropy_forward(ce_params_, aux_logits_, labels, ce_state_);
      result.terms.emplace_back("aux_ce", aux);
      result.total += aux_weight * aux;
      dlogits_.zero();
      train::cross_entropy_backward(ce_params_, aux_logits_, labels, ce_state_, float(aux_weight),
                                    dlogits_);
      daux_small_.zero();
      ops::resize_backward(resize_, dlogits_, daux_small_);
      aux_.backward(*f[2], daux_small_, &dfeatures_[2]);
    }
    const bool hfgm = head_.options().hfgm;
    // Under HFGM the U-SFPN inputs are stopped: f0, f1 get nothing (f2 only the aux head's).
    const std::array<const tensor_type*, 4> dback{
        hfgm ? nullptr : &dfeatures_[0], hfgm ? nullptr : &dfeatures_[1],
        (hfgm && !has_aux) ? nullptr : &dfeatures_[2], &dfeatures_[3]};
    backbone_.backward(images, dback);
    return result;
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
    head_.visit_parameters(nn::join_name(prefix, "decode_head"), visit);
    if constexpr (has_aux) aux_.visit_parameters(nn::join_name(prefix, "auxiliary_head"), visit);
  }
  template <class Visit>
  void visit_buffers(const std::string& prefix, Visit&& visit) {
    backbone_.visit_buffers(nn::join_name(prefix, "backbone"), visit);
    head_.visit_buffers(nn::join_name(prefix, "decode_head"), visit);
    if constexpr (has_aux) aux_.visit_buffers(nn::join_name(prefix, "auxiliary_head"), visit);
  }

  model_cost cost() const { return cost_; }
  Backbone& backbone() { return backbone_; }
  head_type& head() { return head_; }
  const tensor_type& logits() const { return logits_; }

 private:
  void set_training(bool training) {
    training_ = training;
    backbone_.set_training(training);
    head_.set_training(training);
    aux_.set_training(training);
  }

  Backbone backbone_;
  head_type head_;
  fcn_head<Backbone::channels[2], (has_aux ? AuxChannels : 1), 1, false, device_type> aux_;
  tensor_type logits_, dlogits_, aux_logits_, daux_small_, daux_feature_;
  std::array<tensor_type, 4> dfeatures_;
  train::cross_entropy_params ce_params_{};
  train::loss_state<device_type> ce_state_;
  ops::resize_params resize_{ops::resize_mode::bilinear, false};
  shape input_shape_;
  model_cost cost_{};
  bool training_ = true;
};

}  // namespace segkit::models
