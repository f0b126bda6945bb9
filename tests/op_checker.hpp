// tests/op_checker.hpp — the generic checker every op's test runs (dlib's test_layer, ggml's
// GRAD mode). Given inputs (activations and parameters), a forward and a backward, it proves:
//   1. forward is deterministic: two runs give bit-identical outputs;
//   2. backward accumulates: running it onto gradients pre-filled with r gives r + g;
//   3. backward is the derivative: for L = sum_k <dy_k, y_k> with random dy, every analytic
//      dL/dx matches the central finite difference (L(x+h) - L(x-h)) / 2h, accumulated in
//      double, on every element or on a seeded sample of them for large inputs.
// Failures name the check, the input, the element index and both values.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "segkit/tensor/tensor.hpp"

namespace segkit::testing {

using tensors = std::vector<host_tensor<float>>;

inline host_tensor<float> random_tensor(const shape& extent, std::mt19937& rng, float low = -1.f,
                                        float high = 1.f) {
  host_tensor<float> result(extent);
  std::uniform_real_distribution<float> pick(low, high);
  for (int64_t i = 0; i < result.numel(); ++i) result[i] = pick(rng);
  return result;
}

struct op_case {
  std::string name;
  tensors inputs;                  // everything to differentiate against, parameters included
  std::vector<bool> needs_grad;    // empty = all inputs
  std::function<tensors(const tensors& inputs)> forward;
  // Adds dL/d(input i) into input_grads[i] (same shapes as inputs).
  std::function<void(const tensors& inputs, const tensors& outputs, const tensors& output_grads,
                     tensors& input_grads)>
      backward;
  float step = 1e-2f;        // finite-difference step h
  float absolute_tolerance = 2e-3f;
  float relative_tolerance = 1e-2f;
  int max_checked_elements = 96;  // per input; sampled with a fixed seed beyond that
  unsigned seed = 1234;
};

namespace detail {
inline double weighted_sum(const tensors& outputs, const tensors& weights) {
  double total = 0;
  for (size_t k = 0; k < outputs.size(); ++k)
    for (int64_t i = 0; i < outputs[k].numel(); ++i)
      total += static_cast<double>(outputs[k][i]) * static_cast<double>(weights[k][i]);
  return total;
}
inline bool close(double a, double b, double atol, double rtol) {
  return std::abs(a - b) <= atol + rtol * std::max(std::abs(a), std::abs(b));
}
}  // namespace detail

inline void check_op(op_case test) {
  INFO("op case: " << test.name);
  std::mt19937 rng(test.seed);
  if (test.needs_grad.empty()) test.needs_grad.assign(test.inputs.size(), true);

  // 1. determinism
  const tensors outputs = test.forward(test.inputs);
  const tensors again = test.forward(test.inputs);
  REQUIRE(outputs.size() == again.size());
  for (size_t k = 0; k < outputs.size(); ++k) {
    REQUIRE(outputs[k].shape() == again[k].shape());
    for (int64_t i = 0; i < outputs[k].numel(); ++i) {
      INFO("forward is not deterministic: output " << k << " element " << i);
      REQUIRE(outputs[k][i] == again[k][i]);
    }
  }

  tensors output_grads;
  for (const auto& out : outputs) output_grads.push_back(random_tensor(out.shape(), rng));

  // 2. accumulation
  tensors grads, prefilled, prefill_values;
  for (const auto& in : test.inputs) {
    grads.push_back(host_tensor<float>::zeros(in.shape()));
    prefill_values.push_back(random_tensor(in.shape(), rng));
    prefilled.push_back(prefill_values.back().clone());
  }
  test.backward(test.inputs, outputs, output_grads, grads);
  test.backward(test.inputs, outputs, output_grads, prefilled);
  for (size_t j = 0; j < test.inputs.size(); ++j) {
    if (!test.needs_grad[j]) continue;
    for (int64_t i = 0; i < grads[j].numel(); ++i) {
      const double expected = double(prefill_values[j][i]) + double(grads[j][i]);
      INFO("backward does not accumulate: input " << j << " element " << i << " gave "
                                                  << prefilled[j][i] << ", expected "
                                                  << expected);
      REQUIRE(detail::close(prefilled[j][i], expected, 1e-5, 1e-5));
    }
  }

  // 3. finite differences
  for (size_t j = 0; j < test.inputs.size(); ++j) {
    if (!test.needs_grad[j]) continue;
    const int64_t count = test.inputs[j].numel();
    std::vector<int64_t> indices(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) indices[static_cast<size_t>(i)] = i;
    if (count > test.max_checked_elements) {
      std::shuffle(indices.begin(), indices.end(), rng);
      indices.resize(static_cast<size_t>(test.max_checked_elements));
    }
    for (int64_t i : indices) {
      tensors perturbed = test.inputs;
      perturbed[j] = test.inputs[j].clone();
      const float original = perturbed[j][i];
      perturbed[j][i] = original + test.step;
      const double plus = detail::weighted_sum(test.forward(perturbed), output_grads);
      perturbed[j][i] = original - test.step;
      const double minus = detail::weighted_sum(test.forward(perturbed), output_grads);
      // The step actually taken in float, not the nominal one.
      const double taken = double(original + test.step) - double(original - test.step);
      const double numeric = (plus - minus) / taken;
      INFO("gradient mismatch: input " << j << " element " << i << " analytic " << grads[j][i]
                                       << " finite difference " << numeric);
      CHECK(detail::close(grads[j][i], numeric, test.absolute_tolerance,
                          test.relative_tolerance));
    }
  }
}

// Largest |a - b| / (atol + rtol * |b|) over all elements; <= 1 means all close.
inline void require_all_close(const host_tensor<float>& actual, const host_tensor<float>& expected,
                              float atol, float rtol, const std::string& what) {
  INFO(what);
  REQUIRE(actual.shape() == expected.shape());
  int64_t worst = -1;
  double worst_ratio = 0;
  for (int64_t i = 0; i < actual.numel(); ++i) {
    const double difference = std::abs(double(actual[i]) - double(expected[i]));
    // Equal values pass even with zero tolerances (0 / 0 would be NaN).
    const double ratio =
        difference == 0 ? 0 : difference / (atol + rtol * std::abs(double(expected[i])));
    if (!(ratio <= worst_ratio)) {  // also catches NaN
      worst_ratio = ratio;
      worst = i;
      if (std::isnan(ratio)) break;  // else the next element's finite ratio would replace it
    }
  }
  if (worst >= 0 && !(worst_ratio <= 1.0)) {
    FAIL(what << ": element " << worst << " is " << actual[worst] << ", expected "
              << expected[worst] << " (atol " << atol << ", rtol " << rtol << ")");
  }
}

}  // namespace segkit::testing
