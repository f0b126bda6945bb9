// segkit/train/metrics_log.hpp — the trainer's metric files: CSV (one row per record, the
// columns fixed by the first record) and JSON lines (one object per record, any keys).
// Provides: train::metric_values, train::csv_log, train::jsonl_log, train::format_number.
// Requires: a writable directory for the file (io_error naming the path otherwise).
// Guarantees:
//   - every write is flushed, so a killed run keeps every record written before it;
//   - the first column / key is "iteration" (the steps completed); open(path, keep_through)
//     with keep_through >= 0 (a resumed run) keeps the records with iteration <= keep_through
//     and drops the rest (the part of an interrupted run that the resumed run replays), then
//     appends; with keep_through < 0 the file starts empty;
//   - CSV: the header is written with the first record (or taken from the kept file); a later
//     record's keys that are not in the header are left out of the CSV (the JSON lines keep
//     them), missing ones are empty cells. Numbers are written with 9 significant digits
//     ("%.9g"); NaN and Inf are "nan"/"inf" in CSV and null in JSON (JSON has no NaN).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "segkit/tensor/error.hpp"

namespace segkit::train {

// Named values of one record, in column order: {"lr", 0.01}, {"loss", 0.7}, ...
using metric_values = std::vector<std::pair<std::string, double>>;

inline std::string format_number(double value, bool json = false) {
  if (std::isnan(value)) return json ? "null" : "nan";
  if (std::isinf(value)) return json ? "null" : (value > 0 ? "inf" : "-inf");
  char text[40];
  std::snprintf(text, sizeof text, "%.9g", value);
  return text;
}

namespace metrics_detail {

// The lines of `path` (none if it does not exist), without their newlines.
inline std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

// The integer a record line starts with after `prefix` (-1 if it does not parse).
inline int64_t leading_iteration(const std::string& line, const std::string& prefix) {
  if (line.compare(0, prefix.size(), prefix) != 0) return -1;
  const char* begin = line.c_str() + prefix.size();
  char* end = nullptr;
  const long long value = std::strtoll(begin, &end, 10);
  return end == begin ? -1 : static_cast<int64_t>(value);
}

inline std::FILE* open_file(const std::string& path, const char* mode) {
  std::FILE* file = std::fopen(path.c_str(), mode);
  require<io_error>(file != nullptr, "metrics log: cannot open ", path, " for writing");
  return file;
}

inline void write_line(std::FILE* file, const std::string& path, const std::string& line) {
  const bool ok = std::fputs(line.c_str(), file) >= 0 && std::fputc('\n', file) != EOF &&
                  std::fflush(file) == 0;
  require<io_error>(ok, "metrics log: cannot write to ", path);
}

// Rewrites `path` with `lines` (temp file + rename, so a crash leaves the old file).
inline void rewrite(const std::string& path, const std::vector<std::string>& lines) {
  const std::string temp = path + ".tmp";
  std::FILE* file = open_file(temp, "w");
  for (const auto& line : lines) write_line(file, temp, line);
  std::fclose(file);
  require<io_error>(std::rename(temp.c_str(), path.c_str()) == 0, "metrics log: cannot rename ",
                    temp, " over ", path);
}

class log_file {
 public:
  log_file() = default;
  log_file(const log_file&) = delete;
  log_file& operator=(const log_file&) = delete;
  ~log_file() { close(); }
  bool is_open() const { return file_ != nullptr; }
  const std::string& path() const { return path_; }
  void close() {
    if (file_) std::fclose(file_);
    file_ = nullptr;
  }

 protected:
  void open_append(const std::string& path) {
    close();
    path_ = path;
    file_ = open_file(path, "a");
  }
  void line(const std::string& text) {
    require<io_error>(file_ != nullptr, "metrics log: write before open");
    write_line(file_, path_, text);
  }

  std::FILE* file_ = nullptr;
  std::string path_;
};

}  // namespace metrics_detail

class csv_log : public metrics_detail::log_file {
 public:
  void open(const std::string& path, int64_t keep_through = -1) {
    columns_.clear();
    std::vector<std::string> kept;
    if (keep_through >= 0) {
      const auto lines = metrics_detail::read_lines(path);
      if (!lines.empty() && lines[0].compare(0, 10, "iteration,") == 0) {
        kept.push_back(lines[0]);
        for (size_t k = 1; k < lines.size(); ++k) {
          const int64_t it = metrics_detail::leading_iteration(lines[k], "");
          if (it >= 0 && it <= keep_through) kept.push_back(lines[k]);
        }
        size_t begin = 0;
        const std::string& header = lines[0];
        while (begin <= header.size()) {
          size_t end = header.find(',', begin);
          if (end == std::string::npos) end = header.size();
          columns_.push_back(header.substr(begin, end - begin));
          begin = end + 1;
        }
      }
    }
    metrics_detail::rewrite(path, kept);
    open_append(path);
  }

  // One row; the first call fixes the columns (iteration, then the keys of `values`).
  void write(int64_t iteration, const metric_values& values) {
    if (columns_.empty()) {
      columns_.push_back("iteration");
      std::string header = "iteration";
      for (const auto& [key, value] : values) {
        columns_.push_back(key);
        header += "," + key;
      }
      line(header);
    }
    std::string row = std::to_string(iteration);
    for (size_t c = 1; c < columns_.size(); ++c) {
      row += ",";
      for (const auto& [key, value] : values)
        if (key == columns_[c]) {
          row += format_number(value);
          break;
        }
    }
    line(row);
  }
  const std::vector<std::string>& columns() const { return columns_; }

 private:
  std::vector<std::string> columns_;
};

class jsonl_log : public metrics_detail::log_file {
 public:
  void open(const std::string& path, int64_t keep_through = -1) {
    std::vector<std::string> kept;
    if (keep_through >= 0)
      for (const auto& text : metrics_detail::read_lines(path)) {
        const int64_t it = metrics_detail::leading_iteration(text, "{\"iteration\": ");
        if (it >= 0 && it <= keep_through) kept.push_back(text);
      }
    metrics_detail::rewrite(path, kept);
    open_append(path);
  }

  // {"iteration": N, "phase": "train", "key": value, ...}. Keys are written as given (the
  // trainer's keys are plain identifiers; quotes and backslashes are escaped).
  void write(int64_t iteration, const std::string& phase, const metric_values& values) {
    std::string text = "{\"iteration\": " + std::to_string(iteration) + ", \"phase\": \"" +
                       escape(phase) + "\"";
    for (const auto& [key, value] : values)
      text += ", \"" + escape(key) + "\": " + format_number(value, true);
    line(text + "}");
  }

 private:
  static std::string escape(const std::string& text) {
    std::string out;
    for (char c : text) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    return out;
  }
};

}  // namespace segkit::train
