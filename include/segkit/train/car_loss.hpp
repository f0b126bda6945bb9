// segkit/train/car_loss.hpp — CAR's class-aware regularisation losses (HFGD's CAE, METHODS §2).
// Provides:
//   train::resize_labels_nearest(labels [N, H, W], out [N, h, w]): PyTorch's nearest
//     (src = floor(dst * H / h), clamped), the labels on the feature grid;
//   train::car_forward(params, x [N, C, h, w], labels [N, h, w], state, dx = nullptr,
//     scale = 1) -> car_terms {intra, inter, c2p}; when dx is given it ADDS scale * dL/dx with
//     L = intra_weight * intra + inter_weight * inter + c2p_weight * c2p.
// Definitions (K = num_classes, Cf = C, labelled = label in [0, K), P = classes present in
//   the batch, Kp = |P|, M = labelled pixels, mu_k = mean of x over the batch's pixels of class
//   k; a bar marks a stop-gradient):
//   intra = ( sum_{p labelled, c} |x_pc - bar(mu)_{y_p, c}| / (M * Cf) )^2
//   inter = ( sum_{i != j in P} max(A_ij - 0.5/(K-1), 0) / (Kp (Kp-1)) )^2,
//           A = softmax_j( mu_i . bar(mu)_j / sqrt(Cf) )   (rows and columns over P only)
//   c2p   = ( sum_{p labelled, k in P, k != y_p} max(B_pk - 0.25/(K-1), 0) / (M (Kp-1)) )^2,
//           B_p = softmax_{k in P}(e_pk), e_pk = x_p . bar(mu)_k / sqrt(Cf) for k != y_p and
//           e_{p, y_p} = bar(mu)_{y_p} . bar(mu)_{y_p} / sqrt(Cf) (the centre's self-energy).
//   Choices (METHODS is silent): softmaxes and means run over the PRESENT classes only (an
//   absent class has no centre); the c2p term is squared like the other two; inter and c2p are
//   0 when Kp < 2 or K == 1; every term is 0 when no pixel is labelled.
//   Single worker: the centres are this batch's means (no all-reduce across workers).
// Gradient: intra reaches x directly (mu stopped); inter reaches x through the left centre
//   mu_i = sum_{p in i} x_p / n_i; c2p reaches x through x_p only.
// Requires: x rank 4, labels [N, h, w] matching x (shape_error naming both shapes);
//   num_classes >= 1 (value_error); labels outside [0, K) other than ignore -> value_error.
// Guarantees: double accumulation; no allocation once the state has grown to the shape;
//   a CUDA tensor is handled by host copies (CAR runs at output stride 32, it is small).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "segkit/tensor/error.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::train {

struct car_params {
  int num_classes = 0;
  int ignore_index = 255;
  double intra_weight = 1, inter_weight = 1, c2p_weight = 1;
};
struct car_terms {
  double intra = 0, inter = 0, c2p = 0;
  double total(const car_params& p) const {
    return p.intra_weight * intra + p.inter_weight * inter + p.c2p_weight * c2p;
  }
};
struct car_state {
  // Test hook for finite differences: when true, the stopped centres bar(mu) keep the values
  // the previous call left in `centres` (only the un-stopped left centre of inter, `live`, is
  // recomputed), so the loss is the function whose gradient car_forward returns.
  bool freeze_centres = false;
  std::vector<double> sums, live, centres, scores, dcentres, energy, prob;
  std::vector<int64_t> counts;
  std::vector<int> present;
};

inline void resize_labels_nearest(const tensor<int32_t, cpu>& labels, tensor<int32_t, cpu>& out) {
  require<shape_error>(labels.shape().rank() == 3 && out.shape().rank() == 3 &&
                           labels.shape()[0] == out.shape()[0],
                       "resize_labels_nearest: labels of shape ", labels.shape().to_string(),
                       " and output of shape ", out.shape().to_string(), " are not [N, H, W]");
  const int64_t n = labels.shape()[0], H = labels.shape()[1], W = labels.shape()[2];
  const int64_t h = out.shape()[1], w = out.shape()[2];
  const float sy = float(H) / float(h), sx = float(W) / float(w);  // PyTorch's float scale
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < h; ++i) {
      const int64_t si = std::min(int64_t(std::floor(float(i) * sy)), H - 1);
      for (int64_t j = 0; j < w; ++j) {
        const int64_t sj = std::min(int64_t(std::floor(float(j) * sx)), W - 1);
        out[(b * h + i) * w + j] = labels[(b * H + si) * W + sj];
      }
    }
}

inline car_terms car_forward(const car_params& params, const tensor<float, cpu>& x,
                             const tensor<int32_t, cpu>& labels, car_state& st,
                             tensor<float, cpu>* dx = nullptr, float scale = 1.f) {
  const shape& xs = x.shape();
  require<shape_error>(xs.rank() == 4 && labels.shape().rank() == 3 &&
                           labels.shape()[0] == xs[0] && labels.shape()[1] == xs[2] &&
                           labels.shape()[2] == xs[3],
                       "car_forward: features of shape ", xs.to_string(), " and labels of shape ",
                       labels.shape().to_string(), " do not match ([N, C, h, w] and [N, h, w])");
  require<value_error>(params.num_classes >= 1, "car_forward: num_classes is ",
                       params.num_classes, "; expected at least 1");
  if (dx) require_same_shape("car_forward", "features", x.shape(), "dx", dx->shape());
  const int K = params.num_classes;
  const int64_t N = xs[0], C = xs[1], hw = xs[2] * xs[3];
  const double root = std::sqrt(double(C));
  st.sums.assign(size_t(K * C), 0.0);
  st.counts.assign(size_t(K), 0);
  const float* xp = x.data();
  const int32_t* lp = labels.data();
  for (int64_t b = 0; b < N; ++b)
    for (int64_t i = 0; i < hw; ++i) {
      const int32_t y = lp[b * hw + i];
      if (y == params.ignore_index) continue;
      require<value_error>(y >= 0 && y < K, "car_forward: label ", y, " at pixel ", b * hw + i,
                           "; expected [0, ", K, ") or ", params.ignore_index);
      ++st.counts[size_t(y)];
      const float* px = xp + b * C * hw + i;
      double* s = st.sums.data() + y * C;
      for (int64_t c = 0; c < C; ++c) s[c] += px[c * hw];
    }
  st.present.clear();
  int64_t M = 0;
  st.live.assign(size_t(K * C), 0.0);
  for (int k = 0; k < K; ++k) {
    if (st.counts[size_t(k)] == 0) continue;
    st.present.push_back(k);
    M += st.counts[size_t(k)];
    for (int64_t c = 0; c < C; ++c)
      st.live[size_t(k * C + c)] = st.sums[size_t(k * C + c)] / double(st.counts[size_t(k)]);
  }
  if (!st.freeze_centres || st.centres.size() != st.live.size()) st.centres = st.live;
  car_terms t;
  if (M == 0) return t;
  const double* mu = st.centres.data();
  const int Kp = int(st.present.size());
  float* dxp = dx ? dx->data() : nullptr;

  // intra
  double sum_abs = 0;
  for (int64_t b = 0; b < N; ++b)
    for (int64_t i = 0; i < hw; ++i) {
      const int32_t y = lp[b * hw + i];
      if (y == params.ignore_index) continue;
      const float* px = xp + b * C * hw + i;
      for (int64_t c = 0; c < C; ++c) sum_abs += std::fabs(px[c * hw] - mu[y * C + c]);
    }
  const double m = sum_abs / (double(M) * double(C));
  t.intra = m * m;
  if (dxp && params.intra_weight != 0) {
    const double g = scale * params.intra_weight * 2 * m / (double(M) * double(C));
    for (int64_t b = 0; b < N; ++b)
      for (int64_t i = 0; i < hw; ++i) {
        const int32_t y = lp[b * hw + i];
        if (y == params.ignore_index) continue;
        const float* px = xp + b * C * hw + i;
        float* pd = dxp + b * C * hw + i;
        for (int64_t c = 0; c < C; ++c) {
          const double d = px[c * hw] - mu[y * C + c];
          pd[c * hw] += float(d > 0 ? g : (d < 0 ? -g : 0.0));
        }
      }
  }
  if (Kp < 2 || K == 1) return t;

  // inter: A = softmax over P of mu_i . mu_j / sqrt(C)
  const double thr = 0.5 / double(K - 1);
  st.scores.assign(size_t(Kp * Kp), 0.0);
  for (int a = 0; a < Kp; ++a) {
    const double* mi = st.live.data() + st.present[size_t(a)] * C;  // not stopped
    double mx = -1e300;
    for (int bb = 0; bb < Kp; ++bb) {
      const double* mj = mu + st.present[size_t(bb)] * C;
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += mi[c] * mj[c];
      st.scores[size_t(a * Kp + bb)] = s / root;
      mx = std::max(mx, s / root);
    }
    double z = 0;
    for (int bb = 0; bb < Kp; ++bb) z += std::exp(st.scores[size_t(a * Kp + bb)] - mx);
    for (int bb = 0; bb < Kp; ++bb)
      st.scores[size_t(a * Kp + bb)] = std::exp(st.scores[size_t(a * Kp + bb)] - mx) / z;
  }
  double r = 0;
  for (int a = 0; a < Kp; ++a)
    for (int bb = 0; bb < Kp; ++bb)
      if (a != bb) r += std::max(st.scores[size_t(a * Kp + bb)] - thr, 0.0);
  const double pairs = double(Kp) * double(Kp - 1);
  r /= pairs;
  t.inter = r * r;
  if (dxp && params.inter_weight != 0 && r > 0) {
    const double g = scale * params.inter_weight * 2 * r / pairs;
    st.dcentres.assign(size_t(Kp * C), 0.0);
    for (int a = 0; a < Kp; ++a) {
      const double* A = st.scores.data() + a * Kp;
      double dot = 0;
      for (int bb = 0; bb < Kp; ++bb)
        if (bb != a && A[bb] > thr) dot += g * A[bb];
      double* dm = st.dcentres.data() + a * C;
      for (int bb = 0; bb < Kp; ++bb) {
        const double dA = (bb != a && A[bb] > thr) ? g : 0.0;
        const double ds = A[bb] * (dA - dot) / root;
        if (ds == 0) continue;
        const double* mj = mu + st.present[size_t(bb)] * C;
        for (int64_t c = 0; c < C; ++c) dm[c] += ds * mj[c];
      }
    }
    // mu_i = sum_{p in i} x_p / n_i
    std::vector<int>& slot = st.present;  // class -> slot lookup by search (Kp is small)
    for (int64_t b = 0; b < N; ++b)
      for (int64_t i = 0; i < hw; ++i) {
        const int32_t y = lp[b * hw + i];
        if (y == params.ignore_index) continue;
        const int a = int(std::lower_bound(slot.begin(), slot.end(), y) - slot.begin());
        const double inv = 1.0 / double(st.counts[size_t(y)]);
        const double* dm = st.dcentres.data() + a * C;
        float* pd = dxp + b * C * hw + i;
        for (int64_t c = 0; c < C; ++c) pd[c * hw] += float(dm[c] * inv);
      }
  }

  // centre-to-pixel
  const double thr2 = 0.25 / double(K - 1);
  st.energy.assign(size_t(Kp), 0.0);
  st.prob.assign(size_t(Kp), 0.0);
  const double denom = double(M) * double(Kp - 1);
  double q = 0;
  // pass 1: the loss; pass 2 (when dx is wanted and q > 0): the gradient.
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1 && !(dxp && params.c2p_weight != 0 && q > 0)) break;
    const double g = pass == 1 ? scale * params.c2p_weight * 2 * q / denom : 0.0;
    for (int64_t b = 0; b < N; ++b)
      for (int64_t i = 0; i < hw; ++i) {
        const int32_t y = lp[b * hw + i];
        if (y == params.ignore_index) continue;
        const float* px = xp + b * C * hw + i;
        double mx = -1e300;
        for (int a = 0; a < Kp; ++a) {
          const int k = st.present[size_t(a)];
          const double* mk = mu + k * C;
          double s = 0;
          if (k == y)
            for (int64_t c = 0; c < C; ++c) s += mk[c] * mk[c];
          else
            for (int64_t c = 0; c < C; ++c) s += px[c * hw] * mk[c];
          st.energy[size_t(a)] = s / root;
          mx = std::max(mx, s / root);
        }
        double z = 0;
        for (int a = 0; a < Kp; ++a) z += std::exp(st.energy[size_t(a)] - mx);
        double dot = 0;
        for (int a = 0; a < Kp; ++a) {
          const double B = std::exp(st.energy[size_t(a)] - mx) / z;
          st.prob[size_t(a)] = B;
          const bool on = st.present[size_t(a)] != y && B > thr2;
          if (pass == 0 && on) q += B - thr2;
          if (pass == 1 && on) dot += g * B;
        }
        if (pass == 0) continue;
        float* pd = dxp + b * C * hw + i;
        for (int a = 0; a < Kp; ++a) {
          const int k = st.present[size_t(a)];
          if (k == y) continue;  // the own-class energy is a constant
          const double B = st.prob[size_t(a)];
          const double de = B * ((B > thr2 ? g : 0.0) - dot) / root;
          if (de == 0) continue;
          const double* mk = mu + k * C;
          for (int64_t c = 0; c < C; ++c) pd[c * hw] += float(de * mk[c]);
        }
      }
    if (pass == 0) q /= denom;
  }
  t.c2p = q * q;
  return t;
}

#ifdef SEGKIT_WITH_CUDA
// CAR at output stride 32 is small: the CUDA overload runs it on host copies.
inline car_terms car_forward(const car_params& params, const tensor<float, cuda>& x,
                             const tensor<int32_t, cpu>& labels, car_state& st,
                             tensor<float, cuda>* dx = nullptr, float scale = 1.f) {
  tensor<float, cpu> hx(x.shape());
  copy_into(x, hx);
  tensor<float, cpu> hd(x.shape());
  hd.zero();
  const car_terms t = car_forward(params, hx, labels, st, dx ? &hd : nullptr, scale);
  if (dx) {
    tensor<float, cpu> cur(x.shape());
    copy_into(*dx, cur);
    for (int64_t i = 0; i < cur.numel(); ++i) cur[i] += hd[i];
    copy_into(cur, *dx);
  }
  return t;
}
#endif

}  // namespace segkit::train
