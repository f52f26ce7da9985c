#!/usr/bin/env bash
# Set up, build and run the main example end to end (the README's example command).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD=${AMBISEG_BUILD_DIR:-build}
JOBS=${AMBISEG_JOBS:-$(nproc)}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAMBISEG_BUILD_EXAMPLES=ON ${AMBISEG_CMAKE_ARGS:-}
cmake --build "$BUILD" -j "$JOBS" --target custom_policies
"$BUILD/examples/custom_policies"
