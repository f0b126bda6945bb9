// tests/cuda_emulation/emulated_cuda.hpp — runs segkit's CUDA kernels, unchanged, on the CPU,
// so that a machine without a GPU (CI's) executes the kernels' own code, not only the math
// they share with the CPU path.
// Requires: force-included (g++ -include) before anything else in every translation unit of
//   segkit_cuda_emulated_tests, which is compiled by the host compiler with
//   SEGKIT_WITH_CUDA and the CUDA headers, and linked against emulated_cuda.cpp,
//   emulated_cublas.cpp and emulated_cudnn.cpp instead of libcudart, cuBLAS and cuDNN.
// Guarantees:
//   - a launch runs every block in turn and the block's threads as fibers of one OS thread:
//     each runs until __syncthreads, a warp-synchronous call (__shfl_*_sync, __syncwarp, a
//     WMMA call) or its end, so a missing barrier shows up as a read of stale or NaN data;
//     SEGKIT_EMULATION_ORDER=reverse runs the threads in the opposite order, and
//     SEGKIT_EMULATION_TRACE=1 prints every launch;
//   - a barrier or warp call that some threads never reach (divergence) fails the launch with
//     the kernel's name, as do launch configurations the hardware rejects (block size, grid
//     limits, dynamic shared memory over the opted-in limit) and a trap;
//   - device memory and dynamic shared memory start filled with 0xff bytes (NaN as float);
//     device memory is inaccessible to host code; cudaMemcpy/cudaMemset, cuBLAS and cuDNN
//     check that their device ranges lie inside allocations;
//   - WMMA fragments hold their whole tile in every lane (the element-to-lane mapping is
//     unspecified in CUDA, so a kernel that depends on it is wrong anyway); mma_sync rounds
//     its A and B elements to TF32 as the hardware reads them.
// Not emulated: timing, memory coalescing, the memory model between blocks (blocks run one
// after another); static __shared__ arrays start zeroed rather than poisoned. cuBLAS and
// cuDNN compute what their documentation says, which is this emulator's reading of it.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>

// The host compiler sees CUDA's execution-space keywords as unknown attributes: drop them, and
// make __shared__ arrays one object per kernel (blocks run one at a time).
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __launch_bounds__(...)
#define SEGKIT_CUDA_EMULATION 1

namespace segkit_emulation {

// The running emulated thread's block barrier (__syncthreads) and warp barrier over the lanes
// of `mask` (__syncwarp and every warp-collective call).
void block_barrier();
void warp_barrier(unsigned mask, const char* call);
// 8 bytes per lane of the running thread's warp, for shuffles.
std::uint64_t* warp_exchange();
int lane_id();
// The running launch's dynamic shared memory.
void* dynamic_shared();
[[noreturn]] void trap(const char* why);

// Runs `thread_body` once per thread of every block; the kernel pointer identifies the
// kernel's attributes (cudaFuncSetAttribute). Sets the error cudaGetLastError returns.
void launch(const char* name, const void* kernel, dim3 grid, dim3 block, std::size_t shared_bytes,
            const std::function<void()>& thread_body);

}  // namespace segkit_emulation

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

inline void __syncthreads() {
  segkit_emulation::block_barrier();
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  segkit_emulation::warp_barrier(mask, "__syncwarp");
}
[[noreturn]] inline void __trap() {
  segkit_emulation::trap("__trap() called");
}

template <class T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a wide type");
  std::uint64_t* slots = segkit_emulation::warp_exchange();
  const int lane = segkit_emulation::lane_id();
  std::memcpy(&slots[lane], &value, sizeof(T));
  segkit_emulation::warp_barrier(mask, "__shfl_xor_sync");
  int source = lane ^ lane_mask;
  if (source >= (lane / width + 1) * width) source = lane;  // a later segment: own value (guide)
  if (!(mask >> source & 1u))
    segkit_emulation::trap("__shfl_xor_sync reads a lane outside its mask");
  T result;
  std::memcpy(&result, &slots[source], sizeof(T));
  segkit_emulation::warp_barrier(mask, "__shfl_xor_sync");  // all have read before the next
  return result;
}

// Blocks run one thread at a time, so read-modify-write is atomic as written.
template <class T>
T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}
template <class T>
T atomicMin(T* address, T value) {
  const T old = *address;
  if (value < old) *address = value;
  return old;
}
template <class T>
T atomicMax(T* address, T value) {
  const T old = *address;
  if (old < value) *address = value;
  return old;
}

inline unsigned __float_as_uint(float x) {
  unsigned bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}
inline float __uint_as_float(unsigned bits) {
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// ---- WMMA (mma.h), for the shapes segkit uses ----------------------------------------------
namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

// Round to nearest, ties away from zero, keeping 10 mantissa bits (cvt.rna.tf32.f32).
inline float __float_to_tf32(float x) {
  if (!std::isfinite(x)) return x;
  return __uint_as_float((__float_as_uint(x) + 0x1000u) & 0xffffe000u);
}

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
  static constexpr int num_elements = rows * cols;
  float x[num_elements];  // row-major tile: x[r * cols + c]
};

template <class Use, int M, int N, int K, class T, class Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, float value) {
  for (float& e : f.x) e = value;
}

namespace detail {
inline std::size_t offset(int r, int c, unsigned ldm, bool row_major) {
  return row_major ? std::size_t(r) * ldm + c : std::size_t(c) * ldm + r;
}
inline void check_pointer(const void* p, unsigned ldm, const char* call) {
  if (reinterpret_cast<std::uintptr_t>(p) % 32 != 0)
    segkit_emulation::trap((std::string(call) + ": pointer not 32-byte aligned").c_str());
  if (ldm % 4 != 0)
    segkit_emulation::trap((std::string(call) + ": ldm not a multiple of 4 floats").c_str());
}
}  // namespace detail

template <class Use, int M, int N, int K, class Layout>
void load_matrix_sync(fragment<Use, M, N, K, precision::tf32, Layout>& f, const float* p,
                      unsigned ldm) {
  segkit_emulation::warp_barrier(0xffffffffu, "wmma::load_matrix_sync");
  detail::check_pointer(p, ldm, "wmma::load_matrix_sync");
  using F = fragment<Use, M, N, K, precision::tf32, Layout>;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] = p[detail::offset(r, c, ldm, std::is_same_v<Layout, row_major>)];
}
template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm,
                      layout_t layout) {
  segkit_emulation::warp_barrier(0xffffffffu, "wmma::load_matrix_sync");
  detail::check_pointer(p, ldm, "wmma::load_matrix_sync");
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      f.x[r * N + c] = p[detail::offset(r, c, ldm, layout == mem_row_major)];
}
template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm,
                       layout_t layout) {
  segkit_emulation::warp_barrier(0xffffffffu, "wmma::store_matrix_sync");
  detail::check_pointer(p, ldm, "wmma::store_matrix_sync");
  // Each lane stores its share of the tile, so a reader that skips __syncwarp sees a part of
  // it unwritten, as it could on the hardware.
  for (int e = segkit_emulation::lane_id(); e < M * N; e += 32)
    p[detail::offset(e / N, e % N, ldm, layout == mem_row_major)] = f.x[e];
}

// d = a b + c. The tensor core reads only the TF32 bits of A and B (the low 13 are ignored).
template <int M, int N, int K, class LayoutA, class LayoutB>
void mma_sync(fragment<accumulator, M, N, K, float>& d,
              const fragment<matrix_a, M, N, K, precision::tf32, LayoutA>& a,
              const fragment<matrix_b, M, N, K, precision::tf32, LayoutB>& b,
              const fragment<accumulator, M, N, K, float>& c) {
  segkit_emulation::warp_barrier(0xffffffffu, "wmma::mma_sync");
  const auto tf32_bits = [](float x) { return __uint_as_float(__float_as_uint(x) & 0xffffe000u); };
  fragment<accumulator, M, N, K, float> result;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float sum = c.x[i * N + j];
      for (int k = 0; k < K; ++k) sum += tf32_bits(a.x[i * K + k]) * tf32_bits(b.x[k * N + j]);
      result.x[i * N + j] = sum;
    }
  d = result;
}
}  // namespace nvcuda::wmma

// ---- what kernels/launch.cuh defines for nvcc ------------------------------------------------
#define SEGKIT_DYNAMIC_SHARED(type, name) \
  type* name = static_cast<type*>(::segkit_emulation::dynamic_shared())

#define SEGKIT_LAUNCH(kernel, grid, block, shared_bytes, stream, ...)                          \
  do {                                                                                         \
    (void)(stream);                                                                            \
    auto* segkit_emulated_kernel = &kernel;                                                    \
    ::segkit_emulation::launch(#kernel, reinterpret_cast<const void*>(segkit_emulated_kernel), \
                               dim3(grid), dim3(block), std::size_t(shared_bytes),             \
                               [&] { segkit_emulated_kernel(__VA_ARGS__); });                  \
    ::segkit::cuda_detail::check_launch(#kernel);                                              \
  } while (0)
