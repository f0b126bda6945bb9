// segkit/models/resnet_decoder.hpp — the "ResNet-decoder" of Specialize and Fuse (SaF),
// supplementary §D ("Architecture of our ResNet-decoder"):
//   "we use the features from the four stages of a standard ResNet, which respectively have
//    output strides 4, 8, 16, 32, and 256, 512, 1024, 2048 latent channels. To reduce the
//    computational cost, the numbers of latent channels are decreased from [256, 512, 1024,
//    2048] to [48, 96, 192, 384] with Conv3x3 layers. We then fuse the four features by
//    applying the last stage of HRNet, which produces a high-resolution feature for the
//    following semantic segmentation model head."
// Provides:
//   models::resnet_decoder<C0, C1, C2, C3, Width = 48, Modules = 3, Blocks = 4, Device = cpu>:
//     input: the four backbone features [N, Ck, H/s, W/s] (s = 4, 8, 16, 32: a STANDARD,
//     output-stride-32 ResNet, as the paper); reduce.k: conv3x3 (Ck -> Width * 2^k) + BN + ReLU;
//     stage4: HRNet's last stage (HRNet-W48: 3 HighResolutionModules, 4 BasicBlocks per branch,
//     branches Width/2W/4W/8W = 48/96/192/384, multi-scale fusion of hrnet_parts::hr_module);
//     output: the stage's four fused branches (strides 4, 8, 16, 32; channels `channels`).
//     The "high-resolution feature" of the paper is what an HRNetV2 head builds from them
//     (upsample branches 1..3 to branch 0's size and concatenate: 15 * Width channels); that is
//     the head's job, so heads may also use the branches separately.
//   models::resnet_decoder_for<Backbone, Width, Modules, Blocks>: the decoder for a backbone's
//     `channels` and device.
// API:
//   std::array<shape, 4> setup(const std::array<shape, 4>& features);
//   std::array<const tensor*, 4> forward(const std::array<const tensor*, 4>& features);
//   void backward(features, d_outputs /* null: not in the loss */,
//                 d_features /* ADDED into; null: not wanted */);
//   set_training, initialize, visit_parameters / visit_buffers, zero_grad, name().
// Choices the paper leaves open: each Conv3x3 reduction is followed by BN + ReLU (as HRNet's
//   transition layers); the fusion upsamples with nearest neighbours (hrnet.hpp), so feature k
//   must be exactly twice feature k+1 in H and W (an image size divisible by 32).
// Names: reduce.k.0.weight, reduce.k.1.* (conv, BN), stage4.m.branches.i.b.conv1.weight,
//   stage4.m.fuse_layers.i.j...: exactly HRNet-W48's stage4 names at Width 48, 3 modules and
//   4 blocks, so an HRNet-W48 checkpoint's stage4.* initialises the fusion stage.
// Guarantees: setup allocates everything; forward and backward allocate nothing; backward ADDS.
#pragma once
#include <array>
#include <cstdint>
#include <random>
#include <string>

#include "segkit/models/hrnet.hpp"

namespace segkit::models {

template <int C0, int C1, int C2, int C3, int Width = 48, int Modules = 3, int Blocks = 4,
          class Device = cpu>
class resnet_decoder {
  static_assert(Width >= 1 && Modules >= 1 && Blocks >= 1,
                "segkit::models::resnet_decoder: Width, Modules and Blocks must be positive");
  using W = hrnet_parts::widths<Width, 2 * Width, 4 * Width, 8 * Width>;
  template <int Out>
  using reduce_recipe = nn::seq<nn::conv<Out, 3, 1, 1>, nn::batch_norm, nn::relu>;
  using reduce0_type = nn::bind<reduce_recipe<Width>, C0, true, Device>;
  using reduce1_type = nn::bind<reduce_recipe<2 * Width>, C1, true, Device>;
  using reduce2_type = nn::bind<reduce_recipe<4 * Width>, C2, true, Device>;
  using reduce3_type = nn::bind<reduce_recipe<8 * Width>, C3, true, Device>;
  using stage_type = hrnet_parts::hr_stage<W, 4, Blocks, Modules, Device>;

 public:
  using tensor_type = tensor<float, Device>;
  using device_type = Device;
  using features_type = std::array<const tensor_type*, 4>;
  static constexpr std::array<int, 4> in_channels{C0, C1, C2, C3};
  static constexpr std::array<int, 4> channels{Width, 2 * Width, 4 * Width, 8 * Width};

  explicit resnet_decoder(uint64_t seed = 0) {
    std::mt19937_64 rng(seed);
    initialize(rng);
  }
  // "resnet-decoder-w48" (the paper's), "resnet-decoder-w8-m1-b1".
  static std::string name() {
    std::string text = "resnet-decoder-w" + std::to_string(Width);
    if (Modules != 3 || Blocks != 4)
      text += "-m" + std::to_string(Modules) + "-b" + std::to_string(Blocks);
    return text;
  }

  std::array<shape, 4> setup(const std::array<shape, 4>& features) {
    for (int k = 0; k < 4; ++k) {
      const shape& f = features[k];
      require<shape_error>(f.rank() == 4 && f[1] == in_channels[k], "resnet_decoder setup: feature ",
                           k, " of shape ", f.to_string(), " does not have ", in_channels[k],
                           " channels");
      if (k > 0)
        require<shape_error>(f[0] == features[0][0] && features[k - 1][2] == 2 * f[2] &&
                                 features[k - 1][3] == 2 * f[3],
                             "resnet_decoder setup: feature ", k, " of shape ", f.to_string(),
                             " is not half of feature ", k - 1, " of shape ",
                             features[k - 1].to_string(), " (strides 4, 8, 16, 32 of an image "
                             "whose size is a multiple of 32)");
    }
    nn::setup_context<Device> context;
    const std::array<shape, 4> r{reduce0_.setup(features[0], context),
                                 reduce1_.setup(features[1], context),
                                 reduce2_.setup(features[2], context),
                                 reduce3_.setup(features[3], context)};
    reduced_shapes_ = r;
    in_shapes_ = features;
    out_shapes_ = stage_.setup(r);
    return out_shapes_;
  }
  const std::array<shape, 4>& output_shapes() const { return out_shapes_; }

  features_type forward(const features_type& features) {
    require<error>(in_shapes_[0].rank() == 4, "resnet_decoder forward: call setup first");
    for (int k = 0; k < 4; ++k) {
      require<error>(features[k] != nullptr, "resnet_decoder forward: feature ", k, " is null");
      require_shape("resnet_decoder forward", "feature", features[k]->shape(), in_shapes_[k]);
    }
    reduced_ = {&reduce0_.forward(*features[0]), &reduce1_.forward(*features[1]),
                &reduce2_.forward(*features[2]), &reduce3_.forward(*features[3])};
    outputs_ = stage_.forward(reduced_);
    return outputs_;
  }
  const features_type& outputs() const { return outputs_; }

  // Follows forward(features). d_outputs: gradients of the four outputs (null: not in the
  // loss); d_features: ADDED into (null: that feature's gradient is not wanted).
  void backward(const features_type& features, const features_type& d_outputs,
                const std::array<tensor_type*, 4>& d_features) {
    require<error>(outputs_[0] != nullptr, "resnet_decoder backward: call forward first");
    bool any = false;
    for (int k = 0; k < 4; ++k) {
      if (d_outputs[k]) {
        require_shape("resnet_decoder backward", "output gradient", d_outputs[k]->shape(),
                      out_shapes_[k]);
        any = true;
      }
      if (d_features[k])
        require_shape("resnet_decoder backward", "feature gradient", d_features[k]->shape(),
                      in_shapes_[k]);
    }
    if (!any) return;  // the fusion mixes every branch into every output: all or nothing
    std::array<typename buffer_pool<Device>::lease, 4> dreduced;
    for (int k = 0; k < 4; ++k)
      dreduced[k] = default_buffer_pool<Device>().take_zeroed(reduced_shapes_[k]);
    stage_.backward(d_outputs, {&dreduced[0].get(), &dreduced[1].get(), &dreduced[2].get(),
                                &dreduced[3].get()});
    reduce0_.backward(*features[0], dreduced[0].get(), d_features[0]);
    reduce1_.backward(*features[1], dreduced[1].get(), d_features[1]);
    reduce2_.backward(*features[2], dreduced[2].get(), d_features[2]);
    reduce3_.backward(*features[3], dreduced[3].get(), d_features[3]);
  }

  void set_training(bool training) {
    training_ = training;
    visit_all("", [&](auto& part, const std::string&) { part.set_training(training); });
  }
  void train() { set_training(true); }
  void eval() { set_training(false); }
  bool training() const { return training_; }
  void initialize(std::mt19937_64& rng) {
    visit_all("", [&](auto& part, const std::string&) { part.initialize(rng); });
  }
  template <class Visit>
  void visit_parameters(const std::string& prefix, Visit&& visit) {
    visit_all(prefix, [&](auto& part, const std::string& p) { part.visit_parameters(p, visit); });
  }
  template <class Visit>
  void visit_buffers(const std::string& prefix, Visit&& visit) {
    visit_all(prefix, [&](auto& part, const std::string& p) { part.visit_buffers(p, visit); });
  }
  void zero_grad() {
    visit_parameters("", [](const std::string&, nn::parameter<Device>& p) { p.zero_grad(); });
  }

 private:
  template <class F>
  void visit_all(const std::string& prefix, F&& f) {
    f(reduce0_, nn::join_name(prefix, "reduce.0"));
    f(reduce1_, nn::join_name(prefix, "reduce.1"));
    f(reduce2_, nn::join_name(prefix, "reduce.2"));
    f(reduce3_, nn::join_name(prefix, "reduce.3"));
    f(stage_, nn::join_name(prefix, "stage4"));
  }

  reduce0_type reduce0_;
  reduce1_type reduce1_;
  reduce2_type reduce2_;
  reduce3_type reduce3_;
  stage_type stage_;
  std::array<shape, 4> reduced_shapes_;
  std::array<shape, 4> in_shapes_, out_shapes_;
  features_type reduced_{}, outputs_{};
  bool training_ = true;
};

template <class Backbone, int Width = 48, int Modules = 3, int Blocks = 4>
using resnet_decoder_for =
    resnet_decoder<Backbone::channels[0], Backbone::channels[1], Backbone::channels[2],
                   Backbone::channels[3], Width, Modules, Blocks, typename Backbone::device_type>;

}  // namespace segkit::models
