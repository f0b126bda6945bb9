// tests/scratch_dir.hpp — a fresh temporary directory per test, removed afterwards, so tests
// that write files never touch the source tree or each other's files.
#pragma once
#include <algorithm>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

namespace segkit::testing {

struct scratch_dir {
  std::filesystem::path path;
  explicit scratch_dir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() /
           ("segkit_test_" + tag + "_" + std::to_string(static_cast<long>(::getpid())));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~scratch_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

}  // namespace segkit::testing
