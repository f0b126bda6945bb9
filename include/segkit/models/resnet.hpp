// segkit/models/resnet.hpp — torchvision's ResNet (18, 34, 50, 101) as a segmentation backbone.
// Provides:
//   models::resnet<Depth, WidthPercent = 100, OutputStride = 32, Device = cpu>: a backbone that
//     returns the outputs of layer1..layer4 (strides 4, 8, 16, 32 at OutputStride 32);
//   the graph recipes it is built from (resnet_parts::basic_block / bottleneck / stage), usable
//     in any nn:: graph, and resnet_parts::flat_residual (a residual block that names its
//     children as torchvision does: no "body"/"shortcut" level).
// Requires: images [N, 3, H, W]; OutputStride 8, 16 or 32; WidthPercent >= 1.
// Guarantees:
//   - parameter and buffer names are exactly torchvision's state_dict names without "fc.*"
//     (conv1.weight, bn1.running_mean, layer1.0.conv1.weight, layer2.0.downsample.0.weight, ...);
//   - OutputStride 16 / 8 follows torchvision's replace_stride_with_dilation ([F, F, T] /
//     [F, T, T]): the stride of layer4 (and layer3) becomes 1, the dilation doubles, and the
//     first block of a dilated layer keeps the previous dilation (as torchvision). torchvision's
//     BasicBlock refuses dilation; here it dilates both of its 3x3 convolutions the same way;
//   - ResNet-50/101 are v1.5 (the stride sits on the 3x3 convolution, as torchvision);
//   - WidthPercent scales every channel count (stem 64, planes 64/128/256/512) by W/100;
//     100 is torchvision;
//   - setup allocates everything; forward and backward allocate nothing; backward takes one
//     gradient per feature (null: that feature is not in the loss), ADDS into parameter
//     gradients and never computes an image gradient.
#pragma once
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <utility>

#include "segkit/nn/branches.hpp"
#include "segkit/nn/layers.hpp"
#include "segkit/nn/sequence.hpp"
#include "segkit/tensor/buffer_pool.hpp"

namespace segkit::models {
namespace resnet_parts {

namespace names {
SEGKIT_NAME(conv1);
SEGKIT_NAME(bn1);
SEGKIT_NAME(conv2);
SEGKIT_NAME(bn2);
SEGKIT_NAME(conv3);
SEGKIT_NAME(bn3);
SEGKIT_NAME(downsample);
}  // namespace names

// y = relu(Shortcut(x) + Body(x)); Body and Shortcut are visited at this block's own prefix,
// so a Body of named children gives torchvision's "layer1.0.conv1.weight".
template <class Body, class Shortcut>
struct flat_residual {
  template <int C, bool G, class D>
  class layer {
    using body_type = nn::bind<Body, C, G, D>;
    using shortcut_type = nn::bind<Shortcut, C, G, D>;
    static_assert(sizeof(nn::channels_must_match<shortcut_type::out_channels,
                                                 body_type::out_channels>) > 0);

   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = body_type::out_channels;
    static constexpr bool trainable = true, propagates = true, input_wants_grad = G;

    shape setup(const shape& input, nn::setup_context<D>& context) {
      const shape body_out = body_.setup(input, context);
      const shape shortcut_out = shortcut_.setup(input, context);
      require_same_shape("resnet block setup", "the shortcut's output", shortcut_out,
                         "the body's output", body_out);
      y_ = nn::plan_residual_sum<body_type, tensor_type>(body_out);
      return body_out;
    }
    // As torchvision's `out += identity; out = relu(out)`: the sum overwrites the body's
    // output when the body's backward does not read it (it ends in batch norm), and the ReLU
    // runs in place on the sum (its slope is read from the output).
    const tensor_type& forward(const tensor_type& x) {
      const tensor_type& body_out = body_.forward(x);
      nn::residual_sum<body_type>(body_out, shortcut_.forward(x), y_);
      ops::activation_forward(relu_, y_, y_);
      return y_;
    }
    void backward(const tensor_type& x, const tensor_type& dy, tensor_type* dx) {
      auto dsum = default_buffer_pool<D>().take_zeroed(y_.shape());
      ops::activation_backward(relu_, y_, y_, dy, dsum.get());
      body_.backward(x, dsum.get(), dx);
      if constexpr (nn::has_backward<shortcut_type>)
        shortcut_.backward(x, dsum.get(), nn::computes_input_grad<shortcut_type> ? dx : nullptr);
    }
    void set_training(bool training) {
      body_.set_training(training);
      shortcut_.set_training(training);
    }
    void initialize(std::mt19937_64& rng) {
      body_.initialize(rng);
      shortcut_.initialize(rng);
    }
    template <class Visit>
    void visit_parameters(const std::string& prefix, Visit&& visit) {
      body_.visit_parameters(prefix, visit);
      shortcut_.visit_parameters(shortcut_prefix(prefix), visit);
    }
    template <class Visit>
    void visit_buffers(const std::string& prefix, Visit&& visit) {
      body_.visit_buffers(prefix, visit);
      shortcut_.visit_buffers(shortcut_prefix(prefix), visit);
    }

   private:
    static std::string shortcut_prefix(const std::string& prefix) {
      if constexpr (nn::has_name_tag<Shortcut>::value)
        return nn::join_name(prefix, Shortcut::name_tag::value);
      else
        return prefix;
    }
    body_type body_;
    shortcut_type shortcut_;
    tensor_type y_;
    ops::activation_params relu_{ops::activation::relu, 0.f};
  };
};

// The shortcut named "downsample" (a 1x1 convolution and batch norm) when the block changes
// the stride or the channel count, identity otherwise (torchvision's rule).
template <int Out, int Stride>
using downsample = nn::named<names::downsample, nn::seq<nn::conv<Out, 1, Stride, 0>, nn::batch_norm>>;

template <int Planes, int Stride, int Dilation>
struct basic_block {
  static constexpr int expansion = 1;
  using body = nn::seq<nn::named<names::conv1, nn::conv<Planes, 3, Stride, Dilation, Dilation>>,
                       nn::named<names::bn1, nn::batch_norm>, nn::relu,
                       nn::named<names::conv2, nn::conv<Planes, 3, 1, Dilation, Dilation>>,
                       nn::named<names::bn2, nn::batch_norm>>;
  template <int C, bool G, class D>
  using layer = typename flat_residual<
      body, std::conditional_t<(Stride != 1 || C != Planes), downsample<Planes, Stride>,
                               nn::identity>>::template layer<C, G, D>;
};

template <int Planes, int Stride, int Dilation>
struct bottleneck {
  static constexpr int expansion = 4;
  using body = nn::seq<nn::named<names::conv1, nn::conv<Planes, 1, 1, 0>>,
                       nn::named<names::bn1, nn::batch_norm>, nn::relu,
                       nn::named<names::conv2, nn::conv<Planes, 3, Stride, Dilation, Dilation>>,
                       nn::named<names::bn2, nn::batch_norm>, nn::relu,
                       nn::named<names::conv3, nn::conv<Planes * 4, 1, 1, 0>>,
                       nn::named<names::bn3, nn::batch_norm>>;
  template <int C, bool G, class D>
  using layer = typename flat_residual<
      body, std::conditional_t<(Stride != 1 || C != Planes * 4), downsample<Planes * 4, Stride>,
                               nn::identity>>::template layer<C, G, D>;
};

// torchvision's _make_layer: block 0 takes the stride (1 when dilated) and the previous
// dilation; blocks 1.. the layer's dilation. Children are named "0", "1", ...
template <template <int, int, int> class Block, int Planes, int Blocks, int Stride,
          int PreviousDilation, int Dilation, class Index = std::make_index_sequence<Blocks - 1>>
struct stage_of;
template <template <int, int, int> class Block, int Planes, int Blocks, int Stride,
          int PreviousDilation, int Dilation, size_t... I>
struct stage_of<Block, Planes, Blocks, Stride, PreviousDilation, Dilation,
                std::index_sequence<I...>> {
  template <size_t>
  using rest = Block<Planes, 1, Dilation>;
  using type = nn::seq<Block<Planes, Stride, PreviousDilation>, rest<I>...>;
};

template <int Depth>
struct depth_config;
template <>
struct depth_config<18> {
  template <int P, int S, int D>
  using block = basic_block<P, S, D>;
  static constexpr int expansion = 1;
  static constexpr std::array<int, 4> blocks{2, 2, 2, 2};
};
template <>
struct depth_config<34> {
  template <int P, int S, int D>
  using block = basic_block<P, S, D>;
  static constexpr int expansion = 1;
  static constexpr std::array<int, 4> blocks{3, 4, 6, 3};
};
template <>
struct depth_config<50> {
  template <int P, int S, int D>
  using block = bottleneck<P, S, D>;
  static constexpr int expansion = 4;
  static constexpr std::array<int, 4> blocks{3, 4, 6, 3};
};
template <>
struct depth_config<101> {
  template <int P, int S, int D>
  using block = bottleneck<P, S, D>;
  static constexpr int expansion = 4;
  static constexpr std::array<int, 4> blocks{3, 4, 23, 3};
};

constexpr int scaled(int channels, int width_percent) {
  return channels * width_percent / 100 > 0 ? channels * width_percent / 100 : 1;
}

// The recipes of one ResNet: stem and the four layers (each a graph recipe).
template <int Depth, int WidthPercent, int OutputStride>
struct recipes {
  static_assert(OutputStride == 8 || OutputStride == 16 || OutputStride == 32,
                "segkit::models::resnet: OutputStride must be 8, 16 or 32");
  static_assert(WidthPercent >= 1, "segkit::models::resnet: WidthPercent must be positive");
  using config = depth_config<Depth>;
  static constexpr int stem_channels = scaled(64, WidthPercent);
  static constexpr int planes(int k) { return scaled(64 << k, WidthPercent); }
  // replace_stride_with_dilation for layer3, layer4.
  static constexpr bool dilate3 = OutputStride == 8, dilate4 = OutputStride <= 16;
  static constexpr int dilation3 = dilate3 ? 2 : 1;
  static constexpr int dilation4 = dilation3 * (dilate4 ? 2 : 1);

  template <int P, int S, int D>
  using block = typename config::template block<P, S, D>;

  using stem = nn::seq<nn::named<names::conv1, nn::conv<stem_channels, 7, 2, 3>>,
                       nn::named<names::bn1, nn::batch_norm>, nn::relu, nn::max_pool<3, 2, 1>>;
  using layer1 = typename stage_of<block, planes(0), config::blocks[0], 1, 1, 1>::type;
  using layer2 = typename stage_of<block, planes(1), config::blocks[1], 2, 1, 1>::type;
  using layer3 = typename stage_of<block, planes(2), config::blocks[2], dilate3 ? 1 : 2, 1,
                                   dilation3>::type;
  using layer4 = typename stage_of<block, planes(3), config::blocks[3], dilate4 ? 1 : 2,
                                   dilation3, dilation4>::type;
};

}  // namespace resnet_parts

template <int Depth, int WidthPercent = 100, int OutputStride = 32, class Device = cpu>
class resnet {
  using parts = resnet_parts::recipes<Depth, WidthPercent, OutputStride>;
  using stem_type = nn::bind<typename parts::stem, 3, false, Device>;
  using layer1_type = nn::bind<typename parts::layer1, stem_type::out_channels, true, Device>;
  using layer2_type = nn::bind<typename parts::layer2, layer1_type::out_channels, true, Device>;
  using layer3_type = nn::bind<typename parts::layer3, layer2_type::out_channels, true, Device>;
  using layer4_type = nn::bind<typename parts::layer4, layer3_type::out_channels, true, Device>;

 public:
  using tensor_type = tensor<float, Device>;
  using lease = typename buffer_pool<Device>::lease;
  using device_type = Device;
  static constexpr int depth = Depth, width_percent = WidthPercent, output_stride = OutputStride;
  static constexpr std::array<int, 4> channels{
      layer1_type::out_channels, layer2_type::out_channels, layer3_type::out_channels,
      layer4_type::out_channels};
  // Strides of the four features relative to the image.
  static constexpr std::array<int, 4> strides{4, 8, OutputStride == 8 ? 8 : 16, OutputStride};

  explicit resnet(uint64_t seed = 0) {
    std::mt19937_64 rng(seed);
    initialize(rng);
  }

  // "resnet18", "resnet50-w50", "resnet18-os32": the width when not 100 and the output stride
  // when not 8, the segmentation default (mmseg's "-d8" models; the zoo's names).
  static std::string name() {
    std::string text = "resnet" + std::to_string(Depth);
    if (WidthPercent != 100) text += "-w" + std::to_string(WidthPercent);
    if (OutputStride != 8) text += "-os" + std::to_string(OutputStride);
    return text;
  }

  std::array<shape, 4> setup(const shape& images) {
    require<shape_error>(images.rank() == 4 && images[1] == 3, "resnet setup: images of shape ",
                         images.to_string(), " are not [N, 3, H, W]");
    nn::setup_context<Device> context;
    const shape s0 = stem_.setup(images, context);
    std::array<shape, 4> out;
    out[0] = layer1_.setup(s0, context);
    out[1] = layer2_.setup(out[0], context);
    out[2] = layer3_.setup(out[1], context);
    out[3] = layer4_.setup(out[2], context);
    stem_shape_ = s0;
    shapes_ = out;
    input_shape_ = images;
    return out;
  }
  const std::array<shape, 4>& feature_shapes() const { return shapes_; }
  const shape& input_shape() const { return input_shape_; }

  std::array<const tensor_type*, 4> forward(const tensor_type& images) {
    require<error>(input_shape_.rank() == 4, "resnet forward: call setup(images shape) first");
    require_shape("resnet forward", "images", images.shape(), input_shape_);
    const tensor_type& s0 = stem_.forward(images);
    features_[0] = &layer1_.forward(s0);
    features_[1] = &layer2_.forward(*features_[0]);
    features_[2] = &layer3_.forward(*features_[1]);
    features_[3] = &layer4_.forward(*features_[2]);
    stem_out_ = &s0;
    return features_;
  }
  const std::array<const tensor_type*, 4>& features() const { return features_; }

  // Gradients of the four features (null: not in the loss); follows forward on `images`.
  void backward(const tensor_type& images, const std::array<const tensor_type*, 4>& d_features) {
    require<error>(stem_out_ != nullptr, "resnet backward: call forward first");
    for (int k = 0; k < 4; ++k)
      if (d_features[k])
        require_shape("resnet backward", "feature gradient", d_features[k]->shape(), shapes_[k]);
    // grad: the gradient of the input of the layer just run back through (leased; empty when
    // nothing flows back yet).
    lease grad;
    if (d_features[3]) {
      grad = default_buffer_pool<Device>().take_zeroed(shapes_[2]);
      layer4_.backward(*features_[2], *d_features[3], &grad.get());
    }
    grad = step_back(layer3_, *features_[1], d_features[2], std::move(grad), shapes_[1]);
    grad = step_back(layer2_, *features_[0], d_features[1], std::move(grad), shapes_[0]);
    grad = step_back(layer1_, *stem_out_, d_features[0], std::move(grad), stem_shape_);
    if (grad) stem_.backward(images, grad.get(), nullptr);
  }

  void set_training(bool training) {
    training_ = training;
    stem_.set_training(training);
    layer1_.set_training(training);
    layer2_.set_training(training);
    layer3_.set_training(training);
    layer4_.set_training(training);
  }
  void train() { set_training(true); }
  void eval() { set_training(false); }
  bool training() const { return training_; }

  void initialize(std::mt19937_64& rng) {
    stem_.initialize(rng);
    layer1_.initialize(rng);
    layer2_.initialize(rng);
    layer3_.initialize(rng);
    layer4_.initialize(rng);
  }
  template <class Visit>
  void visit_parameters(const std::string& prefix, Visit&& visit) {
    stem_.visit_parameters(prefix, visit);
    layer1_.visit_parameters(nn::join_name(prefix, "layer1"), visit);
    layer2_.visit_parameters(nn::join_name(prefix, "layer2"), visit);
    layer3_.visit_parameters(nn::join_name(prefix, "layer3"), visit);
    layer4_.visit_parameters(nn::join_name(prefix, "layer4"), visit);
  }
  template <class Visit>
  void visit_buffers(const std::string& prefix, Visit&& visit) {
    stem_.visit_buffers(prefix, visit);
    layer1_.visit_buffers(nn::join_name(prefix, "layer1"), visit);
    layer2_.visit_buffers(nn::join_name(prefix, "layer2"), visit);
    layer3_.visit_buffers(nn::join_name(prefix, "layer3"), visit);
    layer4_.visit_buffers(nn::join_name(prefix, "layer4"), visit);
  }
  void zero_grad() {
    visit_parameters("", [](const std::string&, nn::parameter<Device>& p) { p.zero_grad(); });
  }

 private:
  // The gradient reaching layer `L`'s output is `grad_out` (when held) plus `d_feature`.
  // Returns its input's gradient, empty when nothing flows further back.
  template <class Layer>
  static lease step_back(Layer& L, const tensor_type& input, const tensor_type* d_feature,
                         lease grad_out, const shape& input_shape) {
    const tensor_type* dy = d_feature;
    if (grad_out) {
      if (d_feature) ops::add_into(grad_out.get(), *d_feature);
      dy = &grad_out.get();
    }
    if (!dy) return lease();
    lease grad_in = default_buffer_pool<Device>().take_zeroed(input_shape);
    L.backward(input, *dy, &grad_in.get());
    return grad_in;
  }

  stem_type stem_;
  layer1_type layer1_;
  layer2_type layer2_;
  layer3_type layer3_;
  layer4_type layer4_;
  std::array<shape, 4> shapes_;
  shape stem_shape_;
  shape input_shape_;
  std::array<const tensor_type*, 4> features_{};
  const tensor_type* stem_out_ = nullptr;
  bool training_ = true;
};

}  // namespace segkit::models
