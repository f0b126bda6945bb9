// segkit/models/ocr.hpp — OCRNet (Yuan et al.) on a 4-feature backbone: the model concept
// (models/model.hpp) around models::ocr_head (models/ocr_head.hpp).
// Provides:
//   models::ocr<Backbone, Channels = 512, KeyChannels = 256, AuxChannels = 256>:
//     backbone -> aux head (soft object regions) on feature 2, OCR head on feature 3 (mmseg's
//     OCRNet on a dilated ResNet: layer3 / layer4, both at the output stride 8 or 16) ->
//     bilinear resize (align_corners false) of the logits to the image size; forward_backward
//     adds OHEM CE (or CE) of the logits + 0.4 CE of the aux logits (models::ocr_loss).
//   models::ocr_options: head options (object_context false = the plain baseline head; dropout)
//     and loss options (ohem, thresh, min_kept, aux_weight); parse_ocr_options reads them from
//     a "key=value,..." string (the tools' --options).
// Names: backbone.<torchvision names>, decode_head.0.* (aux head), decode_head.1.* (OCR head),
//   mmseg's OCRNet state_dict (see ocr_head.hpp).
// Requires: features 2 and 3 of the backbone at the same resolution (a dilated ResNet at output
//   stride 8 or 16: models::resnet<D, W, 8>; shape_error naming both at setup otherwise).
// Guarantees: as models::fcn: setup plans every buffer and runs one warm-up step (parameters'
//   gradients and buffers restored), forward / forward_backward allocate nothing afterwards,
//   backward ADDS into parameter gradients, cost() = parameters and MACs of one inference
//   forward (backbone + OCR head, aux head included since the regions feed the OCR block).
#pragma once
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "segkit/models/model.hpp"
#include "segkit/models/option_string.hpp"
#include "segkit/models/warm_up.hpp"
#include "segkit/models/ocr_head.hpp"
#include "segkit/tensor/mac_counter.hpp"

namespace segkit::models {

struct ocr_options {
  ocr_head_options head{};
  ocr_loss_options loss{};
};

// "object_context=0" (the plain baseline head), "ohem=0", "thresh=0.6", "min_kept=50000",
// "aux_weight=0.4", "dropout=0" (any subset; "" = defaults): the tools' --options for OCR models.
inline ocr_options parse_ocr_options(const std::string& text) {
  const option_string o(text, "ocr options",
                        {"object_context", "dropout", "ohem", "thresh", "min_kept", "aux_weight"});
  ocr_options r;
  r.head.object_context = o.boolean("object_context", r.head.object_context);
  r.head.dropout = o.boolean("dropout", r.head.dropout);
  r.loss.ohem = o.boolean("ohem", r.loss.ohem);
  r.loss.thresh = float(o.number("thresh", r.loss.thresh, 0, 1));
  r.loss.min_kept = o.integer("min_kept", int(r.loss.min_kept), -1, 1 << 30);
  r.loss.aux_weight = o.number("aux_weight", r.loss.aux_weight, 0, 1e3);
  return r;
}

template <class Backbone, int Channels = 512, int KeyChannels = 256, int AuxChannels = 256>
class ocr {
 public:
  using device_type = typename Backbone::device_type;
  using tensor_type = tensor<float, device_type>;
  using label_tensor = tensor<int32_t, device_type>;
  using backbone_type = Backbone;
  using head_type = ocr_head<Backbone::channels[2], Backbone::channels[3], Channels, KeyChannels,
                             AuxChannels, device_type>;

  explicit ocr(int num_classes, uint64_t seed = 0) : ocr(num_classes, ocr_options{}, seed) {}
  ocr(int num_classes, const ocr_options& options, uint64_t seed = 0)
      : head_(num_classes, options.head), loss_(options.loss) {
    std::mt19937_64 rng(seed);
    backbone_.initialize(rng);
    head_.initialize(rng);
  }

  static std::string model_name() { return "ocr-" + Backbone::name(); }
  std::string name() const {
    return head_.options().object_context ? model_name() : model_name() + "-baseline";
  }
  int num_classes() const { return head_.num_classes(); }

  shape setup(const shape& images) {
    require<shape_error>(images.rank() == 4 && images[1] == 3, model_name(),
                         " setup: images of shape ", images.to_string(), " are not [N, 3, H, W]");
    const auto features = backbone_.setup(images);
    require<shape_error>(features[2][2] == features[3][2] && features[2][3] == features[3][3],
                         model_name(), " setup: backbone features 2 ", features[2].to_string(),
                         " and 3 ", features[3].to_string(),
                         " differ in size; OCR needs a dilated backbone (output stride 8 or 16)");
    const shape small = head_.setup(features[2], features[3]);
    const shape full{images[0], small[1], images[2], images[3]};
    loss_.setup(small, shape{images[0], images[2], images[3]});
    logits_ = tensor_type(full);
    dlogits_ = tensor_type(small);
    daux_ = tensor_type(small);
    dfeatures_[2] = tensor_type(features[2]);
    dfeatures_[3] = tensor_type(features[3]);
    input_shape_ = images;
    cost_ = warm_up_model(*this, images, loss_.options().ignore_index);
    return full;
  }
  const shape& input_shape() const { return input_shape_; }

  // Logits [N, K, H, W] of the OCR head (not the aux head), at the image's resolution.
  const tensor_type& forward(const tensor_type& images) {
    require<error>(input_shape_.rank() == 4, model_name(), " forward: call setup first");
    const auto features = backbone_.forward(images);
    ops::resize_forward(resize_, head_.forward(*features[2], *features[3]), logits_);
    return logits_;
  }

  loss_terms forward_backward(const tensor_type& images, const label_tensor& labels) {
    require<error>(input_shape_.rank() == 4, model_name(), " forward_backward: call setup first");
    const auto features = backbone_.forward(images);
    const tensor_type& small = head_.forward(*features[2], *features[3]);
    ops::resize_forward(resize_, small, logits_);
    dlogits_.zero();
    daux_.zero();
    const loss_terms result =
        loss_.forward_backward(small, head_.aux_logits(), labels, dlogits_, daux_);
    dfeatures_[2].zero();
    dfeatures_[3].zero();
    head_.backward(*features[2], *features[3], dlogits_, &daux_, &dfeatures_[2], &dfeatures_[3]);
    backbone_.backward(images, {nullptr, nullptr, &dfeatures_[2], &dfeatures_[3]});
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
  }
  template <class Visit>
  void visit_buffers(const std::string& prefix, Visit&& visit) {
    backbone_.visit_buffers(nn::join_name(prefix, "backbone"), visit);
    head_.visit_buffers(nn::join_name(prefix, "decode_head"), visit);
  }

  model_cost cost() const { return cost_; }
  Backbone& backbone() { return backbone_; }
  head_type& head() { return head_; }
  const ocr_loss<device_type>& loss() const { return loss_; }
  const tensor_type& logits() const { return logits_; }

 private:
  void set_training(bool training) {
    training_ = training;
    backbone_.set_training(training);
    head_.set_training(training);
  }

  Backbone backbone_;
  head_type head_;
  ocr_loss<device_type> loss_;
  tensor_type logits_, dlogits_, daux_;
  std::array<tensor_type, 4> dfeatures_;
  ops::resize_params resize_{ops::resize_mode::bilinear, false};
  shape input_shape_;
  model_cost cost_{};
  bool training_ = true;
};

}  // namespace segkit::models
