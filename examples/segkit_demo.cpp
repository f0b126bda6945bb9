// segkit_demo — the main job until the trainers exist (README, first command).
//
// A tiny segmentation network wired by hand from segkit's ops (conv2d, batch norm, ReLU,
// adaptive average pooling with a broadcast add, bilinear resize, log-softmax), trained with
// SGD + momentum on generated scenes: a sky gradient over textured ground, with rectangles
// and discs as objects. It prints what it computed (shapes, the loss falling, the pixel
// accuracy rising) and how fast each op ran, forward and backward.
//
// Usage: segkit_demo [steps (default 60)] [batch (default 4)] [size (default 64)]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "segkit/ops/activation.hpp"
#include "segkit/ops/batch_norm.hpp"
#include "segkit/ops/conv2d.hpp"
#include "segkit/ops/elementwise.hpp"
#include "segkit/ops/pooling.hpp"
#include "segkit/ops/resize.hpp"
#include "segkit/ops/softmax.hpp"

using namespace segkit;
using tensor_f = host_tensor<float>;

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

// ---- timing ---------------------------------------------------------------------------------
struct op_timer {
  std::map<std::string, double> seconds;
  template <class Work>
  void run(const std::string& name, const Work& work) {
    const auto start = std::chrono::steady_clock::now();
    work();
    seconds[name] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
};

// ---- the network ----------------------------------------------------------------------------
struct parameter {
  std::string name;
  tensor_f value, grad, velocity;
  explicit parameter(std::string n, const shape& s)
      : name(std::move(n)), value(s), grad(tensor_f::zeros(s)), velocity(tensor_f::zeros(s)) {}
};

void kaiming(tensor_f& w, std::mt19937& rng) {
  const double fan_in = double(w.numel()) / double(w.size(0));
  std::normal_distribution<float> normal(0.f, float(std::sqrt(2.0 / fan_in)));
  for (int64_t i = 0; i < w.numel(); ++i) w[i] = normal(rng);
}

struct conv_bn_relu {
  ops::conv2d_params conv;
  parameter weight, gamma, beta;
  tensor_f running_mean, running_var, saved_mean, saved_inv_std;
  tensor_f conv_out, bn_out, out, d_conv_out, d_bn_out, d_out;

  conv_bn_relu(const std::string& name, int64_t in, int64_t out_channels, int64_t stride,
               std::mt19937& rng)
      : weight(name + ".conv.weight", {out_channels, in, 3, 3}),
        gamma(name + ".bn.weight", {out_channels}),
        beta(name + ".bn.bias", {out_channels}),
        running_mean(tensor_f::zeros({out_channels})),
        running_var({out_channels}),
        saved_mean({out_channels}),
        saved_inv_std({out_channels}) {
    conv.stride_h = conv.stride_w = stride;
    conv.pad_h = conv.pad_w = 1;
    kaiming(weight.value, rng);
    gamma.value.fill(1.f);
    beta.value.zero();
    running_var.fill(1.f);
  }
  void setup(const shape& input) {  // every buffer planned once, reused each step
    const shape s = ops::conv2d_output_shape(conv, input, weight.value.shape());
    for (tensor_f* t : {&conv_out, &bn_out, &out, &d_conv_out, &d_bn_out, &d_out}) *t = tensor_f(s);
  }
  const tensor_f& forward(const tensor_f& x, op_timer& timer) {
    timer.run("conv2d", [&] { ops::conv2d_forward(conv, x, weight.value, nullptr, conv_out); });
    timer.run("batch_norm", [&] {
      ops::batch_norm_forward({1e-5f, 0.1f, true}, conv_out, gamma.value, beta.value, running_mean,
                              running_var, bn_out, saved_mean, saved_inv_std);
    });
    timer.run("relu", [&] { ops::activation_forward({ops::activation::relu}, bn_out, out); });
    return out;
  }
  // Reads d_out (which the caller filled), adds into dx when given.
  void backward(const tensor_f& x, tensor_f* dx, op_timer& timer) {
    d_bn_out.zero();
    d_conv_out.zero();
    timer.run("relu backward", [&] {
      ops::activation_backward({ops::activation::relu}, bn_out, out, d_out, d_bn_out);
    });
    timer.run("batch_norm backward", [&] {
      ops::batch_norm_backward({1e-5f, 0.1f, true}, conv_out, gamma.value, saved_mean,
                               saved_inv_std, d_bn_out, &d_conv_out, &gamma.grad, &beta.grad);
    });
    timer.run("conv2d backward", [&] {
      ops::conv2d_backward(conv, x, weight.value, d_conv_out, dx, &weight.grad, nullptr);
    });
  }
};

struct demo_network {
  conv_bn_relu stem, body;
  parameter head_weight, head_bias;
  ops::conv2d_params head_conv;                       // 1x1
  ops::resize_params upsample{ops::resize_mode::bilinear, false};
  tensor_f context, with_context, coarse_logits, logits, log_probs;
  tensor_f d_log_probs, d_logits, d_coarse_logits, d_with_context, d_context;

  explicit demo_network(std::mt19937& rng)
      : stem("stem", 3, 16, 2, rng),
        body("body", 16, 32, 2, rng),
        head_weight("head.weight", {class_count, 32, 1, 1}),
        head_bias("head.bias", {class_count}) {
    kaiming(head_weight.value, rng);
    head_bias.value.zero();
  }
  std::vector<parameter*> parameters() {
    return {&stem.weight, &stem.gamma, &stem.beta, &body.weight, &body.gamma,
            &body.beta,   &head_weight, &head_bias};
  }
  void setup(const shape& input) {
    stem.setup(input);
    body.setup(stem.out.shape());
    const shape features = body.out.shape(), pooled{features[0], features[1], 1, 1};
    context = tensor_f(pooled);
    d_context = tensor_f(pooled);
    with_context = tensor_f(features);
    d_with_context = tensor_f(features);
    const shape coarse = ops::conv2d_output_shape(head_conv, features, head_weight.value.shape());
    coarse_logits = tensor_f(coarse);
    d_coarse_logits = tensor_f(coarse);
    const shape full = ops::resize_output_shape(coarse, input[2], input[3]);
    for (tensor_f* t : {&logits, &log_probs, &d_log_probs, &d_logits}) *t = tensor_f(full);
  }
  const tensor_f& forward(const tensor_f& images, op_timer& timer) {
    const tensor_f& features = body.forward(stem.forward(images, timer), timer);
    // Global context: each pixel's feature plus the image's mean feature (broadcast add).
    timer.run("adaptive_avg_pool2d", [&] { ops::adaptive_avg_pool2d_forward(features, context); });
    timer.run("add (broadcast)", [&] { ops::add(features, context, with_context); });
    timer.run("conv2d", [&] {
      ops::conv2d_forward(head_conv, with_context, head_weight.value, &head_bias.value,
                          coarse_logits);
    });
    timer.run("resize", [&] { ops::resize_forward(upsample, coarse_logits, logits); });
    timer.run("log_softmax", [&] { ops::log_softmax_forward({1}, logits, log_probs); });
    return log_probs;
  }
  void backward(const tensor_f& images, op_timer& timer) {
    for (tensor_f* t : {&d_logits, &d_coarse_logits, &d_with_context, &d_context, &body.d_out,
                        &stem.d_out})
      t->zero();
    timer.run("log_softmax backward",
              [&] { ops::log_softmax_backward({1}, log_probs, d_log_probs, d_logits); });
    timer.run("resize backward",
              [&] { ops::resize_backward(upsample, d_logits, d_coarse_logits); });
    timer.run("conv2d backward", [&] {
      ops::conv2d_backward(head_conv, with_context, head_weight.value, d_coarse_logits,
                           &d_with_context, &head_weight.grad, &head_bias.grad);
    });
    timer.run("add backward",
              [&] { ops::add_backward(d_with_context, &body.d_out, &d_context); });
    timer.run("adaptive_avg_pool2d backward",
              [&] { ops::adaptive_avg_pool2d_backward(d_context, body.d_out); });
    body.backward(stem.out, &stem.d_out, timer);
    stem.backward(images, nullptr, timer);
  }
};

// Mean negative log-likelihood over all pixels; writes its gradient into d_log_probs and
// counts correct argmax predictions.
double nll_loss(const tensor_f& log_probs, const std::vector<int32_t>& labels,
                tensor_f& d_log_probs, int64_t& correct) {
  const int64_t batch = log_probs.size(0), plane = log_probs.size(2) * log_probs.size(3);
  const double count = double(batch * plane);
  d_log_probs.zero();
  double loss = 0;
  correct = 0;
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t p = 0; p < plane; ++p) {
      const int32_t truth = labels[size_t(n * plane + p)];
      const float* row = log_probs.data() + n * class_count * plane + p;
      int best = 0;
      for (int k = 1; k < class_count; ++k)
        if (row[k * plane] > row[best * plane]) best = k;
      correct += best == truth;
      loss -= row[truth * plane];
      d_log_probs.data()[n * class_count * plane + truth * plane + p] = float(-1.0 / count);
    }
  return loss / count;
}

void sgd_step(demo_network& net, float learning_rate, float momentum, float weight_decay) {
  for (parameter* p : net.parameters()) {
    for (int64_t i = 0; i < p->value.numel(); ++i) {
      const float g = p->grad[i] + weight_decay * p->value[i];
      p->velocity[i] = momentum * p->velocity[i] + g;
      p->value[i] -= learning_rate * p->velocity[i];
    }
    p->grad.zero();
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
  if (argc > 1 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::printf("usage: segkit_demo [steps=60] [batch=4] [size=64]\n");
    return 0;
  }
  const int steps = argc > 1 ? parse_positive(argv[1], "steps") : 60;
  const int64_t batch = argc > 2 ? parse_positive(argv[2], "batch") : 4;
  const int64_t size = argc > 3 ? parse_positive(argv[3], "size") : 64;
  if (size % 4 != 0) {
    std::fprintf(stderr, "segkit_demo: size must be a multiple of 4 (two stride-2 convs), got %lld\n",
                 static_cast<long long>(size));
    return 2;
  }

  std::mt19937 rng(2026);
  demo_network net(rng);
  const shape input{batch, 3, size, size};
  net.setup(input);
  tensor_f images(input);
  std::vector<int32_t> labels(size_t(batch * size * size));

  int64_t parameter_count = 0;
  for (parameter* p : net.parameters()) parameter_count += p->value.numel();
  std::printf("segkit demo: a small segmentation network trained on generated scenes (%d threads)\n",
              num_threads());
  std::printf("  input %s -> stem %s -> body %s -> +global context -> logits %s -> upsampled %s\n",
              input.to_string().c_str(), net.stem.out.shape().to_string().c_str(),
              net.body.out.shape().to_string().c_str(), net.coarse_logits.shape().to_string().c_str(),
              net.logits.shape().to_string().c_str());
  std::printf("  %lld parameters; classes: sky, ground, box, disc; SGD lr 0.05, momentum 0.9\n\n",
              static_cast<long long>(parameter_count));

  op_timer timer;
  long long allocations_after_first_step = 0;
  double first_loss = 0, last_loss = 0, first_accuracy = 0, last_accuracy = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int step = 1; step <= steps; ++step) {
    const int64_t plane = size * size;
    for (int64_t n = 0; n < batch; ++n)
      draw_scene(rng, size, images.data() + n * 3 * plane, labels.data() + n * plane);
    const tensor_f& log_probs = net.forward(images, timer);
    int64_t correct = 0;
    const double loss = nll_loss(log_probs, labels, net.d_log_probs, correct);
    const double accuracy = double(correct) / double(labels.size());
    net.backward(images, timer);
    sgd_step(net, 0.05f, 0.9f, 1e-4f);
    if (!std::isfinite(loss)) {
      std::fprintf(stderr, "segkit_demo: the loss became %f at step %d\n", loss, step);
      return 1;
    }
    if (step == 1) {
      first_loss = loss, first_accuracy = accuracy;
      // The shared workspace grows during the first step; after it nothing may allocate.
      allocations_after_first_step = allocations<cpu>().total.load();
    }
    last_loss = loss, last_accuracy = accuracy;
    if (step == 1 || step % 10 == 0 || step == steps)
      std::printf("  step %3d  loss %.4f  pixel accuracy %5.1f%%\n", step, loss, 100 * accuracy);
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const long long step_allocations = allocations<cpu>().total.load() - allocations_after_first_step;

  std::printf("\n  loss %.4f -> %.4f, pixel accuracy %.1f%% -> %.1f%% (chance %.1f%%)\n", first_loss,
              last_loss, 100 * first_accuracy, 100 * last_accuracy, 100.0 / class_count);
  std::printf("  %d steps in %.2f s: %.1f ms per step, %.1f images/s; %lld allocations after "
              "the first step (buffers planned at setup)\n\n",
              steps, total, 1e3 * total / steps, steps * double(batch) / total, step_allocations);
  std::printf("  time per op over the run (forward and backward):\n");
  std::vector<std::pair<double, std::string>> rows;
  double op_total = 0;
  for (const auto& [name, seconds] : timer.seconds) rows.push_back({seconds, name}), op_total += seconds;
  std::sort(rows.rbegin(), rows.rend());
  for (const auto& [seconds, name] : rows)
    std::printf("    %-30s %8.1f ms  %5.1f%%\n", name.c_str(), 1e3 * seconds, 100 * seconds / op_total);
  std::printf("  (classes: %s, %s, %s, %s)\n", class_names[0], class_names[1], class_names[2],
              class_names[3]);
  return last_loss < first_loss ? 0 : 1;
}
