// segkit/tensor/buffer_pool.hpp — short-lived float buffers (activation gradients, scratch
// activations) that a pass leases and gives back, so that a training step holds the buffers
// alive at one time, not one buffer per activation.
// How: every lease gets an offset in one arena, the lowest offset where it fits between the
// leases alive now (first fit). The offsets depend only on the order of the leases and their
// sizes, not on the arena's capacity. A lease beyond the capacity gets a block of its own for
// its lifetime, and the next time no lease is alive the arena grows to the highest offset
// seen. So a pass that repeats the leases of an earlier pass (every training step at one shape
// after setup's warm-up) allocates no tensor memory.
// Guarantees: a lease's tensor stays at one address while the lease is moved around;
// take() gives uninitialised memory, take_zeroed() zeros it; offsets are 64-byte aligned.
// Requires: a lease does not outlive its pool. Not thread-safe: default_buffer_pool() is one
// pool per thread (as default_workspace()); the arena is kept until release_idle().
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>

#include "tensor.hpp"

namespace segkit {

template <class Device>
class buffer_pool {
  struct entry {
    int64_t floats = 0;                // the lease's extent in the arena (aligned)
    tensor<float, Device> own;         // its own block when it lies beyond the arena
    tensor<float, Device> leased;      // what the leaseholder sees
  };

 public:
  using tensor_type = tensor<float, Device>;
  static constexpr int64_t alignment_floats = 16;  // 64 bytes

  // Gives its buffer back to the pool when it ends (or on release()).
  class lease {
   public:
    lease() = default;
    lease(lease&& other) noexcept
        : pool_(other.pool_), offset_(other.offset_), entry_(other.entry_) {
      other.pool_ = nullptr, other.entry_ = nullptr;
    }
    lease& operator=(lease&& other) noexcept {
      if (this != &other) {
        release();
        pool_ = other.pool_, offset_ = other.offset_, entry_ = other.entry_;
        other.pool_ = nullptr, other.entry_ = nullptr;
      }
      return *this;
    }
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    ~lease() { release(); }

    tensor_type& get() const { return entry_->leased; }
    explicit operator bool() const { return entry_ != nullptr; }
    void release() {
      if (pool_) pool_->give_back(offset_);
      pool_ = nullptr, entry_ = nullptr;
    }

   private:
    friend class buffer_pool;
    lease(buffer_pool* pool, int64_t offset, entry* leased)
        : pool_(pool), offset_(offset), entry_(leased) {}
    buffer_pool* pool_ = nullptr;
    int64_t offset_ = 0;
    entry* entry_ = nullptr;
  };

  buffer_pool() = default;
  buffer_pool(const buffer_pool&) = delete;
  buffer_pool& operator=(const buffer_pool&) = delete;

  lease take(const shape& extent) {
    const int64_t count = extent.numel();
    const int64_t floats = std::max<int64_t>(
        alignment_floats, (count + alignment_floats - 1) / alignment_floats * alignment_floats);
    // First fit: the lowest gap between the live leases (ordered by offset) that holds it.
    int64_t offset = 0;
    for (const auto& [start, live] : live_) {
      if (start - offset >= floats) break;
      offset = std::max(offset, start + live.floats);
    }
    high_water_ = std::max(high_water_, offset + floats);
    entry& e = live_[offset];
    e.floats = floats;
    if (offset + floats <= arena_.numel()) {
      e.leased = arena_.slice(offset, offset + count).view(extent);
    } else {
      e.own = tensor_type(shape{count});
      e.leased = e.own.view(extent);
      own_bytes_ += e.own.bytes();
    }
    leased_bytes_ += size_t(floats) * sizeof(float);
    peak_leased_bytes_ = std::max(peak_leased_bytes_, leased_bytes_);
    return lease(this, offset, &e);
  }
  lease take_zeroed(const shape& extent) {
    lease result = take(extent);
    result.get().zero();
    return result;
  }

  // Frees the arena when nothing is leased (memory back to the system; the next pass grows it
  // again).
  void release_idle() {
    if (live_.empty()) arena_ = tensor_type();
  }

  // Bytes held now: the arena and the blocks of leases beyond it.
  size_t held_bytes() const { return arena_.bytes() + own_bytes_; }
  size_t leased_count() const { return live_.size(); }
  // The highest offset any lease reached: the arena a repeated pass needs.
  size_t high_water_bytes() const { return size_t(high_water_) * sizeof(float); }
  // The most bytes leased at one time: what a pool without fragmentation would hold.
  size_t peak_leased_bytes() const { return peak_leased_bytes_; }

 private:
  void give_back(int64_t offset) {
    const auto found = live_.find(offset);
    own_bytes_ -= found->second.own.bytes();
    leased_bytes_ -= size_t(found->second.floats) * sizeof(float);
    live_.erase(found);
    if (live_.empty() && arena_.numel() < high_water_) {
      arena_ = tensor_type();  // the old arena first: the peak is the new one alone
      arena_ = tensor_type(shape{high_water_});
    }
  }

  tensor_type arena_;
  std::map<int64_t, entry> live_;  // by offset
  int64_t high_water_ = 0;
  size_t own_bytes_ = 0, leased_bytes_ = 0, peak_leased_bytes_ = 0;
};

template <class Device>
buffer_pool<Device>& default_buffer_pool() {
  thread_local buffer_pool<Device> pool;
  return pool;
}

}  // namespace segkit
