// segkit/ops/pyramid_sampling.hpp — PyramidSampling (ANL's PSP sampling, SaF's context): adaptive
// average pooling of every [H, W] plane to several sizes n x n, concatenated.
// Provides: pyramid_sampling_params, pyramid_sampling_positions, pyramid_sampling_output_shape,
// pyramid_sampling_forward / backward on cpu and cuda, and the math (math::pyramid_*) both run.
// Requires: x, dx of shape [N, C, H, W], H, W >= 1; a non-empty list of sizes, each >= 1 (a size
// may exceed H or W, as PyTorch allows); y, dy of shape [N, C, S], S = sum of n * n.
// Guarantees:
//   - y[n, c, offset(t) + oh * n_t + ow] = adaptive_avg_pool2d(x, n_t)[n, c, oh, ow], where the
//     positions are the sizes in the given order, each n_t x n_t bin grid row-major, and
//     offset(t) = sum of n_u^2 over u < t; bins exactly PyTorch's: [floor(i H / n), ceil((i+1) H / n));
//     so y equals torch.cat([F.adaptive_avg_pool2d(x, n).flatten(2) for n in sizes], 2);
//   - x is read once for all sizes: every bin boundary of every size is a "break"; the breaks cut
//     the plane into elementary cells, each inside the same set of bins. One pass sums the cells
//     (column sums over an elementary row band in float, then segments in double), and each bin
//     is the sum of its cells. Overlapping bins (H / n not an integer) are exact;
//   - backward ADDS into dx: each elementary cell's gradient (sum over the bins containing it of
//     dy / bin area) is computed once, then added to every pixel of the cell: one pass over dx,
//     a gather, no atomics; CPU and CUDA run the same math in the same order;
//   - scratch (geometry tables, per-thread cell sums) comes from the workspace; nothing is
//     allocated per call once the workspace is big enough.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "segkit/ops/pooling.hpp"
#include "segkit/tensor/config.hpp"
#include "segkit/tensor/mac_counter.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"
#include "segkit/tensor/workspace.hpp"

namespace segkit::ops {

struct pyramid_sampling_params {
  std::vector<int64_t> sizes{1, 3, 6, 8};  // ANL / SaF: S = 1 + 9 + 36 + 64 = 110
};

namespace math {

// The tables of one call; pointers into one int64 buffer (host, or its device copy).
struct pyramid_geometry {
  int64_t height = 0, width = 0, levels = 0, positions = 0;
  int64_t rows = 0, cols = 0;          // elementary row bands and column segments
  const int64_t* sizes = nullptr;      // [levels]
  const int64_t* offsets = nullptr;    // [levels] first position of each size
  const int64_t* row_breaks = nullptr; // [rows + 1], 0 ... height
  const int64_t* col_breaks = nullptr; // [cols + 1], 0 ... width
  const int64_t* row_of = nullptr;     // [height] elementary band of each row
  const int64_t* col_of = nullptr;     // [width] elementary segment of each column
  const int64_t* bins = nullptr;       // [positions * 4] band range [r0, r1), segment range [c0, c1)
  const int64_t* row_bins = nullptr;   // [rows * levels * 2] bin rows [oh0, oh1) holding each band
  const int64_t* col_bins = nullptr;   // [cols * levels * 2] bin columns holding each segment
};

// Sum of colsum[w0, w1) in double (colsum holds one band's column sums).
SEGKIT_HOST_DEVICE double pyramid_segment_sum(const float* colsum, int64_t w0, int64_t w1) {
  double sum = 0;
  for (int64_t w = w0; w < w1; ++w) sum += static_cast<double>(colsum[w]);
  return sum;
}

// Mean of position s from the plane's cell sums (cells[r * cols + c]).
SEGKIT_HOST_DEVICE float pyramid_bin_mean(const double* cells, const pyramid_geometry& g,
                                          int64_t s) {
  const int64_t* b = g.bins + 4 * s;
  double sum = 0;
  for (int64_t r = b[0]; r < b[1]; ++r)
    for (int64_t c = b[2]; c < b[3]; ++c) sum += cells[r * g.cols + c];
  const int64_t area =
      (g.row_breaks[b[1]] - g.row_breaks[b[0]]) * (g.col_breaks[b[3]] - g.col_breaks[b[2]]);
  return static_cast<float>(sum / static_cast<double>(area));
}

// Gradient every pixel of elementary cell (r, c) receives: sum over the sizes of dy / area over
// the bins containing the cell (tabulated per band and segment: no integer division here).
SEGKIT_HOST_DEVICE float pyramid_cell_grad(const float* dy_plane, const pyramid_geometry& g,
                                           int64_t r, int64_t c) {
  float sum = 0.f;
  for (int64_t t = 0; t < g.levels; ++t) {
    const int64_t n = g.sizes[t], offset = g.offsets[t];
    const int64_t* rb = g.row_bins + 2 * (r * g.levels + t);
    const int64_t* cb = g.col_bins + 2 * (c * g.levels + t);
    for (int64_t oh = rb[0]; oh < rb[1]; ++oh)
      for (int64_t ow = cb[0]; ow < cb[1]; ++ow) {
        const int64_t s = offset + oh * n + ow;
        const int64_t* b = g.bins + 4 * s;
        const int64_t area = (g.row_breaks[b[1]] - g.row_breaks[b[0]]) *
                             (g.col_breaks[b[3]] - g.col_breaks[b[2]]);
        sum += dy_plane[s] / static_cast<float>(area);
      }
  }
  return sum;
}

}  // namespace math

namespace detail {

inline void check_pyramid_sizes(const char* op, const pyramid_sampling_params& p) {
  require<value_error>(!p.sizes.empty(), op, ": the list of sizes is empty, expected at least one size n >= 1");
  for (size_t t = 0; t < p.sizes.size(); ++t)
    require<value_error>(p.sizes[t] >= 1, op, ": size ", t, " is ", p.sizes[t],
                         ", expected every size n >= 1");
}

// Int64 elements the geometry tables of sizes over an [H, W] plane need.
inline int64_t pyramid_geometry_elements(const pyramid_sampling_params& p, int64_t height,
                                         int64_t width, int64_t positions) {
  const int64_t levels = int64_t(p.sizes.size());
  return 2 * levels + 2 * (height + 1) + 2 * (width + 1) + 4 * positions +
         2 * levels * (height + width);
}

// Upper bound on the elementary bands (or segments) along an extent: the breaks are 0, the
// extent, and at most 2 n per size.
inline int64_t pyramid_max_bands(const pyramid_sampling_params& p, int64_t extent) {
  int64_t breaks = 2;
  for (int64_t n : p.sizes) breaks += 2 * n;
  return std::min(extent, breaks);
}

// Marks the breaks of every size along an extent into marks[0..extent], compacts them into
// breaks (in place: breaks may be marks) and fills band_of[extent]; returns the band count.
inline int64_t pyramid_breaks(const pyramid_sampling_params& p, int64_t extent, int64_t* marks,
                              int64_t* band_of) {
  std::fill(marks, marks + extent + 1, int64_t(0));
  marks[0] = marks[extent] = 1;
  for (int64_t n : p.sizes)
    for (int64_t i = 0; i < n; ++i) {
      marks[math::adaptive_start(i, extent, n)] = 1;
      marks[math::adaptive_end(i, extent, n)] = 1;
    }
  int64_t count = 0;
  for (int64_t e = 0; e <= extent; ++e)
    if (marks[e]) marks[count++] = e;  // count <= e: in-place compaction is safe
  for (int64_t band = 0; band + 1 < count; ++band)
    for (int64_t e = marks[band]; e < marks[band + 1]; ++e) band_of[e] = band;
  return count - 1;
}

// Builds the tables into buffer (pyramid_geometry_elements long) for x of shape [.., H, W].
inline math::pyramid_geometry build_pyramid_geometry(const pyramid_sampling_params& p,
                                                     int64_t height, int64_t width,
                                                     int64_t positions, int64_t* buffer) {
  math::pyramid_geometry g;
  g.height = height;
  g.width = width;
  g.levels = int64_t(p.sizes.size());
  g.positions = positions;
  int64_t* sizes = buffer;
  int64_t* offsets = sizes + g.levels;
  int64_t* row_breaks = offsets + g.levels;
  int64_t* col_breaks = row_breaks + (height + 1);
  int64_t* row_of = col_breaks + (width + 1);
  int64_t* col_of = row_of + height;
  int64_t* bins = col_of + width;
  int64_t offset = 0;
  for (int64_t t = 0; t < g.levels; ++t) {
    sizes[t] = p.sizes[size_t(t)];
    offsets[t] = offset;
    offset += sizes[t] * sizes[t];
  }
  g.rows = pyramid_breaks(p, height, row_breaks, row_of);
  g.cols = pyramid_breaks(p, width, col_breaks, col_of);
  for (int64_t t = 0; t < g.levels; ++t) {
    const int64_t n = sizes[t];
    for (int64_t oh = 0; oh < n; ++oh)
      for (int64_t ow = 0; ow < n; ++ow) {
        int64_t* b = bins + 4 * (offsets[t] + oh * n + ow);
        const int64_t h1 = math::adaptive_end(oh, height, n), w1 = math::adaptive_end(ow, width, n);
        b[0] = row_of[math::adaptive_start(oh, height, n)];
        b[1] = h1 == height ? g.rows : row_of[h1];
        b[2] = col_of[math::adaptive_start(ow, width, n)];
        b[3] = w1 == width ? g.cols : col_of[w1];
      }
  }
  // The bins of each size holding each band / segment (swapped-extent rule, from its first row).
  int64_t* row_bins = bins + 4 * positions;
  int64_t* col_bins = row_bins + 2 * g.rows * g.levels;
  for (int64_t t = 0; t < g.levels; ++t) {
    const int64_t n = sizes[t];
    for (int64_t r = 0; r < g.rows; ++r) {
      row_bins[2 * (r * g.levels + t)] = math::adaptive_start(row_breaks[r], n, height);
      row_bins[2 * (r * g.levels + t) + 1] = math::adaptive_end(row_breaks[r], n, height);
    }
    for (int64_t c = 0; c < g.cols; ++c) {
      col_bins[2 * (c * g.levels + t)] = math::adaptive_start(col_breaks[c], n, width);
      col_bins[2 * (c * g.levels + t) + 1] = math::adaptive_end(col_breaks[c], n, width);
    }
  }
  g.row_bins = row_bins;
  g.col_bins = col_bins;
  g.sizes = sizes;
  g.offsets = offsets;
  g.row_breaks = row_breaks;
  g.col_breaks = col_breaks;
  g.row_of = row_of;
  g.col_of = col_of;
  g.bins = bins;
  return g;
}

// The same tables at another address (a device copy of the buffer).
inline math::pyramid_geometry rebase(const math::pyramid_geometry& g, const int64_t* from,
                                     const int64_t* to) {
  math::pyramid_geometry moved = g;
  auto at = [&](const int64_t* p) { return to + (p - from); };
  moved.sizes = at(g.sizes);
  moved.offsets = at(g.offsets);
  moved.row_breaks = at(g.row_breaks);
  moved.col_breaks = at(g.col_breaks);
  moved.row_of = at(g.row_of);
  moved.col_of = at(g.col_of);
  moved.bins = at(g.bins);
  moved.row_bins = at(g.row_bins);
  moved.col_bins = at(g.col_bins);
  return moved;
}

}  // namespace detail

// S = sum of n * n over the sizes (validates them).
inline int64_t pyramid_sampling_positions(const pyramid_sampling_params& p) {
  detail::check_pyramid_sizes("pyramid_sampling", p);
  int64_t positions = 0;
  for (int64_t n : p.sizes) positions += n * n;
  return positions;
}

// [N, C, S] for an input of shape [N, C, H, W].
inline shape pyramid_sampling_output_shape(const pyramid_sampling_params& p, const shape& x) {
  require_rank("pyramid_sampling", "input", x, 4);
  require<shape_error>(x[2] >= 1 && x[3] >= 1, "pyramid_sampling: input has shape ",
                       x.to_string(), ", expected a non-empty spatial extent");
  return shape{x[0], x[1], pyramid_sampling_positions(p)};
}

namespace detail {
// Validates x ([N, C, H, W]) against y ([N, C, S]); what_x / what_y name them in messages.
inline void check_pyramid_sampling(const char* op, const pyramid_sampling_params& p,
                                   const char* what_x, const shape& x, const char* what_y,
                                   const shape& y) {
  check_pyramid_sizes(op, p);
  require<shape_error>(x.rank() == 4 && x[2] >= 1 && x[3] >= 1, op, ": ", what_x, " has shape ",
                       x.to_string(), ", expected [N, C, H, W] with H, W >= 1");
  const shape expected = pyramid_sampling_output_shape(p, x);
  require<shape_error>(y == expected, op, ": ", what_y, " has shape ", y.to_string(),
                       ", expected ", expected.to_string(), " for ", what_x, " of shape ",
                       x.to_string());
}

// What mac_counter.hpp counts for one forward: fvcore counts adaptive_avg_pool2d as one op per
// input element, so N * C * H * W per pooled size.
inline int64_t pyramid_sampling_macs(const pyramid_sampling_params& p, const shape& x) {
  return x.numel() * int64_t(p.sizes.size());
}

// Host scratch of one call: the geometry, then per thread `per_thread` bytes (8-aligned).
struct pyramid_scratch {
  math::pyramid_geometry geometry;
  char* threads = nullptr;
  size_t per_thread = 0;
};

inline pyramid_scratch plan_pyramid_cpu(const pyramid_sampling_params& p, const shape& x,
                                        int64_t positions, int64_t threads, bool backward,
                                        workspace<cpu>& ws) {
  const int64_t height = x[2], width = x[3];
  const int64_t tables = pyramid_geometry_elements(p, height, width, positions);
  const int64_t cells = pyramid_max_bands(p, height) * pyramid_max_bands(p, width);
  // forward: double cells + float column sums; backward: float cell grads + float row pattern
  size_t per_thread = backward ? size_t(cells + width) * sizeof(float)
                               : size_t(cells) * sizeof(double) + size_t(width) * sizeof(float);
  per_thread = (per_thread + 7) / 8 * 8;
  char* block = static_cast<char*>(
      ws.reserve(size_t(tables) * sizeof(int64_t) + size_t(threads) * per_thread));
  pyramid_scratch s;
  s.geometry = build_pyramid_geometry(p, height, width, positions, reinterpret_cast<int64_t*>(block));
  s.threads = block + size_t(tables) * sizeof(int64_t);
  s.per_thread = per_thread;
  return s;
}

// Runs body(thread, first_plane, last_plane) on a static split of the planes over the threads.
template <class Body>
void for_each_plane_range(int64_t planes, int64_t threads, const Body& body) {
  parallel_for(0, threads, 1, [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) body(t, planes * t / threads, planes * (t + 1) / threads);
  });
}

inline int64_t pyramid_threads(int64_t planes) {
  return std::max<int64_t>(1, std::min<int64_t>(num_threads(), planes));
}
}  // namespace detail

inline void pyramid_sampling_forward(const pyramid_sampling_params& params,
                                     const tensor<float, cpu>& x, tensor<float, cpu>& y,
                                     workspace<cpu>* ws = nullptr) {
  detail::check_pyramid_sampling("pyramid_sampling_forward", params, "input", x.shape(),
                                 "output", y.shape());
  add_macs(detail::pyramid_sampling_macs(params, x.shape()));
  const int64_t planes = x.size(0) * x.size(1), height = x.size(2), width = x.size(3);
  const int64_t positions = y.size(2), threads = detail::pyramid_threads(planes);
  const auto s = detail::plan_pyramid_cpu(params, x.shape(), positions, threads, false,
                                          ws ? *ws : default_workspace<cpu>());
  const math::pyramid_geometry& g = s.geometry;
  const float* in = x.data();
  float* out = y.data();
  detail::for_each_plane_range(planes, threads, [&](int64_t t, int64_t first, int64_t last) {
    double* cells = reinterpret_cast<double*>(s.threads + size_t(t) * s.per_thread);
    float* colsum = reinterpret_cast<float*>(cells + g.rows * g.cols);
    for (int64_t p = first; p < last; ++p) {
      const float* plane = in + p * height * width;
      for (int64_t r = 0; r < g.rows; ++r) {
        std::fill(colsum, colsum + width, 0.f);
        for (int64_t h = g.row_breaks[r]; h < g.row_breaks[r + 1]; ++h) {
          const float* row = plane + h * width;
          for (int64_t w = 0; w < width; ++w) colsum[w] += row[w];  // vectorised
        }
        for (int64_t c = 0; c < g.cols; ++c)
          cells[r * g.cols + c] =
              math::pyramid_segment_sum(colsum, g.col_breaks[c], g.col_breaks[c + 1]);
      }
      for (int64_t i = 0; i < positions; ++i)
        out[p * positions + i] = math::pyramid_bin_mean(cells, g, i);
    }
  });
}

inline void pyramid_sampling_backward(const pyramid_sampling_params& params,
                                      const tensor<float, cpu>& dy, tensor<float, cpu>& dx,
                                      workspace<cpu>* ws = nullptr) {
  detail::check_pyramid_sampling("pyramid_sampling_backward", params, "input gradient dx",
                                 dx.shape(), "output gradient dy", dy.shape());
  const int64_t planes = dx.size(0) * dx.size(1), height = dx.size(2), width = dx.size(3);
  const int64_t positions = dy.size(2), threads = detail::pyramid_threads(planes);
  const auto s = detail::plan_pyramid_cpu(params, dx.shape(), positions, threads, true,
                                          ws ? *ws : default_workspace<cpu>());
  const math::pyramid_geometry& g = s.geometry;
  const float* grad_out = dy.data();
  float* grad_in = dx.data();
  detail::for_each_plane_range(planes, threads, [&](int64_t t, int64_t first, int64_t last) {
    float* cell_grad = reinterpret_cast<float*>(s.threads + size_t(t) * s.per_thread);
    float* pattern = cell_grad + g.rows * g.cols;
    for (int64_t p = first; p < last; ++p) {
      const float* dy_plane = grad_out + p * positions;
      for (int64_t r = 0; r < g.rows; ++r)
        for (int64_t c = 0; c < g.cols; ++c)
          cell_grad[r * g.cols + c] = math::pyramid_cell_grad(dy_plane, g, r, c);
      float* plane = grad_in + p * height * width;
      for (int64_t r = 0; r < g.rows; ++r) {
        for (int64_t w = 0; w < width; ++w) pattern[w] = cell_grad[r * g.cols + g.col_of[w]];
        for (int64_t h = g.row_breaks[r]; h < g.row_breaks[r + 1]; ++h) {
          float* row = plane + h * width;
          for (int64_t w = 0; w < width; ++w) row[w] += pattern[w];  // vectorised
        }
      }
    }
  });
}

#ifdef SEGKIT_WITH_CUDA
void pyramid_sampling_forward(const pyramid_sampling_params& params, const tensor<float, cuda>& x,
                              tensor<float, cuda>& y, workspace<cuda>* ws = nullptr);
void pyramid_sampling_backward(const pyramid_sampling_params& params,
                               const tensor<float, cuda>& dy, tensor<float, cuda>& dx,
                               workspace<cuda>* ws = nullptr);
#endif

}  // namespace segkit::ops
