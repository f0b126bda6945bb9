#include <algorithm>
#include <set>

#include "layer_checker.hpp"

using namespace segkit;
namespace nn = segkit::nn;
using testing::layer_case;

TEST_CASE("graph: every layer type passes the generic checker") {
  testing::check_op(layer_case<nn::conv<5, 3, 2>, 3>("conv 3x3 stride 2", {2, 3, 7, 6}));
  testing::check_op(layer_case<nn::conv<4, 3, 1, 2, 2, 2, true>, 4>("conv dilated grouped bias",
                                                                   {1, 4, 6, 7}));
  testing::check_op(layer_case<nn::batch_norm, 3>("batch norm train", {2, 3, 4, 5}));
  testing::check_op(layer_case<nn::batch_norm, 3>("batch norm eval", {2, 3, 4, 5}, false));
  testing::check_op(layer_case<nn::gelu, 2>("gelu", {2, 2, 3, 3}));
  testing::check_op(layer_case<nn::sigmoid, 2>("sigmoid", {1, 2, 3, 3}));
  testing::check_op(layer_case<nn::avg_pool<2>, 2>("avg pool", {2, 2, 6, 5}));
  {
    // Max pooling needs inputs without near-ties: a shuffled ramp, spacing 0.04 > 2 * step.
    auto test = layer_case<nn::max_pool<3, 2, 1>, 2>("max pool", {1, 2, 7, 7});
    auto& x = test.inputs[0];
    std::vector<float> ramp(static_cast<size_t>(x.numel()));
    for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = -1.f + 0.04f * float(i);
    std::shuffle(ramp.begin(), ramp.end(), std::mt19937(4));
    std::copy(ramp.begin(), ramp.end(), x.data());
    testing::check_op(test);
  }
  testing::check_op(layer_case<nn::adaptive_avg_pool<3, 2>, 2>("adaptive pool", {2, 2, 7, 5}));
  testing::check_op(layer_case<nn::upsample<2>, 2>("bilinear upsample", {1, 2, 3, 4}));
  testing::check_op(layer_case<nn::upsample<3, false>, 2>("nearest upsample", {1, 2, 3, 2}));
  testing::check_op(layer_case<nn::dropout<30>, 2>("dropout (eval)", {1, 2, 3, 3}, false));
  testing::check_op(layer_case<nn::identity, 2>("identity", {1, 2, 3, 3}));
}

TEST_CASE("graph: composed networks pass the generic checker") {
  using block = nn::residual<nn::seq<nn::conv<4>, nn::batch_norm, nn::tanh_activation, nn::conv<4>>>;
  testing::check_op(layer_case<block, 4>("residual block", {2, 4, 5, 5}));

  using projected = nn::residual<nn::seq<nn::conv<6, 3, 2>, nn::batch_norm>,
                                 nn::seq<nn::conv<6, 1, 2>, nn::batch_norm>>;
  testing::check_op(layer_case<projected, 3>("residual with projection", {2, 3, 6, 6}));

  using branches = nn::concat<nn::conv<2, 1>, nn::seq<nn::conv<3>, nn::sigmoid>, nn::identity>;
  testing::check_op(layer_case<branches, 2>("concat of branches", {2, 2, 4, 5}));
  static_assert(nn::bind<branches, 2, true, cpu>::out_channels == 2 + 3 + 2);

  using deep = nn::seq<nn::conv<4, 3, 2>, nn::batch_norm, nn::gelu, block, nn::avg_pool<2>,
                       nn::upsample<2>, nn::conv<3, 1, 1, 0, 1, 1, true>>;
  testing::check_op(layer_case<deep, 3>("sequence of everything", {2, 3, 8, 8}));
}

TEST_CASE("graph: two-input layers through merge") {
  using gated = nn::merge<nn::conv<4>, nn::seq<nn::conv<4>, nn::sigmoid>, nn::multiply_op>;
  testing::check_op(layer_case<gated, 3>("gated conv", {2, 3, 5, 4}));
  using half_stopped =
      nn::merge<nn::identity, nn::seq<testing::probe, nn::stop_gradient>, nn::multiply_op>;
  using bound = nn::bind<half_stopped, 3, false, cpu>;
  static_assert(!bound::trainable);  // the probe sits behind the stop
  nn::network<3, nn::seq<nn::conv<3>, half_stopped>> net(4);
  net.setup({1, 3, 4, 4});
  std::mt19937 rng(6);
  const auto x = testing::random_tensor({1, 3, 4, 4}, rng);
  testing::probe_backward_calls() = 0;
  net.forward(x);
  net.backward(testing::random_tensor(net.output_shape(), rng));
  CHECK(testing::probe_backward_calls() == 0);
}

namespace {
struct class_kernels {
  static constexpr const char* value = "classifier";
  static constexpr int in_channels = 4, out_channels = 3, kernel = 1;
  static constexpr bool bias = true;
};
SEGKIT_NAME(conv1);
SEGKIT_NAME(bn1);
}  // namespace

TEST_CASE("graph: a stop-gradient removes all backward work behind it") {
  using stopped = nn::seq<testing::probe, nn::conv<4, 1>, nn::stop_gradient, nn::conv<2, 1>>;
  using bound = nn::bind<stopped, 3, false, cpu>;
  // Decided at compile time: the probe and the first conv are behind the stop.
  static_assert(bound::trainable);
  static_assert(!bound::propagates);

  nn::network<3, stopped> net(7);
  net.setup({2, 3, 4, 4});
  std::mt19937 rng(5);
  const auto x = testing::random_tensor({2, 3, 4, 4}, rng);
  const auto dy = testing::random_tensor(net.output_shape(), rng);
  testing::probe_backward_calls() = 0;
  net.forward(x);
  net.backward(dy);
  CHECK(testing::probe_backward_calls() == 0);

  auto& graph = net.graph();
  const auto& behind = graph.child<1>().weight.grad;
  for (int64_t i = 0; i < behind.numel(); ++i) REQUIRE(behind[i] == 0.f);  // exactly zero
  const auto& probe_grad = graph.child<0>().scale.grad;
  for (int64_t i = 0; i < probe_grad.numel(); ++i) REQUIRE(probe_grad[i] == 0.f);
  const auto& after = graph.child<3>().weight.grad;
  double norm = 0;
  for (int64_t i = 0; i < after.numel(); ++i) norm += std::abs(after[i]);
  CHECK(norm > 0);

  // Without the stop, the same probe runs its backward once.
  nn::network<3, nn::seq<testing::probe, nn::conv<4, 1>, nn::conv<2, 1>>> open(7);
  open.setup({2, 3, 4, 4});
  testing::probe_backward_calls() = 0;
  open.forward(x);
  open.backward(dy);
  CHECK(testing::probe_backward_calls() == 1);
}

TEST_CASE("graph: a shared weight gets exactly the gradient of its unstopped use") {
  // Trunk features feed the owner of W (coarse path) and, after one more conv, a use of W
  // whose weight gradient is stopped (fine path) — HFGD's class kernels.
  using coarse = nn::shared_conv_owner<class_kernels>;
  using fine = nn::seq<nn::conv<4, 3>, nn::shared_conv_use<class_kernels, true>>;
  using graph = nn::fork<nn::seq<nn::conv<4, 3>, nn::relu>, coarse, fine>;
  nn::network<2, graph> net(11);
  net.setup({2, 2, 5, 5});
  std::mt19937 rng(8);
  const auto x = testing::random_tensor({2, 2, 5, 5}, rng);
  const auto dy_coarse = testing::random_tensor(net.graph().output_shape(0), rng);
  const auto dy_fine = testing::random_tensor(net.graph().output_shape(1), rng);

  auto weight_grad = [&](const host_tensor<float>* coarse_grad, const host_tensor<float>* fine_grad) {
    net.zero_grad();
    net.forward(x);
    net.backward({coarse_grad, fine_grad});
    return net.graph().head<0>().weight.grad.clone();
  };
  const auto both = weight_grad(&dy_coarse, &dy_fine);
  const auto coarse_only = weight_grad(&dy_coarse, nullptr);
  for (int64_t i = 0; i < both.numel(); ++i) REQUIRE(both[i] == coarse_only[i]);
  const auto fine_only = weight_grad(nullptr, &dy_fine);
  for (int64_t i = 0; i < fine_only.numel(); ++i) REQUIRE(fine_only[i] == 0.f);
  // The stopped use still passes the gradient to the conv in front of it.
  const auto& fine_conv_grad = net.graph().head<1>().child<0>().weight.grad;
  double norm = 0;
  for (int64_t i = 0; i < fine_conv_grad.numel(); ++i) norm += std::abs(fine_conv_grad[i]);
  CHECK(norm > 0);

  // Setting up again for another input size re-plans every output.
  net.setup({1, 2, 7, 6});
  CHECK(net.graph().output_shape(0) == shape{1, 3, 7, 6});
  CHECK(net.graph().output_shape(1) == shape{1, 3, 7, 6});
  net.setup({2, 2, 5, 5});

  // Names: W is visited once, under the owner's place in the graph.
  std::vector<std::string> names;
  net.visit_parameters("", [&](const std::string& n, nn::parameter<cpu>&) { names.push_back(n); });
  CHECK(names == std::vector<std::string>{"trunk.0.weight", "heads.0.weight", "heads.0.bias",
                                          "heads.1.0.weight"});
}

TEST_CASE("graph: an unstopped second use adds its gradient (finite differences)") {
  using graph = nn::seq<nn::shared_conv_owner<class_kernels>, nn::conv<4, 1>,
                        nn::shared_conv_use<class_kernels, false>>;
  static_assert(nn::bind<graph, 4, true, cpu>::out_channels == 3);
  testing::check_op(layer_case<graph, 4>("weight used twice", {1, 4, 3, 3}));
}

TEST_CASE("graph: parameters and buffers carry PyTorch state-dict names") {
  using block = nn::seq<nn::named<conv1, nn::conv<4>>, nn::named<bn1, nn::batch_norm>, nn::relu,
                        nn::conv<4, 1, 1, 0, 1, 1, true>>;
  nn::network<3, nn::seq<block, nn::residual<nn::seq<nn::conv<4>>>>> net;
  std::vector<std::string> parameters, buffers;
  net.visit_parameters("model", [&](const std::string& n, nn::parameter<cpu>&) { parameters.push_back(n); });
  struct collect {
    std::vector<std::string>& names;
    void operator()(const std::string& n, host_tensor<float>&) const { names.push_back(n); }
    void operator()(const std::string& n, host_tensor<int64_t>&) const { names.push_back(n); }
  };
  net.visit_buffers("model", collect{buffers});
  CHECK(parameters == std::vector<std::string>{"model.0.conv1.weight", "model.0.bn1.weight",
                                               "model.0.bn1.bias", "model.0.3.weight",
                                               "model.0.3.bias", "model.1.body.0.weight"});
  CHECK(buffers == std::vector<std::string>{"model.0.bn1.running_mean", "model.0.bn1.running_var",
                                            "model.0.bn1.num_batches_tracked"});
  CHECK(net.parameter_count() == 4 * 3 * 9 + 4 + 4 + 4 * 4 + 4 + 4 * 4 * 9);
}

TEST_CASE("graph: after setup, training steps allocate nothing") {
  using model = nn::seq<nn::conv<8, 3, 2>, nn::batch_norm, nn::relu,
                        nn::residual<nn::seq<nn::conv<8>, nn::batch_norm, nn::relu>>,
                        nn::concat<nn::conv<4, 1>, nn::seq<nn::max_pool<3, 1, 1>, nn::conv<4, 1>>>,
                        nn::adaptive_avg_pool<4>, nn::upsample<2>, nn::dropout<10>,
                        nn::conv<3, 1, 1, 0, 1, 1, true>>;
  nn::network<3, model> net(3);
  net.setup({2, 3, 16, 16});
  std::mt19937 rng(1);
  const auto x = testing::random_tensor({2, 3, 16, 16}, rng);
  const auto dy = testing::random_tensor(net.output_shape(), rng);
  const long long before = allocations<cpu>().total.load();
  for (int step = 0; step < 4; ++step) {
    net.zero_grad();
    net.forward(x);
    net.backward(dy);
    net.visit_parameters("", [](const std::string&, nn::parameter<cpu>& p) {
      for (int64_t i = 0; i < p.value.numel(); ++i) p.value[i] -= 0.01f * p.grad[i];
    });
  }
  CHECK(allocations<cpu>().total.load() - before == 0);
}

TEST_CASE("graph: setup restores state; backward accumulates; eval freezes statistics") {
  using model = nn::seq<nn::conv<4>, nn::batch_norm, nn::relu, nn::conv<2, 1>>;
  nn::network<3, model> net(5);
  net.setup({2, 3, 5, 5});
  auto& bn = net.graph().child<1>();
  for (int64_t c = 0; c < 4; ++c) {
    REQUIRE(bn.running_mean[c] == 0.f);
    REQUIRE(bn.running_var[c] == 1.f);
  }
  REQUIRE(bn.num_batches_tracked[0] == 0);

  std::mt19937 rng(2);
  const auto x = testing::random_tensor({2, 3, 5, 5}, rng);
  const auto dy = testing::random_tensor(net.output_shape(), rng);
  net.forward(x);
  net.backward(dy);
  const auto once = net.graph().child<0>().weight.grad.clone();
  net.backward(dy);
  const auto& twice = net.graph().child<0>().weight.grad;
  for (int64_t i = 0; i < once.numel(); ++i) REQUIRE(twice[i] == Approx(2 * once[i]).margin(1e-6));
  CHECK(bn.num_batches_tracked[0] == 1);

  const auto mean_after_train = bn.running_mean.clone();
  net.eval();
  const auto eval_out = net.forward(x).clone();
  for (int64_t c = 0; c < 4; ++c) REQUIRE(bn.running_mean[c] == mean_after_train[c]);
  CHECK(bn.num_batches_tracked[0] == 1);
  net.train();
  const auto train_out = net.forward(x).clone();
  bool differs = false;
  for (int64_t i = 0; i < eval_out.numel(); ++i) differs |= eval_out[i] != train_out[i];
  CHECK(differs);
}

TEST_CASE("graph: wrong shapes are reported with both shapes") {
  nn::network<3, nn::seq<nn::conv<4>>> net;
  CHECK_THROWS_WITH(net.setup({2, 4, 8, 8}), Catch::Contains("[2, 4, 8, 8]") &&
                                                 Catch::Contains("[N, 3, H, W]"));
  net.setup({2, 3, 8, 8});
  host_tensor<float> wrong({2, 3, 9, 8});
  CHECK_THROWS_WITH(net.forward(wrong),
                    Catch::Contains("[2, 3, 9, 8]") && Catch::Contains("[2, 3, 8, 8]"));
  using mismatched_sizes = nn::residual<nn::seq<nn::conv<3, 3, 2>>>;  // halves H and W
  nn::network<3, mismatched_sizes> shrinking;
  CHECK_THROWS_WITH(shrinking.setup({1, 3, 8, 8}),
                    Catch::Contains("[1, 3, 8, 8]") && Catch::Contains("[1, 3, 4, 4]"));
}
