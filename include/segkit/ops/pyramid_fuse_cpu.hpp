// segkit/ops/pyramid_fuse_cpu.hpp — the fuser's CPU machinery (docs/kernels.md has the design
// and benchmarks.md the measurements behind each choice): which cells of a level answer, the
// argmax over chunks of a level's plane in groups of one 64-byte line, the labels written, and
// the fused-logits copy built vector by vector from per-band pieces and streamed out. The level
// map they read is pyramid_fuse_level_map.hpp's.
// Requires: the arguments checked by detail::prepare_pyramid_fuse (pyramid_fuse_geometry.hpp).
// Guarantees: the same labels, level map and fused logits as math::fuse_level_at and
// math::argmax_step decide per location (the CUDA kernel's arithmetic), with or without
// AVX-512; no allocation in steady state (a thread keeps its band buffer, grown once).
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "segkit/ops/pyramid_fuse_geometry.hpp"
#include "segkit/ops/pyramid_fuse_level_map.hpp"  // fill_level_map, SEGKIT_FUSE_LINE_COMPARE

#if defined(__AVX512F__) && !defined(__CUDACC__)
#include <immintrin.h>  // the argmax, answering masks and logits copy, 16 cells a vector
#endif

namespace segkit::ops::detail {

// The CPU argmax reads a level's cells as flat ranges of its plane (whole rows are contiguous
// in every channel plane), fuse_chunk cells at a time: their running best and argmax (8 KB)
// stay in L1 and each channel is read in runs of up to 4 KB, where a row-by-row argmax reads
// 150 runs of 512 B, 64 KB apart, per row, which the prefetchers serve poorly.
constexpr int64_t fuse_chunk = 1024;
// One 64-byte line of floats: a group's logits are read only if one of its cells answers.
constexpr int64_t fuse_group = 16;
// Channels folded per visit of a group, its running best held in registers; the lines of the
// next block's channels are prefetched meanwhile (measured 1.2x faster than without).
constexpr int32_t fuse_channel_block = 4;
// Lines requested ahead of the loads: a chunk with few answering groups prefetches more
// channels ahead (at least one block), so that a few groups still keep this many lines in
// flight. (Its gain was within this machine's noise; it measured no worse.)
constexpr int64_t fuse_lines_ahead = 64;

// Into L2, not L1 (prefetcht1): channel planes of a multiple of 4 KB (32 x 32 floats and up) put
// a group's line of every channel in one L1 set, and with the next block's lines in flight beside
// the block's own and best/arg, prefetching into L1 evicted lines before they were read (1.2-1.5x
// slower on an AMD Zen 4's 8-way L1; docs/benchmarks.md). The load finds the line in L2.
inline void prefetch_line(const float* p) {
#if defined(__GNUC__)
  __builtin_prefetch(p, 0, 2);
#else
  (void)p;
#endif
}

// Folds channels [c0, c1) of `lanes` cells (planes `plane` apart) into best/arg: the portable
// form of argmax_group_block, also used for a chunk's last, partial group and the last channels.
inline void argmax_cells(const float* cells, int64_t plane, int32_t c0, int32_t c1, int64_t lanes,
                         float* best, int32_t* arg) {
  for (int32_t c = c0; c < c1; ++c) {
    const float* p = cells + c * plane;
    for (int64_t lane = 0; lane < lanes; ++lane)
      math::argmax_step(p[lane], c, best[lane], arg[lane]);
  }
}

// Folds channels [c0, c0 + fuse_channel_block) of one group into best/arg and prefetches the
// group's lines `distance` channels after the first `ahead` of them.
inline void argmax_group_block(const float* cells, int64_t plane, int32_t c0, int32_t distance,
                               int32_t ahead, float* best, int32_t* arg) {
#if defined(__AVX512F__) && !defined(__CUDACC__)
  __m512 b = _mm512_loadu_ps(best);
  __m512i a = _mm512_loadu_si512(arg);
  for (int32_t i = 0; i < fuse_channel_block; ++i) {
    const float* p = cells + (c0 + i) * plane;
    if (i < ahead) prefetch_line(p + distance * plane);
    const __m512 v = _mm512_loadu_ps(p);
    const __mmask16 greater = _mm512_cmp_ps_mask(v, b, _CMP_GT_OQ);  // math::argmax_step
    b = _mm512_mask_mov_ps(b, greater, v);
    a = _mm512_mask_mov_epi32(a, greater, _mm512_set1_epi32(c0 + i));
  }
  _mm512_storeu_ps(best, b);
  _mm512_storeu_si512(arg, a);
#else
  for (int32_t i = 0; i < ahead; ++i) prefetch_line(cells + (c0 + distance + i) * plane);
  argmax_cells(cells, plane, c0, c0 + fuse_channel_block, fuse_group, best, arg);
#endif
}

// The cells of one argmax: groups of fuse_group cells at cells + g * fuse_group for g in
// index[0, count); group last_group holds only last_lanes cells. Bit j of answers[g]: cell
// g * fuse_group + j answers.
struct fuse_groups {
  uint16_t answers[fuse_chunk / fuse_group];
  int32_t index[fuse_chunk / fuse_group];
  int64_t count = 0, last_group = 0, last_lanes = 0;
  int64_t lanes(int64_t g) const { return g == last_group ? last_lanes : fuse_group; }
  // Channels the prefetch runs ahead: one block, more when there are few groups.
  int32_t distance() const {
    const int64_t blocks = (fuse_lines_ahead / fuse_channel_block + count - 1) / count;
    return fuse_channel_block * static_cast<int32_t>(std::min<int64_t>(blocks, 8));
  }
};

// best/arg of the groups' cells = channel 0; the first channels' lines are requested.
inline void argmax_start(const float* cells, int64_t plane, int64_t channels,
                         const fuse_groups& groups, float* best, int32_t* arg) {
  const int32_t first_channels = std::min<int32_t>(int32_t(channels), 1 + groups.distance());
  for (int64_t i = 0; i < groups.count; ++i) {
    const int64_t j = groups.index[i] * fuse_group;
    for (int64_t lane = 0; lane < groups.lanes(groups.index[i]); ++lane) {
      best[j + lane] = cells[j + lane];
      arg[j + lane] = 0;
    }
    for (int32_t c = 1; c < first_channels; ++c) prefetch_line(cells + c * plane + j);
  }
}

// Folds channels [c_begin, c_end) of the groups' cells into best/arg (indexed like cells).
inline void argmax_fold(const float* cells, int64_t plane, int64_t channels, int32_t c_begin,
                        int32_t c_end, const fuse_groups& groups, float* best, int32_t* arg) {
  const int32_t C = static_cast<int32_t>(channels), distance = groups.distance();
  int32_t c0 = c_begin;
  for (; c0 + fuse_channel_block <= c_end; c0 += fuse_channel_block) {
    const int32_t ahead = std::clamp(C - (c0 + distance), 0, fuse_channel_block);
    for (int64_t i = 0; i < groups.count; ++i) {
      const int64_t g = groups.index[i], j = g * fuse_group;
      if (groups.lanes(g) == fuse_group)
        argmax_group_block(cells + j, plane, c0, distance, ahead, best + j, arg + j);
      else
        argmax_cells(cells + j, plane, c0, c0 + fuse_channel_block, groups.lanes(g), best + j,
                     arg + j);
    }
  }
  for (int64_t i = 0; c0 < c_end && i < groups.count; ++i) {
    const int64_t g = groups.index[i], j = g * fuse_group;
    argmax_cells(cells + j, plane, c0, c_end, groups.lanes(g), best + j, arg + j);
  }
}

// Bit j set where cells[j] == value, for j < lanes <= fuse_group.
template <class LevelT>
uint16_t equal_lanes(const LevelT* cells, int64_t lanes, LevelT value) {
#if defined(__AVX512BW__) && defined(__AVX512VL__) && !defined(__CUDACC__)
  const __mmask16 valid = static_cast<__mmask16>((1u << lanes) - 1);
  if constexpr (std::is_same_v<LevelT, uint8_t>)
    return _mm_mask_cmpeq_epi8_mask(valid, _mm_maskz_loadu_epi8(valid, cells),
                                    _mm_set1_epi8(static_cast<char>(value)));
  else
    return _mm512_mask_cmpeq_epi32_mask(valid, _mm512_maskz_loadu_epi32(valid, cells),
                                        _mm512_set1_epi32(value));
#else
  uint16_t bits = 0;
  for (int64_t j = 0; j < lanes; ++j) bits |= static_cast<uint16_t>((cells[j] == value) << j);
  return bits;
#endif
}

#if defined(SEGKIT_FUSE_LINE_COMPARE)
// Level-map entries in one 64-byte line.
template <class LevelT>
constexpr int64_t entries_per_line = 64 / int64_t(sizeof(LevelT));

// Bit j set where entries[j] == value, for j < count <= entries_per_line<LevelT>.
template <class LevelT>
uint64_t equal_entries(const LevelT* entries, int64_t count, LevelT value) {
  if constexpr (std::is_same_v<LevelT, uint8_t>) {
    const __mmask64 valid = count == 64 ? ~__mmask64(0) : (__mmask64(1) << count) - 1;
    return _mm512_mask_cmpeq_epi8_mask(valid, _mm512_maskz_loadu_epi8(valid, entries),
                                       _mm512_set1_epi8(static_cast<char>(value)));
  } else {
    return equal_lanes(entries, count, value);
  }
}
#endif

// Cells [first, last) of level l's plane in image n, at most fuse_chunk of them: which answer
// (a cell answers iff the level map at its block's top-left is its level) and the groups that
// hold them.
template <class LevelT>
void find_answering(const pyramid_fuse_args& a, int l, int64_t n, int64_t first, int64_t last,
                    const LevelT* level_map, fuse_groups& groups) {
  const auto& g = a.g;
  const int64_t H = g.height[g.levels - 1], W = g.width[g.levels - 1], wl = g.width[l];
  const int k = g.shift[l];
  const int64_t count = last - first, group_count = (count + fuse_group - 1) / fuse_group;
  const LevelT answer = static_cast<LevelT>(l + 1);
  if (k == 0) {  // the finest level: its plane is laid out as the level map's
    const LevelT* level = level_map + n * H * W + first;
    for (int64_t group = 0; group < group_count; ++group)
      groups.answers[group] = equal_lanes(level + group * fuse_group,
                                          std::min(fuse_group, count - group * fuse_group), answer);
  } else {
#if defined(SEGKIT_FUSE_LINE_COMPARE)
    // A line of level-map entries at a time: one compare, then pext keeps the entry at each
    // cell's block's left column (every 2^k-th), one bit per cell, into a bit string.
    constexpr int64_t line = entries_per_line<LevelT>;
    const int64_t cells_per_line = std::max<int64_t>(1, line >> k);
    const uint64_t left_columns = block_start_bits(line, k);
    uint64_t bits[fuse_chunk / 64 + 1] = {};
    for (int64_t r = first / wl; r * wl < last; ++r) {
      const int64_t begin = std::max(first, r * wl), end = std::min(last, (r + 1) * wl);
      const LevelT* level = level_map + (n * H + (r << k)) * W;
      for (int64_t i = begin; i < end; i += cells_per_line) {
        const int64_t cells = std::min(cells_per_line, end - i);
        const uint64_t equal =
            equal_entries(level + ((i - r * wl) << k), ((cells - 1) << k) + 1, answer);
        const uint64_t answering = _pext_u64(equal, left_columns);
        const int64_t at = i - first, word = at / 64, bit = at % 64;
        bits[word] |= answering << bit;
        if (bit + cells > 64) bits[word + 1] |= answering >> (64 - bit);
      }
    }
    for (int64_t group = 0; group < group_count; ++group)
      groups.answers[group] = static_cast<uint16_t>(bits[group / 4] >> (group % 4 * 16));
#else
    std::fill_n(groups.answers, group_count, uint16_t(0));
    for (int64_t r = first / wl; r * wl < last; ++r) {
      const int64_t begin = std::max(first, r * wl), end = std::min(last, (r + 1) * wl);
      const LevelT* level = level_map + (n * H + (r << k)) * W;
      for (int64_t i = begin; i < end; ++i)
        if (level[(i - r * wl) << k] == answer)
          groups.answers[(i - first) / fuse_group] |= uint16_t(1u << ((i - first) % fuse_group));
    }
#endif
  }
  groups.count = 0;
  for (int64_t group = 0; group < group_count; ++group)
    if (groups.answers[group] != 0) groups.index[groups.count++] = static_cast<int32_t>(group);
  groups.last_group = group_count - 1;
  groups.last_lanes = count - groups.last_group * fuse_group;
}

// Each answering cell's argmax written to its whole block of labels (cells as above). At a
// coarser level a finest label is this level's iff the level map there says so (a block is
// answered whole), so with AVX-512 each finest row goes out 16 labels a masked store: the
// compare gives the mask and a permute repeats each cell's argmax over its block's columns.
template <class LevelT>
void write_labels(const pyramid_fuse_geometry& g, int l, int64_t n, int64_t first, int64_t last,
                  const fuse_groups& groups, const int32_t* arg, const LevelT* level_map,
                  int32_t* labels) {
  const int64_t H = g.height[g.levels - 1], W = g.width[g.levels - 1], wl = g.width[l];
  const int k = g.shift[l];
  if (k == 0) {
    int32_t* out = labels + n * H * W + first;
    for (int64_t i = 0; i < groups.count; ++i) {
      const int64_t j = groups.index[i] * fuse_group;
#if defined(__AVX512F__) && !defined(__CUDACC__)
      _mm512_mask_storeu_epi32(out + j, groups.answers[groups.index[i]],
                               _mm512_loadu_si512(arg + j));
#else
      for (int64_t lane = 0; lane < groups.lanes(groups.index[i]); ++lane)
        if (groups.answers[groups.index[i]] >> lane & 1) out[j + lane] = arg[j + lane];
#endif
    }
    return;
  }
#if defined(__AVX512BW__) && defined(__AVX512VL__) && !defined(__CUDACC__)
  const LevelT answer = static_cast<LevelT>(l + 1);
  const __m512i lane_index =
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t r = first / wl; r * wl < last; ++r) {
    const int64_t begin = std::max(first, r * wl), end = std::min(last, (r + 1) * wl);
    const int64_t x_begin = (begin - r * wl) << k, x_end = (end - r * wl) << k;
    const int32_t* row_arg = arg + (begin - first);  // the argmax of the cell at x_begin
    for (int64_t y = r << k; y < (r + 1) << k; ++y) {
      const LevelT* level = level_map + (n * H + y) * W;
      int32_t* out = labels + (n * H + y) * W;
      for (int64_t x = x_begin; x < x_end; x += fuse_group) {
        const int64_t lanes = std::min(fuse_group, x_end - x);
        const uint16_t mine = equal_lanes(level + x, lanes, answer);
        if (mine == 0) continue;
        const int64_t cells = ((x + lanes - 1) >> k) - (x >> k) + 1;
        const __m512i block_arg = _mm512_maskz_loadu_epi32(
            static_cast<__mmask16>((1u << cells) - 1), row_arg + ((x - x_begin) >> k));
        // (maskz forms: the plain ones trip GCC 12's false -Wmaybe-uninitialized, bug 105593.)
        const __m512i cell_of_lane = _mm512_sub_epi32(
            _mm512_maskz_srli_epi32(
                0xFFFF, _mm512_add_epi32(_mm512_set1_epi32(int32_t(x)), lane_index), unsigned(k)),
            _mm512_set1_epi32(int32_t(x >> k)));
        _mm512_mask_storeu_epi32(out + x, mine,
                                 _mm512_maskz_permutexvar_epi32(mine, cell_of_lane, block_arg));
      }
    }
  }
#else
  (void)level_map;
  for (int64_t r = first / wl; r * wl < last; ++r) {
    const int64_t begin = std::max(first, r * wl), end = std::min(last, (r + 1) * wl);
    for (int64_t y = r << k; y < (r + 1) << k; ++y) {
      int32_t* out = labels + (n * H + y) * W - (r * wl << k);
      for (int64_t i = begin; i < end; ++i)
        if (groups.answers[(i - first) / fuse_group] >> ((i - first) % fuse_group) & 1)
          std::fill_n(out + (i << k), int64_t(1) << k, arg[i - first]);
    }
  }
#endif
}

// Cells [first, last) of level l's plane in image n, at most fuse_chunk of them: one argmax
// per answering cell, written to its whole block of labels.
template <class LevelT>
void fuse_level_chunk(const pyramid_fuse_args& a, int l, int64_t n, int64_t first, int64_t last,
                      int32_t* labels, const LevelT* level_map) {
  const auto& g = a.g;
  const int64_t plane = g.height[l] * g.width[l];
  fuse_groups groups;
  find_answering(a, l, n, first, last, level_map, groups);
  if (groups.count == 0) return;
  const float* cells = a.semantic[l] + n * g.channels * plane + first;
  alignas(64) float best[fuse_chunk];
  int32_t arg[fuse_chunk];
  argmax_start(cells, plane, g.channels, groups, best, arg);
  argmax_fold(cells, plane, g.channels, 1, int32_t(g.channels), groups, best, arg);
  write_labels(g, l, n, first, last, groups, arg, level_map, labels);
}

// Up to fuse_group consecutive outputs of a band's fused logits (its rows, contiguous in each
// channel plane, indexed flat), inside one output vector and one finest row and answered by
// one level: lane j of output vector `vector` (j in `mask`, the first being `first_lane`)
// takes cell source + index[j] of the level's channel plane; the piece reads `cells` cells
// from `source` on. A band's pieces are found once and serve all C channels.
struct fuse_piece {
  int64_t source;
  int32_t vector;
  uint16_t mask;
  int8_t level, shift, first_lane, cells;
  int8_t index[fuse_group];
};

// The pieces of finest rows [y_begin, y_end) of image n, in output order.
template <class LevelT>
void find_pieces(const pyramid_fuse_geometry& g, int64_t n, int64_t y_begin, int64_t y_end,
                 const LevelT* level_map, std::vector<fuse_piece>& pieces) {
  const int64_t H = g.height[g.levels - 1], W = g.width[g.levels - 1];
  const int64_t count = (y_end - y_begin) * W;
  pieces.clear();
  for (int64_t f = 0; f < count;) {
    const int64_t y = y_begin + f / W, x = f % W, lane = f % fuse_group;
    const LevelT* level = level_map + (n * H + y) * W;
    const int64_t limit = std::min(W, x + fuse_group - lane);  // the row's or the vector's end
    int64_t stop = x + 1;
    while (stop < limit && level[stop] == level[x]) ++stop;
    fuse_piece piece{};
    piece.level = static_cast<int8_t>(level[x] - 1);
    piece.shift = static_cast<int8_t>(g.shift[piece.level]);
    piece.first_lane = static_cast<int8_t>(lane);
    piece.vector = static_cast<int32_t>(f / fuse_group);
    piece.mask = static_cast<uint16_t>(((1u << (stop - x)) - 1) << lane);
    const int k = piece.shift;
    piece.source = (y >> k) * g.width[piece.level] + (x >> k);
    for (int64_t j = lane; j < lane + stop - x; ++j)
      piece.index[j] = static_cast<int8_t>(((x - lane + j) >> k) - (x >> k));
    piece.cells = static_cast<int8_t>(((stop - 1) >> k) - (x >> k) + 1);
    pieces.push_back(piece);
    f += stop - x;
  }
}

// Channels [c, c + Channels) of the fused logits of a band of `count` outputs, written vector
// by vector from the band's pieces (channel c's band at `out`, the next ones `out_plane`
// apart): a finest-level piece is one masked load, a coarser one the aligned line(s) holding
// its cells and a permute (nearest upsampling). A piece is decoded once for the block's
// channels. Full vectors go out as streaming stores where 64-byte aligned: the fused logits
// are written once and are larger than the caches, so reading their lines in first (a plain
// store's write-allocate) would double the traffic.
template <int Channels>
void copy_fused_block(const pyramid_fuse_args& a, int64_t n, int64_t c,
                      const std::vector<fuse_piece>& pieces, int64_t count, int64_t out_plane,
                      float* out) {
  const auto& g = a.g;
  const float* planes[max_pyramid_levels];
  int64_t plane_size[max_pyramid_levels];
  for (int l = 0; l < g.levels; ++l) {
    plane_size[l] = g.height[l] * g.width[l];
    planes[l] = a.semantic[l] + (n * g.channels + c) * plane_size[l];
  }
#if defined(__AVX512F__) && !defined(__CUDACC__)
  bool aligned[Channels];
  for (int i = 0; i < Channels; ++i)
    aligned[i] = reinterpret_cast<uintptr_t>(out + i * out_plane) % 64 == 0;
  const fuse_piece* piece = pieces.data();
  const fuse_piece* const end = piece + pieces.size();
  for (int64_t v = 0; v * fuse_group < count; ++v) {
    __m512 values[Channels];
    for (int i = 0; i < Channels; ++i) values[i] = _mm512_setzero_ps();
    for (; piece != end && piece->vector == v; ++piece) {
      const float* const source = planes[piece->level] + piece->source;
      const int64_t stride = plane_size[piece->level];
      // (maskz with all lanes: the plain form trips GCC 12's false -Wmaybe-uninitialized, bug
      // 105593; see attention2d.hpp.)
      const __m512i index = _mm512_maskz_cvtepi8_epi32(
          0xFFFF, _mm_loadu_si128(reinterpret_cast<const __m128i*>(piece->index)));
      for (int i = 0; i < Channels; ++i) {
        // Whole aligned lines only: a load that spans a line the piece does not read would
        // fetch that line all the same, mask or not, and the argmax did not bring it in.
        const float* at = source + i * stride;
        const float* line =
            reinterpret_cast<const float*>(reinterpret_cast<uintptr_t>(at) & ~uintptr_t(63));
        const int offset = static_cast<int>(at - line);
        if (piece->shift == 0 && offset == piece->first_lane) {  // a finest-level run, in place
          values[i] = _mm512_mask_load_ps(values[i], piece->mask, line);
          continue;
        }
        const __m512i shifted = _mm512_add_epi32(index, _mm512_set1_epi32(offset));
        const __m512 first = _mm512_load_ps(line);
        if (offset + piece->cells <= fuse_group)
          values[i] = _mm512_mask_permutexvar_ps(values[i], piece->mask, shifted, first);
        else
          values[i] = _mm512_mask_mov_ps(
              values[i], piece->mask,
              _mm512_permutex2var_ps(first, shifted, _mm512_load_ps(line + fuse_group)));
      }
    }
    for (int i = 0; i < Channels; ++i) {
      float* target = out + i * out_plane + v * fuse_group;
      if (count - v * fuse_group < fuse_group)
        _mm512_mask_storeu_ps(target, __mmask16((1u << (count - v * fuse_group)) - 1), values[i]);
      else if (aligned[i])
        _mm512_stream_ps(target, values[i]);
      else
        _mm512_storeu_ps(target, values[i]);
    }
  }
#else
  (void)count;
  for (int i = 0; i < Channels; ++i)
    for (const fuse_piece& piece : pieces) {
      const float* source = planes[piece.level] + i * plane_size[piece.level] + piece.source;
      for (int j = 0; j < fuse_group; ++j)
        if (piece.mask >> j & 1)
          out[i * out_plane + piece.vector * fuse_group + j] = source[piece.index[j]];
    }
#endif
}

// Channels [c_begin, c_end) of the band's fused logits, fuse_channel_block at a time (`out`:
// channel c_begin's band).
inline void copy_fused_channels(const pyramid_fuse_args& a, int64_t n, int64_t c_begin,
                                int64_t c_end, const std::vector<fuse_piece>& pieces, int64_t count,
                                float* out) {
  const int64_t out_plane = a.g.height[a.g.levels - 1] * a.g.width[a.g.levels - 1];
  int64_t c = c_begin;
  for (; c + fuse_channel_block <= c_end; c += fuse_channel_block)
    copy_fused_block<fuse_channel_block>(a, n, c, pieces, count, out_plane,
                                         out + (c - c_begin) * out_plane);
  for (; c < c_end; ++c)
    copy_fused_block<1>(a, n, c, pieces, count, out_plane, out + (c - c_begin) * out_plane);
}

inline void drain_streaming_stores() {
#if defined(__AVX512F__) && !defined(__CUDACC__)
  _mm_sfence();  // streaming stores are weakly ordered: drain them before the band is done
#endif
}

// Band rows [y_begin, y_end) of image n with fused logits: channel block by channel block, the
// argmax of every level's answering cells and then the copy of the same channels, so that
// the copy finds the lines the argmax has just read in L1. Needs the band's finest cells to
// fit one chunk (then every coarser level's do); wider bands take the argmax level by level
// and the copy after it.
template <class LevelT>
void fuse_band_with_logits(const pyramid_fuse_args& a, int64_t n, int64_t y_begin, int64_t y_end,
                           int32_t* labels, float* logits, const LevelT* level_map) {
  const auto& g = a.g;
  const int64_t H = g.height[g.levels - 1], W = g.width[g.levels - 1], C = g.channels;
  const int64_t count = (y_end - y_begin) * W;
  float* const out = logits + (n * C * H + y_begin) * W;  // channel c's band: out + c * H * W
  thread_local std::vector<fuse_piece> pieces;            // grown once per thread
  find_pieces(g, n, y_begin, y_end, level_map, pieces);
  if (count > fuse_chunk) {
    for (int l = 0; l < g.levels; ++l) {
      const int k = g.shift[l];
      const int64_t cells_end = (y_end >> k) * g.width[l];
      for (int64_t begin = (y_begin >> k) * g.width[l]; begin < cells_end; begin += fuse_chunk)
        fuse_level_chunk(a, l, n, begin, std::min(cells_end, begin + fuse_chunk), labels,
                         level_map);
    }
    copy_fused_channels(a, n, 0, C, pieces, count, out);
    drain_streaming_stores();
    return;
  }
  struct level_cells {
    int64_t first = 0, last = 0, plane = 0, offset = 0;  // offset into best and arg
    const float* cells = nullptr;
    fuse_groups groups;
  };
  level_cells level[max_pyramid_levels];
  alignas(64) float best[2 * fuse_chunk];  // levels 2x apart: < 4/3 fuse_chunk cells in all
  int32_t arg[2 * fuse_chunk];
  for (int l = 0, offset = 0; l < g.levels; ++l) {
    level_cells& part = level[l];
    const int k = g.shift[l];
    part.first = (y_begin >> k) * g.width[l];
    part.last = (y_end >> k) * g.width[l];
    part.plane = g.height[l] * g.width[l];
    part.cells = a.semantic[l] + n * C * part.plane + part.first;
    part.offset = offset;
    offset += int(part.last - part.first);
    find_answering(a, l, n, part.first, part.last, level_map, part.groups);
    if (part.groups.count > 0)
      argmax_start(part.cells, part.plane, C, part.groups, best + part.offset, arg + part.offset);
  }
  copy_fused_channels(a, n, 0, 1, pieces, count, out);
  for (int32_t c0 = 1; c0 < C; c0 += fuse_channel_block) {
    const int32_t c1 = std::min<int32_t>(int32_t(C), c0 + fuse_channel_block);
    for (int l = 0; l < g.levels; ++l)
      if (level[l].groups.count > 0)
        argmax_fold(level[l].cells, level[l].plane, C, c0, c1, level[l].groups,
                    best + level[l].offset, arg + level[l].offset);
    copy_fused_channels(a, n, c0, c1, pieces, count, out + c0 * H * W);
  }
  drain_streaming_stores();
  for (int l = 0; l < g.levels; ++l)
    write_labels(g, l, n, level[l].first, level[l].last, level[l].groups, arg + level[l].offset,
                 level_map, labels);
}

}  // namespace segkit::ops::detail
