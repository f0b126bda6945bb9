// MAC counter on axial attention (its own translation unit: axial_attention.hpp and
// attention2d.hpp both define math::attention_score_gradient).
#include <catch2/catch.hpp>

#include <random>

#include "op_checker.hpp"
#include "segkit/ops/axial_attention.hpp"
#include "segkit/tensor/mac_counter.hpp"

using namespace segkit;

TEST_CASE("mac counter: axial attention counts 2 N C H W (H + W)") {
  std::mt19937 rng(11);
  for (int heads : {1, 2, 4}) {
    const int64_t n = 2, c = 8, h = 5, w = 7;
    const shape s{n, c, h, w};
    const auto q = testing::random_tensor(s, rng), k = testing::random_tensor(s, rng),
               v = testing::random_tensor(s, rng);
    const ops::axial_attention_params p{heads};
    host_tensor<float> out(s), mid(s), stats(ops::axial_attention_stats_shape(s, p));
    mac_count_scope scope;
    ops::axial_attention_forward(p, q, k, v, out, mid, stats);
    // column pass: for each (n, w), H x H scores over C channels and H x H weights of C values
    const int64_t column = n * w * (h * h * c + h * h * c);
    const int64_t row = n * h * (w * w * c + w * w * c);
    INFO("heads " << heads);
    CHECK(scope.macs() == column + row);
  }
}
