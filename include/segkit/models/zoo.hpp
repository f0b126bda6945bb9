// segkit/models/zoo.hpp — the runtime name -> model type switch every tool shares.
// Provides: models::model_tag<M>, model_names(), with_model(name, f), and
//   check_model_options(name, options) validates them up front;
//   make_model<M>(num_classes, options, seed): M built with its method's runtime options parsed
//   from "key=value,..." (parse_saf_options / parse_hfgd_options / parse_ocr_options; FCN has
//   none). value_error names a bad key or value.
//   with_model("fcn-resnet18", [&](auto tag) { using M = typename decltype(tag)::type; ... });
// Calls f(model_tag<M>{}) for the model type M named; value_error listing the names otherwise.
// Every name here is instantiated by every program that calls with_model (the tools compile
// each once, examples/tool_models.hpp; a new name goes into examples/CMakeLists.txt's list
// too), so the set is small on purpose (compile time): add a model only when a tool needs it.
// Models run on the cpu device; with_model_on<Device> picks the same set for another device.
// The methods share one backbone family (torchvision's ResNet-18) so that they compare at one
// budget (docs/results.md):
//   fcn-resnet18       FCN (2 convs of 128, concat input) + aux head (64) on ResNet-18, output
//                      stride 8 (mmseg's fcn_r18-d8 layout): the baseline
//   fcn-resnet50       FCN (512) + aux head (256) on ResNet-50 v1.5, output stride 8 (fcn_r50-d8)
//   saf-resnet18       SaF on ResNet-18 (stride 32) + the ResNet-decoder of SaF's supplementary
//                      §D (widths 48/96/192/384, HRNet-W48's last stage: 3 modules x 4 blocks)
//   hfgd-resnet18      HFGD on ResNet-18 (stride 32): CAE 256, key 64, FPN 128 (half of the
//                      ResNet-50 setting, as ResNet-18 has a quarter of its channels), aux 64
//   ocr-resnet18       OCRNet on ResNet-18, output stride 8: 256 channels, key 128, aux 128
//   *-resnet18-w25     quarter-width backbones (and heads): CPU smoke runs, tests, the main job
#pragma once
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "segkit/models/fcn.hpp"
#include "segkit/models/hfgd.hpp"
#include "segkit/models/ocr.hpp"
#include "segkit/models/resnet.hpp"
#include "segkit/models/saf.hpp"
#include "segkit/tensor/error.hpp"

namespace segkit::models {

template <class M>
struct model_tag {
  using type = M;
};

template <class Device = cpu>
struct zoo_models {
  using fcn_resnet18 = fcn<resnet<18, 100, 8, Device>, 128, 64>;
  using fcn_resnet50 = fcn<resnet<50, 100, 8, Device>, 512, 256>;
  using fcn_resnet18_w25 = fcn<resnet<18, 25, 8, Device>, 32, 16>;
  using saf_resnet18 = saf<resnet<18, 100, 32, Device>, 48, 3, 4>;
  using saf_resnet18_w25 = saf<resnet<18, 25, 32, Device>, 12, 1, 1>;
  using hfgd_resnet18 = hfgd<resnet<18, 100, 32, Device>, 64, 256, 64, 128>;
  using hfgd_resnet18_w25 = hfgd<resnet<18, 25, 32, Device>, 16, 64, 16, 32>;
  using ocr_resnet18 = ocr<resnet<18, 100, 8, Device>, 256, 128, 128>;
  using ocr_resnet18_w25 = ocr<resnet<18, 25, 8, Device>, 64, 32, 32>;
};

inline std::vector<std::string> model_names() {
  return {"fcn-resnet18",     "fcn-resnet50",  "fcn-resnet18-w25",  "saf-resnet18",
          "saf-resnet18-w25", "hfgd-resnet18", "hfgd-resnet18-w25", "ocr-resnet18",
          "ocr-resnet18-w25"};
}

template <class Device, class F>
decltype(auto) with_model_on(const std::string& name, F&& f) {
  using z = zoo_models<Device>;
  if (name == "fcn-resnet18") return f(model_tag<typename z::fcn_resnet18>{});
  if (name == "fcn-resnet50") return f(model_tag<typename z::fcn_resnet50>{});
  if (name == "fcn-resnet18-w25") return f(model_tag<typename z::fcn_resnet18_w25>{});
  if (name == "saf-resnet18") return f(model_tag<typename z::saf_resnet18>{});
  if (name == "saf-resnet18-w25") return f(model_tag<typename z::saf_resnet18_w25>{});
  if (name == "hfgd-resnet18") return f(model_tag<typename z::hfgd_resnet18>{});
  if (name == "hfgd-resnet18-w25") return f(model_tag<typename z::hfgd_resnet18_w25>{});
  if (name == "ocr-resnet18") return f(model_tag<typename z::ocr_resnet18>{});
  if (name == "ocr-resnet18-w25") return f(model_tag<typename z::ocr_resnet18_w25>{});
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw value_error("unknown model \"" + name + "\"; expected one of: " + known);
}

template <class F>
decltype(auto) with_model(const std::string& name, F&& f) {
  return with_model_on<cpu>(name, std::forward<F>(f));
}

namespace zoo_detail {
enum class method { fcn, saf, hfgd, ocr };
template <class M>
struct method_of : std::integral_constant<method, method::fcn> {};
template <class B, int W, int Mo, int Bl>
struct method_of<saf<B, W, Mo, Bl>> : std::integral_constant<method, method::saf> {};
template <class B, int A, int C, int K, int F, int L>
struct method_of<hfgd<B, A, C, K, F, L>> : std::integral_constant<method, method::hfgd> {};
template <class B, int C, int K, int A>
struct method_of<ocr<B, C, K, A>> : std::integral_constant<method, method::ocr> {};
}  // namespace zoo_detail

// "saf", "hfgd", "ocr" or "fcn": which --options keys a model type takes.
template <class M>
std::string method_name() {
  constexpr auto m = zoo_detail::method_of<M>::value;
  return m == zoo_detail::method::saf    ? "saf"
         : m == zoo_detail::method::hfgd ? "hfgd"
         : m == zoo_detail::method::ocr  ? "ocr"
                                         : "fcn";
}

// Checks `options` for the model named `name` without building it (value_error as make_model).
inline void check_model_options(const std::string& name, const std::string& options) {
  if (name.rfind("saf-", 0) == 0) {
    parse_saf_options(options);
  } else if (name.rfind("hfgd-", 0) == 0) {
    parse_hfgd_options(options);
  } else if (name.rfind("ocr-", 0) == 0) {
    parse_ocr_options(options);
  } else {
    require<value_error>(options.find_first_not_of(" \t,") == std::string::npos, name,
                         " takes no options, got \"", options, "\"");
  }
}

// M with its method's options read from `options` (C++17 elides the copy: M need not move).
template <class M>
M make_model(int num_classes, const std::string& options, uint64_t seed = 0) {
  constexpr auto m = zoo_detail::method_of<M>::value;
  if constexpr (m == zoo_detail::method::saf) {
    return M(num_classes, parse_saf_options(options), seed);
  } else if constexpr (m == zoo_detail::method::hfgd) {
    return M(num_classes, parse_hfgd_options(options), seed);
  } else if constexpr (m == zoo_detail::method::ocr) {
    return M(num_classes, parse_ocr_options(options), seed);
  } else {
    require<value_error>(options.find_first_not_of(" \t,") == std::string::npos, M::model_name(),
                         " takes no options, got \"", options, "\"");
    return M(num_classes, seed);
  }
}

}  // namespace segkit::models
