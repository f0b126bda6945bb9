// segkit/data/loader.hpp — the training data loader: background threads decode and augment
// batches into a bounded prefetch queue; every batch is reproducible from its iteration number.
// Provides: data::loader_options, data::batch, data::loader (next, seek, iteration,
// batches_per_epoch, bad_count, bad_files, wait_seconds), data::loader_sample_order (which
// dataset index fills slot j of batch k, without loading).
// Order: sample slot g = k * batch_size + j of batch k. With drop_last, an epoch is
// floor(size / batch_size) batches: epoch = k / batches_per_epoch, position in the epoch's
// permutation = (k % batches_per_epoch) * batch_size + j (the last size % batch_size samples of
// each permutation are skipped). Without drop_last the sample stream runs on across epochs
// (mmseg's InfiniteSampler): epoch = g / size, position = g % size; every batch is full.
// The epoch's permutation is a Fisher-Yates shuffle seeded by mix_seed(seed, epoch) (identity
// without shuffle); slot g's augmentation seed is mix_seed(seed ^ augment_salt, g).
// Requires: batch_size >= 1, prefetch >= 1, threads >= 0 (0 = decode in next(), no thread),
// a non-empty dataset with size >= batch_size under drop_last (value_error naming the values);
// augment crop_h, crop_w > 0 or equal-size images (a batch needs one size: shape_error naming
// the sample's shape and the batch's otherwise).
// Guarantees: batch k is a pure function of (dataset, options except threads / prefetch, k):
// independent of thread count and timing. next() returns a reference valid until the next call
// of next() / seek(). A worker's exception reaches next() as the original object (type and
// message intact, std::rethrow_exception); the failed iteration counts as consumed. With
// skip_bad, a sample whose load() throws data_error is replaced by the next position of the
// same permutation (wrapping), deterministically; bad_count() counts replacements in the
// batches next() returned, bad_files() lists each bad sample's error message (which names the
// file) once, in dataset index order. The destructor stops the workers and joins them (a worker
// finishes the batch it is on; nothing deadlocks mid-epoch).
#pragma once
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "segkit/data/augment.hpp"
#include "segkit/data/dataset.hpp"
#include "segkit/data/random.hpp"

namespace segkit::data {

struct loader_options {
  int batch_size = 8;
  augment_options augment;
  uint64_t seed = 0;
  int threads = 2;   // background decode threads; 0 = synchronous in next()
  int prefetch = 4;  // batches decoded ahead of the consumer at most
  bool skip_bad = false;
  bool shuffle = true;
  bool drop_last = true;
};

struct batch {
  host_tensor<float> images;    // [N, 3, H, W]
  host_tensor<int32_t> labels;  // [N, H, W]
  int64_t iteration = -1;
};

constexpr uint64_t augment_salt = 0xA56B3E1D2C4F9071ull;

// The permutation of [0, size) for one epoch.
inline std::vector<size_t> epoch_permutation(size_t size, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<size_t> order(size);
  std::iota(order.begin(), order.end(), size_t{0});
  if (!shuffle) return order;
  rng r(mix_seed(seed, static_cast<uint64_t>(epoch)));
  for (size_t i = size; i > 1; --i) {
    const auto j = static_cast<size_t>(r.uniform_int(0, static_cast<int64_t>(i) - 1));
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

// Epoch and position in the epoch's permutation of slot j of batch k (see the header comment).
inline std::pair<int64_t, size_t> loader_slot(const loader_options& o, size_t size, int64_t k, int j) {
  const auto n = static_cast<int64_t>(o.batch_size), s = static_cast<int64_t>(size);
  if (o.drop_last) {
    const int64_t per_epoch = s / n;
    return {k / per_epoch, static_cast<size_t>((k % per_epoch) * n + j)};
  }
  const int64_t g = k * n + j;
  return {g / s, static_cast<size_t>(g % s)};
}

// Dataset indices of batch k before any skip_bad replacement.
inline std::vector<size_t> loader_sample_order(const loader_options& o, size_t size, int64_t k) {
  std::vector<size_t> out;
  int64_t cached_epoch = -1;
  std::vector<size_t> perm;
  for (int j = 0; j < o.batch_size; ++j) {
    const auto [epoch, pos] = loader_slot(o, size, k, j);
    if (epoch != cached_epoch) {
      perm = epoch_permutation(size, o.seed, epoch, o.shuffle);
      cached_epoch = epoch;
    }
    out.push_back(perm[pos]);
  }
  return out;
}

class loader {
 public:
  loader(const dataset& data, loader_options options) : data_(data), options_(std::move(options)) {
    const auto& o = options_;
    require<value_error>(o.batch_size >= 1, "loader: batch_size ", o.batch_size, " must be >= 1");
    require<value_error>(o.prefetch >= 1, "loader: prefetch ", o.prefetch, " must be >= 1");
    require<value_error>(o.threads >= 0, "loader: threads ", o.threads, " must be >= 0");
    require<value_error>(data.size() >= 1, "loader: dataset '", data.info().name, "' is empty");
    require<value_error>(!o.drop_last || data.size() >= static_cast<size_t>(o.batch_size),
                         "loader: dataset '", data.info().name, "' has ", data.size(),
                         " samples, fewer than batch_size ", o.batch_size, " (with drop_last)");
    start(0);
  }
  ~loader() { stop(); }
  loader(const loader&) = delete;
  loader& operator=(const loader&) = delete;

  // The batch of iteration iteration(); then iteration() advances by one.
  const batch& next() {
    produced p;
    if (options_.threads == 0) {
      p = produce(consumer_);
    } else {
      std::unique_lock<std::mutex> lock(mutex_);
      const int64_t k = consumer_;
      if (ready_.count(k) == 0) {
        const auto t0 = std::chrono::steady_clock::now();
        cv_.wait(lock, [&] { return ready_.count(k) != 0; });
        wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      auto it = ready_.find(k);
      p = std::move(it->second);
      ready_.erase(it);
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++consumer_;
    }
    cv_.notify_all();
    if (p.error) std::rethrow_exception(p.error);
    bad_count_ += static_cast<int64_t>(p.bad.size());
    for (auto& [index, message] : p.bad) bad_.emplace(index, std::move(message));
    current_ = std::move(p.result);
    return current_;
  }

  // The next next() returns iteration `k`'s batch (resume). Prefetched batches are dropped.
  void seek(int64_t k) {
    require<value_error>(k >= 0, "loader::seek: iteration ", k, " must be >= 0");
    stop();
    start(k);
  }

  int64_t iteration() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return consumer_;
  }
  int64_t batches_per_epoch() const {
    const auto s = static_cast<int64_t>(data_.size()), n = static_cast<int64_t>(options_.batch_size);
    return options_.drop_last ? s / n : (s + n - 1) / n;
  }
  const loader_options& options() const { return options_; }
  int64_t bad_count() const { return bad_count_; }
  std::vector<std::string> bad_files() const {
    std::vector<std::string> out;
    for (const auto& entry : bad_) out.push_back(entry.second);
    return out;
  }
  double wait_seconds() const { return wait_seconds_; }

  // Batch k computed directly on the calling thread (what the workers run).
  batch compute(int64_t k) const {
    produced p = produce(k);
    if (p.error) std::rethrow_exception(p.error);
    return std::move(p.result);
  }

 private:
  struct produced {
    batch result;
    std::exception_ptr error;
    std::vector<std::pair<size_t, std::string>> bad;
  };

  produced produce(int64_t k) const {
    produced p;
    try {
      const auto& o = options_;
      const size_t size = data_.size();
      int64_t cached_epoch = -1;
      std::vector<size_t> perm;
      for (int j = 0; j < o.batch_size; ++j) {
        const auto [epoch, pos] = loader_slot(o, size, k, j);
        if (epoch != cached_epoch) {
          perm = epoch_permutation(size, o.seed, epoch, o.shuffle);
          cached_epoch = epoch;
        }
        example e;
        for (size_t attempt = 0;; ++attempt) {
          const size_t index = perm[(pos + attempt) % size];
          try {
            e = data_.load(index);
            break;
          } catch (const data_error& error) {
            if (!o.skip_bad) throw;
            p.bad.emplace_back(index, error.what());
            if (attempt + 1 >= size)
              throw data_error("loader: every sample of dataset '" + data_.info().name +
                               "' failed to load (skip_bad); the last: " + error.what());
          }
        }
        const uint64_t g = static_cast<uint64_t>(k) * static_cast<uint64_t>(o.batch_size) +
                           static_cast<uint64_t>(j);
        augmented_sample s = augment(e, o.augment, mix_seed(o.seed ^ augment_salt, g));
        if (j == 0) {
          const int64_t h = s.label.size(0), w = s.label.size(1);
          p.result.images = host_tensor<float>(shape{o.batch_size, 3, h, w});
          p.result.labels = host_tensor<int32_t>(shape{o.batch_size, h, w});
        }
        const shape& bs = p.result.images.shape();
        require<shape_error>(s.image.shape() == shape{3, bs[2], bs[3]}, "loader: sample ",
                             e.image_path, " augments to shape ", s.image.shape().to_string(),
                             " but the batch has shape ",
                             p.result.images.shape().to_string(),
                             "; set augment crop_h / crop_w for images of different sizes");
        std::copy(s.image.data(), s.image.data() + s.image.numel(),
                  p.result.images.data() + j * s.image.numel());
        std::copy(s.label.data(), s.label.data() + s.label.numel(),
                  p.result.labels.data() + j * s.label.numel());
      }
      p.result.iteration = k;
    } catch (...) {
      p.error = std::current_exception();
    }
    return p;
  }

  void start(int64_t k) {
    consumer_ = k;
    claimed_ = k;
    stopping_ = false;
    ready_.clear();
    for (int t = 0; t < options_.threads; ++t) workers_.emplace_back([this] { work(); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  void work() {
    for (;;) {
      int64_t k;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stopping_ || claimed_ < consumer_ + options_.prefetch; });
        if (stopping_) return;
        k = claimed_++;
      }
      produced p = produce(k);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) return;
        ready_.emplace(k, std::move(p));
      }
      cv_.notify_all();
    }
  }

  const dataset& data_;
  loader_options options_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::map<int64_t, produced> ready_;
  int64_t consumer_ = 0, claimed_ = 0;
  bool stopping_ = false;
  batch current_;
  int64_t bad_count_ = 0;
  std::map<size_t, std::string> bad_;
  double wait_seconds_ = 0;
};

}  // namespace segkit::data
