#!/usr/bin/env bash
# segkit's one entry point for a fresh Debian machine. Installs what is missing, builds, runs.
#
#   scripts/run.sh            install, build (CPU), run the main job: train SaF on generated scenes
#   scripts/run.sh test       the same, then every test (ctest)
#   scripts/run.sh sanitize   build with AddressSanitizer + UBSan and run every test
#   scripts/run.sh cuda       configure and build the CUDA configuration (kernels, CUDA tests,
#                             kernel benchmarks); runs the CUDA tests, which report "Skipped"
#                             without a GPU
#   scripts/run.sh bench      build and run the benchmarks (installs python3-torch for the
#                             PyTorch baselines)
#   scripts/run.sh golden     regenerate tests/golden/ with PyTorch (installs python3-torch)
#
# Environment: BUILD_DIR (default build), JOBS (default: all cores), SEGKIT_WERROR (ON in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-demo}
jobs=${JOBS:-$(nproc)}
werror=${SEGKIT_WERROR:-OFF}
[ "${CI:-}" = "true" ] && werror=ON

need_packages() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "segkit: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

base_packages=(build-essential cmake libeigen3-dev catch2 libstb-dev libbenchmark-dev python3)
configure() {  # configure DIR [extra cmake args...]
  local dir=$1
  shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DSEGKIT_WERROR="$werror" "$@" >/dev/null
}

case "$mode" in
  demo | test)
    need_packages "${base_packages[@]}"
    dir=${BUILD_DIR:-build}
    # The benchmarks are built by `scripts/run.sh bench`, not here: compiling them in the test
    # run (bench_train_step alone instantiates four whole models) pushed CI past its 60
    # minutes on a slow spell of the 2-core machine (63.9 min on 2026-11-22).
    configure "$dir" -DSEGKIT_CUDA=OFF -DSEGKIT_BUILD_BENCHMARKS=OFF
    cmake --build "$dir" --parallel "$jobs"
    # The main job: SaF (quarter-width ResNet-18 + ResNet-decoder) trained on generated street
    # scenes, evaluated on held-out scenes, pictures of the fused prediction and level map.
    "$dir/examples/segkit_train" --dataset synthetic --iters 1000 --eval-every 500 \
      --eval-images 25 --preview 3 --out "${MAIN_JOB_OUT:-runs/main-job}"
    if [ "$mode" = test ]; then
      # Two test processes with two OpenMP threads each share two cores: with OpenMP's default
      # spin-waiting, the waiting threads starve the working ones (the ResNet-decoder
      # finite-difference test took 72 s under ctest and 1 s alone). PASSIVE threads sleep.
      OMP_WAIT_POLICY=PASSIVE ctest --test-dir "$dir" --output-on-failure --parallel "$jobs"
    fi
    ;;
  sanitize)
    need_packages "${base_packages[@]}"
    dir=${BUILD_DIR:-build-sanitize}
    # -O1 -g1: line tables are all a sanitizer report needs, and this pair compiles in half the
    # time of RelWithDebInfo's -O2 -g (40 s against 82 s for test_conv2d.cpp, 2026-11-22).
    # Compiling is nearly all of this stage: the sanitised tests run in about 30 s.
    configure "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
      -DSEGKIT_CUDA=OFF -DSEGKIT_BUILD_BENCHMARKS=OFF \
      -DSEGKIT_BUILD_EXAMPLES=OFF -DSEGKIT_NATIVE=OFF -DSEGKIT_SANITIZE=address,undefined \
      -DSEGKIT_CHECK_HEADERS=OFF
    # The whole-model parity tests (ResNet, HRNet, decoder, FCN, SaF, HFGD, OCR, the 50-layer
    # graph) are left out here: each is a large template instantiation that more than doubles
    # the sanitised build on 2 cores (CI must stay under 60 minutes), and the ops, layers,
    # losses, loader and trainer they are made of are all sanitised through their own tests.
    # The CPU stage runs them. SEGKIT_SANITIZE_ALL=1 builds and runs everything.
    # They are left out at configure time (SEGKIT_TESTS_EXCLUDE), not by naming the other
    # targets on the command line: CMake's top-level Makefile is .NOTPARALLEL, so a list of
    # --target goals builds one after the other on one core.
    heavy='^test_(resnet|resnet_decoder|hrnet|fcn|hfgd|ocr|saf|saf_model|saf_ablations|graph_fifty_layers|mac_counter)$'
    [ "${SEGKIT_SANITIZE_ALL:-0}" = 1 ] && heavy=''
    cmake "$dir" -DSEGKIT_TESTS_EXCLUDE="$heavy" >/dev/null
    cmake --build "$dir" --parallel "$jobs"
    skipped=consumer_project
    # Two test processes at once, two OpenMP threads each, would oversubscribe two cores.
    OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --test-dir "$dir" --output-on-failure --parallel "$jobs" -E "$skipped"
    ;;
  cuda)
    need_packages "${base_packages[@]}"
    export PATH=/usr/local/cuda/bin:$PATH
    dir=${BUILD_DIR:-build-cuda}
    configure "$dir" -DSEGKIT_CUDA=ON -DSEGKIT_BUILD_BENCHMARKS=ON
    # Header self-containment is checked once, by the CPU configuration's test (the CUDA
    # tests include the headers with SEGKIT_WITH_CUDA defined); repeating it here cost CI
    # several minutes of its 60. The kernel benchmarks are compiled (not run): their GPU
    # parts exist only in this configuration.
    cmake --build "$dir" --parallel "$jobs" --target segkit_cuda segkit_cuda_tests segkit_demo \
      segkit_kernel_benchmarks
    ctest --test-dir "$dir" --output-on-failure -R 'cuda_ops_match_cpu'
    ;;
  bench)
    need_packages "${base_packages[@]}" python3-torch
    dir=${BUILD_DIR:-build-bench}
    configure "$dir" -DSEGKIT_CUDA=OFF -DSEGKIT_BUILD_TESTS=OFF -DSEGKIT_BUILD_EXAMPLES=OFF
    cmake --build "$dir" --parallel "$jobs"
    for program in "$dir"/benchmarks/bench_*; do
      [ -x "$program" ] && "$program"
    done
    ;;
  golden)
    need_packages python3-torch python3-numpy
    # Debian's interpreter: it is the one python3-torch installs into (a pyenv or venv
    # python3 earlier on PATH would not see it).
    /usr/bin/python3 tests/reference/generate.py
    ;;
  *)
    sed -n '2,16p' "$0"
    exit 2
    ;;
esac
