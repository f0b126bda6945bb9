// segkit/tensor/workspace.hpp — one growable scratch buffer per device, shared by the ops
// that need temporary memory (im2col, cuDNN algorithms, saved softmax rows).
// Guarantees: reserve(n) allocates only when n exceeds the current capacity, so after one
// pass at the largest shape nothing is allocated again. Not thread-safe: one workspace per
// thread that launches ops (default_workspace() is thread_local).
#pragma once
#include <cstddef>
#include <memory>

#include "device.hpp"

namespace segkit {

template <class Device>
class workspace {
 public:
  // A pointer to at least `bytes` bytes, valid until the next reserve() that grows.
  void* reserve(size_t bytes) {
    if (bytes > capacity_) {
      block_.reset();
      void* block = allocator<Device>::allocate(bytes);
      block_ = std::shared_ptr<void>(block, [](void* p) { allocator<Device>::deallocate(p); });
      capacity_ = bytes;
    }
    return block_.get();
  }
  template <class T>
  T* reserve_elements(size_t count) {
    return static_cast<T*>(reserve(count * sizeof(T)));
  }
  size_t capacity() const { return capacity_; }

 private:
  std::shared_ptr<void> block_;
  size_t capacity_ = 0;
};

template <class Device>
workspace<Device>& default_workspace() {
  thread_local workspace<Device> shared;
  return shared;
}

}  // namespace segkit
