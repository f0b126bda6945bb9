// parallel_for and parallel_for_dynamic: every index visited exactly once, with several
// threads, with one, and nested inside a parallel loop (where they run inline).
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <vector>

#include "segkit/tensor/parallel.hpp"

using namespace segkit;

namespace {

std::vector<int> visits_static(int64_t count, int64_t grain) {
  std::vector<std::atomic<int>> seen(static_cast<size_t>(count));
  parallel_for(0, count, grain, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) ++seen[size_t(i)];
  });
  return std::vector<int>(seen.begin(), seen.end());
}

std::vector<int> visits_dynamic(int64_t begin, int64_t end) {
  std::vector<std::atomic<int>> seen(static_cast<size_t>(end));
  parallel_for_dynamic(begin, end, [&](int64_t i) { ++seen[size_t(i)]; });
  return std::vector<int>(seen.begin(), seen.end());
}

}  // namespace

TEST_CASE("parallel_for and parallel_for_dynamic visit every index exactly once") {
  const int saved = num_threads();
  for (const int threads : {1, 2, 3}) {
    set_num_threads(threads);
    INFO("threads " << threads);
    for (const int64_t count : {int64_t(0), int64_t(1), int64_t(2), int64_t(7), int64_t(1000)}) {
      INFO("count " << count);
      CHECK(visits_static(count, 1) == std::vector<int>(size_t(count), 1));
      CHECK(visits_dynamic(0, count) == std::vector<int>(size_t(count), 1));
    }
    // A range that does not start at 0: indices before `begin` are never visited.
    std::vector<int> expected(10, 1);
    std::fill_n(expected.begin(), 4, 0);
    CHECK(visits_dynamic(4, 10) == expected);
  }
  set_num_threads(saved);
}

TEST_CASE("parallel_for_dynamic inside a parallel loop runs inline, each index once") {
  std::vector<std::atomic<int>> seen(4 * 50);
  parallel_for(0, 4, 1, [&](int64_t first, int64_t last) {
    for (int64_t outer = first; outer < last; ++outer)
      parallel_for_dynamic(0, 50, [&](int64_t i) { ++seen[size_t(outer * 50 + i)]; });
  });
  for (size_t i = 0; i < seen.size(); ++i) {
    INFO("index " << i);
    CHECK(seen[i] == 1);
  }
}
