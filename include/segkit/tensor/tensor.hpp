// segkit/tensor/tensor.hpp — the minimal tensor: contiguous row-major (NCHW) storage of
// float, int32_t, uint8_t or int64_t on a device given by a tag type.
// Requires: rank 1..5 shapes (see shape.hpp). Guarantees: storage is shared between a tensor
// and its views (view(), slice()), so a view never copies and stays valid while any holder
// lives; clone() copies. Element access through operator[] and at() exists on cpu only.
// Copies between devices are explicit: to<cpu>(t), to<cuda>(t), copy_into(src, dst).
#pragma once
#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "device.hpp"
#include "dtype.hpp"
#include "shape.hpp"

namespace segkit {

template <class T, class Device = cpu>
class tensor {
  static_assert(is_tensor_element<T>,
                "segkit::tensor holds float, int32_t, uint8_t or int64_t elements");

 public:
  using value_type = T;
  using device_type = Device;

  tensor() = default;
  // Allocates uninitialised storage for `extent`.
  explicit tensor(const segkit::shape& extent) : shape_(extent) {
    const size_t count = static_cast<size_t>(extent.numel());
    void* block = allocator<Device>::allocate(count * sizeof(T));
    storage_ = std::shared_ptr<void>(block, [](void* p) { allocator<Device>::deallocate(p); });
    data_ = static_cast<T*>(block);
  }
  static tensor zeros(const segkit::shape& extent) {
    tensor result(extent);
    result.zero();
    return result;
  }

  const segkit::shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t size(int axis) const { return shape_[axis]; }
  int64_t numel() const { return shape_.numel(); }
  size_t bytes() const { return static_cast<size_t>(numel()) * sizeof(T); }
  bool empty() const { return numel() == 0; }
  T* data() { return data_; }
  const T* data() const { return data_; }
  // Shares the storage: writes through a view are seen by the owner.
  T* mutable_data() const { return data_; }

  // Same storage under another shape with the same element count.
  tensor view(const segkit::shape& extent) const {
    require<shape_error>(extent.numel() == numel(), "view: cannot view a tensor of shape ",
                         shape_.to_string(), " as ", extent.to_string(),
                         " (element counts differ)");
    tensor result = *this;
    result.shape_ = extent;
    return result;
  }
  // Rows [begin, end) along axis 0, without copying.
  tensor slice(int64_t begin, int64_t end) const {
    require<shape_error>(0 <= begin && begin <= end && end <= shape_[0], "slice: range [", begin,
                         ", ", end, ") is outside axis 0 of a tensor of shape ",
                         shape_.to_string());
    tensor result = *this;
    result.shape_ = shape_.with(0, end - begin);
    result.data_ = data_ + begin * shape_.span(1, shape_.rank());
    return result;
  }

  void zero();
  void fill(T value);
  tensor clone() const {
    tensor result(shape_);
    copy_bytes(result.data_, data_, bytes());
    return result;
  }

  // Flat element access, cpu only.
  template <class D = Device, class = std::enable_if_t<std::is_same_v<D, cpu>>>
  T& operator[](int64_t index) const {
    return data_[index];
  }
  // Index by coordinates, cpu only; the count of coordinates must equal the rank.
  template <class... Index, class D = Device, class = std::enable_if_t<std::is_same_v<D, cpu>>>
  T& at(Index... index) const {
    static_assert(sizeof...(Index) >= 1 && sizeof...(Index) <= shape::max_rank,
                  "at() takes one coordinate per axis");
    const int64_t coordinates[] = {static_cast<int64_t>(index)...};
    int64_t offset = 0;
    for (int axis = 0; axis < static_cast<int>(sizeof...(Index)); ++axis)
      offset = offset * shape_[axis] + coordinates[axis];
    return data_[offset];
  }

 private:
  static void copy_bytes(void* destination, const void* source, size_t count);

  std::shared_ptr<void> storage_;
  T* data_ = nullptr;
  segkit::shape shape_;
};

template <class T>
using host_tensor = tensor<T, cpu>;

// ---- cpu implementations -------------------------------------------------------------------
template <class T, class Device>
void tensor<T, Device>::copy_bytes(void* destination, const void* source, size_t count) {
  if (count == 0) return;
  if constexpr (std::is_same_v<Device, cpu>) {
    std::memcpy(destination, source, count);
  } else {
#ifdef SEGKIT_WITH_CUDA
    check_cuda(cudaMemcpy(destination, source, count, cudaMemcpyDeviceToDevice), "cudaMemcpy");
#endif
  }
}

template <class T, class Device>
void tensor<T, Device>::zero() {
  if (empty()) return;
  if constexpr (std::is_same_v<Device, cpu>) {
    std::memset(data_, 0, bytes());
  } else {
#ifdef SEGKIT_WITH_CUDA
    check_cuda(cudaMemset(data_, 0, bytes()), "cudaMemset");
#endif
  }
}

template <class T, class Device>
void tensor<T, Device>::fill(T value) {
  if constexpr (std::is_same_v<Device, cpu>) {
    std::fill(data_, data_ + numel(), value);
  } else {
    std::vector<T> host(static_cast<size_t>(numel()), value);
#ifdef SEGKIT_WITH_CUDA
    check_cuda(cudaMemcpy(data_, host.data(), bytes(), cudaMemcpyHostToDevice), "cudaMemcpy");
#endif
  }
}

// Copies src into dst (same shape), across devices when they differ.
template <class T, class From, class To>
void copy_into(const tensor<T, From>& source, tensor<T, To>& destination) {
  require_same_shape("copy_into", "source", source.shape(), "destination", destination.shape());
  if (source.empty()) return;
  if constexpr (std::is_same_v<From, cpu> && std::is_same_v<To, cpu>) {
    std::memcpy(destination.data(), source.data(), source.bytes());
  } else {
#ifdef SEGKIT_WITH_CUDA
    const cudaMemcpyKind kind = std::is_same_v<From, cpu>  ? cudaMemcpyHostToDevice
                                : std::is_same_v<To, cpu> ? cudaMemcpyDeviceToHost
                                                          : cudaMemcpyDeviceToDevice;
    check_cuda(cudaMemcpy(destination.data(), source.data(), source.bytes(), kind), "cudaMemcpy");
#else
    throw cuda_error("copy_into: segkit was built without CUDA (define SEGKIT_WITH_CUDA)");
#endif
  }
}

// A copy of `source` on device To.
template <class To, class T, class From>
tensor<T, To> to(const tensor<T, From>& source) {
  tensor<T, To> result(source.shape());
  copy_into(source, result);
  return result;
}

template <class T>
tensor<T, cpu> from_vector(const segkit::shape& extent, const std::vector<T>& values) {
  require<shape_error>(static_cast<int64_t>(values.size()) == extent.numel(), "from_vector: ",
                       values.size(), " values cannot fill shape ", extent.to_string());
  tensor<T, cpu> result(extent);
  std::copy(values.begin(), values.end(), result.data());
  return result;
}

template <class T>
std::vector<T> to_vector(const tensor<T, cpu>& source) {
  return std::vector<T>(source.data(), source.data() + source.numel());
}

}  // namespace segkit
