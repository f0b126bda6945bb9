// segkit/ops/pyramid_fuse_level_map.hpp — the fuser's level map on the CPU: which level answers
// each finest location, written for a band of rows at a time (docs/kernels.md, "Level map").
// Requires: the arguments checked by detail::prepare_pyramid_fuse (pyramid_fuse_geometry.hpp).
// Guarantees: the map math::fuse_level_at gives per location (1-based), with or without
// AVX-512; with AVX-512 BW/VL and BMI2 it defines SEGKIT_FUSE_LINE_COMPARE, which the CPU fuser
// also uses to test a line of level-map entries at once.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "segkit/ops/pyramid_fuse_geometry.hpp"

// Byte compares (AVX-512 BW/VL) and bit deposit/extract (BMI2): the level map and a coarse
// level's answering cells, a 64-byte line of level-map entries at a time.
#if defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__BMI2__) && !defined(__CUDACC__)
#define SEGKIT_FUSE_LINE_COMPARE 1
#include <immintrin.h>
#endif

namespace segkit::ops::detail {

#if defined(SEGKIT_FUSE_LINE_COMPARE)
// A bit at every 2^k-th of the low `span` bits (span <= 64): the first column of each 2^k-wide
// block, for pdep to spread a cell's bit over its block and pext to keep one bit per block.
inline uint64_t block_start_bits(int64_t span, int k) {
  uint64_t bits = 0;
  for (int64_t j = 0; j < span; j += int64_t(1) << std::min(k, 6)) bits |= uint64_t(1) << j;
  return bits;
}
#endif

// The level map of one band, the finest rows under row `coarse_row` of level 1 in image n: at
// each location the coarsest level whose unity logit is confident, else the finest (as
// math::fuse_level_at decides per location).
template <class LevelT>
void fill_level_map(const pyramid_fuse_args& a, int64_t n, int64_t coarse_row, LevelT* level_map) {
  const auto& g = a.g;
  const int L = g.levels;
  const int64_t H = g.height[L - 1], W = g.width[L - 1];
  const int64_t y_begin = coarse_row << g.shift[0], y_end = (coarse_row + 1) << g.shift[0];
#if defined(SEGKIT_FUSE_LINE_COMPARE)
  // Row by row, 64 columns at a time: each level's confident cells as bits (a compare per 16
  // unity values), each bit repeated over its block's 2^k columns by pdep, and the levels laid
  // over one another from fine to coarse (runs of i.i.d. maps are a cell or two long, and
  // filling them one by one took 8% of the fuser).
  constexpr int64_t window = 64, unity_per_vector = 16;
  uint64_t block_starts[max_pyramid_levels] = {};
  for (int l = 0; l + 1 < L; ++l) block_starts[l] = block_start_bits(window, g.shift[l]);
  for (int64_t y = y_begin; y < y_end; ++y) {
    LevelT* out = level_map + (n * H + y) * W;
    for (int64_t x = 0; x < W; x += window) {
      uint64_t confident[max_pyramid_levels] = {};
      for (int l = 0; l + 1 < L; ++l) {
        const int k = g.shift[l];
        const int64_t wl = g.width[l], first_cell = x >> k;
        const float* unity = a.unity[l] + (n * g.height[l] + (y >> k)) * wl + first_cell;
        const int64_t cells = std::min(std::max<int64_t>(1, window >> k), wl - first_cell);
        uint64_t bits = 0;
        for (int64_t j = 0; j < cells; j += unity_per_vector) {
          const __mmask16 valid = static_cast<__mmask16>(
              cells - j >= unity_per_vector ? 0xFFFF : (1u << (cells - j)) - 1);
          const __mmask16 at_least = _mm512_mask_cmp_ps_mask(  // math::unity_confident
              valid, _mm512_maskz_loadu_ps(valid, unity + j),
              _mm512_set1_ps(a.unity_logit_threshold), _CMP_GE_OQ);
          bits |= uint64_t(at_least) << j;
        }
        if (k >= 6) {  // the window lies in one cell
          confident[l] = bits & 1 ? ~uint64_t(0) : 0;
          continue;
        }
        for (int column = 0; column < 1 << k; ++column)
          confident[l] |= _pdep_u64(bits, block_starts[l] << column);
      }
      const int64_t entries = std::min(window, W - x);
      if constexpr (std::is_same_v<LevelT, uint8_t>) {
        __m512i levels = _mm512_set1_epi8(static_cast<char>(L));
        for (int l = L - 2; l >= 0; --l)
          levels = _mm512_mask_mov_epi8(levels, confident[l],
                                        _mm512_set1_epi8(static_cast<char>(l + 1)));
        _mm512_mask_storeu_epi8(
            out + x, entries == window ? ~__mmask64(0) : (__mmask64(1) << entries) - 1, levels);
      } else {
        for (int64_t q = 0; q < entries; q += unity_per_vector) {
          __m512i levels = _mm512_set1_epi32(L);
          for (int l = L - 2; l >= 0; --l)
            levels = _mm512_mask_mov_epi32(levels, static_cast<__mmask16>(confident[l] >> q),
                                           _mm512_set1_epi32(l + 1));
          const int64_t lanes = std::min(unity_per_vector, entries - q);
          _mm512_mask_storeu_epi32(out + x + q, static_cast<__mmask16>((1u << lanes) - 1), levels);
        }
      }
    }
  }
#else
  for (int64_t y = y_begin; y < y_end; ++y)
    std::fill_n(level_map + (n * H + y) * W, W, static_cast<LevelT>(L));
  for (int l = L - 2; l >= 0; --l) {
    const int k = g.shift[l];
    const int64_t wl = g.width[l];
    for (int64_t yl = y_begin >> k; yl < y_end >> k; ++yl) {
      const float* unity = a.unity[l] + (n * g.height[l] + yl) * wl;
      for (int64_t xl = 0; xl < wl; ++xl) {
        if (!math::unity_confident(unity[xl], a.unity_logit_threshold)) continue;
        const int64_t begin = xl;
        while (xl + 1 < wl && math::unity_confident(unity[xl + 1], a.unity_logit_threshold)) ++xl;
        for (int64_t y = yl << k; y < (yl + 1) << k; ++y)
          std::fill_n(level_map + (n * H + y) * W + (begin << k), (xl + 1 - begin) << k,
                      static_cast<LevelT>(l + 1));
      }
    }
  }
#endif
}

}  // namespace segkit::ops::detail
