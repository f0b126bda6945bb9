// The issue-3 pieces working together on a real network type: cross-entropy, SGD, the
// schedule, checkpoints. Resuming from a checkpoint continues bit-identically, and a whole
// training step (forward, loss, backward, optimizer) allocates nothing after setup.
#include <cstdio>
#include <string>

#include "layer_checker.hpp"
#include "scratch_dir.hpp"
#include "segkit/train/checkpoint.hpp"
#include "segkit/train/cross_entropy.hpp"
#include "segkit/train/optimizer.hpp"
#include "segkit/train/schedule.hpp"

using namespace segkit;
namespace nn = segkit::nn;

namespace {
using model = nn::seq<nn::conv<8, 3, 2>, nn::batch_norm, nn::relu,
                      nn::residual<nn::seq<nn::conv<8>, nn::batch_norm, nn::relu>>,
                      nn::conv<3, 1, 1, 0, 1, 1, true>, nn::upsample<2>>;
using network_type = nn::network<3, model>;

struct trainer {
  network_type net{42};
  train::sgd<cpu> optimizer;
  train::poly_schedule schedule;
  host_tensor<float> images{shape{2, 3, 8, 8}}, dlogits;
  host_tensor<int32_t> labels{shape{2, 8, 8}};
  train::loss_state<cpu> state;

  static train::sgd_options options() {
    train::sgd_options o;
    o.momentum = 0.9;
    o.weight_decay = 1e-4;
    return o;
  }
  static train::poly_options poly() {
    train::poly_options p;
    p.base_lr = 0.05;
    p.max_iters = 10;
    p.warmup.iters = 2;
    return p;
  }
  trainer() : optimizer((net.setup({2, 3, 8, 8}), nn::parameters_of<cpu>(net)), options()),
              schedule(poly()) {
    dlogits = host_tensor<float>(net.output_shape());
  }
  // Step k sees data drawn from seed k, so a resumed run sees the same batches.
  float step() {
    std::mt19937 rng(static_cast<unsigned>(1000 + optimizer.steps_taken()));
    std::uniform_real_distribution<float> pixel(-1.f, 1.f);
    for (int64_t i = 0; i < images.numel(); ++i) images[i] = pixel(rng);  // in place
    for (int64_t i = 0; i < labels.numel(); ++i) labels[i] = int32_t(rng() % 3);
    labels[5] = 255;  // one ignored pixel
    const auto& logits = net.forward(images);
    const float loss = train::cross_entropy_forward({}, logits, labels, state);
    dlogits.zero();
    train::cross_entropy_backward({}, logits, labels, state, 1.f, dlogits);
    net.zero_grad();
    net.backward(dlogits);
    optimizer.set_lr(schedule.lr_at(optimizer.steps_taken()));
    optimizer.step();
    return loss;
  }
};

std::vector<float> all_values(network_type& net) {
  std::vector<float> values;
  net.visit_parameters("", [&](const std::string&, nn::parameter<cpu>& p) {
    values.insert(values.end(), p.value.data(), p.value.data() + p.value.numel());
  });
  return values;
}
}  // namespace

TEST_CASE("training loop: 2N steps equal N steps, a checkpoint, a fresh process and N steps") {
  testing::scratch_dir dir("training_loop");
  const std::string path = dir.file("resume.safetensors");
  trainer straight;
  for (int i = 0; i < 6; ++i) straight.step();

  trainer first;
  for (int i = 0; i < 3; ++i) first.step();
  train::save_checkpoint(path, first.net, first.optimizer);
  trainer resumed;  // different from `first` until loaded: fresh weights, no optimizer state
  train::load_checkpoint(path, resumed.net, resumed.optimizer);
  CHECK(resumed.optimizer.steps_taken() == 3);
  for (int i = 0; i < 3; ++i) resumed.step();

  const auto a = all_values(straight.net), b = all_values(resumed.net);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) REQUIRE(a[i] == b[i]);  // bit-identical
  auto& bn_straight = straight.net.graph().child<1>();
  auto& bn_resumed = resumed.net.graph().child<1>();
  for (int64_t c = 0; c < 8; ++c) REQUIRE(bn_straight.running_var[c] == bn_resumed.running_var[c]);
  CHECK(bn_resumed.num_batches_tracked[0] == 6);
}

TEST_CASE("training loop: the loss falls and steps allocate nothing after the first") {
  trainer t;
  const float first = t.step();
  const long long after_first = allocations<cpu>().total.load();
  float last = first;
  for (int i = 0; i < 8; ++i) last = t.step();
  CHECK(allocations<cpu>().total.load() == after_first);
  CHECK(last < first);
}
