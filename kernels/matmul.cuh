// kernels/matmul.cuh — CUDA path of ops/matmul.hpp: cuBLAS SGEMM on the context's handle.
// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so the operands are
// passed swapped with their own leading dimensions; no copies, no transposition kernels.
#pragma once
#include <climits>

#include "cuda_context.cuh"
#include "segkit/ops/matmul.hpp"

namespace segkit::ops {
namespace cuda_detail_matmul {
inline int to_int(int64_t value, const char* what) {
  require<cuda_error>(value >= 0 && value <= INT_MAX, "gemm (cuBLAS): ", what, "=", value,
                      " does not fit in int");
  return static_cast<int>(value);
}
inline cublasOperation_t op(bool transpose) { return transpose ? CUBLAS_OP_T : CUBLAS_OP_N; }
}  // namespace cuda_detail_matmul

void gemm(cuda, bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc) {
  using namespace cuda_detail_matmul;
  detail::check_gemm_arguments(transpose_a, transpose_b, m, n, k, lda, ldb, ldc);
  if (m == 0 || n == 0) return;
  segkit::cuda_detail::check_cublas(
      cublasSgemm(segkit::cuda_detail::context().cublas(), op(transpose_b), op(transpose_a),
                  to_int(n, "N"), to_int(m, "M"), to_int(k, "K"), &alpha, b, to_int(ldb, "ldb"),
                  a, to_int(lda, "lda"), &beta, c, to_int(ldc, "ldc")),
      "cublasSgemm");
}

void gemm_strided_batched(cuda, bool transpose_a, bool transpose_b, int64_t m, int64_t n,
                          int64_t k, float alpha, const float* a, int64_t lda, int64_t stride_a,
                          const float* b, int64_t ldb, int64_t stride_b, float beta, float* c,
                          int64_t ldc, int64_t stride_c, int64_t batch) {
  using namespace cuda_detail_matmul;
  require<value_error>(batch >= 0, "gemm_strided_batched: batch=", batch, " must be >= 0");
  require<value_error>(batch <= 1 || stride_c != 0,
                       "gemm_strided_batched: stride_c=0 would make ", batch,
                       " products write one C concurrently");
  detail::check_gemm_arguments(transpose_a, transpose_b, m, n, k, lda, ldb, ldc);
  if (m == 0 || n == 0 || batch == 0) return;
  segkit::cuda_detail::check_cublas(
      cublasSgemmStridedBatched(segkit::cuda_detail::context().cublas(), op(transpose_b),
                                op(transpose_a), to_int(n, "N"), to_int(m, "M"), to_int(k, "K"),
                                &alpha, b, to_int(ldb, "ldb"), stride_b, a, to_int(lda, "lda"),
                                stride_a, &beta, c, to_int(ldc, "ldc"), stride_c,
                                to_int(batch, "batch")),
      "cublasSgemmStridedBatched");
}

void matmul_forward(const matmul_params& params, const tensor<float, cuda>& a,
                    const tensor<float, cuda>& b, tensor<float, cuda>& c) {
  detail::matmul_forward_impl(params, a, b, c);
}

void matmul_backward(const matmul_params& params, const tensor<float, cuda>& a,
                     const tensor<float, cuda>& b, const tensor<float, cuda>& dc,
                     tensor<float, cuda>* da, tensor<float, cuda>* db) {
  detail::matmul_backward_impl(params, a, b, dc, da, db);
}

}  // namespace segkit::ops
