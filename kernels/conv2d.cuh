// kernels/conv2d.cuh — CUDA path of ops/conv2d.hpp through cuDNN.
// Algorithms come from cudnnGet*Algorithm_v7 (heuristics, no trial allocations) once per shape
// and are cached per thread; every call takes its scratch from the one shared cuda workspace.
// Math is CUDNN_FMA_MATH: plain FP32, no TF32 tensor cores, so results match the CPU path to
// FP32 rounding. Backward adds through cuDNN's beta = 1.
#pragma once
#include <array>
#include <map>

#include "cuda_context.cuh"
#include "segkit/ops/conv2d.hpp"

namespace segkit::ops {
namespace cuda_detail_conv2d {
using segkit::cuda_detail::check_cudnn;

// RAII descriptors for one call.
struct conv_descriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;

  conv_descriptors(const conv2d_params& p, const detail::conv2d_geometry& g) {
    check_cudnn(cudnnCreateTensorDescriptor(&x), "cudnnCreateTensorDescriptor");
    check_cudnn(cudnnCreateTensorDescriptor(&y), "cudnnCreateTensorDescriptor");
    check_cudnn(cudnnCreateTensorDescriptor(&bias), "cudnnCreateTensorDescriptor");
    check_cudnn(cudnnCreateFilterDescriptor(&w), "cudnnCreateFilterDescriptor");
    check_cudnn(cudnnCreateConvolutionDescriptor(&conv), "cudnnCreateConvolutionDescriptor");
    check_cudnn(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, int(g.n),
                                           int(g.c), int(g.h), int(g.w)),
                "cudnnSetTensor4dDescriptor(x)");
    check_cudnn(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, int(g.n),
                                           int(g.co), int(g.ho), int(g.wo)),
                "cudnnSetTensor4dDescriptor(y)");
    check_cudnn(cudnnSetTensor4dDescriptor(bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1,
                                           int(g.co), 1, 1),
                "cudnnSetTensor4dDescriptor(bias)");
    check_cudnn(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, int(g.co),
                                           int(g.cg), int(g.kh), int(g.kw)),
                "cudnnSetFilter4dDescriptor");
    check_cudnn(cudnnSetConvolution2dDescriptor(conv, int(p.pad_h), int(p.pad_w),
                                                int(p.stride_h), int(p.stride_w),
                                                int(p.dilation_h), int(p.dilation_w),
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                "cudnnSetConvolution2dDescriptor");
    check_cudnn(cudnnSetConvolutionGroupCount(conv, int(g.groups)),
                "cudnnSetConvolutionGroupCount");
    check_cudnn(cudnnSetConvolutionMathType(conv, CUDNN_FMA_MATH), "cudnnSetConvolutionMathType");
  }
  ~conv_descriptors() {
    cudnnDestroyConvolutionDescriptor(conv);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyTensorDescriptor(bias);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyTensorDescriptor(x);
  }
  conv_descriptors(const conv_descriptors&) = delete;
  conv_descriptors& operator=(const conv_descriptors&) = delete;
};

struct algorithms {
  cudnnConvolutionFwdAlgo_t forward;
  cudnnConvolutionBwdDataAlgo_t backward_data;
  cudnnConvolutionBwdFilterAlgo_t backward_filter;
};

// The first algorithm cuDNN's heuristics rank as working.
template <class Perf>
auto first_working(const Perf* results, int count, const char* what) {
  for (int i = 0; i < count; ++i)
    if (results[i].status == CUDNN_STATUS_SUCCESS) return results[i].algo;
  throw cuda_error(std::string("cuDNN offers no working ") + what + " algorithm for this shape");
}

inline algorithms choose(const conv_descriptors& d, const conv2d_params& p,
                         const detail::conv2d_geometry& g) {
  using key_type = std::array<int64_t, 14>;
  thread_local std::map<key_type, algorithms> cache;
  const key_type key{g.n, g.c, g.h, g.w, g.co, g.kh, g.kw, g.groups, p.stride_h, p.stride_w,
                     p.pad_h, p.pad_w, p.dilation_h, p.dilation_w};
  const auto found = cache.find(key);
  if (found != cache.end()) return found->second;
  cudnnHandle_t handle = segkit::cuda_detail::context().cudnn();
  constexpr int max_results = 16;
  int count = 0;
  algorithms chosen{};
  cudnnConvolutionFwdAlgoPerf_t fwd[max_results];
  check_cudnn(cudnnGetConvolutionForwardAlgorithm_v7(handle, d.x, d.w, d.conv, d.y, max_results,
                                                     &count, fwd),
              "cudnnGetConvolutionForwardAlgorithm_v7");
  chosen.forward = first_working(fwd, count, "forward");
  cudnnConvolutionBwdDataAlgoPerf_t data[max_results];
  check_cudnn(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, d.w, d.y, d.conv, d.x,
                                                          max_results, &count, data),
              "cudnnGetConvolutionBackwardDataAlgorithm_v7");
  chosen.backward_data = first_working(data, count, "backward-data");
  cudnnConvolutionBwdFilterAlgoPerf_t filter[max_results];
  check_cudnn(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, d.x, d.y, d.conv, d.w,
                                                            max_results, &count, filter),
              "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
  chosen.backward_filter = first_working(filter, count, "backward-filter");
  cache.emplace(key, chosen);
  return chosen;
}

inline void check_int_sizes(const detail::conv2d_geometry& g) {
  for (int64_t v : {g.n, g.c, g.h, g.w, g.co, g.kh, g.kw, g.ho, g.wo})
    require<cuda_error>(v <= INT32_MAX, "conv2d (cuDNN): extent ", v, " does not fit in int");
}
}  // namespace cuda_detail_conv2d

void conv2d_forward(const conv2d_params& params, const tensor<float, cuda>& x,
                    const tensor<float, cuda>& w, const tensor<float, cuda>* bias,
                    tensor<float, cuda>& y, workspace<cuda>* ws) {
  using namespace cuda_detail_conv2d;
  const auto g = detail::conv2d_check_forward(params, x, w, bias, y);
  add_macs(detail::conv2d_macs(g));
  if (y.empty()) return;
  if (x.empty()) {  // no input channels or pixels: the output is the bias alone
    y.zero();
  }
  check_int_sizes(g);
  conv_descriptors d(params, g);
  const algorithms algo = choose(d, params, g);
  cudnnHandle_t handle = segkit::cuda_detail::context().cudnn();
  const float one = 1.f, zero = 0.f;
  if (!x.empty()) {
    size_t bytes = 0;
    check_cudnn(cudnnGetConvolutionForwardWorkspaceSize(handle, d.x, d.w, d.conv, d.y,
                                                        algo.forward, &bytes),
                "cudnnGetConvolutionForwardWorkspaceSize");
    auto& scratch = ws ? *ws : segkit::cuda_detail::context().workspace();
    void* space = bytes ? scratch.reserve(bytes) : nullptr;
    check_cudnn(cudnnConvolutionForward(handle, &one, d.x, x.data(), d.w, w.data(), d.conv,
                                        algo.forward, space, bytes, &zero, d.y, y.data()),
                "cudnnConvolutionForward");
  }
  if (bias)
    check_cudnn(cudnnAddTensor(handle, &one, d.bias, bias->data(), &one, d.y, y.data()),
                "cudnnAddTensor(bias)");
}

void conv2d_backward(const conv2d_params& params, const tensor<float, cuda>& x,
                     const tensor<float, cuda>& w, const tensor<float, cuda>& dy,
                     tensor<float, cuda>* dx, tensor<float, cuda>* dw,
                     tensor<float, cuda>* dbias, workspace<cuda>* ws) {
  using namespace cuda_detail_conv2d;
  const auto g = detail::conv2d_check_backward(params, x, w, dy, dx, dw, dbias);
  if (dy.empty()) return;
  check_int_sizes(g);
  conv_descriptors d(params, g);
  cudnnHandle_t handle = segkit::cuda_detail::context().cudnn();
  const float one = 1.f;  // alpha = 1 and beta = 1: cuDNN adds into the existing gradients
  if (dbias)
    check_cudnn(cudnnConvolutionBackwardBias(handle, &one, d.y, dy.data(), &one, d.bias,
                                             dbias->data()),
                "cudnnConvolutionBackwardBias");
  if ((!dx && !dw) || x.empty()) return;
  const algorithms algo = choose(d, params, g);
  auto& scratch = ws ? *ws : segkit::cuda_detail::context().workspace();
  if (dx) {
    size_t bytes = 0;
    check_cudnn(cudnnGetConvolutionBackwardDataWorkspaceSize(handle, d.w, d.y, d.conv, d.x,
                                                             algo.backward_data, &bytes),
                "cudnnGetConvolutionBackwardDataWorkspaceSize");
    void* space = bytes ? scratch.reserve(bytes) : nullptr;
    check_cudnn(cudnnConvolutionBackwardData(handle, &one, d.w, w.data(), d.y, dy.data(), d.conv,
                                             algo.backward_data, space, bytes, &one, d.x,
                                             dx->data()),
                "cudnnConvolutionBackwardData");
  }
  if (dw) {
    size_t bytes = 0;
    check_cudnn(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, d.x, d.y, d.conv, d.w,
                                                               algo.backward_filter, &bytes),
                "cudnnGetConvolutionBackwardFilterWorkspaceSize");
    void* space = bytes ? scratch.reserve(bytes) : nullptr;
    check_cudnn(cudnnConvolutionBackwardFilter(handle, &one, d.x, x.data(), d.y, dy.data(),
                                               d.conv, algo.backward_filter, space, bytes, &one,
                                               d.w, dw->data()),
                "cudnnConvolutionBackwardFilter");
  }
}

}  // namespace segkit::ops
