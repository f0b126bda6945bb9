// segkit/models/hfgd_head.hpp — HFGD's decode head (METHODS §2, papers/hfgd.txt §3) on a
// backbone's 4 features (strides 4, 8, 16, 32).
// Provides models::hfgd_head<C1, C2, C3, C4, Device, Cae = 512, Key = 64, Fpn = 256,
//   LeadKernel = 3, Heads = 4> and models::hfgd_options (runtime variants):
//   CAE (feature 4): "cae.0", "cae.1" 1x1 Conv-BN-ReLU -> Cae; "cae.2" self-attention (Q, K
//     1x1 -> Key initialised equal, V -> Cae, softmax over keys, no scaling, + input): its
//     output x_car is regularised by CAR (train/car_loss.hpp); "cae.3" 1x1 Conv-BN-ReLU.
//   "proj": 1x1 Conv-BN-ReLU Cae -> Fpn (METHODS' choice), "cls.{weight,bias}": the class
//     kernels W (runtime class count); coarse logits = W . proj(f_cae) at stride 32.
//   U-SFPN: branch i (inputs f1, f2, f3, f_cae; each behind a stop-gradient when hfgm):
//     "usfpn.branches.i": LeadKernel Conv-BN-ReLU -> Fpn then, for level i, max(1, i) blocks in
//     all of Conv3x3-BN-ReLU (the first being the leading conv) + bilinear x2 (level 0: no
//     upsample); "usfpn.extra.i": one more Conv3x3-BN-ReLU + x2 when output_stride == 2;
//     branches summed, "usfpn.fuse": 1x1 Conv-BN-ReLU.
//   "axial": axial attention (Heads heads, column then row, residual add), skipped when
//     options.axial is false.  Fine logits = stopgrad(W) . axial(f_usfpn) (W's and the bias's
//     gradient are not accumulated from this path).
//   Variants: options.hfgm = false -> the fine path has its own classifier "cls_fine.*", and
//     no stop-gradients anywhere (plain FPN-style training); options.axial = false; the SFPN
//     variant is LeadKernel = 1 with output_stride 4 (channels stay Fpn so W is shared).
//   loss(): CE(fine, resized bilinear to the labels) + CE(coarse, resized) + CAR(x_car, labels
//     nearest-resized to stride 32) with weights 1, 1, 1 and its backward.
// Requires: features [N, Ci, H/s, W/s] with stride-halving sizes (shape_error naming shapes).
// Guarantees: backward ADDS into parameter gradients and into the feature gradients asked for;
//   with hfgm the U-SFPN inputs receive no gradient from the fine path.
#pragma once
#include <array>
#include <random>
#include <string>

#include "segkit/models/fcn.hpp"
#include "segkit/models/model.hpp"
#include "segkit/nn/attention_layers.hpp"
#include "segkit/nn/axial_attention_layer.hpp"
#include "segkit/nn/layers.hpp"
#include "segkit/nn/sequence.hpp"
#include "segkit/ops/conv2d.hpp"
#include "segkit/ops/elementwise.hpp"
#include "segkit/ops/resize.hpp"
#include "segkit/tensor/buffer_pool.hpp"
#include "segkit/train/car_loss.hpp"
#include "segkit/train/cross_entropy.hpp"

namespace segkit::models {

struct hfgd_options {
  bool hfgm = true;       // false: "without HFGM" (own fine classifier, no stop-gradients)
  bool axial = true;      // false: "without axial attention"
  int output_stride = 4;  // 4 or 2
  double car_weight = 1;  // CAR's intra + inter + c2p (each weight 1) times this
};

namespace hfgd_parts {
template <int Out, int Kernel>
using cbr = fcn_parts::conv_module<Out, Kernel>;
using up2 = nn::upsample<2>;
template <int Fpn, int Lead, int Level>
struct branch;
template <int Fpn, int Lead>
struct branch<Fpn, Lead, 0> { using type = nn::seq<cbr<Fpn, Lead>>; };
template <int Fpn, int Lead>
struct branch<Fpn, Lead, 1> { using type = nn::seq<cbr<Fpn, Lead>, up2>; };
template <int Fpn, int Lead>
struct branch<Fpn, Lead, 2> { using type = nn::seq<cbr<Fpn, Lead>, up2, cbr<Fpn, 3>, up2>; };
template <int Fpn, int Lead>
struct branch<Fpn, Lead, 3> {
  using type = nn::seq<cbr<Fpn, Lead>, up2, cbr<Fpn, 3>, up2, cbr<Fpn, 3>, up2>;
};
}  // namespace hfgd_parts

template <int C1, int C2, int C3, int C4, class Device = cpu, int Cae = 512, int Key = 64,
          int Fpn = 256, int LeadKernel = 3, int Heads = 4>
class hfgd_head {
  using cae_pre_type = nn::bind<nn::seq<hfgd_parts::cbr<Cae, 1>, hfgd_parts::cbr<Cae, 1>,
                                        nn::self_attention<Key, Cae>>,
                                C4, true, Device>;
  using cae_post_type = nn::bind<hfgd_parts::cbr<Cae, 1>, Cae, true, Device>;
  using proj_type = nn::bind<hfgd_parts::cbr<Fpn, 1>, Cae, true, Device>;
  template <int Level, int In>
  using branch_type = nn::bind<typename hfgd_parts::branch<Fpn, LeadKernel, Level>::type, In,
                               true, Device>;
  using extra_type = nn::bind<nn::seq<hfgd_parts::cbr<Fpn, 3>, hfgd_parts::up2>, Fpn, true, Device>;
  using fuse_type = nn::bind<hfgd_parts::cbr<Fpn, 1>, Fpn, true, Device>;
  using axial_type = nn::bind<nn::axial_attention<Heads, true>, Fpn, true, Device>;

 public:
  using tensor_type = tensor<float, Device>;
  using lease = typename buffer_pool<Device>::lease;
  using label_tensor = tensor<int32_t, Device>;
  static constexpr std::array<int, 4> in_channels{C1, C2, C3, C4};

  explicit hfgd_head(int num_classes, hfgd_options options = {})
      : num_classes_(num_classes), options_(options) {
    require<value_error>(num_classes >= 1, "hfgd_head: num_classes is ", num_classes,
                         "; expected at least 1");
    require<value_error>(options.output_stride == 4 || options.output_stride == 2,
                         "hfgd_head: output_stride is ", options.output_stride,
                         "; expected 4 or 2");
    weight_ = nn::parameter<Device>({num_classes, Fpn, 1, 1});
    bias_ = nn::parameter<Device>({num_classes});
    if (!options.hfgm) {
      fine_weight_ = nn::parameter<Device>({num_classes, Fpn, 1, 1});
      fine_bias_ = nn::parameter<Device>({num_classes});
    }
  }
  int num_classes() const { return num_classes_; }
  const hfgd_options& options() const { return options_; }

  // features: the backbone's 4 feature shapes; labels: [N, H, W] (the image grid).
  // Returns the fine logits' shape [N, K, H/os, W/os].
  shape setup(const std::array<shape, 4>& f, const shape& labels) {
    for (int i = 0; i < 4; ++i)
      require<shape_error>(f[i].rank() == 4 && f[i][1] == in_channels[i] && f[i][0] == f[0][0] &&
                               f[i][2] * (1 << i) == f[0][2] && f[i][3] * (1 << i) == f[0][3],
                           "hfgd_head setup: feature ", i, " of shape ", f[i].to_string(),
                           " does not fit feature 0 of shape ", f[0].to_string(), " (expected ",
                           in_channels[i], " channels, 1/", 1 << i, " of its size)");
    require<shape_error>(labels.rank() == 3 && labels[0] == f[0][0],
                         "hfgd_head setup: labels of shape ", labels.to_string(),
                         " do not fit features of shape ", f[0].to_string());
    nn::setup_context<Device> ctx;
    const shape x = cae_pre_.setup(f[3], ctx);
    const shape cae = cae_post_.setup(x, ctx);
    const shape p = proj_.setup(cae, ctx);
    coarse_ = tensor_type(ops::conv2d_output_shape(cls_, p, weight_.shape()));
    shape b = branch0_.setup(f[0], ctx);
    branch1_.setup(f[1], ctx), branch2_.setup(f[2], ctx), branch3_.setup(cae, ctx);
    if (options_.output_stride == 2) {  // each branch's extra block runs on its stride-4 output
      const shape b4 = b;
      for (auto& e : extra_) b = e.setup(b4, ctx);
    }
    sum_ = tensor_type(b);
    const shape u = fuse_.setup(b, ctx);
    axial_.setup(u, ctx);
    fine_ = tensor_type(ops::conv2d_output_shape(cls_, u, weight_.shape()));
    const shape full{labels[0], num_classes_, labels[1], labels[2]};
    coarse_full_ = tensor_type(full), fine_full_ = tensor_type(full);
    branch_out_shape_ = branch_out_shape(f);
    small_labels_ = tensor<int32_t, cpu>(shape{x[0], x[2], x[3]});
    host_labels_ = tensor<int32_t, cpu>(labels);
    return fine_.shape();
  }

  // Fine logits [N, K, H/os, W/os]; coarse() holds the stride-32 logits afterwards.
  const tensor_type& forward(const std::array<const tensor_type*, 4>& f) {
    x_car_ = &cae_pre_.forward(*f[3]);
    cae_ = &cae_post_.forward(*x_car_);
    proj_out_ = &proj_.forward(*cae_);
    ops::conv2d_forward(cls_, *proj_out_, weight_.value, &bias_.value, coarse_);
    inputs_ = {f[0], f[1], f[2], cae_};
    const tensor_type* outs[4] = {&branch0_.forward(*f[0]), &branch1_.forward(*f[1]),
                                  &branch2_.forward(*f[2]), &branch3_.forward(*cae_)};
    for (int i = 0; i < 4; ++i) {
      branch_out_[i] = outs[i];
      if (options_.output_stride == 2) outs[i] = &extra_[i].forward(*outs[i]);
    }
    ops::add(*outs[0], *outs[1], sum_);
    ops::add_into(sum_, *outs[2]);
    ops::add_into(sum_, *outs[3]);
    u_ = &fuse_.forward(sum_);
    a_ = options_.axial ? &axial_.forward(*u_) : u_;
    const auto& w = options_.hfgm ? weight_ : fine_weight_;
    const auto& bias = options_.hfgm ? bias_ : fine_bias_;
    ops::conv2d_forward(cls_, *a_, w.value, &bias.value, fine_);
    return fine_;
  }
  const tensor_type& coarse() const { return coarse_; }
  const tensor_type& fine() const { return fine_; }
  const tensor_type& car_features() const { return *x_car_; }
  const tensor_type& fine_full() const { return fine_full_; }
  const tensor_type& coarse_full() const { return coarse_full_; }

  // After forward: the losses (labels [N, H, W] on the image grid) and the whole backward.
  // dfeatures[i] (nullptr = not wanted) receive the gradients (added).
  loss_terms loss_backward(const label_tensor& labels, const std::array<const tensor_type*, 4>& f,
                           const std::array<tensor_type*, 4>& dfeatures) {
    // Every activation gradient is leased from the pool and given back when its reader is done.
    auto& pool = default_buffer_pool<Device>();
    loss_terms out;
    ops::resize_forward(resize_, fine_, fine_full_);
    ops::resize_forward(resize_, coarse_, coarse_full_);
    lease dfine = pool.take_zeroed(fine_.shape()), dcoarse = pool.take_zeroed(coarse_.shape());
    double ce_fine = 0, ce_coarse = 0;
    {
      lease dfull = pool.take_zeroed(fine_full_.shape());
      ce_fine = train::cross_entropy_forward(ce_, fine_full_, labels, ce_state_);
      train::cross_entropy_backward(ce_, fine_full_, labels, ce_state_, 1.f, dfull.get());
      ops::resize_backward(resize_, dfull.get(), dfine.get());
      ce_coarse = train::cross_entropy_forward(ce_, coarse_full_, labels, ce_state_);
      dfull.get().zero();
      train::cross_entropy_backward(ce_, coarse_full_, labels, ce_state_, 1.f, dfull.get());
      ops::resize_backward(resize_, dfull.get(), dcoarse.get());
    }

    copy_into(labels, host_labels_);
    train::resize_labels_nearest(host_labels_, small_labels_);
    lease dx = pool.take_zeroed(x_car_->shape());
    car_.num_classes = num_classes_;
    const train::car_terms car =
        train::car_forward(car_, *x_car_, small_labels_, car_state_,
                           options_.car_weight != 0 ? &dx.get() : nullptr,
                           float(options_.car_weight));
    out.terms = {{"ce_fine", ce_fine},   {"ce_coarse", ce_coarse}, {"car_intra", car.intra},
                 {"car_inter", car.inter}, {"car_c2p", car.c2p}};
    out.total = ce_fine + ce_coarse + options_.car_weight * car.total(car_);

    // fine path
    lease dcae = pool.take_zeroed(cae_->shape());
    {
      lease da = pool.take_zeroed(a_->shape());
      if (options_.hfgm)
        ops::conv2d_backward(cls_, *a_, weight_.value, dfine.get(), &da.get(), nullptr, nullptr);
      else
        ops::conv2d_backward(cls_, *a_, fine_weight_.value, dfine.get(), &da.get(),
                             &fine_weight_.grad, &fine_bias_.grad);
      dfine.release();
      if (options_.axial) {
        lease du = pool.take_zeroed(u_->shape());
        axial_.backward(*u_, da.get(), &du.get());
        da = std::move(du);
      }
      lease dsum = pool.take_zeroed(sum_.shape());
      fuse_.backward(sum_, da.get(), &dsum.get());
      da.release();
      const bool pass = !options_.hfgm;  // stop-gradients on every U-SFPN input under HFGM
      for (int i = 0; i < 4; ++i) {
        const tensor_type* dbranch = &dsum.get();
        lease dbranch_out;
        if (options_.output_stride == 2) {
          dbranch_out = pool.take_zeroed(branch_out_shape_);
          extra_[i].backward(*branch_out_[i], dsum.get(), &dbranch_out.get());
          dbranch = &dbranch_out.get();
        }
        tensor_type* din = pass ? (i < 3 ? dfeatures[size_t(i)] : &dcae.get()) : nullptr;
        if (i == 0) branch0_.backward(*inputs_[0], *dbranch, din);
        if (i == 1) branch1_.backward(*inputs_[1], *dbranch, din);
        if (i == 2) branch2_.backward(*inputs_[2], *dbranch, din);
        if (i == 3) branch3_.backward(*inputs_[3], *dbranch, din);
      }
    }
    // coarse path
    {
      lease dp = pool.take_zeroed(proj_out_->shape());
      ops::conv2d_backward(cls_, *proj_out_, weight_.value, dcoarse.get(), &dp.get(),
                           &weight_.grad, &bias_.grad);
      dcoarse.release();
      proj_.backward(*cae_, dp.get(), &dcae.get());
    }
    cae_post_.backward(*x_car_, dcae.get(), &dx.get());
    dcae.release();
    cae_pre_.backward(*f[3], dx.get(), dfeatures[3]);
    return out;
  }

  void set_training(bool t) {
    cae_pre_.set_training(t), cae_post_.set_training(t), proj_.set_training(t);
    branch0_.set_training(t), branch1_.set_training(t), branch2_.set_training(t);
    branch3_.set_training(t), fuse_.set_training(t), axial_.set_training(t);
    for (auto& e : extra_) e.set_training(t);
  }
  void initialize(std::mt19937_64& rng) {
    cae_pre_.initialize(rng), cae_post_.initialize(rng), proj_.initialize(rng);
    branch0_.initialize(rng), branch1_.initialize(rng), branch2_.initialize(rng);
    branch3_.initialize(rng), fuse_.initialize(rng), axial_.initialize(rng);
    for (auto& e : extra_) e.initialize(rng);
    std::normal_distribution<float> pick(0.f, 0.01f);
    for (auto* p : {&weight_, &fine_weight_}) {
      if (p->value.numel() == 0) continue;
      tensor<float, cpu> w(p->shape());
      for (int64_t i = 0; i < w.numel(); ++i) w[i] = pick(rng);
      copy_into(w, p->value);
    }
    bias_.value.zero();
    if (!options_.hfgm) fine_bias_.value.zero();
  }
  template <class Visit>
  void visit_parameters(const std::string& prefix, Visit&& visit) {
    visit_all<true>(prefix, visit);
  }
  template <class Visit>
  void visit_buffers(const std::string& prefix, Visit&& visit) {
    visit_all<false>(prefix, visit);
  }

 private:
  // Every branch ends at stride 4 (before the OS-2 extra block).
  static shape branch_out_shape(const std::array<shape, 4>& f) {
    return shape{f[0][0], Fpn, f[0][2], f[0][3]};
  }
  template <bool params, class Visit>
  void visit_all(const std::string& prefix, Visit& visit) {
    auto go = [&](auto& layer, const std::string& name) {
      if constexpr (params)
        layer.visit_parameters(nn::join_name(prefix, name), visit);
      else
        layer.visit_buffers(nn::join_name(prefix, name), visit);
    };
    go(cae_pre_, "cae");
    go(cae_post_, "cae.3");
    go(proj_, "proj");
    go(branch0_, "usfpn.branches.0"), go(branch1_, "usfpn.branches.1");
    go(branch2_, "usfpn.branches.2"), go(branch3_, "usfpn.branches.3");
    if (options_.output_stride == 2)
      for (int i = 0; i < 4; ++i) go(extra_[size_t(i)], "usfpn.extra." + std::to_string(i));
    go(fuse_, "usfpn.fuse");
    if (options_.axial) go(axial_, "axial");
    if constexpr (params) {
      visit(nn::join_name(prefix, "cls.weight"), weight_);
      visit(nn::join_name(prefix, "cls.bias"), bias_);
      if (!options_.hfgm) {
        visit(nn::join_name(prefix, "cls_fine.weight"), fine_weight_);
        visit(nn::join_name(prefix, "cls_fine.bias"), fine_bias_);
      }
    }
  }

  int num_classes_;
  hfgd_options options_;
  cae_pre_type cae_pre_;
  cae_post_type cae_post_;
  proj_type proj_;
  branch_type<0, C1> branch0_;
  branch_type<1, C2> branch1_;
  branch_type<2, C3> branch2_;
  branch_type<3, Cae> branch3_;
  std::array<extra_type, 4> extra_;
  fuse_type fuse_;
  axial_type axial_;
  nn::parameter<Device> weight_, bias_, fine_weight_, fine_bias_;
  ops::conv2d_params cls_{};
  ops::resize_params resize_{ops::resize_mode::bilinear, false};
  train::cross_entropy_params ce_{};
  train::loss_state<Device> ce_state_;
  train::car_params car_{};
  train::car_state car_state_;
  tensor_type coarse_, fine_, sum_, coarse_full_, fine_full_;
  shape branch_out_shape_;
  std::array<const tensor_type*, 4> inputs_{}, branch_out_{};
  tensor<int32_t, cpu> small_labels_, host_labels_;
  const tensor_type *x_car_ = nullptr, *cae_ = nullptr, *proj_out_ = nullptr, *u_ = nullptr,
                    *a_ = nullptr;
};

}  // namespace segkit::models
