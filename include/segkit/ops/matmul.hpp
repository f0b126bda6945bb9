// segkit/ops/matmul.hpp — row-major GEMM on raw pointers (the primitive conv2d and the
// attention ops call) and the tensor-level matmul, forward and backward.
// Provides: gemm / gemm_strided_batched (cpu through Eigen, cuda through cuBLAS), with BLAS
// semantics C = alpha * op(A) op(B) + beta * C on row-major storage; beta == 0 ignores C's
// old contents (NaN included). matmul_forward / matmul_backward on tensors: [M,K]x[K,N] and
// batched [B,M,K]x[B,K,N], either operand may be broadcast along the batch (batch 1 or rank 2).
// Requires: leading dimensions >= the row length; shapes as above (shape_error naming both).
// Guarantees: forward overwrites c; backward *adds* into da / db (nullptr = not wanted);
// batched products run one product per thread when the batch is big enough, otherwise each
// product uses Eigen's own OpenMP threading (Eigen never nests inside a parallel region).
#pragma once
#include <algorithm>
#include <cstdint>

#include "segkit/tensor/mac_counter.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"

// nvcc rejects Eigen's defaulted __host__ __device__ members under -Werror=all-warnings, and
// CUDA translation units only need the cuda overloads: the Eigen-based cpu path is hidden there.
// GCC 12 reports a false -Wmaybe-uninitialized inside its own AVX-512 intrinsics when Eigen's
// GEMM packing is inlined (GCC bug 105593, fixed in GCC 13); the warning is located in the
// intrinsic headers, so it is silenced for them by including them under this pragma.
#ifndef __CUDACC__
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <Eigen/Core>
#pragma GCC diagnostic pop
#else
#include <Eigen/Core>
#endif
#include "segkit/ops/gemm_kernel.hpp"
#endif

namespace segkit::ops {

// ---- raw GEMM ------------------------------------------------------------------------------
namespace detail {
inline void check_gemm_arguments(bool transpose_a, bool transpose_b, int64_t m, int64_t n,
                                 int64_t k, int64_t lda, int64_t ldb, int64_t ldc) {
  require<value_error>(m >= 0 && n >= 0 && k >= 0, "gemm: sizes M=", m, " N=", n, " K=", k,
                       " must be >= 0");
  const int64_t a_row = transpose_a ? m : k, b_row = transpose_b ? k : n;
  require<value_error>(lda >= std::max<int64_t>(1, a_row), "gemm: lda=", lda,
                       " is smaller than a row of A (", a_row, ")");
  require<value_error>(ldb >= std::max<int64_t>(1, b_row), "gemm: ldb=", ldb,
                       " is smaller than a row of B (", b_row, ")");
  require<value_error>(ldc >= std::max<int64_t>(1, n), "gemm: ldc=", ldc,
                       " is smaller than a row of C (", n, ")");
}
}  // namespace detail

#ifndef __CUDACC__
namespace detail {
using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using const_row_map = Eigen::Map<const row_matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
using row_map = Eigen::Map<row_matrix, Eigen::Unaligned, Eigen::OuterStride<>>;

template <class Left, class Right>
void eigen_product(float alpha, const Left& left, const Right& right, float beta, row_map& c) {
  if (beta == 0.f) {
    if (alpha == 1.f)
      c.noalias() = left * right;
    else
      c.noalias() = alpha * (left * right);
    return;
  }
  if (beta != 1.f) c *= beta;
  if (alpha == 1.f)
    c.noalias() += left * right;
  else
    c.noalias() += alpha * (left * right);
}
}  // namespace detail

// C[M,N] = alpha * op(A) op(B) + beta * C, row-major; op(A) is [M,K], op(B) is [K,N].
inline void gemm(cpu, bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                 float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                 float beta, float* c, int64_t ldc) {
  detail::check_gemm_arguments(transpose_a, transpose_b, m, n, k, lda, ldb, ldc);
  if (m == 0 || n == 0) return;
  detail::row_map cm(c, m, n, Eigen::OuterStride<>(ldc));
  if (k == 0 || alpha == 0.f) {
    if (beta == 0.f)
      cm.setZero();
    else if (beta != 1.f)
      cm *= beta;
    return;
  }
#ifdef SEGKIT_HAVE_AVX512_GEMM
  if (double(m) * double(n) * double(k) >= 4096.0) {  // tiny products: Eigen, no packing
    gemm_kernel::gemm(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
#endif
  using detail::const_row_map;
  const const_row_map am(a, transpose_a ? k : m, transpose_a ? m : k, Eigen::OuterStride<>(lda));
  const const_row_map bm(b, transpose_b ? n : k, transpose_b ? k : n, Eigen::OuterStride<>(ldb));
  if (!transpose_a && !transpose_b) detail::eigen_product(alpha, am, bm, beta, cm);
  if (!transpose_a && transpose_b) detail::eigen_product(alpha, am, bm.transpose(), beta, cm);
  if (transpose_a && !transpose_b) detail::eigen_product(alpha, am.transpose(), bm, beta, cm);
  if (transpose_a && transpose_b)
    detail::eigen_product(alpha, am.transpose(), bm.transpose(), beta, cm);
}

namespace detail {
// One product per thread pays when there are enough products to keep every thread busy and
// each is too small for Eigen's threaded GEMM to split well (it partitions the N dimension
// and synchronises after packing). Large products with a small batch go to Eigen's threads.
inline bool parallel_over_batch(int64_t batch, int64_t m, int64_t n, int64_t k) {
  const int64_t threads = num_threads();
  if (threads <= 1 || batch < threads) return false;
  const double flops = 2.0 * double(m) * double(n) * double(k);
  return batch >= 4 * threads || batch % threads == 0 || flops < 4e6;
}
}  // namespace detail

// `batch` products; product i reads A + i*stride_a, B + i*stride_b and writes C + i*stride_c.
// A stride of 0 broadcasts that operand. stride_c must not be 0 unless batch <= 1.
inline void gemm_strided_batched(cpu, bool transpose_a, bool transpose_b, int64_t m, int64_t n,
                                 int64_t k, float alpha, const float* a, int64_t lda,
                                 int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b,
                                 float beta, float* c, int64_t ldc, int64_t stride_c,
                                 int64_t batch) {
  require<value_error>(batch >= 0, "gemm_strided_batched: batch=", batch, " must be >= 0");
  require<value_error>(batch <= 1 || stride_c != 0,
                       "gemm_strided_batched: stride_c=0 would make ", batch,
                       " products write one C concurrently");
  detail::check_gemm_arguments(transpose_a, transpose_b, m, n, k, lda, ldb, ldc);
  auto run = [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i)
      gemm(cpu{}, transpose_a, transpose_b, m, n, k, alpha, a + i * stride_a, lda,
           b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
  };
  if (detail::parallel_over_batch(batch, m, n, k))
    parallel_for(0, batch, 1, run);
  else
    run(0, batch);
}
#endif  // __CUDACC__

#ifdef SEGKIT_WITH_CUDA
// cuBLAS on the context's stream; row-major is mapped to column-major by computing C^T =
// op(B)^T op(A)^T, i.e. swapping the operands. Sizes must fit in int (cuda_error otherwise).
void gemm(cuda, bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc);
void gemm_strided_batched(cuda, bool transpose_a, bool transpose_b, int64_t m, int64_t n,
                          int64_t k, float alpha, const float* a, int64_t lda, int64_t stride_a,
                          const float* b, int64_t ldb, int64_t stride_b, float beta, float* c,
                          int64_t ldc, int64_t stride_c, int64_t batch);
#endif

// ---- tensor matmul -------------------------------------------------------------------------
struct matmul_params {
  bool transpose_a = false;  // a is stored [.., K, M] and used transposed
  bool transpose_b = false;  // b is stored [.., N, K] and used transposed
};

namespace detail {
struct matmul_plan {
  int64_t batch = 1, m = 0, n = 0, k = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // 0 = broadcast operand
  int64_t lda = 0, ldb = 0;
};

inline int64_t batch_of(const shape& s) { return s.rank() == 3 ? s[0] : 1; }

inline matmul_plan plan_matmul(const char* op, const matmul_params& params, const shape& a,
                               const shape& b) {
  require<shape_error>((a.rank() == 2 || a.rank() == 3) && (b.rank() == 2 || b.rank() == 3), op,
                       ": a has shape ", a.to_string(), " and b has shape ", b.to_string(),
                       "; expected rank 2 [M,K] or rank 3 [B,M,K] operands");
  matmul_plan plan;
  const int64_t a_rows = a[-2], a_cols = a[-1], b_rows = b[-2], b_cols = b[-1];
  plan.m = params.transpose_a ? a_cols : a_rows;
  plan.k = params.transpose_a ? a_rows : a_cols;
  const int64_t k_b = params.transpose_b ? b_cols : b_rows;
  plan.n = params.transpose_b ? b_rows : b_cols;
  require<shape_error>(plan.k == k_b, op, ": a has shape ", a.to_string(), " and b has shape ",
                       b.to_string(), " (transpose_a=", params.transpose_a,
                       ", transpose_b=", params.transpose_b, "); inner sizes ", plan.k, " and ",
                       k_b, " differ");
  const int64_t batch_a = batch_of(a), batch_b = batch_of(b);
  require<shape_error>(batch_a == batch_b || batch_a == 1 || batch_b == 1, op, ": a has shape ",
                       a.to_string(), " and b has shape ", b.to_string(),
                       "; batch sizes must be equal or one of them 1");
  plan.batch = std::max(batch_a, batch_b);
  plan.stride_a = batch_a == 1 ? 0 : plan.m * plan.k;
  plan.stride_b = batch_b == 1 ? 0 : plan.k * plan.n;
  plan.stride_c = plan.m * plan.n;
  plan.lda = std::max<int64_t>(1, a_cols);
  plan.ldb = std::max<int64_t>(1, b_cols);
  return plan;
}

inline shape matmul_shape(const matmul_plan& plan, const shape& a, const shape& b) {
  if (a.rank() == 2 && b.rank() == 2) return shape{plan.m, plan.n};
  return shape{plan.batch, plan.m, plan.n};
}

template <class Device>
void matmul_forward_impl(const matmul_params& params, const tensor<float, Device>& a,
                         const tensor<float, Device>& b, tensor<float, Device>& c) {
  const matmul_plan p = plan_matmul("matmul_forward", params, a.shape(), b.shape());
  require_shape("matmul_forward", "output c", c.shape(), matmul_shape(p, a.shape(), b.shape()));
  add_macs(p.batch * p.m * p.n * p.k);  // mac_counter.hpp; cpu and cuda both run this
  const int64_t ldc = std::max<int64_t>(1, p.n);
  if (p.stride_b == 0 && p.stride_a != 0 && !params.transpose_a) {
    // b shared by every product: the batch folds into M, one large GEMM.
    gemm(Device{}, false, params.transpose_b, p.batch * p.m, p.n, p.k, 1.f, a.data(), p.lda,
         b.data(), p.ldb, 0.f, c.data(), ldc);
    return;
  }
  gemm_strided_batched(Device{}, params.transpose_a, params.transpose_b, p.m, p.n, p.k, 1.f,
                       a.data(), p.lda, p.stride_a, b.data(), p.ldb, p.stride_b, 0.f, c.data(),
                       ldc, p.stride_c, p.batch);
}

// Adds sum over the batch of op_l(L_i) op_r(R_i) into G (G broadcast when stride_g == 0).
template <class Device>
void accumulate_products(bool tl, bool tr, int64_t m, int64_t n, int64_t k, const float* l,
                         int64_t ldl, int64_t stride_l, const float* r, int64_t ldr,
                         int64_t stride_r, float* g, int64_t ldg, int64_t stride_g,
                         int64_t batch) {
  if (stride_g != 0 || batch <= 1) {
    gemm_strided_batched(Device{}, tl, tr, m, n, k, 1.f, l, ldl, stride_l, r, ldr, stride_r, 1.f,
                         g, ldg, stride_g, batch);
    return;
  }
  for (int64_t i = 0; i < batch; ++i)  // the shared gradient sums over the batch in order
    gemm(Device{}, tl, tr, m, n, k, 1.f, l + i * stride_l, ldl, r + i * stride_r, ldr, 1.f, g,
         ldg);
}

template <class Device>
void matmul_backward_impl(const matmul_params& params, const tensor<float, Device>& a,
                          const tensor<float, Device>& b, const tensor<float, Device>& dc,
                          tensor<float, Device>* da, tensor<float, Device>* db) {
  const matmul_plan p = plan_matmul("matmul_backward", params, a.shape(), b.shape());
  require_shape("matmul_backward", "output gradient dc", dc.shape(),
                matmul_shape(p, a.shape(), b.shape()));
  if (da) require_same_shape("matmul_backward", "a", a.shape(), "gradient da", da->shape());
  if (db) require_same_shape("matmul_backward", "b", b.shape(), "gradient db", db->shape());
  const bool ta = params.transpose_a, tb = params.transpose_b;
  const int64_t ldc = std::max<int64_t>(1, p.n);
  const float* g = dc.data();
  if (p.stride_b == 0 && p.stride_a != 0 && !ta) {  // folded like the forward
    const int64_t rows = p.batch * p.m;
    if (da) gemm(Device{}, false, !tb, rows, p.k, p.n, 1.f, g, ldc, b.data(), p.ldb, 1.f,
                 da->data(), p.lda);
    if (db) {
      if (!tb)
        gemm(Device{}, true, false, p.k, p.n, rows, 1.f, a.data(), p.lda, g, ldc, 1.f,
             db->data(), p.ldb);
      else
        gemm(Device{}, true, false, p.n, p.k, rows, 1.f, g, ldc, a.data(), p.lda, 1.f,
             db->data(), p.ldb);
    }
    return;
  }
  if (da) {
    // op(A) grad = dC op(B)^T; when A is stored transposed, its grad is op(B) dC^T.
    if (!ta)
      accumulate_products<Device>(false, !tb, p.m, p.k, p.n, g, ldc, p.stride_c, b.data(), p.ldb,
                                  p.stride_b, da->data(), p.lda, p.stride_a, p.batch);
    else
      accumulate_products<Device>(tb, true, p.k, p.m, p.n, b.data(), p.ldb, p.stride_b, g, ldc,
                                  p.stride_c, da->data(), p.lda, p.stride_a, p.batch);
  }
  if (db) {
    // op(B) grad = op(A)^T dC; when B is stored transposed, its grad is dC^T op(A).
    if (!tb)
      accumulate_products<Device>(!ta, false, p.k, p.n, p.m, a.data(), p.lda, p.stride_a, g, ldc,
                                  p.stride_c, db->data(), p.ldb, p.stride_b, p.batch);
    else
      accumulate_products<Device>(true, ta, p.n, p.k, p.m, g, ldc, p.stride_c, a.data(), p.lda,
                                  p.stride_a, db->data(), p.ldb, p.stride_b, p.batch);
  }
}
}  // namespace detail

// The shape c must have for a and b ([M,N], or [B,M,N] when either operand has rank 3).
inline shape matmul_output_shape(const matmul_params& params, const shape& a, const shape& b) {
  const auto plan = detail::plan_matmul("matmul_output_shape", params, a, b);
  return detail::matmul_shape(plan, a, b);
}

#ifndef __CUDACC__
inline void matmul_forward(const matmul_params& params, const tensor<float, cpu>& a,
                           const tensor<float, cpu>& b, tensor<float, cpu>& c) {
  detail::matmul_forward_impl(params, a, b, c);
}
inline void matmul_backward(const matmul_params& params, const tensor<float, cpu>& a,
                            const tensor<float, cpu>& b, const tensor<float, cpu>& dc,
                            tensor<float, cpu>* da, tensor<float, cpu>* db) {
  detail::matmul_backward_impl(params, a, b, dc, da, db);
}
#endif  // __CUDACC__

#ifdef SEGKIT_WITH_CUDA
void matmul_forward(const matmul_params& params, const tensor<float, cuda>& a,
                    const tensor<float, cuda>& b, tensor<float, cuda>& c);
void matmul_backward(const matmul_params& params, const tensor<float, cuda>& a,
                     const tensor<float, cuda>& b, const tensor<float, cuda>& dc,
                     tensor<float, cuda>* da, tensor<float, cuda>* db);
#endif

}  // namespace segkit::ops
