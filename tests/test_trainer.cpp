// The trainer: resume continues bit-identically (parameters, buffers, optimizer state), SIGINT
// saves and returns, NaN/Inf stops the run naming the iteration, the term and the last good
// checkpoint, and the CSV / JSON-lines metric files hold what the run did.
#include <catch2/catch.hpp>

#include <cmath>
#include <csignal>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "scratch_dir.hpp"
#include "segkit/models/model.hpp"
#include "segkit/nn/network.hpp"
#include "segkit/train/cross_entropy.hpp"
#include "segkit/train/trainer.hpp"

using namespace segkit;
namespace nn = segkit::nn;

namespace {

constexpr int classes = 3;

// A tiny model of the model concept with batch norm (buffers) and dropout (the random step).
class tiny_model {
  using body = nn::seq<nn::conv<8, 3, 2>, nn::batch_norm, nn::relu, nn::dropout<30>,
                       nn::conv<classes, 1, 1, 0, 1, 1, true>, nn::upsample<2>>;

 public:
  explicit tiny_model(int num_classes, uint64_t seed = 0) : net_(seed) {
    REQUIRE(num_classes == classes);
  }
  shape setup(const shape& images) {
    input_ = images;
    const shape out = net_.setup(images);
    dlogits_ = host_tensor<float>(out);
    return out;
  }
  const shape& input_shape() const { return input_; }
  const host_tensor<float>& forward(const host_tensor<float>& images) {
    return net_.forward(images);
  }
  models::loss_terms forward_backward(const host_tensor<float>& images,
                                      const host_tensor<int32_t>& labels) {
    ++calls;
    const auto& logits = net_.forward(images);
    double loss = train::cross_entropy_forward({}, logits, labels, state_);
    dlogits_.zero();
    train::cross_entropy_backward({}, logits, labels, state_, 1.f, dlogits_);
    net_.backward(dlogits_);
    if (calls == nan_loss_at_call) loss = std::nan("");
    if (calls == inf_grad_at_call) {
      net_.visit_parameters("", [](const std::string& name, nn::parameter<cpu>& p) {
        if (name.find("4.") == 0) p.grad.data()[1] = INFINITY;
      });
    }
    return {{{"ce", loss}, {"zero", 0.0}}, loss};
  }
  void zero_grad() { net_.zero_grad(); }
  void train() { net_.train(); }
  void eval() { net_.eval(); }
  bool training() const { return net_.training(); }
  template <class F>
  void visit_parameters(const std::string& prefix, F&& f) {
    net_.visit_parameters(prefix, f);
  }
  template <class F>
  void visit_buffers(const std::string& prefix, F&& f) {
    net_.visit_buffers(prefix, f);
  }
  models::model_cost cost() const { return {}; }
  std::string name() const { return "tiny"; }

  int64_t calls = 0, nan_loss_at_call = -1, inf_grad_at_call = -1;

 private:
  nn::network<3, body> net_;
  shape input_;
  host_tensor<float> dlogits_;
  train::loss_state<cpu> state_;
};

struct tiny_batch {
  host_tensor<float> images{shape{2, 3, 8, 8}};
  host_tensor<int32_t> labels{shape{2, 8, 8}};
  int64_t iteration = 0;
};

// Batch k is a pure function of (seed, k), as data::loader promises.
class tiny_loader {
 public:
  explicit tiny_loader(uint64_t seed) : seed_(seed) {}
  const tiny_batch& next() {
    std::mt19937_64 rng(seed_ * 1000003u + uint64_t(next_));
    std::normal_distribution<float> noise(0.f, 1.f);
    for (int64_t i = 0; i < batch_.images.numel(); ++i) batch_.images.data()[i] = noise(rng);
    for (int64_t i = 0; i < batch_.labels.numel(); ++i) {
      const float v = batch_.images.data()[i];  // channel 0 decides the class
      batch_.labels.data()[i] = i % 17 == 0 ? 255 : (v < -0.4f ? 0 : v < 0.4f ? 1 : 2);
    }
    batch_.iteration = next_++;
    return batch_;
  }
  void seek(int64_t iteration) { next_ = iteration; }
  double wait_seconds() const { return 0; }

 private:
  uint64_t seed_;
  int64_t next_ = 0;
  tiny_batch batch_;
};

train::trainer_options base_options(const std::string& out_dir, int64_t iterations) {
  train::trainer_options o;
  o.iterations = iterations;
  o.out_dir = out_dir;
  o.lr = 0.05;
  o.warmup_iters = 2;
  o.seed = 7;
  o.log_every = 2;
  o.console = nullptr;
  return o;
}

// Every parameter, buffer and optimizer state tensor, by name, as raw bytes.
template <class Trainer>
std::map<std::string, std::vector<char>> state_of(tiny_model& model, Trainer& trainer) {
  std::map<std::string, std::vector<char>> state;
  auto keep = [&](const std::string& name, auto& t) {
    const char* bytes = reinterpret_cast<const char*>(t.data());
    state[name].assign(bytes, bytes + t.numel() * int64_t(sizeof(*t.data())));
  };
  model.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
    keep(name, p.value);
  });
  model.visit_buffers("", [&](const std::string& name, auto& b) { keep("buffer." + name, b); });
  trainer.visit_optimizer_state(
      [&](const std::string& name, auto& t) { keep("optimizer." + name, t); });
  return state;
}

void require_identical(const std::map<std::string, std::vector<char>>& a,
                       const std::map<std::string, std::vector<char>>& b) {
  REQUIRE(a.size() == b.size());
  for (const auto& [name, bytes] : a) {
    INFO("tensor " << name);
    REQUIRE(b.count(name) == 1);
    const bool identical = bytes == b.at(name);
    CHECK(identical);
  }
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_CASE("trainer: N steps, stop, new objects, resume, N steps == 2N steps bit for bit") {
  for (const char* optimizer : {"sgd", "adamw"}) {
    INFO("optimizer " << optimizer);
    testing::scratch_dir dir(std::string("trainer_resume_") + optimizer);
    constexpr int64_t n = 5;

    tiny_model straight_model(classes, 11);
    tiny_loader straight_loader(3);
    auto options = base_options(dir.file("straight"), 2 * n);
    options.optimizer = optimizer;
    train::trainer straight(straight_model, straight_loader, options);
    const auto straight_result = straight.run();
    CHECK(straight_result.iterations == 2 * n);
    CHECK_FALSE(straight_result.interrupted);

    options.out_dir = dir.file("split");
    {
      tiny_model model(classes, 11);
      tiny_loader loader(3);
      auto first = options;
      first.stop_after = n;
      train::trainer part(model, loader, first);
      const auto r = part.run();
      CHECK(r.stopped);
      CHECK_FALSE(r.interrupted);
      CHECK(r.iterations == n);
      const auto file = tensor_file::load(dir.file("split/last.safetensors"));
      CHECK(file.metadata().at("iteration") == std::to_string(n));
      CHECK(file.metadata().at("seed") == "7");
      CHECK(file.metadata().at("model") == "tiny");
    }
    // The same construction seed (dropout layer seeds come from it and are not state), but
    // scrambled values: every parameter, buffer and optimizer state must come from the file.
    tiny_model model(classes, 11);
    model.visit_parameters("", [](const std::string&, nn::parameter<cpu>& p) { p.value.fill(3.f); });
    model.visit_buffers("", [](const std::string&, auto& b) { b.fill(2); });
    tiny_loader loader(3);
    auto second = options;
    second.resume = true;
    train::trainer rest(model, loader, second);
    const auto r = rest.run();
    CHECK(r.start_iteration == n);
    CHECK(r.iterations == 2 * n);
    CHECK(model.calls == n);
    require_identical(state_of(straight_model, straight), state_of(model, rest));
    CHECK(r.last_terms.total == straight_result.last_terms.total);
  }
}

TEST_CASE("trainer: the random step makes dropout part of the result (control)") {
  // Same data, same init, but dropout masks differ when the step numbering differs: proves
  // the resume test above would fail without nn::set_random_step keyed on the iteration.
  tiny_model a(classes, 11), b(classes, 11);
  const shape input{2, 3, 8, 8};
  a.setup(input), b.setup(input);
  tiny_loader loader(3);
  const auto& batch = loader.next();
  nn::set_random_step(1);
  const host_tensor<float> ya = a.forward(batch.images);
  nn::set_random_step(2);
  const host_tensor<float> yb = b.forward(batch.images);
  CHECK(std::memcmp(ya.data(), yb.data(), size_t(ya.numel()) * sizeof(float)) != 0);
  nn::set_random_step(1);
  const host_tensor<float> yc = b.forward(batch.images);
  CHECK(std::memcmp(ya.data(), yc.data(), size_t(ya.numel()) * sizeof(float)) == 0);
}

TEST_CASE("trainer: SIGINT finishes the step, saves last.safetensors and returns; resume "
          "completes the run bit-identically") {
  testing::scratch_dir dir("trainer_sigint");
  constexpr int64_t total = 8, stop = 3;
  tiny_model straight_model(classes, 5);
  tiny_loader straight_loader(9);
  auto options = base_options(dir.file("straight"), total);
  options.checkpoint_every = 2;
  train::trainer straight(straight_model, straight_loader, options);
  straight.run();

  options.out_dir = dir.file("interrupted");
  {
    tiny_model model(classes, 5);
    tiny_loader loader(9);
    auto on_step = [](const train::step_report& report) {
      if (report.iteration == stop) std::raise(SIGINT);
    };
    train::trainer t(model, loader, options, {}, on_step);
    const auto r = t.run();
    CHECK(r.interrupted);
    CHECK_FALSE(r.stopped);
    CHECK(r.iterations == stop);
    CHECK(model.calls == stop);
    CHECK(tensor_file::load(dir.file("interrupted/last.safetensors")).metadata().at("iteration") ==
          std::to_string(stop));
  }
  // The handler was removed: the process's previous SIGINT disposition is back.
  struct sigaction current {};
  sigaction(SIGINT, nullptr, &current);
  CHECK(current.sa_handler != train::trainer_detail::on_sigint);

  tiny_model model(classes, 5);
  tiny_loader loader(9);
  options.resume = true;
  train::trainer t(model, loader, options);
  const auto r = t.run();
  CHECK(r.start_iteration == stop);
  CHECK_FALSE(r.interrupted);
  require_identical(state_of(straight_model, straight), state_of(model, t));
}

TEST_CASE("trainer: a NaN loss term stops the run naming the iteration, the term and the last "
          "good checkpoint; the bad step is not applied") {
  testing::scratch_dir dir("trainer_nan");
  tiny_model model(classes, 2);
  model.nan_loss_at_call = 5;
  tiny_loader loader(1);
  auto options = base_options(dir.path.string(), 10);
  options.checkpoint_every = 2;
  train::trainer t(model, loader, options);
  const std::string last = dir.file("last.safetensors");
  CHECK_THROWS_WITH(t.run(), Catch::Contains("iteration 5") &&
                                 Catch::Contains("loss term \"ce\" is nan") &&
                                 Catch::Contains(last + " (iteration 4)"));
  // The parameters are those of the checkpoint at iteration 4: the NaN step did nothing.
  tiny_model saved(classes, 77);
  train::load_checkpoint(last, saved);
  std::map<std::string, std::vector<char>> a, b;
  model.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
    a[name].assign(reinterpret_cast<const char*>(p.value.data()),
                   reinterpret_cast<const char*>(p.value.data() + p.value.numel()));
  });
  saved.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
    b[name].assign(reinterpret_cast<const char*>(p.value.data()),
                   reinterpret_cast<const char*>(p.value.data() + p.value.numel()));
  });
  CHECK(a == b);
}

TEST_CASE("trainer: an Inf gradient stops the run naming the parameter; no checkpoint yet") {
  tiny_model model(classes, 2);
  model.inf_grad_at_call = 2;
  tiny_loader loader(1);
  auto options = base_options("", 10);
  train::trainer t(model, loader, options);
  CHECK_THROWS_AS(t.run(), train::divergence_error);
  tiny_model again(classes, 2);
  again.inf_grad_at_call = 2;
  tiny_loader loader2(1);
  train::trainer t2(again, loader2, options);
  CHECK_THROWS_WITH(t2.run(), Catch::Contains("iteration 2") &&
                                  Catch::Contains("the gradient of \"4.weight\" is inf") &&
                                  Catch::Contains("no checkpoint has been written"));
}

TEST_CASE("trainer: metrics.csv, eval.csv and metrics.jsonl hold every log and evaluation; "
          "best.safetensors follows the best mIoU; resume drops the replayed records") {
  testing::scratch_dir dir("trainer_metrics");
  auto options = base_options(dir.path.string(), 6);
  options.eval_every = 3;
  options.stop_after = 4;
  options.checkpoint_every = 2;
  const std::vector<double> mious{0.5, 0.25};  // iteration 3 is the best, 6 is worse
  int evaluations = 0;
  auto evaluate = [&](tiny_model& m, int64_t iteration) {
    CHECK_FALSE(m.training());
    train::eval_result r;
    r.miou = mious[size_t(evaluations++)];
    r.values = {{"pixel_accuracy", 0.75}, {"at", double(iteration)}};
    return r;
  };
  {
    tiny_model model(classes, 4);
    tiny_loader loader(2);
    train::trainer t(model, loader, options, evaluate);
    t.run();
    CHECK(model.training());
  }
  options.resume = true;
  options.stop_after = 0;
  tiny_model model(classes, 4);
  tiny_loader loader(2);
  train::trainer t(model, loader, options, evaluate);
  const auto result = t.run();
  CHECK(evaluations == 2);
  CHECK(result.best_miou == 0.5);
  CHECK(result.best_iteration == 3);
  CHECK(tensor_file::load(dir.file("best.safetensors")).metadata().at("iteration") == "3");

  const auto csv = lines_of(dir.file("metrics.csv"));
  REQUIRE(csv.size() == 4);
  CHECK(csv[0] == "iteration,lr,loss,ce,zero,grad_norm,it_per_s,data_wait,elapsed_s");
  train::poly_schedule schedule({0.05, 6, 0.9, 0.0, {2, 0.1}});
  for (int row = 1; row <= 3; ++row) {
    std::vector<std::string> cells;
    std::stringstream line(csv[size_t(row)]);
    for (std::string cell; std::getline(line, cell, ',');) cells.push_back(cell);
    REQUIRE(cells.size() == 9);
    const int64_t iteration = 2 * row;
    CHECK(cells[0] == std::to_string(iteration));
    CHECK(std::stod(cells[1]) == Approx(schedule.lr_at(iteration - 1)).epsilon(1e-8));
    CHECK(std::stod(cells[2]) > 0.1);
    CHECK(std::stod(cells[2]) == Approx(std::stod(cells[3])));  // total == ce (+ zero)
    CHECK(cells[4] == "0");
    CHECK(std::stod(cells[5]) > 0);  // grad norm
  }
  const auto eval_csv = lines_of(dir.file("eval.csv"));
  REQUIRE(eval_csv.size() == 3);
  CHECK(eval_csv[0] == "iteration,miou,pixel_accuracy,at,eval_s");
  CHECK(eval_csv[1].rfind("3,0.5,0.75,3,", 0) == 0);
  CHECK(eval_csv[2].rfind("6,0.25,0.75,6,", 0) == 0);

  const auto jsonl = lines_of(dir.file("metrics.jsonl"));
  REQUIRE(jsonl.size() == 5);  // train 2, 4 (eval 3 in between), then train 6, eval 6
  CHECK(jsonl[0].rfind("{\"iteration\": 2, \"phase\": \"train\", \"lr\": ", 0) == 0);
  CHECK(jsonl[1].rfind("{\"iteration\": 3, \"phase\": \"eval\", \"miou\": 0.5, ", 0) == 0);
  CHECK(jsonl[2].rfind("{\"iteration\": 4, \"phase\": \"train\"", 0) == 0);
  CHECK(jsonl[3].rfind("{\"iteration\": 6, \"phase\": \"train\"", 0) == 0);
  CHECK(jsonl[4].rfind("{\"iteration\": 6, \"phase\": \"eval\"", 0) == 0);
  for (const auto& line : jsonl) CHECK(line.back() == '}');
}

TEST_CASE("metrics logs: NaN is null in JSON and nan in CSV; open with keep_through trims") {
  testing::scratch_dir dir("metrics_log");
  train::csv_log csv;
  csv.open(dir.file("m.csv"));
  csv.write(1, {{"a", 1.5}, {"b", std::nan("")}});
  csv.write(2, {{"b", 2}, {"c", 3}});  // a missing, c not a column
  csv.write(3, {{"a", 1}, {"b", 1}});
  csv.close();
  CHECK(lines_of(dir.file("m.csv")) ==
        std::vector<std::string>{"iteration,a,b", "1,1.5,nan", "2,,2", "3,1,1"});
  csv.open(dir.file("m.csv"), 2);
  csv.write(3, {{"a", 4}, {"b", 5}});
  csv.close();
  CHECK(lines_of(dir.file("m.csv")) ==
        std::vector<std::string>{"iteration,a,b", "1,1.5,nan", "2,,2", "3,4,5"});

  train::jsonl_log json;
  json.open(dir.file("m.jsonl"));
  json.write(1, "train", {{"x", INFINITY}, {"y", 0.25}});
  json.close();
  CHECK(lines_of(dir.file("m.jsonl")) ==
        std::vector<std::string>{"{\"iteration\": 1, \"phase\": \"train\", \"x\": null, \"y\": 0.25}"});
}

TEST_CASE("progress line: iteration, rate, ETA, loss terms, lr and data wait") {
  train::progress_snapshot s;
  s.iteration = 50, s.total = 200, s.iterations_per_second = 2.5, s.eta_seconds = 60.0;
  s.loss = 0.75, s.terms = {{"ce", 0.5}, {"aux_ce", 0.625}}, s.lr = 0.01;
  s.data_wait_fraction = 0.125;
  const std::string line = train::progress_printer::line(s, true);
  CHECK(line == "[#####...............] 50/200  25.0% | 2.50 it/s | ETA 1m00s | loss 0.7500 "
                "(ce 0.5000 aux_ce 0.6250) | lr 1.000e-02 | data wait 12.5%");
  CHECK(train::format_duration(3725) == "1h02m");
  CHECK(train::format_duration(NAN) == "--");
}

TEST_CASE("trainer: bad options are value_errors naming the value") {
  tiny_model model(classes);
  tiny_loader loader(0);
  auto options = base_options("", 0);
  CHECK_THROWS_WITH(train::trainer(model, loader, options),
                    Catch::Contains("iterations must be > 0, got 0"));
  options.iterations = 4;
  options.optimizer = "lion";
  CHECK_THROWS_WITH(train::trainer(model, loader, options), Catch::Contains("\"lion\""));
  options.optimizer = "sgd";
  options.resume = true;
  CHECK_THROWS_WITH(train::trainer(model, loader, options), Catch::Contains("out_dir"));
}
