#!/usr/bin/env bash
# Set up, build and run the whole test suite (the README's test command; .ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD=${AMBISEG_BUILD_DIR:-build}
JOBS=${AMBISEG_JOBS:-$(nproc)}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAMBISEG_BUILD_TESTS=ON \
  -DAMBISEG_BUILD_EXAMPLES=ON -DAMBISEG_BUILD_BENCHMARKS=ON ${AMBISEG_CMAKE_ARGS:-}
cmake --build "$BUILD" -j "$JOBS"
cd "$BUILD" && ctest --output-on-failure -j "$JOBS"
