// The pool of short-lived gradient buffers (tensor/buffer_pool.hpp) and what the graph gains
// from it: leases are reused by exact size, a repeated backward allocates nothing, and a deep
// sequence holds a few gradients at once instead of one per activation.
#include <catch2/catch.hpp>

#include "layer_checker.hpp"
#include "segkit/tensor/buffer_pool.hpp"

using namespace segkit;
namespace nn = segkit::nn;

TEST_CASE("buffer_pool: leases take the lowest gap; the arena grows when none is alive") {
  buffer_pool<cpu> pool;
  const float* arena_start = nullptr;
  auto pass = [&](bool check_places) {
    auto a = pool.take({2, 3, 4});  // 24 floats -> 32 (64-byte steps) at offset 0
    auto b = pool.take({20});       // offset 32
    CHECK(a.get().shape() == shape{2, 3, 4});
    CHECK(pool.leased_count() == 2);
    a.release();
    auto c = pool.take({4, 4});  // fits the gap a left: offset 0 again
    auto d = pool.take({40});    // beyond b: offset 64
    if (check_places) {
      CHECK(c.get().data() == arena_start);
      CHECK(b.get().data() == arena_start + 32);
      CHECK(d.get().data() == arena_start + 64);
    }
  };
  pass(false);  // the first pass: leases beyond the (empty) arena get blocks of their own
  CHECK(pool.leased_count() == 0);
  CHECK(pool.high_water_bytes() == 112 * sizeof(float));
  CHECK(pool.held_bytes() == 112 * sizeof(float));  // the arena, grown when the pass ended
  {
    auto probe = pool.take({1});
    arena_start = probe.get().data();
  }
  const long long before = allocations<cpu>().total.load();
  pass(true);
  pass(true);
  CHECK(allocations<cpu>().total.load() == before);
  pool.release_idle();
  CHECK(pool.held_bytes() == 0);
}

TEST_CASE("buffer_pool: a moved lease keeps its tensor where it was; zeroed leases are zero") {
  buffer_pool<cpu> pool;
  pool.take({8});  // grows the arena to 16 floats once it is given back
  auto a = pool.take({8});
  a.get().fill(3.f);
  tensor<float, cpu>* address = &a.get();
  const float* data = a.get().data();
  buffer_pool<cpu>::lease b = std::move(a);
  CHECK_FALSE(a);
  CHECK(&b.get() == address);
  CHECK(b.get()[7] == 3.f);
  b.release();
  CHECK(pool.leased_count() == 0);
  auto c = pool.take_zeroed({2, 4});  // the same place, dirty before
  CHECK(c.get().data() == data);
  for (int64_t i = 0; i < 8; ++i) CHECK(c.get()[i] == 0.f);
  buffer_pool<cpu>::lease d = pool.take({3});
  d = std::move(c);  // d's own lease goes back first
  CHECK(pool.leased_count() == 1);
}

TEST_CASE("buffer_pool: a repeated pattern of nested leases allocates nothing the second time") {
  buffer_pool<cpu> pool;
  auto pass = [&] {
    auto a = pool.take({100});
    auto b = pool.take({50});
    a.release();
    auto c = pool.take({100});  // does not fit the 100-float gap before b? it does: offset 0
    auto d = pool.take({100});
    b.release();
    auto e = pool.take({50});
    auto f = pool.take({7});
  };
  pass();
  const long long before = allocations<cpu>().total.load();
  const size_t held = pool.held_bytes();
  pass();
  pass();
  CHECK(allocations<cpu>().total.load() == before);
  CHECK(pool.held_bytes() == held);
  CHECK(pool.held_bytes() >= pool.peak_leased_bytes());
}

namespace {
// Bytes planned by setting a network up, not counting what the warm-up left in the pool.
template <class Net>
long long planned_bytes(Net& net, const shape& input) {
  auto& pool = default_buffer_pool<cpu>();
  const long long pool_before = static_cast<long long>(pool.held_bytes());
  const long long before = allocations<cpu>().live_bytes.load();
  net.setup(input);
  const long long pool_growth = static_cast<long long>(pool.held_bytes()) - pool_before;
  return allocations<cpu>().live_bytes.load() - before - pool_growth;
}
}  // namespace

TEST_CASE("graph memory: an activation after conv or batch norm overwrites it in place") {
  const shape input{2, 3, 16, 16};
  const long long activation = 2 * 8 * 16 * 16 * sizeof(float);
  nn::network<3, nn::seq<nn::conv<8>, nn::batch_norm, nn::relu, nn::conv<8>>> relu_net(1);
  nn::network<3, nn::seq<nn::conv<8>, nn::batch_norm, nn::gelu, nn::conv<8>>> gelu_net(1);
  // A first network grows the workspaces every network shares, so neither count has them.
  nn::network<3, nn::seq<nn::conv<8>, nn::batch_norm, nn::gelu, nn::conv<8>>> first(1);
  planned_bytes(first, input);
  // GELU's slope needs its input, so it keeps an output of its own; ReLU does not.
  CHECK(planned_bytes(gelu_net, input) - planned_bytes(relu_net, input) == activation);

  // In place or not, the gradients are those finite differences give.
  using in_place_relu = nn::seq<nn::conv<4>, nn::batch_norm, nn::relu, nn::conv<3>>;
  testing::check_op(testing::layer_case<in_place_relu, 3>("conv, batch norm, in-place relu, conv",
                                                          {2, 3, 5, 5}));
  testing::check_op(testing::layer_case<nn::seq<nn::conv<4>, nn::relu6, nn::conv<3>>, 3>(
      "conv, in-place relu6, conv", {2, 3, 5, 5}));
}

TEST_CASE("graph memory: a deep sequence leases a few gradients, not one per activation") {
  using block = nn::seq<nn::conv<8>, nn::batch_norm, nn::relu>;
  using deep = nn::seq<block, block, block, block, block, block, block, block>;
  nn::network<8, deep> net(2);
  auto& pool = default_buffer_pool<cpu>();
  pool.release_idle();
  const shape input{2, 8, 16, 16};
  net.setup(input);  // the warm-up's backward fills the pool
  const size_t activation = 2 * 8 * 16 * 16 * sizeof(float);
  // One gradient per activation would be 8 x 3 = 24 activations' worth. Alive at once: the
  // outer sequence's dy and dx around one block, and inside it the batch norm's dy and dx.
  CHECK(pool.held_bytes() <= 4 * activation);

  std::mt19937 rng(3);
  const auto x = testing::random_tensor(input, rng);
  const auto dy = testing::random_tensor(net.output_shape(), rng);
  const long long before = allocations<cpu>().total.load();
  for (int step = 0; step < 3; ++step) {
    net.zero_grad();
    net.forward(x);
    net.backward(dy);
  }
  CHECK(allocations<cpu>().total.load() == before);
  CHECK(pool.leased_count() == 0);
}
