// segkit/nn/pyramid_sampling_layer.hpp — PyramidSampling as a static-graph layer:
//   pyramid_sampling<Sizes...>   [N, C, H, W] -> [N, C, 1, S], S = sum of Sizes^2
// (pyramid_sampling<1, 3, 6, 8> is ANL's / SaF's: S = 110). The op's [N, C, S] output is stored
// as NCHW with height 1 and width S, so 1x1 convolutions (SaF's K / V projections, F_upd) and
// concat over channels compose with it directly; position s along the width is size t's bin
// (oh, ow) at s = offset(t) + oh * n_t + ow, sizes in the order given (ops/pyramid_sampling.hpp).
// Requires: NCHW input, H, W >= 1. Guarantees: no parameters; setup() plans the output; forward
// and backward allocate nothing once the workspace has grown; backward adds into dx.
#pragma once
#include "segkit/nn/layer.hpp"
#include "segkit/ops/pyramid_sampling.hpp"

namespace segkit::nn {

template <int... Sizes>
struct pyramid_sampling {
  static_assert(sizeof...(Sizes) > 0, "segkit::nn::pyramid_sampling: give at least one size");
  static_assert(((Sizes > 0) && ...), "segkit::nn::pyramid_sampling: every size must be positive");
  static constexpr int positions = ((Sizes * Sizes) + ...);

  template <int C, bool G, class D>
  class layer {
   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = C;
    static constexpr bool trainable = false, propagates = true, input_wants_grad = G;

    layer() { params_.sizes = {Sizes...}; }
    shape setup(const shape& input, setup_context<D>&) {
      const shape out = ops::pyramid_sampling_output_shape(params_, input);
      y_ = tensor_type({out[0], out[1], 1, out[2]});
      return y_.shape();
    }
    const tensor_type& forward(const tensor_type& x) {
      auto flat = y_.view(flat_shape());
      ops::pyramid_sampling_forward(params_, x, flat);
      return y_;
    }
    void backward(const tensor_type&, const tensor_type& dy, tensor_type* dx) {
      ops::pyramid_sampling_backward(params_, dy.view(flat_shape()), *dx);
    }
    void set_training(bool) {}
    void initialize(std::mt19937_64&) {}
    template <class Visit>
    void visit_parameters(const std::string&, Visit&&) {}
    template <class Visit>
    void visit_buffers(const std::string&, Visit&&) {}
    const ops::pyramid_sampling_params& params() const { return params_; }

   private:
    shape flat_shape() const { return shape{y_.size(0), y_.size(1), y_.size(3)}; }
    ops::pyramid_sampling_params params_;
    tensor_type y_;
  };
};

}  // namespace segkit::nn
