// CUDA matmul / gemm (cuBLAS) against the CPU path (Eigen) on the same random inputs.
#include <catch2/catch.hpp>

#include "op_checker.hpp"
#include "segkit/ops/matmul.hpp"

using namespace segkit;

namespace {
shape stored_shape(bool transposed, int64_t batch, int64_t rows, int64_t cols) {
  if (batch == 0) return transposed ? shape{cols, rows} : shape{rows, cols};
  return transposed ? shape{batch, cols, rows} : shape{batch, rows, cols};
}
}  // namespace

TEST_CASE("cuda gemm matches cpu with padded leading dimensions and beta") {
  std::mt19937 rng(21);
  const int64_t m = 37, n = 29, k = 45;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("ta=" << ta << " tb=" << tb);
      const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
      auto a = testing::random_tensor({(ta ? k : m) * lda}, rng);
      auto b = testing::random_tensor({(tb ? n : k) * ldb}, rng);
      auto c = testing::random_tensor({m * ldc}, rng);
      auto a_gpu = to<cuda>(a), b_gpu = to<cuda>(b);
      auto c_gpu = to<cuda>(c);
      ops::gemm(cpu{}, ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, 1.f, c.data(), ldc);
      ops::gemm(cuda{}, ta, tb, m, n, k, 0.5f, a_gpu.data(), lda, b_gpu.data(), ldb, 1.f,
                c_gpu.data(), ldc);
      testing::require_all_close(to<cpu>(c_gpu), c, 1e-4f, 1e-4f, "gemm");
    }
}

TEST_CASE("cuda matmul forward and backward match cpu") {
  std::mt19937 rng(22);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t ba : {0, 1, 5})
        for (int64_t bb : {0, 5}) {
          INFO("ta=" << ta << " tb=" << tb << " batch_a=" << ba << " batch_b=" << bb);
          const ops::matmul_params p{ta, tb};
          auto a = testing::random_tensor(stored_shape(ta, ba, 19, 23), rng);
          auto b = testing::random_tensor(stored_shape(tb, bb, 23, 17), rng);
          const shape out = ops::matmul_output_shape(p, a.shape(), b.shape());
          host_tensor<float> c(out);
          ops::matmul_forward(p, a, b, c);
          auto a_gpu = to<cuda>(a), b_gpu = to<cuda>(b);
          tensor<float, cuda> c_gpu(out);
          ops::matmul_forward(p, a_gpu, b_gpu, c_gpu);
          testing::require_all_close(to<cpu>(c_gpu), c, 1e-4f, 1e-4f, "forward");

          auto dc = testing::random_tensor(out, rng);
          auto da = testing::random_tensor(a.shape(), rng), db = testing::random_tensor(b.shape(), rng);
          auto da_gpu = to<cuda>(da), db_gpu = to<cuda>(db), dc_gpu = to<cuda>(dc);
          ops::matmul_backward(p, a, b, dc, &da, &db);
          ops::matmul_backward(p, a_gpu, b_gpu, dc_gpu, &da_gpu, &db_gpu);
          testing::require_all_close(to<cpu>(da_gpu), da, 1e-4f, 1e-4f, "da");
          testing::require_all_close(to<cpu>(db_gpu), db, 1e-4f, 1e-4f, "db");
        }
}
