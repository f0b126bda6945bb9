// segkit/tensor/shape.hpp — the extent of a contiguous tensor, rank 1 to 5.
// Guarantees: every dimension is >= 0, rank is within [1, 5], numel() does not overflow
// int64 (checked on construction); to_string() prints "[2, 3, 4]" for error messages.
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "error.hpp"

namespace segkit {

class shape {
 public:
  static constexpr int max_rank = 5;

  shape() = default;
  shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
  explicit shape(const std::vector<int64_t>& dims) { assign(dims.begin(), dims.end()); }

  int rank() const { return rank_; }
  int64_t operator[](int axis) const { return dims_[static_cast<size_t>(normalize_axis(axis))]; }
  int64_t numel() const {
    int64_t count = rank_ == 0 ? 0 : 1;
    for (int i = 0; i < rank_; ++i) count *= dims_[static_cast<size_t>(i)];
    return count;
  }
  std::vector<int64_t> dims() const { return {dims_.begin(), dims_.begin() + rank_}; }

  // Accepts Python-style negative axes; throws shape_error when out of range.
  int normalize_axis(int axis) const {
    const int normalized = axis < 0 ? axis + rank_ : axis;
    require<shape_error>(normalized >= 0 && normalized < rank_, "axis ", axis,
                         " is out of range for a tensor of shape ", to_string());
    return normalized;
  }
  // Product of the dimensions in [first, last).
  int64_t span(int first, int last) const {
    int64_t count = 1;
    for (int i = first; i < last; ++i) count *= dims_[static_cast<size_t>(i)];
    return count;
  }
  shape with(int axis, int64_t extent) const {
    shape result = *this;
    result.dims_[static_cast<size_t>(normalize_axis(axis))] = extent;
    return result;
  }

  std::string to_string() const {
    std::string text = "[";
    for (int i = 0; i < rank_; ++i) {
      if (i) text += ", ";
      text += std::to_string(dims_[static_cast<size_t>(i)]);
    }
    return text + "]";
  }

  friend bool operator==(const shape& a, const shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[static_cast<size_t>(i)] != b.dims_[static_cast<size_t>(i)]) return false;
    return true;
  }
  friend bool operator!=(const shape& a, const shape& b) { return !(a == b); }

 private:
  template <class It>
  void assign(It first, It last) {
    const auto count = static_cast<int>(last - first);
    require<shape_error>(count >= 1 && count <= max_rank, "a tensor shape has rank 1 to ",
                         max_rank, ", got rank ", count);
    rank_ = count;
    int64_t total = 1;
    for (int i = 0; i < count; ++i, ++first) {
      require<shape_error>(*first >= 0, "shape dimension ", i, " is ", *first,
                           ", expected a non-negative extent");
      dims_[static_cast<size_t>(i)] = *first;
      require<shape_error>(*first == 0 || total <= INT64_MAX / *first,
                           "shape overflows int64 elements");
      total *= *first;
    }
  }

  std::array<int64_t, max_rank> dims_{};
  int rank_ = 0;
};

inline std::ostream& operator<<(std::ostream& out, const shape& s) { return out << s.to_string(); }

// Throws shape_error naming the operation and both shapes when they differ.
inline void require_same_shape(const char* operation, const char* what_a, const shape& a,
                               const char* what_b, const shape& b) {
  require<shape_error>(a == b, operation, ": ", what_a, " has shape ", a.to_string(), " but ",
                       what_b, " has shape ", b.to_string(), "; expected them equal");
}
// Throws shape_error naming the operation when `actual` is not `expected`.
inline void require_shape(const char* operation, const char* what, const shape& actual,
                          const shape& expected) {
  require<shape_error>(actual == expected, operation, ": ", what, " has shape ",
                       actual.to_string(), ", expected ", expected.to_string());
}
inline void require_rank(const char* operation, const char* what, const shape& actual,
                         int expected_rank) {
  require<shape_error>(actual.rank() == expected_rank, operation, ": ", what, " has shape ",
                       actual.to_string(), ", expected rank ", expected_rank);
}

}  // namespace segkit
