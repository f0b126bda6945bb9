// The zoo's quarter-width models (FCN, SaF, HFGD, OCR) on the cuda device against the same model
// on the cpu: same seed, options, images and labels; the eval logits (and SaF's pyramids), the
// loss terms and every parameter gradient agree.
// Options keep both devices on the same discrete path: SaF's tau 0.3 keeps every untrained unity
// probability (about 0.5) clear of the threshold and GT re-labeling does not look at
// predictions; OCR's plain CE instead of OHEM has no probability threshold either.
#include <random>
#include <string>
#include <vector>

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

template <class OnCpu, class OnGpu, class Extra>
void check_on_gpu(const std::string& options, Extra&& extra_checks) {
  const int classes = 5;
  auto on_cpu = models::make_model<OnCpu>(classes, options, /*seed=*/3);
  auto on_gpu = models::make_model<OnGpu>(classes, options, /*seed=*/3);
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
  extra_checks(on_cpu, on_gpu);
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
const auto nothing_more = [](auto&, auto&) {};
}  // namespace

TEST_CASE("cuda models: fcn-resnet18-w25 on the gpu matches the cpu") {
  check_on_gpu<models::zoo_models<cpu>::fcn_resnet18_w25, models::zoo_models<cuda>::fcn_resnet18_w25>(
      "", nothing_more);
}

TEST_CASE("cuda models: saf-resnet18-w25 on the gpu matches the cpu (pyramids, fuser)") {
  check_on_gpu<models::zoo_models<cpu>::saf_resnet18_w25, models::zoo_models<cuda>::saf_resnet18_w25>(
      "tau=0.3,relabel=gt", [](auto& on_cpu, auto& on_gpu) {
        const auto& s_cpu = on_cpu.head().semantic_logits();
        const auto& s_gpu = on_gpu.head().semantic_logits();
        REQUIRE(s_cpu.size() == s_gpu.size());
        for (size_t l = 0; l < s_cpu.size(); ++l)
          testing::require_all_close(to<cpu>(s_gpu[l]), s_cpu[l], 1e-3f, 1e-2f, "semantic logits");
        const auto& u_cpu = on_cpu.head().unity_logits();
        const auto& u_gpu = on_gpu.head().unity_logits();
        REQUIRE(u_cpu.size() == u_gpu.size());
        for (size_t l = 0; l < u_cpu.size(); ++l)
          testing::require_all_close(to<cpu>(u_gpu[l]), u_cpu[l], 1e-3f, 1e-2f, "unity logits");
        const auto map_cpu = on_cpu.head().level_map(), map_gpu = to<cpu>(on_gpu.head().level_map());
        for (int64_t i = 0; i < map_cpu.numel(); ++i) REQUIRE(map_gpu[i] == map_cpu[i]);
      });
}

TEST_CASE("cuda models: hfgd-resnet18-w25 on the gpu matches the cpu") {
  check_on_gpu<models::zoo_models<cpu>::hfgd_resnet18_w25,
               models::zoo_models<cuda>::hfgd_resnet18_w25>("", nothing_more);
}

TEST_CASE("cuda models: ocr-resnet18-w25 on the gpu matches the cpu") {
  check_on_gpu<models::zoo_models<cpu>::ocr_resnet18_w25, models::zoo_models<cuda>::ocr_resnet18_w25>(
      "ohem=0", nothing_more);
}
