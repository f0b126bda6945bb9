// segkit/models/saf_head.hpp — the Specialize-and-Fuse (SaF) head (METHODS.md §1, paper §3,
// supplementary §B–D): unity head, semantic head with the coarse-to-fine contextual module,
// and the Eq. 1 loss with pyramidal ground truth and "done by coarser" re-labeling.
// Provides:
//   models::saf_options       levels (L), D_s, D_u, re-labeling variant, tau, sampling sizes;
//   models::saf_head<Device>  runtime channels (in, D_s, D_u, classes, L):
//     setup(feature [N, D, h, w]) plans every buffer (h, w divisible by 2^(L-1));
//     forward(feature) -> semantic logits Ŷ(l) [N, C, h/2^(L-l), ...] (l = 1..L, coarse first)
//       and unity logits Û(l) [N, 1, ...] (l < L);
//     loss(labels at input resolution, finest stride) -> Eq. 1 terms, and the gradients of
//       every output (call backward next);
//     backward(feature, dfeature*) adds into parameter grads and *dfeature (when not null);
//     fuse() -> ops::pyramid_fuse (tau) of the last forward: labels, logits, level map.
// Structure (names are those of tests/reference/gen_saf.py's PyTorch module):
//   unity.reduce.{conv,bn}   Conv1x1(D -> D_u, no bias) + BN + ReLU
//   unity.heads.i            Conv(D_u -> 1, kernel = stride = 2^(L-1-i), bias), i = 0..L-2
//   semantic.input           Conv1x1(D -> D_s, bias): X(L); X(l) = AvgPool_{2^(L-l)}(X(L))
//   theta(0) = PyramidSampling(X(L)) [N, D_s, 1, S]
//   semantic.levels.i.{query,key,value}  Conv1x1 (bias) D_s -> D_s; Attention2D scale 1/sqrt(D_s)
//   semantic.levels.i.agg    F_agg on concat(attention, X(l)) (2 D_s): at l = L a Conv1x1
//     (bias) to D_s; at l < L a residual block: conv1.{conv,bn} 3x3-BN-ReLU, conv2.{conv,bn}
//     3x3-BN-ReLU, plus skip = Conv1x1 (no bias) of the block input; output = conv2 + skip
//     (no ReLU after the sum: METHODS.md leaves it open)
//   semantic.levels.i.cls.{conv1,bn,conv2}  Conv1x1(D_s->D_s, no bias)-BN-ReLU-Conv1x1(->C, bias)
//   semantic.update.i        F_upd: Conv1x1 (bias) 2 D_s -> D_s on concat(PS(X'(l)), theta(l-1))
// Guarantees: forward/backward/loss allocate nothing after setup (op workspaces once grown);
//   backward ADDS. Loss terms: "ce" = 1/L sum CE(l), "bce" = 1/(L-1) sum BCE(l), each a mean over
//   its non-ignored cells (0 when none), total = ce + bce (mode `full`).
#pragma once
#include "segkit/models/saf_parts.hpp"

namespace segkit::models {

template <class Device = cpu>
class saf_head {
 public:
  using T = tensor<float, Device>;
  using L = tensor<int32_t, Device>;

  saf_head(int in_channels, int num_classes, saf_options options = {})
      : opt_(options), in_(in_channels), classes_(num_classes) {
    require<value_error>(in_channels >= 1 && num_classes >= 1 && opt_.semantic_channels >= 1 &&
                             opt_.unity_channels >= 1,
                         "saf_head: in_channels ", in_channels, ", num_classes ", num_classes,
                         ", D_s ", opt_.semantic_channels, ", D_u ", opt_.unity_channels,
                         "; expected each >= 1");
    require<value_error>(opt_.levels >= 2 && opt_.levels <= ops::max_pyramid_levels,
                         "saf_head: levels = ", opt_.levels, ", expected 2 to ",
                         ops::max_pyramid_levels);
    require<value_error>(opt_.tau > 0.f && opt_.tau < 1.f, "saf_head: tau = ", opt_.tau,
                         ", expected a value in (0, 1)");
    const int ds = opt_.semantic_channels, nl = opt_.levels;
    reduce_.init(in_channels, opt_.unity_channels, 1);
    unity_heads_.resize(size_t(nl - 1));
    for (int i = 0; i + 1 < nl; ++i) {
      const int k = 1 << (nl - 1 - i);
      unity_heads_[size_t(i)].init(opt_.unity_channels, 1, k, k, 0, true);
    }
    input_.init(in_channels, ds, 1, 1, 0, true);
    levels_.resize(size_t(nl));
    for (int i = 0; i < nl; ++i) {
      level& lv = levels_[size_t(i)];
      lv.last = i + 1 == nl;
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
      lv.cls1.init(ds, ds, 1);
      lv.cls2.init(ds, num_classes, 1, 1, 0, true);
    }
    attn_.heads = 1;
    attn_.scale = 1.f / std::sqrt(float(ds));
    ps_.sizes = opt_.sampling_sizes;
  }

  int levels() const { return opt_.levels; }
  int num_classes() const { return classes_; }
  const saf_options& options() const { return opt_; }

  // feature [N, D, h, w], h and w divisible by 2^(L-1). Plans the outputs and, for a label map
  // [N, h * finest_stride, w * finest_stride], the pyramidal ground truth of loss().
  void setup(const shape& feature, int64_t finest_stride = 4) {
    const int nl = opt_.levels, ds = opt_.semantic_channels;
    const int64_t coarse = int64_t(1) << (nl - 1);
    require<shape_error>(feature.rank() == 4 && feature[1] == in_ && feature[2] % coarse == 0 &&
                             feature[3] % coarse == 0 && feature[2] > 0 && feature[3] > 0,
                         "saf_head setup: feature of shape ", feature.to_string(), " is not [N, ",
                         in_, ", h, w] with h and w positive multiples of 2^(L-1) = ", coarse);
    feature_shape_ = feature;
    const shape xl = input_.setup(feature);
    dxl_ = T(xl);
    const shape r = reduce_.setup(feature);
    dr_ = T(r);
    unity_.assign(size_t(nl - 1), T());
    dunity_.assign(size_t(nl - 1), T());
    for (int i = 0; i + 1 < nl; ++i) {
      unity_[size_t(i)] = T(unity_heads_[size_t(i)].setup(r));
      dunity_[size_t(i)] = T(unity_[size_t(i)].shape());
    }
    const shape ps3 = ops::pyramid_sampling_output_shape(ps_, xl);
    const int64_t s = ps3[2];
    const shape theta4{feature[0], ds, 1, s};
    theta0_ = T(ps3);
    dtheta0_ = T(ps3);
    semantic_.assign(size_t(nl), T());
    dsemantic_.assign(size_t(nl), T());
    for (int i = 0; i < nl; ++i) {
      level& lv = levels_[size_t(i)];
      const int64_t f = int64_t(1) << (nl - 1 - i);
      const shape xs{feature[0], ds, feature[2] / f, feature[3] / f};
      lv.pool.kernel_h = lv.pool.kernel_w = lv.pool.stride_h = lv.pool.stride_w = f;
      lv.x = lv.last ? input_.y : T(xs);
      lv.dx = lv.last ? dxl_ : T(xs);
      lv.theta = i == 0 ? theta0_.view(theta4) : T(theta4);
      lv.dtheta = i == 0 ? dtheta0_.view(theta4) : T(theta4);
      lv.q.setup(xs);
      lv.k.setup(theta4);
      lv.v.setup(theta4);
      lv.o = T(xs);
      lv.d_o = T(xs);
      lv.dq = T(xs);
      lv.dk = T(theta4);
      lv.dv = T(theta4);
      lv.lse = T(ops::attention2d_lse_shape(attn_, xs, theta4, theta4));
      const shape cs = xs.with(1, 2 * ds);
      lv.c = T(cs);
      lv.dc = T(cs);
      if (lv.last) {
        lv.agg.setup(cs);
        lv.xp = lv.agg.y;
      } else {
        lv.block2.setup(lv.block1.setup(cs));
        lv.dmid = T(xs);
        lv.agg.setup(cs);
        lv.xp = T(xs);
      }
      lv.dxp = T(xs);
      lv.dh = T(lv.cls1.setup(xs));
      semantic_[size_t(i)] = T(lv.cls2.setup(xs));
      dsemantic_[size_t(i)] = T(semantic_[size_t(i)].shape());
      if (!lv.last) {
        lv.psx = T(ps3);
        lv.dpsx = T(ps3);
        lv.cat2 = T(theta4.with(1, 2 * ds));
        lv.dcat2 = T(lv.cat2.shape());
        lv.update.setup(lv.cat2.shape());
      }
    }
    for (int i = 0; i + 1 < nl; ++i) levels_[size_t(i + 1)].theta = levels_[size_t(i)].update.y;
    // ground truth at the label map's size
    gt_.levels = nl;
    gt_.finest_stride = finest_stride;
    gt_.ignore_index = opt_.ignore_index;
    const shape labels{feature[0], feature[2] * finest_stride, feature[3] * finest_stride};
    gt_semantic_.assign(size_t(nl), L());
    gt_unity_.assign(size_t(nl - 1), L());
    for (int i = 0; i < nl; ++i) {
      gt_semantic_[size_t(i)] = L(ops::pyramid_semantic_shape(gt_, labels, i));
      if (i + 1 < nl) gt_unity_[size_t(i)] = L(ops::pyramid_unity_shape(gt_, labels, i));
    }
    ce_state_.assign(size_t(nl), train::loss_state<Device>());
    bce_state_.assign(size_t(nl - 1), train::loss_state<Device>());
    const auto g = ops::make_pyramid_fuse_geometry(ops::detail::shapes_of(semantic_),
                                                   ops::detail::shapes_of(unity_));
    fused_labels_ = L(ops::pyramid_fuse_labels_shape(g));
    fused_logits_ = T(ops::pyramid_fuse_logits_shape(g));
    level_map_ = tensor<uint8_t, Device>(ops::pyramid_fuse_labels_shape(g));
  }
  const shape& feature_shape() const { return feature_shape_; }

  // Runs both heads; results in semantic_logits() (coarse first) and unity_logits().
  void forward(const T& x) {
    const int nl = opt_.levels;
    const T& xl = input_.forward(x);
    for (int i = 0; i + 1 < nl; ++i) ops::avg_pool2d_forward(levels_[size_t(i)].pool, xl, levels_[size_t(i)].x);
    ops::pyramid_sampling_forward(ps_, xl, theta0_);
    for (int i = 0; i < nl; ++i) {
      level& lv = levels_[size_t(i)];
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
      }
      ops::conv2d_forward(lv.cls2.p, lv.cls1.forward(lv.xp), lv.cls2.weight.value,
                          &lv.cls2.bias.value, semantic_[size_t(i)]);
      if (!lv.last) {
        ops::pyramid_sampling_forward(ps_, lv.xp, lv.psx);
        pair_[0] = lv.psx.view(lv.theta.shape());
        pair_[1] = lv.theta;
        ops::concat<Device>({1}, pair_, lv.cat2);
        lv.update.forward(lv.cat2);
      }
    }
    const T& r = reduce_.forward(x);
    for (int i = 0; i + 1 < nl; ++i)
      ops::conv2d_forward(unity_heads_[size_t(i)].p, r, unity_heads_[size_t(i)].weight.value,
                          &unity_heads_[size_t(i)].bias.value, unity_[size_t(i)]);
  }
  const std::vector<T>& semantic_logits() const { return semantic_; }
  const std::vector<T>& unity_logits() const { return unity_; }

  // Eq. 1 on the last forward: pyramidal ground truth of `labels` ([N, h s_L, w s_L]),
  // re-labeling (options().relabel), the terms, and the output gradients (scaled by `weight`)
  // written into the buffers backward() reads. Returns the unweighted terms ("ce", "bce").
  loss_terms loss(const L& labels, float weight = 1.f) {
    const int nl = opt_.levels;
    ops::pyramid_ground_truth(gt_, labels, gt_semantic_, gt_unity_);
    ops::pyramid_relabel_params rp;
    rp.mode = opt_.relabel;
    rp.ignore_index = opt_.ignore_index;
    rp.threshold = opt_.tau;
    ops::pyramid_relabel(rp, gt_semantic_, gt_unity_, &unity_);
    train::cross_entropy_params cp;
    cp.ignore_index = opt_.ignore_index;
    train::bce_params bp;
    bp.ignore_index = opt_.ignore_index;
    double ce = 0, bce = 0;
    for (int i = 0; i < nl; ++i) {
      ce += train::cross_entropy_forward(cp, semantic_[size_t(i)], gt_semantic_[size_t(i)],
                                         ce_state_[size_t(i)]);
      dsemantic_[size_t(i)].zero();
      train::cross_entropy_backward(cp, semantic_[size_t(i)], gt_semantic_[size_t(i)],
                                    ce_state_[size_t(i)], weight / float(nl), dsemantic_[size_t(i)]);
    }
    for (int i = 0; i + 1 < nl; ++i) {
      bce += train::bce_with_logits_forward(bp, unity_[size_t(i)], gt_unity_[size_t(i)],
                                            bce_state_[size_t(i)]);
      dunity_[size_t(i)].zero();
      train::bce_with_logits_backward(bp, unity_[size_t(i)], gt_unity_[size_t(i)],
                                      bce_state_[size_t(i)], weight / float(nl - 1),
                                      dunity_[size_t(i)]);
    }
    loss_terms out;
    out.terms = {{"ce", ce / nl}, {"bce", bce / (nl - 1)}};
    out.total = ce / nl + bce / (nl - 1);
    return out;
  }
  // The targets the last loss() used (after re-labeling).
  const std::vector<L>& semantic_targets() const { return gt_semantic_; }
  const std::vector<L>& unity_targets() const { return gt_unity_; }
  // Output gradients backward() uses (loss() writes them; tests may set them).
  std::vector<T>& semantic_grads() { return dsemantic_; }
  std::vector<T>& unity_grads() { return dunity_; }

  // Adds into parameter gradients and into *dfeature (when not null).
  void backward(const T& x, T* dfeature) {
    const int nl = opt_.levels;
    for (auto& lv : levels_) {
      lv.dx.zero();
      lv.dtheta.zero();
    }
    for (int i = nl - 1; i >= 0; --i) {
      level& lv = levels_[size_t(i)];
      lv.dxp.zero();
      if (!lv.last) {
        lv.dcat2.zero();
        lv.update.backward(lv.cat2, levels_[size_t(i + 1)].dtheta, &lv.dcat2);
        lv.dpsx.zero();
        T dpsx4 = lv.dpsx.view(lv.theta.shape());
        grads_[0] = &dpsx4;
        grads_[1] = &lv.dtheta;
        ops::concat_backward<Device>({1}, lv.dcat2, grads_);
        ops::pyramid_sampling_backward(ps_, lv.dpsx, lv.dxp);
      }
      lv.dh.zero();
      lv.cls2.backward(lv.cls1.y, dsemantic_[size_t(i)], &lv.dh);
      lv.cls1.backward(lv.xp, lv.dh, &lv.dxp);
      lv.dc.zero();
      if (lv.last) {
        lv.agg.backward(lv.c, lv.dxp, &lv.dc);
      } else {
        lv.agg.backward(lv.c, lv.dxp, &lv.dc);
        lv.dmid.zero();
        lv.block2.backward(lv.block1.y, lv.dxp, &lv.dmid);
        lv.block1.backward(lv.c, lv.dmid, &lv.dc);
      }
      lv.d_o.zero();
      grads_[0] = &lv.d_o;
      grads_[1] = &lv.dx;
      ops::concat_backward<Device>({1}, lv.dc, grads_);
      lv.dq.zero();
      lv.dk.zero();
      lv.dv.zero();
      ops::attention2d_backward(attn_, lv.q.y, lv.k.y, lv.v.y, lv.o, lv.lse, lv.d_o, &lv.dq, &lv.dk,
                                &lv.dv);
      lv.q.backward(lv.x, lv.dq, &lv.dx);
      lv.k.backward(lv.theta, lv.dk, &lv.dtheta);
      lv.v.backward(lv.theta, lv.dv, &lv.dtheta);
    }
    for (int i = 0; i + 1 < nl; ++i)
      ops::avg_pool2d_backward(levels_[size_t(i)].pool, levels_[size_t(i)].dx, dxl_);
    ops::pyramid_sampling_backward(ps_, dtheta0_, dxl_);
    input_.backward(x, dxl_, dfeature);
    dr_.zero();
    for (int i = 0; i + 1 < nl; ++i)
      unity_heads_[size_t(i)].backward(reduce_.y, dunity_[size_t(i)], &dr_);
    reduce_.backward(x, dr_, dfeature);
  }

  // The fuser (Eq. 2, tau) on the last forward.
  void fuse() {
    ops::pyramid_fuse_params fp;
    fp.threshold = opt_.tau;
    ops::pyramid_fuse(fp, semantic_, unity_, fused_labels_, &fused_logits_, level_map_);
  }
  const L& fused_labels() const { return fused_labels_; }
  const T& fused_logits() const { return fused_logits_; }
  const tensor<uint8_t, Device>& level_map() const { return level_map_; }

  void set_training(bool training) {
    reduce_.bn.training = training;
    for (auto& lv : levels_) {
      lv.cls1.bn.training = training;
      lv.block1.bn.training = training;
      lv.block2.bn.training = training;
    }
  }
  void initialize(std::mt19937_64& rng) {
    reduce_.initialize(rng);
    for (auto& u : unity_heads_) u.initialize(rng);
    input_.initialize(rng);
    for (auto& lv : levels_) {
      lv.q.initialize(rng);
      lv.k.initialize(rng);
      lv.v.initialize(rng);
      if (!lv.last) {
        lv.block1.initialize(rng);
        lv.block2.initialize(rng);
        lv.update.initialize(rng);
      }
      lv.agg.initialize(rng);
      lv.cls1.initialize(rng);
      lv.cls2.initialize(rng);
    }
  }
  template <class V>
  void visit_parameters(const std::string& prefix, V&& v) {
    const std::string u = nn::join_name(prefix, "unity"), s = nn::join_name(prefix, "semantic");
    reduce_.visit_parameters(u + ".reduce.conv", u + ".reduce.bn", v);
    for (size_t i = 0; i < unity_heads_.size(); ++i)
      unity_heads_[i].visit(u + ".heads." + std::to_string(i), v);
    input_.visit(s + ".input", v);
    for (size_t i = 0; i < levels_.size(); ++i) {
      level& lv = levels_[i];
      const std::string p = s + ".levels." + std::to_string(i);
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
      lv.cls1.visit_parameters(p + ".cls.conv1", p + ".cls.bn", v);
      lv.cls2.visit(p + ".cls.conv2", v);
      if (!lv.last) lv.update.visit(s + ".update." + std::to_string(i), v);
    }
  }
  template <class V>
  void visit_buffers(const std::string& prefix, V&& v) {
    const std::string u = nn::join_name(prefix, "unity"), s = nn::join_name(prefix, "semantic");
    reduce_.visit_buffers(u + ".reduce.bn", v);
    for (size_t i = 0; i < levels_.size(); ++i) {
      level& lv = levels_[i];
      const std::string p = s + ".levels." + std::to_string(i);
      if (!lv.last) {
        lv.block1.visit_buffers(p + ".agg.conv1.bn", v);
        lv.block2.visit_buffers(p + ".agg.conv2.bn", v);
      }
      lv.cls1.visit_buffers(p + ".cls.bn", v);
    }
  }

 private:
  struct level {
    bool last = false;
    ops::pool2d_params pool{};
    saf_parts::conv_unit<Device> q, k, v, agg, update, cls2;
    saf_parts::cbr_unit<Device> block1, block2, cls1;
    T x, dx, theta, dtheta, o, d_o, dq, dk, dv, lse, c, dc, dmid, xp, dxp, dh, psx, dpsx, cat2,
        dcat2;
  };

  saf_options opt_;
  int in_, classes_;
  saf_parts::cbr_unit<Device> reduce_;
  std::vector<saf_parts::conv_unit<Device>> unity_heads_;
  saf_parts::conv_unit<Device> input_;
  std::vector<level> levels_;
  ops::attention2d_params attn_{};
  ops::pyramid_sampling_params ps_{};
  shape feature_shape_;
  T dxl_, dr_, theta0_, dtheta0_, fused_logits_;
  std::vector<T> unity_, dunity_, semantic_, dsemantic_;
  std::vector<T> pair_{T(), T()};
  std::vector<T*> grads_{nullptr, nullptr};
  ops::pyramid_ground_truth_params gt_{};
  std::vector<L> gt_semantic_, gt_unity_;
  std::vector<train::loss_state<Device>> ce_state_, bce_state_;
  L fused_labels_;
  tensor<uint8_t, Device> level_map_;
};

}  // namespace segkit::models
