// segkit/tensor/error.hpp — the exceptions segkit throws for bad input.
// Every error derives from segkit::error (a std::runtime_error) and its message names the
// operation, the offending value and the expected one. No assert() guards user input.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace segkit {

struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A tensor's shape does not fit the operation.
struct shape_error : error {
  using error::error;
};
// A tensor's element type does not fit the operation or the file.
struct dtype_error : error {
  using error::error;
};
// A scalar argument is out of its valid range.
struct value_error : error {
  using error::error;
};
// A file is missing, unreadable, malformed or truncated.
struct io_error : error {
  using error::error;
};
// The CUDA runtime, cuBLAS or cuDNN reported a failure, or CUDA is not compiled in.
struct cuda_error : error {
  using error::error;
};

namespace detail {
template <class... Parts>
std::string concat_message(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
}  // namespace detail

// Throws ErrorType with the streamed parts as its message when `condition` is false.
template <class ErrorType, class... Parts>
void require(bool condition, const Parts&... parts) {
  if (!condition) throw ErrorType(detail::concat_message(parts...));
}

}  // namespace segkit
