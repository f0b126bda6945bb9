// Tests for segkit/eval/metrics.hpp: the confusion matrix against a naive per-class count,
// hand-made cases with known IoUs (including mmseg's NaN rule), argmax, and the boundary band
// against a brute-force definition (distance to every boundary pixel).
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "segkit/eval/metrics.hpp"

using namespace segkit;
using eval::confusion_matrix;

namespace {

host_tensor<int32_t> labels(const shape& s, const std::vector<int32_t>& values) {
  return from_vector<int32_t>(s, values);
}

host_tensor<int32_t> random_labels(const shape& s, int classes, double ignore_fraction,
                                   std::mt19937& rng) {
  host_tensor<int32_t> t(s);
  std::uniform_int_distribution<int32_t> cls(0, classes - 1);
  std::uniform_real_distribution<double> unit(0, 1);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = unit(rng) < ignore_fraction ? 255 : cls(rng);
  return t;
}

// Naive: per class, count pixels directly (no matrix), as mmseg's intersect_and_union.
struct naive_metrics {
  std::vector<double> iou, acc;
  double aacc;
};
naive_metrics naive(const std::vector<host_tensor<int32_t>>& preds,
                    const std::vector<host_tensor<int32_t>>& labs, int k) {
  std::vector<double> inter(k, 0), area_p(k, 0), area_l(k, 0);
  for (size_t b = 0; b < preds.size(); ++b)
    for (int64_t i = 0; i < labs[b].numel(); ++i) {
      const int32_t l = labs[b][i], p = preds[b][i];
      if (l == 255) continue;
      area_l[l] += 1;
      area_p[p] += 1;
      if (l == p) inter[l] += 1;
    }
  naive_metrics m;
  double hits = 0, all = 0;
  for (int c = 0; c < k; ++c) {
    const double u = area_p[c] + area_l[c] - inter[c];
    m.iou.push_back(u == 0 ? NAN : inter[c] / u);
    m.acc.push_back(area_l[c] == 0 ? NAN : inter[c] / area_l[c]);
    hits += inter[c];
    all += area_l[c];
  }
  m.aacc = hits / all;
  return m;
}

double nanmean(const std::vector<double>& v) {
  double s = 0;
  int n = 0;
  for (double x : v)
    if (!std::isnan(x)) s += x, ++n;
  return s / n;
}

}  // namespace

TEST_CASE("confusion_matrix: hand-made IoUs", "[metrics]") {
  // label:      0 0 1 1 / 2 2 255 255      prediction: 0 1 1 1 / 1 2 0 2
  // class 0: I=1, label 2, pred 1 (the prediction 0 on a 255 pixel is not counted) -> U=2,
  // IoU 1/2; class 1: I=2, label 2, pred 4 -> U=4, IoU 1/2; class 2: I=1, label 2, pred 1
  // (again one prediction on 255 not counted) -> U=2, IoU 1/2.
  // class 3: absent everywhere -> NaN and out of the mean.
  confusion_matrix cm(4);
  cm.add(labels({2, 4}, {0, 1, 1, 1, 1, 2, 0, 2}), labels({2, 4}, {0, 0, 1, 1, 2, 2, 255, 255}));
  CHECK(cm.iou(0) == Approx(0.5));
  CHECK(cm.iou(1) == Approx(0.5));
  CHECK(cm.iou(2) == Approx(0.5));
  CHECK(std::isnan(cm.iou(3)));
  CHECK(cm.miou() == Approx(0.5));
  CHECK(cm.pixel_accuracy() == Approx(4.0 / 6));
  CHECK(cm.accuracy(0) == Approx(0.5));
  CHECK(cm.accuracy(1) == Approx(1.0));
  CHECK(std::isnan(cm.accuracy(3)));
  CHECK(cm.mean_accuracy() == Approx((0.5 + 1.0 + 0.5) / 3));
  CHECK(cm.total() == 6);
  CHECK(cm.count(2, 1) == 1);  // label 2 predicted 1

  // A class predicted but absent from the ground truth has IoU 0 and counts in the mean.
  confusion_matrix fp(3);
  fp.add(labels({1, 3}, {0, 0, 2}), labels({1, 3}, {0, 0, 0}));
  CHECK(fp.iou(0) == Approx(2.0 / 3));
  CHECK(std::isnan(fp.iou(1)));
  CHECK(fp.iou(2) == 0.0);
  CHECK(fp.miou() == Approx((2.0 / 3 + 0.0) / 2));

  // Empty matrix: NaN everywhere, no division by zero crash.
  confusion_matrix empty(2);
  CHECK(std::isnan(empty.miou()));
  CHECK(std::isnan(empty.pixel_accuracy()));
}

TEST_CASE("confusion_matrix: random batches equal the naive count; merge = one matrix",
          "[metrics]") {
  std::mt19937 rng(7);
  for (int k : {1, 2, 5, 19}) {
    std::vector<host_tensor<int32_t>> preds, labs;
    confusion_matrix all(k), a(k), b(k);
    for (int batch = 0; batch < 4; ++batch) {
      const shape s = batch % 2 ? shape{2, 7, 5} : shape{9, 3};
      preds.push_back(random_labels(s, k, 0.0, rng));
      labs.push_back(random_labels(s, k, 0.2, rng));
      all.add(preds.back(), labs.back());
      (batch < 2 ? a : b).add(preds.back(), labs.back());
    }
    a.merge(b);
    CHECK(a.counts() == all.counts());
    const auto ref = naive(preds, labs, k);
    for (int c = 0; c < k; ++c) {
      if (std::isnan(ref.iou[c])) {
        CHECK(std::isnan(all.iou(c)));
      } else {
        CHECK(all.iou(c) == Approx(ref.iou[c]));
        CHECK(all.accuracy(c) == Approx(ref.acc[c]));
      }
    }
    CHECK(all.miou() == Approx(nanmean(ref.iou)));
    CHECK(all.mean_accuracy() == Approx(nanmean(ref.acc)));
    CHECK(all.pixel_accuracy() == Approx(ref.aacc));
  }
}

TEST_CASE("confusion_matrix: masked add counts only the mask", "[metrics]") {
  std::mt19937 rng(3);
  const auto pred = random_labels({6, 8}, 4, 0, rng), lab = random_labels({6, 8}, 4, 0.1, rng);
  host_tensor<uint8_t> mask({6, 8});
  for (int64_t i = 0; i < mask.numel(); ++i) mask[i] = (i * 7) % 3 == 0;
  confusion_matrix masked(4), reference(4);
  masked.add(pred, lab, mask);
  host_tensor<int32_t> lab2 = lab.clone();
  for (int64_t i = 0; i < mask.numel(); ++i)
    if (!mask[i]) lab2[i] = 255;
  reference.add(pred, lab2);
  CHECK(masked.counts() == reference.counts());
}

TEST_CASE("confusion_matrix: bad input", "[metrics]") {
  confusion_matrix cm(3);
  CHECK_THROWS_WITH(cm.add(labels({2, 2}, {0, 0, 0, 0}), labels({2, 3}, {0, 0, 0, 0, 0, 0})),
                    Catch::Contains("[2, 2]") && Catch::Contains("[2, 3]"));
  CHECK_THROWS_AS(cm.add(labels({4}, {0, 0, 0, 0}), labels({4}, {0, 0, 0, 0})), shape_error);
  CHECK_THROWS_WITH(cm.add(labels({1, 2}, {0, 0}), labels({1, 2}, {0, 7})),
                    Catch::Contains("label value 7"));
  CHECK_THROWS_WITH(cm.add(labels({1, 2}, {0, 3}), labels({1, 2}, {0, 1})),
                    Catch::Contains("prediction value 3"));
  CHECK(cm.total() == 0);  // a rejected add leaves the counts untouched
  // An out-of-range prediction on an ignored pixel is not an error (nothing is counted there).
  cm.add(labels({1, 2}, {0, 99}), labels({1, 2}, {0, 255}));
  CHECK(cm.total() == 1);
  CHECK_THROWS_AS(confusion_matrix(0), value_error);
  CHECK_THROWS_AS(confusion_matrix(300, 5), value_error);
  CHECK_THROWS_AS(cm.merge(confusion_matrix(4)), value_error);
  CHECK_THROWS_AS(cm.iou(3), value_error);
}

TEST_CASE("argmax_classes: per-pixel argmax, first index on ties", "[metrics]") {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  host_tensor<float> logits({2, 5, 3, 4});
  for (int64_t i = 0; i < logits.numel(); ++i) logits[i] = normal(rng);
  logits.at(1, 2, 1, 1) = 10.f;
  logits.at(1, 4, 1, 1) = 10.f;  // tie with class 2 -> 2
  const auto am = eval::argmax_classes(logits);
  REQUIRE(am.shape() == shape({2, 3, 4}));
  for (int n = 0; n < 2; ++n)
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 4; ++x) {
        int best = 0;
        for (int c = 1; c < 5; ++c)
          if (logits.at(n, c, y, x) > logits.at(n, best, y, x)) best = c;
        CHECK(am.at(n, y, x) == best);
      }
  CHECK(am.at(1, 1, 1) == 2);
  CHECK(eval::argmax_classes(logits.slice(0, 1).view({5, 3, 4})).shape() == shape({3, 4}));
  CHECK_THROWS_AS(eval::argmax_classes(host_tensor<float>({5, 3})), shape_error);
}

namespace {

// Brute force: boundary pixels by definition, then distance to each of them.
host_tensor<uint8_t> brute_boundary(const host_tensor<int32_t>& lab, int radius,
                                    bool ignore_makes_boundary) {
  const int64_t h = lab.size(0), w = lab.size(1);
  std::vector<std::pair<int64_t, int64_t>> edges;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const int dys[] = {-1, 1, 0, 0}, dxs[] = {0, 0, -1, 1};
      bool edge = false;
      for (int d = 0; d < 4; ++d) {
        const int64_t yy = y + dys[d], xx = x + dxs[d];
        if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
        const int32_t a = lab.at(y, x), b = lab.at(yy, xx);
        if (a != b && (ignore_makes_boundary || (a != 255 && b != 255))) edge = true;
      }
      if (edge) edges.emplace_back(y, x);
    }
  host_tensor<uint8_t> mask = host_tensor<uint8_t>::zeros({h, w});
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (const auto& [ey, ex] : edges)
        if ((y - ey) * (y - ey) + (x - ex) * (x - ex) <= int64_t(radius) * radius)
          mask.at(y, x) = 1;
  return mask;
}

}  // namespace

TEST_CASE("boundary_mask: hand-made shapes", "[metrics]") {
  // A vertical edge between columns 2 and 3 of a 3 x 8 image, radius 1: columns 1..4.
  host_tensor<int32_t> lab({3, 8});
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 8; ++x) lab.at(y, x) = x < 3 ? 0 : 1;
  const auto m1 = eval::boundary_mask(lab, {1});
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 8; ++x) CHECK(int(m1.at(y, x)) == int(x >= 1 && x <= 4));
  // Radius 0: only the two boundary columns.
  const auto m0 = eval::boundary_mask(lab, {0});
  for (int x = 0; x < 8; ++x) CHECK(int(m0.at(1, x)) == int(x == 2 || x == 3));
  // A uniform image has no boundary.
  host_tensor<int32_t> flat({4, 5});
  flat.fill(3);
  const auto mf = eval::boundary_mask(flat);
  for (int64_t i = 0; i < mf.numel(); ++i) CHECK(mf[i] == 0);
  // A single pixel of another class, radius 2: a Euclidean disc of 13 pixels around it,
  // plus the 4 neighbours' discs (the neighbours are boundary pixels too).
  host_tensor<int32_t> dot({11, 11});
  dot.fill(0);
  dot.at(5, 5) = 1;
  const auto md = eval::boundary_mask(dot, {2});
  CHECK(md.at(5, 5) == 1);
  CHECK(md.at(5, 8) == 1);   // 2 from the neighbour (5, 6)
  CHECK(md.at(5, 9) == 0);   // 3 from the nearest boundary pixel
  CHECK(md.at(7, 6) == 1);   // dy 1, dx 1 from the neighbour (6, 5)
  CHECK(md.at(7, 7) == 0);   // 1 + 4 > 4 from both (6, 5) and (5, 6)
  CHECK(md.at(8, 8) == 0);
}

TEST_CASE("boundary_mask: equals the brute-force definition", "[metrics]") {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t h = 1 + trial % 7 * 3, w = 1 + (trial * 5) % 13;
    // Blocky labels (runs of equal values) so boundaries are sparse, with some ignore.
    host_tensor<int32_t> lab({h, w});
    std::uniform_int_distribution<int32_t> cls(0, 3);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const int32_t v = cls(rng);
        lab.at(y, x) = (x > 0 && v < 2) ? lab.at(y, x - 1) : (y > 0 && v == 2 ? lab.at(y - 1, x)
                                                                               : (v == 3 ? 255 : v));
      }
    for (int radius : {0, 1, 2, 3, 8})
      for (bool with_ignore : {true, false}) {
        INFO("h " << h << " w " << w << " radius " << radius << " ignore " << with_ignore);
        const auto expected = brute_boundary(lab, radius, with_ignore);
        const auto got = eval::boundary_mask(lab, {radius, 255, with_ignore});
        CHECK(to_vector(got) == to_vector(expected));
      }
  }
  // Batched [N, H, W] = each image on its own.
  host_tensor<int32_t> batch({3, 6, 7});
  std::uniform_int_distribution<int32_t> cls(0, 2);
  for (int64_t i = 0; i < batch.numel(); ++i) batch[i] = cls(rng) == 0 ? 1 : 0;
  const auto whole = eval::boundary_mask(batch, {2});
  for (int n = 0; n < 3; ++n) {
    const auto one = eval::boundary_mask(batch.slice(n, n + 1).view({6, 7}).clone(), {2});
    CHECK(to_vector(whole.slice(n, n + 1).view({6, 7}).clone()) == to_vector(one));
  }
  CHECK_THROWS_AS(eval::boundary_mask(batch, {-1}), value_error);
  CHECK_THROWS_AS(eval::boundary_mask(host_tensor<int32_t>({5})), shape_error);
}
