// segkit/models/ocr_head.hpp — OCR (Yuan et al., object-contextual representations) as a model
// piece: the soft-object-region auxiliary head, the OCR head and its loss (METHODS.md §3).
// Provides:
//   models::ocr_head<AuxIn, In, Channels = 512, KeyChannels = 256, AuxChannels = 256, Device>:
//     aux head   regions = conv_seg_aux(ReLU(BN(conv3x3(aux_features) -> AuxChannels)))  [N,K,h,w]
//     pixels     f = ReLU(BN(conv3x3(features) -> Channels))                               [N,C,h,w]
//     gather     proxy[n, :, k] = sum_p softmax_p(regions[n, k]) f[n, :, p]   (ops::ocr_gather)
//     attention  Q = 2 x (1x1 Conv-BN-ReLU) on f, K = the same on proxy, V = 1 x on proxy,
//                o = softmax_k(Key^-1/2 Q.K) V (ops::attention2d), ctx = 1x1 Conv-BN-ReLU(o)->C
//     augmented  y = ReLU(BN(conv1x1(cat[ctx, f]) -> C)), Dropout(0.05), logits = conv_seg(y)
//     K = num_classes is a RUNTIME value: the two classifiers (aux and main) are parameters the
//     head owns and calls through ops::conv2d, and every op after the regions (gather,
//     key/value 1x1 convs on the [N, C, K, 1] proxy, attention over K keys) takes K from the
//     shapes at setup, so nothing about K is compiled in.
//     ocr_head_options{.object_context = false} is the plain baseline (pixels -> dropout ->
//     conv_seg, aux head still trained): the ablation "without OCR".
//   models::ocr_loss<Device>: logits and aux logits resized (bilinear, align_corners false) to
//     the labels, main term OHEM CE (train/cross_entropy.hpp: thresh 0.7, min_kept scaled from
//     HRNet's 100000 per 2 x 512 x 1024 crop pixels) or plain CE, aux term CE x 0.4.
// Names (mmseg's OCRNet state_dict under the model's "decode_head."): 0.convs.0.conv.weight,
//   0.convs.0.bn.*, 0.conv_seg.{weight,bias} (the FCN-like aux head = region predictor),
//   1.bottleneck.conv.weight (pixel representation), 1.object_context_block.{query_project.0,
//   query_project.1, key_project.0, key_project.1, value_project, out_project,
//   bottleneck}.{conv.weight, bn.*}, 1.conv_seg.{weight,bias}. The baseline visits no
//   object_context_block.* names.
// Requires: aux_features [N, AuxIn, h, w] and features [N, In, h, w] with the same N, h, w
//   (shape_error naming both otherwise); num_classes >= 1 (value_error).
// Guarantees: setup plans every buffer; forward/backward allocate nothing once the shared
//   workspaces have grown (the model's warm-up does that); backward ADDS into every parameter
//   gradient and into the feature gradients (nullptr: not wanted; the head then writes into its
//   own scratch), and the main loss reaches the aux head through the gather (no detach, as the
//   authors' code).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "segkit/models/model.hpp"
#include "segkit/nn/layers.hpp"
#include "segkit/nn/sequence.hpp"
#include "segkit/ops/attention2d.hpp"
#include "segkit/ops/concat.hpp"
#include "segkit/ops/conv2d.hpp"
#include "segkit/ops/elementwise.hpp"
#include "segkit/ops/ocr_gather.hpp"
#include "segkit/ops/permute.hpp"
#include "segkit/ops/resize.hpp"
#include "segkit/train/cross_entropy.hpp"

namespace segkit::models {
namespace ocr_parts {
namespace names {
SEGKIT_NAME(conv);
SEGKIT_NAME(bn);
}  // namespace names

// mmcv's ConvModule(conv without bias, BN, ReLU): "conv.weight", "bn.*".
template <int Out, int Kernel>
using conv_module = nn::seq<nn::named<names::conv, nn::conv<Out, Kernel>>,
                            nn::named<names::bn, nn::batch_norm>, nn::relu>;
// nn.Sequential of two 1x1 ConvModules (mmseg's key_query_num_convs = 2): "0.conv.weight", ...
template <int Out>
using projection2 = nn::seq<conv_module<Out, 1>, conv_module<Out, 1>>;

// A classifier with a runtime class count: 1x1 conv weight [K, In, 1, 1] and bias [K].
template <class Device>
struct runtime_classifier {
  nn::parameter<Device> weight, bias;
  ops::conv2d_params params{};
  void create(int classes, int in) {
    weight = nn::parameter<Device>({classes, in, 1, 1});
    bias = nn::parameter<Device>({classes});
  }
  // mmseg's BaseDecodeHead.init_weights: normal(std 0.01), zero bias.
  void initialize(std::mt19937_64& rng) {
    std::normal_distribution<float> pick(0.f, 0.01f);
    tensor<float, cpu> w(weight.shape());
    for (int64_t i = 0; i < w.numel(); ++i) w[i] = pick(rng);
    copy_into(w, weight.value);
    bias.value.zero();
  }
  template <class Visit>
  void visit_into(const std::string& prefix, Visit& f) {
    f(nn::join_name(prefix, "weight"), weight);
    f(nn::join_name(prefix, "bias"), bias);
  }
};
}  // namespace ocr_parts

struct ocr_head_options {
  bool object_context = true;  // false: the plain baseline head (no gather, no attention)
  bool dropout = true;         // Dropout(0.05) before conv_seg; off for exact parity tests
};

template <int AuxIn, int In, int Channels = 512, int KeyChannels = 256, int AuxChannels = 256,
          class Device = cpu>
class ocr_head {
  template <class R, int C>
  using bound = nn::bind<R, C, true, Device>;
  using aux_convs_type = bound<nn::seq<ocr_parts::conv_module<AuxChannels, 3>>, AuxIn>;
  using pixel_type = bound<ocr_parts::conv_module<Channels, 3>, In>;
  using project2_type = bound<ocr_parts::projection2<KeyChannels>, Channels>;
  using value_type = bound<ocr_parts::conv_module<KeyChannels, 1>, Channels>;
  using out_type = bound<ocr_parts::conv_module<Channels, 1>, KeyChannels>;
  using fuse_type = bound<ocr_parts::conv_module<Channels, 1>, 2 * Channels>;
  using dropout_type = bound<nn::dropout<5>, Channels>;

 public:
  using tensor_type = tensor<float, Device>;
  static constexpr int aux_in_channels = AuxIn, in_channels = In, channels = Channels,
                       key_channels = KeyChannels, aux_channels = AuxChannels;

  explicit ocr_head(int num_classes, ocr_head_options options = {})
      : num_classes_(num_classes), options_(options) {
    require<value_error>(num_classes >= 1, "ocr_head: num_classes is ", num_classes,
                         "; expected at least 1");
    aux_cls_.create(num_classes, AuxChannels);
    cls_.create(num_classes, Channels);
  }
  int num_classes() const { return num_classes_; }
  const ocr_head_options& options() const { return options_; }
  // Switch dropout on/off at run time (parity tests switch it off while batch norm trains).
  void set_dropout(bool on) { options_.dropout = on; }

  // Returns the logits' shape [N, K, h, w] (the aux logits have the same shape).
  shape setup(const shape& aux_features, const shape& features) {
    require<shape_error>(aux_features.rank() == 4 && aux_features[1] == AuxIn,
                         "ocr_head setup: aux features of shape ", aux_features.to_string(),
                         " do not have ", AuxIn, " channels");
    require<shape_error>(features.rank() == 4 && features[1] == In,
                         "ocr_head setup: features of shape ", features.to_string(),
                         " do not have ", In, " channels");
    require<shape_error>(aux_features[0] == features[0] && aux_features[2] == features[2] &&
                             aux_features[3] == features[3],
                         "ocr_head setup: aux features of shape ", aux_features.to_string(),
                         " and features of shape ", features.to_string(),
                         " differ in N, H or W (the regions must lie on the pixel grid)");
    nn::setup_context<Device> context;
    const shape aux_hidden = aux_convs_.setup(aux_features, context);
    regions_ = tensor_type(ops::conv2d_output_shape(aux_cls_.params, aux_hidden,
                                                    aux_cls_.weight.shape()));
    dregions_ = tensor_type(regions_.shape());
    daux_hidden_ = tensor_type(aux_hidden);
    const shape pixels = pixel_.setup(features, context);
    dpixels_ = tensor_type(pixels);
    dhidden_ = tensor_type(pixels);
    ddropped_ = tensor_type(pixels);
    scratch_aux_ = tensor_type(aux_features);
    scratch_features_ = tensor_type(features);

    // Object context: proxy [N, C, K, 1] (K runtime, a spatial extent for the 1x1 convs).
    const shape gathered = ops::ocr_gather_output_shape(regions_.shape(), pixels);
    probabilities_ = tensor_type(ops::ocr_gather_probabilities_shape(regions_.shape()));
    gathered_ = tensor_type(gathered);
    dgathered_ = tensor_type(gathered);
    proxy_ = tensor_type({gathered[0], gathered[2], gathered[1], 1});
    dproxy_ = tensor_type(proxy_.shape());
    const shape q = query_.setup(pixels, context);
    const shape k = key_.setup(proxy_.shape(), context);
    const shape v = value_.setup(proxy_.shape(), context);
    o_ = tensor_type(ops::attention2d_output_shape(attention_, q, k, v));
    lse_ = tensor_type(ops::attention2d_lse_shape(attention_, q, k, v));
    dq_ = tensor_type(q);
    dk_ = tensor_type(k);
    dv_ = tensor_type(v);
    do_ = tensor_type(o_.shape());
    const shape context_shape = out_.setup(o_.shape(), context);
    dcontext_ = tensor_type(context_shape);
    cat_shapes_ = {context_shape, pixels};
    cat_ = tensor_type(ops::concat_output_shape({1}, cat_shapes_));
    dcat_ = tensor_type(cat_.shape());
    fuse_.setup(cat_.shape(), context);

    dropout_.setup(pixels, context);
    logits_ = tensor_type(ops::conv2d_output_shape(cls_.params, pixels, cls_.weight.shape()));
    return logits_.shape();
  }

  // The aux logits (soft object regions) of the last forward, [N, K, h, w].
  const tensor_type& aux_logits() const { return regions_; }
  const tensor_type& logits() const { return logits_; }

  // Returns the logits [N, K, h, w]; aux_logits() holds the regions.
  const tensor_type& forward(const tensor_type& aux_features, const tensor_type& features) {
    aux_hidden_ = &aux_convs_.forward(aux_features);
    ops::conv2d_forward(aux_cls_.params, *aux_hidden_, aux_cls_.weight.value, &aux_cls_.bias.value,
                        regions_);
    pixels_ = &pixel_.forward(features);
    hidden_ = pixels_;
    if (options_.object_context) {
      ops::ocr_gather_forward(regions_, *pixels_, probabilities_, gathered_);
      auto proxy = proxy_.view({proxy_.size(0), proxy_.size(1), proxy_.size(2)});
      ops::permute(transpose_, gathered_, proxy);
      q_ = &query_.forward(*pixels_);
      k_ = &key_.forward(proxy_);
      v_ = &value_.forward(proxy_);
      ops::attention2d_forward(attention_, *q_, *k_, *v_, o_, lse_);
      cat_inputs_.resize(2);
      cat_inputs_[0] = out_.forward(o_);  // handles sharing storage, no copy
      cat_inputs_[1] = *pixels_;
      ops::concat<Device>({1}, cat_inputs_, cat_);
      hidden_ = &fuse_.forward(cat_);
    }
    dropped_ = options_.dropout ? &dropout_.forward(*hidden_) : hidden_;
    ops::conv2d_forward(cls_.params, *dropped_, cls_.weight.value, &cls_.bias.value, logits_);
    return logits_;
  }

  // dlogits, daux_logits: gradients of the loss w.r.t. the two logits (daux may be null).
  // Adds into parameter gradients and into *d_aux_features / *d_features (when not null).
  void backward(const tensor_type& aux_features, const tensor_type& features,
                const tensor_type& dlogits, const tensor_type* daux_logits,
                tensor_type* d_aux_features, tensor_type* d_features) {
    require_same_shape("ocr_head backward", "logits", logits_.shape(), "logit gradient",
                       dlogits.shape());
    if (daux_logits)
      require_same_shape("ocr_head backward", "aux logits", regions_.shape(),
                         "aux logit gradient", daux_logits->shape());
    ddropped_.zero();
    ops::conv2d_backward(cls_.params, *dropped_, cls_.weight.value, dlogits, &ddropped_,
                         &cls_.weight.grad, &cls_.bias.grad);
    const tensor_type* dhidden = &ddropped_;
    if (options_.dropout) {
      dhidden_.zero();
      dropout_.backward(*hidden_, ddropped_, &dhidden_);
      dhidden = &dhidden_;
    }
    if (daux_logits)
      copy_into(*daux_logits, dregions_);
    else
      dregions_.zero();
    dpixels_.zero();
    if (options_.object_context) {
      dcat_.zero();
      fuse_.backward(cat_, *dhidden, &dcat_);
      dcontext_.zero();
      cat_grads_ = {&dcontext_, &dpixels_};
      ops::concat_backward<Device>({1}, dcat_, cat_shapes_, cat_grads_);
      do_.zero();
      out_.backward(o_, dcontext_, &do_);
      dq_.zero();
      dk_.zero();
      dv_.zero();
      ops::attention2d_backward(attention_, *q_, *k_, *v_, o_, lse_, do_, &dq_, &dk_, &dv_);
      query_.backward(*pixels_, dq_, &dpixels_);
      dproxy_.zero();
      key_.backward(proxy_, dk_, &dproxy_);
      value_.backward(proxy_, dv_, &dproxy_);
      dgathered_.zero();
      ops::permute(transpose_, dproxy_.view({dproxy_.size(0), dproxy_.size(1), dproxy_.size(2)}),
                   dgathered_);
      ops::ocr_gather_backward(*pixels_, probabilities_, dgathered_, &dregions_, &dpixels_);
    } else {
      ops::add_into(dpixels_, *dhidden);
    }
    tensor_type* df = d_features ? d_features : &scratch_features_;
    pixel_.backward(features, dpixels_, df);
    daux_hidden_.zero();
    ops::conv2d_backward(aux_cls_.params, *aux_hidden_, aux_cls_.weight.value, dregions_,
                         &daux_hidden_, &aux_cls_.weight.grad, &aux_cls_.bias.grad);
    tensor_type* daf = d_aux_features ? d_aux_features : &scratch_aux_;
    aux_convs_.backward(aux_features, daux_hidden_, daf);
  }

  void set_training(bool training) {
    aux_convs_.set_training(training);
    pixel_.set_training(training);
    query_.set_training(training);
    key_.set_training(training);
    value_.set_training(training);
    out_.set_training(training);
    fuse_.set_training(training);
    dropout_.set_training(training);
  }
  void initialize(std::mt19937_64& rng) {
    aux_convs_.initialize(rng);
    aux_cls_.initialize(rng);
    pixel_.initialize(rng);
    query_.initialize(rng);
    key_.initialize(rng);
    value_.initialize(rng);
    out_.initialize(rng);
    fuse_.initialize(rng);
    dropout_.initialize(rng);
    cls_.initialize(rng);
  }
  template <class Visit>
  void visit_parameters(const std::string& prefix, Visit&& visit) {
    visit_all(prefix, visit, [](auto& layer, const std::string& name, auto& f) {
      layer.visit_parameters(name, f);
    });
    aux_cls_.visit_into(nn::join_name(prefix, "0.conv_seg"), visit);
    cls_.visit_into(nn::join_name(prefix, "1.conv_seg"), visit);
  }
  template <class Visit>
  void visit_buffers(const std::string& prefix, Visit&& visit) {
    visit_all(prefix, visit, [](auto& layer, const std::string& name, auto& f) {
      layer.visit_buffers(name, f);
    });
  }

 private:
  template <class Visit, class Apply>
  void visit_all(const std::string& prefix, Visit& visit, Apply apply) {
    apply(aux_convs_, nn::join_name(prefix, "0.convs"), visit);
    apply(pixel_, nn::join_name(prefix, "1.bottleneck"), visit);
    if (!options_.object_context) return;
    const std::string block = nn::join_name(prefix, "1.object_context_block");
    apply(query_, nn::join_name(block, "query_project"), visit);
    apply(key_, nn::join_name(block, "key_project"), visit);
    apply(value_, nn::join_name(block, "value_project"), visit);
    apply(out_, nn::join_name(block, "out_project"), visit);
    apply(fuse_, nn::join_name(block, "bottleneck"), visit);
  }

  int num_classes_;
  ocr_head_options options_;
  aux_convs_type aux_convs_;
  pixel_type pixel_;
  project2_type query_, key_;
  value_type value_;
  out_type out_;
  fuse_type fuse_;
  dropout_type dropout_;
  ocr_parts::runtime_classifier<Device> aux_cls_, cls_;
  const ops::attention2d_params attention_{1, 1.f / std::sqrt(float(KeyChannels))};
  const ops::permute_params transpose_{{0, 2, 1}};
  tensor_type regions_, dregions_, daux_hidden_, dpixels_, dhidden_, ddropped_, logits_;
  tensor_type probabilities_, gathered_, dgathered_, proxy_, dproxy_;
  tensor_type o_, lse_, dq_, dk_, dv_, do_, dcontext_, cat_, dcat_;
  tensor_type scratch_aux_, scratch_features_;
  std::vector<tensor_type> cat_inputs_;
  std::vector<tensor_type*> cat_grads_;
  std::vector<shape> cat_shapes_;
  const tensor_type *aux_hidden_ = nullptr, *pixels_ = nullptr, *hidden_ = nullptr,
                    *dropped_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr;
};

// ---- the loss ----------------------------------------------------------------------------
struct ocr_loss_options {
  bool ohem = true;          // main term: OHEM CE (HRNet's OhemCrossEntropy); false: plain CE
  float thresh = 0.7f;       // OHEM probability threshold
  int64_t min_kept = -1;     // < 0: HRNet's 100000 per 2 x 512 x 1024 label pixels, scaled to
                             // the label tensor's N*H*W (at least 1)
  double aux_weight = 0.4;   // weight of the aux (soft object region) CE
  int32_t ignore_index = 255;
};

// HRNet-OCR's min_kept (100000 for a per-GPU batch of 2 crops of 512 x 1024) scaled to `pixels`.
inline int64_t ocr_scaled_min_kept(int64_t pixels) {
  return std::max<int64_t>(1, std::llround(100000.0 * double(pixels) / (2.0 * 512.0 * 1024.0)));
}

template <class Device>
class ocr_loss {
 public:
  using tensor_type = tensor<float, Device>;
  using label_tensor = tensor<int32_t, Device>;
  explicit ocr_loss(ocr_loss_options options = {}) : options_(options) {}
  const ocr_loss_options& options() const { return options_; }

  // small: the head's logits [N, K, h, w]; labels: [N, H, W].
  void setup(const shape& small, const shape& labels) {
    require<shape_error>(small.rank() == 4 && labels.rank() == 3 && small[0] == labels[0],
                         "ocr_loss setup: logits of shape ", small.to_string(),
                         " and labels of shape ", labels.to_string(),
                         " are not [N, K, h, w] and [N, H, W]");
    const shape full{small[0], small[1], labels[1], labels[2]};
    full_ = tensor_type(full);
    dfull_ = tensor_type(full);
    ohem_.thresh = options_.thresh;
    ohem_.ignore_index = options_.ignore_index;
    ohem_.min_kept = options_.min_kept >= 0 ? options_.min_kept
                                            : ocr_scaled_min_kept(labels.numel());
    ce_.ignore_index = options_.ignore_index;
  }
  const train::ohem_params& ohem_params() const { return ohem_; }

  // Terms "ohem_ce" (or "ce") and "aux_ce"; total = main + aux_weight * aux. ADDS the gradients
  // into dlogits and daux_logits (both [N, K, h, w]).
  loss_terms forward_backward(const tensor_type& logits, const tensor_type& aux_logits,
                              const label_tensor& labels, tensor_type& dlogits,
                              tensor_type& daux_logits) {
    loss_terms result;
    ops::resize_forward(resize_, logits, full_);
    dfull_.zero();
    if (options_.ohem) {
      const float main = train::ohem_cross_entropy_forward(ohem_, full_, labels, state_);
      train::ohem_cross_entropy_backward(ohem_, full_, labels, state_, 1.f, dfull_);
      result.terms.emplace_back("ohem_ce", main);
      result.total = main;
    } else {
      const float main = train::cross_entropy_forward(ce_, full_, labels, state_);
      train::cross_entropy_backward(ce_, full_, labels, state_, 1.f, dfull_);
      result.terms.emplace_back("ce", main);
      result.total = main;
    }
    ops::resize_backward(resize_, dfull_, dlogits);
    ops::resize_forward(resize_, aux_logits, full_);
    const float aux = train::cross_entropy_forward(ce_, full_, labels, state_);
    dfull_.zero();
    train::cross_entropy_backward(ce_, full_, labels, state_, float(options_.aux_weight), dfull_);
    ops::resize_backward(resize_, dfull_, daux_logits);
    result.terms.emplace_back("aux_ce", aux);
    result.total += options_.aux_weight * aux;
    return result;
  }

 private:
  ocr_loss_options options_;
  train::ohem_params ohem_{};
  train::cross_entropy_params ce_{};
  train::loss_state<Device> state_;
  ops::resize_params resize_{ops::resize_mode::bilinear, false};
  tensor_type full_, dfull_;
};

}  // namespace segkit::models
