// segkit/nn/layers.hpp — the leaf layers of the static graph, each a thin wrapper over one op:
//   conv<Out, Kernel = 3, Stride = 1, Padding = same, Dilation = 1, Groups = 1, Bias = false>
//   batch_norm                  (PyTorch's BatchNorm2d: eps 1e-5, momentum 0.1, affine)
//   relu, relu6, gelu, sigmoid, tanh_activation, leaky_relu<SlopeThousandths = 10>
//   max_pool<Kernel, Stride = Kernel, Padding = 0>, avg_pool<Kernel, Stride = Kernel, Padding = 0>
//   adaptive_avg_pool<Height, Width = Height>
//   upsample<Factor, bilinear = true, AlignCorners = false>
//   dropout<PercentDropped>     (p = PercentDropped / 100; a new mask every training forward;
//                                see set_random_step below for reproducible masks on resume)
//   stop_gradient               (y = x; nothing behind it gets a gradient or a backward call)
// Requires: NCHW float input with the channel count the recipe was bound to. Guarantees:
// setup() allocates the layer's buffers; forward and backward allocate nothing; parameter
// names and initialisation follow PyTorch (conv: "weight", "bias", kaiming-uniform bound
// 1/sqrt(fan_in); batch norm: "weight", "bias", "running_mean", "running_var",
// "num_batches_tracked").
#pragma once
#include <atomic>
#include <cmath>
#include <cstdint>

#include "segkit/nn/layer.hpp"
#include "segkit/ops/activation.hpp"
#include "segkit/ops/batch_norm.hpp"
#include "segkit/ops/conv2d.hpp"
#include "segkit/ops/dropout.hpp"
#include "segkit/ops/pooling.hpp"
#include "segkit/ops/resize.hpp"

namespace segkit::nn {

// ---- the random step (process-wide) ---------------------------------------------------------
// A trainer calls set_random_step(iteration) before each step. From then on, the n-th training
// forward of a dropout layer (n = 1, 2, ... counted per layer since the step was last set) uses
// the mask keyed on (layer seed, step, n): two networks with the same seed draw the same masks
// at the same step, and a run resumed at step k draws exactly the masks the uninterrupted run
// drew at step k, whatever happened before (setup's warm-up, evaluation, other steps). Setting
// the same step again restarts its count. Eval-mode forwards do not advance the count. Until
// set_random_step is first called (or after clear_random_step), every training forward draws a
// fresh mask from (layer seed, calls so far), as before the random step existed.
namespace detail {
struct random_step_state {
  std::atomic<uint64_t> step{0};
  std::atomic<uint64_t> generation{0};  // 0: never set; bumped by every set_random_step
};
inline random_step_state& random_step_storage() {
  static random_step_state state;
  return state;
}
}  // namespace detail

inline void set_random_step(uint64_t step) {
  auto& s = detail::random_step_storage();
  s.step.store(step);
  s.generation.fetch_add(1);
}
inline void clear_random_step() { detail::random_step_storage().generation.store(0); }
inline bool random_step_set() { return detail::random_step_storage().generation.load() != 0; }
inline uint64_t random_step() { return detail::random_step_storage().step.load(); }

// Common parts of a layer with no parameters and no buffers.
template <int C, bool G, class D>
struct stateless_layer {
  using tensor_type = tensor<float, D>;
  static constexpr bool trainable = false, propagates = true, input_wants_grad = G;
  void set_training(bool training) { training_ = training; }
  void initialize(std::mt19937_64&) {}
  template <class Visit>
  void visit_parameters(const std::string&, Visit&&) {}
  template <class Visit>
  void visit_buffers(const std::string&, Visit&&) {}

 protected:
  bool training_ = true;
};

template <int Out, int Kernel = 3, int Stride = 1, int Padding = -1, int Dilation = 1,
          int Groups = 1, bool Bias = false>
struct conv {
  static_assert(Out > 0 && Kernel > 0 && Stride > 0 && Dilation > 0 && Groups > 0,
                "segkit::nn::conv: Out, Kernel, Stride, Dilation and Groups must be positive");

  template <int C, bool G, class D>
  class layer {
    static_assert(C % Groups == 0 && Out % Groups == 0,
                  "segkit::nn::conv: input and output channels must be divisible by Groups");

   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = Out;
    static constexpr bool trainable = true, propagates = true, input_wants_grad = G;
    static constexpr bool backward_reads_output = false;

    layer() : weight({Out, C / Groups, Kernel, Kernel}) {
      if constexpr (Bias) bias = parameter<D>({Out});
      params_.stride_h = params_.stride_w = Stride;
      params_.pad_h = params_.pad_w = Padding >= 0 ? Padding : Dilation * (Kernel - 1) / 2;
      params_.dilation_h = params_.dilation_w = Dilation;
      params_.groups = Groups;
    }
    shape setup(const shape& input, setup_context<D>&) {
      y_ = tensor_type(ops::conv2d_output_shape(params_, input, weight.shape()));
      return y_.shape();
    }
    const tensor_type& forward(const tensor_type& x) {
      ops::conv2d_forward(params_, x, weight.value, Bias ? &bias.value : nullptr, y_);
      return y_;
    }
    void backward(const tensor_type& x, const tensor_type& dy, tensor_type* dx) {
      ops::conv2d_backward(params_, x, weight.value, dy, dx, &weight.grad,
                           Bias ? &bias.grad : nullptr);
    }
    void set_training(bool) {}
    void initialize(std::mt19937_64& rng) {
      const float bound = 1.f / std::sqrt(float(C / Groups * Kernel * Kernel));
      uniform_fill_on(weight.value, bound, rng);
      if constexpr (Bias) uniform_fill_on(bias.value, bound, rng);
    }
    template <class Visit>
    void visit_parameters(const std::string& prefix, Visit&& visit) {
      visit(join_name(prefix, "weight"), weight);
      if constexpr (Bias) visit(join_name(prefix, "bias"), bias);
    }
    template <class Visit>
    void visit_buffers(const std::string&, Visit&&) {}
    const ops::conv2d_params& params() const { return params_; }

    parameter<D> weight, bias;

   private:
    ops::conv2d_params params_;
    tensor_type y_;
  };
};

struct batch_norm {
  template <int C, bool G, class D>
  class layer {
   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = C;
    static constexpr bool trainable = true, propagates = true, input_wants_grad = G;
    static constexpr bool backward_reads_output = false;

    layer()
        : weight({C}),
          bias({C}),
          running_mean(tensor_type::zeros({C})),
          running_var({C}),
          num_batches_tracked(tensor<int64_t, D>::zeros({1})),
          saved_mean({C}),
          saved_inv_std({C}) {
      initialize_statistics();
    }
    shape setup(const shape& input, setup_context<D>&) {
      y_ = tensor_type(ops::batch_norm_output_shape(input));
      return y_.shape();
    }
    const tensor_type& forward(const tensor_type& x) {
      ops::batch_norm_forward(params_, x, weight.value, bias.value, running_mean, running_var, y_,
                              saved_mean, saved_inv_std);
      if (params_.training) count_batch();
      return y_;
    }
    void backward(const tensor_type& x, const tensor_type& dy, tensor_type* dx) {
      ops::batch_norm_backward(params_, x, weight.value, saved_mean, saved_inv_std, dy, dx,
                               &weight.grad, &bias.grad);
    }
    void set_training(bool training) { params_.training = training; }
    void initialize(std::mt19937_64&) { initialize_statistics(); }
    template <class Visit>
    void visit_parameters(const std::string& prefix, Visit&& visit) {
      visit(join_name(prefix, "weight"), weight);
      visit(join_name(prefix, "bias"), bias);
    }
    template <class Visit>
    void visit_buffers(const std::string& prefix, Visit&& visit) {
      visit(join_name(prefix, "running_mean"), running_mean);
      visit(join_name(prefix, "running_var"), running_var);
      visit(join_name(prefix, "num_batches_tracked"), num_batches_tracked);
    }
    ops::batch_norm_params& params() { return params_; }

    parameter<D> weight, bias;
    tensor_type running_mean, running_var;
    tensor<int64_t, D> num_batches_tracked;
    tensor_type saved_mean, saved_inv_std;  // what backward needs from the last forward

   private:
    void initialize_statistics() {
      weight.value.fill(1.f);
      bias.value.zero();
      running_mean.zero();
      running_var.fill(1.f);
      num_batches_tracked.zero();
    }
    void count_batch() {
      if constexpr (std::is_same_v<D, cpu>) {
        num_batches_tracked[0] += 1;
      } else {
        host_count_ = host_count_.empty() ? tensor<int64_t, cpu>({1}) : host_count_;
        copy_into(num_batches_tracked, host_count_);
        host_count_[0] += 1;
        copy_into(host_count_, num_batches_tracked);
      }
    }

    ops::batch_norm_params params_;
    tensor_type y_;
    tensor<int64_t, cpu> host_count_;
  };
};

template <ops::activation Kind, int SlopeThousandths = 10>
struct activation_layer {
  template <int C, bool G, class D>
  class layer : public stateless_layer<C, G, D> {
   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = C;
    // The slope can be read from the output alone (as PyTorch's inplace=True needs), so the
    // output may overwrite the input when nothing else reads that input (seq decides).
    static constexpr bool can_run_in_place =
        Kind != ops::activation::gelu &&
        (Kind != ops::activation::leaky_relu || SlopeThousandths > 0);

    void run_in_place() {
      static_assert(can_run_in_place, "segkit::nn: this activation needs its input in backward");
      in_place_ = true;
    }
    shape setup(const shape& input, setup_context<D>&) {
      y_ = in_place_ ? tensor_type() : tensor_type(input);
      return input;
    }
    const tensor_type& forward(const tensor_type& x) {
      if (in_place_) y_ = x;  // shares x's storage
      ops::activation_forward(params_, x, y_);
      return y_;
    }
    void backward(const tensor_type& x, const tensor_type& dy, tensor_type* dx) {
      ops::activation_backward(params_, x, y_, dy, *dx);
    }

   private:
    ops::activation_params params_{Kind, SlopeThousandths / 1000.f};
    tensor_type y_;
    bool in_place_ = false;
  };
};
using relu = activation_layer<ops::activation::relu>;
using relu6 = activation_layer<ops::activation::relu6>;
using gelu = activation_layer<ops::activation::gelu>;
using sigmoid = activation_layer<ops::activation::sigmoid>;
using tanh_activation = activation_layer<ops::activation::tanh>;
template <int SlopeThousandths = 10>
using leaky_relu = activation_layer<ops::activation::leaky_relu, SlopeThousandths>;

template <bool Max, int Kernel, int Stride, int Padding>
struct pool {
  static_assert(Kernel > 0 && Stride > 0 && Padding >= 0 && 2 * Padding <= Kernel,
                "segkit::nn pooling: Kernel and Stride must be positive and Padding at most "
                "half the kernel");
  template <int C, bool G, class D>
  class layer : public stateless_layer<C, G, D> {
   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = C;
    shape setup(const shape& input, setup_context<D>&) {
      y_ = tensor_type(ops::pool2d_output_shape(params_, input));
      if constexpr (Max) argmax_ = tensor<int32_t, D>(y_.shape());
      return y_.shape();
    }
    const tensor_type& forward(const tensor_type& x) {
      if constexpr (Max) ops::max_pool2d_forward(params_, x, y_, &argmax_);
      else ops::avg_pool2d_forward(params_, x, y_);
      return y_;
    }
    void backward(const tensor_type&, const tensor_type& dy, tensor_type* dx) {
      if constexpr (Max) ops::max_pool2d_backward(params_, argmax_, dy, *dx);
      else ops::avg_pool2d_backward(params_, dy, *dx);
    }

   private:
    ops::pool2d_params params_{Kernel, Kernel, Stride, Stride, Padding, Padding, false, true};
    tensor_type y_;
    tensor<int32_t, D> argmax_;
  };
};
template <int Kernel, int Stride = Kernel, int Padding = 0>
using max_pool = pool<true, Kernel, Stride, Padding>;
template <int Kernel, int Stride = Kernel, int Padding = 0>
using avg_pool = pool<false, Kernel, Stride, Padding>;

template <int Height, int Width = Height>
struct adaptive_avg_pool {
  static_assert(Height > 0 && Width > 0, "segkit::nn::adaptive_avg_pool: sizes must be positive");
  template <int C, bool G, class D>
  class layer : public stateless_layer<C, G, D> {
   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = C;
    shape setup(const shape& input, setup_context<D>&) {
      require_rank("adaptive_avg_pool setup", "input", input, 4);
      y_ = tensor_type({input[0], input[1], Height, Width});
      return y_.shape();
    }
    const tensor_type& forward(const tensor_type& x) {
      ops::adaptive_avg_pool2d_forward(x, y_);
      return y_;
    }
    void backward(const tensor_type&, const tensor_type& dy, tensor_type* dx) {
      ops::adaptive_avg_pool2d_backward(dy, *dx);
    }

   private:
    tensor_type y_;
  };
};

template <int Factor, bool Bilinear = true, bool AlignCorners = false>
struct upsample {
  static_assert(Factor >= 1, "segkit::nn::upsample: Factor must be at least 1");
  template <int C, bool G, class D>
  class layer : public stateless_layer<C, G, D> {
   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = C;
    shape setup(const shape& input, setup_context<D>&) {
      require_rank("upsample setup", "input", input, 4);
      y_ = tensor_type(ops::resize_output_shape(input, input[2] * Factor, input[3] * Factor));
      return y_.shape();
    }
    const tensor_type& forward(const tensor_type& x) {
      ops::resize_forward(params_, x, y_);
      return y_;
    }
    void backward(const tensor_type&, const tensor_type& dy, tensor_type* dx) {
      ops::resize_backward(params_, dy, *dx);
    }

   private:
    ops::resize_params params_{Bilinear ? ops::resize_mode::bilinear : ops::resize_mode::nearest,
                               AlignCorners};
    tensor_type y_;
  };
};

template <int PercentDropped>
struct dropout {
  static_assert(PercentDropped >= 0 && PercentDropped < 100,
                "segkit::nn::dropout: PercentDropped must be in [0, 100)");
  template <int C, bool G, class D>
  class layer : public stateless_layer<C, G, D> {
   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = C;
    shape setup(const shape& input, setup_context<D>&) {
      y_ = tensor_type(input);
      mask_ = tensor<uint8_t, D>(input);
      return input;
    }
    const tensor_type& forward(const tensor_type& x) {
      ops::dropout_params params{PercentDropped / 100.f, this->training_, mask_seed()};
      last_params_ = params;
      ops::dropout_forward(params, x, y_, mask_);
      return y_;
    }
    void backward(const tensor_type&, const tensor_type& dy, tensor_type* dx) {
      ops::dropout_backward(last_params_, mask_, dy, *dx);
    }
    void initialize(std::mt19937_64& rng) {
      seed_ = rng();
      calls_ = 0;
      generation_ = 0;
      step_calls_ = 0;
    }

   private:
    // Never set: a fresh mask per call, reproducible from the seed drawn at initialize().
    // Set: keyed on (seed, step, training calls since the step was set); see set_random_step.
    uint64_t mask_seed() {
      auto& state = detail::random_step_storage();
      const uint64_t generation = state.generation.load();
      if (generation == 0) return seed_ + 0x9E3779B97F4A7C15ull * ++calls_;
      if (generation != generation_) {
        generation_ = generation;
        step_calls_ = 0;
      }
      if (!this->training_) return seed_;  // eval: the mask is all ones anyway
      const uint64_t step = state.step.load();
      return ops::math::splitmix64(ops::math::splitmix64(seed_ ^ 0xD1B54A32D192ED03ull) + step) ^
             (0x9E3779B97F4A7C15ull * ++step_calls_);
    }

    tensor_type y_;
    tensor<uint8_t, D> mask_;
    uint64_t seed_ = 0, calls_ = 0, generation_ = 0, step_calls_ = 0;
    ops::dropout_params last_params_;
  };
};

// y = x; the gradient stops here. Layers before it are never called in backward (unless
// another, unstopped path reaches them) and their parameters get no gradient from this path.
struct stop_gradient {
  template <int C, bool G, class D>
  struct layer : stateless_layer<C, G, D> {
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = C;
    static constexpr bool propagates = false;
    shape setup(const shape& input, setup_context<D>&) { return input; }
    const tensor_type& forward(const tensor_type& x) { return x; }
    void backward(const tensor_type&, const tensor_type&, tensor_type*) {}
  };
};

}  // namespace segkit::nn
