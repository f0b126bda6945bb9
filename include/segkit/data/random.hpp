// segkit/data/random.hpp — the small, portable random source the data pipeline uses.
// Provides: data::mix_seed(a, b) (a splitmix64-style hash of two 64-bit values) and data::rng
// (splitmix64 generator with uniform / uniform_int / bernoulli / normal helpers).
// Guarantees: every value is a pure function of the seed and the call sequence, identical on
// every platform and standard library (std::*_distribution are not: their algorithms are
// implementation-defined), so synthetic scenes, augmentation and loader batches reproduce
// bit for bit anywhere.
#pragma once
#include <cmath>
#include <cstdint>

namespace segkit::data {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A well-mixed seed for the pair (a, b); mix_seed(a, b) != mix_seed(b, a) in general.
inline uint64_t mix_seed(uint64_t a, uint64_t b) {
  return splitmix64(splitmix64(a) ^ (b + 0x632BE59BD9B4E019ull + (a << 6) + (a >> 2)));
}

class rng {
 public:
  explicit rng(uint64_t seed) : state_(splitmix64(seed ^ 0xD1B54A32D192ED03ull)) {}
  uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ull;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double low, double high) { return low + (high - low) * uniform(); }
  // Uniform integer in [low, high] (inclusive); high >= low.
  int64_t uniform_int(int64_t low, int64_t high) {
    const uint64_t span = static_cast<uint64_t>(high - low) + 1u;
    return low + static_cast<int64_t>(next() % span);  // bias < 2^-40 for the spans used here
  }
  bool bernoulli(double p) { return uniform() < p; }
  // Standard normal (Box-Muller, one value per call).
  double normal() {
    const double u1 = 1.0 - uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t state_;
};

}  // namespace segkit::data
