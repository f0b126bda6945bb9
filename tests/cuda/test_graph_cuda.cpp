// The static graph on the cuda device against the same network on the cpu: same seed, same
// weights, same input; forward outputs, parameter gradients and running statistics agree.
#include "op_checker.hpp"
#include "segkit/nn/network.hpp"

using namespace segkit;
namespace nn = segkit::nn;

namespace {
using model = nn::seq<nn::conv<8, 3, 2>, nn::batch_norm, nn::relu,
                      nn::residual<nn::seq<nn::conv<8>, nn::batch_norm, nn::gelu>>,
                      nn::concat<nn::identity, nn::seq<nn::avg_pool<2>, nn::upsample<2>>>,
                      nn::max_pool<3, 1, 1>, nn::conv<3, 1, 1, 0, 1, 1, true>, nn::upsample<2>>;

template <class Device>
std::vector<host_tensor<float>> gradients(nn::network<3, model, Device>& net) {
  std::vector<host_tensor<float>> result;
  net.visit_parameters("", [&](const std::string&, nn::parameter<Device>& p) {
    result.push_back(to<cpu>(p.grad));
  });
  return result;
}
}  // namespace

TEST_CASE("cuda graph: a network on the gpu matches the same network on the cpu") {
  nn::network<3, model, cpu> on_cpu(5);
  nn::network<3, model, cuda> on_gpu(5);
  const shape input{2, 3, 16, 16};
  on_cpu.setup(input);
  on_gpu.setup(input);
  std::mt19937 rng(9);
  const auto x = testing::random_tensor(input, rng);
  const auto dy = testing::random_tensor(on_cpu.output_shape(), rng);
  const auto x_gpu = to<cuda>(x);
  const auto dy_gpu = to<cuda>(dy);

  const auto& y_cpu = on_cpu.forward(x);
  const auto y_gpu = to<cpu>(on_gpu.forward(x_gpu));
  testing::require_all_close(y_gpu, y_cpu, 1e-4f, 1e-3f, "network output");

  on_cpu.backward(dy);
  on_gpu.backward(dy_gpu);
  const auto g_cpu = gradients(on_cpu), g_gpu = gradients(on_gpu);
  REQUIRE(g_cpu.size() == g_gpu.size());
  for (size_t i = 0; i < g_cpu.size(); ++i)
    testing::require_all_close(g_gpu[i], g_cpu[i], 1e-3f, 1e-2f, "parameter gradient");
  testing::require_all_close(to<cpu>(on_gpu.graph().child<1>().running_var),
                             on_cpu.graph().child<1>().running_var, 1e-5f, 1e-4f,
                             "running variance");
}
