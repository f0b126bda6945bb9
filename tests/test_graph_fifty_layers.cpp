// A 50-layer network type: its build time is the figure docs/benchmarks.md reports
// ("a network of 50 layers compiles in under a minute"), and it must train.
#include "layer_checker.hpp"

using namespace segkit;
namespace nn = segkit::nn;

namespace {
using unit = nn::seq<nn::conv<8>, nn::batch_norm, nn::relu>;         // 3 layers
using block = nn::residual<nn::seq<nn::conv<8>, nn::batch_norm, nn::relu, nn::conv<8>,
                                   nn::batch_norm>>;                  // 5 layers + add
// 2 + 3 + 8 blocks x 5 + 1 + 3 + 1 = 50 leaf layers.
using fifty = nn::seq<nn::conv<8, 3, 2>, nn::relu, unit, block, block, block, block, block, block,
                      block, block, nn::max_pool<2>, unit, nn::conv<4, 1, 1, 0, 1, 1, true>>;
}  // namespace

TEST_CASE("graph: a 50-layer network sets up, runs and learns") {
  nn::network<3, fifty> net(1);
  net.setup({2, 3, 16, 16});
  CHECK(net.output_shape() == shape{2, 4, 4, 4});
  std::mt19937 rng(1);
  const auto x = testing::random_tensor({2, 3, 16, 16}, rng);
  const auto target = testing::random_tensor(net.output_shape(), rng);
  // Squared error to a fixed target must fall under plain gradient descent.
  auto step = [&] {
    const auto& y = net.forward(x);
    host_tensor<float> dy(y.shape());
    double loss = 0;
    for (int64_t i = 0; i < y.numel(); ++i) {
      dy[i] = y[i] - target[i];
      loss += 0.5 * double(dy[i]) * dy[i];
    }
    net.zero_grad();
    net.backward(dy);
    net.visit_parameters("", [](const std::string&, nn::parameter<cpu>& p) {
      for (int64_t i = 0; i < p.value.numel(); ++i) p.value[i] -= 0.02f * p.grad[i];
    });
    return loss;
  };
  const double first = step();
  double last = first;
  for (int i = 0; i < 20; ++i) last = step();
  CHECK(last < 0.8 * first);
}
