// segkit/train/schedule.hpp — learning-rate schedules by iteration: poly, step (milestones or a
// fixed step size) and cosine, each with an optional linear warm-up, as mmcv's LrUpdaterHook
// (used by mmsegmentation) computes them.
// Provides: train::lr_schedule (the interface: double lr_at(int64_t iteration)),
// poly_schedule, step_schedule, cosine_schedule and their option structs.
// Requires: iteration >= 0 (value_error otherwise); iterations are the optimizer steps taken
// so far, i.e. before step k (0-based) a trainer calls opt.set_lr(schedule.lr_at(k)).
// Guarantees: options are validated at construction (value_error naming the value);
//   - regular lr (no warm-up):
//       poly:   (base - min) * (1 - min(it, max_iters) / max_iters)^power + min
//       step:   base * gamma^(milestones <= it)  or  base * gamma^(it / step_size)
//       cosine: min + (base - min) * (1 + cos(pi * min(it, max_iters) / max_iters)) / 2
//     (poly and cosine hold min_lr after max_iters instead of going negative or back up);
//   - linear warm-up (mmcv's 'linear'): for it < warmup_iters the regular lr is scaled by
//     1 - (1 - it / warmup_iters) * (1 - warmup_ratio): base * ratio at iteration 0, rising
//     linearly to the regular schedule, which it meets at warmup_iters.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "segkit/tensor/error.hpp"

namespace segkit::train {

struct warmup_options {
  int64_t iters = 0;   // 0 = no warm-up
  double ratio = 0.1;  // lr at iteration 0 is ratio * (regular lr); in [0, 1]
};

class lr_schedule {
 public:
  virtual ~lr_schedule() = default;
  double lr_at(int64_t iteration) const {
    require<value_error>(iteration >= 0, name_, ": iteration must be >= 0, got ", iteration);
    const double regular = regular_lr(iteration);
    if (iteration >= warmup_.iters) return regular;
    const double k = (1.0 - static_cast<double>(iteration) / static_cast<double>(warmup_.iters)) *
                     (1.0 - warmup_.ratio);
    return regular * (1.0 - k);
  }

 protected:
  lr_schedule(const char* name, double base_lr, const warmup_options& warmup)
      : name_(name), warmup_(warmup) {
    require<value_error>(base_lr >= 0 && std::isfinite(base_lr), name_,
                         ": base_lr must be finite and >= 0, got ", base_lr);
    require<value_error>(warmup.iters >= 0, name_, ": warmup iters must be >= 0, got ",
                         warmup.iters);
    require<value_error>(warmup.ratio >= 0 && warmup.ratio <= 1, name_,
                         ": warmup ratio must be in [0, 1], got ", warmup.ratio);
  }
  virtual double regular_lr(int64_t iteration) const = 0;

  void check_min_lr(double base_lr, double min_lr) const {
    require<value_error>(min_lr >= 0 && min_lr <= base_lr, name_,
                         ": min_lr must be in [0, base_lr = ", base_lr, "], got ", min_lr);
  }
  void check_max_iters(int64_t max_iters) const {
    require<value_error>(max_iters > 0, name_, ": max_iters must be > 0, got ", max_iters);
  }

  const char* name_;
  warmup_options warmup_;
};

struct poly_options {
  double base_lr = 0.01;
  int64_t max_iters = 0;  // required, > 0
  double power = 0.9;     // >= 0
  double min_lr = 0.0;    // in [0, base_lr]
  warmup_options warmup;
};

class poly_schedule : public lr_schedule {
 public:
  explicit poly_schedule(const poly_options& options)
      : lr_schedule("poly_schedule", options.base_lr, options.warmup), options_(options) {
    check_max_iters(options.max_iters);
    check_min_lr(options.base_lr, options.min_lr);
    require<value_error>(options.power >= 0 && std::isfinite(options.power),
                         "poly_schedule: power must be finite and >= 0, got ", options.power);
  }
  const poly_options& options() const { return options_; }

 protected:
  double regular_lr(int64_t iteration) const override {
    const double progress = static_cast<double>(std::min(iteration, options_.max_iters)) /
                            static_cast<double>(options_.max_iters);
    const double coefficient = std::pow(1.0 - progress, options_.power);
    return (options_.base_lr - options_.min_lr) * coefficient + options_.min_lr;
  }

 private:
  poly_options options_;
};

struct step_options {
  double base_lr = 0.01;
  std::vector<int64_t> milestones;  // strictly increasing, >= 0; or empty and step_size > 0
  int64_t step_size = 0;
  double gamma = 0.1;  // > 0
  warmup_options warmup;
};

class step_schedule : public lr_schedule {
 public:
  explicit step_schedule(const step_options& options)
      : lr_schedule("step_schedule", options.base_lr, options.warmup), options_(options) {
    require<value_error>(options.gamma > 0 && std::isfinite(options.gamma),
                         "step_schedule: gamma must be finite and > 0, got ", options.gamma);
    require<value_error>(options.milestones.empty() != (options.step_size == 0),
                         "step_schedule: give either milestones or a step_size (got ",
                         options.milestones.size(), " milestones and step_size ", options.step_size,
                         ")");
    require<value_error>(options.step_size >= 0, "step_schedule: step_size must be > 0, got ",
                         options.step_size);
    for (size_t k = 0; k < options.milestones.size(); ++k) {
      const int64_t m = options.milestones[k];
      require<value_error>(m >= 0, "step_schedule: milestone ", k, " must be >= 0, got ", m);
      require<value_error>(k == 0 || m > options.milestones[k - 1],
                           "step_schedule: milestones must increase strictly, got ",
                           options.milestones[k - 1], " then ", m);
    }
  }
  const step_options& options() const { return options_; }

 protected:
  double regular_lr(int64_t iteration) const override {
    int64_t decays = 0;
    if (options_.step_size > 0) {
      decays = iteration / options_.step_size;
    } else {
      for (int64_t m : options_.milestones) decays += iteration >= m ? 1 : 0;
    }
    return options_.base_lr * std::pow(options_.gamma, static_cast<double>(decays));
  }

 private:
  step_options options_;
};

struct cosine_options {
  double base_lr = 0.01;
  int64_t max_iters = 0;  // required, > 0
  double min_lr = 0.0;    // in [0, base_lr]
  warmup_options warmup;
};

class cosine_schedule : public lr_schedule {
 public:
  explicit cosine_schedule(const cosine_options& options)
      : lr_schedule("cosine_schedule", options.base_lr, options.warmup), options_(options) {
    check_max_iters(options.max_iters);
    check_min_lr(options.base_lr, options.min_lr);
  }
  const cosine_options& options() const { return options_; }

 protected:
  double regular_lr(int64_t iteration) const override {
    const double progress = static_cast<double>(std::min(iteration, options_.max_iters)) /
                            static_cast<double>(options_.max_iters);
    const double pi = 3.14159265358979323846;
    return options_.min_lr +
           0.5 * (options_.base_lr - options_.min_lr) * (1.0 + std::cos(pi * progress));
  }

 private:
  cosine_options options_;
};

}  // namespace segkit::train
