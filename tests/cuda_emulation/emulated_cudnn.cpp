// tests/cuda_emulation/emulated_cudnn.cpp — cuDNN for the CUDA emulator: the descriptors,
// convolutions and batch norms segkit calls, computed on the CPU as cuDNN documents them, with
// every operand checked to lie inside device memory.
#include <cmath>
#include <string>
#include <vector>

#include "emulated_device_memory.hpp"

using segkit_emulation::fail;
using segkit_emulation::inside_allocation;

// ---- cuDNN: descriptors, convolution and batch norm (NCHW float) ----------------------------
// Where cuDNN documents a check (shapes that do not match the convolution's output size, a
// workspace smaller than it asked for), the emulator makes it and returns CUDNN_STATUS_BAD_PARAM.
// Sums are in double; alpha and beta blend as documented (beta = 0: the output is not read).
struct cudnnTensorStruct {
  int n = 0, c = 0, h = 0, w = 0;
};
struct cudnnFilterStruct {
  int k = 0, c = 0, h = 0, w = 0;
};
struct cudnnConvolutionStruct {
  int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  int groups = 1;
};

namespace {
int cudnn_handle_storage;
constexpr size_t conv_workspace_bytes = 256;  // asked for, so segkit's workspace path runs

cudnnStatus_t bad_param(const std::string& why) {
  fail(cudaErrorInvalidValue, "cuDNN: " + why);
  return CUDNN_STATUS_BAD_PARAM;
}

size_t elements(const cudnnTensorStruct& t) {
  return size_t(t.n) * t.c * t.h * t.w;
}

bool on_device(const void* pointer, size_t floats) {
  return floats == 0 || inside_allocation(pointer, floats * sizeof(float));
}

float blend(double alpha, double computed, double beta, const float& old) {
  return float(beta == 0 ? alpha * computed : alpha * computed + beta * double(old));
}

int output_extent(int in, int pad, int kernel, int dilation, int stride) {
  return (in + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
}

// x, w and y agree with the convolution (cudnnGetConvolution2dForwardOutputDim's sizes).
bool conv_shapes_agree(const cudnnTensorStruct& x, const cudnnFilterStruct& w,
                       const cudnnConvolutionStruct& c, const cudnnTensorStruct& y) {
  return x.c == w.c * c.groups && w.k % c.groups == 0 && y.n == x.n && y.c == w.k &&
         y.h == output_extent(x.h, c.pad_h, w.h, c.dilation_h, c.stride_h) &&
         y.w == output_extent(x.w, c.pad_w, w.w, c.dilation_w, c.stride_w);
}

// Calls visit(x_index, w_index, y_index) for every product of the convolution.
template <class Visit>
void for_each_conv_product(const cudnnTensorStruct& x, const cudnnFilterStruct& w,
                           const cudnnConvolutionStruct& c, const cudnnTensorStruct& y,
                           Visit visit) {
  const int out_per_group = w.k / c.groups;
  for (int n = 0; n < y.n; ++n)
    for (int o = 0; o < y.c; ++o)
      for (int oy = 0; oy < y.h; ++oy)
        for (int ox = 0; ox < y.w; ++ox) {
          const size_t yi = ((size_t(n) * y.c + o) * y.h + oy) * y.w + ox;
          for (int i = 0; i < w.c; ++i) {
            const int channel = o / out_per_group * w.c + i;
            for (int ky = 0; ky < w.h; ++ky) {
              const int iy = oy * c.stride_h - c.pad_h + ky * c.dilation_h;
              if (iy < 0 || iy >= x.h) continue;
              for (int kx = 0; kx < w.w; ++kx) {
                const int ix = ox * c.stride_w - c.pad_w + kx * c.dilation_w;
                if (ix < 0 || ix >= x.w) continue;
                visit(((size_t(n) * x.c + channel) * x.h + iy) * x.w + ix,
                      ((size_t(o) * w.c + i) * w.h + ky) * w.w + kx, yi);
              }
            }
          }
        }
}

cudnnStatus_t check_conv_call(const cudnnTensorStruct* x, const cudnnFilterStruct* w,
                              const cudnnConvolutionStruct* c, const cudnnTensorStruct* y,
                              const void* workspace, size_t workspace_bytes, const char* call) {
  if (!conv_shapes_agree(*x, *w, *c, *y))
    return bad_param(std::string(call) + ": x, w and y do not agree with the convolution");
  if (workspace_bytes < conv_workspace_bytes || !inside_allocation(workspace, workspace_bytes))
    return bad_param(std::string(call) + ": the workspace is smaller than asked for");
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t outside(const char* call) {
  fail(cudaErrorInvalidValue,
       std::string("cuDNN: ") + call + ": an operand lies outside device memory");
  return CUDNN_STATUS_EXECUTION_FAILED;
}

template <class Perf>
cudnnStatus_t one_algorithm(int requested, int* returned, Perf* results) {
  if (requested < 1) return bad_param("an algorithm query asked for fewer than one result");
  *returned = 1;
  results[0] = Perf{};
  results[0].algo = decltype(results[0].algo)(0);
  results[0].status = CUDNN_STATUS_SUCCESS;
  results[0].memory = conv_workspace_bytes;
  return CUDNN_STATUS_SUCCESS;
}
}  // namespace

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  *handle = reinterpret_cast<cudnnHandle_t>(&cudnn_handle_storage);
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t) {
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t, cudaStream_t) {
  return CUDNN_STATUS_SUCCESS;
}
const char* cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    default: return "CUDNN_STATUS_EXECUTION_FAILED";
  }
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* d) {
  *d = new cudnnTensorStruct;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* d) {
  *d = new cudnnFilterStruct;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* d) {
  *d = new cudnnConvolutionStruct;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format,
                                         cudnnDataType_t type, int n, int c, int h, int w) {
  if (format != CUDNN_TENSOR_NCHW || type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return bad_param("a tensor extent is not positive");
  *d = {n, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t type,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w) {
  if (format != CUDNN_TENSOR_NCHW || type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  if (k <= 0 || c <= 0 || h <= 0 || w <= 0) return bad_param("a filter extent is not positive");
  *d = {k, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w,
                                              int stride_h, int stride_w, int dilation_h,
                                              int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t type) {
  if (mode != CUDNN_CROSS_CORRELATION || type != CUDNN_DATA_FLOAT)
    return CUDNN_STATUS_NOT_SUPPORTED;
  if (pad_h < 0 || pad_w < 0 || stride_h <= 0 || stride_w <= 0 || dilation_h <= 0 ||
      dilation_w <= 0)
    return bad_param("a padding, stride or dilation is out of range");
  d->pad_h = pad_h, d->pad_w = pad_w, d->stride_h = stride_h, d->stride_w = stride_w;
  d->dilation_h = dilation_h, d->dilation_w = dilation_w;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groups) {
  if (groups <= 0) return bad_param("the group count is not positive");
  d->groups = groups;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t, cudnnMathType_t) {
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t, const cudnnTensorDescriptor_t x,
                                                     const cudnnFilterDescriptor_t w,
                                                     const cudnnConvolutionDescriptor_t c,
                                                     const cudnnTensorDescriptor_t y, int requested,
                                                     int* returned,
                                                     cudnnConvolutionFwdAlgoPerf_t* results) {
  if (!conv_shapes_agree(*x, *w, *c, *y))
    return bad_param("forward algorithm query: shapes disagree");
  return one_algorithm(requested, returned, results);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t, const cudnnFilterDescriptor_t w, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t c, const cudnnTensorDescriptor_t dx, int requested,
    int* returned, cudnnConvolutionBwdDataAlgoPerf_t* results) {
  if (!conv_shapes_agree(*dx, *w, *c, *dy))
    return bad_param("backward-data query: shapes disagree");
  return one_algorithm(requested, returned, results);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t, const cudnnTensorDescriptor_t x, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t c, const cudnnFilterDescriptor_t dw, int requested,
    int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* results) {
  if (!conv_shapes_agree(*x, *dw, *c, *dy))
    return bad_param("backward-filter query: shapes disagree");
  return one_algorithm(requested, returned, results);
}
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t, const cudnnTensorDescriptor_t,
                                                      const cudnnFilterDescriptor_t,
                                                      const cudnnConvolutionDescriptor_t,
                                                      const cudnnTensorDescriptor_t,
                                                      cudnnConvolutionFwdAlgo_t, size_t* bytes) {
  *bytes = conv_workspace_bytes;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t, const cudnnFilterDescriptor_t, const cudnnTensorDescriptor_t,
    const cudnnConvolutionDescriptor_t, const cudnnTensorDescriptor_t,
    cudnnConvolutionBwdDataAlgo_t, size_t* bytes) {
  *bytes = conv_workspace_bytes;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t, const cudnnTensorDescriptor_t, const cudnnTensorDescriptor_t,
    const cudnnConvolutionDescriptor_t, const cudnnFilterDescriptor_t,
    cudnnConvolutionBwdFilterAlgo_t, size_t* bytes) {
  *bytes = conv_workspace_bytes;
  return CUDNN_STATUS_SUCCESS;
}

namespace {
// The three convolution calls: check, then out = alpha * sum + beta * out, where
// add(sum, x_index, w_index, y_index) adds one product of the convolution into `sum`, which
// has out's extent.
template <class Add>
cudnnStatus_t convolution_call(const char* call, const cudnnTensorStruct* xd, const void* x,
                               const cudnnFilterStruct* wd, const void* w,
                               const cudnnConvolutionStruct* cd, const cudnnTensorStruct* yd,
                               const void* y, void* out, size_t out_count, const void* workspace,
                               size_t workspace_bytes, const void* alpha, const void* beta,
                               Add add) {
  if (auto status = check_conv_call(xd, wd, cd, yd, workspace, workspace_bytes, call))
    return status;
  const size_t w_count = size_t(wd->k) * wd->c * wd->h * wd->w;
  if (!on_device(x, elements(*xd)) || !on_device(w, w_count) || !on_device(y, elements(*yd)))
    return outside(call);
  segkit_emulation::device_access access{x, w, y};
  std::vector<double> sum(out_count, 0.0);
  for_each_conv_product(*xd, *wd, *cd, *yd,
                        [&](size_t xi, size_t wi, size_t yi) { add(sum, xi, wi, yi); });
  auto* result = static_cast<float*>(out);
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  for (size_t i = 0; i < out_count; ++i) result[i] = blend(a, sum[i], b, result[i]);
  return CUDNN_STATUS_SUCCESS;
}
}  // namespace

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t, const void* alpha,
                                      const cudnnTensorDescriptor_t xd, const void* x,
                                      const cudnnFilterDescriptor_t wd, const void* w,
                                      const cudnnConvolutionDescriptor_t cd,
                                      cudnnConvolutionFwdAlgo_t, void* workspace,
                                      size_t workspace_bytes, const void* beta,
                                      const cudnnTensorDescriptor_t yd, void* y) {
  const auto* xs = static_cast<const float*>(x);
  const auto* ws = static_cast<const float*>(w);
  return convolution_call("cudnnConvolutionForward", xd, x, wd, w, cd, yd, y, y, elements(*yd),
                          workspace, workspace_bytes, alpha, beta,
                          [&](std::vector<double>& sum, size_t xi, size_t wi, size_t yi) {
                            sum[yi] += double(xs[xi]) * ws[wi];
                          });
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t, const void* alpha,
                                           const cudnnFilterDescriptor_t wd, const void* w,
                                           const cudnnTensorDescriptor_t dyd, const void* dy,
                                           const cudnnConvolutionDescriptor_t cd,
                                           cudnnConvolutionBwdDataAlgo_t, void* workspace,
                                           size_t workspace_bytes, const void* beta,
                                           const cudnnTensorDescriptor_t dxd, void* dx) {
  const auto* ws = static_cast<const float*>(w);
  const auto* dys = static_cast<const float*>(dy);
  return convolution_call("cudnnConvolutionBackwardData", dxd, dx, wd, w, cd, dyd, dy, dx,
                          elements(*dxd), workspace, workspace_bytes, alpha, beta,
                          [&](std::vector<double>& sum, size_t xi, size_t wi, size_t yi) {
                            sum[xi] += double(dys[yi]) * ws[wi];
                          });
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t, const void* alpha,
                                             const cudnnTensorDescriptor_t xd, const void* x,
                                             const cudnnTensorDescriptor_t dyd, const void* dy,
                                             const cudnnConvolutionDescriptor_t cd,
                                             cudnnConvolutionBwdFilterAlgo_t, void* workspace,
                                             size_t workspace_bytes, const void* beta,
                                             const cudnnFilterDescriptor_t dwd, void* dw) {
  const auto* xs = static_cast<const float*>(x);
  const auto* dys = static_cast<const float*>(dy);
  return convolution_call("cudnnConvolutionBackwardFilter", xd, x, dwd, dw, cd, dyd, dy, dw,
                          size_t(dwd->k) * dwd->c * dwd->h * dwd->w, workspace, workspace_bytes,
                          alpha, beta,
                          [&](std::vector<double>& sum, size_t xi, size_t wi, size_t yi) {
                            sum[wi] += double(dys[yi]) * xs[xi];
                          });
}

// C = alpha A + beta C, A broadcast over every extent where it is 1.
cudnnStatus_t cudnnAddTensor(cudnnHandle_t, const void* alpha, const cudnnTensorDescriptor_t ad,
                             const void* a, const void* beta, const cudnnTensorDescriptor_t cd,
                             void* c) {
  const auto fits = [](int from, int to) { return from == to || from == 1; };
  if (!fits(ad->n, cd->n) || !fits(ad->c, cd->c) || !fits(ad->h, cd->h) || !fits(ad->w, cd->w))
    return bad_param("cudnnAddTensor: A does not broadcast to C");
  if (!on_device(a, elements(*ad)) || !on_device(c, elements(*cd)))
    return outside("cudnnAddTensor");
  segkit_emulation::device_access access{a, c};
  const auto* as = static_cast<const float*>(a);
  auto* cs = static_cast<float*>(c);
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  for (int n = 0; n < cd->n; ++n)
    for (int ch = 0; ch < cd->c; ++ch)
      for (int y = 0; y < cd->h; ++y)
        for (int x = 0; x < cd->w; ++x) {
          const size_t ai = ((size_t(ad->n == 1 ? 0 : n) * ad->c + (ad->c == 1 ? 0 : ch)) * ad->h +
                             (ad->h == 1 ? 0 : y)) *
                                ad->w +
                            (ad->w == 1 ? 0 : x);
          float& out = cs[((size_t(n) * cd->c + ch) * cd->h + y) * cd->w + x];
          out = blend(al, as[ai], be, out);
        }
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardBias(cudnnHandle_t, const void* alpha,
                                           const cudnnTensorDescriptor_t dyd, const void* dy,
                                           const void* beta, const cudnnTensorDescriptor_t dbd,
                                           void* db) {
  if (dbd->n != 1 || dbd->c != dyd->c || dbd->h != 1 || dbd->w != 1)
    return bad_param("cudnnConvolutionBackwardBias: db is not 1 x C x 1 x 1");
  if (!on_device(dy, elements(*dyd)) || !on_device(db, size_t(dbd->c)))
    return outside("cudnnConvolutionBackwardBias");
  segkit_emulation::device_access access{dy, db};
  const auto* dys = static_cast<const float*>(dy);
  auto* dbs = static_cast<float*>(db);
  const size_t plane = size_t(dyd->h) * dyd->w;
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  for (int c = 0; c < dyd->c; ++c) {
    double sum = 0;
    for (int n = 0; n < dyd->n; ++n)
      for (size_t i = 0; i < plane; ++i) sum += dys[(size_t(n) * dyd->c + c) * plane + i];
    dbs[c] = blend(a, sum, b, dbs[c]);
  }
  return CUDNN_STATUS_SUCCESS;
}

// Batch norm, spatial mode: statistics per channel over N x H x W.
namespace {
struct batch_norm_call {
  const cudnnTensorStruct& x;
  size_t plane() const { return size_t(x.h) * x.w; }
  size_t count() const { return size_t(x.n) * plane(); }
  template <class Visit>  // visit(index) for every element of channel c
  void for_channel(int c, Visit visit) const {
    for (int n = 0; n < x.n; ++n)
      for (size_t i = 0; i < plane(); ++i) visit((size_t(n) * x.c + c) * plane() + i);
  }
  struct moments {
    double mean, squares, inv_std;  // squares: the sum of squared deviations from the mean
  };
  // Channel c's batch statistics, in two passes.
  moments moments_of(int c, const float* xs, double epsilon) const {
    const double m = double(count());
    double sum = 0, squares = 0;
    for_channel(c, [&](size_t i) { sum += xs[i]; });
    const double mean = sum / m;
    for_channel(c, [&](size_t i) { squares += (xs[i] - mean) * (xs[i] - mean); });
    return {mean, squares, 1.0 / std::sqrt(squares / m + epsilon)};
  }
};

cudnnStatus_t check_batch_norm(cudnnBatchNormMode_t mode, const cudnnTensorStruct& x,
                               const cudnnTensorStruct& y, const cudnnTensorStruct& channel,
                               double epsilon, const char* call) {
  if (mode != CUDNN_BATCHNORM_SPATIAL) return CUDNN_STATUS_NOT_SUPPORTED;
  if (x.n != y.n || x.c != y.c || x.h != y.h || x.w != y.w)
    return bad_param(std::string(call) + ": x and y differ in shape");
  if (channel.n != 1 || channel.c != x.c || channel.h != 1 || channel.w != 1)
    return bad_param(std::string(call) + ": the statistics are not 1 x C x 1 x 1");
  if (epsilon < CUDNN_BN_MIN_EPSILON) return bad_param(std::string(call) + ": epsilon too small");
  return CUDNN_STATUS_SUCCESS;
}
}  // namespace

cudnnStatus_t cudnnDeriveBNTensorDescriptor(cudnnTensorDescriptor_t derived,
                                            const cudnnTensorDescriptor_t x,
                                            cudnnBatchNormMode_t mode) {
  if (mode != CUDNN_BATCHNORM_SPATIAL) return CUDNN_STATUS_NOT_SUPPORTED;
  *derived = {1, x->c, 1, 1};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBatchNormalizationForwardTraining(
    cudnnHandle_t, cudnnBatchNormMode_t mode, const void* alpha, const void* beta,
    const cudnnTensorDescriptor_t xd, const void* x, const cudnnTensorDescriptor_t yd, void* y,
    const cudnnTensorDescriptor_t cd, const void* scale, const void* bias, double factor,
    void* running_mean, void* running_var, double epsilon, void* save_mean, void* save_inv_std) {
  if (auto status = check_batch_norm(mode, *xd, *yd, *cd, epsilon, "ForwardTraining"))
    return status;
  const size_t c = size_t(xd->c);
  for (const void* p : {x, const_cast<const void*>(y)})
    if (!on_device(p, elements(*xd))) return outside("cudnnBatchNormalizationForwardTraining");
  for (const void* p :
       {scale, bias, const_cast<const void*>(running_mean), const_cast<const void*>(running_var),
        const_cast<const void*>(save_mean), const_cast<const void*>(save_inv_std)})
    if (p && !on_device(p, c)) return outside("cudnnBatchNormalizationForwardTraining");
  segkit_emulation::device_access access{x,           y,         scale,       bias, running_mean,
                                         running_var, save_mean, save_inv_std};
  const batch_norm_call call{*xd};
  const auto* xs = static_cast<const float*>(x);
  auto* ys = static_cast<float*>(y);
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  const double m = double(call.count());
  for (int ch = 0; ch < xd->c; ++ch) {
    const auto stats = call.moments_of(ch, xs, epsilon);
    const double mean = stats.mean, squares = stats.squares, inv_std = stats.inv_std;
    const double g = static_cast<const float*>(scale)[ch],
                 shift = static_cast<const float*>(bias)[ch];
    call.for_channel(
        ch, [&](size_t i) { ys[i] = blend(a, g * (xs[i] - mean) * inv_std + shift, b, ys[i]); });
    if (running_mean && running_var) {  // the variance in the running average is unbiased
      float& rm = static_cast<float*>(running_mean)[ch];
      float& rv = static_cast<float*>(running_var)[ch];
      rm = float(rm * (1 - factor) + mean * factor);
      rv = float(rv * (1 - factor) + squares / (m - 1) * factor);
    }
    if (save_mean && save_inv_std) {
      static_cast<float*>(save_mean)[ch] = float(mean);
      static_cast<float*>(save_inv_std)[ch] = float(inv_std);
    }
  }
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBatchNormalizationForwardInference(
    cudnnHandle_t, cudnnBatchNormMode_t mode, const void* alpha, const void* beta,
    const cudnnTensorDescriptor_t xd, const void* x, const cudnnTensorDescriptor_t yd, void* y,
    const cudnnTensorDescriptor_t cd, const void* scale, const void* bias, const void* mean,
    const void* variance, double epsilon) {
  if (auto status = check_batch_norm(mode, *xd, *yd, *cd, epsilon, "ForwardInference"))
    return status;
  const size_t c = size_t(xd->c);
  if (!on_device(x, elements(*xd)) || !on_device(y, elements(*xd)) || !on_device(scale, c) ||
      !on_device(bias, c) || !on_device(mean, c) || !on_device(variance, c))
    return outside("cudnnBatchNormalizationForwardInference");
  segkit_emulation::device_access access{x, y, scale, bias, mean, variance};
  const batch_norm_call call{*xd};
  const auto* xs = static_cast<const float*>(x);
  auto* ys = static_cast<float*>(y);
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  for (int ch = 0; ch < xd->c; ++ch) {
    const double mu = static_cast<const float*>(mean)[ch];
    const double inv_std =
        1.0 / std::sqrt(double(static_cast<const float*>(variance)[ch]) + epsilon);
    const double g = static_cast<const float*>(scale)[ch],
                 shift = static_cast<const float*>(bias)[ch];
    call.for_channel(
        ch, [&](size_t i) { ys[i] = blend(a, g * (xs[i] - mu) * inv_std + shift, b, ys[i]); });
  }
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBatchNormalizationBackward(cudnnHandle_t, cudnnBatchNormMode_t mode,
                                              const void* alpha_data, const void* beta_data,
                                              const void* alpha_param, const void* beta_param,
                                              const cudnnTensorDescriptor_t xd, const void* x,
                                              const cudnnTensorDescriptor_t dyd, const void* dy,
                                              const cudnnTensorDescriptor_t dxd, void* dx,
                                              const cudnnTensorDescriptor_t cd, const void* scale,
                                              void* dscale, void* dbias, double epsilon,
                                              const void* saved_mean, const void* saved_inv_std) {
  if (auto status = check_batch_norm(mode, *xd, *dyd, *cd, epsilon, "Backward")) return status;
  if (auto status = check_batch_norm(mode, *xd, *dxd, *cd, epsilon, "Backward")) return status;
  const size_t c = size_t(xd->c), n = elements(*xd);
  if (!on_device(x, n) || !on_device(dy, n) || !on_device(dx, n) || !on_device(scale, c) ||
      !on_device(dscale, c) || !on_device(dbias, c) || (saved_mean && !on_device(saved_mean, c)) ||
      (saved_inv_std && !on_device(saved_inv_std, c)))
    return outside("cudnnBatchNormalizationBackward");
  segkit_emulation::device_access access{x,      dy,    dx,         scale,
                                         dscale, dbias, saved_mean, saved_inv_std};
  const batch_norm_call call{*xd};
  const auto* xs = static_cast<const float*>(x);
  const auto* dys = static_cast<const float*>(dy);
  auto* dxs = static_cast<float*>(dx);
  const float ad = *static_cast<const float*>(alpha_data),
              bd = *static_cast<const float*>(beta_data);
  const float ap = *static_cast<const float*>(alpha_param),
              bp = *static_cast<const float*>(beta_param);
  const double m = double(call.count());
  for (int ch = 0; ch < xd->c; ++ch) {
    double mean = 0, inv_std = 0;
    if (saved_mean && saved_inv_std) {
      mean = static_cast<const float*>(saved_mean)[ch];
      inv_std = static_cast<const float*>(saved_inv_std)[ch];
    } else {
      const auto stats = call.moments_of(ch, xs, epsilon);
      mean = stats.mean, inv_std = stats.inv_std;
    }
    double sum_dy = 0, sum_dy_xhat = 0;
    call.for_channel(ch, [&](size_t i) {
      sum_dy += dys[i];
      sum_dy_xhat += dys[i] * (xs[i] - mean) * inv_std;
    });
    const double g = static_cast<const float*>(scale)[ch];
    call.for_channel(ch, [&](size_t i) {
      const double xhat = (xs[i] - mean) * inv_std;
      dxs[i] = blend(ad, g * inv_std * (dys[i] - sum_dy / m - xhat * sum_dy_xhat / m), bd, dxs[i]);
    });
    float& gamma_grad = static_cast<float*>(dscale)[ch];
    float& beta_grad = static_cast<float*>(dbias)[ch];
    gamma_grad = blend(ap, sum_dy_xhat, bp, gamma_grad);
    beta_grad = blend(ap, sum_dy, bp, beta_grad);
  }
  return CUDNN_STATUS_SUCCESS;
}
