// segkit/nn/merge.hpp — two-input layers in the static graph:
//   merge<Left, Right, Op>   y = Op(Left(x), Right(x))
// Left and Right are ordinary recipes (identity passes x itself); Op is a two-input recipe,
// e.g. attention with queries from one branch and keys/values from the other, or OCR's gather
// of pixel features weighted by region maps. A two-input recipe provides
//   template <int LeftC, int RightC, bool LeftWantsGrad, bool RightWantsGrad, class Device>
//   struct layer {
//     static constexpr int out_channels;
//     static constexpr bool trainable, propagates_left, propagates_right;
//     shape setup(const shape& left, const shape& right, setup_context<Device>&);
//     const tensor<float, Device>& forward(const tensor<float, Device>& a, const tensor<float, Device>& b);
//     void backward(a, b, dy, tensor* da, tensor* db);   // adds; a null pointer is not wanted
//     + set_training, initialize, visit_parameters, visit_buffers as any layer
//   };
// Guarantees: as every composition, backward runs only where a gradient is wanted, and sums
// what both branches send back into x.
#pragma once
#include "segkit/nn/layer.hpp"
#include "segkit/ops/elementwise.hpp"
#include "segkit/tensor/buffer_pool.hpp"

namespace segkit::nn {

template <class Op, int LeftC, int RightC, bool LeftG, bool RightG, class D>
using bind_two = typename Op::template layer<LeftC, RightC, LeftG, RightG, D>;

template <class Left, class Right, class Op>
struct merge {
  template <int C, bool G, class D>
  class layer {
    using left_type = bind<Left, C, G, D>;
    using right_type = bind<Right, C, G, D>;
    using op_type = bind_two<Op, left_type::out_channels, right_type::out_channels,
                             output_wants_grad<left_type>, output_wants_grad<right_type>, D>;
    // The op computes a gradient for a side only if it passes one and the side wants it.
    static constexpr bool op_grad_left = op_type::propagates_left && output_wants_grad<left_type>;
    static constexpr bool op_grad_right =
        op_type::propagates_right && output_wants_grad<right_type>;

   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = op_type::out_channels;
    static constexpr bool trainable = op_type::trainable ||
                                      (left_type::trainable && op_type::propagates_left) ||
                                      (right_type::trainable && op_type::propagates_right);
    static constexpr bool propagates = (left_type::propagates && op_type::propagates_left) ||
                                       (right_type::propagates && op_type::propagates_right);
    static constexpr bool input_wants_grad = G;

    shape setup(const shape& input, setup_context<D>& context) {
      const shape left = left_.setup(input, context);
      const shape right = right_.setup(input, context);
      left_shape_ = left, right_shape_ = right;
      return op_.setup(left, right, context);
    }
    const tensor_type& forward(const tensor_type& x) {
      left_out_ = &left_.forward(x);
      right_out_ = &right_.forward(x);
      return op_.forward(*left_out_, *right_out_);
    }
    void backward(const tensor_type& x, const tensor_type& dy, tensor_type* dx) {
      auto& pool = default_buffer_pool<D>();
      typename buffer_pool<D>::lease left_grad, right_grad;
      if constexpr (op_grad_left) left_grad = pool.take_zeroed(left_shape_);
      if constexpr (op_grad_right) right_grad = pool.take_zeroed(right_shape_);
      if constexpr (has_backward_two())
        op_.backward(*left_out_, *right_out_, dy, op_grad_left ? &left_grad.get() : nullptr,
                     op_grad_right ? &right_grad.get() : nullptr);
      if constexpr (op_grad_left && has_backward<left_type>)
        left_.backward(x, left_grad.get(), computes_input_grad<left_type> ? dx : nullptr);
      left_grad.release();
      if constexpr (op_grad_right && has_backward<right_type>)
        right_.backward(x, right_grad.get(), computes_input_grad<right_type> ? dx : nullptr);
    }
    void set_training(bool training) {
      left_.set_training(training);
      right_.set_training(training);
      op_.set_training(training);
    }
    void initialize(std::mt19937_64& rng) {
      left_.initialize(rng);
      right_.initialize(rng);
      op_.initialize(rng);
    }
    template <class Visit>
    void visit_parameters(const std::string& prefix, Visit&& visit) {
      left_.visit_parameters(join_name(prefix, "left"), visit);
      right_.visit_parameters(join_name(prefix, "right"), visit);
      op_.visit_parameters(join_name(prefix, "op"), visit);
    }
    template <class Visit>
    void visit_buffers(const std::string& prefix, Visit&& visit) {
      left_.visit_buffers(join_name(prefix, "left"), visit);
      right_.visit_buffers(join_name(prefix, "right"), visit);
      op_.visit_buffers(join_name(prefix, "op"), visit);
    }
    left_type& left() { return left_; }
    right_type& right() { return right_; }
    op_type& op() { return op_; }

   private:
    static constexpr bool has_backward_two() {
      return op_type::trainable || op_grad_left || op_grad_right;
    }

    left_type left_;
    right_type right_;
    op_type op_;
    shape left_shape_, right_shape_;
    const tensor_type *left_out_ = nullptr, *right_out_ = nullptr;
  };
};

// y = a * b (element-wise, same shape): the simplest two-input op, a gate.
struct multiply_op {
  template <int LeftC, int RightC, bool LeftG, bool RightG, class D>
  class layer {
    static_assert(sizeof(channels_must_match<LeftC, RightC>) > 0);  // fires its message

   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = LeftC;
    static constexpr bool trainable = false, propagates_left = true, propagates_right = true;
    shape setup(const shape& left, const shape& right, setup_context<D>&) {
      require_same_shape("multiply_op setup", "left input", left, "right input", right);
      y_ = tensor_type(left);
      return left;
    }
    const tensor_type& forward(const tensor_type& a, const tensor_type& b) {
      ops::multiply(a, b, y_);
      return y_;
    }
    void backward(const tensor_type& a, const tensor_type& b, const tensor_type& dy,
                  tensor_type* da, tensor_type* db) {
      ops::multiply_backward(a, b, dy, da, db);
    }
    void set_training(bool) {}
    void initialize(std::mt19937_64&) {}
    template <class Visit>
    void visit_parameters(const std::string&, Visit&&) {}
    template <class Visit>
    void visit_buffers(const std::string&, Visit&&) {}

   private:
    tensor_type y_;
  };
};

}  // namespace segkit::nn
