// segkit/ops/batch_norm.hpp — 2-D batch normalisation over NCHW, exactly PyTorch's
// nn.BatchNorm2d (affine, track_running_stats, a number for momentum).
// Provides batch_norm_forward / batch_norm_backward on cpu (and cuda, via cuDNN's spatial
// batch norm, declared below and defined in kernels/batch_norm.cuh).
// Requires: x, y, dy, dx of shape [N, C, H, W]; gamma, beta, running_mean, running_var,
// saved_mean, saved_inv_std of shape [C]; eps > 0, momentum in [0, 1]; in training mode more
// than one value per channel (N*H*W > 1), as PyTorch.
// Guarantees:
//   training: y = (x - mean) * inv_std * gamma + beta with the batch mean and the BIASED batch
//     variance, inv_std = 1 / sqrt(var + eps); running_mean/var are updated in place,
//     r = (1 - momentum) * r + momentum * batch_stat, with the UNBIASED variance
//     (var * n / (n - 1)) for running_var; saved_mean / saved_inv_std receive mean / inv_std.
//   eval: y uses running_mean / running_var, which are not changed; saved_mean / saved_inv_std
//     receive running_mean and 1 / sqrt(running_var + eps). So the caller gets the statistics
//     backward needs from forward in either mode: keep saved_mean / saved_inv_std from the
//     forward call and pass them to backward with the same params.training.
//   backward ADDS into dx, dgamma, dbeta (each optional: nullptr skips it). In training mode
//     it is the full gradient through the batch statistics; in eval mode the statistics are
//     constants and dx = dy * gamma * inv_std.
// Statistics accumulate in double (two passes: mean, then squared deviations), so a large
// N*H*W or a large offset does not lose the variance. CPU work is parallel over channels.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "segkit/tensor/config.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::ops {

struct batch_norm_params {
  float eps = 1e-5f;
  float momentum = 0.1f;
  bool training = true;
};

// The output has the input's shape; the per-channel tensors have shape [C].
inline shape batch_norm_output_shape(const shape& x) {
  require_rank("batch_norm", "input", x, 4);
  return x;
}
inline shape batch_norm_channel_shape(const shape& x) {
  require_rank("batch_norm", "input", x, 4);
  return shape{x[1]};
}

namespace math {

// One normalised, scaled and shifted element.
SEGKIT_HOST_DEVICE float batch_norm_apply(float x, float mean, float inv_std, float gamma,
                                          float beta) {
  return (x - mean) * inv_std * gamma + beta;
}

// dL/dx of one element. Training: the statistics depend on x, so with M = N*H*W,
// dx = gamma * inv_std * (dy - sum_dy / M - xhat * sum_dy_xhat / M). Eval: dx = gamma*inv_std*dy.
SEGKIT_HOST_DEVICE float batch_norm_input_grad(float dy, float xhat, float scale, float mean_dy,
                                               float mean_dy_xhat, bool training) {
  return training ? scale * (dy - mean_dy - xhat * mean_dy_xhat) : scale * dy;
}

// Exponential running average as PyTorch and cuDNN: r = (1 - m) r + m s.
SEGKIT_HOST_DEVICE float running_average(float running, double batch, float momentum) {
  return static_cast<float>((1.0 - double(momentum)) * double(running) + double(momentum) * batch);
}

}  // namespace math

namespace detail {

template <class Device>
void check_batch_norm_channels(const char* op, const shape& x, const char* what,
                               const tensor<float, Device>& t) {
  require_shape(op, what, t.shape(), shape{x[1]});
}

inline void check_batch_norm_params(const char* op, const batch_norm_params& params,
                                    const shape& x) {
  require<value_error>(params.eps > 0.f && std::isfinite(params.eps), op, ": eps is ", params.eps,
                       ", expected a finite value > 0");
  require<value_error>(params.momentum >= 0.f && params.momentum <= 1.f, op, ": momentum is ",
                       params.momentum, ", expected a value in [0, 1]");
  if (params.training)
    require<value_error>(x[0] * x[2] * x[3] > 1, op,
                         ": expected more than 1 value per channel when training, got input "
                         "shape ",
                         x.to_string(), " (N*H*W = ", x[0] * x[2] * x[3],
                         "); use eval mode or a larger batch");
}

template <class Device>
void check_batch_norm_forward(const batch_norm_params& params, const tensor<float, Device>& x,
                              const tensor<float, Device>& gamma, const tensor<float, Device>& beta,
                              const tensor<float, Device>& running_mean,
                              const tensor<float, Device>& running_var,
                              const tensor<float, Device>& y,
                              const tensor<float, Device>& saved_mean,
                              const tensor<float, Device>& saved_inv_std) {
  const char* op = "batch_norm_forward";
  require_rank(op, "input", x.shape(), 4);
  require_same_shape(op, "input", x.shape(), "output", y.shape());
  check_batch_norm_channels(op, x.shape(), "gamma", gamma);
  check_batch_norm_channels(op, x.shape(), "beta", beta);
  check_batch_norm_channels(op, x.shape(), "running_mean", running_mean);
  check_batch_norm_channels(op, x.shape(), "running_var", running_var);
  check_batch_norm_channels(op, x.shape(), "saved_mean", saved_mean);
  check_batch_norm_channels(op, x.shape(), "saved_inv_std", saved_inv_std);
  check_batch_norm_params(op, params, x.shape());
}

template <class Device>
void check_batch_norm_backward(const batch_norm_params& params, const tensor<float, Device>& x,
                               const tensor<float, Device>& gamma,
                               const tensor<float, Device>& saved_mean,
                               const tensor<float, Device>& saved_inv_std,
                               const tensor<float, Device>& dy, const tensor<float, Device>* dx,
                               const tensor<float, Device>* dgamma,
                               const tensor<float, Device>* dbeta) {
  const char* op = "batch_norm_backward";
  require_rank(op, "input", x.shape(), 4);
  require_same_shape(op, "input", x.shape(), "output gradient", dy.shape());
  if (dx) require_same_shape(op, "input", x.shape(), "input gradient", dx->shape());
  check_batch_norm_channels(op, x.shape(), "gamma", gamma);
  check_batch_norm_channels(op, x.shape(), "saved_mean", saved_mean);
  check_batch_norm_channels(op, x.shape(), "saved_inv_std", saved_inv_std);
  if (dgamma) check_batch_norm_channels(op, x.shape(), "gamma gradient", *dgamma);
  if (dbeta) check_batch_norm_channels(op, x.shape(), "beta gradient", *dbeta);
  check_batch_norm_params(op, params, x.shape());
}

// Per channel statistics in double: the mean, then the sum of squared deviations.
inline void channel_moments(const float* x, int64_t batch, int64_t channels, int64_t plane,
                            int64_t c, double& mean, double& squared_deviations) {
  double sum = 0;
  for (int64_t n = 0; n < batch; ++n) {
    const float* p = x + (n * channels + c) * plane;
    for (int64_t i = 0; i < plane; ++i) sum += p[i];
  }
  const double count = double(batch * plane);
  mean = sum / count;
  double m2 = 0;
  for (int64_t n = 0; n < batch; ++n) {
    const float* p = x + (n * channels + c) * plane;
    for (int64_t i = 0; i < plane; ++i) {
      const double d = double(p[i]) - mean;
      m2 += d * d;
    }
  }
  squared_deviations = m2;
}

}  // namespace detail

inline void batch_norm_forward(const batch_norm_params& params, const tensor<float, cpu>& x,
                               const tensor<float, cpu>& gamma, const tensor<float, cpu>& beta,
                               tensor<float, cpu>& running_mean, tensor<float, cpu>& running_var,
                               tensor<float, cpu>& y, tensor<float, cpu>& saved_mean,
                               tensor<float, cpu>& saved_inv_std) {
  detail::check_batch_norm_forward(params, x, gamma, beta, running_mean, running_var, y, saved_mean,
                                   saved_inv_std);
  const int64_t batch = x.size(0), channels = x.size(1), plane = x.size(2) * x.size(3);
  const float* in = x.data();
  float* out = y.data();
  parallel_for(0, channels, 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      float mean, inv_std;
      if (params.training) {
        double batch_mean, m2;
        detail::channel_moments(in, batch, channels, plane, c, batch_mean, m2);
        const double count = double(batch * plane);
        const double variance = m2 / count;
        mean = static_cast<float>(batch_mean);
        inv_std = static_cast<float>(1.0 / std::sqrt(variance + double(params.eps)));
        running_mean[c] = math::running_average(running_mean[c], batch_mean, params.momentum);
        running_var[c] = math::running_average(running_var[c], m2 / (count - 1.0), params.momentum);
      } else {
        mean = running_mean[c];
        inv_std = static_cast<float>(1.0 / std::sqrt(double(running_var[c]) + double(params.eps)));
      }
      saved_mean[c] = mean;
      saved_inv_std[c] = inv_std;
      const float g = gamma[c], b = beta[c];
      for (int64_t n = 0; n < batch; ++n) {
        const float* p = in + (n * channels + c) * plane;
        float* q = out + (n * channels + c) * plane;
        for (int64_t i = 0; i < plane; ++i)
          q[i] = math::batch_norm_apply(p[i], mean, inv_std, g, b);
      }
    }
  });
}

inline void batch_norm_backward(const batch_norm_params& params, const tensor<float, cpu>& x,
                                const tensor<float, cpu>& gamma,
                                const tensor<float, cpu>& saved_mean,
                                const tensor<float, cpu>& saved_inv_std,
                                const tensor<float, cpu>& dy, tensor<float, cpu>* dx,
                                tensor<float, cpu>* dgamma, tensor<float, cpu>* dbeta) {
  detail::check_batch_norm_backward(params, x, gamma, saved_mean, saved_inv_std, dy, dx, dgamma,
                                    dbeta);
  if (!dx && !dgamma && !dbeta) return;
  const int64_t batch = x.size(0), channels = x.size(1), plane = x.size(2) * x.size(3);
  const float *in = x.data(), *grad_out = dy.data();
  parallel_for(0, channels, 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      const float mean = saved_mean[c], inv_std = saved_inv_std[c];
      // Sums over the channel: dbeta = sum dy, dgamma = sum dy * xhat.
      double sum_dy = 0, sum_dy_xhat = 0;
      const bool need_sums = dgamma || dbeta || (dx && params.training);
      if (need_sums) {
        for (int64_t n = 0; n < batch; ++n) {
          const float* p = in + (n * channels + c) * plane;
          const float* g = grad_out + (n * channels + c) * plane;
          for (int64_t i = 0; i < plane; ++i) {
            sum_dy += g[i];
            sum_dy_xhat += double(g[i]) * double((p[i] - mean) * inv_std);
          }
        }
      }
      if (dbeta) (*dbeta)[c] += static_cast<float>(sum_dy);
      if (dgamma) (*dgamma)[c] += static_cast<float>(sum_dy_xhat);
      if (!dx) continue;
      const double count = double(batch * plane);
      const float scale = gamma[c] * inv_std;
      const float mean_dy = static_cast<float>(sum_dy / count);
      const float mean_dy_xhat = static_cast<float>(sum_dy_xhat / count);
      float* grad_in = dx->data();
      for (int64_t n = 0; n < batch; ++n) {
        const float* p = in + (n * channels + c) * plane;
        const float* g = grad_out + (n * channels + c) * plane;
        float* d = grad_in + (n * channels + c) * plane;
        for (int64_t i = 0; i < plane; ++i)
          d[i] += math::batch_norm_input_grad(g[i], (p[i] - mean) * inv_std, scale, mean_dy,
                                              mean_dy_xhat, params.training);
      }
    }
  });
}

#ifdef SEGKIT_WITH_CUDA
void batch_norm_forward(const batch_norm_params& params, const tensor<float, cuda>& x,
                        const tensor<float, cuda>& gamma, const tensor<float, cuda>& beta,
                        tensor<float, cuda>& running_mean, tensor<float, cuda>& running_var,
                        tensor<float, cuda>& y, tensor<float, cuda>& saved_mean,
                        tensor<float, cuda>& saved_inv_std);
// Needs scratch only when dx, dgamma or dbeta is nullptr in training mode (cuDNN writes all
// three); it comes from the shared cuda workspace.
void batch_norm_backward(const batch_norm_params& params, const tensor<float, cuda>& x,
                         const tensor<float, cuda>& gamma, const tensor<float, cuda>& saved_mean,
                         const tensor<float, cuda>& saved_inv_std, const tensor<float, cuda>& dy,
                         tensor<float, cuda>* dx, tensor<float, cuda>* dgamma,
                         tensor<float, cuda>* dbeta);
#endif

}  // namespace segkit::ops
