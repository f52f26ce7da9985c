#!/usr/bin/env bash
# Set up, build and run the whole test suite (the README's test command; .ci/run calls it).
#   scripts/test.sh              the normal suite, in build/ (CUDA backend when nvcc exists),
#                                then the Python package's (scripts/test_python.sh)
#   scripts/test.sh --sanitize   the same tests under AddressSanitizer + UBSan, in build-asan/
#                                (also AMBISEG_SANITIZE=1); CUDA off, no examples/benchmarks
set -euo pipefail
cd "$(dirname "$0")/.."
SANITIZE=${AMBISEG_SANITIZE:-0}
for arg in "$@"; do
  case "$arg" in
    --sanitize) SANITIZE=1 ;;
    *) echo "usage: $0 [--sanitize]" >&2; exit 2 ;;
  esac
done
bash scripts/setup.sh
JOBS=${AMBISEG_JOBS:-$(nproc)}

if [[ "$SANITIZE" == 1 ]]; then
  BUILD=${AMBISEG_BUILD_DIR:-build-asan}
  # The sanitizer build has no CUDA: nvcc code is not instrumented and the CPU emulator of
  # CUDA is left out (tests/CMakeLists.txt says why). Examples and benchmarks are not tests.
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAMBISEG_SANITIZE=ON -DAMBISEG_CUDA=OFF \
    -DAMBISEG_BUILD_TESTS=ON -DAMBISEG_BUILD_EXAMPLES=OFF -DAMBISEG_BUILD_BENCHMARKS=OFF \
    ${AMBISEG_CMAKE_ARGS:-}
  cmake --build "$BUILD" -j "$JOBS"
  # Every finding fails its test: UBSan aborts (-fno-sanitize-recover), ASan reports leaks
  # too. Two OpenMP threads keep ASan's per-thread memory small on the CI machine (the test
  # areas set their own count: tests/CMakeLists.txt).
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
  cd "$BUILD" && ctest --output-on-failure -j "$JOBS"
  exit
fi

BUILD=${AMBISEG_BUILD_DIR:-build}
# The CUDA backend is compiled and linked whenever the toolkit is installed; its tests
# run when a GPU is present and skip cleanly otherwise. AMBISEG_CUDA=OFF turns it off.
CUDA_ARGS=()
NVCC=$(command -v nvcc || true)
[[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]] && NVCC=/usr/local/cuda/bin/nvcc
if [[ -n "$NVCC" && "${AMBISEG_CUDA:-ON}" != OFF ]]; then
  CUDA_ARGS=(-DAMBISEG_CUDA=ON "-DCMAKE_CUDA_COMPILER=$NVCC")
fi
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAMBISEG_BUILD_TESTS=ON \
  -DAMBISEG_BUILD_EXAMPLES=ON -DAMBISEG_BUILD_BENCHMARKS=ON "${CUDA_ARGS[@]}" ${AMBISEG_CMAKE_ARGS:-}
cmake --build "$BUILD" -j "$JOBS"
(cd "$BUILD" && ctest --output-on-failure -j "$JOBS")
# The Python package (pyproject.toml): built with pip, tested with pytest.
bash scripts/test_python.sh "$BUILD"
