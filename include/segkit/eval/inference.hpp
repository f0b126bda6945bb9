// segkit/eval/inference.hpp — test-time inference of a segkit model (models/model.hpp) and the
// evaluation loop over a data::dataset.
// Provides:
//   eval::inference_options   scales, flip, sliding window size
//   eval::predict_logits(model, image [N, 3, H, W] normalised, options) -> logits [N, K, H, W]
//   eval::evaluate_options    inference options + boundary band + image limit
//   eval::evaluation          confusion matrices (all pixels, boundary band) and the summaries
//   eval::evaluate(model, dataset, options, progress) -> evaluation
// What predict_logits computes (mmsegmentation's aug_test / slide_inference, except that the
// LOGITS are summed as the methods ask, where mmseg averages softmax probabilities):
//   for each scale s in options.scales, for flip in {no, yes} (yes only with options.flip):
//     x = the image resized bilinearly (align_corners = false) to round(H*s) x round(W*s)
//         (mmcv's int(v * s + 0.5); at least 1; s = 1 keeps the image as is),
//         mirrored left-right when flipping;
//     l = model logits of x: whole image (window 0), or sliding windows: window h_c x w_c,
//         stride round(2/3 window) (mmseg's 341 for 512, 513 for 769), grids
//         max(h - h_c + stride - 1, 0) / stride + 1 per axis, window k spans
//         [max(min(k*stride + h_c, h) - h_c, 0), min(k*stride + h_c, h)), so every window is
//         h_c x w_c when the image is at least that large (else the image's size); window
//         logits are summed into place and divided by the count of windows covering each pixel;
//     l is mirrored back when flipped, resized bilinearly to H x W, and ADDED to the result.
//   model.setup(shape) is called only when the shape a forward needs differs from
//   model.input_shape(), so a fixed-size evaluation plans once. A model with
//   `int64_t size_multiple() const` (SaF, HFGD: strides and pyramid cells need H and W divisible
//   by it) gets x zero-padded at the bottom and right to the next multiple (zero = the mean
//   colour after normalisation; mmseg's size_divisor padding) and its logits cropped back.
// evaluate() runs the model in eval mode (restoring train mode if it was on), normalises each
// example with data::normalize (data/augment.hpp: mmseg's ImageNet mean/std on 0..255 RGB),
// takes argmax_classes of the summed logits and fills two confusion matrices: every labelled
// pixel, and only the pixels of eval::boundary_mask(label, radius) (metrics.hpp).
// Requires: the model's logits have the dataset's class count (value_error otherwise); scales
// > 0 and window sizes >= 0 (value_error). Guarantees: deterministic; logits do not depend on
// thread count beyond what the model's own ops guarantee.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "segkit/data/augment.hpp"
#include "segkit/data/dataset.hpp"
#include "segkit/eval/metrics.hpp"
#include "segkit/ops/resize.hpp"
#include "segkit/tensor/error.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::eval {

struct inference_options {
  std::vector<double> scales{1.0};
  bool flip = false;
  int window_h = 0, window_w = 0;  // 0 = whole image; else sliding window, stride 2/3 window
};

namespace detail {

template <class Model, class = void>
struct model_device {
  using type = cpu;
};
template <class Model>
struct model_device<Model, std::void_t<typename Model::device_type>> {
  using type = typename Model::device_type;
};
template <class Model, class = void>
struct has_size_multiple : std::false_type {};
template <class Model>
struct has_size_multiple<Model, std::void_t<decltype(std::declval<const Model&>().size_multiple())>>
    : std::true_type {};

inline void check_inference_options(const inference_options& options) {
  require<value_error>(!options.scales.empty(), "predict_logits: no scales given");
  for (double s : options.scales)
    require<value_error>(s > 0 && std::isfinite(s), "predict_logits: scale ", s,
                         " is not a positive number");
  require<value_error>(options.window_h >= 0 && options.window_w >= 0 &&
                           (options.window_h > 0) == (options.window_w > 0),
                       "predict_logits: window ", options.window_h, "x", options.window_w,
                       " must be 0x0 (whole image) or both sides >= 1");
}

// mmcv's rescale size: int(v * s + 0.5), at least 1.
inline int64_t scaled_extent(int64_t extent, double scale) {
  if (scale == 1.0) return extent;
  return std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(extent) * scale + 0.5));
}

inline int64_t window_stride(int window) {
  return std::max<int64_t>(1, std::lround(2.0 * window / 3.0));
}

inline host_tensor<float> resize_bilinear(const host_tensor<float>& x, int64_t h, int64_t w) {
  if (x.size(2) == h && x.size(3) == w) return x;
  host_tensor<float> y(ops::resize_output_shape(x.shape(), h, w));
  ops::resize_forward(ops::resize_params{}, x, y);
  return y;
}

inline host_tensor<float> flip_width(const host_tensor<float>& x) {
  host_tensor<float> y(x.shape());
  const int64_t rows = x.size(0) * x.size(1) * x.size(2), w = x.size(3);
  const float* in = x.data();
  float* out = y.data();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < w; ++c) out[r * w + c] = in[r * w + (w - 1 - c)];
  return y;
}

// x[:, :, y0:y1, x0:x1] as a new tensor.
inline host_tensor<float> crop(const host_tensor<float>& x, int64_t y0, int64_t y1, int64_t x0,
                               int64_t x1) {
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  host_tensor<float> y({x.size(0), x.size(1), y1 - y0, x1 - x0});
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t r = y0; r < y1; ++r)
      std::copy(x.data() + (p * h + r) * w + x0, x.data() + (p * h + r) * w + x1,
                y.data() + (p * (y1 - y0) + (r - y0)) * (x1 - x0));
  return y;
}

// x zero-padded at the bottom and right to h x w.
inline host_tensor<float> pad_to(const host_tensor<float>& x, int64_t h, int64_t w) {
  const int64_t planes = x.size(0) * x.size(1), xh = x.size(2), xw = x.size(3);
  auto y = host_tensor<float>::zeros({x.size(0), x.size(1), h, w});
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t r = 0; r < xh; ++r)
      std::copy(x.data() + (p * xh + r) * xw, x.data() + (p * xh + r + 1) * xw,
                y.data() + (p * h + r) * w);
  return y;
}

template <class Model>
host_tensor<float> forward_unpadded(Model& model, const host_tensor<float>& images);

// One forward at the shape of `images` (set up only when the shape changed; padded to the
// model's size_multiple() when it has one); host logits.
template <class Model>
host_tensor<float> forward_once(Model& model, const host_tensor<float>& images) {
  if constexpr (has_size_multiple<Model>::value) {
    const int64_t m = model.size_multiple(), h = images.size(2), w = images.size(3);
    const int64_t ph = (h + m - 1) / m * m, pw = (w + m - 1) / m * m;
    if (ph != h || pw != w)
      return crop(forward_unpadded(model, pad_to(images, ph, pw)), 0, h, 0, w);
  }
  return forward_unpadded(model, images);
}

template <class Model>
host_tensor<float> forward_unpadded(Model& model, const host_tensor<float>& images) {
  using device = typename model_device<Model>::type;
  if (model.input_shape() != images.shape()) model.setup(images.shape());
  if constexpr (std::is_same_v<device, cpu>) {
    const auto& logits = model.forward(images);
    require<shape_error>(logits.rank() == 4 && logits.size(0) == images.size(0) &&
                             logits.size(2) == images.size(2) && logits.size(3) == images.size(3),
                         "predict_logits: ", model.name(), " returned logits of shape ",
                         logits.shape().to_string(), " for images of shape ",
                         images.shape().to_string(), "; expected [N, K, H, W] at the input size");
    return logits.clone();
  } else {
    const auto on_device = to<device>(images);
    const auto& logits = model.forward(on_device);
    return to<cpu>(logits);
  }
}

// Sliding-window logits of `images` (mmseg's slide_inference with a count map).
template <class Model>
host_tensor<float> forward_windows(Model& model, const host_tensor<float>& images, int window_h,
                                   int window_w) {
  const int64_t h = images.size(2), w = images.size(3);
  const int64_t sh = window_stride(window_h), sw = window_stride(window_w);
  const int64_t grids_h = std::max<int64_t>(h - window_h + sh - 1, 0) / sh + 1;
  const int64_t grids_w = std::max<int64_t>(w - window_w + sw - 1, 0) / sw + 1;
  host_tensor<float> sum;
  std::vector<int32_t> count(static_cast<size_t>(h * w), 0);
  for (int64_t gy = 0; gy < grids_h; ++gy)
    for (int64_t gx = 0; gx < grids_w; ++gx) {
      const int64_t y1 = std::min(gy * sh + window_h, h), x1 = std::min(gx * sw + window_w, w);
      const int64_t y0 = std::max<int64_t>(y1 - window_h, 0), x0 = std::max<int64_t>(x1 - window_w, 0);
      const auto logits = forward_once(model, crop(images, y0, y1, x0, x1));
      if (sum.empty()) sum = host_tensor<float>::zeros({images.size(0), logits.size(1), h, w});
      const int64_t planes = sum.size(0) * sum.size(1), cw = x1 - x0, ch = y1 - y0;
      for (int64_t p = 0; p < planes; ++p)
        for (int64_t r = 0; r < ch; ++r) {
          float* dst = sum.data() + (p * h + y0 + r) * w + x0;
          const float* src = logits.data() + (p * ch + r) * cw;
          for (int64_t c = 0; c < cw; ++c) dst[c] += src[c];
        }
      for (int64_t r = y0; r < y1; ++r)
        for (int64_t c = x0; c < x1; ++c) ++count[static_cast<size_t>(r * w + c)];
    }
  const int64_t planes = sum.size(0) * sum.size(1);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < h * w; ++i)
      sum.data()[p * h * w + i] /= static_cast<float>(count[static_cast<size_t>(i)]);
  return sum;
}

}  // namespace detail

// The summed logits [N, K, H, W] of `image` ([N, 3, H, W], normalised) over the scales and
// flips of `options` (see the file comment for the exact computation).
template <class Model>
host_tensor<float> predict_logits(Model& model, const host_tensor<float>& image,
                                  const inference_options& options = {}) {
  detail::check_inference_options(options);
  require<shape_error>(image.rank() == 4 && image.size(1) == 3 && image.size(2) >= 1 &&
                           image.size(3) >= 1,
                       "predict_logits: image has shape ", image.shape().to_string(),
                       ", expected [N, 3, H, W]");
  const int64_t h = image.size(2), w = image.size(3);
  host_tensor<float> total;
  for (double scale : options.scales) {
    const auto scaled =
        detail::resize_bilinear(image, detail::scaled_extent(h, scale), detail::scaled_extent(w, scale));
    for (int flipped = 0; flipped < (options.flip ? 2 : 1); ++flipped) {
      const auto input = flipped ? detail::flip_width(scaled) : scaled;
      auto logits = options.window_h > 0
                        ? detail::forward_windows(model, input, options.window_h, options.window_w)
                        : detail::forward_once(model, input);
      if (flipped) logits = detail::flip_width(logits);
      logits = detail::resize_bilinear(logits, h, w);
      if (total.empty()) {
        total = logits;  // a fresh tensor: forward_once copies out of the model
      } else {
        require_same_shape("predict_logits", "logits of one scale", logits.shape(),
                           "the first scale's", total.shape());
        for (int64_t i = 0; i < total.numel(); ++i) total[i] += logits[i];
      }
    }
  }
  return total;
}

struct evaluate_options {
  inference_options inference;
  boundary_options boundary;  // radius 8; its ignore_index is taken from the dataset
  size_t max_images = 0;      // 0 = the whole dataset, else its first max_images examples
};

struct evaluation {
  confusion_matrix all, boundary;
  double miou = 0, boundary_miou = 0, pixel_accuracy = 0, mean_accuracy = 0;
  std::vector<double> per_class_iou, boundary_per_class_iou;
  size_t images = 0;
  double seconds = 0;  // wall time of the loop (loading, inference, counting)
};

// progress(done, total) after each image.
using progress_callback = std::function<void(size_t done, size_t total)>;

template <class Model>
evaluation evaluate(Model& model, const data::dataset& dataset, const evaluate_options& options,
                    const progress_callback& progress = {}) {
  detail::check_inference_options(options.inference);
  const auto& info = dataset.info();
  const auto start = std::chrono::steady_clock::now();
  struct mode_guard {
    Model& m;
    bool was_training;
    ~mode_guard() {
      if (was_training) m.train();
    }
  } guard{model, model.training()};
  model.eval();

  evaluation result;
  result.all = confusion_matrix(info.num_classes, info.ignore_index);
  result.boundary = confusion_matrix(info.num_classes, info.ignore_index);
  boundary_options band = options.boundary;
  band.ignore_index = info.ignore_index;
  const size_t total = options.max_images ? std::min(options.max_images, dataset.size())
                                          : dataset.size();
  for (size_t i = 0; i < total; ++i) {
    const data::example example = dataset.load(i);
    const auto sample = data::normalize(example);
    const shape& image_shape = sample.image.shape();
    const auto batch = sample.image.view({1, image_shape[0], image_shape[1], image_shape[2]});
    const auto logits = predict_logits(model, batch, options.inference);
    require<value_error>(logits.size(1) == info.num_classes, "evaluate: ", model.name(),
                         " predicts ", logits.size(1), " classes but dataset ", info.name,
                         " has ", info.num_classes);
    const auto prediction = argmax_classes(logits).view(sample.label.shape());
    result.all.add(prediction, sample.label);
    result.boundary.add(prediction, sample.label, boundary_mask(sample.label, band));
    result.images = i + 1;
    if (progress) progress(i + 1, total);
  }
  result.miou = result.all.miou();
  result.boundary_miou = result.boundary.miou();
  result.pixel_accuracy = result.all.pixel_accuracy();
  result.mean_accuracy = result.all.mean_accuracy();
  result.per_class_iou = result.all.per_class_iou();
  result.boundary_per_class_iou = result.boundary.per_class_iou();
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

template <class Model>
evaluation evaluate(Model& model, const data::dataset& dataset, const inference_options& options,
                    const progress_callback& progress = {}) {
  evaluate_options all;
  all.inference = options;
  return evaluate(model, dataset, all, progress);
}

}  // namespace segkit::eval
