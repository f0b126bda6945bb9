// segkit/tensor/dtype.hpp — element types and their safetensors names.
// Tensors hold float, int32_t or uint8_t; files may also carry the other safetensors types
// (F64, F16, BF16, I64, I8, BOOL), which segkit reads and converts where that is exact enough.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "error.hpp"

namespace segkit {

enum class dtype { f32, f64, f16, bf16, i64, i32, i8, u8, boolean };

inline const char* safetensors_name(dtype type) {
  switch (type) {
    case dtype::f32: return "F32";
    case dtype::f64: return "F64";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::i64: return "I64";
    case dtype::i32: return "I32";
    case dtype::i8: return "I8";
    case dtype::u8: return "U8";
    case dtype::boolean: return "BOOL";
  }
  return "?";
}

inline size_t element_size(dtype type) {
  switch (type) {
    case dtype::f64:
    case dtype::i64: return 8;
    case dtype::f32:
    case dtype::i32: return 4;
    case dtype::f16:
    case dtype::bf16: return 2;
    case dtype::i8:
    case dtype::u8:
    case dtype::boolean: return 1;
  }
  return 0;
}

inline dtype dtype_from_safetensors_name(const std::string& name) {
  for (dtype type : {dtype::f32, dtype::f64, dtype::f16, dtype::bf16, dtype::i64, dtype::i32,
                     dtype::i8, dtype::u8, dtype::boolean})
    if (name == safetensors_name(type)) return type;
  throw dtype_error("unknown safetensors dtype \"" + name +
                    "\", expected one of F32 F64 F16 BF16 I64 I32 I8 U8 BOOL");
}

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr dtype value = dtype::f32;
};
template <>
struct dtype_of<int32_t> {
  static constexpr dtype value = dtype::i32;
};
template <>
struct dtype_of<uint8_t> {
  static constexpr dtype value = dtype::u8;
};
template <>
struct dtype_of<int64_t> {
  static constexpr dtype value = dtype::i64;
};

template <class T>
constexpr bool is_tensor_element =
    std::is_same_v<T, float> || std::is_same_v<T, int32_t> || std::is_same_v<T, uint8_t> ||
    std::is_same_v<T, int64_t>;

}  // namespace segkit
