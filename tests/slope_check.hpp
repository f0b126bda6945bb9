// tests/slope_check.hpp — a finite-difference check of one parameter element of a loss that
// tolerates ReLU kinks: the central slope (up - down) / 2 eps is compared with the analytic
// gradient, unless the one-sided slopes disagree (a kink inside [x - eps, x + eps]); such an
// element says nothing about the gradient, so it is counted as a kink, not checked. Callers
// require enough elements to be checked (a kink-free majority), so the check still fails when
// the gradient is wrong.
#pragma once
#include <catch2/catch.hpp>

#include <cmath>

namespace segkit::testing {

struct slope_tolerance {
  float eps = 1e-3f;
  double kink_relative = 0.02, kink_absolute = 1e-3;  // one-sided slopes may differ by this
  double margin = 2e-3, epsilon = 2e-2;               // central slope vs analytic (Approx)
};

struct slope_tally {
  int checked = 0, kinks = 0;
};

// `value` is the parameter element (restored afterwards); loss_at() recomputes the loss.
template <class Loss>
void check_slope(Loss&& loss_at, float& value, double analytic, const slope_tolerance& t,
                 slope_tally& tally) {
  const float keep = value;
  const double centre = loss_at();
  value = keep + t.eps;
  const double up = loss_at();
  value = keep - t.eps;
  const double down = loss_at();
  value = keep;
  const double forward = (up - centre) / t.eps, backward = (centre - down) / t.eps;
  if (std::abs(forward - backward) > t.kink_relative * std::abs(forward + backward) + t.kink_absolute) {
    ++tally.kinks;
    return;
  }
  ++tally.checked;
  INFO("analytic " << analytic << ", one-sided slopes " << forward << " and " << backward);
  CHECK((up - down) / (2 * t.eps) == Approx(analytic).margin(t.margin).epsilon(t.epsilon));
}

}  // namespace segkit::testing
