// SGD and AdamW: against a plain re-implementation of the textbook formulas over several steps
// (lr changing between steps, large enough tensors to split across threads), against PyTorch
// (tests/golden/optimizer.safetensors from tests/reference/gen_optimizer.py: one and three
// steps), zero_grad, state names, state saved and restored through a safetensors file giving
// bit-identical continued steps, and bad options.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <unistd.h>

#include "mock_modules.hpp"
#include "op_checker.hpp"
#include "segkit/tensor/safetensors.hpp"
#include "segkit/train/optimizer.hpp"

using namespace segkit;
namespace fs = std::filesystem;

namespace {

using conv_bn_mock = testing::torch_conv_bn;

void randomize(conv_bn_mock& module, std::mt19937& rng) {
  module.visit_parameters("", [&](const std::string&, nn::parameter<cpu>& p) {
    p.value = testing::random_tensor(p.shape(), rng);
  });
}
void random_grads(conv_bn_mock& module, std::mt19937& rng) {
  module.visit_parameters("", [&](const std::string&, nn::parameter<cpu>& p) {
    p.grad = testing::random_tensor(p.shape(), rng);
  });
}

// Two parameters, one big enough that parallel_for splits it.
struct big_mock {
  nn::parameter<cpu> weight{shape{3, 100, 201}}, bias{shape{13}};
  template <class F>
  void visit_parameters(const std::string& prefix, F&& f) {
    f(nn::join_name(prefix, "weight"), weight);
    f(nn::join_name(prefix, "bias"), bias);
  }
};

std::vector<double> as_double(const host_tensor<float>& t) {
  return std::vector<double>(t.data(), t.data() + t.numel());
}

void require_close(const host_tensor<float>& actual, const std::vector<double>& expected,
                   double atol, double rtol, const std::string& what) {
  INFO(what);
  REQUIRE(static_cast<size_t>(actual.numel()) == expected.size());
  for (int64_t i = 0; i < actual.numel(); ++i) {
    const double e = expected[size_t(i)];
    if (!(std::abs(actual[i] - e) <= atol + rtol * std::abs(e)))
      FAIL(what << ": element " << i << " is " << actual[i] << ", expected " << e);
  }
}

void require_identical(const host_tensor<float>& a, const host_tensor<float>& b,
                       const std::string& what) {
  INFO(what);
  REQUIRE(a.shape() == b.shape());
  for (int64_t i = 0; i < a.numel(); ++i)
    if (!(a[i] == b[i])) FAIL(what << ": element " << i << " is " << a[i] << " vs " << b[i]);
}

const std::vector<double> lrs = {0.05, 0.03, 0.04, 0.01, 0.02};

struct naive_sgd {
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
  std::vector<double> p, buf;
  bool first = true;
  void step(const host_tensor<float>& g) {
    if (buf.empty()) buf.assign(p.size(), 0.0);
    for (size_t i = 0; i < p.size(); ++i) {
      double d = g[int64_t(i)] + weight_decay * p[i];
      if (momentum != 0) {
        buf[i] = first ? d : momentum * buf[i] + (1 - dampening) * d;
        d = nesterov ? d + momentum * buf[i] : buf[i];
      }
      p[i] -= lr * d;
    }
    first = false;
  }
};

struct naive_adamw {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad;
  std::vector<double> p, m, v, v_max;
  int t = 0;
  void step(const host_tensor<float>& g) {
    if (m.empty()) m.assign(p.size(), 0.0), v.assign(p.size(), 0.0), v_max.assign(p.size(), 0.0);
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      const double gi = g[int64_t(i)];
      p[i] -= lr * weight_decay * p[i];
      m[i] = beta1 * m[i] + (1 - beta1) * gi;
      v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
      v_max[i] = std::max(v_max[i], v[i]);
      const double m_hat = m[i] / (1 - std::pow(beta1, t));
      const double v_hat = (amsgrad ? v_max[i] : v[i]) / (1 - std::pow(beta2, t));
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
};

bool is_bias(const std::string& name) {
  return name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
}

struct temp_file {
  std::string path;
  explicit temp_file(const std::string& name) {
    path = (fs::temp_directory_path() /
            ("segkit_test_optimizer_" + std::to_string(::getpid()) + "_" + name))
               .string();
  }
  ~temp_file() {
    std::error_code ignored;
    fs::remove(path, ignored);
  }
};

}  // namespace

TEST_CASE("sgd: matches a plain re-implementation over five steps") {
  struct variant {
    double momentum, dampening, weight_decay;
    bool nesterov;
  };
  for (const variant& c : {variant{0.0, 0.0, 0.0, false}, variant{0.0, 0.0, 1e-2, false},
                           variant{0.9, 0.0, 1e-4, false}, variant{0.9, 0.0, 1e-4, true},
                           variant{0.5, 0.3, 5e-3, false}}) {
    INFO("momentum " << c.momentum << " dampening " << c.dampening << " weight decay "
                     << c.weight_decay << " nesterov " << c.nesterov);
    std::mt19937 rng(7);
    big_mock module;
    module.weight.value = testing::random_tensor(module.weight.shape(), rng);
    module.bias.value = testing::random_tensor(module.bias.shape(), rng);
    train::sgd_options options;  // filter: the bias gets no weight decay
    options.momentum = c.momentum;
    options.dampening = c.dampening;
    options.weight_decay = c.weight_decay;
    options.nesterov = c.nesterov;
    options.decay_filter = [](const std::string& name) { return !is_bias(name); };
    train::sgd<cpu> opt(nn::parameters_of(module), options);
    naive_sgd w{
        0, c.momentum, c.dampening, c.weight_decay, c.nesterov, as_double(module.weight.value), {}};
    naive_sgd b{0, c.momentum, c.dampening, 0.0, c.nesterov, as_double(module.bias.value), {}};
    for (double lr : lrs) {
      module.weight.grad = testing::random_tensor(module.weight.shape(), rng);
      module.bias.grad = testing::random_tensor(module.bias.shape(), rng);
      opt.set_lr(lr);
      opt.step();
      w.lr = b.lr = lr;
      w.step(module.weight.grad);
      b.step(module.bias.grad);
      require_close(module.weight.value, w.p, 1e-6, 1e-5, "weight");
      require_close(module.bias.value, b.p, 1e-6, 1e-5, "bias");
    }
    CHECK(opt.steps_taken() == 5);
  }
}

TEST_CASE("adamw: matches the textbook formulas over five steps") {
  for (bool amsgrad : {false, true})
    for (double weight_decay : {0.0, 0.01}) {
      INFO("amsgrad " << amsgrad << " weight decay " << weight_decay);
      std::mt19937 rng(11);
      big_mock module;
      module.weight.value = testing::random_tensor(module.weight.shape(), rng);
      module.bias.value = testing::random_tensor(module.bias.shape(), rng);
      train::adamw_options options;
      options.beta1 = 0.85;
      options.beta2 = 0.99;
      options.eps = 1e-6;
      options.weight_decay = weight_decay;
      options.amsgrad = amsgrad;
      options.decay_filter = [](const std::string& name) { return !is_bias(name); };
      train::adamw<cpu> opt(nn::parameters_of(module), options);
      naive_adamw w{0,  0.85, 0.99, 1e-6, weight_decay, amsgrad, as_double(module.weight.value),
                    {}, {},   {}};
      naive_adamw b{0, 0.85, 0.99, 1e-6, 0.0, amsgrad, as_double(module.bias.value), {}, {}, {}};
      for (double lr : lrs) {
        // Gradients whose scale changes per step, so AMSGrad's maximum differs from v.
        const float scale = lr == 0.04 ? 0.05f : 1.f;
        module.weight.grad = testing::random_tensor(module.weight.shape(), rng, -scale, scale);
        module.bias.grad = testing::random_tensor(module.bias.shape(), rng, -scale, scale);
        opt.set_lr(lr);
        opt.step();
        w.lr = b.lr = lr;
        w.step(module.weight.grad);
        b.step(module.bias.grad);
        require_close(module.weight.value, w.p, 2e-6, 1e-5, "weight");
        require_close(module.bias.value, b.p, 2e-6, 1e-5, "bias");
      }
    }
}

TEST_CASE("sgd and adamw: PyTorch parity after one and three steps") {
  const auto file = tensor_file::load(SEGKIT_GOLDEN_DIR "/optimizer.safetensors");
  const auto& meta = file.metadata();
  auto number = [&](const std::string& key) {
    INFO("metadata " << key);
    REQUIRE(meta.count(key) == 1);
    return std::stod(meta.at(key));
  };
  auto option = [&](const std::string& key, double fallback) {
    return meta.count(key) ? std::stod(meta.at(key)) : fallback;
  };
  std::vector<std::string> cases;
  {
    std::stringstream list(meta.at("cases"));
    for (std::string c; std::getline(list, c, ',');) cases.push_back(c);
  }
  REQUIRE(cases.size() == 6);
  for (const std::string& c : cases) {
    INFO("case " << c);
    std::vector<double> case_lrs;
    {
      std::stringstream list(meta.at(c + ".lrs"));
      for (std::string lr; std::getline(list, lr, ',');) case_lrs.push_back(std::stod(lr));
    }
    nn::parameter<cpu> w, b;
    w.value = file.get<float>(c + ".w.param.0");
    b.value = file.get<float>(c + ".b.param.0");
    w.grad = host_tensor<float>::zeros(w.shape());
    b.grad = host_tensor<float>::zeros(b.shape());
    std::vector<nn::named_parameter<cpu>> params{{"w", &w}, {"b", &b}};
    const bool decay_bias = number(c + ".decay_bias") != 0;
    auto filter = [decay_bias](const std::string& name) { return name != "b" || decay_bias; };

    const bool is_sgd = meta.at(c + ".kind") == "sgd";
    std::unique_ptr<train::sgd<cpu>> s;
    std::unique_ptr<train::adamw<cpu>> a;
    if (is_sgd) {
      train::sgd_options o;
      o.lr = case_lrs[0];
      o.momentum = number(c + ".momentum");
      o.dampening = option(c + ".dampening", 0.0);
      o.weight_decay = number(c + ".weight_decay");
      o.nesterov = option(c + ".nesterov", 0.0) != 0;
      o.decay_filter = filter;
      s = std::make_unique<train::sgd<cpu>>(params, o);
    } else {
      train::adamw_options o;
      o.lr = case_lrs[0];
      o.beta1 = number(c + ".beta1");
      o.beta2 = number(c + ".beta2");
      o.eps = number(c + ".eps");
      o.weight_decay = number(c + ".weight_decay");
      o.amsgrad = option(c + ".amsgrad", 0.0) != 0;
      o.decay_filter = filter;
      a = std::make_unique<train::adamw<cpu>>(params, o);
    }
    for (size_t k = 1; k <= case_lrs.size(); ++k) {
      const std::string step = std::to_string(k);
      copy_into(file.get<float>(c + ".w.grad." + step), w.grad);
      copy_into(file.get<float>(c + ".b.grad." + step), b.grad);
      if (is_sgd) {
        s->set_lr(case_lrs[k - 1]);
        s->step();
      } else {
        a->set_lr(case_lrs[k - 1]);
        a->step();
      }
      testing::require_all_close(w.value, file.get<float>(c + ".w.param." + step), 1e-6f, 1e-5f,
                                 c + " w after step " + step);
      testing::require_all_close(b.value, file.get<float>(c + ".b.param." + step), 1e-6f, 1e-5f,
                                 c + " b after step " + step);
    }
    // The state after three steps, under PyTorch's names.
    int visited = 0;
    auto check_state = [&](const std::string& name, auto& t) {
      using element = typename std::decay_t<decltype(t)>::value_type;
      if constexpr (std::is_same_v<element, float>) {
        INFO("state " << name);
        REQUIRE(file.contains(c + "." + name));
        testing::require_all_close(t, file.get<float>(c + "." + name), 1e-6f, 1e-5f, name);
        ++visited;
      } else {
        CHECK(name == "step");
        CHECK(t[0] == 3);
      }
    };
    if (is_sgd)
      s->visit_state(check_state);
    else
      a->visit_state(check_state);
    const int expected = c == "sgd_plain" ? 0 : c.rfind("sgd", 0) == 0 ? 2 : c == "adamw" ? 4 : 6;
    CHECK(visited == expected);
  }
}

TEST_CASE("optimizers: zero_grad zeroes every gradient and nothing else") {
  std::mt19937 rng(3);
  conv_bn_mock module;
  randomize(module, rng);
  random_grads(module, rng);
  const auto before = module.conv_weight.value.clone();
  train::sgd<cpu> opt(nn::parameters_of(module), train::sgd_options{});
  opt.zero_grad();
  module.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
    INFO(name);
    for (int64_t i = 0; i < p.grad.numel(); ++i) REQUIRE(p.grad[i] == 0.f);
  });
  require_identical(module.conv_weight.value, before, "value untouched");
  random_grads(module, rng);
  train::adamw<cpu> adam(nn::parameters_of(module), train::adamw_options{});
  adam.zero_grad();
  for (int64_t i = 0; i < module.bn_bias.grad.numel(); ++i) REQUIRE(module.bn_bias.grad[i] == 0.f);
}

TEST_CASE("optimizers: visit_state names, order, prefix and shapes") {
  conv_bn_mock module;
  auto collect = [](auto& opt, const std::string& prefix) {
    std::vector<std::string> names;
    opt.visit_state(prefix, [&](const std::string& name, auto& t) {
      std::ostringstream entry;
      entry << name << " " << t.shape().to_string();
      names.push_back(entry.str());
    });
    return names;
  };
  const std::string w = shape{4, 3, 3, 3}.to_string(), v = shape{4}.to_string(),
                    one = shape{1}.to_string();
  {
    train::sgd_options o;
    o.momentum = 0.9;
    train::sgd<cpu> opt(nn::parameters_of(module), o);
    CHECK(collect(opt, "") ==
          std::vector<std::string>{"0.weight.momentum_buffer " + w, "0.bias.momentum_buffer " + v,
                                   "1.weight.momentum_buffer " + v, "1.bias.momentum_buffer " + v,
                                   "step " + one});
    CHECK(collect(opt, "optimizer") ==
          std::vector<std::string>{
              "optimizer.0.weight.momentum_buffer " + w, "optimizer.0.bias.momentum_buffer " + v,
              "optimizer.1.weight.momentum_buffer " + v, "optimizer.1.bias.momentum_buffer " + v,
              "optimizer.step " + one});
  }
  {
    train::sgd<cpu> opt(nn::parameters_of(module), train::sgd_options{});  // no momentum
    CHECK(collect(opt, "") == std::vector<std::string>{"step " + one});
  }
  {
    train::adamw_options o;
    o.amsgrad = true;
    train::adamw<cpu> opt(nn::parameters_of(module), o);
    const auto names = collect(opt, "");
    REQUIRE(names.size() == 13);
    CHECK(names[0] == "0.weight.exp_avg " + w);
    CHECK(names[1] == "0.weight.exp_avg_sq " + w);
    CHECK(names[2] == "0.weight.max_exp_avg_sq " + w);
    CHECK(names[11] == "1.bias.max_exp_avg_sq " + v);
    CHECK(names[12] == "step " + one);
  }
  {
    train::adamw<cpu> opt(nn::parameters_of(module), train::adamw_options{});
    CHECK(collect(opt, "").size() == 9);
  }
}

namespace {

// Runs `first` steps on a fresh optimizer, saves parameters and state to a safetensors file,
// loads both into a second module and optimizer, then runs `more` steps on both with the same
// gradients: the two must stay bit-identical (this is what resuming a run needs).
// deferred: the loader only collects the state tensors during visit_state and copies into
// them after it returns (as train/checkpoint.hpp does, to validate the whole file first).
template <class Optimizer, class Options>
void check_resume(const Options& options, int first, int more, const std::string& label,
                  bool deferred = false) {
  INFO(label << ": " << first << " steps, save, restore, " << more << " steps"
             << (deferred ? ", copied after the visit" : ""));
  std::mt19937 rng(99);
  conv_bn_mock original;
  randomize(original, rng);
  Optimizer opt(nn::parameters_of(original), options);
  const double lrs_used[] = {0.1, 0.05, 0.07, 0.02, 0.03, 0.01};
  int lr_index = 0;
  for (int k = 0; k < first; ++k) {
    random_grads(original, rng);
    opt.set_lr(lrs_used[lr_index++]);
    opt.step();
  }
  temp_file checkpoint(label + ".safetensors");
  {
    tensor_file file;
    original.visit_parameters(
        "model", [&](const std::string& name, nn::parameter<cpu>& p) { file.set(name, p.value); });
    opt.visit_state("optimizer", [&](const std::string& name, auto& t) { file.set(name, t); });
    file.save(checkpoint.path);
  }

  conv_bn_mock resumed;  // zero parameters until loaded
  Optimizer restored(nn::parameters_of(resumed), options);
  {
    const auto file = tensor_file::load(checkpoint.path);
    resumed.visit_parameters("model", [&](const std::string& name, nn::parameter<cpu>& p) {
      copy_into(file.get<float>(name), p.value);
    });
    std::vector<std::function<void()>> copies;
    restored.visit_state("optimizer", [&](const std::string& name, auto& t) {
      using element = typename std::decay_t<decltype(t)>::value_type;
      auto* target = &t;
      copies.push_back([&file, name, target] { copy_into(file.get<element>(name), *target); });
      if (!deferred) copies.back()();
    });
    if (deferred)
      for (auto& copy : copies) copy();
  }
  CHECK(restored.steps_taken() == first);
  for (int k = 0; k < more; ++k) {
    random_grads(original, rng);
    resumed.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
      nn::parameter<cpu>* source = nullptr;
      original.visit_parameters("", [&](const std::string& other, nn::parameter<cpu>& q) {
        if (other == name) source = &q;
      });
      copy_into(source->grad, p.grad);
    });
    opt.set_lr(lrs_used[lr_index]);
    restored.set_lr(lrs_used[lr_index++]);
    opt.step();
    restored.step();
  }
  require_identical(resumed.conv_weight.value, original.conv_weight.value, "conv weight");
  require_identical(resumed.conv_bias.value, original.conv_bias.value, "conv bias");
  require_identical(resumed.bn_weight.value, original.bn_weight.value, "bn weight");
  require_identical(resumed.bn_bias.value, original.bn_bias.value, "bn bias");
}

}  // namespace

TEST_CASE(
    "optimizers: state saved to and restored from a safetensors file resumes bit-identically") {
  train::sgd_options momentum;
  momentum.momentum = 0.9;
  momentum.weight_decay = 1e-4;
  train::sgd_options nesterov = momentum;
  nesterov.nesterov = true;
  // After one step: a restored optimizer that forgot the count would restart the buffer.
  check_resume<train::sgd<cpu>>(momentum, 1, 3, "sgd_momentum");
  check_resume<train::sgd<cpu>>(nesterov, 2, 3, "sgd_nesterov");
  check_resume<train::sgd<cpu>>(momentum, 0, 2, "sgd_before_first_step");
  train::adamw_options adam;
  check_resume<train::adamw<cpu>>(adam, 2, 3, "adamw");
  adam.amsgrad = true;
  adam.decay_filter = [](const std::string& name) { return !is_bias(name); };
  check_resume<train::adamw<cpu>>(adam, 3, 2, "adamw_amsgrad");
  check_resume<train::sgd<cpu>>(momentum, 1, 3, "sgd_momentum_deferred", true);
  check_resume<train::adamw<cpu>>(adam, 2, 2, "adamw_amsgrad_deferred", true);
}

TEST_CASE("optimizers: a restored state of the wrong shape or a negative step is refused") {
  conv_bn_mock module;
  train::sgd_options o;
  o.momentum = 0.9;
  train::sgd<cpu> opt(nn::parameters_of(module), o);
  auto shrink = [](const std::string& name, auto& t) {
    using element = typename std::decay_t<decltype(t)>::value_type;
    if (name == "0.bias.momentum_buffer") t = tensor<element, cpu>::zeros(shape{5});
  };
  CHECK_THROWS_WITH(opt.visit_state(shrink), Catch::Contains("0.bias.momentum_buffer") &&
                                                 Catch::Contains("[5]") && Catch::Contains("[4]"));
  train::adamw<cpu> adam(nn::parameters_of(module), train::adamw_options{});
  auto negative = [](const std::string&, auto& t) {
    using element = typename std::decay_t<decltype(t)>::value_type;
    if constexpr (std::is_same_v<element, int64_t>) t[0] = -2;
  };
  CHECK_THROWS_AS(adam.visit_state(negative), value_error);
}

TEST_CASE("optimizers: bad options and bad parameters throw naming the value") {
  conv_bn_mock module;
  auto params = nn::parameters_of(module);
  auto sgd_with = [&](auto change) {
    train::sgd_options o;
    o.momentum = 0.5;
    change(o);
    train::sgd<cpu> opt(params, o);
  };
  CHECK_THROWS_WITH(sgd_with([](auto& o) { o.lr = -0.1; }),
                    Catch::Contains("lr") && Catch::Contains("-0.1"));
  CHECK_THROWS_WITH(sgd_with([](auto& o) { o.lr = std::nan(""); }), Catch::Contains("lr"));
  CHECK_THROWS_WITH(sgd_with([](auto& o) { o.momentum = 1.0; }),
                    Catch::Contains("momentum") && Catch::Contains("[0, 1)"));
  CHECK_THROWS_WITH(sgd_with([](auto& o) { o.momentum = -0.2; }), Catch::Contains("-0.2"));
  CHECK_THROWS_WITH(sgd_with([](auto& o) { o.weight_decay = -1e-3; }),
                    Catch::Contains("weight_decay"));
  CHECK_THROWS_WITH(sgd_with([](auto& o) { o.dampening = 1.5; }), Catch::Contains("dampening"));
  CHECK_THROWS_WITH(sgd_with([](auto& o) { o.nesterov = true, o.momentum = 0; }),
                    Catch::Contains("nesterov"));
  CHECK_THROWS_WITH(sgd_with([](auto& o) { o.nesterov = true, o.dampening = 0.1; }),
                    Catch::Contains("nesterov") && Catch::Contains("0.1"));
  CHECK_NOTHROW(sgd_with([](auto& o) { o.nesterov = true; }));

  auto adamw_with = [&](auto change) {
    train::adamw_options o;
    change(o);
    train::adamw<cpu> opt(params, o);
  };
  CHECK_THROWS_WITH(adamw_with([](auto& o) { o.beta1 = 1.0; }), Catch::Contains("beta1"));
  CHECK_THROWS_WITH(adamw_with([](auto& o) { o.beta2 = -0.5; }),
                    Catch::Contains("beta2") && Catch::Contains("-0.5"));
  CHECK_THROWS_WITH(adamw_with([](auto& o) { o.eps = 0; }), Catch::Contains("eps"));
  CHECK_THROWS_WITH(adamw_with([](auto& o) { o.lr = -1; }), Catch::Contains("lr"));
  CHECK_THROWS_AS(adamw_with([](auto& o) { o.weight_decay = -0.01; }), value_error);

  train::sgd<cpu> opt(params, train::sgd_options{});
  CHECK_THROWS_WITH(opt.set_lr(-2), Catch::Contains("lr") && Catch::Contains("-2"));
  CHECK(opt.lr() == 0.01);
  CHECK_THROWS_WITH(train::sgd<cpu>({}, train::sgd_options{}), Catch::Contains("empty"));

  // A gradient that no longer matches its value is caught at the step, naming the parameter.
  module.bn_bias.grad = host_tensor<float>::zeros(shape{5});
  CHECK_THROWS_WITH(opt.step(), Catch::Contains("1.bias") && Catch::Contains("[5]"));
}
