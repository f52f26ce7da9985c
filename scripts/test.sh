#!/usr/bin/env bash
# Set up, build and run the whole test suite (the README's test command; .ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD=${AMBISEG_BUILD_DIR:-build}
JOBS=${AMBISEG_JOBS:-$(nproc)}
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
cd "$BUILD" && ctest --output-on-failure -j "$JOBS"
