// Tests for data/loader.hpp: batches independent of thread count, seek == sequential, worker
// errors re-thrown intact, skip_bad counting and naming, clean shutdown mid-epoch.
#include <catch2/catch.hpp>

#include <chrono>
#include <set>
#include <thread>

#include <filesystem>

#include "segkit/data/datasets.hpp"
#include "segkit/data/loader.hpp"
#include "segkit/data/synthetic_scenes.hpp"

using namespace segkit;

namespace {

// Example i: a constant label i and an image derived from i; indices in `bad` throw data_error
// naming "bad_<i>.png"; an optional delay makes timing vary between threads.
class stub_dataset : public data::dataset {
 public:
  stub_dataset(size_t n, std::set<size_t> bad = {}, int delay_us = 0, int h = 6, int w = 8)
      : n_(n), bad_(std::move(bad)), delay_us_(delay_us), h_(h), w_(w) {
    info_.name = "stub";
    info_.num_classes = 1000;
  }
  const data::dataset_info& info() const override { return info_; }
  size_t size() const override { return n_; }
  data::example load(size_t i) const override {
    if (delay_us_ > 0)  // vary timing: some samples much slower than others
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us_ * static_cast<int>(1 + (i * 7) % 5)));
    if (bad_.count(i)) throw data::data_error("stub: cannot read bad_" + std::to_string(i) + ".png (value 42)");
    data::example e;
    e.image = host_tensor<uint8_t>(shape{h_, w_, 3});
    e.label = host_tensor<int32_t>(shape{h_, w_});
    for (int64_t p = 0; p < e.image.numel(); ++p) e.image[p] = static_cast<uint8_t>((i * 37 + static_cast<size_t>(p) * 11) % 256);
    e.label.fill(static_cast<int32_t>(i));
    e.image_path = e.label_path = "stub_" + std::to_string(i) + ".png";
    return e;
  }

 private:
  size_t n_;
  std::set<size_t> bad_;
  int delay_us_, h_, w_;
  data::dataset_info info_;
};

data::loader_options plain_options(int batch, int threads) {
  data::loader_options o;
  o.batch_size = batch;
  o.threads = threads;
  o.seed = 99;
  o.augment.crop_h = o.augment.crop_w = 0;
  o.augment.min_scale = o.augment.max_scale = 1.0;
  o.augment.flip = false;
  o.augment.photometric = false;
  return o;
}

std::vector<int32_t> indices_of(const data::batch& b) {
  std::vector<int32_t> out;
  const int64_t hw = b.labels.size(1) * b.labels.size(2);
  for (int64_t j = 0; j < b.labels.size(0); ++j) out.push_back(b.labels[j * hw]);
  return out;
}

void require_equal(const data::batch& a, const data::batch& b) {
  REQUIRE(a.iteration == b.iteration);
  REQUIRE(a.images.shape() == b.images.shape());
  REQUIRE(a.labels.shape() == b.labels.shape());
  for (int64_t i = 0; i < a.images.numel(); ++i) REQUIRE(a.images[i] == b.images[i]);
  for (int64_t i = 0; i < a.labels.numel(); ++i) REQUIRE(a.labels[i] == b.labels[i]);
}

}  // namespace

TEST_CASE("loader: each epoch visits a fresh permutation; drop_last skips the tail") {
  stub_dataset data(10);
  data::loader l(data, plain_options(3, 2));
  REQUIRE(l.batches_per_epoch() == 3);
  std::vector<std::vector<int32_t>> epochs(2);
  for (int k = 0; k < 6; ++k) {
    const auto& b = l.next();
    REQUIRE(b.iteration == k);
    REQUIRE(b.images.shape() == shape{3, 3, 6, 8});
    for (int32_t i : indices_of(b)) epochs[static_cast<size_t>(k / 3)].push_back(i);
  }
  for (const auto& e : epochs) {
    REQUIRE(std::set<int32_t>(e.begin(), e.end()).size() == 9);  // 9 distinct of 10
  }
  CHECK(epochs[0] != epochs[1]);
  // The batch content is the augmented example: image normalised from the stub's bytes.
  const auto order = data::loader_sample_order(plain_options(3, 2), 10, 0);
  data::loader l2(data, plain_options(3, 0));
  const auto& b0 = l2.next();
  REQUIRE(indices_of(b0) == std::vector<int32_t>(order.begin(), order.end()));
  const auto e = data.load(order[1]);
  CHECK(b0.images.at(1, 2, 1, 3) == Approx((e.image.at(1, 3, 2) - 103.53f) / 57.375f));
}

TEST_CASE("loader: without drop_last the stream runs on across epochs, every sample once per epoch") {
  stub_dataset data(7);
  auto o = plain_options(3, 1);
  o.drop_last = false;
  data::loader l(data, o);
  std::vector<int32_t> seen;
  for (int k = 0; k < 7; ++k)  // 21 samples = 3 epochs of 7
    for (int32_t i : indices_of(l.next())) seen.push_back(i);
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::set<int32_t> s(seen.begin() + epoch * 7, seen.begin() + epoch * 7 + 7);
    REQUIRE(s.size() == 7);
  }
}

TEST_CASE("loader: batches are the same with 0, 1 and 3 threads (with augmentation and timing noise)") {
  data::synthetic_scenes_dataset scenes(9, 40, 56, 5);
  data::loader_options o;
  o.batch_size = 2;
  o.seed = 3;
  o.augment.crop_h = 24;
  o.augment.crop_w = 32;
  o.drop_last = false;
  std::vector<data::batch> reference;
  {
    o.threads = 0;
    data::loader l(scenes, o);
    for (int k = 0; k < 12; ++k) reference.push_back(l.next());
  }
  for (int threads : {1, 3}) {
    o.threads = threads;
    o.prefetch = threads == 3 ? 2 : 5;
    data::loader l(scenes, o);
    for (int k = 0; k < 12; ++k) require_equal(l.next(), reference[static_cast<size_t>(k)]);
  }
  // Timing noise in the dataset changes nothing either.
  stub_dataset slow(12, {}, 200);
  auto p = plain_options(4, 1);
  p.augment = o.augment;
  data::loader one(slow, p);
  p.threads = 3;
  data::loader three(slow, p);
  for (int k = 0; k < 6; ++k) require_equal(one.next(), three.next());
}

TEST_CASE("loader: seek(k) gives the batch sequential reading gives at k") {
  data::synthetic_scenes_dataset scenes(8, 32, 32, 1);
  data::loader_options o;
  o.batch_size = 3;
  o.augment.crop_h = o.augment.crop_w = 24;
  o.threads = 2;
  data::loader sequential(scenes, o);
  std::vector<data::batch> all;
  for (int k = 0; k < 7; ++k) all.push_back(sequential.next());
  data::loader resumed(scenes, o);
  resumed.next();
  resumed.seek(5);
  REQUIRE(resumed.iteration() == 5);
  require_equal(resumed.next(), all[5]);
  require_equal(resumed.next(), all[6]);
  resumed.seek(2);
  require_equal(resumed.next(), all[2]);
  require_equal(resumed.compute(4), all[4]);
  CHECK_THROWS_AS(resumed.seek(-1), value_error);
}

TEST_CASE("loader: a worker's data_error reaches next() with its type and message") {
  stub_dataset data(12, {5});
  for (int threads : {0, 2}) {
    auto o = plain_options(4, threads);
    o.shuffle = false;  // index 5 is in batch 1
    data::loader l(data, o);
    REQUIRE_NOTHROW(l.next());
    CHECK_THROWS_AS(l.next(), data::data_error);
    l.seek(1);
    CHECK_THROWS_WITH(l.next(), Catch::Contains("bad_5.png") && Catch::Contains("value 42"));
    REQUIRE(l.iteration() == 2);  // the failed iteration counts as consumed
    REQUIRE_NOTHROW(l.next());
  }
}

TEST_CASE("loader: skip_bad replaces bad samples deterministically, counts them and names the files") {
  stub_dataset data(12, {3, 7});
  auto o = plain_options(4, 2);
  o.skip_bad = true;
  std::vector<std::vector<int32_t>> seen;
  int64_t count = 0;
  for (int threads : {1, 3}) {
    o.threads = threads;
    data::loader l(data, o);
    std::vector<int32_t> all;
    for (int k = 0; k < 3; ++k)  // one full epoch (12 = 3 x 4)
      for (int32_t i : indices_of(l.next())) all.push_back(i);
    for (int32_t i : all) REQUIRE((i != 3 && i != 7));
    REQUIRE(all.size() == 12);
    seen.push_back(all);
    // Each bad index is loaded at least once per epoch (its own position) and counted.
    REQUIRE(l.bad_count() >= 2);
    if (threads == 1) count = l.bad_count();
    else REQUIRE(l.bad_count() == count);
    const auto files = l.bad_files();
    REQUIRE(files.size() == 2);
    CHECK_THAT(files[0], Catch::Contains("bad_3.png"));
    CHECK_THAT(files[1], Catch::Contains("bad_7.png"));
  }
  REQUIRE(seen[0] == seen[1]);
  // Every sample bad: a clear error instead of an endless search.
  stub_dataset broken(4, {0, 1, 2, 3});
  o.threads = 1;
  data::loader l(broken, o);
  CHECK_THROWS_WITH(l.next(), Catch::Contains("every sample") && Catch::Contains("bad_"));
}

TEST_CASE("loader: destroying mid-epoch with busy workers and a full queue does not deadlock") {
  stub_dataset slow(40, {}, 300);
  auto o = plain_options(2, 3);
  o.prefetch = 2;
  for (int reads = 0; reads < 3; ++reads) {
    data::loader l(slow, o);
    for (int k = 0; k < reads; ++k) l.next();
    if (reads == 2) std::this_thread::sleep_for(std::chrono::milliseconds(20));  // queue full
  }
  data::loader l(slow, o);
  l.next();
  CHECK(l.wait_seconds() > 0.0);  // the first batch had to be waited for
  SUCCEED("all loaders shut down");
}

TEST_CASE("loader: bad options name the values") {
  stub_dataset data(5);
  auto o = plain_options(8, 1);
  CHECK_THROWS_WITH(data::loader(data, o), Catch::Contains("5 samples") && Catch::Contains("batch_size 8"));
  o.batch_size = 0;
  CHECK_THROWS_AS(data::loader(data, o), value_error);
  // Images of different sizes without a crop cannot share a batch.
  class mixed : public stub_dataset {
   public:
    mixed() : stub_dataset(4) {}
    data::example load(size_t i) const override {
      return i % 2 ? stub_dataset(4, {}, 0, 6, 8).load(i) : stub_dataset(4, {}, 0, 5, 8).load(i);
    }
  } m;
  auto p = plain_options(4, 0);
  p.shuffle = false;
  data::loader l(m, p);
  CHECK_THROWS_WITH(l.next(), Catch::Contains("[3, 6, 8]") && Catch::Contains("[4, 3, 5, 8]"));
}

TEST_CASE("loader: real CamVid batches (skipped when the data is absent)") {
#ifdef SEGKIT_SHARED_DATA_DIR
  const std::string root = SEGKIT_SHARED_DATA_DIR "/camvid";
#else
  const std::string root = SEGKIT_GOLDEN_DIR "/../../../shared/data/camvid";
#endif
  if (!std::filesystem::exists(root + "/train.txt")) {
    WARN("skipped: CamVid absent (" << root << "/train.txt not found)");
    return;
  }
  data::camvid_dataset camvid(root, "train");
  data::loader_options o;
  o.batch_size = 2;
  o.threads = 2;
  o.augment.crop_h = 128;
  o.augment.crop_w = 160;
  data::loader l(camvid, o);
  for (int k = 0; k < 2; ++k) {
    const auto& b = l.next();
    REQUIRE(b.images.shape() == shape{2, 3, 128, 160});
    for (int64_t i = 0; i < b.labels.numel(); ++i) REQUIRE((b.labels[i] == 255 || (b.labels[i] >= 0 && b.labels[i] < 11)));
    for (int64_t i = 0; i < b.images.numel(); ++i) REQUIRE(std::abs(b.images[i]) < 3.f);  // (v - mean) / std
  }
}
