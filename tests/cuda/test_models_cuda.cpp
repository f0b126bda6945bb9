// The FCN baseline (ResNet-18 backbone at a quarter width, output stride 8, auxiliary head) on
// the cuda device against the same model on the cpu: same seed, same images and labels; the
// logits, the loss terms and every parameter gradient agree.
#include <random>

#include "op_checker.hpp"
#include "segkit/models/zoo.hpp"

using namespace segkit;

namespace {
template <class Model>
std::vector<host_tensor<float>> gradients_of(Model& model) {
  std::vector<host_tensor<float>> result;
  model.visit_parameters("", [&](const std::string&, auto& p) { result.push_back(to<cpu>(p.grad)); });
  return result;
}
}  // namespace

TEST_CASE("cuda fcn: fcn-resnet18-w25 on the gpu matches the cpu (logits, losses, gradients)") {
  using on_cpu_type = models::zoo_models<cpu>::fcn_resnet18_w25;
  using on_gpu_type = models::zoo_models<cuda>::fcn_resnet18_w25;
  const int classes = 5;
  on_cpu_type on_cpu(classes, /*seed=*/3);
  on_gpu_type on_gpu(classes, /*seed=*/3);
  const shape input{2, 3, 64, 64};
  on_cpu.setup(input);
  on_gpu.setup(input);

  std::mt19937 rng(21);
  const auto images = testing::random_tensor(input, rng);
  host_tensor<int32_t> labels({2, 64, 64});
  std::uniform_int_distribution<int32_t> label(0, classes);
  for (int64_t i = 0; i < labels.numel(); ++i) {
    const int32_t v = label(rng);
    labels[i] = v == classes ? 255 : v;  // some ignored pixels
  }
  // Eval mode: dropout off on both sides (their masks are drawn on different devices).
  on_cpu.eval();
  on_gpu.eval();
  testing::require_all_close(to<cpu>(on_gpu.forward(to<cuda>(images))), on_cpu.forward(images),
                             1e-3f, 1e-2f, "eval logits");
  on_cpu.zero_grad();
  on_gpu.zero_grad();
  const auto terms_cpu = on_cpu.forward_backward(images, labels);
  const auto terms_gpu = on_gpu.forward_backward(to<cuda>(images), to<cuda>(labels));
  REQUIRE(terms_cpu.terms.size() == terms_gpu.terms.size());
  for (size_t i = 0; i < terms_cpu.terms.size(); ++i) {
    INFO(terms_cpu.terms[i].first);
    CHECK(terms_gpu.terms[i].second == Approx(terms_cpu.terms[i].second).epsilon(1e-3));
  }
  const auto g_cpu = gradients_of(on_cpu), g_gpu = gradients_of(on_gpu);
  REQUIRE(g_cpu.size() == g_gpu.size());
  for (size_t i = 0; i < g_cpu.size(); ++i)
    testing::require_all_close(g_gpu[i], g_cpu[i], 1e-3f, 2e-2f, "parameter gradient");
}
