// segkit/models/zoo.hpp — the runtime name -> model type switch every tool shares.
// Provides: models::model_tag<M>, model_names(), with_model(name, f).
//   with_model("fcn-resnet18", [&](auto tag) { using M = typename decltype(tag)::type; ... });
// Calls f(model_tag<M>{}) for the model type M named; value_error listing the names otherwise.
// Every name here is instantiated by every tool that calls with_model, so the set is small on
// purpose (compile time): add a model only when a tool needs it. Models run on the cpu device;
// with_model_on<Device> picks the same set for another device.
//   fcn-resnet18      FCN (2 convs of 128, concat input) + aux head (64) on ResNet-18, output
//                     stride 8 (mmseg's fcn_r18-d8 layout, torchvision's ResNet-18 backbone)
//   fcn-resnet50      FCN (512) + aux head (256) on ResNet-50 v1.5, output stride 8 (fcn_r50-d8)
//   fcn-resnet18-w25  a quarter-width ResNet-18 FCN (32 / 16 channels): CPU smoke runs and tests
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "segkit/models/fcn.hpp"
#include "segkit/models/resnet.hpp"
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
};

inline std::vector<std::string> model_names() {
  return {"fcn-resnet18", "fcn-resnet50", "fcn-resnet18-w25"};
}

template <class Device, class F>
decltype(auto) with_model_on(const std::string& name, F&& f) {
  using z = zoo_models<Device>;
  if (name == "fcn-resnet18") return f(model_tag<typename z::fcn_resnet18>{});
  if (name == "fcn-resnet50") return f(model_tag<typename z::fcn_resnet50>{});
  if (name == "fcn-resnet18-w25") return f(model_tag<typename z::fcn_resnet18_w25>{});
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw value_error("unknown model \"" + name + "\"; expected one of: " + known);
}

template <class F>
decltype(auto) with_model(const std::string& name, F&& f) {
  return with_model_on<cpu>(name, std::forward<F>(f));
}

}  // namespace segkit::models
