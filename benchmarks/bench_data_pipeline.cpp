// benchmarks/bench_data_pipeline.cpp — how many training samples per second the data pipeline
// (decode + mmseg augmentation + batching, data::loader) delivers with 1 and 2 threads, against
// the rate at which the trainer consumes them.
//
// Data: CamVid train (480x360 PNG) from SEGKIT_BENCHMARK_DIR/../../shared/data/camvid or
// --data-root; when absent, synthetic scenes of the same size (printed). Config: CamVid's
// training pipeline as segkit_train's camvid defaults — random scale 0.25-1.0 of 480x360,
// crop 192x192 (--crop HxW), flip, photometric distortion, batch 8 (--batch). Each configuration runs for --seconds (default 5) after one
// warm-up batch; the dataset is read in the loader's shuffled order, so PNG decoding is real
// work (the OS file cache is warm after the first pass).
// The consumer: the images/s of fcn-resnet18 training steps (forward, losses, backward, SGD
// update) on the loader's own batches at this batch and crop, timed here in the same run
// (--consumer-rate IMAGES_PER_S replaces it with a rate you measured elsewhere). The verdict
// says whether the loader keeps up and with what headroom. On a 2-core machine the trainer and
// the loader threads share the CPU, so the loader must need far less than a core.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "segkit/data/augment.hpp"
#include "segkit/data/datasets.hpp"
#include "segkit/data/loader.hpp"
#include "segkit/data/synthetic_scenes.hpp"
#include "segkit/models/zoo.hpp"
#include "segkit/train/optimizer.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

struct run_result {
  double samples_per_s = 0, wait_s = 0, elapsed = 0;
  int64_t batches = 0;
};

run_result measure(const segkit::data::dataset& data, segkit::data::loader_options o, double seconds) {
  segkit::data::loader l(data, o);
  l.next();  // warm-up: threads started, queue filling
  run_result r;
  const double wait0 = l.wait_seconds();
  const auto t0 = clock_type::now();
  while ((r.elapsed = seconds_since(t0)) < seconds) {
    l.next();
    ++r.batches;
  }
  r.samples_per_s = static_cast<double>(r.batches * o.batch_size) / r.elapsed;
  r.wait_s = l.wait_seconds() - wait0;
  return r;
}

// Images/s of fcn-resnet18 training steps on real batches: one warm-up step, then `steps`.
double consumer_images_per_s(const segkit::data::dataset& data, segkit::data::loader_options o,
                             int steps) {
  using model_type = segkit::models::zoo_models<>::fcn_resnet18;
  model_type model(data.info().num_classes, /*seed=*/1);
  o.threads = 2;
  segkit::data::loader batches(data, o);
  model.setup({o.batch_size, 3, o.augment.crop_h, o.augment.crop_w});
  segkit::train::sgd_options sgd;
  sgd.lr = 0.01, sgd.momentum = 0.9, sgd.weight_decay = 5e-4;
  segkit::train::sgd<segkit::cpu> optimizer(segkit::nn::parameters_of<segkit::cpu>(model), sgd);
  auto step = [&] {
    const auto& b = batches.next();
    model.zero_grad();
    model.forward_backward(b.images, b.labels);
    optimizer.step();
  };
  step();
  const auto t0 = clock_type::now();
  for (int i = 0; i < steps; ++i) step();
  return steps * o.batch_size / seconds_since(t0);
}

void usage() {
  std::printf(
      "usage: bench_data_pipeline [--consumer-rate IMAGES_PER_S] [--data-root DIR] [--crop HxW]\n"
      "                           [--batch N] [--seconds S]\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string root = SEGKIT_BENCHMARK_DIR "/../../shared/data/camvid";
  double consumer_rate = 0, seconds = 5;
  int crop_h = 192, crop_w = 192, batch = 8;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help") {
      usage();
      return 0;
    }
    if (i + 1 >= argc) {
      usage();
      return 2;
    }
    const std::string value = argv[++i];
    if (arg == "--consumer-rate") consumer_rate = std::atof(value.c_str());
    else if (arg == "--data-root") root = value;
    else if (arg == "--batch") batch = std::atoi(value.c_str());
    else if (arg == "--seconds") seconds = std::atof(value.c_str());
    else if (arg == "--crop") {
      if (std::sscanf(value.c_str(), "%dx%d", &crop_h, &crop_w) != 2) {
        std::fprintf(stderr, "bench_data_pipeline: --crop wants HxW, got %s\n", value.c_str());
        return 2;
      }
    } else {
      usage();
      return 2;
    }
  }

  std::unique_ptr<segkit::data::dataset> data;
  std::string source;
  if (std::filesystem::exists(root + "/train.txt")) {
    data = std::make_unique<segkit::data::camvid_dataset>(root, "train");
    source = "CamVid train at " + std::filesystem::weakly_canonical(root).string();
  } else {
    std::printf("CamVid absent (%s/train.txt not found): using 367 synthetic 360x480 scenes instead\n",
                root.c_str());
    data = std::make_unique<segkit::data::synthetic_scenes_dataset>(367, 360, 480, 0);
    source = "synthetic scenes 360x480";
  }

  segkit::data::loader_options o;
  o.batch_size = batch;
  o.augment.crop_h = crop_h;
  o.augment.crop_w = crop_w;
  o.augment.min_scale = 0.25;
  o.augment.max_scale = 1.0;
  o.seed = 1;
  o.prefetch = 4;

  // Where the time goes, single-threaded, over the first 16 samples.
  double load_s = 0, augment_s = 0;
  const size_t probe = std::min<size_t>(16, data->size());
  for (size_t i = 0; i < probe; ++i) {
    auto t0 = clock_type::now();
    const auto e = data->load(i);
    load_s += seconds_since(t0);
    t0 = clock_type::now();
    const auto s = segkit::data::augment(e, o.augment, i);
    augment_s += seconds_since(t0);
  }
  std::printf("data pipeline: %s, %zu samples; scale 0.25-1.0, crop %dx%d, flip, photometric; batch %d\n",
              source.c_str(), data->size(), crop_h, crop_w, batch);
  std::printf("per sample, one thread: decode %.2f ms, augment %.2f ms\n",
              1e3 * load_s / static_cast<double>(probe), 1e3 * augment_s / static_cast<double>(probe));

  double best = 0;
  for (int threads : {1, 2}) {
    o.threads = threads;
    const run_result r = measure(*data, o, seconds);
    best = std::max(best, r.samples_per_s);
    std::printf("threads %d: %7.1f samples/s  (%lld batches in %.1f s; next() waited %.2f s = %.0f%%)\n",
                threads, r.samples_per_s, static_cast<long long>(r.batches), r.elapsed, r.wait_s,
                100.0 * r.wait_s / r.elapsed);
  }
  const bool measured = consumer_rate <= 0;
  if (measured) consumer_rate = consumer_images_per_s(*data, o, 4);
  {
    const double headroom = best / consumer_rate;
    std::printf("trainer (%s) consumes %.1f images/s: the loader supplies %.1fx that%s\n",
                measured ? "fcn-resnet18 steps timed here, 2 threads" : "--consumer-rate",
                consumer_rate, headroom,
                headroom >= 1.2 ? " -> data is not the bottleneck"
                : headroom >= 1.0 ? " -> barely keeps up; expect some data wait"
                                  : " -> DATA-BOUND: the trainer will wait on the loader");
  }
  return 0;
}
