// segkit/tensor/parallel.hpp — the CPU thread pool segkit's loops run on: OpenMP, so
// OMP_NUM_THREADS (or set_num_threads) controls segkit's loops and Eigen's GEMM alike.
// Built without OpenMP, every loop runs serially and gives identical results.
// Guarantees: parallel_for calls body(first, last) on disjoint chunks covering [begin, end)
// exactly once each; chunking is static, so results never depend on scheduling.
// parallel_for_dynamic calls body(i) for every i in [begin, end) exactly once, the threads
// taking indices in increasing order as they finish (for items of unequal cost); its bodies
// must write disjoint outputs, so that the result does not depend on which thread ran what.
#pragma once
#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace segkit {

inline int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline void set_num_threads(int count) {
#ifdef _OPENMP
  omp_set_num_threads(std::max(1, count));
#else
  (void)count;
#endif
}

// Splits [begin, end) into at most num_threads() contiguous chunks of at least `grain`
// iterations; small ranges run inline without waking threads.
template <class Body>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const Body& body) {
  const int64_t count = end - begin;
  if (count <= 0) return;
  const int64_t max_chunks = std::max<int64_t>(1, count / std::max<int64_t>(1, grain));
  const int chunks = static_cast<int>(std::min<int64_t>(num_threads(), max_chunks));
#ifdef _OPENMP
  if (chunks > 1 && !omp_in_parallel()) {
#pragma omp parallel for num_threads(chunks) schedule(static, 1)
    for (int chunk = 0; chunk < chunks; ++chunk) {
      const int64_t first = begin + count * chunk / chunks;
      const int64_t last = begin + count * (chunk + 1) / chunks;
      body(first, last);
    }
    return;
  }
#endif
  (void)chunks;
  body(begin, end);
}

// One item at a time, to whichever thread is free: balances items whose costs differ (work
// the static split of parallel_for would leave one thread idle on).
template <class Body>
void parallel_for_dynamic(int64_t begin, int64_t end, const Body& body) {
#ifdef _OPENMP
  if (end - begin > 1 && num_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = begin; i < end; ++i) body(i);
    return;
  }
#endif
  for (int64_t i = begin; i < end; ++i) body(i);
}

}  // namespace segkit
