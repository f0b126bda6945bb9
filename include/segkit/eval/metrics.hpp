// segkit/eval/metrics.hpp — segmentation metrics from a confusion matrix, as mmsegmentation
// computes them, plus the boundary band of SaF's Table 2b.
// Provides:
//   eval::confusion_matrix   K x K pixel counts (row = ground truth, column = prediction) with
//                            iou(k), per_class_iou(), miou(), accuracy(k), pixel_accuracy(),
//                            mean_accuracy(), merge(), counts(), add() (optionally masked)
//   eval::argmax_classes     logits [N, K, H, W] (or [K, H, W]) -> int32 labels [N, H, W]
//   eval::boundary_mask      uint8 mask of the pixels within `radius` px of a label boundary
//   eval::boundary_options   radius (8) and whether ignore pixels make boundaries
// Definitions (mmseg's mean_iou / total_area_to_metrics):
//   pixels whose label is the ignore index take no part anywhere;
//   intersect(k) = #{label = k, pred = k}, label_area(k) = #{label = k},
//   pred_area(k) = #{pred = k, label != ignore}, union(k) = pred_area + label_area - intersect;
//   IoU(k) = intersect / union, NaN when union = 0 (class absent from both prediction and
//   ground truth) — NaN classes are left out of mIoU (nanmean), a class predicted but absent
//   from the ground truth has IoU 0 and counts; accuracy(k) = intersect / label_area (NaN when
//   absent); pixel accuracy = sum intersect / sum label_area; mIoU of nothing is NaN.
// Boundary band: a pixel is a boundary pixel when one of its 4-neighbours (inside the image)
//   has a different label value; with ignore_makes_boundary = false a pixel or neighbour equal
//   to ignore never makes a boundary. The band holds every pixel whose Euclidean distance
//   (between pixel centres) to some boundary pixel is <= radius; boundary pixels themselves
//   are in it (distance 0). Boundary mIoU = the mIoU of a confusion matrix filled only with the
//   band's pixels (its ignore pixels still ignored).
// Requires: prediction and label of the same shape, rank 2 [H, W] or 3 [N, H, W]
//   (shape_error naming both); labels in [0, K) or ignore and predictions in [0, K)
//   (value_error naming the value and the pixel). Guarantees: add() is exact integer counting;
//   the result does not depend on the number of threads.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "segkit/tensor/error.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::eval {

namespace detail {

// Images (planes) and pixels per image of a [H, W] or [N, H, W] label-like shape.
inline void check_label_shape(const char* op, const char* what, const shape& extent) {
  require<shape_error>(extent.rank() == 2 || extent.rank() == 3, op, ": ", what, " has shape ",
                       extent.to_string(), ", expected [H, W] or [N, H, W]");
}

inline double nan_value() { return std::numeric_limits<double>::quiet_NaN(); }

inline double nanmean(const std::vector<double>& values) {
  double sum = 0;
  int64_t count = 0;
  for (double v : values)
    if (!std::isnan(v)) {
      sum += v;
      ++count;
    }
  return count ? sum / static_cast<double>(count) : nan_value();
}

}  // namespace detail

class confusion_matrix {
 public:
  explicit confusion_matrix(int num_classes = 1, int32_t ignore = 255)
      : classes_(num_classes), ignore_(ignore) {
    require<value_error>(num_classes >= 1, "confusion_matrix: num_classes is ", num_classes,
                         ", expected at least 1");
    require<value_error>(ignore < 0 || ignore >= num_classes, "confusion_matrix: ignore index ",
                         ignore, " is a class id (expected outside [0, ", num_classes, "))");
    counts_.assign(static_cast<size_t>(num_classes) * static_cast<size_t>(num_classes), 0);
  }

  int num_classes() const { return classes_; }
  int32_t ignore_index() const { return ignore_; }
  // Row-major K x K: counts()[label * K + prediction].
  const std::vector<int64_t>& counts() const { return counts_; }
  int64_t count(int label, int prediction) const {
    return counts_[static_cast<size_t>(label) * static_cast<size_t>(classes_) +
                   static_cast<size_t>(prediction)];
  }
  void reset() { std::fill(counts_.begin(), counts_.end(), 0); }

  // Counts every pixel whose label is not ignore (and, with a mask, whose mask is non-zero).
  void add(const host_tensor<int32_t>& prediction, const host_tensor<int32_t>& label) {
    add_impl(prediction, label, nullptr);
  }
  void add(const host_tensor<int32_t>& prediction, const host_tensor<int32_t>& label,
           const host_tensor<uint8_t>& mask) {
    require_same_shape("confusion_matrix::add", "mask", mask.shape(), "label", label.shape());
    add_impl(prediction, label, mask.data());
  }

  void merge(const confusion_matrix& other) {
    require<value_error>(other.classes_ == classes_ && other.ignore_ == ignore_,
                         "confusion_matrix::merge: ", other.classes_, " classes (ignore ",
                         other.ignore_, ") into ", classes_, " classes (ignore ", ignore_,
                         "); expected the same");
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  }

  int64_t intersect(int k) const { return count(k, k); }
  int64_t label_area(int k) const {
    int64_t total = 0;
    for (int p = 0; p < classes_; ++p) total += count(k, p);
    return total;
  }
  int64_t prediction_area(int k) const {
    int64_t total = 0;
    for (int l = 0; l < classes_; ++l) total += count(l, k);
    return total;
  }
  int64_t total() const {
    int64_t sum = 0;
    for (int64_t c : counts_) sum += c;
    return sum;
  }

  double iou(int k) const {
    check_class("iou", k);
    const int64_t uni = label_area(k) + prediction_area(k) - intersect(k);
    return uni == 0 ? detail::nan_value()
                    : static_cast<double>(intersect(k)) / static_cast<double>(uni);
  }
  std::vector<double> per_class_iou() const {
    std::vector<double> result(static_cast<size_t>(classes_));
    for (int k = 0; k < classes_; ++k) result[static_cast<size_t>(k)] = iou(k);
    return result;
  }
  double miou() const { return detail::nanmean(per_class_iou()); }

  double accuracy(int k) const {
    check_class("accuracy", k);
    const int64_t area = label_area(k);
    return area == 0 ? detail::nan_value()
                     : static_cast<double>(intersect(k)) / static_cast<double>(area);
  }
  std::vector<double> per_class_accuracy() const {
    std::vector<double> result(static_cast<size_t>(classes_));
    for (int k = 0; k < classes_; ++k) result[static_cast<size_t>(k)] = accuracy(k);
    return result;
  }
  double mean_accuracy() const { return detail::nanmean(per_class_accuracy()); }
  double pixel_accuracy() const {
    int64_t hits = 0;
    for (int k = 0; k < classes_; ++k) hits += intersect(k);
    const int64_t all = total();
    return all == 0 ? detail::nan_value() : static_cast<double>(hits) / static_cast<double>(all);
  }

 private:
  void check_class(const char* what, int k) const {
    require<value_error>(k >= 0 && k < classes_, "confusion_matrix::", what, ": class ", k,
                         " is outside [0, ", classes_, ")");
  }

  void add_impl(const host_tensor<int32_t>& prediction, const host_tensor<int32_t>& label,
                const uint8_t* mask) {
    detail::check_label_shape("confusion_matrix::add", "label", label.shape());
    require_same_shape("confusion_matrix::add", "prediction", prediction.shape(), "label",
                       label.shape());
    const int64_t n = label.numel();
    const int32_t* lab = label.data();
    const int32_t* pred = prediction.data();
    // Validate first so a bad tensor leaves the counts untouched.
    for (int64_t i = 0; i < n; ++i) {
      const int32_t l = lab[i];
      require<value_error>(l == ignore_ || (l >= 0 && l < classes_),
                           "confusion_matrix::add: label value ", l, " at flat index ", i,
                           " is neither a class in [0, ", classes_, ") nor the ignore index ",
                           ignore_);
      if (l == ignore_ || (mask && !mask[i])) continue;
      require<value_error>(pred[i] >= 0 && pred[i] < classes_,
                           "confusion_matrix::add: prediction value ", pred[i],
                           " at flat index ", i, " is outside [0, ", classes_, ")");
    }
    const size_t k = static_cast<size_t>(classes_);
    for (int64_t i = 0; i < n; ++i) {
      const int32_t l = lab[i];
      if (l == ignore_ || (mask && !mask[i])) continue;
      ++counts_[static_cast<size_t>(l) * k + static_cast<size_t>(pred[i])];
    }
  }

  int classes_;
  int32_t ignore_;
  std::vector<int64_t> counts_;
};

// Per-pixel argmax over the class axis; ties go to the lowest class index (torch.argmax).
// logits [N, K, H, W] -> [N, H, W]; [K, H, W] -> [H, W].
inline host_tensor<int32_t> argmax_classes(const host_tensor<float>& logits) {
  const shape& s = logits.shape();
  require<shape_error>(s.rank() == 3 || s.rank() == 4, "argmax_classes: logits have shape ",
                       s.to_string(), ", expected [N, K, H, W] or [K, H, W]");
  const bool batched = s.rank() == 4;
  const int64_t n = batched ? s[0] : 1, k = s[-3], h = s[-2], w = s[-1];
  require<shape_error>(k >= 1, "argmax_classes: logits have shape ", s.to_string(),
                       ", expected at least one class");
  host_tensor<int32_t> result(batched ? shape{n, h, w} : shape{h, w});
  const int64_t plane = h * w;
  const float* in = logits.data();
  int32_t* out = result.data();
  parallel_for(0, n * plane, 1 << 14, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      const int64_t image = i / plane, pixel = i % plane;
      const float* base = in + image * k * plane + pixel;
      float best = base[0];
      int32_t best_k = 0;
      for (int64_t c = 1; c < k; ++c) {
        const float v = base[c * plane];
        if (v > best) {
          best = v;
          best_k = static_cast<int32_t>(c);
        }
      }
      out[i] = best_k;
    }
  });
  return result;
}

struct boundary_options {
  int radius = 8;                     // pixels, Euclidean, inclusive
  int32_t ignore_index = 255;
  bool ignore_makes_boundary = true;  // an edge between a class and ignore is a boundary
};

// uint8 mask (1 = in the band) of the same shape as `label` ([H, W] or [N, H, W]).
inline host_tensor<uint8_t> boundary_mask(const host_tensor<int32_t>& label,
                                          const boundary_options& options = {}) {
  detail::check_label_shape("boundary_mask", "label", label.shape());
  require<value_error>(options.radius >= 0, "boundary_mask: radius is ", options.radius,
                       ", expected >= 0");
  const shape& s = label.shape();
  const int64_t n = s.rank() == 3 ? s[0] : 1, h = s[-2], w = s[-1];
  const int64_t r = options.radius;
  const int32_t ignore = options.ignore_index;
  const bool with_ignore = options.ignore_makes_boundary;
  host_tensor<uint8_t> result(s);
  constexpr int64_t far = std::numeric_limits<int32_t>::max() / 4;
  parallel_for(0, n, 1, [&](int64_t first, int64_t last) {
    std::vector<uint8_t> edge(static_cast<size_t>(h * w));
    std::vector<int64_t> horizontal(static_cast<size_t>(h * w));  // |dx| to the nearest edge
    for (int64_t image = first; image < last; ++image) {
      const int32_t* lab = label.data() + image * h * w;
      uint8_t* out = result.data() + image * h * w;
      auto differs = [&](int32_t a, int32_t b) {
        if (a == b) return false;
        return with_ignore || (a != ignore && b != ignore);
      };
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          const int32_t v = lab[y * w + x];
          const bool is_edge = (x > 0 && differs(v, lab[y * w + x - 1])) ||
                               (x + 1 < w && differs(v, lab[y * w + x + 1])) ||
                               (y > 0 && differs(v, lab[(y - 1) * w + x])) ||
                               (y + 1 < h && differs(v, lab[(y + 1) * w + x]));
          edge[static_cast<size_t>(y * w + x)] = is_edge;
        }
      // Row pass: distance along the row to the nearest edge pixel (both directions).
      for (int64_t y = 0; y < h; ++y) {
        int64_t* row = horizontal.data() + y * w;
        const uint8_t* e = edge.data() + y * w;
        int64_t d = far;
        for (int64_t x = 0; x < w; ++x) {
          d = e[x] ? 0 : std::min(far, d + 1);
          row[x] = d;
        }
        d = far;
        for (int64_t x = w - 1; x >= 0; --x) {
          d = e[x] ? 0 : std::min(far, d + 1);
          row[x] = std::min(row[x], d);
        }
      }
      // Column pass: in band when some row y' within r has dx^2 + dy^2 <= r^2.
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          bool in_band = false;
          for (int64_t dy = -r; dy <= r && !in_band; ++dy) {
            const int64_t yy = y + dy;
            if (yy < 0 || yy >= h) continue;
            const int64_t dx = horizontal[static_cast<size_t>(yy * w + x)];
            in_band = dx <= r && dx * dx + dy * dy <= r * r;
          }
          out[y * w + x] = in_band;
        }
    }
  });
  return result;
}

}  // namespace segkit::eval
