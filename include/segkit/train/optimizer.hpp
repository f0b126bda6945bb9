// segkit/train/optimizer.hpp — SGD (momentum, dampening, Nesterov, weight decay) and AdamW
// (decoupled weight decay, bias correction, optional AMSGrad), as torch.optim.SGD and
// torch.optim.AdamW compute them (their single-tensor path, float32 arithmetic, scalars
// formed in double and rounded to float once, as PyTorch passes them to its kernels).
// Provides: train::sgd<Device>, train::adamw<Device>, their option structs, and the fused
// per-tensor updates train::sgd_update / train::adamw_update (CPU here, CUDA in
// kernels/optimizer.cuh; both run the math:: functions below, one pass over p, g and state).
// Requires: parameters from nn::parameters_of(module): value and grad of one shape, which
// must outlive the optimizer. Options out of range throw value_error naming the value.
// Guarantees:
//   - step() updates every parameter from its grad with the current lr (set_lr, e.g. from a
//     schedule.hpp schedule before each step); zero_grad() zeroes every grad;
//   - all state is allocated at construction, so step() never allocates;
//   - visit_state(prefix, f) calls f(name, tensor<float, D>&) for each state tensor, named
//     as PyTorch names it, "<param>.momentum_buffer" (SGD with momentum > 0),
//     "<param>.exp_avg", "<param>.exp_avg_sq", "<param>.max_exp_avg_sq" (AMSGrad), then
//     f("step", tensor<int64_t, D>&) (shape [1]): ONE count of the steps taken, shared by
//     all parameters (PyTorch keeps one float count per parameter; they are always equal
//     here because every parameter steps together). SGD's "first step" (the momentum buffer
//     starts as the first gradient, PyTorch's `buf is None`) is `step == 0`, so it is saved
//     with the count. After f returns, the count is read back and every state shape is
//     checked; a visitor may also keep the tensors and write them after visit_state returns
//     (the count is read back at its next use), so loading a checkpoint through visit_state
//     resumes bit-identically;
//   - a weight-decay filter (options.decay_filter, name -> bool; empty = all) gives
//     the parameters it rejects weight decay 0, like a PyTorch param group with
//     weight_decay=0 (the usual choice for biases and norm weights).
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "segkit/nn/parameter.hpp"
#include "segkit/tensor/config.hpp"
#include "segkit/tensor/error.hpp"
#include "segkit/tensor/parallel.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::train {

using weight_decay_filter = std::function<bool(const std::string& parameter_name)>;

struct sgd_options {
  double lr = 0.01;
  double momentum = 0.0;             // [0, 1)
  double dampening = 0.0;            // [0, 1]
  double weight_decay = 0.0;         // >= 0, added to the gradient: g += weight_decay * p
  bool nesterov = false;             // needs momentum > 0 and dampening 0 (as PyTorch)
  weight_decay_filter decay_filter;  // true = this parameter decays; empty = all decay
};

struct adamw_options {
  double lr = 1e-3;
  double beta1 = 0.9;          // [0, 1)
  double beta2 = 0.999;        // [0, 1)
  double eps = 1e-8;           // > 0
  double weight_decay = 1e-2;  // >= 0, decoupled: p *= 1 - lr * weight_decay
  bool amsgrad = false;
  weight_decay_filter decay_filter;
};

// ---- per-element math, shared with the CUDA kernels ------------------------------------------
namespace math {

// Scalars of one SGD step for one parameter, rounded to float once.
struct sgd_scalars {
  float lr;
  float momentum;
  float dampening_complement;  // 1 - dampening
  float weight_decay;
};

// PyTorch: d = g + wd*p; buf = first ? d : momentum*buf + (1-dampening)*d;
// d = nesterov ? d + momentum*buf : buf; p = p - lr*d.
SEGKIT_HOST_DEVICE void sgd_element(float& p, float g, float& buf, const sgd_scalars& s,
                                    bool use_momentum, bool nesterov, bool first_step) {
  float d = g + s.weight_decay * p;
  if (use_momentum) {
    buf = first_step ? d : buf * s.momentum + s.dampening_complement * d;
    d = nesterov ? d + s.momentum * buf : buf;
  }
  p = p + (-s.lr) * d;
}

struct adamw_scalars {
  float decay_factor;  // 1 - lr * weight_decay
  float beta1, one_minus_beta1;
  float beta2, one_minus_beta2;
  float bias_correction2_sqrt;  // sqrt(1 - beta2^step)
  float eps;
  float negative_step_size;  // -lr / (1 - beta1^step)
};

// PyTorch's operation order: p *= decay; m = m*b1 + (1-b1)*g; v = v*b2 + ((1-b2)*g)*g;
// denom = sqrt(v or max(vmax, v)) / bc2_sqrt + eps; p += (-step_size * m) / denom.
SEGKIT_HOST_DEVICE void adamw_element(float& p, float g, float& m, float& v, float& v_max,
                                      const adamw_scalars& s, bool amsgrad) {
  p = p * s.decay_factor;
  m = m * s.beta1 + s.one_minus_beta1 * g;
  v = v * s.beta2 + s.one_minus_beta2 * g * g;
  float second = v;
  if (amsgrad) {
    v_max = v_max < v ? v : v_max;
    second = v_max;
  }
  const float denom = sqrtf(second) / s.bias_correction2_sqrt + s.eps;
  p = p + s.negative_step_size * m / denom;
}

}  // namespace math

// ---- the fused per-tensor updates (CPU; CUDA overloads declared below) -----------------------
namespace detail {
constexpr int64_t optimizer_grain = 1 << 14;

template <class Body>
void dispatch_flag(bool flag, const Body& body) {
  if (flag)
    body(std::true_type{});
  else
    body(std::false_type{});
}

template <class Device>
void check_update_shapes(const char* op, const tensor<float, Device>& value,
                         const tensor<float, Device>& other, const char* other_name) {
  require_same_shape(op, "parameter", value.shape(), other_name, other.shape());
}
}  // namespace detail

// momentum_buffer: nullptr when momentum is 0 (no buffer kept, as PyTorch).
inline void sgd_update(const math::sgd_scalars& s, bool nesterov, bool first_step,
                       tensor<float, cpu>& value, const tensor<float, cpu>& grad,
                       tensor<float, cpu>* momentum_buffer) {
  detail::check_update_shapes("sgd_update", value, grad, "gradient");
  if (momentum_buffer)
    detail::check_update_shapes("sgd_update", value, *momentum_buffer, "momentum buffer");
  float* p = value.data();
  const float* g = grad.data();
  float* buffer = momentum_buffer ? momentum_buffer->data() : nullptr;
  detail::dispatch_flag(buffer != nullptr, [&](auto use_momentum) {
    detail::dispatch_flag(nesterov, [&](auto use_nesterov) {
      detail::dispatch_flag(first_step, [&](auto first) {
        parallel_for(0, value.numel(), detail::optimizer_grain, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) {
            float b = 0.f;
            if constexpr (decltype(use_momentum)::value) b = buffer[i];
            math::sgd_element(p[i], g[i], b, s, decltype(use_momentum)::value,
                              decltype(use_nesterov)::value, decltype(first)::value);
            if constexpr (decltype(use_momentum)::value) buffer[i] = b;
          }
        });
      });
    });
  });
}

// max_exp_avg_sq: nullptr unless AMSGrad.
inline void adamw_update(const math::adamw_scalars& s, tensor<float, cpu>& value,
                         const tensor<float, cpu>& grad, tensor<float, cpu>& exp_avg,
                         tensor<float, cpu>& exp_avg_sq, tensor<float, cpu>* max_exp_avg_sq) {
  detail::check_update_shapes("adamw_update", value, grad, "gradient");
  detail::check_update_shapes("adamw_update", value, exp_avg, "exp_avg");
  detail::check_update_shapes("adamw_update", value, exp_avg_sq, "exp_avg_sq");
  if (max_exp_avg_sq)
    detail::check_update_shapes("adamw_update", value, *max_exp_avg_sq, "max_exp_avg_sq");
  float* p = value.data();
  const float* g = grad.data();
  float *m = exp_avg.data(), *v = exp_avg_sq.data();
  float* v_max = max_exp_avg_sq ? max_exp_avg_sq->data() : nullptr;
  detail::dispatch_flag(v_max != nullptr, [&](auto amsgrad) {
    parallel_for(0, value.numel(), detail::optimizer_grain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        float largest = 0.f;
        if constexpr (decltype(amsgrad)::value) largest = v_max[i];
        math::adamw_element(p[i], g[i], m[i], v[i], largest, s, decltype(amsgrad)::value);
        if constexpr (decltype(amsgrad)::value) v_max[i] = largest;
      }
    });
  });
}

#ifdef SEGKIT_WITH_CUDA
void sgd_update(const math::sgd_scalars& s, bool nesterov, bool first_step,
                tensor<float, cuda>& value, const tensor<float, cuda>& grad,
                tensor<float, cuda>* momentum_buffer);
void adamw_update(const math::adamw_scalars& s, tensor<float, cuda>& value,
                  const tensor<float, cuda>& grad, tensor<float, cuda>& exp_avg,
                  tensor<float, cuda>& exp_avg_sq, tensor<float, cuda>* max_exp_avg_sq);
#endif

// ---- what both optimizers share -----------------------------------------------------------------
namespace detail {

inline void require_range(const char* op, const char* name, double value, bool ok,
                          const char* expected) {
  require<value_error>(ok, op, ": ", name, " must be ", expected, ", got ", value);
}

template <class Device>
class optimizer_base {
 public:
  double lr() const { return lr_; }
  void set_lr(double lr) {
    require_range(op_, "lr", lr, lr >= 0 && std::isfinite(lr), "finite and >= 0");
    lr_ = lr;
  }
  // step() calls completed (restored by visit_state).
  int64_t steps_taken() const {
    sync_step();
    return step_;
  }
  size_t parameter_count() const { return params_.size(); }
  void zero_grad() {
    for (auto& entry : params_) entry.param->grad.zero();
  }

 protected:
  optimizer_base(const char* op, std::vector<nn::named_parameter<Device>> params, double lr,
                 double weight_decay, const weight_decay_filter& filter)
      : op_(op), params_(std::move(params)), step_tensor_(shape{1}) {
    set_lr(lr);
    require_range(op_, "weight_decay", weight_decay,
                  weight_decay >= 0 && std::isfinite(weight_decay), "finite and >= 0");
    require<value_error>(!params_.empty(), op_, ": the parameter list is empty");
    for (const auto& entry : params_) {
      require<value_error>(entry.param != nullptr, op_, ": parameter \"", entry.name,
                           "\" is a null pointer");
      check_grad(entry);
      decay_.push_back(!filter || filter(entry.name) ? weight_decay : 0.0);
    }
  }

  void check_grad(const nn::named_parameter<Device>& entry) const {
    require<shape_error>(entry.param->grad.shape() == entry.param->value.shape(), op_,
                         ": parameter \"", entry.name, "\" has value shape ",
                         entry.param->value.shape().to_string(), " but gradient shape ",
                         entry.param->grad.shape().to_string());
  }

  // After a visitor may have replaced state (a checkpoint load): state shapes must still
  // match their parameters and the step count must be sane.
  void check_state(const std::string& name, const tensor<float, Device>& state,
                   const nn::named_parameter<Device>& entry) const {
    require<shape_error>(state.shape() == entry.param->value.shape(), op_, ": state \"", name,
                         "\" has shape ", state.shape().to_string(), " but parameter \"",
                         entry.name, "\" has shape ", entry.param->value.shape().to_string());
  }

  // The count is shown to visitors as a tensor, and a visitor may write it during the visit
  // or only after visit_state returns (train/checkpoint.hpp collects every target, validates
  // the whole file, then copies). So after a visit the tensor is the truth until the count is
  // next used: sync_step() reads it back then (one 8-byte copy on cuda, only after a visit).
  template <class Visitor>
  void visit_step(const std::string& prefix, Visitor& f) {
    sync_step();
    step_tensor_.fill(step_);
    f(nn::join_name(prefix, "step"), step_tensor_);
    step_visited_ = true;
    sync_step();  // a visitor that wrote at once is checked at once
    step_visited_ = true;
  }

  void sync_step() const {
    if (!step_visited_) return;
    require<shape_error>(step_tensor_.numel() == 1, op_,
                         ": state \"step\" must hold one value, got shape ",
                         step_tensor_.shape().to_string());
    int64_t restored = 0;
    if constexpr (std::is_same_v<Device, cpu>)
      restored = step_tensor_[0];
    else
      restored = to<cpu>(step_tensor_)[0];
    require<value_error>(restored >= 0, op_, ": state \"step\" must be >= 0, got ", restored);
    step_ = restored;
    step_visited_ = false;
  }

  const char* op_;
  std::vector<nn::named_parameter<Device>> params_;
  std::vector<double> decay_;  // per parameter, after the filter
  double lr_ = 0;
  mutable int64_t step_ = 0;
  mutable bool step_visited_ = false;    // step_tensor_ may hold a newer count than step_
  tensor<int64_t, Device> step_tensor_;  // the count as visit_state shows it
};

}  // namespace detail

// ---- SGD
// -------------------------------------------------------------------------------------------
template <class Device = cpu>
class sgd : public detail::optimizer_base<Device> {
  using base = detail::optimizer_base<Device>;

 public:
  sgd(std::vector<nn::named_parameter<Device>> params, const sgd_options& options)
      : base("sgd", std::move(params), options.lr, options.weight_decay, options.decay_filter),
        options_(options) {
    const auto& o = options;
    detail::require_range("sgd", "momentum", o.momentum, o.momentum >= 0 && o.momentum < 1,
                          "in [0, 1)");
    detail::require_range("sgd", "dampening", o.dampening, o.dampening >= 0 && o.dampening <= 1,
                          "in [0, 1]");
    require<value_error>(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
                         "sgd: nesterov needs momentum > 0 and dampening 0, got momentum ",
                         o.momentum, " and dampening ", o.dampening);
    if (o.momentum > 0)
      for (const auto& entry : this->params_)
        buffers_.push_back(tensor<float, Device>::zeros(entry.param->value.shape()));
  }

  const sgd_options& options() const { return options_; }

  void step() {
    this->sync_step();
    const bool first = this->step_ == 0;
    for (size_t k = 0; k < this->params_.size(); ++k) {
      auto& entry = this->params_[k];
      this->check_grad(entry);
      const math::sgd_scalars s{
          static_cast<float>(this->lr_), static_cast<float>(options_.momentum),
          static_cast<float>(1.0 - options_.dampening), static_cast<float>(this->decay_[k])};
      sgd_update(s, options_.nesterov, first, entry.param->value, entry.param->grad,
                 buffers_.empty() ? nullptr : &buffers_[k]);
    }
    ++this->step_;
  }

  // f(name, tensor<float, D>&) per momentum buffer, then f("step", tensor<int64_t, D>&).
  template <class Visitor>
  void visit_state(const std::string& prefix, Visitor&& f) {
    for (size_t k = 0; k < buffers_.size(); ++k) {
      const std::string name = nn::join_name(prefix, this->params_[k].name + ".momentum_buffer");
      f(name, buffers_[k]);
      this->check_state(name, buffers_[k], this->params_[k]);
    }
    this->visit_step(prefix, f);
  }
  template <class Visitor>
  void visit_state(Visitor&& f) {
    visit_state(std::string(), f);
  }

 private:
  sgd_options options_;
  std::vector<tensor<float, Device>> buffers_;  // empty when momentum is 0
};

// ---- AdamW
// -----------------------------------------------------------------------------------------
template <class Device = cpu>
class adamw : public detail::optimizer_base<Device> {
  using base = detail::optimizer_base<Device>;

 public:
  adamw(std::vector<nn::named_parameter<Device>> params, const adamw_options& options)
      : base("adamw", std::move(params), options.lr, options.weight_decay, options.decay_filter),
        options_(options) {
    const auto& o = options;
    detail::require_range("adamw", "beta1", o.beta1, o.beta1 >= 0 && o.beta1 < 1, "in [0, 1)");
    detail::require_range("adamw", "beta2", o.beta2, o.beta2 >= 0 && o.beta2 < 1, "in [0, 1)");
    detail::require_range("adamw", "eps", o.eps, o.eps > 0 && std::isfinite(o.eps),
                          "finite and > 0");
    for (const auto& entry : this->params_) {
      const shape& extent = entry.param->value.shape();
      exp_avg_.push_back(tensor<float, Device>::zeros(extent));
      exp_avg_sq_.push_back(tensor<float, Device>::zeros(extent));
      if (o.amsgrad) max_exp_avg_sq_.push_back(tensor<float, Device>::zeros(extent));
    }
  }

  const adamw_options& options() const { return options_; }

  void step() {
    this->sync_step();
    const int64_t step = this->step_ + 1;
    const double lr = this->lr_;
    // As PyTorch: Python floats (double), rounded to float where they meet the tensors.
    const double bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step));
    const double bias_correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(step));
    for (size_t k = 0; k < this->params_.size(); ++k) {
      auto& entry = this->params_[k];
      this->check_grad(entry);
      const math::adamw_scalars s{static_cast<float>(1.0 - lr * this->decay_[k]),
                                  static_cast<float>(options_.beta1),
                                  static_cast<float>(1.0 - options_.beta1),
                                  static_cast<float>(options_.beta2),
                                  static_cast<float>(1.0 - options_.beta2),
                                  static_cast<float>(std::sqrt(bias_correction2)),
                                  static_cast<float>(options_.eps),
                                  static_cast<float>(-(lr / bias_correction1))};
      adamw_update(s, entry.param->value, entry.param->grad, exp_avg_[k], exp_avg_sq_[k],
                   options_.amsgrad ? &max_exp_avg_sq_[k] : nullptr);
    }
    this->step_ = step;
  }

  // f(name, tensor<float, D>&) for exp_avg, exp_avg_sq (and max_exp_avg_sq) of each
  // parameter in order, then f("step", tensor<int64_t, D>&).
  template <class Visitor>
  void visit_state(const std::string& prefix, Visitor&& f) {
    for (size_t k = 0; k < this->params_.size(); ++k) {
      const std::string& param_name = this->params_[k].name;
      visit_one(prefix, param_name + ".exp_avg", exp_avg_[k], k, f);
      visit_one(prefix, param_name + ".exp_avg_sq", exp_avg_sq_[k], k, f);
      if (options_.amsgrad)
        visit_one(prefix, param_name + ".max_exp_avg_sq", max_exp_avg_sq_[k], k, f);
    }
    this->visit_step(prefix, f);
  }
  template <class Visitor>
  void visit_state(Visitor&& f) {
    visit_state(std::string(), f);
  }

 private:
  template <class Visitor>
  void visit_one(const std::string& prefix, const std::string& name, tensor<float, Device>& state,
                 size_t k, Visitor& f) {
    const std::string full = nn::join_name(prefix, name);
    f(full, state);
    this->check_state(full, state, this->params_[k]);
  }

  adamw_options options_;
  std::vector<tensor<float, Device>> exp_avg_, exp_avg_sq_, max_exp_avg_sq_;
};

}  // namespace segkit::train
