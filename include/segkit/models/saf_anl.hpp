// segkit/models/saf_anl.hpp — ANL's Asymmetric Pyramid Non-local Block (APNB; Zhu et al. 2019,
// "Asymmetric Non-local Neural Networks for Semantic Segmentation"), runtime channels, for the
// SaF ablations B, G and H (supplementary Table A).
// Provides: saf_parts::apnb_block<Device>: init(in, key_ch, value_ch, sampling sizes), setup,
//   forward(x) -> y, backward(x, dy, dx) (adds), initialize, visit_parameters / visit_buffers.
// Structure (ANL's _SelfAttentionBlock + APNB with one stage, scale 1), names in brackets:
//   f = Conv1x1(in -> key_ch)-BN-ReLU(x)            [key.conv, key.bn]   query = f, shared
//   K = PyramidSampling(f), V = PyramidSampling(Conv1x1(in -> value_ch, bias)(x))   [value]
//   context = W(softmax_S(f^T K / sqrt(key_ch)) V)  W = Conv1x1(value_ch -> in, bias)   [W]
//   y = Conv1x1(2 in -> in)-BN-ReLU(concat(context, x))                  [fuse.conv, fuse.bn]
// Differences from ANL's code (deliberate): the 1x1 convs in front of a BN have no bias (a
//   bias there is removed by the BN; ANL's have one); the shared key/query conv-BN runs once
//   per forward (ANL calls it twice, so its BN running statistics take two momentum steps);
//   no Dropout2d(0.05) after the fuse (segkit's SaF head has no dropout anywhere);
//   initialize() zeroes W as ANL does, so a fresh block starts with context = 0.
// Requires: x [N, in, h, w]; in, key_ch, value_ch >= 1. Guarantees: no allocation after setup
//   (op workspaces once grown); backward ADDS into parameter grads and into dx.
#pragma once
#include <string>
#include <vector>

#include "segkit/models/saf_parts.hpp"

namespace segkit::models::saf_parts {

template <class D>
struct apnb_block {
  using T = tensor<float, D>;
  cbr_unit<D> key, fuse;
  conv_unit<D> value, w;
  ops::pyramid_sampling_params ps{};
  ops::attention2d_params attn{};
  int in = 0, kc = 0, vc = 0;
  // kps/vps [N, c, S] (viewed [N, c, 1, S] for the attention); o the attended values; cat the
  // fuse input; d* their gradients.
  T kps, vps, o, lse, cat, dkps, dvps, d_o, df, dval, dctx, dcat;
  std::vector<T> pair{T(), T()};
  std::vector<T*> grads{nullptr, nullptr};

  void init(int in_channels, int key_channels, int value_channels,
            const std::vector<int64_t>& sampling_sizes) {
    require<value_error>(in_channels >= 1 && key_channels >= 1 && value_channels >= 1,
                         "apnb_block: in ", in_channels, ", key ", key_channels, ", value ",
                         value_channels, " channels; expected each >= 1");
    in = in_channels;
    kc = key_channels;
    vc = value_channels;
    key.init(in, kc, 1);
    value.init(in, vc, 1, 1, 0, true);
    w.init(vc, in, 1, 1, 0, true);
    fuse.init(2 * in, in, 1);
    ps.sizes = sampling_sizes;
    attn.heads = 1;
    attn.scale = 1.f / std::sqrt(float(kc));
  }
  shape setup(const shape& x) {
    require<shape_error>(x.rank() == 4 && x[1] == in, "apnb_block setup: input of shape ",
                         x.to_string(), " is not [N, ", in, ", h, w]");
    const shape f = key.setup(x);
    const shape v = value.setup(x);
    kps = T(ops::pyramid_sampling_output_shape(ps, f));
    vps = T(ops::pyramid_sampling_output_shape(ps, v));
    dkps = T(kps.shape());
    dvps = T(vps.shape());
    df = T(f);
    dval = T(v);
    o = T(v);
    d_o = T(v);
    lse = T(ops::attention2d_lse_shape(attn, f, k4().shape(), v4().shape()));
    const shape ctx = w.setup(v);
    dctx = T(ctx);
    cat = T(x.with(1, 2 * in));
    dcat = T(cat.shape());
    return fuse.setup(cat.shape());
  }
  T k4() const { return kps.view(shape{kps.size(0), kps.size(1), 1, kps.size(2)}); }
  T v4() const { return vps.view(shape{vps.size(0), vps.size(1), 1, vps.size(2)}); }
  const T& y() const { return fuse.y; }

  const T& forward(const T& x) {
    const T& f = key.forward(x);
    ops::pyramid_sampling_forward(ps, f, kps);
    ops::pyramid_sampling_forward(ps, value.forward(x), vps);
    ops::attention2d_forward(attn, f, k4(), v4(), o, lse);
    pair[0] = w.forward(o);
    pair[1] = x;
    ops::concat<D>({1}, pair, cat);
    return fuse.forward(cat);
  }
  // dy: gradient of y(); adds into parameter grads and *dx.
  void backward(const T& x, const T& dy, T& dx) {
    dcat.zero();
    fuse.backward(cat, dy, &dcat);
    dctx.zero();
    grads[0] = &dctx;
    grads[1] = &dx;
    ops::concat_backward<D>({1}, dcat, grads);
    d_o.zero();
    w.backward(o, dctx, &d_o);
    df.zero();
    dkps.zero();
    dvps.zero();
    T dk4 = dkps.view(k4().shape()), dv4 = dvps.view(v4().shape());
    ops::attention2d_backward(attn, key.y, k4(), v4(), o, lse, d_o, &df, &dk4, &dv4);
    ops::pyramid_sampling_backward(ps, dkps, df);
    dval.zero();
    ops::pyramid_sampling_backward(ps, dvps, dval);
    value.backward(x, dval, &dx);
    key.backward(x, df, &dx);
  }

  void set_training(bool training) {
    key.bn.training = training;
    fuse.bn.training = training;
  }
  void initialize(std::mt19937_64& rng) {
    key.initialize(rng);
    value.initialize(rng);
    w.initialize(rng);
    w.weight.value.zero();  // ANL: nn.init.constant_(W.weight, 0), constant_(W.bias, 0)
    w.bias.value.zero();
    fuse.initialize(rng);
  }
  template <class V>
  void visit_parameters(const std::string& prefix, V&& v) {
    key.visit_parameters(nn::join_name(prefix, "key.conv"), nn::join_name(prefix, "key.bn"), v);
    value.visit(nn::join_name(prefix, "value"), v);
    w.visit(nn::join_name(prefix, "W"), v);
    fuse.visit_parameters(nn::join_name(prefix, "fuse.conv"), nn::join_name(prefix, "fuse.bn"), v);
  }
  template <class V>
  void visit_buffers(const std::string& prefix, V&& v) {
    key.visit_buffers(nn::join_name(prefix, "key.bn"), v);
    fuse.visit_buffers(nn::join_name(prefix, "fuse.bn"), v);
  }
};

}  // namespace segkit::models::saf_parts
