// segkit/data/image_io.hpp — image and label files in and out, and the pictures the tools draw.
// Provides: data::read_image (PNG/JPEG/BMP/... -> [H, W, 3] RGB uint8; grey, grey+alpha and
// RGBA converted), data::read_label_image (8-bit single-channel PNG -> [H, W] uint8),
// data::write_png / data::write_jpeg (atomic: temp file beside the target + rename),
// data::colorize (train ids -> palette colours), data::overlay (alpha blend),
// data::side_by_side (images in one row with a gap).
// Requires: stb (segkit::stb links libstb, which holds the implementation; this header never
// defines STB_*_IMPLEMENTATION). Guarantees: every failure throws data::data_error whose
// message names the file and stb's reason; bad tensors throw shape_error / value_error naming
// the shapes / the value. Reading is thread-safe (stb's failure reason is thread-local and no
// global stb flag is touched), so loader threads may call these concurrently.
#pragma once
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#define SEGKIT_IMAGE_IO_POSIX 1
#endif

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include "segkit/data/dataset.hpp"
#include "segkit/tensor/error.hpp"
#include "segkit/tensor/shape.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::data {

namespace image_io_detail {

inline std::string errno_text() {
  return std::strerror(errno);
}

inline bool file_exists(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) return false;
  std::fclose(file);
  return true;
}

// Owns a buffer returned by stbi_load.
struct stbi_buffer {
  unsigned char* pixels = nullptr;
  ~stbi_buffer() {
    if (pixels) stbi_image_free(pixels);
  }
};

inline std::string failure_reason() {
  const char* reason = stbi_failure_reason();
  return reason ? reason : "unknown reason";
}

[[noreturn]] inline void fail_read(const std::string& path, const std::string& what) {
  if (!file_exists(path))
    throw data_error(path + ": cannot read " + what + ": " + errno_text() +
                     " (missing or unreadable file)");
  throw data_error(path + ": cannot decode " + what + ": " + failure_reason());
}

inline unsigned next_temp_counter() {
  static std::atomic<unsigned> counter{0};
  return counter++;
}

// Writes `bytes` to `path` atomically: a temp file in the same directory, flushed (and
// fsynced on POSIX), renamed over `path`. On failure the old file is left unchanged.
inline void write_file_atomic(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::string temp = path + ".tmp-";
#ifdef SEGKIT_IMAGE_IO_POSIX
  temp += std::to_string(static_cast<long>(::getpid())) + "-";
#endif
  temp += std::to_string(next_temp_counter());
  std::FILE* file = std::fopen(temp.c_str(), "wb");
  if (!file)
    throw data_error(path + ": cannot create temporary file " + temp + ": " + errno_text());
  bool ok =
      std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size() && std::fflush(file) == 0;
#ifdef SEGKIT_IMAGE_IO_POSIX
  ok = ok && ::fsync(::fileno(file)) == 0;
#endif
  const std::string reason = errno_text();
  if (std::fclose(file) != 0 || !ok) {
    std::remove(temp.c_str());
    throw data_error(path + ": writing " + std::to_string(bytes.size()) +
                     " bytes failed: " + reason + "; the old file is unchanged");
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    std::remove(temp.c_str());
    throw data_error(path + ": cannot rename " + temp + " over it: " + why +
                     "; the old file is unchanged");
  }
}

inline void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<unsigned char>*>(context);
  const auto* begin = static_cast<const unsigned char*>(data);
  out->insert(out->end(), begin, begin + size);
}

// Channel count of a writable image: [H, W] -> 1, [H, W, 1|3|4] -> that.
inline int writable_channels(const char* operation, const std::string& path,
                             const host_tensor<uint8_t>& image) {
  const shape& s = image.shape();
  const bool grey = s.rank() == 2;
  const bool interleaved = s.rank() == 3 && (s[2] == 1 || s[2] == 3 || s[2] == 4);
  require<shape_error>(grey || interleaved, operation, ": ", path, ": image has shape ",
                       s.to_string(), ", expected [H, W] (grey) or [H, W, 3] (RGB)");
  require<shape_error>(s[0] > 0 && s[1] > 0 && s[0] <= (1 << 24) && s[1] <= (1 << 24), operation,
                       ": ", path, ": image has shape ", s.to_string(),
                       ", expected a non-empty image");
  return grey ? 1 : static_cast<int>(s[2]);
}

}  // namespace image_io_detail

// Reads a colour image as [H, W, 3] RGB uint8 (grey is replicated, alpha dropped).
inline host_tensor<uint8_t> read_image(const std::string& path) {
  int width = 0, height = 0, channels = 0;
  image_io_detail::stbi_buffer buffer;
  buffer.pixels = stbi_load(path.c_str(), &width, &height, &channels, 3);
  if (!buffer.pixels) image_io_detail::fail_read(path, "image");
  host_tensor<uint8_t> image(shape{height, width, 3});
  std::memcpy(image.data(), buffer.pixels, image.bytes());
  return image;
}

// Reads a label image as [H, W] uint8. A grey (or grey+alpha) PNG gives its grey values; an
// RGB(A) file whose three channels are equal everywhere gives channel 0; one with colours is
// rejected (a colour or palette PNG holds no ids: stb expands palettes to RGB, and guessing a
// palette inverse would silently mislabel pixels).
inline host_tensor<uint8_t> read_label_image(const std::string& path) {
  int width = 0, height = 0, channels = 0;
  image_io_detail::stbi_buffer buffer;
  buffer.pixels = stbi_load(path.c_str(), &width, &height, &channels, 0);
  if (!buffer.pixels) image_io_detail::fail_read(path, "label image");
  host_tensor<uint8_t> label(shape{height, width});
  const int64_t pixels = label.numel();
  const unsigned char* source = buffer.pixels;
  uint8_t* target = label.data();
  if (channels <= 2) {
    for (int64_t i = 0; i < pixels; ++i) target[i] = source[i * channels];
    return label;
  }
  for (int64_t i = 0; i < pixels; ++i) {
    const unsigned char* p = source + i * channels;
    if (p[0] != p[1] || p[0] != p[2])
      throw data_error(path + ": label image has " + std::to_string(channels) +
                       " colour channels and pixel (x=" + std::to_string(i % width) +
                       ", y=" + std::to_string(i / width) + ") is (" + std::to_string(p[0]) + ", " +
                       std::to_string(p[1]) + ", " + std::to_string(p[2]) +
                       "); expected a single-channel (grey) PNG of class ids");
    target[i] = p[0];
  }
  return label;
}

// Writes [H, W] grey or [H, W, 3] RGB (also [H, W, 1] and [H, W, 4]) as PNG, atomically.
inline void write_png(const std::string& path, const host_tensor<uint8_t>& image) {
  const int channels = image_io_detail::writable_channels("write_png", path, image);
  const int height = static_cast<int>(image.size(0)), width = static_cast<int>(image.size(1));
  std::vector<unsigned char> bytes;
  if (!stbi_write_png_to_func(image_io_detail::append_bytes, &bytes, width, height, channels,
                              image.data(), width * channels))
    throw data_error(path + ": PNG encoding failed");
  image_io_detail::write_file_atomic(path, bytes);
}

// Writes [H, W] grey or [H, W, 3] RGB as baseline JPEG (quality 1..100), atomically.
inline void write_jpeg(const std::string& path, const host_tensor<uint8_t>& image,
                       int quality = 95) {
  require<value_error>(quality >= 1 && quality <= 100, "write_jpeg: ", path, ": quality ", quality,
                       " is outside [1, 100]");
  const int channels = image_io_detail::writable_channels("write_jpeg", path, image);
  const int height = static_cast<int>(image.size(0)), width = static_cast<int>(image.size(1));
  std::vector<unsigned char> bytes;
  if (!stbi_write_jpg_to_func(image_io_detail::append_bytes, &bytes, width, height, channels,
                              image.data(), quality))
    throw data_error(path + ": JPEG encoding failed");
  image_io_detail::write_file_atomic(path, bytes);
}

// Train ids [H, W] int32 -> [H, W, 3] RGB. `ignore` pixels are black; any other value
// outside [0, palette.size()) throws value_error naming the value and the pixel.
inline host_tensor<uint8_t> colorize(const host_tensor<int32_t>& labels,
                                     const std::vector<std::array<uint8_t, 3>>& palette,
                                     int32_t ignore = ignore_label) {
  require_rank("colorize", "labels", labels.shape(), 2);
  const int64_t height = labels.size(0), width = labels.size(1);
  host_tensor<uint8_t> colour(shape{height, width, 3});
  const int32_t classes = static_cast<int32_t>(palette.size());
  for (int64_t i = 0; i < labels.numel(); ++i) {
    const int32_t value = labels[i];
    uint8_t* out = colour.data() + 3 * i;
    if (value == ignore) {
      out[0] = out[1] = out[2] = 0;
      continue;
    }
    require<value_error>(value >= 0 && value < classes, "colorize: label ", value,
                         " at (x=", i % width, ", y=", i / width, ") is outside [0, ", classes,
                         ") and is not the ignore value ", ignore);
    const auto& rgb = palette[static_cast<size_t>(value)];
    out[0] = rgb[0];
    out[1] = rgb[1];
    out[2] = rgb[2];
  }
  return colour;
}

// (1 - alpha) * image + alpha * colour, rounded; both [H, W, 3], alpha in [0, 1].
inline host_tensor<uint8_t> overlay(const host_tensor<uint8_t>& image,
                                    const host_tensor<uint8_t>& colour, double alpha = 0.5) {
  require<value_error>(alpha >= 0.0 && alpha <= 1.0, "overlay: alpha ", alpha,
                       " is outside [0, 1]");
  require<shape_error>(image.shape().rank() == 3 && image.size(2) == 3, "overlay: image has shape ",
                       image.shape().to_string(), ", expected [H, W, 3]");
  require_same_shape("overlay", "image", image.shape(), "colour", colour.shape());
  host_tensor<uint8_t> result(image.shape());
  const float a = static_cast<float>(alpha), b = 1.0f - a;
  for (int64_t i = 0; i < image.numel(); ++i)
    result[i] = static_cast<uint8_t>(std::lround(b * float(image[i]) + a * float(colour[i])));
  return result;
}

// Places images left to right, top-aligned, separated by `gap` columns of `background`.
// Grey [H, W] images are shown as RGB. The result is [max H, sum W + gap * (n - 1), 3].
inline host_tensor<uint8_t> side_by_side(const std::vector<host_tensor<uint8_t>>& images,
                                         int gap = 8, uint8_t background = 255) {
  require<value_error>(!images.empty(), "side_by_side: no images given");
  require<value_error>(gap >= 0, "side_by_side: gap ", gap, " is negative");
  int64_t height = 0, width = 0;
  for (size_t k = 0; k < images.size(); ++k) {
    const shape& s = images[k].shape();
    require<shape_error>(s.rank() == 2 || (s.rank() == 3 && (s[2] == 1 || s[2] == 3)),
                         "side_by_side: image ", k, " has shape ", s.to_string(),
                         ", expected [H, W] or [H, W, 3]");
    height = std::max(height, s[0]);
    width += s[1] + (k > 0 ? gap : 0);
  }
  host_tensor<uint8_t> result(shape{height, width, 3});
  result.fill(background);
  int64_t left = 0;
  for (const auto& image : images) {
    const int64_t h = image.size(0), w = image.size(1);
    const int64_t channels = image.shape().rank() == 2 ? 1 : image.size(2);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c)
          result.at(y, left + x, c) =
              image.data()[(y * w + x) * channels + (channels == 3 ? c : 0)];
    left += w + gap;
  }
  return result;
}

}  // namespace segkit::data
