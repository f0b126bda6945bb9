// tests/cuda_emulation/emulated_device_memory.hpp — device memory of the CUDA emulator, shared
// by its runtime (emulated_cuda.cpp), cuBLAS (emulated_cublas.cpp) and cuDNN (emulated_cudnn.cpp).
// Guarantees: cudaMalloc'd memory is mapped without access except inside a device_access
// scope (a kernel, a copy, a memset, a library call), so host code that dereferences a device
// pointer, which crashes with a GPU, crashes here too; fail() records the error that
// cudaGetLastError and cudaGetErrorString report.
#pragma once
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <iterator>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "emulated_cuda.hpp"

namespace segkit_emulation {

inline std::map<std::uintptr_t, std::size_t> allocations;  // start -> bytes asked for
inline cudaError_t last_error = cudaSuccess;
inline std::string last_failure;

inline cudaError_t fail(cudaError_t error, const std::string& why) {
  std::fprintf(stderr, "segkit CUDA emulation: %s\n", why.c_str());
  last_failure = why;
  last_error = error;
  return error;
}

inline bool inside_allocation(const void* pointer, std::size_t bytes) {
  const auto address = reinterpret_cast<std::uintptr_t>(pointer);
  auto it = allocations.upper_bound(address);
  if (it == allocations.begin()) return false;
  --it;
  return address >= it->first && address + bytes <= it->first + it->second;
}

inline std::size_t mapped_bytes(std::size_t bytes) {
  const std::size_t page = 4096;
  return bytes == 0 ? page : (bytes + page - 1) / page * page;
}

class device_access {
 public:
  // Opens the allocations holding `pointers`, or every allocation when none is given.
  explicit device_access(std::initializer_list<const void*> pointers = {}) {
    for (const void* pointer : pointers) {
      auto it = allocations.upper_bound(reinterpret_cast<std::uintptr_t>(pointer));
      if (it != allocations.begin() && is_inside(*std::prev(it), pointer)) opened_.push_back(*--it);
    }
    if (pointers.size() == 0) opened_.assign(allocations.begin(), allocations.end());
    for (const auto& [start, bytes] : opened_)
      mprotect(reinterpret_cast<void*>(start), mapped_bytes(bytes), PROT_READ | PROT_WRITE);
  }
  ~device_access() {
    for (const auto& [start, bytes] : opened_)
      if (allocations.count(start))  // not freed meanwhile
        mprotect(reinterpret_cast<void*>(start), mapped_bytes(bytes), PROT_NONE);
  }
  device_access(const device_access&) = delete;
  device_access& operator=(const device_access&) = delete;

 private:
  static bool is_inside(const std::pair<const std::uintptr_t, std::size_t>& allocation,
                        const void* pointer) {
    const auto address = reinterpret_cast<std::uintptr_t>(pointer);
    return address >= allocation.first &&
           address < allocation.first + mapped_bytes(allocation.second);
  }
  std::vector<std::pair<std::uintptr_t, std::size_t>> opened_;
};

}  // namespace segkit_emulation
