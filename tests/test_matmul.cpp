#include <cmath>
#include <limits>

#include "op_checker.hpp"
#include "segkit/ops/matmul.hpp"

using namespace segkit;

namespace {

// Naive row-major reference in double: C = alpha op(A) op(B) + beta C.
void naive_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double av = ta ? a[p * lda + i] : a[i * lda + p];
        const double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
        sum += av * bv;
      }
      const double old = beta == 0.f ? 0.0 : double(beta) * c[i * ldc + j];
      c[i * ldc + j] = static_cast<float>(alpha * sum + old);
    }
}

// Reference matmul for stored operands; rank 2 or 3, batch broadcast by index clamping.
host_tensor<float> naive_matmul(const ops::matmul_params& p, const host_tensor<float>& a,
                                const host_tensor<float>& b) {
  const shape out = ops::matmul_output_shape(p, a.shape(), b.shape());
  host_tensor<float> c = host_tensor<float>::zeros(out);
  const int64_t batch = out.rank() == 3 ? out[0] : 1, m = out[-2], n = out[-1];
  const int64_t k = p.transpose_a ? a.size(-2) : a.size(-1);
  const int64_t batch_a = a.rank() == 3 ? a.size(0) : 1, batch_b = b.rank() == 3 ? b.size(0) : 1;
  for (int64_t i = 0; i < batch; ++i)
    naive_gemm(p.transpose_a, p.transpose_b, m, n, k, 1.f,
               a.data() + (batch_a == 1 ? 0 : i) * m * k, a.size(-1),
               b.data() + (batch_b == 1 ? 0 : i) * k * n, b.size(-1), 0.f,
               c.data() + i * m * n, n);
  return c;
}

testing::op_case matmul_case(const std::string& name, ops::matmul_params p,
                             host_tensor<float> a, host_tensor<float> b) {
  testing::op_case test;
  test.name = name;
  test.inputs = {std::move(a), std::move(b)};
  test.forward = [p](const testing::tensors& in) {
    host_tensor<float> c(ops::matmul_output_shape(p, in[0].shape(), in[1].shape()));
    ops::matmul_forward(p, in[0], in[1], c);
    return testing::tensors{c};
  };
  test.backward = [p](const testing::tensors& in, const testing::tensors&,
                      const testing::tensors& dout, testing::tensors& din) {
    ops::matmul_backward(p, in[0], in[1], dout[0], &din[0], &din[1]);
  };
  return test;
}

shape stored(bool transposed, int64_t batch, int64_t rows, int64_t cols) {
  if (batch == 0) return transposed ? shape{cols, rows} : shape{rows, cols};
  return transposed ? shape{batch, cols, rows} : shape{batch, rows, cols};
}

}  // namespace

TEST_CASE("gemm: all transpose flags, padded leading dimensions, alpha and beta") {
  std::mt19937 rng(5);
  const int64_t m = 7, n = 5, k = 9;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (float beta : {0.f, 1.f, -0.5f}) {
        INFO("ta=" << ta << " tb=" << tb << " beta=" << beta);
        const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 4;
        auto a = testing::random_tensor({(ta ? k : m) * lda}, rng);
        auto b = testing::random_tensor({(tb ? n : k) * ldb}, rng);
        auto c = testing::random_tensor({m * ldc}, rng);
        if (beta == 0.f) c.fill(std::numeric_limits<float>::quiet_NaN());  // must be ignored
        auto expected = c.clone();
        naive_gemm(ta, tb, m, n, k, 1.5f, a.data(), lda, b.data(), ldb, beta, expected.data(), ldc);
        ops::gemm(cpu{}, ta, tb, m, n, k, 1.5f, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            INFO("element " << i << "," << j);
            CHECK(c[i * ldc + j] == Approx(expected[i * ldc + j]).epsilon(1e-5).margin(1e-5));
          }
        // Padding columns of C are untouched.
        if (beta != 0.f)
          for (int64_t i = 0; i < m; ++i) CHECK(c[i * ldc + n] == expected[i * ldc + n]);
      }
}

TEST_CASE("gemm: K = 0 scales C by beta; bad leading dimensions are rejected") {
  auto c = from_vector<float>({2, 2}, {1, 2, 3, 4});
  float dummy = 0;
  ops::gemm(cpu{}, false, false, 2, 2, 0, 1.f, &dummy, 1, &dummy, 2, 2.f, c.data(), 2);
  CHECK(to_vector(c) == std::vector<float>{2, 4, 6, 8});
  ops::gemm(cpu{}, false, false, 2, 2, 0, 1.f, &dummy, 1, &dummy, 2, 0.f, c.data(), 2);
  CHECK(to_vector(c) == std::vector<float>{0, 0, 0, 0});
  CHECK_THROWS_WITH(ops::gemm(cpu{}, false, false, 2, 3, 4, 1.f, &dummy, 3, &dummy, 3, 0.f,
                              c.data(), 3),
                    Catch::Contains("lda=3") && Catch::Contains("(4)"));
  CHECK_THROWS_AS(ops::gemm(cpu{}, false, false, 2, 3, 4, 1.f, &dummy, 4, &dummy, 3, 0.f,
                            c.data(), 2),
                  value_error);
}

TEST_CASE("gemm_strided_batched: thread-per-product and Eigen-threaded paths agree with naive") {
  std::mt19937 rng(9);
  for (int64_t batch : {1, 3, 16}) {
    for (int64_t size : {6, 70}) {
      const int64_t m = size, n = size + 1, k = size + 2;
      auto a = testing::random_tensor({batch, m, k}, rng);
      auto b = testing::random_tensor({k, n}, rng);  // broadcast: stride 0
      host_tensor<float> c({batch, m, n});
      auto expected = host_tensor<float>::zeros({batch, m, n});
      ops::gemm_strided_batched(cpu{}, false, false, m, n, k, 1.f, a.data(), k, m * k, b.data(),
                                n, 0, 0.f, c.data(), n, m * n, batch);
      for (int64_t i = 0; i < batch; ++i)
        naive_gemm(false, false, m, n, k, 1.f, a.data() + i * m * k, k, b.data(), n, 0.f,
                   expected.data() + i * m * n, n);
      testing::require_all_close(c, expected, 1e-4f, 1e-4f, "batched gemm");
    }
  }
  float dummy = 0;
  CHECK_THROWS_WITH(ops::gemm_strided_batched(cpu{}, false, false, 1, 1, 1, 1.f, &dummy, 1, 0,
                                              &dummy, 1, 0, 0.f, &dummy, 1, 0, 2),
                    Catch::Contains("stride_c=0"));
}

TEST_CASE("matmul: values against the naive product for every layout") {
  std::mt19937 rng(11);
  const int64_t m = 5, n = 4, k = 3;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t ba : {0, 1, 3})
        for (int64_t bb : {0, 1, 3}) {
          INFO("ta=" << ta << " tb=" << tb << " batch_a=" << ba << " batch_b=" << bb);
          const ops::matmul_params p{ta, tb};
          auto a = testing::random_tensor(stored(ta, ba, m, k), rng);
          auto b = testing::random_tensor(stored(tb, bb, k, n), rng);
          host_tensor<float> c(ops::matmul_output_shape(p, a.shape(), b.shape()));
          ops::matmul_forward(p, a, b, c);
          testing::require_all_close(c, naive_matmul(p, a, b), 1e-5f, 1e-5f, "matmul");
        }
}

TEST_CASE("matmul: gradients, accumulation and determinism") {
  std::mt19937 rng(13);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const std::string flags = std::string(ta ? "T" : "N") + (tb ? "T" : "N");
      const ops::matmul_params p{ta, tb};
      testing::check_op(matmul_case("rank2 " + flags, p,
                                    testing::random_tensor(stored(ta, 0, 5, 3), rng),
                                    testing::random_tensor(stored(tb, 0, 3, 7), rng)));
      testing::check_op(matmul_case("batched " + flags, p,
                                    testing::random_tensor(stored(ta, 3, 4, 6), rng),
                                    testing::random_tensor(stored(tb, 3, 6, 2), rng)));
      testing::check_op(matmul_case("broadcast b (rank 2) " + flags, p,
                                    testing::random_tensor(stored(ta, 4, 3, 5), rng),
                                    testing::random_tensor(stored(tb, 0, 5, 3), rng)));
      testing::check_op(matmul_case("broadcast a (batch 1) " + flags, p,
                                    testing::random_tensor(stored(ta, 1, 3, 5), rng),
                                    testing::random_tensor(stored(tb, 4, 5, 2), rng)));
    }
  testing::check_op(matmul_case("B=1, 1x1", {}, testing::random_tensor({1, 1, 1}, rng),
                                testing::random_tensor({1, 1, 1}, rng)));
  testing::check_op(matmul_case("vector-like", {}, testing::random_tensor({1, 9}, rng),
                                testing::random_tensor({9, 1}, rng)));
}

TEST_CASE("matmul: a large batched product matches with threads over the batch") {
  std::mt19937 rng(17);
  auto a = testing::random_tensor({8, 33, 40}, rng);
  auto b = testing::random_tensor({8, 40, 29}, rng);
  host_tensor<float> c({8, 33, 29});
  ops::matmul_forward({}, a, b, c);
  testing::require_all_close(c, naive_matmul({}, a, b), 1e-4f, 1e-4f, "batched matmul");
}

TEST_CASE("matmul: bad shapes name both shapes") {
  host_tensor<float> a({2, 3}), b({4, 5}), c({2, 5});
  CHECK_THROWS_WITH(ops::matmul_forward({}, a, b, c),
                    Catch::Contains("[2, 3]") && Catch::Contains("[4, 5]") &&
                        Catch::Contains("matmul_forward"));
  host_tensor<float> b2({3, 5}), wrong_c({5, 2});
  CHECK_THROWS_WITH(ops::matmul_forward({}, a, b2, wrong_c),
                    Catch::Contains("[5, 2]") && Catch::Contains("[2, 5]"));
  host_tensor<float> a3({2, 2, 3}), b3({3, 3, 5}), c3({3, 2, 5});
  CHECK_THROWS_WITH(ops::matmul_forward({}, a3, b3, c3),
                    Catch::Contains("[2, 2, 3]") && Catch::Contains("[3, 3, 5]") &&
                        Catch::Contains("batch"));
  host_tensor<float> v({3});
  CHECK_THROWS_AS(ops::matmul_forward({}, v, b2, c), shape_error);
  host_tensor<float> dc({2, 5}), bad_da({3, 2});
  CHECK_THROWS_WITH(ops::matmul_backward({}, a, b2, dc, &bad_da, nullptr),
                    Catch::Contains("[3, 2]") && Catch::Contains("[2, 3]"));
}

TEST_CASE("gemm: large products crossing every tile and block edge (packed AVX-512 path)") {
  // 12x32 and 8x48 register tiles, 256-deep slices, 240-row blocks, thread splits: sizes
  // straddle them (M = 40, 64, 16 take the 8x48 tiles).
  std::mt19937 rng(23);
  struct dims {
    int64_t m, n, k;
  };
  for (const dims d : {dims{50, 70, 300}, dims{241, 33, 513}, dims{13, 4099, 17}, dims{1, 64, 100}, dims{40, 300, 120}, dims{64, 500, 33}, dims{16, 47, 260}}) {
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (float beta : {0.f, 0.5f}) {
          INFO("m=" << d.m << " n=" << d.n << " k=" << d.k << " ta=" << ta << " tb=" << tb
                    << " beta=" << beta);
          const int64_t lda = (ta ? d.m : d.k) + 1, ldb = (tb ? d.k : d.n) + 3, ldc = d.n + 2;
          auto a = testing::random_tensor({(ta ? d.k : d.m) * lda}, rng);
          auto b = testing::random_tensor({(tb ? d.n : d.k) * ldb}, rng);
          auto c = testing::random_tensor({d.m * ldc}, rng);
          if (beta == 0.f) c.fill(std::numeric_limits<float>::quiet_NaN());
          auto expected = c.clone();
          naive_gemm(ta, tb, d.m, d.n, d.k, 0.75f, a.data(), lda, b.data(), ldb, beta,
                     expected.data(), ldc);
          ops::gemm(cpu{}, ta, tb, d.m, d.n, d.k, 0.75f, a.data(), lda, b.data(), ldb, beta,
                    c.data(), ldc);
          for (int64_t i = 0; i < d.m; ++i)
            for (int64_t j = 0; j < d.n; ++j) {
              const float got = c[i * ldc + j], want = expected[i * ldc + j];
              if (!(std::abs(got - want) <= 1e-3f + 1e-4f * std::abs(want))) {
                FAIL("element " << i << "," << j << " is " << got << ", expected " << want);
              }
            }
          if (beta != 0.f)  // padding columns untouched
            for (int64_t i = 0; i < d.m; ++i) REQUIRE(c[i * ldc + d.n] == expected[i * ldc + d.n]);
        }
  }
}
