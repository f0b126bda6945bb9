// segkit/models/fcn.hpp — FCN (mmsegmentation's FCNHead) on a 4-feature backbone: the baseline
// model of the model concept (models/model.hpp).
// Provides:
//   models::fcn_head<InChannels, Channels, NumConvs, ConcatInput, Device>: mmseg's FCNHead —
//     [3x3 conv + BN + ReLU] x NumConvs, optionally conv_cat(cat(x, convs(x))), dropout 0.1,
//     a 1x1 classifier with a RUNTIME class count (its weight and bias are parameters the head
//     owns; the conv op is called directly), logits at the feature's resolution;
//   models::fcn<Backbone, HeadChannels, AuxChannels = 0>: backbone -> decode head on the
//     stride-last feature -> bilinear resize (align_corners = false) to the image size;
//     forward_backward adds cross-entropy (ignore 255) and, when AuxChannels > 0, mmseg's
//     auxiliary FCN head on feature 2 (stride 16 at OS 32; 1 conv, no concat) with weight 0.4.
// Names (mmseg's): backbone.<torchvision names>, decode_head.convs.0.conv.weight,
//   decode_head.convs.0.bn.*, decode_head.conv_cat.conv.weight, decode_head.conv_seg.{weight,
//   bias}, auxiliary_head.* (the same). A torchvision checkpoint loads into the backbone with
//   load_options{.module_prefix = "backbone."} (see docs/backbones.md).
// Guarantees: setup plans every buffer and runs one warm-up step (parameters, gradients and
// buffers restored) so forward and forward_backward allocate nothing afterwards; backward ADDS
// into parameter gradients; cost() is the parameter count and the MACs of one inference forward
// (decode head only) at the last setup shape.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "segkit/models/model.hpp"
#include "segkit/models/warm_up.hpp"
#include "segkit/nn/branches.hpp"
#include "segkit/nn/layers.hpp"
#include "segkit/nn/sequence.hpp"
#include "segkit/ops/concat.hpp"
#include "segkit/ops/conv2d.hpp"
#include "segkit/ops/resize.hpp"
#include "segkit/tensor/mac_counter.hpp"
#include "segkit/train/cross_entropy.hpp"

namespace segkit::models {
namespace fcn_parts {
namespace names {
SEGKIT_NAME(conv);
SEGKIT_NAME(bn);
}  // namespace names

// mmcv's ConvModule(conv 3x3 without bias, BN, ReLU): "conv.weight", "bn.*".
template <int Out, int Kernel = 3>
using conv_module = nn::seq<nn::named<names::conv, nn::conv<Out, Kernel>>,
                            nn::named<names::bn, nn::batch_norm>, nn::relu>;

template <int Out, int Count, class Index = std::make_index_sequence<Count>>
struct conv_stack;
template <int Out, int Count, size_t... I>
struct conv_stack<Out, Count, std::index_sequence<I...>> {
  template <size_t>
  using one = conv_module<Out>;
  using type = nn::seq<one<I>...>;
};
}  // namespace fcn_parts

template <int InChannels, int Channels, int NumConvs, bool ConcatInput, class Device = cpu>
class fcn_head {
  static_assert(NumConvs >= 1, "segkit::models::fcn_head: NumConvs must be at least 1");
  using convs_type = nn::bind<typename fcn_parts::conv_stack<Channels, NumConvs>::type, InChannels,
                              true, Device>;
  using cat_type = nn::bind<std::conditional_t<ConcatInput, fcn_parts::conv_module<Channels>,
                                               nn::identity>,
                            InChannels + Channels, true, Device>;
  using dropout_type = nn::bind<nn::dropout<10>, Channels, true, Device>;

 public:
  using tensor_type = tensor<float, Device>;
  static constexpr int in_channels = InChannels, channels = Channels;

  explicit fcn_head(int num_classes) : num_classes_(num_classes) {
    require<value_error>(num_classes >= 1, "fcn_head: num_classes is ", num_classes,
                         "; expected at least 1");
    weight_ = nn::parameter<Device>({num_classes, Channels, 1, 1});
    bias_ = nn::parameter<Device>({num_classes});
  }
  int num_classes() const { return num_classes_; }

  // features [N, InChannels, h, w] -> logits [N, K, h, w].
  shape setup(const shape& features) {
    require<shape_error>(features.rank() == 4 && features[1] == InChannels,
                         "fcn_head setup: features of shape ", features.to_string(),
                         " do not have ", InChannels, " channels");
    nn::setup_context<Device> context;
    shape out = convs_.setup(features, context);
    if constexpr (ConcatInput) {
      cat_shapes_ = {features, out};
      const shape cat_shape = ops::concat_output_shape({1}, cat_shapes_);
      cat_ = tensor_type(cat_shape);
      dcat_ = tensor_type(cat_shape);
      dconvs_ = tensor_type(out);
      out = cat_conv_.setup(cat_shape, context);
    }
    dropout_.setup(out, context);
    dhidden_ = tensor_type(out);
    ddropped_ = tensor_type(out);
    logits_ = tensor_type(ops::conv2d_output_shape(classifier_, out, weight_.shape()));
    return logits_.shape();
  }
  const tensor_type& forward(const tensor_type& features) {
    const tensor_type* hidden = &convs_.forward(features);
    if constexpr (ConcatInput) {
      cat_inputs_.resize(2);
      cat_inputs_[0] = features;  // handles sharing the storage, no copy
      cat_inputs_[1] = *hidden;
      ops::concat<Device>({1}, cat_inputs_, cat_);
      hidden = &cat_conv_.forward(cat_);
    }
    hidden_ = hidden;
    dropped_ = &dropout_.forward(*hidden);
    ops::conv2d_forward(classifier_, *dropped_, weight_.value, &bias_.value, logits_);
    return logits_;
  }
  // Adds into the parameter gradients and into *dfeatures (when not null).
  void backward(const tensor_type& features, const tensor_type& dlogits, tensor_type* dfeatures) {
    ddropped_.zero();
    ops::conv2d_backward(classifier_, *dropped_, weight_.value, dlogits, &ddropped_, &weight_.grad,
                         &bias_.grad);
    dhidden_.zero();
    dropout_.backward(*hidden_, ddropped_, &dhidden_);
    if constexpr (ConcatInput) {
      dcat_.zero();
      cat_conv_.backward(cat_, dhidden_, &dcat_);
      dconvs_.zero();
      // dcat_ splits into the features' part (straight into dfeatures) and the convs' part.
      cat_grads_.resize(2);
      cat_grads_[0] = dfeatures;
      cat_grads_[1] = &dconvs_;
      ops::concat_backward<Device>({1}, dcat_, cat_shapes_, cat_grads_);
      convs_.backward(features, dconvs_, dfeatures);
    } else {
      convs_.backward(features, dhidden_, dfeatures);
    }
  }

  void set_training(bool training) {
    convs_.set_training(training);
    cat_conv_.set_training(training);
    dropout_.set_training(training);
  }
  void initialize(std::mt19937_64& rng) {
    convs_.initialize(rng);
    if constexpr (ConcatInput) cat_conv_.initialize(rng);
    dropout_.initialize(rng);
    // mmseg's BaseDecodeHead.init_weights: normal(std 0.01) classifier, zero bias.
    std::normal_distribution<float> pick(0.f, 0.01f);
    tensor<float, cpu> w(weight_.shape());
    for (int64_t i = 0; i < w.numel(); ++i) w[i] = pick(rng);
    copy_into(w, weight_.value);
    bias_.value.zero();
  }
  template <class Visit>
  void visit_parameters(const std::string& prefix, Visit&& visit) {
    convs_.visit_parameters(nn::join_name(prefix, "convs"), visit);
    if constexpr (ConcatInput) cat_conv_.visit_parameters(nn::join_name(prefix, "conv_cat"), visit);
    visit(nn::join_name(prefix, "conv_seg.weight"), weight_);
    visit(nn::join_name(prefix, "conv_seg.bias"), bias_);
  }
  template <class Visit>
  void visit_buffers(const std::string& prefix, Visit&& visit) {
    convs_.visit_buffers(nn::join_name(prefix, "convs"), visit);
    if constexpr (ConcatInput) cat_conv_.visit_buffers(nn::join_name(prefix, "conv_cat"), visit);
  }

 private:
  int num_classes_;
  convs_type convs_;
  cat_type cat_conv_;
  dropout_type dropout_;
  nn::parameter<Device> weight_, bias_;
  ops::conv2d_params classifier_{};  // 1x1, stride 1, no padding
  tensor_type cat_, dcat_, dconvs_, dhidden_, ddropped_, logits_;
  std::vector<tensor_type> cat_inputs_;
  std::vector<tensor_type*> cat_grads_;
  std::vector<shape> cat_shapes_;
  const tensor_type *hidden_ = nullptr, *dropped_ = nullptr;
};

// The model: Backbone (models::resnet, models::hrnet: 4 features, channels[k]) + FCN head on
// feature 3 (mmseg: num_convs 2, concat_input, dropout 0.1) + optional auxiliary head on
// feature 2 (num_convs 1, no concat, loss weight 0.4).
template <class Backbone, int HeadChannels, int AuxChannels = 0>
class fcn {
 public:
  using device_type = typename Backbone::device_type;
  using tensor_type = tensor<float, device_type>;
  using label_tensor = tensor<int32_t, device_type>;
  using backbone_type = Backbone;
  static constexpr bool has_aux = AuxChannels > 0;
  static constexpr double aux_weight = 0.4;

  explicit fcn(int num_classes, uint64_t seed = 0)
      : head_(num_classes), aux_(has_aux ? num_classes : 1) {
    std::mt19937_64 rng(seed);
    backbone_.initialize(rng);
    head_.initialize(rng);
    if constexpr (has_aux) aux_.initialize(rng);
  }

  static std::string model_name() { return "fcn-" + Backbone::name(); }
  std::string name() const { return model_name(); }
  int num_classes() const { return head_.num_classes(); }

  shape setup(const shape& images) {
    require<shape_error>(images.rank() == 4 && images[1] == 3, model_name(),
                         " setup: images of shape ", images.to_string(), " are not [N, 3, H, W]");
    const auto features = backbone_.setup(images);
    const shape small = head_.setup(features[3]);
    const shape full{images[0], small[1], images[2], images[3]};
    logits_ = tensor_type(full);
    dlogits_ = tensor_type(full);
    dsmall_ = tensor_type(small);
    dfeatures_[3] = tensor_type(features[3]);
    if constexpr (has_aux) {
      const shape aux_small = aux_.setup(features[2]);
      aux_logits_ = tensor_type(full);
      daux_small_ = tensor_type(aux_small);
      dfeatures_[2] = tensor_type(features[2]);
    }
    input_shape_ = images;
    cost_ = warm_up_model(*this, images, ce_params_.ignore_index);
    return full;
  }
  const shape& input_shape() const { return input_shape_; }

  // Logits [N, K, H, W] (decode head only), at the image's resolution.
  const tensor_type& forward(const tensor_type& images) {
    require<error>(input_shape_.rank() == 4, model_name(), " forward: call setup first");
    const auto features = backbone_.forward(images);
    ops::resize_forward(resize_, head_.forward(*features[3]), logits_);
    return logits_;
  }

  loss_terms forward_backward(const tensor_type& images, const label_tensor& labels) {
    const auto features = backbone_.forward(images);
    ops::resize_forward(resize_, head_.forward(*features[3]), logits_);
    loss_terms result;
    const float ce = train::cross_entropy_forward(ce_params_, logits_, labels, ce_state_);
    result.terms.emplace_back("ce", ce);
    result.total = ce;
    dlogits_.zero();
    train::cross_entropy_backward(ce_params_, logits_, labels, ce_state_, 1.f, dlogits_);
    dsmall_.zero();
    ops::resize_backward(resize_, dlogits_, dsmall_);
    dfeatures_[3].zero();
    head_.backward(*features[3], dsmall_, &dfeatures_[3]);
    std::array<const tensor_type*, 4> dfeatures{nullptr, nullptr, nullptr, &dfeatures_[3]};
    if constexpr (has_aux) {
      ops::resize_forward(resize_, aux_.forward(*features[2]), aux_logits_);
      const float aux = train::cross_entropy_forward(ce_params_, aux_logits_, labels, ce_state_);
      result.terms.emplace_back("aux_ce", aux);
      result.total += aux_weight * aux;
      dlogits_.zero();
      train::cross_entropy_backward(ce_params_, aux_logits_, labels, ce_state_, float(aux_weight),
                                    dlogits_);
      daux_small_.zero();
      ops::resize_backward(resize_, dlogits_, daux_small_);
      dfeatures_[2].zero();
      aux_.backward(*features[2], daux_small_, &dfeatures_[2]);
      dfeatures[2] = &dfeatures_[2];
    }
    backbone_.backward(images, dfeatures);
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
  const tensor_type& logits() const { return logits_; }

 private:
  void set_training(bool training) {
    training_ = training;
    backbone_.set_training(training);
    head_.set_training(training);
    aux_.set_training(training);
  }

  Backbone backbone_;
  fcn_head<Backbone::channels[3], HeadChannels, 2, true, device_type> head_;
  fcn_head<Backbone::channels[2], (has_aux ? AuxChannels : 1), 1, false, device_type> aux_;
  tensor_type logits_, dlogits_, dsmall_, aux_logits_, daux_small_;
  std::array<tensor_type, 4> dfeatures_;
  train::cross_entropy_params ce_params_{};
  train::loss_state<device_type> ce_state_;
  ops::resize_params resize_{ops::resize_mode::bilinear, false};
  shape input_shape_;
  model_cost cost_{};
  bool training_ = true;
};

}  // namespace segkit::models
