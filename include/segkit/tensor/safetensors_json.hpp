// segkit/tensor/safetensors_json.hpp — the pieces of the safetensors reader and writer that
// are not about tensors: a strict, bounded JSON reader for the header subset (objects, strings
// with escapes, arrays of non-negative integers), UTF-8 validation, JSON string escaping, and
// F16 / BF16 to float conversion. Used by safetensors.hpp; not a general JSON library.
// Guarantees: the reader never reads past the text it is given, never recurses on input, and
// reports every problem as an io_error naming the file and the header byte.
#pragma once
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "error.hpp"

namespace segkit {
namespace safetensors_detail {

// The Rust reference refuses headers over 100 MB; so do we, before allocating anything.
constexpr uint64_t max_header_bytes = 100000000;

inline bool host_is_little_endian() {
  const uint16_t probe = 1;
  unsigned char first = 0;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

inline bool valid_utf8(const char* text, size_t size) {
  const auto* s = reinterpret_cast<const unsigned char*>(text);
  size_t i = 0;
  while (i < size) {
    const unsigned c = s[i];
    size_t extra = 0;
    uint32_t code = 0, minimum = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1, code = c & 0x1F, minimum = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, code = c & 0x0F, minimum = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, code = c & 0x07, minimum = 0x10000;
    } else {
      return false;
    }
    if (size - i <= extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      code = (code << 6) | (s[i + k] & 0x3F);
    }
    if (code < minimum || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

inline void append_utf8(std::string& out, uint32_t code) {
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xC0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else if (code < 0x10000) {
    out += static_cast<char>(0xE0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code >> 18));
    out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  }
}

// A strict reader for the JSON subset safetensors headers use: objects, arrays of
// non-negative integers, strings. Schema-driven, so nesting depth is fixed (no recursion a
// hostile file could exhaust). Every failure is an io_error naming the file and the byte.
class json_reader {
 public:
  json_reader(const char* text, size_t size, const std::string& source)
      : text_(text), size_(size), source_(source) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw io_error(source_ + ": malformed safetensors header: " + what + " (at header byte " +
                   std::to_string(pos_) + ")");
  }
  void skip_space() {
    while (pos_ < size_ && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' ||
                            text_[pos_] == '\r'))
      ++pos_;
  }
  bool consume(char c) {
    skip_space();
    if (pos_ < size_ && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c, const char* context) {
    if (!consume(c)) fail(std::string("expected '") + c + "' " + context);
  }
  bool at_end() {
    skip_space();
    return pos_ == size_;
  }

  std::string string(const char* context) {
    expect('"', context);
    std::string out;
    for (;;) {
      if (pos_ >= size_) fail("unterminated string");
      const char c = text_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character inside a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= size_) fail("unterminated escape");
      const char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t code = hex4();
          if (code >= 0xDC00 && code <= 0xDFFF) fail("lone low surrogate in \\u escape");
          if (code >= 0xD800 && code <= 0xDBFF) {
            if (pos_ + 2 > size_ || text_[pos_] != '\\' || text_[pos_ + 1] != 'u')
              fail("high surrogate not followed by a low surrogate");
            pos_ += 2;
            const uint32_t low = hex4();
            if (low < 0xDC00 || low > 0xDFFF)
              fail("high surrogate not followed by a low surrogate");
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, code);
          break;
        }
        default: fail(std::string("invalid escape '\\") + e + "'");
      }
    }
  }

  // A JSON number that must be a non-negative integer fitting in `limit`.
  uint64_t integer(const char* what, uint64_t limit) {
    skip_space();
    if (pos_ < size_ && text_[pos_] == '-') fail(std::string(what) + " is negative");
    if (pos_ >= size_ || text_[pos_] < '0' || text_[pos_] > '9')
      fail(std::string(what) + " is not a non-negative integer");
    const size_t start = pos_;
    uint64_t value = 0;
    while (pos_ < size_ && text_[pos_] >= '0' && text_[pos_] <= '9') {
      const auto digit = static_cast<uint64_t>(text_[pos_] - '0');
      if (value > (limit - digit) / 10) fail(std::string(what) + " is too large");
      value = value * 10 + digit;
      ++pos_;
    }
    if (pos_ - start > 1 && text_[start] == '0') fail(std::string(what) + " has a leading zero");
    if (pos_ < size_ && (text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E'))
      fail(std::string(what) + " is not an integer");
    return value;
  }

  std::vector<uint64_t> integer_array(const char* what, uint64_t limit) {
    expect('[', (std::string("to open ") + what).c_str());
    std::vector<uint64_t> values;
    if (consume(']')) return values;
    do {
      if (values.size() > 64) fail(std::string(what) + " has too many entries");
      values.push_back(integer(what, limit));
    } while (consume(','));
    expect(']', (std::string("to close ") + what).c_str());
    return values;
  }

  // Calls member(key) for each member, positioned at its value; rejects duplicate keys.
  template <class Member>
  void object(const char* context, Member&& member) {
    expect('{', context);
    if (consume('}')) return;
    std::set<std::string> seen;
    do {
      std::string key = string("to open a key");
      if (!seen.insert(key).second) fail("duplicate key \"" + key + "\"");
      expect(':', "after a key");
      member(key);
    } while (consume(','));
    expect('}', "or ',' between members");
  }

 private:
  uint32_t hex4() {
    if (size_ - pos_ < 4) fail("truncated \\u escape");
    uint32_t code = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = text_[pos_++];
      code <<= 4;
      if (h >= '0' && h <= '9')
        code |= static_cast<uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f')
        code |= static_cast<uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        code |= static_cast<uint32_t>(h - 'A' + 10);
      else
        fail("bad hex digit in \\u escape");
    }
    return code;
  }

  const char* text_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& source_;
};

inline void append_json_string(std::string& out, const std::string& text) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"')
      out += "\\\"";
    else if (c == '\\')
      out += "\\\\";
    else if (u < 0x20)
      out += std::string("\\u00") + hex[u >> 4] + hex[u & 15];
    else
      out += c;
  }
  out += '"';
}

inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu, bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal half: normalise into a float
      exponent = 127 - 15 + 1;
      while (!(mantissa & 0x400u)) mantissa <<= 1, --exponent;
      bits = sign | (exponent << 23) | ((mantissa & 0x3FFu) << 13);
    }
  } else if (exponent == 31) {
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

inline float bfloat16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

inline unsigned long next_temp_counter() {
  static std::atomic<unsigned long> counter{0};
  return counter++;
}

inline std::string errno_text() {
  return std::strerror(errno);
}

}  // namespace safetensors_detail

}  // namespace segkit
