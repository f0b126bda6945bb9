// tests/parity_helpers.hpp — shared by tests/test_hrnet.cpp and tests/test_resnet_decoder.cpp:
// gen_resnet.py's formula() (weights, running statistics, inputs and loss weights both sides
// compute), fill(net), the names-and-shapes listing of a module and of a golden key list, and
// a relative closeness check. (tests/test_resnet.cpp has its own copy of the same code.)
// Compile time: a network's visit_parameters / visit_buffers is a template over the visitor,
// instantiated through every layer once per visitor TYPE. Everything here goes through the one
// type-erased visitor pair below (parameters_of / buffers_of), so a test instantiates each
// visit function once, whatever it checks.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <utility>
#include <vector>
#include <sstream>
#include <string>

#include "segkit/nn/parameter.hpp"
#include "segkit/tensor/safetensors.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit::testing::parity {

using parameter_visitor = std::function<void(const std::string&, nn::parameter<cpu>&)>;
struct buffer_visitor {
  std::function<void(const std::string&, host_tensor<float>&)> floats;
  std::function<void(const std::string&, host_tensor<int64_t>&)> counters;
  void operator()(const std::string& name, host_tensor<float>& t) const { floats(name, t); }
  void operator()(const std::string& name, host_tensor<int64_t>& t) const { counters(name, t); }
};
template <class Net>
std::vector<std::pair<std::string, nn::parameter<cpu>*>> parameters_of(Net& net) {
  std::vector<std::pair<std::string, nn::parameter<cpu>*>> result;
  parameter_visitor visit = [&](const std::string& name, nn::parameter<cpu>& p) {
    result.emplace_back(name, &p);
  };
  net.visit_parameters("", visit);
  return result;
}
template <class Net>
void visit_buffers(Net& net, const buffer_visitor& visit) {
  net.visit_buffers("", visit);
}
template <class Net>
void zero_grad(Net& net) {
  for (auto& [name, p] : parameters_of(net)) p->zero_grad();
}

inline int name_hash(const std::string& name) {
  int64_t h = 0;
  for (size_t j = 0; j < name.size(); ++j) h += int64_t(j + 1) * static_cast<unsigned char>(name[j]);
  return int(h % 1000);
}
// gen_resnet.py's formula(): splitmix64 of element i and the key's hash, uniform in [-1, 1).
inline double formula(const std::string& key, int64_t i) {
  uint64_t z = uint64_t(i + 1) * 0x9E3779B97F4A7C15ull +
               uint64_t(name_hash(key) + 1) * 0xD1B54A32D192ED03ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return double(z >> 11) * std::ldexp(1.0, -52) - 1.0;
}
inline host_tensor<float> formula_tensor(const std::string& key, const shape& extent) {
  host_tensor<float> t(extent);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = float(formula(key, i));
  return t;
}

// Parameters and buffers as gen_resnet.py's fill().
template <class Net>
void fill(Net& net) {
  for (auto& [name, p] : parameters_of(net)) {
    auto& t = p->value;
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
  }
  visit_buffers(net, {[](const std::string& name, host_tensor<float>& t) {
                        const bool mean =
                            name.size() > 12 && name.substr(name.size() - 12) == "running_mean";
                        for (int64_t i = 0; i < t.numel(); ++i) {
                          const double s = formula(name, i);
                          t[i] = float(mean ? 0.1 * s : 1.0 + 0.3 * s * s);
                        }
                      },
                      [](const std::string&, host_tensor<int64_t>& t) { t.zero(); }});
}

inline std::string dims(const shape& s) {
  std::string text;
  for (int d = 0; d < s.rank(); ++d) text += (d ? "x" : "") + std::to_string(s[d]);
  return text;
}

// name -> "d0xd1x..." of every parameter and buffer (num_batches_tracked: "", torch's 0-d).
template <class Net>
std::map<std::string, std::string> names_and_shapes(Net& net) {
  std::map<std::string, std::string> result;
  for (auto& [name, p] : parameters_of(net)) CHECK(result.emplace(name, dims(p->shape())).second);
  visit_buffers(net, {[&](const std::string& name, host_tensor<float>& t) {
                        CHECK(result.emplace(name, dims(t.shape())).second);
                      },
                      [&](const std::string& name, host_tensor<int64_t>&) {
                        CHECK(result.emplace(name, "").second);
                      }});
  return result;
}

// gen_*.py's key_list(): "name:d0xd1;name:...".
inline std::map<std::string, std::string> key_list(const std::string& listing) {
  std::map<std::string, std::string> result;
  std::stringstream in(listing);
  std::string entry;
  while (std::getline(in, entry, ';')) {
    const auto colon = entry.find(':');
    result[entry.substr(0, colon)] = entry.substr(colon + 1);
  }
  return result;
}

inline void require_close(const host_tensor<float>& got, const host_tensor<float>& want, double tol,
                          const std::string& what) {
  INFO(what << ": got " << got.shape().to_string() << ", want " << want.shape().to_string());
  REQUIRE(got.shape() == want.shape());
  double scale = 0;
  for (int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, std::abs(double(want[i])));
  for (int64_t i = 0; i < want.numel(); ++i) {
    INFO(what << " element " << i << ": " << got[i] << " vs reference " << want[i]);
    REQUIRE(std::abs(double(got[i]) - double(want[i])) <= tol * (1 + scale));
  }
}

// Every parameter gradient against the reference's two projections (and full gradients where
// the file has them), running means after the training forward. Returns the count checked.
template <class Net>
int check_gradients(Net& net, const tensor_file& file, const std::string& prefix, double tol) {
  int projections = 0;
  for (auto& [name, pointer] : parameters_of(net)) {
    nn::parameter<cpu>& p = *pointer;
    const host_tensor<float> want = file.get<float>(prefix + "proj." + name);
    double gu = 0, gv = 0, norm = 0;
    for (int64_t i = 0; i < p.grad.numel(); ++i) {
      const double v = formula("v", i);
      gu += double(p.grad[i]) * formula("u", i);
      gv += double(p.grad[i]) * v * v;
      norm += std::abs(double(p.grad[i]));
    }
    INFO(prefix << name << " gradient projections " << gu << ", " << gv << " vs reference "
                << want[0] << ", " << want[1] << " (|g|_1 = " << norm << ")");
    CHECK(std::abs(gu - want[0]) <= tol * (1 + norm));
    CHECK(std::abs(gv - want[1]) <= tol * (1 + norm));
    if (file.contains(prefix + "grad." + name))
      require_close(p.grad, file.get<float>(prefix + "grad." + name), tol, prefix + name + " grad");
    ++projections;
  }
  int afters = 0;
  visit_buffers(net, {[&](const std::string& name, host_tensor<float>& t) {
                        if (file.contains(prefix + "after." + name)) {
                          require_close(t, file.get<float>(prefix + "after." + name), 1e-5,
                                        prefix + name);
                          ++afters;
                        }
                      },
                      [](const std::string&, host_tensor<int64_t>& t) { CHECK(t[0] == 1); }});
  CHECK(afters >= 2);
  return projections;
}

}  // namespace segkit::testing::parity
