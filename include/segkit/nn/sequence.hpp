// segkit/nn/sequence.hpp — seq<A, B, C>: layers applied one after another.
// Requires: at least one layer; each child's input channels are the previous child's output
// channels (bound at compile time). Guarantees: children are bound left to right as a flat
// list (no nesting per layer, unlike dlib's add_layer chains, so types and error messages stay
// short); backward visits children right to left and calls only those with work: it stops at
// the first child (from the right) whose input wants no gradient, so everything behind a
// stop_gradient costs nothing. Memory: the gradients between children are leased from
// default_buffer_pool() only while backward needs them, and an activation after a child whose
// backward does not read its output (conv, batch norm) overwrites that output in place.
// Children are named "0", "1", ... (nn.Sequential's names) unless wrapped in
// named<Tag, Recipe>. The caller keeps x alive between forward and backward.
#pragma once
#include <array>
#include <tuple>
#include <utility>

#include "segkit/nn/layer.hpp"
#include "segkit/ops/elementwise.hpp"
#include "segkit/tensor/buffer_pool.hpp"

namespace segkit::nn {
namespace detail {

// Binds Recipes left to right, threading channels and "input wants a gradient" through.
template <int C, bool G, class D, class... Recipes>
struct chain {
  using layers = std::tuple<>;
  static constexpr int out_channels = C;
  static constexpr bool all_propagate = true;
  static constexpr bool trainable_reached = false;  // some layer trains and its gradient arrives
};
template <int C, bool G, class D, class Recipe, class... Rest>
struct chain<C, G, D, Recipe, Rest...> {
  using head = bind<Recipe, C, G, D>;
  using tail = chain<head::out_channels, output_wants_grad<head>, D, Rest...>;
  using layers = decltype(std::tuple_cat(std::declval<std::tuple<head>>(),
                                         std::declval<typename tail::layers>()));
  static constexpr int out_channels = tail::out_channels;
  static constexpr bool all_propagate = head::propagates && tail::all_propagate;
  static constexpr bool trainable_reached =
      (head::trainable && tail::all_propagate) || tail::trainable_reached;
};

}  // namespace detail

template <class... Recipes>
struct seq {
  static_assert(sizeof...(Recipes) >= 1, "segkit::nn::seq needs at least one layer");

  template <int C, bool G, class D>
  class layer {
    using chain_type = detail::chain<C, G, D, Recipes...>;
    using children_type = typename chain_type::layers;
    using recipes = std::tuple<Recipes...>;
    static constexpr size_t count = sizeof...(Recipes);
    template <size_t I>
    using child_type = std::tuple_element_t<I, children_type>;

   public:
    using tensor_type = tensor<float, D>;
    using lease = typename buffer_pool<D>::lease;
    static constexpr int out_channels = chain_type::out_channels;
    static constexpr bool trainable = chain_type::trainable_reached;
    static constexpr bool propagates = chain_type::all_propagate;
    static constexpr bool input_wants_grad = G;
    static constexpr bool backward_reads_output =
        nn::backward_reads_output<child_type<count - 1>>::value;

    shape setup(const shape& input, setup_context<D>& context) {
      return setup_from<0>(input, context);
    }
    const tensor_type& forward(const tensor_type& x) { return forward_from<0>(x); }
    void backward(const tensor_type&, const tensor_type& dy, tensor_type* dx) {
      backward_at<count - 1>(dy, lease(), dx);
    }
    const tensor_type& output() const { return *output_; }

    template <size_t I>
    child_type<I>& child() {
      return std::get<I>(children_);
    }

    void set_training(bool training) {
      std::apply([&](auto&... child) { (child.set_training(training), ...); }, children_);
    }
    void initialize(std::mt19937_64& rng) {
      std::apply([&](auto&... child) { (child.initialize(rng), ...); }, children_);
    }
    template <class Visit>
    void visit_parameters(const std::string& prefix, Visit&& visit) {
      visit_children(prefix, [&](auto& child, const std::string& name) {
        child.visit_parameters(name, visit);
      });
    }
    template <class Visit>
    void visit_buffers(const std::string& prefix, Visit&& visit) {
      visit_children(prefix, [&](auto& child, const std::string& name) {
        child.visit_buffers(name, visit);
      });
    }

   private:
    template <class Each>
    void visit_children(const std::string& prefix, const Each& each) {
      visit_children_impl(prefix, each, std::make_index_sequence<count>{});
    }
    template <class Each, size_t... I>
    void visit_children_impl(const std::string& prefix, const Each& each,
                             std::index_sequence<I...>) {
      (each(std::get<I>(children_),
            join_name(prefix, child_name<std::tuple_element_t<I, recipes>>(I))),
       ...);
    }

    template <size_t I>
    shape setup_from(const shape& input, setup_context<D>& context) {
      if constexpr (I == count) {
        return input;
      } else {
        if constexpr (I > 0) {
          // Child I-1's output feeds only child I and child I-1's backward does not read it,
          // so an activation may overwrite it (PyTorch's inplace=True, decided here).
          if constexpr (nn::can_run_in_place<child_type<I>>::value &&
                        !nn::backward_reads_output<child_type<I - 1>>::value)
            std::get<I>(children_).run_in_place();
        }
        const shape out = std::get<I>(children_).setup(input, context);
        output_shapes_[I] = out;
        return setup_from<I + 1>(out, context);
      }
    }

    template <size_t I>
    const tensor_type& forward_from(const tensor_type& x) {
      if constexpr (I == count) {
        output_ = &x;
        return x;
      } else {
        inputs_[I] = &x;
        return forward_from<I + 1>(std::get<I>(children_).forward(x));
      }
    }

    // dy is the gradient of child I's output, held by dy_lease unless it is the caller's; dx
    // the caller's input gradient (or null). Each gradient between two children is leased from
    // the pool and given back as soon as the child that reads it is done.
    template <size_t I>
    void backward_at(const tensor_type& dy, lease dy_lease, tensor_type* dx) {
      using child = child_type<I>;
      lease child_grad;
      if constexpr (has_backward<child>) {
        tensor_type* child_dx = nullptr;
        if constexpr (computes_input_grad<child>) {
          if constexpr (I == 0) {
            child_dx = dx;
          } else {
            child_grad = default_buffer_pool<D>().take_zeroed(output_shapes_[I - 1]);
            child_dx = &child_grad.get();
          }
        }
        std::get<I>(children_).backward(*inputs_[I], dy, child_dx);
      }
      dy_lease.release();
      if constexpr (I > 0 && computes_input_grad<child>) {
        const tensor_type& grad = child_grad.get();
        backward_at<I - 1>(grad, std::move(child_grad), dx);
      }
    }

    children_type children_;
    std::array<const tensor_type*, count> inputs_{};
    const tensor_type* output_ = nullptr;
    std::array<shape, count> output_shapes_;
  };
};

}  // namespace segkit::nn
