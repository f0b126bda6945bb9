// Learning-rate schedules against their closed forms (written out here with the numbers, not
// through the implementation), at chosen iterations: the first, the warm-up boundaries, the
// middle, the last and past the end; plus bad arguments.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <vector>

#include "segkit/train/schedule.hpp"

using namespace segkit;
using train::cosine_options;
using train::poly_options;
using train::step_options;

namespace {
constexpr double pi = 3.14159265358979323846;
void check_lr(const train::lr_schedule& s, int64_t iteration, double expected) {
  INFO("iteration " << iteration);
  CHECK(s.lr_at(iteration) == Approx(expected).epsilon(1e-12).margin(1e-15));
}
}  // namespace

TEST_CASE("poly schedule: (1 - it/max)^power, held at min_lr past the end") {
  poly_options o;
  o.base_lr = 0.01;
  o.max_iters = 1000;
  const train::poly_schedule s(o);
  check_lr(s, 0, 0.01);
  check_lr(s, 1, 0.01 * std::pow(0.999, 0.9));
  check_lr(s, 500, 0.01 * std::pow(0.5, 0.9));
  check_lr(s, 999, 0.01 * std::pow(0.001, 0.9));
  check_lr(s, 1000, 0.0);
  check_lr(s, 5000, 0.0);

  o.min_lr = 1e-4;
  o.power = 2.0;
  const train::poly_schedule with_min(o);
  check_lr(with_min, 250, (0.01 - 1e-4) * 0.75 * 0.75 + 1e-4);
  check_lr(with_min, 1000, 1e-4);
  check_lr(with_min, 1001, 1e-4);
}

TEST_CASE("poly schedule with linear warm-up: base*ratio at 0, meets poly at warmup_iters") {
  poly_options o;
  o.base_lr = 0.02;
  o.max_iters = 1000;
  o.warmup.iters = 100;
  o.warmup.ratio = 1e-6;
  const train::poly_schedule s(o);
  auto poly = [](double it) { return 0.02 * std::pow(1 - it / 1000, 0.9); };
  check_lr(s, 0, 0.02 * 1e-6);
  // mmcv: regular * (1 - (1 - it/warmup) * (1 - ratio))
  check_lr(s, 1, poly(1) * (1 - 0.99 * (1 - 1e-6)));
  check_lr(s, 50, poly(50) * (1 - 0.5 * (1 - 1e-6)));
  check_lr(s, 99, poly(99) * (1 - 0.01 * (1 - 1e-6)));
  check_lr(s, 100, poly(100));
  check_lr(s, 101, poly(101));
  check_lr(s, 999, poly(999));
  // Rising through the warm-up, falling after it.
  for (int64_t it = 1; it < 100; ++it) CHECK(s.lr_at(it) > s.lr_at(it - 1));
  for (int64_t it = 101; it <= 1000; ++it) CHECK(s.lr_at(it) < s.lr_at(it - 1));

  o.warmup.ratio = 1.0;  // no-op warm-up
  const train::poly_schedule flat(o);
  check_lr(flat, 0, 0.02);
  check_lr(flat, 40, poly(40));
}

TEST_CASE("step schedule: milestones (as MultiStepLR) or a step size (as StepLR)") {
  step_options o;
  o.base_lr = 0.1;
  o.milestones = {30, 80};
  o.gamma = 0.1;
  const train::step_schedule multi(o);
  check_lr(multi, 0, 0.1);
  check_lr(multi, 29, 0.1);
  check_lr(multi, 30, 0.01);
  check_lr(multi, 79, 0.01);
  check_lr(multi, 80, 0.001);
  check_lr(multi, 10000, 0.001);

  step_options by_size;
  by_size.base_lr = 0.5;
  by_size.step_size = 7;
  by_size.gamma = 0.5;
  by_size.warmup.iters = 3;
  by_size.warmup.ratio = 0.25;
  const train::step_schedule stepped(by_size);
  check_lr(stepped, 0, 0.5 * 0.25);
  check_lr(stepped, 2, 0.5 * (1 - (1 - 2.0 / 3) * 0.75));
  check_lr(stepped, 3, 0.5);
  check_lr(stepped, 6, 0.5);
  check_lr(stepped, 7, 0.25);
  check_lr(stepped, 20, 0.125);
  check_lr(stepped, 21, 0.0625);
}

TEST_CASE("cosine schedule: min + (base - min)(1 + cos(pi t))/2, with warm-up") {
  cosine_options o;
  o.base_lr = 0.1;
  o.min_lr = 0.001;
  o.max_iters = 200;
  const train::cosine_schedule s(o);
  auto cosine = [](double it) { return 0.001 + 0.5 * 0.099 * (1 + std::cos(pi * it / 200)); };
  check_lr(s, 0, 0.1);
  check_lr(s, 50, 0.001 + 0.5 * 0.099 * (1 + std::sqrt(0.5)));
  check_lr(s, 100, 0.001 + 0.5 * 0.099);
  check_lr(s, 199, cosine(199));
  check_lr(s, 200, 0.001);
  check_lr(s, 300, 0.001);  // held, not rising again

  o.warmup.iters = 20;
  o.warmup.ratio = 0.1;
  const train::cosine_schedule warm(o);
  check_lr(warm, 0, cosine(0) * 0.1);
  check_lr(warm, 10, cosine(10) * (1 - 0.5 * 0.9));
  check_lr(warm, 19, cosine(19) * (1 - 0.05 * 0.9));
  check_lr(warm, 20, cosine(20));
  check_lr(warm, 200, 0.001);
}

TEST_CASE("schedules share one interface") {
  poly_options p;
  p.max_iters = 10;
  cosine_options c;
  c.max_iters = 10;
  step_options st;
  st.step_size = 5;
  std::vector<std::unique_ptr<train::lr_schedule>> all;
  all.push_back(std::make_unique<train::poly_schedule>(p));
  all.push_back(std::make_unique<train::cosine_schedule>(c));
  all.push_back(std::make_unique<train::step_schedule>(st));
  for (const auto& s : all) CHECK(s->lr_at(0) == Approx(0.01));
}

TEST_CASE("schedules: bad arguments throw naming the value") {
  poly_options p;
  p.max_iters = 100;
  const train::poly_schedule ok(p);
  CHECK_THROWS_WITH(ok.lr_at(-1), Catch::Contains("iteration") && Catch::Contains("-1"));

  auto poly_with = [](auto change) {
    poly_options o;
    o.max_iters = 100;
    change(o);
    train::poly_schedule s(o);
  };
  CHECK_THROWS_WITH(poly_with([](auto& o) { o.max_iters = 0; }), Catch::Contains("max_iters"));
  CHECK_THROWS_WITH(poly_with([](auto& o) { o.base_lr = -0.5; }),
                    Catch::Contains("base_lr") && Catch::Contains("-0.5"));
  CHECK_THROWS_WITH(poly_with([](auto& o) { o.power = -1; }), Catch::Contains("power"));
  CHECK_THROWS_WITH(poly_with([](auto& o) { o.min_lr = 0.5; }), Catch::Contains("min_lr"));
  CHECK_THROWS_WITH(poly_with([](auto& o) { o.warmup.iters = -3; }),
                    Catch::Contains("warmup") && Catch::Contains("-3"));
  CHECK_THROWS_WITH(poly_with([](auto& o) { o.warmup.ratio = 1.5; }),
                    Catch::Contains("warmup ratio") && Catch::Contains("1.5"));

  auto step_with = [](auto change) {
    step_options o;
    change(o);
    train::step_schedule s(o);
  };
  CHECK_THROWS_WITH(step_with([](auto&) {}), Catch::Contains("milestones or a step_size"));
  CHECK_THROWS_WITH(step_with([](auto& o) { o.milestones = {5}, o.step_size = 3; }),
                    Catch::Contains("milestones or a step_size"));
  CHECK_THROWS_WITH(step_with([](auto& o) { o.step_size = -4; }), Catch::Contains("-4"));
  CHECK_THROWS_WITH(step_with([](auto& o) {
                      o.milestones = {10, 10};
                    }),
                    Catch::Contains("increase"));
  CHECK_THROWS_WITH(step_with([](auto& o) { o.milestones = {-1}; }), Catch::Contains("-1"));
  CHECK_THROWS_WITH(step_with([](auto& o) { o.step_size = 2, o.gamma = 0; }),
                    Catch::Contains("gamma"));

  auto cosine_with = [](auto change) {
    cosine_options o;
    o.max_iters = 100;
    change(o);
    train::cosine_schedule s(o);
  };
  CHECK_THROWS_WITH(cosine_with([](auto& o) { o.max_iters = -5; }), Catch::Contains("-5"));
  CHECK_THROWS_WITH(cosine_with([](auto& o) { o.min_lr = -1e-3; }), Catch::Contains("min_lr"));
}
