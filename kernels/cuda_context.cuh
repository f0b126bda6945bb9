// kernels/cuda_context.cuh — per-thread cuBLAS and cuDNN handles, the stream segkit's
// kernels run on, and the one shared workspace that cuBLAS and every cuDNN call reuse.
// Why one workspace: per-layer cuDNN workspaces ran dlib's users out of memory (dlib issues
// 322, 695); a single buffer grown to the largest request costs one allocation in total.
#pragma once
#include <string>

#include <cublas_v2.h>
#include <cudnn.h>

#include "launch.cuh"
#include "segkit/tensor/workspace.hpp"

namespace segkit::cuda_detail {

inline void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw cuda_error(std::string(what) + " failed with cuBLAS status " +
                     std::to_string(static_cast<int>(status)));
}
inline void check_cudnn(cudnnStatus_t status, const char* what) {
  if (status != CUDNN_STATUS_SUCCESS)
    throw cuda_error(std::string(what) + " failed: " + cudnnGetErrorString(status));
}

class cuda_context {
 public:
  cuda_context() {
    // A throwing constructor runs no destructor: release whatever was created before rethrowing.
    try {
      check_cublas(cublasCreate(&cublas_), "cublasCreate");
      check_cudnn(cudnnCreate(&cudnn_), "cudnnCreate");
      check_cublas(cublasSetStream(cublas_, stream_), "cublasSetStream");
      check_cudnn(cudnnSetStream(cudnn_, stream_), "cudnnSetStream");
    } catch (...) {
      release();
      throw;
    }
  }
  ~cuda_context() { release(); }
  cuda_context(const cuda_context&) = delete;
  cuda_context& operator=(const cuda_context&) = delete;

  cublasHandle_t cublas() { return cublas_; }
  cudnnHandle_t cudnn() { return cudnn_; }
  cudaStream_t stream() const { return stream_; }
  segkit::workspace<segkit::cuda>& workspace() { return segkit::default_workspace<segkit::cuda>(); }

 private:
  void release() {
    if (cudnn_) cudnnDestroy(cudnn_);
    if (cublas_) cublasDestroy(cublas_);
    cudnn_ = nullptr;
    cublas_ = nullptr;
  }

  cublasHandle_t cublas_ = nullptr;
  cudnnHandle_t cudnn_ = nullptr;
  cudaStream_t stream_ = nullptr;  // the legacy default stream: ordered with cudaMemcpy
};

inline cuda_context& context() {
  thread_local cuda_context shared;
  return shared;
}

}  // namespace segkit::cuda_detail
