// nn::set_random_step: dropout masks keyed on (layer seed, step, training calls since the step
// was set), so equal seeds draw equal masks at equal steps and a resumed run redraws the masks
// of the uninterrupted one; never set, every call draws a fresh mask exactly as before.
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "segkit/nn/network.hpp"

using namespace segkit;

namespace {

using net_t = nn::network<2, nn::seq<nn::dropout<50>>>;
const shape input{2, 2, 7, 9};

host_tensor<float> ones() {
  host_tensor<float> x(input);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = 1.f;
  return x;
}

// The kept mask of one training forward on ones (y = mask / (1 - p)).
std::vector<uint8_t> mask_of(net_t& net) {
  const auto x = ones();
  const auto& y = net.forward(x);
  std::vector<uint8_t> mask(size_t(y.numel()));
  for (int64_t i = 0; i < y.numel(); ++i) mask[size_t(i)] = y[i] != 0.f;
  return mask;
}

std::vector<uint8_t> op_mask(uint64_t seed) {
  host_tensor<float> x = ones(), y(input);
  host_tensor<uint8_t> mask(input);
  ops::dropout_forward({0.5f, true, seed}, x, y, mask);
  return std::vector<uint8_t>(mask.data(), mask.data() + mask.numel());
}

}  // namespace

TEST_CASE("random step: never set, every call draws a fresh mask as before") {
  nn::clear_random_step();
  REQUIRE_FALSE(nn::random_step_set());
  net_t a(5), b(5);
  a.setup(input);  // the warm-up forward is call 1
  b.setup(input);
  const uint64_t layer_seed = std::mt19937_64(5)();  // what initialize draws for the layer
  const auto a2 = mask_of(a), a3 = mask_of(a);
  CHECK(a2 == op_mask(layer_seed + 0x9E3779B97F4A7C15ull * 2));
  CHECK(a3 == op_mask(layer_seed + 0x9E3779B97F4A7C15ull * 3));
  CHECK(a2 != a3);
  CHECK(mask_of(b) == a2);
}

TEST_CASE("random step: same step same masks across networks, another step other masks") {
  net_t a(7), b(7), c(8);
  a.setup(input);
  b.setup(input);
  c.setup(input);
  nn::set_random_step(5);
  REQUIRE(nn::random_step_set());
  CHECK(nn::random_step() == 5);
  const auto a1 = mask_of(a), a2 = mask_of(a);
  CHECK(a1 != a2);  // calls within a step differ
  const auto b1 = mask_of(b), b2 = mask_of(b);
  CHECK(a1 == b1);
  CHECK(a2 == b2);
  CHECK(mask_of(c) != a1);  // another layer seed
  nn::set_random_step(6);
  const auto a6 = mask_of(a);
  CHECK(a6 != a1);
  CHECK(a6 != a2);
  nn::set_random_step(5);  // setting the step again restarts its count
  CHECK(mask_of(a) == a1);
  CHECK(mask_of(a) == a2);
  nn::clear_random_step();
}

TEST_CASE("random step: a resumed run redraws the masks of the uninterrupted one") {
  // uninterrupted: steps 0..3, two training forwards per step, an evaluation inside step 2
  std::vector<std::vector<uint8_t>> full;
  {
    net_t net(11);
    net.setup(input);
    for (uint64_t step = 0; step < 4; ++step) {
      nn::set_random_step(step);
      full.push_back(mask_of(net));
      if (step == 2) {
        net.eval();
        mask_of(net);  // eval forwards do not advance the count
        net.train();
      }
      full.push_back(mask_of(net));
    }
  }
  // resumed at step 2 in a fresh network (as after loading a checkpoint)
  net_t resumed(11);
  resumed.setup(input);
  for (uint64_t step = 2; step < 4; ++step) {
    nn::set_random_step(step);
    CHECK(mask_of(resumed) == full[2 * step]);
    CHECK(mask_of(resumed) == full[2 * step + 1]);
  }
  // set up while a step is set (setup's warm-up forward is a training call of that step):
  // setting the step at the start of the step's work restarts the count
  net_t late(11);
  late.setup(input);
  nn::set_random_step(3);
  CHECK(mask_of(late) == full[6]);
  nn::clear_random_step();
}
