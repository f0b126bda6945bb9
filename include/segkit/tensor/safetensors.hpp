// segkit/tensor/safetensors.hpp — read and write safetensors files (the format of PyTorch /
// Hugging Face checkpoints): an 8-byte little-endian u64 header length N, N bytes of UTF-8
// JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
// then the raw little-endian tensor data, offsets relative to the first byte after the header.
// Provides: segkit::tensor_file (load/parse, save/serialize, get<T>/get_float/set<T>/set_raw,
// metadata). The JSON reader and the byte-level helpers live in safetensors_json.hpp.
// Requires: a little-endian host (checked at compile time where the compiler says, and at run
// time in parse/serialize otherwise); POSIX for the fsync in save().
// Guarantees:
//   - parse never reads out of bounds; anything malformed (truncation, a header length past the
//     file or over 100 MB, bad JSON, unknown dtype, offsets that do not match the shape, data
//     regions that overlap or leave holes or do not end at the end of the file, duplicate
//     names, negative / non-integer / overflowing shapes, rank > 5) throws segkit::io_error
//     naming the file and what is wrong;
//   - a rank-0 (scalar) tensor is read as shape [1], since segkit shapes have rank 1..5;
//     saving it again writes [1];
//   - save() is atomic: it writes a temp file beside the target, fsyncs, renames it over the
//     target; on failure the temp file is removed, io_error is thrown and the old file is
//     untouched;
//   - files are written with names sorted, data in name order, the JSON header padded with
//     spaces so the data starts 8-byte aligned (as the Rust reference does).
#pragma once
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <unistd.h>
#define SEGKIT_SAFETENSORS_POSIX 1
#endif

#include "dtype.hpp"
#include "error.hpp"
#include "safetensors_json.hpp"
#include "shape.hpp"
#include "tensor.hpp"

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "segkit's safetensors reader copies raw little-endian data: it needs a "
              "little-endian host");
#endif

namespace segkit {

class tensor_file {
 public:
  tensor_file() = default;

  // ---- reading --------------------------------------------------------------------------
  static tensor_file load(const std::string& path) {
    std::FILE* file = std::fopen(path.c_str(), "rb");
    if (!file) throw io_error(path + ": cannot open: " + safetensors_detail::errno_text());
    std::vector<uint8_t> bytes;
    uint8_t buffer[1 << 16];
    size_t got;
    while ((got = std::fread(buffer, 1, sizeof buffer, file)) > 0)
      bytes.insert(bytes.end(), buffer, buffer + got);
    const bool failed = std::ferror(file) != 0;
    std::fclose(file);
    if (failed) throw io_error(path + ": read failed");
    return parse(bytes, path);
  }

  static tensor_file parse(const std::vector<uint8_t>& bytes, const std::string& source_name) {
    const std::string& src = source_name;
    require<io_error>(safetensors_detail::host_is_little_endian(), src,
                      ": segkit reads safetensors on little-endian hosts only");
    require<io_error>(bytes.size() >= 8, src, ": file is ", bytes.size(),
                      " bytes, shorter than the 8-byte header length of a safetensors file");
    uint64_t header_length = 0;
    for (int k = 7; k >= 0; --k) header_length = (header_length << 8) | bytes[size_t(k)];
    require<io_error>(header_length <= safetensors_detail::max_header_bytes, src,
                      ": header length ", header_length, " exceeds the 100 MB limit");
    require<io_error>(header_length <= bytes.size() - 8, src, ": header length ", header_length,
                      " runs past the end of the ", bytes.size(), "-byte file (truncated?)");
    require<io_error>(header_length >= 2, src, ": header length ", header_length,
                      " is too short for a JSON object");
    const char* text = reinterpret_cast<const char*>(bytes.data() + 8);
    const auto length = static_cast<size_t>(header_length);
    require<io_error>(text[0] == '{', src, ": header does not start with '{'");
    require<io_error>(safetensors_detail::valid_utf8(text, length), src,
                      ": header is not valid UTF-8");

    const size_t data_begin = 8 + length;
    const uint64_t data_size = bytes.size() - data_begin;
    std::vector<parsed_info> raw;
    tensor_file result;
    result.source_ = src;
    safetensors_detail::json_reader json(text, length, src);
    json.object("to open the header", [&](const std::string& key) {
      if (key == "__metadata__") {
        json.object("to open __metadata__", [&](const std::string& meta_key) {
          result.metadata_[meta_key] = json.string("(a __metadata__ value must be a string)");
        });
        return;
      }
      raw.push_back(parse_info(json, key, data_size, src));
    });
    if (!json.at_end()) json.fail("unexpected bytes after the header object");

    // The data regions must tile [0, data_size) exactly: no overlap, no hole, no tail.
    std::vector<const parsed_info*> order;
    for (const auto& entry : raw) order.push_back(&entry);
    std::sort(order.begin(), order.end(), [](const parsed_info* a, const parsed_info* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    uint64_t cursor = 0;
    for (const parsed_info* entry : order) {
      require<io_error>(entry->begin == cursor, src, ": tensor \"", entry->name,
                        "\" data_offsets [", entry->begin, ", ", entry->end, "] ",
                        entry->begin < cursor ? "overlap the previous tensor's data"
                                              : "leave a hole after the previous tensor's data",
                        " (expected begin ", cursor, ")");
      cursor = entry->end;
    }
    require<io_error>(cursor == data_size, src, ": tensors cover ", cursor,
                      " data bytes but the file holds ", data_size,
                      " bytes after the header (truncated or trailing garbage)");

    for (const auto& entry : raw) {
      const uint8_t* first = bytes.data() + data_begin + entry.begin;
      result.tensors_[entry.name] = {
          entry.type, entry.extent, std::vector<uint8_t>(first, first + (entry.end - entry.begin))};
    }
    return result;
  }

  // ---- writing --------------------------------------------------------------------------
  std::vector<uint8_t> serialize() const {
    require<io_error>(safetensors_detail::host_is_little_endian(),
                      "tensor_file: segkit writes safetensors on little-endian hosts only");
    std::string header = "{";
    bool first_member = true;
    if (!metadata_.empty()) {
      header += "\"__metadata__\":{";
      for (const auto& [key, value] : metadata_) {
        require_utf8(key, "metadata key");
        require_utf8(value, "metadata value of \"" + key + "\"");
        if (!first_member) header += ',';
        first_member = false;
        safetensors_detail::append_json_string(header, key);
        header += ':';
        safetensors_detail::append_json_string(header, value);
      }
      header += '}';
      first_member = false;
    }
    uint64_t offset = 0;
    for (const auto& [name, entry] : tensors_) {
      require_utf8(name, "tensor name");
      if (!first_member) header += ',';
      first_member = false;
      safetensors_detail::append_json_string(header, name);
      header += ":{\"dtype\":\"";
      header += safetensors_name(entry.type);
      header += "\",\"shape\":[";
      for (int axis = 0; axis < entry.extent.rank(); ++axis)
        header += (axis ? "," : "") + std::to_string(entry.extent[axis]);
      header += "],\"data_offsets\":[" + std::to_string(offset) + ",";
      offset += entry.bytes.size();
      header += std::to_string(offset) + "]}";
    }
    header += '}';
    header.append((8 - header.size() % 8) % 8, ' ');  // data starts 8-byte aligned

    std::vector<uint8_t> out;
    out.reserve(8 + header.size() + static_cast<size_t>(offset));
    for (int k = 0; k < 8; ++k)
      out.push_back(static_cast<uint8_t>(uint64_t(header.size()) >> (8 * k)));
    out.insert(out.end(), header.begin(), header.end());
    for (const auto& named : tensors_)
      out.insert(out.end(), named.second.bytes.begin(), named.second.bytes.end());
    return out;
  }

  // Atomic: temp file in the same directory, fsync, rename over `path`.
  void save(const std::string& path) const {
    const std::vector<uint8_t> bytes = serialize();
#ifdef SEGKIT_SAFETENSORS_POSIX
    const std::string temp = path + ".tmp-" + std::to_string(static_cast<long>(::getpid())) + "-" +
                             std::to_string(safetensors_detail::next_temp_counter());
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_TRUNC, 0644);
    if (fd < 0)
      throw io_error(path + ": cannot create temporary file " + temp + ": " +
                     safetensors_detail::errno_text());
    auto give_up = [&](const std::string& what) {
      const std::string reason = safetensors_detail::errno_text();
      ::close(fd);
      std::remove(temp.c_str());
      throw io_error(path + ": " + what + " failed: " + reason + "; the old file is unchanged");
    };
    size_t written = 0;
    while (written < bytes.size()) {
      const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (n == 0) errno = EIO;
        give_up("writing " + std::to_string(bytes.size()) + " bytes");
      }
      written += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0) give_up("fsync");
    if (::close(fd) != 0) {
      const std::string reason = safetensors_detail::errno_text();
      std::remove(temp.c_str());
      throw io_error(path + ": close failed: " + reason + "; the old file is unchanged");
    }
#else
    const std::string temp =
        path + ".tmp-" + std::to_string(safetensors_detail::next_temp_counter());
    std::FILE* file = std::fopen(temp.c_str(), "wb");
    if (!file) throw io_error(path + ": cannot create temporary file " + temp);
    const bool ok =
        std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size() && std::fflush(file) == 0;
    if (std::fclose(file) != 0 || !ok) {
      std::remove(temp.c_str());
      throw io_error(path + ": writing failed; the old file is unchanged");
    }
#endif
    if (std::rename(temp.c_str(), path.c_str()) != 0) {
      const std::string reason = safetensors_detail::errno_text();
      std::remove(temp.c_str());
      throw io_error(path + ": cannot rename " + temp + " over it: " + reason +
                     "; the old file is unchanged");
    }
  }

  // ---- access ---------------------------------------------------------------------------
  bool contains(const std::string& name) const {
    return tensors_.count(name) != 0;
  }
  size_t size() const {
    return tensors_.size();
  }
  std::vector<std::string> names() const {
    std::vector<std::string> result;
    for (const auto& named : tensors_) result.push_back(named.first);
    return result;
  }
  dtype type_of(const std::string& name) const {
    return find(name).type;
  }
  segkit::shape shape_of(const std::string& name) const {
    return find(name).extent;
  }
  // The raw little-endian bytes of a tensor.
  const std::vector<uint8_t>& raw_bytes(const std::string& name) const {
    return find(name).bytes;
  }
  // Where this file came from ("<memory>" if built in memory), for error messages.
  const std::string& source() const {
    return source_;
  }

  std::map<std::string, std::string>& metadata() {
    return metadata_;
  }
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }

  // T = float, int32_t, uint8_t, int64_t; the stored dtype must be exactly T's.
  template <class T>
  host_tensor<T> get(const std::string& name) const {
    static_assert(is_tensor_element<T>,
                  "tensor_file::get<T>: T is float, int32_t, uint8_t or int64_t");
    const entry& found = find(name);
    require<dtype_error>(
        found.type == dtype_of<T>::value, source_, ": tensor \"", name, "\" is stored as ",
        safetensors_name(found.type), ", requested ", safetensors_name(dtype_of<T>::value),
        (found.type == dtype::f64 || found.type == dtype::f16 || found.type == dtype::bf16)
            ? " (use get_float to convert)"
            : "");
    host_tensor<T> result(found.extent);
    if (!found.bytes.empty()) std::memcpy(result.data(), found.bytes.data(), found.bytes.size());
    return result;
  }

  // F32, F64, F16 or BF16 converted to float (F64 rounds to nearest).
  host_tensor<float> get_float(const std::string& name) const {
    const entry& found = find(name);
    host_tensor<float> result(found.extent);
    const uint8_t* in = found.bytes.data();
    float* out = result.data();
    const int64_t count = found.extent.numel();
    switch (found.type) {
      case dtype::f32:
        if (count) std::memcpy(out, in, found.bytes.size());
        break;
      case dtype::f64:
        for (int64_t i = 0; i < count; ++i) {
          double v;
          std::memcpy(&v, in + 8 * i, 8);
          out[i] = static_cast<float>(v);
        }
        break;
      case dtype::f16:
      case dtype::bf16:
        for (int64_t i = 0; i < count; ++i) {
          const auto h = static_cast<uint16_t>(in[2 * i] | (in[2 * i + 1] << 8));
          out[i] = found.type == dtype::f16 ? safetensors_detail::half_to_float(h)
                                            : safetensors_detail::bfloat16_to_float(h);
        }
        break;
      default:
        throw dtype_error(source_ + ": tensor \"" + name + "\" is stored as " +
                          safetensors_name(found.type) +
                          ", get_float converts F32, F64, F16 or BF16 only");
    }
    return result;
  }

  // Stores a copy of `value` under `name` (replacing any tensor of that name).
  template <class T>
  void set(const std::string& name, const host_tensor<T>& value) {
    static_assert(is_tensor_element<T>,
                  "tensor_file::set<T>: T is float, int32_t, uint8_t or int64_t");
    const auto* first = reinterpret_cast<const uint8_t*>(value.data());
    set_raw(name, dtype_of<T>::value, value.shape(),
            std::vector<uint8_t>(first, first + value.bytes()));
  }

  // Stores raw little-endian bytes of any safetensors dtype (F16, BF16, BOOL, ...).
  void set_raw(const std::string& name, dtype type, const segkit::shape& extent,
               std::vector<uint8_t> bytes) {
    require<value_error>(name != "__metadata__",
                         "tensor_file::set: the name \"__metadata__\" "
                         "is reserved for the file's metadata");
    require<value_error>(extent.rank() >= 1, "tensor_file::set: tensor \"", name,
                         "\" has no shape");
    const uint64_t expected = static_cast<uint64_t>(extent.numel()) * element_size(type);
    require<shape_error>(bytes.size() == expected, "tensor_file::set: tensor \"", name, "\" has ",
                         bytes.size(), " bytes, expected ", expected, " for shape ",
                         extent.to_string(), " of ", safetensors_name(type));
    tensors_[name] = {type, extent, std::move(bytes)};
  }

  void erase(const std::string& name) {
    tensors_.erase(name);
  }

 private:
  struct entry {
    dtype type = dtype::f32;
    segkit::shape extent;
    std::vector<uint8_t> bytes;
  };

  const entry& find(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it != tensors_.end()) return it->second;
    std::string listing;
    size_t shown = 0;
    for (const auto& named : tensors_) {
      if (shown == 32) {
        listing += ", ... (" + std::to_string(tensors_.size() - shown) + " more)";
        break;
      }
      listing += (shown++ ? ", " : "") + named.first;
    }
    throw io_error(source_ + ": no tensor named \"" + name + "\"; the file holds " +
                   std::to_string(tensors_.size()) +
                   " tensors: " + (listing.empty() ? "(none)" : listing));
  }

  static void require_utf8(const std::string& text, const std::string& what) {
    require<value_error>(safetensors_detail::valid_utf8(text.data(), text.size()),
                         "tensor_file::serialize: ", what, " is not valid UTF-8");
  }

  struct parsed_info {
    std::string name;
    dtype type;
    segkit::shape extent;
    uint64_t begin, end;
  };

  // One tensor's entry, checked against the data section's size.
  static parsed_info parse_info(safetensors_detail::json_reader& json, const std::string& name,
                                uint64_t data_size, const std::string& src) {
    std::string type_name;
    std::vector<uint64_t> dims, offsets;
    bool has_type = false, has_shape = false, has_offsets = false;
    json.object(
        ("to open the entry of tensor \"" + name + "\"").c_str(), [&](const std::string& field) {
          if (field == "dtype") {
            type_name = json.string("for dtype"), has_type = true;
          } else if (field == "shape") {
            dims = json.integer_array("a shape entry", uint64_t(INT64_MAX)), has_shape = true;
          } else if (field == "data_offsets") {
            offsets = json.integer_array("a data offset", UINT64_MAX), has_offsets = true;
          } else {
            json.fail("tensor \"" + name + "\" has unknown field \"" + field + "\"");
          }
        });
    require<io_error>(has_type && has_shape && has_offsets, src, ": tensor \"", name, "\" lacks ",
                      !has_type    ? "\"dtype\""
                      : !has_shape ? "\"shape\""
                                   : "\"data_offsets\"");
    dtype type{};
    try {
      type = dtype_from_safetensors_name(type_name);
    } catch (const dtype_error& e) {
      throw io_error(src + ": tensor \"" + name + "\": " + e.what());
    }
    require<io_error>(dims.size() <= size_t(shape::max_rank), src, ": tensor \"", name,
                      "\" has rank ", dims.size(), ", segkit supports rank 0 to ", shape::max_rank);
    require<io_error>(offsets.size() == 2, src, ": tensor \"", name, "\" has ", offsets.size(),
                      " data_offsets, expected 2 [begin, end]");
    std::string shape_text = "[";
    uint64_t count = 1;
    bool overflow = false;
    for (size_t k = 0; k < dims.size(); ++k) {
      shape_text += (k ? ", " : "") + std::to_string(dims[k]);
      if (dims[k] != 0 && count > uint64_t(INT64_MAX) / dims[k])
        overflow = true;
      else
        count *= dims[k];
    }
    shape_text += "]";
    if (dims.empty()) dims.push_back(1);  // a rank-0 scalar becomes shape [1]
    const uint64_t begin = offsets[0], end = offsets[1];
    const std::string where = src + ": tensor \"" + name + "\" data_offsets [" +
                              std::to_string(begin) + ", " + std::to_string(end) + "]";
    require<io_error>(!overflow, src, ": tensor \"", name, "\" shape ", shape_text,
                      " has more elements than int64 can count");
    require<io_error>(begin <= end, where, " end before begin");
    require<io_error>(end <= data_size, where, " run past the ", data_size,
                      " data bytes in the file (truncated?)");
    const uint64_t width = element_size(type);
    require<io_error>(count <= data_size / width && count * width == end - begin, where,
                      " do not match shape ", shape_text, " of ", type_name, " (expected ",
                      count <= data_size / width ? std::to_string(count * width) : "too many",
                      " bytes, got ", end - begin, ")");
    std::vector<int64_t> signed_dims(dims.begin(), dims.end());
    return parsed_info{name, type, segkit::shape(signed_dims), begin, end};
  }

  std::map<std::string, entry> tensors_;
  std::map<std::string, std::string> metadata_;
  std::string source_ = "<memory>";
};

}  // namespace segkit
