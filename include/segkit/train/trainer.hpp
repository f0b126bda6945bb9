// segkit/train/trainer.hpp — the training loop every segkit model shares.
// Provides: train::trainer<Model, Loader, Device>, trainer_options, eval_result, step_report,
// train_result, divergence_error.
// Requires:
//   - Model: the model concept of models/model.hpp (setup, input_shape, forward_backward,
//     zero_grad, train/eval, visit_parameters/visit_buffers, name); its parameters exist from
//     construction (the optimizer's state is allocated from them);
//   - Loader: data::loader or anything with `const B& next()` (B has `images` [N,3,H,W] float
//     and `labels` [N,H,W] int32 host tensors), `void seek(int64_t iteration)` (the next
//     next() returns that iteration's batch) and `double wait_seconds() const`;
//   - options: iterations > 0; out_dir (created if absent) or "" for no files at all.
// Each step k (0-based; "iteration k+1" in every log, file and message, i.e. the number of
// steps completed): batch = loader.next(); model.setup(shape) if the shape changed;
// nn::set_random_step(k) (dropout masks depend on
// (layer, k), not on how many steps this process ran); model.zero_grad();
// terms = model.forward_backward(images, labels); every loss term and the gradient norm must
// be finite, else divergence_error; lr = schedule(k); optimizer.step().
// Guarantees:
//   - resume: out_dir/last.safetensors holds parameters, buffers, optimizer state (with its
//     step count) and metadata (iteration, seed, model, dataset, best mIoU, options); run()
//     with options.resume loads it, seeks the loader to its iteration and continues, so
//     N steps + save + new objects + resume + M steps == N + M steps, bit for bit (given a
//     deterministic model and loader). A different seed than the checkpoint's is an error.
//   - checkpoints are atomic (tensor_file::save): last.safetensors every checkpoint_every
//     iterations, at the end and on SIGINT; iter_<k>.safetensors too with keep_every_checkpoint;
//     best.safetensors whenever an evaluation's mIoU beats the best so far;
//   - evaluation (an optional callback) runs every eval_every iterations and after the last
//     one, with the model in eval mode (train mode and the training input shape restored
//     afterwards); its values go to eval.csv and metrics.jsonl, and to the console except
//     keys with a '.' (per-class entries such as "iou.sky");
//   - every log_every iterations: a progress line (bar on a terminal) and a record in
//     metrics.csv / metrics.jsonl (window means of the loss terms, lr, grad norm, it/s, data
//     wait), flushed; a resumed run drops records past its checkpoint and appends;
//   - SIGINT (when handle_sigint): the current step finishes, last.safetensors is saved, run()
//     returns with interrupted = true (a second SIGINT kills the process as usual); the
//     previous handler is restored when run() returns; stop_after stops the same way
//     (stopped = true), for runs split into sessions;
//   - NaN/Inf in a loss term or a gradient: the step is not applied, run() throws
//     divergence_error naming the iteration, the term (or the first parameter whose gradient
//     is not finite) and the last good checkpoint.
#pragma once
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "segkit/models/model.hpp"
#include "segkit/nn/layers.hpp"
#include "segkit/nn/parameter.hpp"
#include "segkit/tensor/error.hpp"
#include "segkit/tensor/safetensors.hpp"
#include "segkit/tensor/tensor.hpp"
#include "segkit/train/checkpoint.hpp"
#include "segkit/train/metrics_log.hpp"
#include "segkit/train/optimizer.hpp"
#include "segkit/train/progress.hpp"
#include "segkit/train/schedule.hpp"

namespace segkit::train {

// A loss term or a gradient became NaN or Inf; the message names the iteration, the term and
// the last good checkpoint.
struct divergence_error : error {
  using error::error;
};

struct trainer_options {
  int64_t iterations = 0;        // total steps of the run (> 0); the schedule spans them
  int64_t stop_after = 0;        // > 0: stop (saving last.safetensors) once this many steps are
                                 // done, as if interrupted; resume later for the rest
  int64_t log_every = 10;        // progress line + metrics record
  int64_t eval_every = 0;        // 0 = evaluate only after the last iteration (with a callback)
  int64_t checkpoint_every = 0;  // 0 = last.safetensors only at the end and on SIGINT
  bool keep_every_checkpoint = false;  // also iter_<k>.safetensors
  std::string out_dir;                 // "" = no checkpoints, no metric files
  bool resume = false;                 // continue from out_dir/last.safetensors if it exists

  std::string optimizer = "sgd";  // "sgd" (momentum, L2 weight decay) or "adamw"
  double lr = 0.01;
  double momentum = 0.9;       // sgd
  double weight_decay = 5e-4;  // sgd: L2 in the gradient; adamw: decoupled
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adamw
  std::string schedule = "poly";                  // "poly", "cosine" or "constant"
  double poly_power = 0.9;
  double min_lr = 0.0;  // poly / cosine floor (mmseg's poly configs use 1e-4)
  int64_t warmup_iters = 0;
  double warmup_ratio = 0.1;

  uint64_t seed = 0;  // recorded in the checkpoint; resume refuses another seed
  progress_mode progress = progress_mode::automatic;
  std::FILE* console = stdout;  // nullptr = silent
  bool handle_sigint = true;
  std::string model_name;    // metadata; "" = model.name()
  std::string dataset_name;  // metadata
  checkpoint_metadata metadata;  // extra checkpoint metadata (the tool's whole configuration)
};

// What an evaluation callback returns: the mIoU that ranks checkpoints (NaN = none) and any
// other named values (pixel accuracy, boundary mIoU, ...), logged as they are.
struct eval_result {
  double miou = std::numeric_limits<double>::quiet_NaN();
  metric_values values;
};

// Passed to options' step callback after every applied step.
struct step_report {
  int64_t iteration;  // steps completed
  const models::loss_terms& terms;
  double lr;
  double grad_norm;
};

struct train_result {
  int64_t start_iteration = 0;  // 0, or the checkpoint's iteration when resumed
  int64_t iterations = 0;       // steps completed at the end (== options.iterations unless
                                // interrupted)
  bool interrupted = false;     // stopped by SIGINT (last.safetensors saved)
  bool stopped = false;         // stopped by stop_after (last.safetensors saved)
  double seconds = 0;
  double best_miou = std::numeric_limits<double>::quiet_NaN();
  int64_t best_iteration = -1;
  models::loss_terms last_terms;
  std::string last_checkpoint;  // "" if none was written
};

namespace trainer_detail {

inline std::atomic<int>& sigint_flag() {
  static std::atomic<int> flag{0};
  return flag;
}
inline void on_sigint(int) { sigint_flag().store(1); }

// Installs the SIGINT handler for its lifetime (one shot: SA_RESETHAND, so a second Ctrl-C
// gets the default action), and restores the previous one.
class sigint_guard {
 public:
  explicit sigint_guard(bool active) : active_(active) {
    sigint_flag().store(0);
    if (!active_) return;
    struct sigaction action {};
    action.sa_handler = on_sigint;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &action, &previous_);
  }
  ~sigint_guard() {
    if (active_) sigaction(SIGINT, &previous_, nullptr);
  }
  sigint_guard(const sigint_guard&) = delete;
  sigint_guard& operator=(const sigint_guard&) = delete;
  bool raised() const { return sigint_flag().load() != 0; }

 private:
  bool active_;
  struct sigaction previous_ {};
};

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline std::string join_path(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

}  // namespace trainer_detail

template <class Model, class Loader, class Device = cpu>
class trainer {
 public:
  using evaluator = std::function<eval_result(Model&, int64_t iteration)>;
  using step_callback = std::function<void(const step_report&)>;

  trainer(Model& model, Loader& loader, trainer_options options, evaluator evaluate = {},
          step_callback on_step = {})
      : model_(model),
        loader_(loader),
        options_(std::move(options)),
        evaluate_(std::move(evaluate)),
        on_step_(std::move(on_step)),
        params_(nn::parameters_of<Device>(model)) {
    const auto& o = options_;
    require<value_error>(o.iterations > 0, "trainer: iterations must be > 0, got ", o.iterations);
    require<value_error>(o.log_every > 0, "trainer: log_every must be > 0, got ", o.log_every);
    require<value_error>(o.eval_every >= 0 && o.checkpoint_every >= 0,
                         "trainer: eval_every and checkpoint_every must be >= 0, got ",
                         o.eval_every, " and ", o.checkpoint_every);
    require<value_error>(!o.resume || !o.out_dir.empty(),
                         "trainer: resume needs an out_dir holding last.safetensors");
    if (o.optimizer == "sgd") {
      sgd_options s;
      s.lr = o.lr, s.momentum = o.momentum, s.weight_decay = o.weight_decay;
      sgd_.emplace(params_, s);
    } else if (o.optimizer == "adamw") {
      adamw_options a;
      a.lr = o.lr, a.beta1 = o.beta1, a.beta2 = o.beta2, a.eps = o.eps;
      a.weight_decay = o.weight_decay;
      adamw_.emplace(params_, a);
    } else {
      throw value_error("trainer: optimizer must be \"sgd\" or \"adamw\", got \"" + o.optimizer +
                        "\"");
    }
    const warmup_options warmup{o.warmup_iters, o.warmup_ratio};
    if (o.schedule == "poly") {
      schedule_ = std::make_unique<poly_schedule>(
          poly_options{o.lr, o.iterations, o.poly_power, o.min_lr, warmup});
    } else if (o.schedule == "cosine") {
      schedule_ =
          std::make_unique<cosine_schedule>(cosine_options{o.lr, o.iterations, o.min_lr, warmup});
    } else if (o.schedule == "constant") {
      step_options constant;
      constant.base_lr = o.lr, constant.step_size = std::numeric_limits<int64_t>::max();
      constant.warmup = warmup;
      schedule_ = std::make_unique<step_schedule>(constant);
    } else {
      throw value_error("trainer: schedule must be \"poly\", \"cosine\" or \"constant\", got \"" +
                        o.schedule + "\"");
    }
  }

  const trainer_options& options() const { return options_; }
  // The optimizer's state visit (for tests and tools): f(name, tensor&) as visit_state.
  template <class F>
  void visit_optimizer_state(F&& f) {
    if (sgd_)
      sgd_->visit_state(f);
    else
      adamw_->visit_state(f);
  }
  std::string last_checkpoint_path() const { return file("last.safetensors"); }

  train_result run() {
    using trainer_detail::seconds_since;
    const auto& o = options_;
    train_result result;
    const auto run_start = std::chrono::steady_clock::now();
    progress_printer console(o.console, o.progress);
    if (!o.out_dir.empty()) std::filesystem::create_directories(o.out_dir);

    int64_t iteration = 0;  // steps completed
    if (o.resume) iteration = resume(console);
    result.start_iteration = iteration;
    loader_.seek(iteration);
    if (!o.out_dir.empty()) {
      const int64_t keep = o.resume ? iteration : -1;
      train_csv_.open(file("metrics.csv"), keep);
      eval_csv_.open(file("eval.csv"), keep);
      jsonl_.open(file("metrics.jsonl"), keep);
    }
    trainer_detail::sigint_guard sigint(o.handle_sigint);
    model_.train();

    log_window window;
    window.start(loader_.wait_seconds());
    double ema_step_seconds = 0;
    int64_t saved_at = -1;
    while (iteration < o.iterations) {
      const auto step_start = std::chrono::steady_clock::now();
      const auto& batch = loader_.next();
      const double lr = schedule_->lr_at(iteration);
      // setup (and its warm-up forward) first: the step's dropout count starts after it.
      if (!(model_.input_shape() == batch.images.shape())) model_.setup(batch.images.shape());
      nn::set_random_step(static_cast<uint64_t>(iteration));
      model_.zero_grad();
      models::loss_terms terms = forward_backward(batch);
      const double grad_norm = check_finite(iteration + 1, terms);
      set_lr(lr);
      step();
      ++iteration;
      result.last_terms = terms;
      window.add(terms, grad_norm);
      const double step_seconds = seconds_since(step_start);
      ema_step_seconds = ema_step_seconds == 0 ? step_seconds
                                               : 0.9 * ema_step_seconds + 0.1 * step_seconds;
      if (on_step_) on_step_(step_report{iteration, terms, lr, grad_norm});

      progress_snapshot snapshot;
      snapshot.iteration = iteration, snapshot.total = o.iterations, snapshot.lr = lr;
      snapshot.iterations_per_second = ema_step_seconds > 0 ? 1.0 / ema_step_seconds : 0;
      snapshot.eta_seconds = ema_step_seconds * static_cast<double>(o.iterations - iteration);
      snapshot.loss = terms.total, snapshot.terms = terms.terms;
      snapshot.data_wait_fraction = window.wait_fraction(loader_.wait_seconds());
      if (iteration % o.log_every == 0 || iteration == o.iterations) {
        window.means(snapshot);
        console.log(snapshot);
        if (!o.out_dir.empty()) {
          metric_values values{{"lr", lr}, {"loss", snapshot.loss}};
          for (const auto& term : snapshot.terms) values.push_back(term);
          values.push_back({"grad_norm", window.grad_norm()});
          values.push_back({"it_per_s", window.rate()});
          values.push_back({"data_wait", snapshot.data_wait_fraction});
          values.push_back({"elapsed_s", seconds_since(run_start)});
          train_csv_.write(iteration, values);
          jsonl_.write(iteration, "train", values);
        }
        window.start(loader_.wait_seconds());
      } else {
        console.update(snapshot);
      }

      const bool last = iteration == o.iterations;
      if (evaluate_ && ((o.eval_every > 0 && iteration % o.eval_every == 0) || last)) {
        run_evaluation(iteration, batch.images.shape(), console);
        window.start(loader_.wait_seconds());  // evaluation time is not training rate
      }
      const bool stop = o.stop_after > 0 && iteration >= o.stop_after && !last;
      const bool interrupted = sigint.raised() || stop;
      if (!o.out_dir.empty() &&
          ((o.checkpoint_every > 0 && iteration % o.checkpoint_every == 0) || last ||
           interrupted)) {
        save(file("last.safetensors"), iteration);
        if (o.keep_every_checkpoint)
          save(file("iter_" + std::to_string(iteration) + ".safetensors"), iteration);
        saved_at = iteration;
        result.last_checkpoint = file("last.safetensors");
      }
      if (interrupted) {
        result.interrupted = sigint.raised();
        result.stopped = !result.interrupted;
        console.message(std::string(result.interrupted ? "interrupted (SIGINT)" : "stopped (stop_after)") +
                        " after iteration " + std::to_string(iteration) +
                        (saved_at == iteration ? ": saved " + file("last.safetensors") +
                                                     "; continue with --resume"
                                               : ": no out_dir, nothing saved"));
        break;
      }
    }
    console.finish();
    result.iterations = iteration;
    result.best_miou = best_miou_, result.best_iteration = best_iteration_;
    result.seconds = seconds_since(run_start);
    return result;
  }

 private:
  // Means of the loss terms and grad norm since the last log, and the rate over the window.
  class log_window {
   public:
    void start(double wait) {
      begin_ = std::chrono::steady_clock::now(), wait_ = wait;
      steps_ = 0, total_ = 0, grad_ = 0, sums_.clear();
    }
    void add(const models::loss_terms& terms, double grad_norm) {
      if (sums_.size() != terms.terms.size()) sums_.assign(terms.terms.size(), 0.0);
      for (size_t k = 0; k < terms.terms.size(); ++k) sums_[k] += terms.terms[k].second;
      total_ += terms.total, grad_ += grad_norm, ++steps_;
    }
    void means(progress_snapshot& s) const {
      if (steps_ == 0) return;
      s.loss = total_ / double(steps_);
      for (size_t k = 0; k < s.terms.size() && k < sums_.size(); ++k)
        s.terms[k].second = sums_[k] / double(steps_);
    }
    double grad_norm() const { return steps_ ? grad_ / double(steps_) : 0; }
    double rate() const {
      const double s = trainer_detail::seconds_since(begin_);
      return s > 0 ? double(steps_) / s : 0;
    }
    double wait_fraction(double wait_now) const {
      const double s = trainer_detail::seconds_since(begin_);
      return s > 0 ? std::min(1.0, (wait_now - wait_) / s) : 0;
    }

   private:
    std::chrono::steady_clock::time_point begin_;
    double wait_ = 0, total_ = 0, grad_ = 0;
    int64_t steps_ = 0;
    std::vector<double> sums_;
  };

  std::string file(const std::string& name) const {
    return options_.out_dir.empty() ? std::string() : trainer_detail::join_path(options_.out_dir,
                                                                                name);
  }

  template <class Batch>
  models::loss_terms forward_backward(const Batch& batch) {
    if constexpr (std::is_same_v<Device, cpu>) {
      return model_.forward_backward(batch.images, batch.labels);
    } else {
      if (!(images_.shape() == batch.images.shape())) {
        images_ = tensor<float, Device>(batch.images.shape());
        labels_ = tensor<int32_t, Device>(batch.labels.shape());
      }
      copy_into(batch.images, images_);
      copy_into(batch.labels, labels_);
      return model_.forward_backward(images_, labels_);
    }
  }

  // The gradient's global L2 norm; divergence_error if it or a loss term is not finite.
  double check_finite(int64_t iteration, const models::loss_terms& terms) {
    for (const auto& [name, value] : terms.terms)
      if (!std::isfinite(value)) diverged(iteration, "loss term \"" + name + "\"", value);
    if (!std::isfinite(terms.total)) diverged(iteration, "the total loss", terms.total);
    double sum = 0;
    for (const auto& entry : params_) {
      const double squares = sum_of_squares(entry.param->grad);
      if (!std::isfinite(squares))
        diverged(iteration, "the gradient of \"" + entry.name + "\"", squares);
      sum += squares;
    }
    if (!std::isfinite(sum)) diverged(iteration, "the gradient norm", sum);
    return std::sqrt(sum);
  }

  static double sum_of_squares(const tensor<float, Device>& grad) {
    if constexpr (std::is_same_v<Device, cpu>) {
      const float* g = grad.data();
      double sum = 0;
      for (int64_t i = 0; i < grad.numel(); ++i) sum += double(g[i]) * double(g[i]);
      return sum;
    } else {
      return sum_of_squares(to<cpu>(grad));  // TODO: a device reduction instead of a copy
    }
  }

  [[noreturn]] void diverged(int64_t iteration, const std::string& what, double value) {
    std::string where =
        last_good_.empty() ? std::string("no checkpoint has been written in this run")
                           : "last good checkpoint: " + last_good_ + " (iteration " +
                                 std::to_string(last_good_iteration_) + ")";
    if (last_good_.empty() && options_.out_dir.empty()) where += " (no out_dir)";
    throw divergence_error("trainer: training diverged at iteration " +
                           std::to_string(iteration) + ": " + what + " is " +
                           format_number(value) + "; the step was not applied; " + where);
  }

  void set_lr(double lr) {
    if (sgd_)
      sgd_->set_lr(lr);
    else
      adamw_->set_lr(lr);
  }
  void step() {
    if (sgd_)
      sgd_->step();
    else
      adamw_->step();
  }

  checkpoint_metadata metadata(int64_t iteration) const {
    const auto& o = options_;
    checkpoint_metadata m = o.metadata;
    m["iteration"] = std::to_string(iteration);
    m["iterations"] = std::to_string(o.iterations);
    m["seed"] = std::to_string(o.seed);
    m["model"] = o.model_name.empty() ? model_.name() : o.model_name;
    m["dataset"] = o.dataset_name;
    m["optimizer"] = o.optimizer;
    m["lr"] = format_number(o.lr);
    m["schedule"] = o.schedule;
    m["best_miou"] = format_number(best_miou_);
    m["best_iteration"] = std::to_string(best_iteration_);
    return m;
  }

  void save(const std::string& path, int64_t iteration) {
    if (sgd_)
      save_checkpoint(path, model_, *sgd_, metadata(iteration));
    else
      save_checkpoint(path, model_, *adamw_, metadata(iteration));
    if (path == file("last.safetensors")) last_good_ = path, last_good_iteration_ = iteration;
  }

  // Loads last.safetensors if there is one; returns its iteration (0 if none).
  int64_t resume(progress_printer& console) {
    const std::string path = file("last.safetensors");
    if (!std::filesystem::exists(path)) {
      console.message("resume: no " + path + ", starting from iteration 0");
      return 0;
    }
    const load_report report = sgd_ ? load_checkpoint(path, model_, *sgd_)
                                    : load_checkpoint(path, model_, *adamw_);
    const auto& m = report.metadata;
    auto entry = [&](const char* key) {
      const auto found = m.find(key);
      require<checkpoint_error>(found != m.end(), "trainer: resume: ", path,
                                " has no metadata entry \"", key, "\" (not a trainer checkpoint)");
      return found->second;
    };
    const int64_t iteration = std::stoll(entry("iteration"));
    require<value_error>(entry("seed") == std::to_string(options_.seed), "trainer: resume: ", path,
                         " was written with seed ", entry("seed"), ", this run has seed ",
                         options_.seed, " (a bit-identical continuation needs the same seed)");
    require<value_error>(entry("optimizer") == options_.optimizer, "trainer: resume: ", path,
                         " was written with optimizer ", entry("optimizer"), ", this run uses ",
                         options_.optimizer);
    const auto best = m.find("best_miou");
    if (best != m.end() && best->second != "nan") best_miou_ = std::stod(best->second);
    const auto best_it = m.find("best_iteration");
    if (best_it != m.end()) best_iteration_ = std::stoll(best_it->second);
    last_good_ = path, last_good_iteration_ = iteration;
    console.message("resumed from " + path + " at iteration " + std::to_string(iteration) + " of " +
                    std::to_string(options_.iterations));
    return iteration;
  }

  void run_evaluation(int64_t iteration, const shape& train_shape, progress_printer& console) {
    const auto start = std::chrono::steady_clock::now();
    model_.eval();
    eval_result r = evaluate_(model_, iteration);
    model_.train();
    if (!(model_.input_shape() == train_shape)) model_.setup(train_shape);
    metric_values values{{"miou", r.miou}};
    for (const auto& v : r.values) values.push_back(v);
    values.push_back({"eval_s", trainer_detail::seconds_since(start)});
    std::string text = "eval at iteration " + std::to_string(iteration) + ":";
    for (const auto& [key, value] : values)  // per-class entries ("iou.sky") only in the logs
      if (key.find('.') == std::string::npos) text += " " + key + " " + format_number(value);
    const bool better = std::isfinite(r.miou) && !(r.miou <= best_miou_);  // NaN best: first
    if (better) {
      best_miou_ = r.miou, best_iteration_ = iteration;
      if (!options_.out_dir.empty()) {
        save(file("best.safetensors"), iteration);
        text += " (best so far: saved " + file("best.safetensors") + ")";
      }
    }
    console.message(text);
    if (!options_.out_dir.empty()) {
      eval_csv_.write(iteration, values);
      jsonl_.write(iteration, "eval", values);
    }
  }

  Model& model_;
  Loader& loader_;
  trainer_options options_;
  evaluator evaluate_;
  step_callback on_step_;
  std::vector<nn::named_parameter<Device>> params_;
  std::optional<sgd<Device>> sgd_;
  std::optional<adamw<Device>> adamw_;
  std::unique_ptr<lr_schedule> schedule_;
  csv_log train_csv_, eval_csv_;
  jsonl_log jsonl_;
  double best_miou_ = std::numeric_limits<double>::quiet_NaN();
  int64_t best_iteration_ = -1;
  std::string last_good_;
  int64_t last_good_iteration_ = -1;
  tensor<float, Device> images_;
  tensor<int32_t, Device> labels_;
};

// trainer t(model, loader, options [, evaluate [, on_step]]) with lambdas: a CPU trainer.
template <class Model, class Loader, class... Callbacks>
trainer(Model&, Loader&, trainer_options, Callbacks&&...) -> trainer<Model, Loader, cpu>;

}  // namespace segkit::train
