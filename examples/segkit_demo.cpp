// segkit_demo — the main job until the trainers exist (README, first command).
//
// A small segmentation network written as a segkit network type (conv, batch norm, ReLU, a
// residual block, a context branch concatenated on channels, bilinear upsampling), trained
// with cross-entropy and SGD (momentum, weight decay, poly schedule with warm-up) on generated
// scenes: a sky gradient over textured ground, with boxes and discs as objects. It prints the
// loss falling and the pixel accuracy rising, then evaluates on held-out scenes in eval mode
// (pixel accuracy, per-class IoU, mIoU) and reports the time per step.
//
// Usage: segkit_demo [--steps N] [--batch N] [--size N] [--save checkpoint.safetensors]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "segkit/nn/network.hpp"
#include "segkit/train/checkpoint.hpp"
#include "segkit/train/cross_entropy.hpp"
#include "segkit/train/optimizer.hpp"
#include "segkit/train/schedule.hpp"

using namespace segkit;
using tensor_f = host_tensor<float>;
namespace nn = segkit::nn;

namespace {

constexpr int class_count = 4;
const char* const class_names[class_count] = {"sky", "ground", "box", "disc"};

// ---- generated scenes -----------------------------------------------------------------------
void draw_scene(std::mt19937& rng, int64_t size, float* image, int32_t* label) {
  std::uniform_real_distribution<float> unit(0.f, 1.f);
  const int64_t plane = size * size;
  const int64_t horizon = size * (3 + static_cast<int64_t>(unit(rng) * 3)) / 8;
  for (int64_t y = 0; y < size; ++y)
    for (int64_t x = 0; x < size; ++x) {
      const int64_t i = y * size + x;
      const bool sky = y < horizon;
      const float t = float(y) / float(size), grain = 0.15f * unit(rng);
      label[i] = sky ? 0 : 1;
      image[i] = sky ? 0.35f + 0.2f * t : 0.45f + grain;         // red
      image[plane + i] = sky ? 0.55f + 0.2f * t : 0.35f + grain;  // green
      image[2 * plane + i] = sky ? 0.9f : 0.2f + grain;           // blue
    }
  std::uniform_int_distribution<int64_t> where(0, size - 1);
  for (int object = 0; object < 3; ++object) {
    const bool disc = unit(rng) < 0.5f;
    const int64_t cy = where(rng), cx = where(rng), radius = size / 10 + where(rng) / 6;
    const float shade = 0.7f + 0.3f * unit(rng);
    for (int64_t y = std::max<int64_t>(0, cy - radius); y < std::min(size, cy + radius); ++y)
      for (int64_t x = std::max<int64_t>(0, cx - radius); x < std::min(size, cx + radius); ++x) {
        if (disc && (y - cy) * (y - cy) + (x - cx) * (x - cx) > radius * radius) continue;
        const int64_t i = y * size + x;
        label[i] = disc ? 3 : 2;
        image[i] = disc ? 0.95f * shade : 0.8f * shade;
        image[plane + i] = disc ? 0.85f * shade : 0.15f;
        image[2 * plane + i] = disc ? 0.1f : 0.2f * shade;
      }
  }
}

// ---- the network: one type, channels checked at compile time ----------------------------
using block = nn::residual<nn::seq<nn::conv<32>, nn::batch_norm, nn::relu, nn::conv<32>, nn::batch_norm>>;
using context_branch = nn::seq<nn::avg_pool<4>, nn::conv<16, 1>, nn::relu, nn::upsample<4>>;
using model = nn::seq<nn::conv<16, 3, 2>, nn::batch_norm, nn::relu,  // 1/2
                      nn::conv<32, 3, 2>, nn::batch_norm, nn::relu,  // 1/4
                      block, nn::relu,
                      nn::concat<nn::identity, context_branch>,      // 32 + 16 channels
                      nn::conv<class_count, 1, 1, 0, 1, 1, true>,    // classifier
                      nn::upsample<4>>;                              // back to full size
using network_type = nn::network<3, model>;
static_assert(network_type::out_channels == class_count);

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void draw_batch(std::mt19937& rng, tensor_f& images, host_tensor<int32_t>& labels) {
  const int64_t size = images.size(2), plane = size * size;
  for (int64_t n = 0; n < images.size(0); ++n)
    draw_scene(rng, size, images.data() + n * 3 * plane, labels.data() + n * plane);
}

// Adds the argmax predictions of `logits` against `labels` to a confusion matrix.
void accumulate_confusion(const tensor_f& logits, const host_tensor<int32_t>& labels,
                          std::vector<int64_t>& confusion) {
  const int64_t plane = logits.size(2) * logits.size(3);
  for (int64_t n = 0; n < logits.size(0); ++n)
    for (int64_t p = 0; p < plane; ++p) {
      const float* row = logits.data() + n * class_count * plane + p;
      int best = 0;
      for (int k = 1; k < class_count; ++k)
        if (row[k * plane] > row[best * plane]) best = k;
      confusion[size_t(labels[n * plane + p] * class_count + best)] += 1;
    }
}

int parse_positive(const char* text, const char* what) {
  const int value = std::atoi(text);
  if (value <= 0) {
    std::fprintf(stderr, "segkit_demo: %s must be a positive integer, got \"%s\"\n", what, text);
    std::exit(2);
  }
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 60, batch = 4, size = 64;
  std::string save_path;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::printf("usage: segkit_demo [--steps N=60] [--batch N=4] [--size N=64 (multiple of 16)] "
                  "[--save checkpoint.safetensors]\n");
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "segkit_demo: %s needs a value (see --help)\n", flag.c_str());
      return 2;
    }
    const char* value = argv[++i];
    if (flag == "--steps") steps = parse_positive(value, "--steps");
    else if (flag == "--batch") batch = parse_positive(value, "--batch");
    else if (flag == "--size") size = parse_positive(value, "--size");
    else if (flag == "--save") save_path = value;
    else {
      std::fprintf(stderr, "segkit_demo: unknown flag %s (see --help)\n", flag.c_str());
      return 2;
    }
  }
  if (size % 16 != 0) {
    std::fprintf(stderr, "segkit_demo: --size must be a multiple of 16 (strides 2, 2, then a "
                         "4x4 context pool), got %d\n", size);
    return 2;
  }

  network_type net(/*seed=*/2026);
  const shape input{batch, 3, size, size};
  net.setup(input);
  tensor_f images(input), dlogits(net.output_shape());
  host_tensor<int32_t> labels({batch, size, size});
  train::loss_state<cpu> loss_state;
  train::sgd_options sgd_options;
  sgd_options.momentum = 0.9;
  sgd_options.weight_decay = 1e-4;
  train::sgd<cpu> optimizer(nn::parameters_of<cpu>(net), sgd_options);
  train::poly_options poly;
  poly.base_lr = 0.05;
  poly.max_iters = steps;
  poly.warmup.iters = std::min(5, steps - 1);
  train::poly_schedule schedule(poly);

  std::printf("segkit demo: a small segmentation network trained on generated scenes (%d threads)\n",
              num_threads());
  std::printf("  input %s -> logits %s; %lld parameters\n", input.to_string().c_str(),
              net.output_shape().to_string().c_str(), static_cast<long long>(net.parameter_count()));
  std::printf("  classes: sky, ground, box, disc; cross-entropy, SGD momentum 0.9, poly lr 0.05 "
              "with %lld warm-up steps\n\n", static_cast<long long>(poly.warmup.iters));

  std::mt19937 rng(2026);
  double first_loss = 0, last_loss = 0, first_accuracy = 0, last_accuracy = 0;
  double forward_s = 0, backward_s = 0, update_s = 0;
  long long allocations_after_first_step = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int step = 0; step < steps; ++step) {
    draw_batch(rng, images, labels);
    auto t = std::chrono::steady_clock::now();
    const tensor_f& logits = net.forward(images);
    const double loss = train::cross_entropy_forward({}, logits, labels, loss_state);
    forward_s += seconds_since(t);
    std::vector<int64_t> confusion(class_count * class_count, 0);
    accumulate_confusion(logits, labels, confusion);
    int64_t correct = 0;
    for (int k = 0; k < class_count; ++k) correct += confusion[size_t(k * class_count + k)];
    const double accuracy = double(correct) / double(labels.numel());

    t = std::chrono::steady_clock::now();
    dlogits.zero();
    train::cross_entropy_backward({}, logits, labels, loss_state, 1.f, dlogits);
    net.zero_grad();
    net.backward(dlogits);
    backward_s += seconds_since(t);
    t = std::chrono::steady_clock::now();
    optimizer.set_lr(schedule.lr_at(optimizer.steps_taken()));
    optimizer.step();
    update_s += seconds_since(t);

    if (!std::isfinite(loss)) {
      std::fprintf(stderr, "segkit_demo: the loss became %f at step %d\n", loss, step + 1);
      return 1;
    }
    if (step == 0) {
      first_loss = loss, first_accuracy = accuracy;
      allocations_after_first_step = allocations<cpu>().total.load();
    }
    last_loss = loss, last_accuracy = accuracy;
    if (step == 0 || (step + 1) % 10 == 0 || step + 1 == steps)
      std::printf("  step %3d  loss %.4f  pixel accuracy %5.1f%%  lr %.4f\n", step + 1, loss,
                  100 * accuracy, optimizer.lr());
  }
  const double total = seconds_since(start);
  const long long step_allocations = allocations<cpu>().total.load() - allocations_after_first_step;

  // Held-out scenes, batch statistics frozen.
  net.eval();
  std::mt19937 held_out(7);
  std::vector<int64_t> confusion(class_count * class_count, 0);
  for (int b = 0; b < 4; ++b) {
    draw_batch(held_out, images, labels);
    accumulate_confusion(net.forward(images), labels, confusion);
  }
  int64_t correct = 0, total_pixels = 0;
  double iou_sum = 0;
  std::printf("\n  loss %.4f -> %.4f, training pixel accuracy %.1f%% -> %.1f%% (chance %.1f%%)\n",
              first_loss, last_loss, 100 * first_accuracy, 100 * last_accuracy, 100.0 / class_count);
  std::printf("  held-out evaluation (%d images, eval mode):", 4 * batch);
  for (int k = 0; k < class_count; ++k) {
    int64_t row = 0, column = 0;
    for (int j = 0; j < class_count; ++j) {
      row += confusion[size_t(k * class_count + j)];
      column += confusion[size_t(j * class_count + k)];
    }
    const int64_t hit = confusion[size_t(k * class_count + k)];
    correct += hit;
    total_pixels += row;
    const double iou = row + column - hit > 0 ? double(hit) / double(row + column - hit) : 0;
    iou_sum += iou;
    std::printf(" %s IoU %.1f%%%s", class_names[k], 100 * iou, k + 1 < class_count ? "," : "\n");
  }
  std::printf("  held-out pixel accuracy %.1f%%, mIoU %.1f%%\n", 100.0 * correct / total_pixels,
              100 * iou_sum / class_count);
  std::printf("  %d steps in %.2f s: %.1f ms per step (forward+loss %.1f, backward %.1f, update "
              "%.1f), %.1f images/s; %lld allocations after the first step\n",
              steps, total, 1e3 * total / steps, 1e3 * forward_s / steps, 1e3 * backward_s / steps,
              1e3 * update_s / steps, steps * double(batch) / total, step_allocations);
  if (!save_path.empty()) {
    train::save_checkpoint(save_path, net, optimizer, {{"iteration", std::to_string(steps)}});
    std::printf("  checkpoint written to %s (safetensors; PyTorch-style names)\n", save_path.c_str());
  }
  return last_loss < first_loss ? 0 : 1;
}
