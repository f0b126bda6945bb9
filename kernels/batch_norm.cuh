// kernels/batch_norm.cuh — CUDA path of ops/batch_norm.hpp.
// Training forward, eval forward and training backward go to cuDNN's spatial batch norm
// (CUDNN_BATCHNORM_SPATIAL): cuDNN keeps its running variance with the unbiased estimate and
// updates it with exponentialAverageFactor = momentum, which is exactly PyTorch's convention
// (PyTorch itself calls these functions), and its saved "inverse variance" is 1/sqrt(var+eps),
// our saved_inv_std. Backward adds through cuDNN's blend factors: beta = 1 for dx and, for
// dgamma/dbeta, the separate param-diff beta = 1. Eval mode has no cuDNN backward (cuDNN's
// backward always differentiates through batch statistics), so it runs the small kernels
// below with the same math as the CPU loop.
#pragma once
#include <climits>

#include "cuda_context.cuh"
#include "segkit/ops/batch_norm.hpp"

namespace segkit::ops {
namespace cuda_kernels {

constexpr int batch_norm_reduce_threads = 256;

// saved_mean / saved_inv_std from the running statistics (eval forward).
__global__ void batch_norm_eval_stats_kernel(const float* running_mean, const float* running_var,
                                             float* saved_mean, float* saved_inv_std,
                                             int64_t channels, float eps) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < channels;
       c += int64_t(gridDim.x) * blockDim.x) {
    saved_mean[c] = running_mean[c];
    saved_inv_std[c] = static_cast<float>(1.0 / sqrt(double(running_var[c]) + double(eps)));
  }
}

// One block per channel: dbeta += sum dy, dgamma += sum dy * xhat, accumulated in double.
__global__ void batch_norm_channel_sums_kernel(const float* x, const float* dy, const float* mean,
                                               const float* inv_std, int64_t batch,
                                               int64_t channels, int64_t plane, float* dgamma,
                                               float* dbeta) {
  __shared__ double shared_dy[batch_norm_reduce_threads];
  __shared__ double shared_dy_xhat[batch_norm_reduce_threads];
  const int64_t c = blockIdx.x;
  const float m = mean[c], s = inv_std[c];
  double sum_dy = 0, sum_dy_xhat = 0;
  for (int64_t i = threadIdx.x; i < batch * plane; i += blockDim.x) {
    const int64_t index = ((i / plane) * channels + c) * plane + i % plane;
    sum_dy += dy[index];
    sum_dy_xhat += double(dy[index]) * double((x[index] - m) * s);
  }
  shared_dy[threadIdx.x] = sum_dy;
  shared_dy_xhat[threadIdx.x] = sum_dy_xhat;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) {
      shared_dy[threadIdx.x] += shared_dy[threadIdx.x + half];
      shared_dy_xhat[threadIdx.x] += shared_dy_xhat[threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    if (dbeta) dbeta[c] += static_cast<float>(shared_dy[0]);
    if (dgamma) dgamma[c] += static_cast<float>(shared_dy_xhat[0]);
  }
}

// Eval-mode dx += dy * gamma * inv_std.
__global__ void batch_norm_eval_input_grad_kernel(const float* dy, const float* gamma,
                                                  const float* inv_std, float* dx, int64_t count,
                                                  int64_t channels, int64_t plane) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (i / plane) % channels;
    dx[i] += math::batch_norm_input_grad(dy[i], 0.f, gamma[c] * inv_std[c], 0.f, 0.f, false);
  }
}

// A cuDNN tensor descriptor that destroys itself.
class batch_norm_descriptor {
 public:
  batch_norm_descriptor() {
    cuda_detail::check_cudnn(cudnnCreateTensorDescriptor(&desc_), "cudnnCreateTensorDescriptor");
  }
  ~batch_norm_descriptor() { cudnnDestroyTensorDescriptor(desc_); }
  batch_norm_descriptor(const batch_norm_descriptor&) = delete;
  batch_norm_descriptor& operator=(const batch_norm_descriptor&) = delete;
  cudnnTensorDescriptor_t get() const { return desc_; }

 private:
  cudnnTensorDescriptor_t desc_ = nullptr;
};

inline int batch_norm_int(int64_t value, const char* what) {
  require<cuda_error>(value >= 0 && value <= INT_MAX, "batch_norm (cuDNN): ", what, " = ", value,
                      " does not fit in int");
  return static_cast<int>(value);
}

// The x descriptor (NCHW float) and the derived [1, C, 1, 1] statistics descriptor.
struct batch_norm_descriptors {
  batch_norm_descriptor data, channel;
  explicit batch_norm_descriptors(const shape& x) {
    cuda_detail::check_cudnn(
        cudnnSetTensor4dDescriptor(data.get(), CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                   batch_norm_int(x[0], "N"), batch_norm_int(x[1], "C"),
                                   batch_norm_int(x[2], "H"), batch_norm_int(x[3], "W")),
        "cudnnSetTensor4dDescriptor");
    cuda_detail::check_cudnn(
        cudnnDeriveBNTensorDescriptor(channel.get(), data.get(), CUDNN_BATCHNORM_SPATIAL),
        "cudnnDeriveBNTensorDescriptor");
  }
};

}  // namespace cuda_kernels

void batch_norm_forward(const batch_norm_params& params, const tensor<float, cuda>& x,
                        const tensor<float, cuda>& gamma, const tensor<float, cuda>& beta,
                        tensor<float, cuda>& running_mean, tensor<float, cuda>& running_var,
                        tensor<float, cuda>& y, tensor<float, cuda>& saved_mean,
                        tensor<float, cuda>& saved_inv_std) {
  detail::check_batch_norm_forward(params, x, gamma, beta, running_mean, running_var, y, saved_mean,
                                   saved_inv_std);
  const int64_t channels = x.size(1);
  if (channels == 0) return;
  if (x.empty()) {  // eval with N*H*W == 0: nothing to normalise, but the saved stats exist
    SEGKIT_LAUNCH(cuda_kernels::batch_norm_eval_stats_kernel, cuda_detail::blocks_for(channels),
                  cuda_detail::threads_per_block, 0, cuda_detail::context().stream(),
                  running_mean.data(), running_var.data(), saved_mean.data(), saved_inv_std.data(),
                  channels, params.eps);
    return;
  }
  const cuda_kernels::batch_norm_descriptors desc(x.shape());
  cudnnHandle_t handle = cuda_detail::context().cudnn();
  const float one = 1.f, zero = 0.f;
  if (params.training) {
    cuda_detail::check_cudnn(
        cudnnBatchNormalizationForwardTraining(
            handle, CUDNN_BATCHNORM_SPATIAL, &one, &zero, desc.data.get(), x.data(),
            desc.data.get(), y.data(), desc.channel.get(), gamma.data(), beta.data(),
            double(params.momentum), running_mean.data(), running_var.data(), double(params.eps),
            saved_mean.data(), saved_inv_std.data()),
        "cudnnBatchNormalizationForwardTraining");
  } else {
    cuda_detail::check_cudnn(
        cudnnBatchNormalizationForwardInference(
            handle, CUDNN_BATCHNORM_SPATIAL, &one, &zero, desc.data.get(), x.data(),
            desc.data.get(), y.data(), desc.channel.get(), gamma.data(), beta.data(),
            running_mean.data(), running_var.data(), double(params.eps)),
        "cudnnBatchNormalizationForwardInference");
    SEGKIT_LAUNCH(cuda_kernels::batch_norm_eval_stats_kernel, cuda_detail::blocks_for(channels),
                  cuda_detail::threads_per_block, 0, cuda_detail::context().stream(),
                  running_mean.data(), running_var.data(), saved_mean.data(), saved_inv_std.data(),
                  channels, params.eps);
  }
}

void batch_norm_backward(const batch_norm_params& params, const tensor<float, cuda>& x,
                         const tensor<float, cuda>& gamma, const tensor<float, cuda>& saved_mean,
                         const tensor<float, cuda>& saved_inv_std, const tensor<float, cuda>& dy,
                         tensor<float, cuda>* dx, tensor<float, cuda>* dgamma,
                         tensor<float, cuda>* dbeta) {
  detail::check_batch_norm_backward(params, x, gamma, saved_mean, saved_inv_std, dy, dx, dgamma,
                                    dbeta);
  if ((!dx && !dgamma && !dbeta) || x.empty()) return;
  const int64_t batch = x.size(0), channels = x.size(1), plane = x.size(2) * x.size(3);
  cudaStream_t stream = cuda_detail::context().stream();
  if (!params.training) {
    if (dgamma || dbeta)
      SEGKIT_LAUNCH(cuda_kernels::batch_norm_channel_sums_kernel, static_cast<unsigned>(channels),
                    cuda_kernels::batch_norm_reduce_threads, 0, stream, x.data(), dy.data(),
                    saved_mean.data(), saved_inv_std.data(), batch, channels, plane,
                    dgamma ? dgamma->data() : nullptr, dbeta ? dbeta->data() : nullptr);
    if (dx)
      SEGKIT_LAUNCH(cuda_kernels::batch_norm_eval_input_grad_kernel,
                    cuda_detail::blocks_for(x.numel()), cuda_detail::threads_per_block, 0, stream,
                    dy.data(), gamma.data(), saved_inv_std.data(), dx->data(), x.numel(), channels,
                    plane);
    return;
  }
  // cuDNN writes dx, dgamma and dbeta together: the unwanted ones go to scratch, one block.
  const size_t scratch_x = dx ? 0 : static_cast<size_t>(x.numel());
  const size_t scratch_c = static_cast<size_t>(channels) * ((dgamma ? 0 : 1) + (dbeta ? 0 : 1));
  float* scratch =
      (scratch_x + scratch_c) == 0
          ? nullptr
          : cuda_detail::context().workspace().reserve_elements<float>(scratch_x + scratch_c);
  float* next = scratch;
  auto take = [&next](size_t count) {
    float* p = next;
    next += count;
    return p;
  };
  float* grad_x = dx ? dx->data() : take(scratch_x);
  float* grad_gamma = dgamma ? dgamma->data() : take(static_cast<size_t>(channels));
  float* grad_beta = dbeta ? dbeta->data() : take(static_cast<size_t>(channels));
  const cuda_kernels::batch_norm_descriptors desc(x.shape());
  const float one = 1.f, zero = 0.f;
  // Blend factor 1 adds into the caller's gradients. The scratch for an unwanted gradient
  // is discarded afterwards, so what cuDNN blends into it does not matter; dx scratch uses 0
  // anyway (no reading of stale memory where it is cheap to avoid).
  const float* data_beta = dx ? &one : &zero;
  cuda_detail::check_cudnn(
      cudnnBatchNormalizationBackward(cuda_detail::context().cudnn(), CUDNN_BATCHNORM_SPATIAL, &one,
                                      data_beta, &one, &one, desc.data.get(), x.data(),
                                      desc.data.get(), dy.data(), desc.data.get(), grad_x,
                                      desc.channel.get(), gamma.data(), grad_gamma, grad_beta,
                                      double(params.eps), saved_mean.data(), saved_inv_std.data()),
      "cudnnBatchNormalizationBackward");
}

}  // namespace segkit::ops
