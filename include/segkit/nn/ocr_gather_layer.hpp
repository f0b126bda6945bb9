// segkit/nn/ocr_gather_layer.hpp — OCR's spatial gather as a two-input op for nn::merge:
//   merge<PixelBranch, RegionBranch, ocr_gather>
// left = pixel features [N, C_f, H, W], right = soft object regions (logits) [N, K, H, W];
// output [N, C_f, K, 1] (out_channels = C_f), the authors' SpatialGather_Module layout, so
// the object-attention key / value 1x1 convs run on it directly. It is the op's [N, K, C_f]
// transposed (ops/ocr_gather.hpp): y_layer[n, c, k, 0] = y_op[n, k, c].
// Requires: equal N, H, W on both sides (checked at setup, naming both shapes).
// Guarantees: no parameters; setup() plans the probabilities [N, K, H*W] (kept for backward),
// the gather output and its gradient; backward adds into whichever side wants a gradient and
// skips the work for the other (d regions needs G = dy F, d features does not).
#pragma once
#include "segkit/nn/layer.hpp"
#include "segkit/ops/ocr_gather.hpp"
#include "segkit/ops/permute.hpp"

namespace segkit::nn {

struct ocr_gather {
  template <int LeftC, int RightC, bool LeftG, bool RightG, class D>
  class layer {
   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = LeftC;
    static constexpr bool trainable = false, propagates_left = true, propagates_right = true;

    shape setup(const shape& features, const shape& regions, setup_context<D>&) {
      const shape gathered = ops::ocr_gather_output_shape(regions, features);  // [N, K, C]
      probabilities_ = tensor_type(ops::ocr_gather_probabilities_shape(regions));
      gathered_ = tensor_type(gathered);
      if constexpr (LeftG || RightG) gathered_grad_ = tensor_type(gathered);
      y_ = tensor_type({gathered[0], gathered[2], gathered[1], 1});
      return y_.shape();
    }
    const tensor_type& forward(const tensor_type& features, const tensor_type& regions) {
      ops::ocr_gather_forward(regions, features, probabilities_, gathered_);
      auto transposed = y_.view({y_.size(0), y_.size(1), y_.size(2)});
      ops::permute(transpose_, gathered_, transposed);
      return y_;
    }
    void backward(const tensor_type& features, const tensor_type&, const tensor_type& dy,
                  tensor_type* d_features, tensor_type* d_regions) {
      gathered_grad_.zero();
      ops::permute(transpose_, dy.view({dy.size(0), dy.size(1), dy.size(2)}), gathered_grad_);
      ops::ocr_gather_backward(features, probabilities_, gathered_grad_, d_regions, d_features);
    }
    void set_training(bool) {}
    void initialize(std::mt19937_64&) {}
    template <class Visit>
    void visit_parameters(const std::string&, Visit&&) {}
    template <class Visit>
    void visit_buffers(const std::string&, Visit&&) {}

   private:
    const ops::permute_params transpose_{{0, 2, 1}};
    tensor_type probabilities_, gathered_, gathered_grad_, y_;
  };
};

}  // namespace segkit::nn
