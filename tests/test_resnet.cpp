// tests/test_resnet.cpp — models::resnet against torchvision (names, shapes, forward features
// and parameter gradients from tests/golden/resnet.safetensors, written by
// tests/reference/gen_resnet.py), output strides by dilation, partial feature gradients,
// finite differences at a small width, bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "op_checker.hpp"
#include "segkit/models/resnet.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;

namespace {

int name_hash(const std::string& name) {
  int64_t h = 0;
  for (size_t j = 0; j < name.size(); ++j) h += int64_t(j + 1) * static_cast<unsigned char>(name[j]);
  return int(h % 1000);
}
// gen_resnet.py's formula(): splitmix64 of element i and the key's hash, uniform in [-1, 1).
double formula(const std::string& key, int64_t i) {
  uint64_t z = uint64_t(i + 1) * 0x9E3779B97F4A7C15ull +
               uint64_t(name_hash(key) + 1) * 0xD1B54A32D192ED03ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return double(z >> 11) * std::ldexp(1.0, -52) - 1.0;
}
host_tensor<float> formula_tensor(const std::string& key, const shape& extent) {
  host_tensor<float> t(extent);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = float(formula(key, i));
  return t;
}

// Parameters and buffers as gen_resnet.py's fill().
template <class Net>
void fill(Net& net) {
  net.visit_parameters("", [](const std::string& name, nn::parameter<cpu>& p) {
    auto& t = p.value;
    const std::string leaf = name.substr(name.rfind('.') + 1);
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double s = formula(name, i);
      if (t.shape().rank() == 4) {
        const double fan_in = double(t.shape()[1] * t.shape()[2] * t.shape()[3]);
        t[i] = float(s * std::sqrt(3.0 / fan_in));
      } else {
        t[i] = float(leaf == "weight" ? 1.0 + 0.2 * s : 0.1 * s);
      }
    }
  });
  struct fill_buffers {
    void operator()(const std::string& name, host_tensor<float>& t) const {
      const bool mean = name.size() > 12 && name.substr(name.size() - 12) == "running_mean";
      for (int64_t i = 0; i < t.numel(); ++i) {
        const double s = formula(name, i);
        t[i] = float(mean ? 0.1 * s : 1.0 + 0.3 * s * s);
      }
    }
    void operator()(const std::string&, host_tensor<int64_t>& t) const { t.zero(); }
  };
  net.visit_buffers("", fill_buffers{});
}


template <class Net>
std::map<std::string, std::string> names_and_shapes(Net& net) {
  std::map<std::string, std::string> result;
  auto dims = [](const shape& s) {
    std::string text;
    for (int d = 0; d < s.rank(); ++d) text += (d ? "x" : "") + std::to_string(s[d]);
    return text;
  };
  net.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
    CHECK(result.emplace(name, dims(p.shape())).second);
  });
  struct visit_buffers {
    std::map<std::string, std::string>& out;
    decltype(dims)& to_text;
    void operator()(const std::string& name, host_tensor<float>& t) const {
      CHECK(out.emplace(name, to_text(t.shape())).second);
    }
    void operator()(const std::string& name, host_tensor<int64_t>&) const {
      CHECK(out.emplace(name, "").second);  // torch's num_batches_tracked is a 0-d tensor
    }
  };
  net.visit_buffers("", visit_buffers{result, dims});
  return result;
}

// torchvision's full-width names and shapes, with every channel count divided by `divisor`
// (conv weights: dims 0 and 1 except conv1's 3 image channels; batch norm vectors: dim 0), so
// one width-25 instantiation checks the full-width layout without compiling a second one.
std::map<std::string, std::string> torchvision_names(const std::string& listing, int divisor) {
  std::map<std::string, std::string> result;
  std::stringstream in(listing);
  std::string entry;
  while (std::getline(in, entry, ';')) {
    const auto colon = entry.find(':');
    const std::string name = entry.substr(0, colon);
    std::stringstream dims_in(entry.substr(colon + 1));
    std::string dim, text;
    for (int d = 0; std::getline(dims_in, dim, 'x'); ++d) {
      int64_t value = std::stoll(dim);
      if (d == 0 || (d == 1 && name != "conv1.weight")) {
        REQUIRE(value % divisor == 0);
        value /= divisor;
      }
      text += (d ? "x" : "") + std::to_string(value);
    }
    result[name] = text;
  }
  return result;
}

const tensor_file& golden() {
  static const tensor_file file = tensor_file::load(SEGKIT_GOLDEN_DIR "/resnet.safetensors");
  return file;
}

void require_close(const host_tensor<float>& got, const host_tensor<float>& want, double tol,
                   const std::string& what) {
  INFO(what << ": got " << got.shape().to_string() << ", want " << want.shape().to_string());
  REQUIRE(got.shape() == want.shape());
  double scale = 0;
  for (int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, std::abs(double(want[i])));
  for (int64_t i = 0; i < want.numel(); ++i) {
    INFO(what << " element " << i << ": " << got[i] << " vs torchvision " << want[i]);
    REQUIRE(std::abs(double(got[i]) - double(want[i])) <= tol * (1 + scale));
  }
}

// Forward (train and eval) and gradients against one parity case of the golden file.
// grad_tolerance: relative to the largest |g|. ResNet-50's training-mode backward on 2x4x4
// pixels per channel is ill-conditioned in float32: torchvision in float32 itself differs from
// its float64 result (the golden values) by 0.8% of max |g| on conv1.weight.
template <class Net>
void check_parity(const std::string& prefix, double grad_tolerance) {
  Net net;
  fill(net);
  const auto& file = golden();
  const host_tensor<float> x = file.get<float>(prefix + "input");
  const auto shapes = net.setup(x.shape());

  net.eval();
  auto features = net.forward(x);
  for (int k = 0; k < 4; ++k)
    require_close(*features[k], file.get<float>(prefix + "eval." + std::to_string(k)), 1e-4,
                  prefix + "eval feature " + std::to_string(k));

  net.train();
  net.zero_grad();
  features = net.forward(x);
  std::array<host_tensor<float>, 4> r;
  std::array<const host_tensor<float>*, 4> dr{};
  for (int k = 0; k < 4; ++k) {
    require_close(*features[k], file.get<float>(prefix + "train." + std::to_string(k)), 1e-4,
                  prefix + "train feature " + std::to_string(k));
    r[k] = formula_tensor("r" + std::to_string(k), shapes[k]);
    dr[k] = &r[k];
  }
  net.backward(x, dr);

  int projections = 0;
  net.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
    const host_tensor<float> want = file.get<float>(prefix + "proj." + name);
    double gu = 0, gv = 0, norm = 0;
    for (int64_t i = 0; i < p.grad.numel(); ++i) {
      const double v = formula("v", i);
      gu += double(p.grad[i]) * formula("u", i);
      gv += double(p.grad[i]) * v * v;
      norm += std::abs(double(p.grad[i]));
    }
    INFO(prefix << name << " gradient projections " << gu << ", " << gv << " vs torchvision "
                << want[0] << ", " << want[1] << " (|g|_1 = " << norm << ")");
    CHECK(std::abs(gu - want[0]) <= grad_tolerance * (1 + norm));
    CHECK(std::abs(gv - want[1]) <= grad_tolerance * (1 + norm));
    if (file.contains(prefix + "grad." + name))
      require_close(p.grad, file.get<float>(prefix + "grad." + name), grad_tolerance,
                    prefix + name + " grad");
    ++projections;
  });
  CHECK(projections > 20);
  struct after {
    const tensor_file& file;
    const std::string& prefix;
    void operator()(const std::string& name, host_tensor<float>& t) const {
      if (file.contains(prefix + "after." + name))
        require_close(t, file.get<float>(prefix + "after." + name), 1e-5, prefix + name);
    }
    void operator()(const std::string&, host_tensor<int64_t>& t) const { CHECK(t[0] == 1); }
  };
  net.visit_buffers("", after{file, prefix});
}

}  // namespace

TEST_CASE("resnet names and shapes are torchvision's state_dict without fc", "[resnet]") {
  // At width 25 every channel count is torchvision's / 4 (compile time: no second
  // instantiation at full width; the full-width channels are checked through the constants).
  auto file = golden();
  const auto& meta = file.metadata();
  {
    models::resnet<18, 25, 32> r18;
    CHECK(names_and_shapes(r18) == torchvision_names(meta.at("names.resnet18"), 4));
    CHECK(models::resnet<18, 25, 32>::channels == std::array<int, 4>{16, 32, 64, 128});
  }
  {
    models::resnet<50, 25, 8> r50;
    CHECK(names_and_shapes(r50) == torchvision_names(meta.at("names.resnet50"), 4));
    CHECK(models::resnet<50, 25, 8>::channels == std::array<int, 4>{64, 128, 256, 512});
  }
  static_assert(models::resnet<18>::channels[3] == 512 && models::resnet<50>::channels[3] == 2048);
}

TEST_CASE("resnet-18 matches torchvision: features and gradients (width 25, stride 32)",
          "[resnet]") {
  check_parity<models::resnet<18, 25, 32>>("r18.", 1e-4);
}

TEST_CASE("resnet-50 matches torchvision: dilated output stride 8 (width 25)", "[resnet]") {
  check_parity<models::resnet<50, 25, 8>>("r50.", 2e-2);
}

TEST_CASE("resnet output strides, widths and names", "[resnet]") {
  models::resnet<18, 25, 16> net(3);
  const auto s = net.setup({2, 3, 96, 64});
  CHECK(s[0] == shape{2, 16, 24, 16});
  CHECK(s[1] == shape{2, 32, 12, 8});
  CHECK(s[2] == shape{2, 64, 6, 4});
  CHECK(s[3] == shape{2, 128, 6, 4});  // layer4 dilated: stride 16
  CHECK(models::resnet<18, 25, 16>::strides == std::array<int, 4>{4, 8, 16, 16});
  CHECK(models::resnet<18, 25, 16>::name() == "resnet18-w25-os16");
  CHECK(models::resnet<50, 25, 8>::name() == "resnet50-w25");
  CHECK(models::resnet<18, 25, 32>::channels == std::array<int, 4>{16, 32, 64, 128});
  // The dilated layer4 keeps a 1x1 downsample (channels change) with stride 1.
  bool has_downsample = false;
  net.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
    if (name == "layer4.0.downsample.0.weight") {
      has_downsample = true;
      CHECK(p.shape() == shape{128, 64, 1, 1});
    }
  });
  CHECK(has_downsample);
}

TEST_CASE("resnet backward: a feature without gradient sends nothing; later layers get none",
          "[resnet]") {
  models::resnet<18, 25, 16> net(5);
  const auto shapes = net.setup({1, 3, 32, 32});
  std::mt19937 rng(3);
  const auto x = testing::random_tensor({1, 3, 32, 32}, rng);
  const auto d1 = testing::random_tensor(shapes[1], rng);
  net.zero_grad();
  net.forward(x);
  net.backward(x, {nullptr, &d1, nullptr, nullptr});
  double layer2 = 0, layer3 = 0, stem = 0;
  net.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
    double sum = 0;
    for (int64_t i = 0; i < p.grad.numel(); ++i) sum += std::abs(p.grad[i]);
    if (name.rfind("layer2", 0) == 0) layer2 += sum;
    if (name.rfind("layer3", 0) == 0 || name.rfind("layer4", 0) == 0) layer3 += sum;
    if (name.rfind("conv1", 0) == 0) stem += sum;
  });
  CHECK(layer2 > 0);
  CHECK(stem > 0);
  CHECK(layer3 == 0);
}

TEST_CASE("resnet gradients match finite differences (width 25, dilated, eval mode)",
          "[resnet]") {
  using net_type = models::resnet<18, 25, 16>;
  auto net = std::make_shared<net_type>(11);
  fill(*net);  // well-conditioned weights and running statistics (see gen_resnet.py)
  const shape in{1, 3, 32, 32};
  net->setup(in);
  net->eval();  // batch norm with running statistics: piecewise smooth in every parameter
  // Late parameters: conv1's finite differences through 17 layers are float32 noise at any
  // step small enough to stay off the ReLU kinks (its gradient is checked against torchvision).
  const std::vector<std::string> checked{"layer3.1.conv1.weight", "layer3.1.bn2.weight",
                                         "layer4.0.downsample.0.weight", "layer4.1.conv2.weight",
                                         "layer4.1.bn1.weight"};
  std::vector<nn::parameter<cpu>*> params;
  net->visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
    for (const auto& c : checked)
      if (name == c) params.push_back(&p);
  });
  REQUIRE(params.size() == checked.size());

  testing::op_case test;
  test.name = "resnet18-w25-os16";
  std::mt19937 rng(7);
  test.inputs.push_back(testing::random_tensor(in, rng));
  for (auto* p : params) test.inputs.push_back(p->value.clone());
  test.needs_grad.assign(test.inputs.size(), true);
  test.needs_grad[0] = false;  // the backbone never computes an image gradient
  test.forward = [net, params](const testing::tensors& inputs) {
    for (size_t j = 0; j < params.size(); ++j) copy_into(inputs[j + 1], params[j]->value);
    const auto f = net->forward(inputs[0]);
    return testing::tensors{f[0]->clone(), f[1]->clone(), f[2]->clone(), f[3]->clone()};
  };
  test.backward = [net, params](const testing::tensors& inputs, const testing::tensors&,
                                const testing::tensors& dy, testing::tensors& grads) {
    for (size_t j = 0; j < params.size(); ++j) {
      copy_into(inputs[j + 1], params[j]->value);
      copy_into(grads[j + 1], params[j]->grad);
    }
    net->forward(inputs[0]);
    net->backward(inputs[0], {&dy[0], &dy[1], &dy[2], &dy[3]});
    for (size_t j = 0; j < params.size(); ++j) copy_into(params[j]->grad, grads[j + 1]);
  };
  test.step = 3e-3f;
  test.absolute_tolerance = 1e-2f;
  test.relative_tolerance = 2e-2f;
  test.max_checked_elements = 24;
  testing::check_op(test);
}

TEST_CASE("resnet rejects bad input", "[resnet]") {
  models::resnet<18, 25, 32> net;
  CHECK_THROWS_AS(net.forward(host_tensor<float>::zeros({1, 3, 32, 32})), segkit::error);
  CHECK_THROWS_WITH(net.setup({1, 4, 32, 32}), Catch::Contains("[1, 4, 32, 32]"));
  net.setup({1, 3, 32, 32});
  CHECK_THROWS_WITH(net.forward(host_tensor<float>::zeros({1, 3, 32, 64})),
                    Catch::Contains("[1, 3, 32, 64]") && Catch::Contains("[1, 3, 32, 32]"));
}
