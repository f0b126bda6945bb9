// tests/cuda_emulation/emulated_cublas.cpp — cuBLAS for the CUDA emulator: the SGEMM calls
// segkit makes, computed on the CPU as cuBLAS documents them, with its argument checks, and
// with every operand checked to lie inside device memory.
#include <algorithm>
#include <string>

#include "emulated_device_memory.hpp"

using segkit_emulation::fail;
using segkit_emulation::inside_allocation;

// ---- cuBLAS: column-major SGEMM as documented, host pointer mode -----------------------------
namespace {
int cublas_handle_storage;

// op(M) is rows x cols; M is stored column-major with leading dimension ld (gemm_sizes_ok has
// checked ld against the stored rows).
bool gemm_operand_ok(const float* matrix, bool transposed, int rows, int cols, int ld) {
  const long long stored_rows = transposed ? cols : rows, stored_cols = transposed ? rows : cols;
  if (stored_rows == 0 || stored_cols == 0) return true;
  return inside_allocation(matrix,
                           sizeof(float) * std::size_t((stored_cols - 1) * ld + stored_rows));
}

cublasStatus_t sgemm_one(cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
                         float alpha, const float* a, int lda, const float* b, int ldb, float beta,
                         float* c, int ldc) {
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  if (!gemm_operand_ok(a, ta, m, k, lda) || !gemm_operand_ok(b, tb, k, n, ldb) ||
      !gemm_operand_ok(c, false, m, n, ldc)) {
    fail(cudaErrorInvalidValue, "cublasSgemm: an operand lies outside device memory");
    return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  segkit_emulation::device_access access{a, b, c};
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      float sum = 0.f;
      for (int p = 0; p < k; ++p) {
        const float av = ta ? a[std::size_t(i) * lda + p] : a[std::size_t(p) * lda + i];
        const float bv = tb ? b[std::size_t(p) * ldb + j] : b[std::size_t(j) * ldb + p];
        sum += av * bv;
      }
      float& out = c[std::size_t(j) * ldc + i];
      out = beta == 0.f ? alpha * sum : alpha * sum + beta * out;  // beta = 0: C is not read
    }
  return CUBLAS_STATUS_SUCCESS;
}

bool gemm_sizes_ok(cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, int lda,
                   int ldb, int ldc) {
  return m >= 0 && n >= 0 && k >= 0 && lda >= std::max(1, transa == CUBLAS_OP_N ? m : k) &&
         ldb >= std::max(1, transb == CUBLAS_OP_N ? k : n) && ldc >= std::max(1, m);
}
}  // namespace

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  *handle = reinterpret_cast<cublasHandle_t>(&cublas_handle_storage);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t) {
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t, cudaStream_t) {
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t, cublasOperation_t transa, cublasOperation_t transb,
                              int m, int n, int k, const float* alpha, const float* a, int lda,
                              const float* b, int ldb, const float* beta, float* c, int ldc) {
  if (!gemm_sizes_ok(transa, transb, m, n, k, lda, ldb, ldc)) return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  return sgemm_one(transa, transb, m, n, k, *alpha, a, lda, b, ldb, *beta, c, ldc);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const float* alpha, const float* a, int lda,
                                         long long stride_a, const float* b, int ldb,
                                         long long stride_b, const float* beta, float* c, int ldc,
                                         long long stride_c, int batch) {
  if (!gemm_sizes_ok(transa, transb, m, n, k, lda, ldb, ldc) || batch < 0)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  for (int i = 0; i < batch; ++i) {
    const cublasStatus_t status = sgemm_one(transa, transb, m, n, k, *alpha, a + i * stride_a, lda,
                                            b + i * stride_b, ldb, *beta, c + i * stride_c, ldc);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
  }
  return CUBLAS_STATUS_SUCCESS;
}
