// segkit/models/hrnet.hpp — a small HRNet (HRNetV2-W18-small-v2) as a segmentation backbone, and
// the multi-resolution pieces it is built from (also used by models/resnet_decoder.hpp).
// Provides:
//   models::hrnet<WidthPercent = 100, Device = cpu>: HRNet-official "seg_hrnet_w18_small_v2" /
//     mmseg "hrnetv2_w18_small": stem (two 3x3 stride-2 convs of 64 + BN + ReLU), layer1 (2
//     Bottlenecks, planes 64 -> 256 channels), stage2 (1 module, branches 18/36), stage3 (3
//     modules, 18/36/72), stage4 (2 modules, 18/36/72/144), 2 BasicBlocks per branch, every
//     module with multi-scale output; returns stage4's four branches (strides 4, 8, 16, 32)
//     through the same API as models::resnet (channels, strides, setup, forward, backward with
//     one gradient per feature, null = not in the loss, ...);
//   hrnet_parts::hr_module<widths<...>, Branches, Blocks, Device>: HighResolutionModule
//     (branches of BasicBlocks, then fuse_layers; output i = relu(sum_j fuse_ij(branch_j)));
//   hrnet_parts::hr_stage<widths<...>, Branches, Blocks, Modules, Device>: Modules hr_modules.
// Names: HRNet-official / mmseg state_dict names, so their checkpoints convert by name:
//   conv1.weight, bn1.*, conv2.weight, bn2.*, layer1.0.conv1.weight, layer1.0.downsample.0.weight,
//   transition1.0.0.weight (conv3x3 + BN + ReLU: 256 -> 18), transition1.1.0.0.weight (stride-2
//   conv for the new branch), stage2.0.branches.1.0.conv1.weight,
//   stage2.0.fuse_layers.0.1.0.weight (upsampling: 1x1 conv, BN, upsample),
//   stage2.0.fuse_layers.1.0.0.0.weight (downsampling: chains of stride-2 3x3 conv + BN, ReLU
//   between), transition2.2.0.0.weight, stage3.2.*, transition3.3.0.0.weight, stage4.1.*.
//   No incre/downsamp/final layers (classification head) and no last_layer (segmentation head).
// Choices: the upsampling fuse path is conv1x1 + BN + nn.Upsample(scale 2^(j-i), 'nearest'),
//   as HRNet-official's classification code and mmseg (mmseg then resizes bilinearly to the
//   target size, the identity when the sizes already agree; HRNet-official's segmentation code
//   interpolates bilinearly instead). Because of that, setup requires H and W divisible by 32,
//   so every branch is exactly twice the next one.
// WidthPercent scales every channel count (stem 64, layer1 planes 64, branches 18/36/72/144);
//   100 is W18-small.
// Requires: images [N, 3, H, W], H and W multiples of 32.
// Guarantees: setup allocates everything; forward and backward allocate nothing; backward ADDS
//   into parameter gradients and never computes an image gradient.
#pragma once
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "segkit/models/resnet.hpp"
#include "segkit/nn/branches.hpp"
#include "segkit/nn/layers.hpp"
#include "segkit/nn/sequence.hpp"
#include "segkit/ops/activation.hpp"
#include "segkit/ops/elementwise.hpp"
#include "segkit/tensor/buffer_pool.hpp"

namespace segkit::models {
namespace hrnet_parts {

template <int... C>
struct widths {
  static constexpr std::array<int, sizeof...(C)> values{C...};
};

template <size_t... I, class F>
void static_for_impl(std::index_sequence<I...>, F&& f) {
  (f(std::integral_constant<size_t, I>{}), ...);
}
// f(integral_constant<size_t, 0>), ..., f(integral_constant<size_t, N - 1>).
template <size_t N, class F>
void static_for(F&& f) {
  static_for_impl(std::make_index_sequence<N>{}, f);
}

// fuse_layers[i][j] for j > i: conv1x1 (C_j -> C_i), BN, nearest upsample by 2^(j-i).
template <int Out, int Factor>
using fuse_up = nn::seq<nn::conv<Out, 1, 1, 0>, nn::batch_norm, nn::upsample<Factor, false>>;

// fuse_layers[i][j] for j < i: i-j stride-2 3x3 convs; all but the last keep C_j and end with
// ReLU, the last maps to C_i and has no ReLU (each step a Sequential: "k.0.weight", "k.1.*").
template <int InC, int Out, int Steps, class Index = std::make_index_sequence<Steps - 1>>
struct fuse_down;
template <int InC, int Out, int Steps, size_t... I>
struct fuse_down<InC, Out, Steps, std::index_sequence<I...>> {
  template <size_t>
  using step = nn::seq<nn::conv<InC, 3, 2, 1>, nn::batch_norm, nn::relu>;
  using type = nn::seq<step<I>..., nn::seq<nn::conv<Out, 3, 2, 1>, nn::batch_norm>>;
};

template <class W, int I, int J>
using fuse_recipe = std::conditional_t<
    (J > I), fuse_up<W::values[I], (1 << (J > I ? J - I : 0))>,
    std::conditional_t<(J < I),
                       typename fuse_down<W::values[J], W::values[I], (I > J ? I - J : 1)>::type,
                       nn::identity>>;

// A branch: Blocks BasicBlocks of C channels (no downsample: the input has C channels).
template <int C, int Blocks>
using branch_recipe = typename resnet_parts::stage_of<resnet_parts::basic_block, C, Blocks, 1, 1, 1>::type;

// HighResolutionModule (multi_scale_output = True) with Branches branches of widths W.
template <class W, int Branches, int Blocks, class Device>
class hr_module {
  static_assert(Branches >= 1 && Branches <= 4, "segkit::models::hr_module: 1 to 4 branches");
  static constexpr int B = Branches;
  template <size_t... J>
  static auto make_branches(std::index_sequence<J...>)
      -> std::tuple<nn::bind<branch_recipe<W::values[J], Blocks>, W::values[J], true, Device>...>;
  template <size_t... K>
  static auto make_fuse(std::index_sequence<K...>)
      -> std::tuple<nn::bind<fuse_recipe<W, int(K) / B, int(K) % B>, W::values[K % B], true,
                             Device>...>;
  using branches_type = decltype(make_branches(std::make_index_sequence<B>{}));
  using fuse_type = decltype(make_fuse(std::make_index_sequence<B * B>{}));

 public:
  using tensor_type = tensor<float, Device>;
  using lease = typename buffer_pool<Device>::lease;
  using inputs = std::array<const tensor_type*, 4>;
  using gradients = std::array<tensor_type*, 4>;
  static constexpr int branches = Branches;

  std::array<shape, 4> setup(const std::array<shape, 4>& in) {
    nn::setup_context<Device> context;
    std::array<shape, 4> b;
    static_for<B>([&](auto j) {
      b[j] = std::get<j>(branches_).setup(in[j], context);
      sums_[j] = tensor_type(b[j]);
    });
    static_for<B * B>([&](auto k) {
      constexpr int i = int(decltype(k)::value) / B, j = int(decltype(k)::value) % B;
      if constexpr (i != j) {
        const shape s = std::get<k>(fuse_).setup(b[j], context);
        require<shape_error>(s == b[i], "hrnet fuse setup: branch ", j, " fused to branch ", i,
                             " has shape ", s.to_string(), ", expected ", b[i].to_string(),
                             " (H and W must be multiples of 32)");
      }
    });
    return b;
  }

  inputs forward(const inputs& in) {
    static_for<B>([&](auto j) { bout_[j] = &std::get<j>(branches_).forward(*in[j]); });
    static_for<B * B>([&](auto k) {
      constexpr int i = int(decltype(k)::value) / B, j = int(decltype(k)::value) % B;
      const tensor_type* f = bout_[j];
      if constexpr (i != j) f = &std::get<k>(fuse_).forward(*bout_[j]);
      if (j == 0)
        copy_into(*f, sums_[i]);
      else
        ops::add_into(sums_[i], *f);
    });
    inputs out{};
    for (int i = 0; i < B; ++i) {
      ops::activation_forward(relu_, sums_[i], sums_[i]);  // in place: the slope reads y
      out[i] = &sums_[i];
    }
    return out;
  }

  // Follows forward(in). dy: gradients of the outputs (null: none); dx: ADDS into the input
  // gradients (null: not wanted).
  void backward(const inputs& in, const inputs& dy, const gradients& dx) {
    auto& pool = default_buffer_pool<Device>();
    std::array<lease, 4> dsums, dbranch;
    bool any = false;
    for (int i = 0; i < B; ++i)
      if (dy[i]) {
        dsums[i] = pool.take_zeroed(sums_[i].shape());
        ops::activation_backward(relu_, sums_[i], sums_[i], *dy[i], dsums[i].get());
        any = true;
      }
    if (!any) return;
    for (int j = 0; j < B; ++j) dbranch[j] = pool.take_zeroed(sums_[j].shape());
    static_for<B * B>([&](auto k) {
      constexpr int i = int(decltype(k)::value) / B, j = int(decltype(k)::value) % B;
      if (!dy[i]) return;
      if constexpr (i == j)
        ops::add_into(dbranch[j].get(), dsums[i].get());
      else
        std::get<k>(fuse_).backward(*bout_[j], dsums[i].get(), &dbranch[j].get());
    });
    for (auto& d : dsums) d.release();
    static_for<B>([&](auto j) {
      std::get<j>(branches_).backward(*in[j], dbranch[j].get(), dx[j]);
      dbranch[j].release();
    });
  }

  void set_training(bool training) {
    static_for<B>([&](auto j) { std::get<j>(branches_).set_training(training); });
    static_for<B * B>([&](auto k) { std::get<k>(fuse_).set_training(training); });
  }
  void initialize(std::mt19937_64& rng) {
    static_for<B>([&](auto j) { std::get<j>(branches_).initialize(rng); });
    static_for<B * B>([&](auto k) { std::get<k>(fuse_).initialize(rng); });
  }
  template <class Visit>
  void visit_parameters(const std::string& prefix, Visit&& visit) {
    static_for<B>([&](auto j) {
      std::get<j>(branches_).visit_parameters(branch_name(prefix, j), visit);
    });
    static_for<B * B>([&](auto k) {
      std::get<k>(fuse_).visit_parameters(fuse_name(prefix, k), visit);
    });
  }
  template <class Visit>
  void visit_buffers(const std::string& prefix, Visit&& visit) {
    static_for<B>([&](auto j) {
      std::get<j>(branches_).visit_buffers(branch_name(prefix, j), visit);
    });
    static_for<B * B>([&](auto k) { std::get<k>(fuse_).visit_buffers(fuse_name(prefix, k), visit); });
  }

 private:
  static std::string branch_name(const std::string& prefix, size_t j) {
    return nn::join_name(prefix, "branches." + std::to_string(j));
  }
  static std::string fuse_name(const std::string& prefix, size_t k) {
    return nn::join_name(prefix, "fuse_layers." + std::to_string(k / B) + "." + std::to_string(k % B));
  }
  branches_type branches_;
  fuse_type fuse_;
  std::array<tensor_type, 4> sums_;  // the fused sums, ReLU'd in place: the module's outputs
  std::array<const tensor_type*, 4> bout_{};
  ops::activation_params relu_{ops::activation::relu, 0.f};
};

// Modules hr_modules one after another (children "0", "1", ...).
template <class W, int Branches, int Blocks, int Modules, class Device>
class hr_stage {
  static_assert(Modules >= 1, "segkit::models::hr_stage: at least one module");
  using module_type = hr_module<W, Branches, Blocks, Device>;

 public:
  using tensor_type = tensor<float, Device>;
  using lease = typename buffer_pool<Device>::lease;
  using inputs = typename module_type::inputs;
  using gradients = typename module_type::gradients;

  std::array<shape, 4> setup(const std::array<shape, 4>& in) {
    std::array<shape, 4> s = in;
    for (int m = 0; m < Modules; ++m) {
      s = modules_[m].setup(s);
      if (m + 1 < Modules) mid_shapes_[m] = s;
    }
    return s;
  }
  inputs forward(const inputs& in) {
    mid_[0] = in;
    inputs out{};
    for (int m = 0; m < Modules; ++m) {
      out = modules_[m].forward(mid_[m]);
      if (m + 1 < Modules) mid_[m + 1] = out;
    }
    return out;
  }
  // dx ADDS into the stage input gradients (null: not wanted).
  void backward(const inputs& dy, const gradients& dx) {
    // g: the gradients of module m's outputs, leased (held by g_leases) except the caller's.
    inputs g = dy;
    std::array<lease, 4> g_leases;
    for (int m = Modules - 1; m >= 0; --m) {
      gradients d{};
      std::array<lease, 4> d_leases;
      if (m == 0) {
        d = dx;
      } else {
        for (int j = 0; j < Branches; ++j) {
          d_leases[j] = default_buffer_pool<Device>().take_zeroed(mid_shapes_[m - 1][j]);
          d[j] = &d_leases[j].get();
        }
      }
      modules_[m].backward(mid_[m], g, d);
      if (m == 0) break;
      g_leases = std::move(d_leases);
      for (int j = 0; j < Branches; ++j) g[j] = d[j];
    }
  }
  void set_training(bool training) {
    for (auto& m : modules_) m.set_training(training);
  }
  void initialize(std::mt19937_64& rng) {
    for (auto& m : modules_) m.initialize(rng);
  }
  template <class Visit>
  void visit_parameters(const std::string& prefix, Visit&& visit) {
    for (int m = 0; m < Modules; ++m)
      modules_[m].visit_parameters(nn::join_name(prefix, std::to_string(m)), visit);
  }
  template <class Visit>
  void visit_buffers(const std::string& prefix, Visit&& visit) {
    for (int m = 0; m < Modules; ++m)
      modules_[m].visit_buffers(nn::join_name(prefix, std::to_string(m)), visit);
  }

 private:
  std::array<module_type, Modules> modules_;
  std::array<inputs, Modules> mid_{};
  std::array<std::array<shape, 4>, (Modules > 1 ? Modules - 1 : 1)> mid_shapes_;
};

// HRNet's _make_transition_layer entries: an existing branch whose width changes gets conv3x3 +
// BN + ReLU ("i.0.weight"); a new branch a stride-2 conv3x3 + BN + ReLU from the last branch
// ("i.0.0.weight").
template <int Out>
using transition_same = nn::seq<nn::conv<Out, 3, 1, 1>, nn::batch_norm, nn::relu>;
template <int Out>
using transition_new = nn::seq<nn::seq<nn::conv<Out, 3, 2, 1>, nn::batch_norm, nn::relu>>;

template <int WidthPercent>
struct w18_small {
  static_assert(WidthPercent >= 1, "segkit::models::hrnet: WidthPercent must be positive");
  static constexpr int stem = resnet_parts::scaled(64, WidthPercent);
  static constexpr int planes1 = resnet_parts::scaled(64, WidthPercent);
  using branch_widths = widths<resnet_parts::scaled(18, WidthPercent), resnet_parts::scaled(36, WidthPercent),
                               resnet_parts::scaled(72, WidthPercent), resnet_parts::scaled(144, WidthPercent)>;
};

}  // namespace hrnet_parts

template <int WidthPercent = 100, class Device = cpu>
class hrnet {
  using cfg = hrnet_parts::w18_small<WidthPercent>;
  using W = typename cfg::branch_widths;
  static constexpr int c0 = W::values[0], c1 = W::values[1], c2 = W::values[2], c3 = W::values[3];
  using stem_recipe =
      nn::seq<nn::named<resnet_parts::names::conv1, nn::conv<cfg::stem, 3, 2, 1>>,
              nn::named<resnet_parts::names::bn1, nn::batch_norm>, nn::relu,
              nn::named<resnet_parts::names::conv2, nn::conv<cfg::stem, 3, 2, 1>>,
              nn::named<resnet_parts::names::bn2, nn::batch_norm>, nn::relu>;
  using stem_type = nn::bind<stem_recipe, 3, false, Device>;
  using layer1_type = nn::bind<
      typename resnet_parts::stage_of<resnet_parts::bottleneck, cfg::planes1, 2, 1, 1, 1>::type,
      cfg::stem, true, Device>;
  static constexpr int l1 = layer1_type::out_channels;
  using t1_0_type = nn::bind<hrnet_parts::transition_same<c0>, l1, true, Device>;
  using t1_1_type = nn::bind<hrnet_parts::transition_new<c1>, l1, true, Device>;
  using t2_2_type = nn::bind<hrnet_parts::transition_new<c2>, c1, true, Device>;
  using t3_3_type = nn::bind<hrnet_parts::transition_new<c3>, c2, true, Device>;
  using stage2_type = hrnet_parts::hr_stage<W, 2, 2, 1, Device>;
  using stage3_type = hrnet_parts::hr_stage<W, 3, 2, 3, Device>;
  using stage4_type = hrnet_parts::hr_stage<W, 4, 2, 2, Device>;

 public:
  using tensor_type = tensor<float, Device>;
  using device_type = Device;
  static constexpr int width_percent = WidthPercent;
  static constexpr std::array<int, 4> channels{c0, c1, c2, c3};
  static constexpr std::array<int, 4> strides{4, 8, 16, 32};

  explicit hrnet(uint64_t seed = 0) {
    std::mt19937_64 rng(seed);
    initialize(rng);
  }
  // "hrnet18s", "hrnet18s-w25".
  static std::string name() {
    std::string text = "hrnet18s";
    if (WidthPercent != 100) text += "-w" + std::to_string(WidthPercent);
    return text;
  }

  std::array<shape, 4> setup(const shape& images) {
    require<shape_error>(images.rank() == 4 && images[1] == 3 && images[2] % 32 == 0 &&
                             images[3] % 32 == 0,
                         "hrnet setup: images of shape ", images.to_string(),
                         " are not [N, 3, H, W] with H and W multiples of 32");
    nn::setup_context<Device> context;
    const shape s0 = stem_.setup(images, context);
    const shape s1 = layer1_.setup(s0, context);
    std::array<shape, 4> x2{t1_0_.setup(s1, context), t1_1_.setup(s1, context), {}, {}};
    const auto y2 = stage2_.setup(x2);
    std::array<shape, 4> x3{y2[0], y2[1], t2_2_.setup(y2[1], context), {}};
    const auto y3 = stage3_.setup(x3);
    std::array<shape, 4> x4{y3[0], y3[1], y3[2], t3_3_.setup(y3[2], context)};
    const auto out = stage4_.setup(x4);
    ds0_ = tensor_type(s0);
    ds1_ = tensor_type(s1);
    for (int j = 0; j < 4; ++j) {
      dx4_[j] = tensor_type(x4[j]);
      if (j < 3) dx3_[j] = tensor_type(x3[j]);
      if (j < 2) dx2_[j] = tensor_type(x2[j]);
    }
    shapes_ = out;
    input_shape_ = images;
    return out;
  }
  const std::array<shape, 4>& feature_shapes() const { return shapes_; }
  const shape& input_shape() const { return input_shape_; }

  std::array<const tensor_type*, 4> forward(const tensor_type& images) {
    require<error>(input_shape_.rank() == 4, "hrnet forward: call setup(images shape) first");
    require_shape("hrnet forward", "images", images.shape(), input_shape_);
    s0_ = &stem_.forward(images);
    s1_ = &layer1_.forward(*s0_);
    x2_ = {&t1_0_.forward(*s1_), &t1_1_.forward(*s1_), nullptr, nullptr};
    const auto y2 = stage2_.forward(x2_);
    x3_ = {y2[0], y2[1], &t2_2_.forward(*y2[1]), nullptr};
    const auto y3 = stage3_.forward(x3_);
    x4_ = {y3[0], y3[1], y3[2], &t3_3_.forward(*y3[2])};
    features_ = stage4_.forward(x4_);
    return features_;
  }
  const std::array<const tensor_type*, 4>& features() const { return features_; }

  // Gradients of the four features (null: not in the loss); follows forward on `images`.
  void backward(const tensor_type& images, const std::array<const tensor_type*, 4>& d_features) {
    require<error>(s0_ != nullptr, "hrnet backward: call forward first");
    bool any = false;
    for (int k = 0; k < 4; ++k)
      if (d_features[k]) {
        require_shape("hrnet backward", "feature gradient", d_features[k]->shape(), shapes_[k]);
        any = true;
      }
    if (!any) return;  // every branch is fused into every output: all or nothing
    for (auto& t : dx4_) t.zero();
    stage4_.backward(d_features, {&dx4_[0], &dx4_[1], &dx4_[2], &dx4_[3]});
    t3_3_.backward(*x4_[2], dx4_[3], &dx4_[2]);
    for (int j = 0; j < 3; ++j) dx3_[j].zero();
    stage3_.backward({&dx4_[0], &dx4_[1], &dx4_[2], nullptr}, {&dx3_[0], &dx3_[1], &dx3_[2], nullptr});
    t2_2_.backward(*x3_[1], dx3_[2], &dx3_[1]);
    for (int j = 0; j < 2; ++j) dx2_[j].zero();
    stage2_.backward({&dx3_[0], &dx3_[1], nullptr, nullptr}, {&dx2_[0], &dx2_[1], nullptr, nullptr});
    ds1_.zero();
    t1_0_.backward(*s1_, dx2_[0], &ds1_);
    t1_1_.backward(*s1_, dx2_[1], &ds1_);
    ds0_.zero();
    layer1_.backward(*s0_, ds1_, &ds0_);
    stem_.backward(images, ds0_, nullptr);
  }

  void set_training(bool training) {
    training_ = training;
    stem_.set_training(training);
    layer1_.set_training(training);
    t1_0_.set_training(training);
    t1_1_.set_training(training);
    stage2_.set_training(training);
    t2_2_.set_training(training);
    stage3_.set_training(training);
    t3_3_.set_training(training);
    stage4_.set_training(training);
  }
  void train() { set_training(true); }
  void eval() { set_training(false); }
  bool training() const { return training_; }

  void initialize(std::mt19937_64& rng) {
    stem_.initialize(rng);
    layer1_.initialize(rng);
    t1_0_.initialize(rng);
    t1_1_.initialize(rng);
    stage2_.initialize(rng);
    t2_2_.initialize(rng);
    stage3_.initialize(rng);
    t3_3_.initialize(rng);
    stage4_.initialize(rng);
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
    f(stem_, prefix);
    f(layer1_, nn::join_name(prefix, "layer1"));
    f(t1_0_, nn::join_name(prefix, "transition1.0"));
    f(t1_1_, nn::join_name(prefix, "transition1.1"));
    f(stage2_, nn::join_name(prefix, "stage2"));
    f(t2_2_, nn::join_name(prefix, "transition2.2"));
    f(stage3_, nn::join_name(prefix, "stage3"));
    f(t3_3_, nn::join_name(prefix, "transition3.3"));
    f(stage4_, nn::join_name(prefix, "stage4"));
  }

  stem_type stem_;
  layer1_type layer1_;
  t1_0_type t1_0_;
  t1_1_type t1_1_;
  stage2_type stage2_;
  t2_2_type t2_2_;
  stage3_type stage3_;
  t3_3_type t3_3_;
  stage4_type stage4_;
  tensor_type ds0_, ds1_;
  std::array<tensor_type, 4> dx2_, dx3_, dx4_;
  std::array<shape, 4> shapes_;
  shape input_shape_;
  const tensor_type *s0_ = nullptr, *s1_ = nullptr;
  std::array<const tensor_type*, 4> x2_{}, x3_{}, x4_{}, features_{};
  bool training_ = true;
};

}  // namespace segkit::models
