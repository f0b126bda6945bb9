// tests/test_hfgd.cpp — models::hfgd_head and train::car_forward: PyTorch parity (float64
// reference, tests/reference/gen_hfgd.py) of outputs, every loss term incl. CAR, parameter and
// feature gradients (the HFGM stop-gradients make some exactly zero: checked exactly), finite
// differences of the CAR losses alone, initialisation (Q == K), bad input, and the full model
// (ResNet-18 w25 backbone) whose loss falls over a few SGD steps.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <set>

#include "op_checker.hpp"
#include "segkit/models/hfgd.hpp"
#include "segkit/models/hfgd_head.hpp"
#include "segkit/models/resnet.hpp"
#include "segkit/tensor/safetensors.hpp"

using namespace segkit;

namespace {
using small_head = models::hfgd_head<4, 6, 8, 10, cpu, 16, 8, 12, 3, 4>;

const tensor_file& golden() {
  static const tensor_file file = tensor_file::load(SEGKIT_GOLDEN_DIR "/hfgd.safetensors");
  return file;
}
double rel_error(const host_tensor<float>& got, const host_tensor<float>& want) {
  REQUIRE(got.shape() == want.shape());
  double diff = 0, scale = 1e-12;
  for (int64_t i = 0; i < got.numel(); ++i) {
    diff = std::max(diff, std::fabs(double(got[i]) - double(want[i])));
    scale = std::max(scale, std::fabs(double(want[i])));
  }
  return diff / scale;
}
bool all_zero(const host_tensor<float>& t) {
  for (int64_t i = 0; i < t.numel(); ++i)
    if (t[i] != 0.f) return false;
  return true;
}
}  // namespace

TEST_CASE("hfgd head: PyTorch parity of outputs, losses and gradients", "[hfgd]") {
  const auto& file = golden();
  struct variant {
    const char* name;
    models::hfgd_options options;
  };
  const variant variants[] = {{"default", {true, true, 4, 1}},
                              {"os2", {true, true, 2, 1}},
                              {"nohfgm", {false, false, 4, 1}}};
  for (const auto& v : variants) {
    SECTION(v.name) {
      const std::string pre = std::string(v.name) + ".";
      small_head head(5, v.options);
      std::array<host_tensor<float>, 4> f;
      std::array<shape, 4> fs;
      for (int i = 0; i < 4; ++i) {
        f[size_t(i)] = file.get<float>(pre + "in.f" + std::to_string(i));
        fs[size_t(i)] = f[size_t(i)].shape();
      }
      const auto labels = file.get<int32_t>(pre + "in.labels");
      head.setup(fs, labels.shape());
      head.set_training(true);
      std::set<std::string> visited;
      head.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
        INFO(name);
        REQUIRE(file.contains(pre + "param." + name));
        copy_into(file.get<float>(pre + "param." + name), p.value);
        p.zero_grad();
        visited.insert(name);
      });
      int stored = 0;
      for (const auto& n : file.names())
        if (n.rfind(pre + "param.", 0) == 0) ++stored;
      CHECK(int(visited.size()) == stored);

      std::array<const host_tensor<float>*, 4> in{&f[0], &f[1], &f[2], &f[3]};
      std::array<host_tensor<float>, 4> df;
      std::array<host_tensor<float>*, 4> dptr{};
      for (int i = 0; i < 4; ++i) {
        df[size_t(i)] = host_tensor<float>(fs[size_t(i)]);
        df[size_t(i)].zero();
        dptr[size_t(i)] = &df[size_t(i)];
      }
      head.forward(in);
      CHECK(rel_error(head.car_features(), file.get<float>(pre + "out.x_car")) < 1e-4);
      CHECK(rel_error(head.coarse(), file.get<float>(pre + "out.coarse")) < 1e-4);
      CHECK(rel_error(head.fine(), file.get<float>(pre + "out.fine")) < 1e-4);
      const auto terms = head.loss_backward(labels, in, dptr);
      for (const auto& t : terms.terms) {
        INFO(t.first);
        const double want = file.get<float>(pre + "loss." + t.first)[0];
        CHECK(t.second == Approx(want).epsilon(1e-4).margin(1e-9));
      }
      CHECK(terms.total == Approx(file.get<float>(pre + "loss.total")[0]).epsilon(1e-4));
      head.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
        INFO(name);
        const auto want = file.get<float>(pre + "grad." + name);
        if (all_zero(want)) {
          CHECK(all_zero(p.grad));
        } else if (name.size() > 8 && name.compare(name.size() - 8, 8, "key.bias") == 0) {
          // A key bias adds the same q . b to every key of a query: softmax over keys makes its
          // gradient 0 analytically; both sides hold rounding noise only.
          double most = 0;
          for (int64_t i = 0; i < p.grad.numel(); ++i)
            most = std::max(most, std::fabs(double(p.grad[i])));
          CHECK(most < 1e-6);
        } else {
          CHECK(rel_error(p.grad, want) < 1e-4);
        }
      });
      for (int i = 0; i < 4; ++i) {
        INFO("feature " << i);
        const auto want = file.get<float>(pre + "dfeat.f" + std::to_string(i));
        if (v.options.hfgm && i < 3) {
          // Every U-SFPN input is behind a stop-gradient: exactly nothing reaches f0..f2.
          CHECK(all_zero(want));
          CHECK(all_zero(df[size_t(i)]));
        } else {
          CHECK(rel_error(df[size_t(i)], want) < 1e-4);
        }
      }
    }
  }
}

TEST_CASE("car losses: the golden CAR features give the golden terms", "[hfgd][car]") {
  const auto& file = golden();
  const auto x = file.get<float>("default.out.x_car");
  const auto labels = file.get<int32_t>("default.in.labels");
  host_tensor<int32_t> small(shape{x.shape()[0], x.shape()[2], x.shape()[3]});
  train::resize_labels_nearest(labels, small);
  train::car_params params{5};
  train::car_state state;
  const auto t = train::car_forward(params, x, small, state);
  CHECK(t.intra == Approx(file.get<float>("default.loss.car_intra")[0]).epsilon(1e-4));
  CHECK(t.inter == Approx(file.get<float>("default.loss.car_inter")[0]).epsilon(1e-4).margin(1e-9));
  CHECK(t.c2p == Approx(file.get<float>("default.loss.car_c2p")[0]).epsilon(1e-4).margin(1e-9));
}

TEST_CASE("car losses: finite differences of each term", "[hfgd][car]") {
  std::mt19937 rng(3);
  std::normal_distribution<float> pick(0.f, 1.f);
  host_tensor<float> x(shape{2, 6, 3, 4});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = pick(rng);
  host_tensor<int32_t> labels(shape{2, 3, 4});
  const int32_t pattern[] = {0, 1, 2, 255, 1, 0, 2, 2};
  for (int64_t i = 0; i < labels.numel(); ++i) labels[i] = pattern[i % 8];
  for (int term = 0; term < 3; ++term) {
    INFO("term " << term);
    train::car_params params{4};
    params.intra_weight = term == 0, params.inter_weight = term == 1, params.c2p_weight = term == 2;
    train::car_state state;
    host_tensor<float> dx(x.shape());
    dx.zero();
    const auto base = train::car_forward(params, x, labels, state, &dx);
    CHECK(base.total(params) > 0);  // every term is active for this input
    state.freeze_centres = true;    // the stopped centres stay constant, as in the gradient
    const float eps = 1e-2f;
    int checked = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      // intra is |x - centre|: skip elements within reach of its kink.
      const int64_t hw = 12, b = i / (6 * hw), c = (i / hw) % 6, pix = i % hw;
      const int32_t y = labels[b * hw + pix];
      if (term == 0 && y != 255 &&
          std::fabs(double(x[i]) - state.centres[size_t(y * 6 + c)]) < 3 * eps)
        continue;
      ++checked;
      host_tensor<float> xp = x.clone(), xm = x.clone();
      xp[i] += eps, xm[i] -= eps;
      const double fd = (train::car_forward(params, xp, labels, state).total(params) -
                         train::car_forward(params, xm, labels, state).total(params)) /
                        (double(xp[i]) - double(xm[i]));
      INFO("element " << i);
      CHECK(dx[i] == Approx(fd).epsilon(2e-2).margin(2e-5));
    }
    CHECK(checked > x.numel() / 2);
  }
}

TEST_CASE("hfgd head: Q and K start equal, bad options and shapes", "[hfgd]") {
  small_head head(3);
  std::mt19937_64 rng(1);
  head.initialize(rng);
  host_tensor<float> q, k, aq, ak;
  head.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>& p) {
    if (name == "cae.2.query.weight") q = p.value.clone();
    if (name == "cae.2.key.weight") k = p.value.clone();
    if (name == "axial.query.weight") aq = p.value.clone();
    if (name == "axial.key.weight") ak = p.value.clone();
  });
  REQUIRE(q.numel() > 0);
  CHECK(rel_error(k, q) == 0);
  CHECK(rel_error(ak, aq) == 0);
  CHECK_THROWS_AS(small_head(0), value_error);
  CHECK_THROWS_WITH(small_head(3, {true, true, 8, 1}), Catch::Contains("output_stride is 8"));
  std::array<shape, 4> fs{shape{1, 4, 16, 16}, shape{1, 6, 8, 8}, shape{1, 8, 4, 4},
                          shape{1, 9, 2, 2}};
  CHECK_THROWS_AS(head.setup(fs, shape{1, 64, 64}), shape_error);
  CHECK_THROWS_WITH(head.setup(fs, shape{1, 64, 64}),
                    Catch::Contains("[1, 9, 2, 2]") && Catch::Contains("[1, 4, 16, 16]"));
  host_tensor<float> x(shape{1, 4, 2, 2});
  host_tensor<int32_t> bad(shape{1, 2, 3});
  train::car_state st;
  CHECK_THROWS_AS(train::car_forward(train::car_params{3}, x, bad, st), shape_error);
}

TEST_CASE("hfgd model: ResNet-18 w25 features, names, training steps reduce the loss", "[hfgd]") {
  using backbone = models::resnet<18, 25, 32>;
  // The head expects the backbone's 4 features at strides 4, 8, 16, 32.
  STATIC_REQUIRE(backbone::channels[0] == 16);
  STATIC_REQUIRE(backbone::channels[3] == 128);
  models::hfgd<backbone, 16, 32, 8, 16> model(3, {}, 7);
  const shape in{2, 3, 64, 64};
  CHECK(model.setup(in) == shape{2, 3, 64, 64});
  bool has_w = false, has_aux = false, has_fine = false;
  model.visit_parameters("", [&](const std::string& name, nn::parameter<cpu>&) {
    has_w |= name == "decode_head.cls.weight";
    has_aux |= name.rfind("auxiliary_head.", 0) == 0;
    has_fine |= name.rfind("decode_head.cls_fine", 0) == 0;
  });
  CHECK(has_w);
  CHECK(has_aux);
  CHECK_FALSE(has_fine);
  std::mt19937 rng(9);
  const auto x = testing::random_tensor(in, rng);
  host_tensor<int32_t> labels(shape{2, 64, 64});
  for (int64_t i = 0; i < labels.numel(); ++i)
    labels[i] = ((i / 64) % 64 < 24) ? 0 : ((i % 64) < 32 ? 1 : 2);  // blocks: learnable
  model.train();
  double first = 0, last = 0;
  for (int step = 0; step < 6; ++step) {
    model.zero_grad();
    const auto terms = model.forward_backward(x, labels);
    REQUIRE(std::isfinite(terms.total));
    REQUIRE(terms.terms.size() == 6);
    if (step == 0) first = terms.total;
    last = terms.total;
    model.visit_parameters("", [](const std::string&, nn::parameter<cpu>& p) {
      for (int64_t i = 0; i < p.value.numel(); ++i) p.value[i] -= 0.02f * p.grad[i];
    });
  }
  INFO("first " << first << " last " << last);
  CHECK(last < first);
  CHECK(model.cost().parameters > 0);
  CHECK(model.cost().macs > 0);
}
