// segkit/tensor/mac_counter.hpp — counts the multiply-accumulates (MACs) of one forward.
// Provides: mac_count_scope (a scoped guard: counting is on while one lives on this thread),
// add_macs(n) (what an op's forward entry point calls), mac_counting(), the generic
// count_macs(net_or_model, input tensor or shape) and format_cost(model_cost, shape).
//
// Convention (fvcore's, the one torchvision's and mmsegmentation's tables use): one MAC is one
// multiply-add of a product; FLOPs = 2 x MACs. What is counted, per forward call:
//   conv2d           N * Cout * Ho * Wo * (Cin / groups) * kh * kw   (bias not counted)
//   matmul           batch * M * N * K   (broadcast batch: the larger one)
//   attention2d      N * L * S * (d + d_v)          (Q.K scores + P.V; softmax not counted)
//   axial_attention  2 * N * C * H * W * (H + W)    (both axes, scores + values)
//   ocr_gather       N * K * C * H * W              (P.F; the softmax is not counted)
//   pyramid_sampling N * C * H * W per pooled size  (fvcore counts adaptive_avg_pool2d as one
//                                                    op per input element)
// Not counted (as fvcore's conv/linear-only tables): batch norm, activations, softmax, resize,
// elementwise ops, losses, backward passes. A torchvision ResNet-18 at 224 x 224 is 1.814 GMACs.
// Requires nothing of the ops beyond the one add_macs call in their forward entry points (cpu
// and cuda). Guarantees: when no scope is alive on the calling thread, add_macs is one
// thread-local load and a branch; scopes nest (an outer scope also sees an inner scope's MACs);
// the count is per thread (ops add on the thread that calls the forward entry point, before
// any parallel region), so concurrent threads do not mix their counts.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>
#include <utility>

#include "segkit/models/model.hpp"
#include "segkit/tensor/shape.hpp"
#include "segkit/tensor/tensor.hpp"

namespace segkit {

namespace mac_detail {
struct counter_state {
  int64_t total = 0;  // MACs added while at least one scope was alive
  int depth = 0;      // live scopes on this thread
};
inline counter_state& state() {
  thread_local counter_state s;
  return s;
}
}  // namespace mac_detail

// True while a mac_count_scope lives on this thread.
inline bool mac_counting() { return mac_detail::state().depth > 0; }

// Called by ops at their forward entry points. No effect outside a scope.
inline void add_macs(int64_t macs) {
  mac_detail::counter_state& s = mac_detail::state();
  if (s.depth > 0) s.total += macs;
}

// Counting is on from construction to destruction; macs() is what was added in between.
// An `isolated` scope hides its MACs from the scopes around it (network::setup counts its
// warm-up forward this way, so a setup inside a caller's scope does not inflate its count).
class mac_count_scope {
 public:
  struct isolated_t {};
  static constexpr isolated_t isolated{};

  mac_count_scope() : origin_(mac_detail::state().total), start_(origin_) {
    ++mac_detail::state().depth;
  }
  explicit mac_count_scope(isolated_t) : mac_count_scope() { isolated_ = true; }
  ~mac_count_scope() {
    mac_detail::counter_state& s = mac_detail::state();
    --s.depth;
    if (isolated_) s.total = origin_;
  }
  mac_count_scope(const mac_count_scope&) = delete;
  mac_count_scope& operator=(const mac_count_scope&) = delete;
  int64_t macs() const { return mac_detail::state().total - start_; }
  void reset() { start_ = mac_detail::state().total; }

 private:
  int64_t origin_, start_;
  bool isolated_ = false;
};

// MACs of one forward of `net` (an nn::network or a model of models/model.hpp: setup, forward,
// training, train, eval, input_shape) on `input`: runs the forward in eval mode under a scope,
// then restores the training mode. Calls setup(input.shape()) first when the net is set up for
// another shape (the net then stays set up for this one).
template <class Net, class Tensor>
int64_t count_macs(Net& net, const Tensor& input) {
  if (!(net.input_shape() == input.shape())) net.setup(input.shape());
  const bool was_training = net.training();
  net.eval();
  int64_t macs = 0;
  try {
    mac_count_scope scope;
    net.forward(input);
    macs = scope.macs();
  } catch (...) {
    if (was_training) net.train();
    throw;
  }
  if (was_training) net.train();
  return macs;
}

namespace mac_detail {
template <class Net, class = void>
struct input_tensor_of {
  using type = tensor<float, cpu>;
};
template <class Net>
struct input_tensor_of<Net, std::void_t<typename Net::tensor_type>> {
  using type = typename Net::tensor_type;
};

// {value scaled to < 1000, SI prefix}: 1.82e9 -> {1.82, "G"}.
inline std::pair<double, const char*> si(double value) {
  static const char* const prefixes[] = {"", "K", "M", "G", "T", "P"};
  int k = 0;
  while (k < 5 && value >= 1000.0) {
    value /= 1000.0;
    ++k;
  }
  return {value, prefixes[k]};
}
inline std::string number(const std::pair<double, const char*>& scaled) {
  char text[32];
  std::snprintf(text, sizeof text, scaled.second[0] == '\0' ? "%.0f" : "%.2f", scaled.first);
  return text;
}
}  // namespace mac_detail

// The same on a tensor of zeros of the `input` shape (MACs do not depend on the values); the
// tensor type is Net::tensor_type when the net has one, else a host tensor.
template <class Net>
int64_t count_macs(Net& net, const shape& input) {
  using tensor_type = typename mac_detail::input_tensor_of<Net>::type;
  const tensor_type zeros = tensor_type::zeros(input);
  return count_macs(net, zeros);
}

// "11.69 M parameters, 1.81 GMACs (3.63 GFLOPs) per forward at [1, 3, 224, 224]"; counts below
// 1000 print whole, larger ones with two decimals and an SI prefix (K, M, G, T, P).
inline std::string format_cost(const models::model_cost& cost, const shape& input) {
  const auto params = mac_detail::si(double(cost.parameters));
  const auto macs = mac_detail::si(double(cost.macs));
  const auto flops = mac_detail::si(2.0 * double(cost.macs));
  const std::string prefix = params.second;
  return mac_detail::number(params) + (prefix.empty() ? "" : " " + prefix) + " parameters, " +
         mac_detail::number(macs) + " " + macs.second + "MACs (" + mac_detail::number(flops) +
         " " + flops.second + "FLOPs) per forward at " + input.to_string();
}

}  // namespace segkit
