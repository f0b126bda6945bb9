// segkit/tensor/device.hpp — device tags and raw allocation.
// `cpu` and `cuda` are empty tag types: a tensor<T, cpu> and a tensor<T, cuda> are different
// types, so dispatch is resolved at compile time. CPU blocks are 64-byte aligned (one AVX-512
// vector, one cache line). Every allocation is counted, so a test can prove that a training
// step allocates nothing after setup. The cuda allocator exists only when SEGKIT_WITH_CUDA is
// defined (the CMake target defines it when CUDA is enabled).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <string>

#include "error.hpp"

#ifdef SEGKIT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace segkit {

struct cpu {
  static constexpr const char* name = "cpu";
};
struct cuda {
  static constexpr const char* name = "cuda";
};

// Counts of live and total allocations made through segkit's allocators, per device kind, and
// (cpu) the bytes they hold now and at most since the last reset_peak(): the memory a model
// plans, without the allocator's or the C++ runtime's own overhead.
struct allocation_counter {
  std::atomic<long long> total{0};
  std::atomic<long long> live{0};
  std::atomic<long long> live_bytes{0};
  std::atomic<long long> peak_bytes{0};

  void add_bytes(long long bytes) {
    const long long now = live_bytes += bytes;
    long long peak = peak_bytes.load();
    while (now > peak && !peak_bytes.compare_exchange_weak(peak, now)) {
    }
  }
  void reset_peak() { peak_bytes = live_bytes.load(); }
};

template <class Device>
allocation_counter& allocations() {
  static allocation_counter counter;
  return counter;
}

template <class Device>
struct allocator;

template <>
struct allocator<cpu> {
  static constexpr size_t alignment = 64;
  // The block's size lives in a header one alignment unit in front of the data, so that
  // deallocate can count the bytes it gives back.
  static void* allocate(size_t bytes) {
    if (bytes == 0) return nullptr;
    const size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    void* block = std::aligned_alloc(alignment, rounded + alignment);
    if (!block) throw std::bad_alloc();
    *static_cast<size_t*>(block) = rounded;
    ++allocations<cpu>().total;
    ++allocations<cpu>().live;
    allocations<cpu>().add_bytes(static_cast<long long>(rounded));
    return static_cast<char*>(block) + alignment;
  }
  static void deallocate(void* data) {
    if (!data) return;
    void* block = static_cast<char*>(data) - alignment;
    --allocations<cpu>().live;
    allocations<cpu>().add_bytes(-static_cast<long long>(*static_cast<size_t*>(block)));
    std::free(block);
  }
};

#ifdef SEGKIT_WITH_CUDA
inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw cuda_error(std::string(what) + " failed: " + cudaGetErrorName(status) + ": " +
                     cudaGetErrorString(status));
}

template <>
struct allocator<cuda> {
  static void* allocate(size_t bytes) {
    if (bytes == 0) return nullptr;
    void* block = nullptr;
    check_cuda(cudaMalloc(&block, bytes), "cudaMalloc");
    ++allocations<cuda>().total;
    ++allocations<cuda>().live;
    return block;
  }
  static void deallocate(void* block) {
    if (!block) return;
    --allocations<cuda>().live;
    cudaFree(block);  // no throw from a destructor path
  }
};
#endif

}  // namespace segkit
