// The emulator's own guarantees (emulated_cuda.hpp), each shown to fail where a kernel is
// wrong: a missing barrier reads stale shared memory in either thread order, a shuffle some
// lanes never reach fails the launch, the hardware's launch limits hold, WMMA multiplies as
// the CUDA guide defines it, device memory starts as NaN, and host code cannot touch it.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <random>
#include <vector>

#include "launch.cuh"
#include "segkit/tensor/tensor.hpp"
#include "warp_reduce.cuh"

namespace {

constexpr int block_threads = 64;

// SEGKIT_LAUNCH as an expression, for REQUIRE_THROWS_WITH.
#define LAUNCHED(...) [&] { SEGKIT_LAUNCH(__VA_ARGS__); }()

using segkit::cuda;
using segkit::shape;
using segkit::tensor;

template <bool with_barrier>
__global__ void reverse_through_shared(int generation, int* out) {
  __shared__ int values[block_threads];
  const int t = int(threadIdx.x);
  values[t] = generation * 1000 + t;
  if (with_barrier) __syncthreads();
  out[t] = values[block_threads - 1 - t];
}

__global__ void warp_lane_sum(int* out) {
  out[threadIdx.x] = segkit::cuda_detail::warp_sum(int(threadIdx.x % 32));
}

__global__ void half_warp_leaves_before_shuffle(int* out) {
  if (threadIdx.x % 32 < 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, int(threadIdx.x), 1);
}

__global__ void touch_dynamic_shared(float* out) {
  SEGKIT_DYNAMIC_SHARED(float, scratch);
  scratch[threadIdx.x] = 1.f;
  out[threadIdx.x] = scratch[threadIdx.x];
}

// out = a b (+ 0) for one 16 x 16 x 8 tile; a is 16 x 8 and b 8 x 16, both row-major.
template <class LayoutA, class LayoutB>
__global__ void one_tile_product(const float* a, const float* b, float* out) {
  namespace wmma = nvcuda::wmma;
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, LayoutA> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, LayoutB> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 0.f);
  constexpr bool a_rows = std::is_same_v<LayoutA, wmma::row_major>;
  constexpr bool b_rows = std::is_same_v<LayoutB, wmma::row_major>;
  wmma::load_matrix_sync(fa, a_rows ? a : a + 16 * 8, a_rows ? 8 : 16);
  wmma::load_matrix_sync(fb, b_rows ? b : b + 8 * 16, b_rows ? 16 : 8);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(out, acc, 16, wmma::mem_row_major);
}

// A device tensor's values, read back through segkit's own copy.
template <class T>
std::vector<T> read(const tensor<T, cuda>& device) {
  const auto host = segkit::to<segkit::cpu>(device);
  return std::vector<T>(host.data(), host.data() + host.numel());
}

float tf32_round(float x) {
  return nvcuda::wmma::__float_to_tf32(x);
}

}  // namespace

TEST_CASE("emulator: a missing __syncthreads reads stale shared memory, in either order") {
  tensor<int32_t, cuda> out(shape{block_threads});
  SEGKIT_LAUNCH(reverse_through_shared<true>, 1, block_threads, 0, nullptr, 1, out.data());
  const auto synced = read(out);
  for (int t = 0; t < block_threads; ++t) REQUIRE(synced[t] == 1000 + block_threads - 1 - t);

  SEGKIT_LAUNCH(reverse_through_shared<false>, 1, block_threads, 0, nullptr, 2, out.data());
  const auto racy = read(out);
  int stale = 0;
  for (int t = 0; t < block_threads; ++t) stale += racy[t] != 2000 + block_threads - 1 - t;
  CHECK(stale == block_threads / 2);  // the threads that run first read before the others write
}

TEST_CASE("emulator: shuffles exchange lanes' values, and a shuffle some lanes left fails") {
  tensor<int32_t, cuda> out(shape{96});
  SEGKIT_LAUNCH(warp_lane_sum, 1, 96, 0, nullptr, out.data());
  for (int value : read(out)) REQUIRE(value == 31 * 32 / 2);
  REQUIRE_THROWS_WITH(
      LAUNCHED(half_warp_leaves_before_shuffle, 1, 64, 0, nullptr, out.data()),
      Catch::Contains("half_warp_leaves_before_shuffle") && Catch::Contains("deadlock"));
}

TEST_CASE("emulator: launches the hardware refuses fail at their launch check") {
  tensor<float, cuda> out(shape{1024});
  REQUIRE_THROWS_WITH(LAUNCHED(touch_dynamic_shared, 1, 2048, 0, nullptr, out.data()),
                      Catch::Contains("invalid grid or block size"));
  REQUIRE_THROWS_WITH(LAUNCHED(touch_dynamic_shared, dim3(1, 70000), 32, 0, nullptr, out.data()),
                      Catch::Contains("invalid grid or block size"));
  const size_t over_default = 64 * 1024;
  REQUIRE_THROWS_WITH(LAUNCHED(touch_dynamic_shared, 1, 32, over_default, nullptr, out.data()),
                      Catch::Contains("over the kernel's limit of 49152"));
  REQUIRE(cudaFuncSetAttribute(reinterpret_cast<const void*>(&touch_dynamic_shared),
                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                               int(over_default)) == cudaSuccess);
  SEGKIT_LAUNCH(touch_dynamic_shared, 1, 32, over_default, nullptr, out.data());
  REQUIRE(read(out)[31] == 1.f);
}

TEST_CASE("emulator: WMMA TF32 tiles multiply as the CUDA guide defines, in every layout") {
  using namespace nvcuda::wmma;
  REQUIRE(tf32_round(1.f + 0x1p-11f) == 1.f + 0x1p-10f);  // a tie rounds away from zero
  REQUIRE(tf32_round(-1.f - 0x1p-11f) == -1.f - 0x1p-10f);
  REQUIRE(tf32_round(1.f + 0x1p-12f) == 1.f);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  // a (16 x 8) and b (8 x 16), each stored row-major first and column-major after it.
  segkit::host_tensor<float> a_host(shape{256}), b_host(shape{256});
  float *a = a_host.data(), *b = b_host.data();
  for (int i = 0; i < 16; ++i)
    for (int k = 0; k < 8; ++k) a[i * 8 + k] = a[128 + k * 16 + i] = uniform(rng);
  for (int k = 0; k < 8; ++k)
    for (int j = 0; j < 16; ++j) b[k * 16 + j] = b[128 + j * 8 + k] = uniform(rng);
  const auto da = segkit::to<cuda>(a_host), db = segkit::to<cuda>(b_host);
  tensor<float, cuda> out(shape{256});
  const auto check = [&](const char* layouts) {
    INFO(layouts);
    const auto c = read(out);
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 16; ++j) {
        double exact = 0;  // of the TF32 bits the hardware reads (the low 13 are dropped)
        for (int k = 0; k < 8; ++k) {
          const float ak = __uint_as_float(__float_as_uint(a[i * 8 + k]) & 0xffffe000u);
          const float bk = __uint_as_float(__float_as_uint(b[k * 16 + j]) & 0xffffe000u);
          exact += double(ak) * bk;
        }
        REQUIRE(c[i * 16 + j] == Approx(exact).margin(1e-6));
      }
  };
  SEGKIT_LAUNCH((one_tile_product<row_major, row_major>), 1, 32, 0, nullptr, da.data(), db.data(),
                out.data());
  check("a row-major, b row-major");
  SEGKIT_LAUNCH((one_tile_product<col_major, col_major>), 1, 32, 0, nullptr, da.data(), db.data(),
                out.data());
  check("a col-major, b col-major");
  SEGKIT_LAUNCH((one_tile_product<row_major, col_major>), 1, 32, 0, nullptr, da.data(), db.data(),
                out.data());
  check("a row-major, b col-major");
}

TEST_CASE("emulator: device memory starts as NaN and copies stay inside allocations") {
  tensor<float, cuda> buffer(shape{10});
  for (float value : read(buffer)) REQUIRE(std::isnan(value));
  std::vector<float> host(11, 0.f);
  REQUIRE(cudaMemcpy(buffer.data(), host.data(), 11 * sizeof(float), cudaMemcpyHostToDevice) ==
          cudaErrorInvalidValue);
  REQUIRE(cudaMemcpy(host.data(), buffer.data(), 10 * sizeof(float), cudaMemcpyHostToDevice) ==
          cudaErrorInvalidValue);  // the direction is wrong: the destination is host memory
  cudaGetLastError();
}

TEST_CASE("emulator: host code that reads device memory crashes, as it would with a GPU") {
  tensor<float, cuda> buffer(shape{4});
  std::fflush(nullptr);  // the child must not repeat what the parent has buffered
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::signal(SIGSEGV, SIG_DFL);          // Catch's handler would report the crash as a failure
    volatile float value = buffer.data()[0];  // a host read of a device pointer
    (void)value;
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(WTERMSIG(status) == SIGSEGV);
}
