// segkit/nn/branches.hpp — compositions that branch: residual adds, channel concatenation,
// and fork, a module with several outputs.
//   residual<Body>            y = x + Body(x)              (Body keeps channels: static_assert)
//   residual<Body, Shortcut>  y = Shortcut(x) + Body(x)    (equal output channels: static_assert)
//   concat<B1, ..., Bk>       y = cat(B1(x), ..., Bk(x)) along channels
//   fork<Trunk, H1, ..., Hk>  t = Trunk(x); outputs H1(t), ..., Hk(t) (output(k), backward with
//                             one gradient per output; a null one means "no loss on it")
// Guarantees: every branch reads x once from its caller's buffer (no copy); backward sends
// each branch only the gradient of its own output and sums what reaches x (backward adds).
// Spatial sizes that do not match at setup throw shape_error naming both shapes.
#pragma once
#include <array>
#include <tuple>
#include <vector>

#include "segkit/nn/layer.hpp"
#include "segkit/ops/concat.hpp"
#include "segkit/ops/elementwise.hpp"
#include "segkit/tensor/buffer_pool.hpp"

namespace segkit::nn {

// Whether a residual's sum may overwrite its body's output: the body's backward does not read
// that output (it ends in a conv or batch norm), as PyTorch's `out += identity`.
template <class Body>
constexpr bool sums_in_body = !backward_reads_output<Body>::value;

// The buffer setup plans for a residual's sum: none when the sum overwrites the body's output.
template <class Body, class Tensor>
Tensor plan_residual_sum(const shape& body_out) {
  return sums_in_body<Body> ? Tensor() : Tensor(body_out);
}
// out = body_out + shortcut_out, written over body_out (out then shares its storage) when
// sums_in_body<Body>, into out's own buffer otherwise.
template <class Body, class Tensor>
void residual_sum(const Tensor& body_out, const Tensor& shortcut_out, Tensor& out) {
  if constexpr (sums_in_body<Body>) {
    out = body_out;  // a handle, no copy
    ops::add_into(out, shortcut_out);
  } else {
    ops::add(shortcut_out, body_out, out);
  }
}

// y = x. A shortcut for residual<> and a placeholder where a layer is optional.
struct identity {
  template <int C, bool G, class D>
  struct layer {
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = C;
    static constexpr bool trainable = false, propagates = true, input_wants_grad = G;
    shape setup(const shape& input, setup_context<D>&) { return input; }
    const tensor_type& forward(const tensor_type& x) { return x; }
    void backward(const tensor_type&, const tensor_type& dy, tensor_type* dx) {
      ops::add_into(*dx, dy);
    }
    void set_training(bool) {}
    void initialize(std::mt19937_64&) {}
    template <class Visit>
    void visit_parameters(const std::string&, Visit&&) {}
    template <class Visit>
    void visit_buffers(const std::string&, Visit&&) {}
  };
};

template <class Body, class Shortcut = identity>
struct residual {
  template <int C, bool G, class D>
  class layer {
    using body_type = bind<Body, C, G, D>;
    using shortcut_type = bind<Shortcut, C, G, D>;
    static_assert(sizeof(channels_must_match<shortcut_type::out_channels, body_type::out_channels>) > 0);  // fires its message

   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = body_type::out_channels;
    static constexpr bool trainable = body_type::trainable || shortcut_type::trainable;
    static constexpr bool propagates = body_type::propagates || shortcut_type::propagates;
    static constexpr bool input_wants_grad = G;
    static constexpr bool backward_reads_output = false;

    shape setup(const shape& input, setup_context<D>& context) {
      const shape body_out = body_.setup(input, context);
      const shape shortcut_out = shortcut_.setup(input, context);
      require_same_shape("residual setup", "the shortcut's output", shortcut_out,
                         "the body's output", body_out);
      out_ = plan_residual_sum<body_type, tensor_type>(body_out);
      return body_out;
    }
    const tensor_type& forward(const tensor_type& x) {
      const tensor_type& body_out = body_.forward(x);
      residual_sum<body_type>(body_out, shortcut_.forward(x), out_);
      return out_;
    }
    void backward(const tensor_type& x, const tensor_type& dy, tensor_type* dx) {
      if constexpr (has_backward<body_type>)
        body_.backward(x, dy, computes_input_grad<body_type> ? dx : nullptr);
      if constexpr (has_backward<shortcut_type>)
        shortcut_.backward(x, dy, computes_input_grad<shortcut_type> ? dx : nullptr);
    }
    void set_training(bool training) {
      body_.set_training(training);
      shortcut_.set_training(training);
    }
    void initialize(std::mt19937_64& rng) {
      body_.initialize(rng);
      shortcut_.initialize(rng);
    }
    template <class Visit>
    void visit_parameters(const std::string& prefix, Visit&& visit) {
      body_.visit_parameters(join_name(prefix, "body"), visit);
      shortcut_.visit_parameters(join_name(prefix, "shortcut"), visit);
    }
    template <class Visit>
    void visit_buffers(const std::string& prefix, Visit&& visit) {
      body_.visit_buffers(join_name(prefix, "body"), visit);
      shortcut_.visit_buffers(join_name(prefix, "shortcut"), visit);
    }
    body_type& body() { return body_; }
    shortcut_type& shortcut() { return shortcut_; }

   private:
    body_type body_;
    shortcut_type shortcut_;
    tensor_type out_;
  };
};

template <class... Branches>
struct concat {
  static_assert(sizeof...(Branches) >= 1, "segkit::nn::concat needs at least one branch");

  template <int C, bool G, class D>
  class layer {
    using branches_type = std::tuple<bind<Branches, C, G, D>...>;
    using recipes = std::tuple<Branches...>;
    static constexpr size_t count = sizeof...(Branches);

   public:
    using tensor_type = tensor<float, D>;
    static constexpr int out_channels = (bind<Branches, C, G, D>::out_channels + ...);
    static constexpr bool trainable = (bind<Branches, C, G, D>::trainable || ...);
    static constexpr bool propagates = (bind<Branches, C, G, D>::propagates || ...);
    static constexpr bool input_wants_grad = G;

    shape setup(const shape& input, setup_context<D>& context) {
      std::vector<shape> shapes;
      std::apply([&](auto&... branch) { (shapes.push_back(branch.setup(input, context)), ...); },
                 branches_);
      out_ = tensor_type(ops::concat_output_shape({1}, shapes));
      parts_.assign(count, tensor_type());
      part_grads_.resize(count);
      part_grad_pointers_.assign(count, nullptr);
      part_shapes_ = shapes;
      return out_.shape();
    }
    const tensor_type& forward(const tensor_type& x) {
      forward_each(x, std::make_index_sequence<count>{});
      ops::concat({1}, parts_, out_);
      return out_;
    }
    void backward(const tensor_type& x, const tensor_type& dy, tensor_type* dx) {
      auto& pool = default_buffer_pool<D>();
      for (size_t i = 0; i < count; ++i) {
        part_grads_[i] = pool.take_zeroed(part_shapes_[i]);
        part_grad_pointers_[i] = &part_grads_[i].get();
      }
      ops::concat_backward({1}, dy, part_shapes_, part_grad_pointers_);
      backward_each(x, dx, std::make_index_sequence<count>{});
    }
    void set_training(bool training) {
      std::apply([&](auto&... branch) { (branch.set_training(training), ...); }, branches_);
    }
    void initialize(std::mt19937_64& rng) {
      std::apply([&](auto&... branch) { (branch.initialize(rng), ...); }, branches_);
    }
    template <class Visit>
    void visit_parameters(const std::string& prefix, Visit&& visit) {
      visit_each(prefix, [&](auto& b, const std::string& n) { b.visit_parameters(n, visit); },
                 std::make_index_sequence<count>{});
    }
    template <class Visit>
    void visit_buffers(const std::string& prefix, Visit&& visit) {
      visit_each(prefix, [&](auto& b, const std::string& n) { b.visit_buffers(n, visit); },
                 std::make_index_sequence<count>{});
    }
    template <size_t I>
    auto& branch() {
      return std::get<I>(branches_);
    }

   private:
    template <size_t... I>
    void forward_each(const tensor_type& x, std::index_sequence<I...>) {
      ((parts_[I] = std::get<I>(branches_).forward(x)), ...);
    }
    template <size_t... I>
    void backward_each(const tensor_type& x, tensor_type* dx, std::index_sequence<I...>) {
      (backward_one<I>(x, dx), ...);
    }
    template <size_t I>
    void backward_one(const tensor_type& x, tensor_type* dx) {
      using branch_type = std::tuple_element_t<I, branches_type>;
      if constexpr (has_backward<branch_type>)
        std::get<I>(branches_).backward(x, part_grads_[I].get(),
                                        computes_input_grad<branch_type> ? dx : nullptr);
      part_grads_[I].release();
    }
    template <class Each, size_t... I>
    void visit_each(const std::string& prefix, const Each& each, std::index_sequence<I...>) {
      (each(std::get<I>(branches_),
            join_name(prefix, child_name<std::tuple_element_t<I, recipes>>(I))),
       ...);
    }

    branches_type branches_;
    tensor_type out_;
    std::vector<tensor_type> parts_;  // handles to the branch outputs
    std::vector<typename buffer_pool<D>::lease> part_grads_;  // their gradients, in backward
    std::vector<tensor_type*> part_grad_pointers_;
    std::vector<shape> part_shapes_;
  };
};

template <class Trunk, class... Heads>
struct fork {
  static_assert(sizeof...(Heads) >= 1, "segkit::nn::fork needs at least one head");

  template <int C, bool G, class D>
  class layer {
    using trunk_type = bind<Trunk, C, G, D>;
    static constexpr int trunk_channels = trunk_type::out_channels;
    static constexpr bool trunk_output_wants_grad = output_wants_grad<trunk_type>;
    using heads_type = std::tuple<bind<Heads, trunk_channels, trunk_output_wants_grad, D>...>;
    using head_recipes = std::tuple<Heads...>;
    static constexpr bool any_head_propagates =
        (bind<Heads, trunk_channels, trunk_output_wants_grad, D>::propagates || ...);

   public:
    using tensor_type = tensor<float, D>;
    static constexpr size_t output_count = sizeof...(Heads);
    static constexpr int out_channels =
        std::tuple_element_t<0, heads_type>::out_channels;  // of output 0
    static constexpr bool trainable =
        (bind<Heads, trunk_channels, trunk_output_wants_grad, D>::trainable || ...) ||
        (trunk_type::trainable && any_head_propagates);
    static constexpr bool propagates = trunk_type::propagates && any_head_propagates;
    static constexpr bool input_wants_grad = G;

    // Setup returns output 0's shape; output_shape(k) gives the others.
    shape setup(const shape& input, setup_context<D>& context) {
      const shape trunk_out = trunk_.setup(input, context);
      trunk_shape_ = trunk_out;
      shapes_.clear();  // setup may run again for another input shape
      std::apply([&](auto&... head) { (shapes_.push_back(head.setup(trunk_out, context)), ...); },
                 heads_);
      return shapes_[0];
    }
    const shape& output_shape(size_t k) const { return shapes_.at(k); }
    // Runs the trunk and every head; returns output 0.
    const tensor_type& forward(const tensor_type& x) {
      trunk_output_ = &trunk_.forward(x);
      forward_heads(*trunk_output_, std::make_index_sequence<output_count>{});
      return *outputs_[0];
    }
    const tensor_type& output(size_t k) const { return *outputs_.at(k); }

    // One gradient per output; null = that output is not in the loss.
    void backward(const tensor_type& x, const std::array<const tensor_type*, output_count>& dys,
                  tensor_type* dx) {
      auto trunk_grad = default_buffer_pool<D>().take_zeroed(trunk_shape_);
      backward_heads(dys, trunk_grad.get(), std::make_index_sequence<output_count>{});
      if constexpr (has_backward<trunk_type>)
        trunk_.backward(x, trunk_grad.get(), computes_input_grad<trunk_type> ? dx : nullptr);
    }
    // As a single-output layer: the gradient of output 0 only.
    void backward(const tensor_type& x, const tensor_type& dy, tensor_type* dx) {
      std::array<const tensor_type*, output_count> dys{};
      dys[0] = &dy;
      backward(x, dys, dx);
    }

    void set_training(bool training) {
      trunk_.set_training(training);
      std::apply([&](auto&... head) { (head.set_training(training), ...); }, heads_);
    }
    void initialize(std::mt19937_64& rng) {
      trunk_.initialize(rng);
      std::apply([&](auto&... head) { (head.initialize(rng), ...); }, heads_);
    }
    template <class Visit>
    void visit_parameters(const std::string& prefix, Visit&& visit) {
      trunk_.visit_parameters(join_name(prefix, "trunk"), visit);
      visit_heads(prefix, [&](auto& h, const std::string& n) { h.visit_parameters(n, visit); },
                  std::make_index_sequence<output_count>{});
    }
    template <class Visit>
    void visit_buffers(const std::string& prefix, Visit&& visit) {
      trunk_.visit_buffers(join_name(prefix, "trunk"), visit);
      visit_heads(prefix, [&](auto& h, const std::string& n) { h.visit_buffers(n, visit); },
                  std::make_index_sequence<output_count>{});
    }
    trunk_type& trunk() { return trunk_; }
    template <size_t I>
    auto& head() {
      return std::get<I>(heads_);
    }

   private:
    template <size_t... I>
    void forward_heads(const tensor_type& t, std::index_sequence<I...>) {
      ((outputs_[I] = &std::get<I>(heads_).forward(t)), ...);
    }
    template <size_t... I>
    void backward_heads(const std::array<const tensor_type*, output_count>& dys,
                        tensor_type& trunk_grad, std::index_sequence<I...>) {
      (backward_head<I>(dys[I], trunk_grad), ...);
    }
    template <size_t I>
    void backward_head(const tensor_type* dy, tensor_type& trunk_grad) {
      using head_type = std::tuple_element_t<I, heads_type>;
      if constexpr (has_backward<head_type>) {
        if (dy)
          std::get<I>(heads_).backward(*trunk_output_, *dy,
                                       computes_input_grad<head_type> ? &trunk_grad : nullptr);
      }
    }
    template <class Each, size_t... I>
    void visit_heads(const std::string& prefix, const Each& each, std::index_sequence<I...>) {
      (each(std::get<I>(heads_), join_name(prefix, head_name<I>())), ...);
    }
    // A named head keeps its name; the others are "heads.0", "heads.1", ...
    template <size_t I>
    static std::string head_name() {
      using recipe = std::tuple_element_t<I, head_recipes>;
      if constexpr (has_name_tag<recipe>::value) return recipe::name_tag::value;
      else return "heads." + std::to_string(I);
    }

    trunk_type trunk_;
    heads_type heads_;
    shape trunk_shape_;
    std::vector<shape> shapes_;
    std::array<const tensor_type*, output_count> outputs_{};
    const tensor_type* trunk_output_ = nullptr;
  };
};

}  // namespace segkit::nn
