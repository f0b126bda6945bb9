// segkit/models/saf_head.hpp — the Specialize-and-Fuse (SaF) head (METHODS.md §1, paper §3,
// supplementary §B–D) and every ablation of the supplementary Table A as a runtime option
// (models/saf_options.hpp: context, output, relabel, levels / scales; docs/saf_ablations.md).
// Provides:
//   models::saf_head<Device>  runtime channels (in, D_s, D_u, classes) and pyramid:
//     setup(feature [N, D, h, w], finest stride) plans every buffer (h, w divisible by the
//       coarsest level's scale, 2^(L-1) for consecutive levels);
//     forward(feature) -> semantic_logits(): the predicted levels, coarse first, the finest last
//       (output pyramidal / auxiliary: every level, Ŷ(l) [N, C, h / scale_l, ...]; single: the
//       finest only) and unity_logits() Û(l) [N, 1, ...] for l < L (pyramidal only, else empty);
//     loss(labels at input resolution, weight) -> the terms, and the gradients of every output;
//     backward(feature, dfeature*) adds into parameter grads and *dfeature (when not null);
//     fuse() -> fused_logits() [N, C, h, w], fused_labels(), level_map() (uint8, 1-based):
//       pyramidal = ops::pyramid_fuse (tau); single / auxiliary = the finest level's logits
//       and argmax, level map = L everywhere.
// Structure (names are those of tests/reference/gen_saf*.py's PyTorch modules):
//   unity.reduce.{conv,bn}   Conv1x1(D -> D_u, no bias) + BN + ReLU              (pyramidal)
//   unity.heads.i            Conv(D_u -> 1, kernel = stride = scale_i, bias), i = 0..L-2
//   semantic.input           Conv1x1(D -> D_s, bias): X(L)
//   semantic.anl.*           context anl: APNB (models/saf_anl.hpp) on X(L); B := APNB(X(L)),
//                            otherwise B := X(L). X(l) = AvgPool_{scale_l}(B) for l < L.
//   semantic.levels.i.anl.*  context anl_multi: X'(l) = APNB_l(X(l))
//   context none / anl:      X'(l) = X(l)
//   context coarse_to_fine:  theta(0) = PyramidSampling(X(L)) [N, D_s, 1, S]
//     semantic.levels.i.{query,key,value}  Conv1x1 (bias) D_s -> D_s; Attention2D 1/sqrt(D_s)
//     semantic.levels.i.agg  F_agg on concat(attention, X(l)) (2 D_s): at l = L a Conv1x1
//       (bias) to D_s; at l < L a residual block: conv1.{conv,bn} 3x3-BN-ReLU, conv2.{conv,bn}
//       3x3-BN-ReLU, plus skip = Conv1x1 (no bias) of the block input; output = conv2 + skip
//       (no ReLU after the sum: METHODS.md leaves it open)
//     semantic.update.i      F_upd: Conv1x1 (bias) 2 D_s -> D_s on concat(PS(X'(l)), theta(l-1))
//   semantic.levels.i.cls.{conv1,bn,conv2}  final projection of X'(l): Conv1x1(D_s->D_s, no
//     bias)-BN-ReLU-Conv1x1(->C, bias), for the predicted levels only.
// Loss (the targets come from ops::pyramid_ground_truth on the chain of consecutive levels
//   spanning the pyramid; with non-consecutive scales (K) the chain's extra levels get U =
//   ignore before re-labeling, so they are never true positives, and only the pyramid's levels
//   enter the loss):
//   pyramidal: "ce" = 1/L sum CE(l), "bce" = 1/(L-1) sum BCE(l) after re-labeling (relabel);
//   single:    "ce" = CE(finest, Y(L));
//   auxiliary: "ce" = CE(finest), "aux" = 1/(L-1) sum_{l<L} CE(l) on the raw pyramidal ground
//              truth, total = ce + aux_weight aux.
//   Each CE / BCE is a mean over its non-ignored cells (0 when none). Terms are unweighted;
//   the gradients are scaled by `weight`.
// Guarantees: forward/backward/loss allocate nothing after setup (op workspaces once grown);
//   backward ADDS.
#pragma once
#include "segkit/models/saf_anl.hpp"
#include "segkit/models/saf_parts.hpp"
#include "segkit/tensor/buffer_pool.hpp"

namespace segkit::models {

template <class Device = cpu>
class saf_head {
 public:
  using T = tensor<float, Device>;
  using lease = typename buffer_pool<Device>::lease;
  using L = tensor<int32_t, Device>;

  saf_head(int in_channels, int num_classes, saf_options options = {})
      : opt_(options), in_(in_channels), classes_(num_classes) {
    require<value_error>(in_channels >= 1 && num_classes >= 1, "saf_head: in_channels ",
                         in_channels, ", num_classes ", num_classes, "; expected each >= 1");
    validate(opt_);
    scales_ = saf_level_scales(opt_);
    nl_ = int(scales_.size());
    chain_ = 1;
    while ((int64_t(1) << (chain_ - 1)) < scales_[0]) ++chain_;
    pyramidal_ = opt_.output == saf_output::pyramidal;
    c2f_ = opt_.context == saf_context::coarse_to_fine;
    const int ds = opt_.semantic_channels;
    if (pyramidal_) {
      reduce_.init(in_channels, opt_.unity_channels, 1);
      unity_heads_.resize(size_t(nl_ - 1));
      for (int i = 0; i + 1 < nl_; ++i) {
        const int k = int(scales_[size_t(i)]);
        unity_heads_[size_t(i)].init(opt_.unity_channels, 1, k, k, 0, true);
      }
    }
    input_.init(in_channels, ds, 1, 1, 0, true);
    const int kc = saf_anl_key_channels(opt_), vc = saf_anl_value_channels(opt_);
    if (opt_.context == saf_context::anl) anl_.init(ds, kc, vc, opt_.sampling_sizes);
    levels_.resize(size_t(nl_));
    for (int i = 0; i < nl_; ++i) {
      level& lv = levels_[size_t(i)];
      lv.last = i + 1 == nl_;
      lv.predicted = lv.last || opt_.output != saf_output::single;
      lv.computed = lv.predicted || c2f_;
      if (!lv.computed) continue;
      if (opt_.context == saf_context::anl_multi) lv.anl.init(ds, kc, vc, opt_.sampling_sizes);
      if (c2f_) {
        lv.q.init(ds, ds, 1, 1, 0, true);
        lv.k.init(ds, ds, 1, 1, 0, true);
        lv.v.init(ds, ds, 1, 1, 0, true);
        if (lv.last) {
          lv.agg.init(2 * ds, ds, 1, 1, 0, true);
        } else {
          lv.block1.init(2 * ds, ds, 3);
          lv.block2.init(ds, ds, 3);
          lv.agg.init(2 * ds, ds, 1, 1, 0, false);  // the projection skip
          lv.update.init(2 * ds, ds, 1, 1, 0, true);
        }
      }
      if (lv.predicted) {
        lv.cls1.init(ds, ds, 1);
        lv.cls2.init(ds, num_classes, 1, 1, 0, true);
      }
    }
    attn_.heads = 1;
    attn_.scale = 1.f / std::sqrt(float(ds));
    ps_.sizes = opt_.sampling_sizes;
  }

  int levels() const { return nl_; }
  const std::vector<int64_t>& scales() const { return scales_; }
  int num_classes() const { return classes_; }
  const saf_options& options() const { return opt_; }

  // feature [N, D, h, w], h and w divisible by the coarsest scale. Plans the outputs and, for a
  // label map [N, h * finest_stride, w * finest_stride], the pyramidal ground truth of loss().
  void setup(const shape& feature, int64_t finest_stride = 4) {
    const int ds = opt_.semantic_channels;
    const int64_t coarse = scales_[0];
    require<shape_error>(feature.rank() == 4 && feature[1] == in_ && feature[2] % coarse == 0 &&
                             feature[3] % coarse == 0 && feature[2] > 0 && feature[3] > 0,
                         "saf_head setup: feature of shape ", feature.to_string(), " is not [N, ",
                         in_, ", h, w] with h and w positive multiples of the coarsest scale ",
                         coarse);
    feature_shape_ = feature;
    const shape xl = input_.setup(feature);
    dxl_ = T(xl);
    if (opt_.context == saf_context::anl) {
      anl_.setup(xl);
      base_ = anl_.y();
      dbase_ = T(xl);
    } else {
      base_ = input_.y;
      dbase_ = dxl_;
    }
    unity_.assign(size_t(pyramidal_ ? nl_ - 1 : 0), T());
    dunity_.assign(unity_.size(), T());
    if (pyramidal_) {
      const shape r = reduce_.setup(feature);
      for (int i = 0; i + 1 < nl_; ++i) {
        unity_[size_t(i)] = T(unity_heads_[size_t(i)].setup(r));
        dunity_[size_t(i)] = T(unity_[size_t(i)].shape());
      }
    }
    const shape ps3 = ops::pyramid_sampling_output_shape(ps_, xl);
    const shape theta4{feature[0], ds, 1, ps3[2]};
    if (c2f_) {
      theta0_ = T(ps3);
      dtheta0_ = T(ps3);
    }
    semantic_.clear();
    dsemantic_.clear();
    for (int i = 0; i < nl_; ++i) {
      level& lv = levels_[size_t(i)];
      if (!lv.computed) continue;
      const int64_t f = scales_[size_t(i)];
      const shape xs{feature[0], ds, feature[2] / f, feature[3] / f};
      lv.pool.kernel_h = lv.pool.kernel_w = lv.pool.stride_h = lv.pool.stride_w = f;
      lv.x = lv.last ? base_ : T(xs);
      if (opt_.context == saf_context::anl_multi) {
        lv.anl.setup(xs);
        lv.xp = lv.anl.y();
      } else if (c2f_) {
        setup_c2f(lv, i, xs, ps3, theta4);
      } else {
        lv.xp = lv.x;  // X'(l) = X(l): their gradients are one buffer
      }
      if (lv.predicted) {
        lv.cls1.setup(xs);
        lv.out = semantic_.size();
        semantic_.push_back(T(lv.cls2.setup(xs)));
        dsemantic_.push_back(T(semantic_.back().shape()));
      }
    }
    if (c2f_)
      for (int i = 0; i + 1 < nl_; ++i) levels_[size_t(i + 1)].theta = levels_[size_t(i)].update.y;
    setup_targets(feature, finest_stride);
    if (pyramidal_) {
      const auto g = ops::make_pyramid_fuse_geometry(ops::detail::shapes_of(semantic_),
                                                     ops::detail::shapes_of(unity_));
      fused_labels_ = L(ops::pyramid_fuse_labels_shape(g));
      fused_logits_ = T(ops::pyramid_fuse_logits_shape(g));
      level_map_ = tensor<uint8_t, Device>(ops::pyramid_fuse_labels_shape(g));
    } else {
      // argmax of the finest level through the fuser: a 2x coarser dummy level that never
      // answers (unity logit -1e30 < logit(tau)); the level map is constant.
      const shape& fine = semantic_.back().shape();
      const shape half{fine[0], fine[1], fine[2] / 2, fine[3] / 2};
      argmax_in_ = {T::zeros(half), semantic_.back()};
      argmax_unity_ = {T(half.with(1, 1))};
      argmax_unity_[0].fill(-1e30f);
      fused_labels_ = L(shape{fine[0], fine[2], fine[3]});
      fused_logits_ = semantic_.back();
      level_map_ = tensor<uint8_t, Device>(fused_labels_.shape());
      argmax_levels_ = tensor<uint8_t, Device>(fused_labels_.shape());
      level_map_.fill(uint8_t(nl_));
    }
  }
  const shape& feature_shape() const { return feature_shape_; }

  // Runs the heads; results in semantic_logits() (coarse first) and unity_logits().
  void forward(const T& x) {
    const T& xl = input_.forward(x);
    if (opt_.context == saf_context::anl) anl_.forward(xl);
    for (auto& lv : levels_)
      if (lv.computed && !lv.last) ops::avg_pool2d_forward(lv.pool, base_, lv.x);
    if (c2f_) ops::pyramid_sampling_forward(ps_, base_, theta0_);
    for (auto& lv : levels_) {
      if (!lv.computed) continue;
      if (opt_.context == saf_context::anl_multi) lv.anl.forward(lv.x);
      if (c2f_) forward_c2f(lv);
      if (lv.predicted)
        ops::conv2d_forward(lv.cls2.p, lv.cls1.forward(lv.xp), lv.cls2.weight.value,
                            &lv.cls2.bias.value, semantic_[lv.out]);
    }
    if (!pyramidal_) return;
    const T& r = reduce_.forward(x);
    for (int i = 0; i + 1 < nl_; ++i)
      ops::conv2d_forward(unity_heads_[size_t(i)].p, r, unity_heads_[size_t(i)].weight.value,
                          &unity_heads_[size_t(i)].bias.value, unity_[size_t(i)]);
  }
  const std::vector<T>& semantic_logits() const { return semantic_; }
  const std::vector<T>& unity_logits() const { return unity_; }

  // The loss of the output mode (see the header comment) on the last forward, for `labels`
  // [N, h s_L, w s_L]; writes the output gradients (scaled by `weight`) that backward() reads.
  loss_terms loss(const L& labels, float weight = 1.f) {
    ops::pyramid_ground_truth(gt_, labels, chain_semantic_, chain_unity_);
    loss_terms out;
    if (opt_.output == saf_output::pyramidal) {
      for (int c : missing_) chain_unity_[size_t(c)].fill(opt_.ignore_index);
      ops::pyramid_relabel_params rp;
      rp.mode = opt_.relabel;
      rp.ignore_index = opt_.ignore_index;
      rp.threshold = opt_.tau;
      ops::pyramid_relabel(rp, chain_semantic_, chain_unity_, &chain_predicted_);
      double ce = 0, bce = 0;
      for (int i = 0; i < nl_; ++i) ce += cross_entropy(i, weight / float(nl_));
      for (int i = 0; i + 1 < nl_; ++i) {
        bce += train::bce_with_logits_forward(bce_params(), unity_[size_t(i)], gt_unity_[size_t(i)],
                                              bce_state_[size_t(i)]);
        dunity_[size_t(i)].zero();
        train::bce_with_logits_backward(bce_params(), unity_[size_t(i)], gt_unity_[size_t(i)],
                                        bce_state_[size_t(i)], weight / float(nl_ - 1),
                                        dunity_[size_t(i)]);
      }
      out.terms = {{"ce", ce / nl_}, {"bce", bce / (nl_ - 1)}};
      out.total = ce / nl_ + bce / (nl_ - 1);
    } else if (opt_.output == saf_output::single) {
      const double ce = cross_entropy(nl_ - 1, weight);
      out.terms = {{"ce", ce}};
      out.total = ce;
    } else {
      const double ce = cross_entropy(nl_ - 1, weight);
      double aux = 0;
      for (int i = 0; i + 1 < nl_; ++i)
        aux += cross_entropy(i, weight * opt_.aux_weight / float(nl_ - 1));
      aux /= nl_ - 1;
      out.terms = {{"ce", ce}, {"aux", aux}};
      out.total = ce + opt_.aux_weight * aux;
    }
    return out;
  }
  // The targets the last loss() used (after re-labeling), one per level of the pyramid
  // (semantic: L maps; unity: L - 1 maps, their values meaningful in mode pyramidal only).
  const std::vector<L>& semantic_targets() const { return gt_semantic_; }
  const std::vector<L>& unity_targets() const { return gt_unity_; }
  // Output gradients backward() uses (loss() writes them; tests may set them).
  std::vector<T>& semantic_grads() { return dsemantic_; }
  std::vector<T>& unity_grads() { return dunity_; }

  // Adds into parameter gradients and into *dfeature (when not null). A level's activation
  // gradients are leased from the pool for its own step only; its dX(l) is pooled into
  // dbase_ (the finest grid) as soon as the level is done.
  void backward(const T& x, T* dfeature) {
    auto& pool = default_buffer_pool<Device>();
    dbase_.zero();
    for (auto& lv : levels_)
      if (lv.computed && c2f_) lv.dtheta.zero();
    for (int i = nl_ - 1; i >= 0; --i) {
      level& lv = levels_[size_t(i)];
      if (!lv.computed) continue;
      lease dx_lease, dxp_lease;
      T* dx = &dbase_;
      if (!lv.last) {
        dx_lease = pool.take_zeroed(lv.x.shape());
        dx = &dx_lease.get();
      }
      const bool aliased = opt_.context == saf_context::none || opt_.context == saf_context::anl;
      T* dxp = dx;
      if (!aliased) {
        dxp_lease = pool.take_zeroed(lv.x.shape());
        dxp = &dxp_lease.get();
      }
      if (c2f_ && !lv.last) backward_update(lv, levels_[size_t(i + 1)].dtheta, *dxp);
      if (lv.predicted) {
        lease dh = pool.take_zeroed(lv.cls1.y.shape());
        lv.cls2.backward(lv.cls1.y, dsemantic_[lv.out], &dh.get());
        lv.cls1.backward(lv.xp, dh.get(), dxp);
      }
      if (opt_.context == saf_context::anl_multi) lv.anl.backward(lv.x, *dxp, *dx);
      if (c2f_) backward_c2f(lv, *dxp, *dx);
      if (!lv.last) ops::avg_pool2d_backward(lv.pool, *dx, dbase_);
    }
    if (c2f_) ops::pyramid_sampling_backward(ps_, dtheta0_, dbase_);
    if (opt_.context == saf_context::anl) {
      dxl_.zero();
      anl_.backward(input_.y, dbase_, dxl_);
    }
    input_.backward(x, dxl_, dfeature);
    if (!pyramidal_) return;
    lease dr = pool.take_zeroed(reduce_.y.shape());
    for (int i = 0; i + 1 < nl_; ++i)
      unity_heads_[size_t(i)].backward(reduce_.y, dunity_[size_t(i)], &dr.get());
    reduce_.backward(x, dr.get(), dfeature);
  }

  // The fuser (Eq. 2, tau) on the last forward; single / auxiliary: the finest level.
  void fuse() {
    ops::pyramid_fuse_params fp;
    fp.threshold = opt_.tau;
    if (pyramidal_) {
      ops::pyramid_fuse(fp, semantic_, unity_, fused_labels_, &fused_logits_, level_map_);
    } else {
      argmax_in_[1] = semantic_.back();
      ops::pyramid_fuse(fp, argmax_in_, argmax_unity_, fused_labels_, nullptr, argmax_levels_);
    }
  }
  const L& fused_labels() const { return fused_labels_; }
  const T& fused_logits() const { return fused_logits_; }
  const tensor<uint8_t, Device>& level_map() const { return level_map_; }

  void set_training(bool training) {
    reduce_.bn.training = training;
    anl_.set_training(training);
    for (auto& lv : levels_) {
      lv.cls1.bn.training = training;
      lv.block1.bn.training = training;
      lv.block2.bn.training = training;
      lv.anl.set_training(training);
    }
  }
  void initialize(std::mt19937_64& rng) {
    if (pyramidal_) {
      reduce_.initialize(rng);
      for (auto& u : unity_heads_) u.initialize(rng);
    }
    input_.initialize(rng);
    if (opt_.context == saf_context::anl) anl_.initialize(rng);
    for (auto& lv : levels_) {
      if (!lv.computed) continue;
      if (opt_.context == saf_context::anl_multi) lv.anl.initialize(rng);
      if (c2f_) {
        lv.q.initialize(rng);
        lv.k.initialize(rng);
        lv.v.initialize(rng);
        if (!lv.last) {
          lv.block1.initialize(rng);
          lv.block2.initialize(rng);
          lv.update.initialize(rng);
        }
        lv.agg.initialize(rng);
      }
      if (lv.predicted) {
        lv.cls1.initialize(rng);
        lv.cls2.initialize(rng);
      }
    }
  }
  template <class V>
  void visit_parameters(const std::string& prefix, V&& v) {
    const std::string u = nn::join_name(prefix, "unity"), s = nn::join_name(prefix, "semantic");
    if (pyramidal_) {
      reduce_.visit_parameters(u + ".reduce.conv", u + ".reduce.bn", v);
      for (size_t i = 0; i < unity_heads_.size(); ++i)
        unity_heads_[i].visit(u + ".heads." + std::to_string(i), v);
    }
    input_.visit(s + ".input", v);
    if (opt_.context == saf_context::anl) anl_.visit_parameters(s + ".anl", v);
    for (size_t i = 0; i < levels_.size(); ++i) {
      level& lv = levels_[i];
      if (!lv.computed) continue;
      const std::string p = s + ".levels." + std::to_string(i);
      if (opt_.context == saf_context::anl_multi) lv.anl.visit_parameters(p + ".anl", v);
      if (c2f_) {
        lv.q.visit(p + ".query", v);
        lv.k.visit(p + ".key", v);
        lv.v.visit(p + ".value", v);
        if (lv.last) {
          lv.agg.visit(p + ".agg", v);
        } else {
          lv.block1.visit_parameters(p + ".agg.conv1.conv", p + ".agg.conv1.bn", v);
          lv.block2.visit_parameters(p + ".agg.conv2.conv", p + ".agg.conv2.bn", v);
          lv.agg.visit(p + ".agg.skip", v);
        }
      }
      if (lv.predicted) {
        lv.cls1.visit_parameters(p + ".cls.conv1", p + ".cls.bn", v);
        lv.cls2.visit(p + ".cls.conv2", v);
      }
      if (c2f_ && !lv.last) lv.update.visit(s + ".update." + std::to_string(i), v);
    }
  }
  template <class V>
  void visit_buffers(const std::string& prefix, V&& v) {
    const std::string u = nn::join_name(prefix, "unity"), s = nn::join_name(prefix, "semantic");
    if (pyramidal_) reduce_.visit_buffers(u + ".reduce.bn", v);
    if (opt_.context == saf_context::anl) anl_.visit_buffers(s + ".anl", v);
    for (size_t i = 0; i < levels_.size(); ++i) {
      level& lv = levels_[i];
      if (!lv.computed) continue;
      const std::string p = s + ".levels." + std::to_string(i);
      if (opt_.context == saf_context::anl_multi) lv.anl.visit_buffers(p + ".anl", v);
      if (c2f_ && !lv.last) {
        lv.block1.visit_buffers(p + ".agg.conv1.bn", v);
        lv.block2.visit_buffers(p + ".agg.conv2.bn", v);
      }
      if (lv.predicted) lv.cls1.visit_buffers(p + ".cls.bn", v);
    }
  }

 private:
  struct level {
    bool last = false, predicted = false, computed = false;
    size_t out = 0;  // index into semantic_ (predicted levels)
    ops::pool2d_params pool{};
    saf_parts::conv_unit<Device> q, k, v, agg, update, cls2;
    saf_parts::cbr_unit<Device> block1, block2, cls1;
    saf_parts::apnb_block<Device> anl;
    T x, theta, dtheta, o, lse, c, xp, psx, cat2;
  };

  // The coarse-to-fine contextual module of level i (buffers; theta is linked after the loop).
  void setup_c2f(level& lv, int i, const shape& xs, const shape& ps3, const shape& theta4) {
    lv.theta = i == 0 ? theta0_.view(theta4) : T(theta4);
    lv.dtheta = i == 0 ? dtheta0_.view(theta4) : T(theta4);
    lv.q.setup(xs);
    lv.k.setup(theta4);
    lv.v.setup(theta4);
    lv.o = T(xs);
    lv.lse = T(ops::attention2d_lse_shape(attn_, xs, theta4, theta4));
    const shape cs = xs.with(1, 2 * opt_.semantic_channels);
    lv.c = T(cs);
    if (lv.last) {
      lv.agg.setup(cs);
      lv.xp = lv.agg.y;
    } else {
      lv.block2.setup(lv.block1.setup(cs));
      lv.agg.setup(cs);
      lv.xp = T(xs);
    }
    if (!lv.last) {
      lv.psx = T(ps3);
      lv.cat2 = T(theta4.with(1, 2 * opt_.semantic_channels));
      lv.update.setup(lv.cat2.shape());
    }
  }
  void forward_c2f(level& lv) {
    ops::attention2d_forward(attn_, lv.q.forward(lv.x), lv.k.forward(lv.theta),
                             lv.v.forward(lv.theta), lv.o, lv.lse);
    pair_[0] = lv.o;
    pair_[1] = lv.x;
    ops::concat<Device>({1}, pair_, lv.c);
    if (lv.last) {
      lv.agg.forward(lv.c);
    } else {
      lv.block2.forward(lv.block1.forward(lv.c));
      ops::add<Device>(lv.block2.y, lv.agg.forward(lv.c), lv.xp);
      ops::pyramid_sampling_forward(ps_, lv.xp, lv.psx);
      pair_[0] = lv.psx.view(lv.theta.shape());
      pair_[1] = lv.theta;
      ops::concat<Device>({1}, pair_, lv.cat2);
      lv.update.forward(lv.cat2);
    }
  }
  // F_upd's backward: from the next level's dtheta into dxp and this level's dtheta.
  void backward_update(level& lv, const T& dtheta_next, T& dxp) {
    auto& pool = default_buffer_pool<Device>();
    lease dcat2 = pool.take_zeroed(lv.cat2.shape());
    lv.update.backward(lv.cat2, dtheta_next, &dcat2.get());
    lease dpsx = pool.take_zeroed(lv.psx.shape());
    T dpsx4 = dpsx.get().view(lv.theta.shape());
    grads_[0] = &dpsx4;
    grads_[1] = &lv.dtheta;
    ops::concat_backward<Device>({1}, dcat2.get(), grads_);
    ops::pyramid_sampling_backward(ps_, dpsx.get(), dxp);
  }
  // From dxp (complete) into dx and dtheta.
  void backward_c2f(level& lv, const T& dxp, T& dx) {
    auto& pool = default_buffer_pool<Device>();
    lease d_o = pool.take_zeroed(lv.o.shape());
    {
      lease dc = pool.take_zeroed(lv.c.shape());
      lv.agg.backward(lv.c, dxp, &dc.get());
      if (!lv.last) {
        lease dmid = pool.take_zeroed(lv.block1.y.shape());
        lv.block2.backward(lv.block1.y, dxp, &dmid.get());
        lv.block1.backward(lv.c, dmid.get(), &dc.get());
      }
      grads_[0] = &d_o.get();
      grads_[1] = &dx;
      ops::concat_backward<Device>({1}, dc.get(), grads_);
    }
    lease dq = pool.take_zeroed(lv.q.y.shape()), dk = pool.take_zeroed(lv.k.y.shape()),
          dv = pool.take_zeroed(lv.v.y.shape());
    ops::attention2d_backward(attn_, lv.q.y, lv.k.y, lv.v.y, lv.o, lv.lse, d_o.get(), &dq.get(),
                              &dk.get(), &dv.get());
    d_o.release();
    lv.q.backward(lv.x, dq.get(), &dx);
    lv.k.backward(lv.theta, dk.get(), &lv.dtheta);
    lv.v.backward(lv.theta, dv.get(), &lv.dtheta);
  }

  // The chain of consecutive levels spanning the pyramid (chain level c has cell size
  // 2^(chain-1-c)), the pyramid's levels among them, and the loss states.
  void setup_targets(const shape& feature, int64_t finest_stride) {
    gt_.levels = chain_;
    gt_.finest_stride = finest_stride;
    gt_.ignore_index = opt_.ignore_index;
    const shape labels{feature[0], feature[2] * finest_stride, feature[3] * finest_stride};
    chain_semantic_.assign(size_t(chain_), L());
    chain_unity_.assign(size_t(chain_ - 1), L());
    chain_predicted_.assign(size_t(chain_ - 1), T());
    std::vector<int> level_of(size_t(chain_), -1);
    for (int i = 0; i < nl_; ++i) {
      int c = chain_ - 1;
      for (int64_t s = scales_[size_t(i)]; s > 1; s >>= 1) --c;
      level_of[size_t(c)] = i;
    }
    gt_semantic_.clear();
    gt_unity_.clear();
    missing_.clear();
    for (int c = 0; c < chain_; ++c) {
      chain_semantic_[size_t(c)] = L(ops::pyramid_semantic_shape(gt_, labels, c));
      const int i = level_of[size_t(c)];
      if (i >= 0) gt_semantic_.push_back(chain_semantic_[size_t(c)]);
      if (c + 1 == chain_) continue;
      const shape us = ops::pyramid_unity_shape(gt_, labels, c);
      chain_unity_[size_t(c)] = L(us);
      if (i >= 0) gt_unity_.push_back(chain_unity_[size_t(c)]);
      if (i < 0) missing_.push_back(c);
      if (!pyramidal_) continue;
      chain_predicted_[size_t(c)] =
          i >= 0 ? unity_[size_t(i)] : T::zeros(shape{us[0], 1, us[1], us[2]});
    }
    if (!pyramidal_) chain_predicted_.clear();
    ce_state_.assign(size_t(nl_), train::loss_state<Device>());
    bce_state_.assign(size_t(nl_ - 1), train::loss_state<Device>());
  }
  train::bce_params bce_params() const {
    train::bce_params bp;
    bp.ignore_index = opt_.ignore_index;
    return bp;
  }
  // CE of level i's logits against its target; writes its gradient (scaled) and returns it.
  double cross_entropy(int i, float scale) {
    train::cross_entropy_params cp;
    cp.ignore_index = opt_.ignore_index;
    const T& logits = semantic_[levels_[size_t(i)].out];
    T& grad = dsemantic_[levels_[size_t(i)].out];
    const double ce =
        train::cross_entropy_forward(cp, logits, gt_semantic_[size_t(i)], ce_state_[size_t(i)]);
    grad.zero();
    train::cross_entropy_backward(cp, logits, gt_semantic_[size_t(i)], ce_state_[size_t(i)], scale,
                                  grad);
    return ce;
  }

  saf_options opt_;
  int in_, classes_, nl_ = 0, chain_ = 0;
  bool pyramidal_ = true, c2f_ = true;
  std::vector<int64_t> scales_;
  saf_parts::cbr_unit<Device> reduce_;
  std::vector<saf_parts::conv_unit<Device>> unity_heads_;
  saf_parts::conv_unit<Device> input_;
  saf_parts::apnb_block<Device> anl_;
  std::vector<level> levels_;
  ops::attention2d_params attn_{};
  ops::pyramid_sampling_params ps_{};
  shape feature_shape_;
  T base_, dbase_, dxl_, theta0_, dtheta0_, fused_logits_;
  std::vector<T> unity_, dunity_, semantic_, dsemantic_, argmax_in_, argmax_unity_;
  std::vector<T> pair_{T(), T()};
  std::vector<T*> grads_{nullptr, nullptr};
  ops::pyramid_ground_truth_params gt_{};
  std::vector<L> chain_semantic_, chain_unity_, gt_semantic_, gt_unity_;
  std::vector<T> chain_predicted_;
  std::vector<int> missing_;
  std::vector<train::loss_state<Device>> ce_state_, bce_state_;
  L fused_labels_;
  tensor<uint8_t, Device> level_map_, argmax_levels_;
};

}  // namespace segkit::models
