#!/usr/bin/env bash
# Prepares a GPU session's one run (docs/cuda.md, "How a GPU session runs the tests and
# benchmarks") on this machine. The lent GPU machines have nvcc, CMake, PyTorch and the
# CUDA 13 libraries as Python wheels (cuBLAS, cuDNN), but none of ambiseg's C++
# dependencies (xtensor, OpenBLAS, Catch2, Google Benchmark). Nothing can be fetched
# there, and a call carries at most 64 MiB. So the programs are built here, portable (no
# -march=native, no MPI, sm_90 for H100/H200), and packed with the shared libraries the
# GPU image lacks into .gpu-bundle/bundle.tar.xz (about 25 MB). scripts/gpu_run.sh unpacks
# and runs it there.
#
#   scripts/gpu_bundle.sh            builds build-gpu/ (Release) and writes .gpu-bundle/
# then, with the device tool:
#   run  command: bash scripts/gpu_run.sh   carry: [".gpu-bundle"]   timeout_s: 540
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${AMBISEG_GPU_BUILD_DIR:-build-gpu}
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DAMBISEG_CUDA=ON -DCMAKE_CUDA_COMPILER="$NVCC" \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DAMBISEG_NATIVE=OFF -DAMBISEG_MPI=OFF \
  -DAMBISEG_BUILD_TESTS=ON -DAMBISEG_BUILD_EXAMPLES=ON -DAMBISEG_BUILD_BENCHMARKS=ON
cmake --build "$BUILD" -j "$(nproc)" --target test_cuda bm_cuda_ops bm_cuda_unet ambiseg-cli

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bundle/bin" "$stage/bundle/lib"
cp "$BUILD/tests/test_cuda" "$BUILD/benchmarks/bm_cuda_ops" "$BUILD/benchmarks/bm_cuda_unet" \
   "$BUILD/apps/ambiseg" "$stage/bundle/bin/"
# The libraries outside glibc/libstdc++ and outside CUDA's own (which the GPU image has as
# the nvidia-* wheels, the same CUDA 13 sonames).
for program in "$stage"/bundle/bin/*; do
  ldd "$program" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libstdc++.so*|libgcc_s.so*|ld-linux*) ;;
    libcudart*|libcublas*|libcudnn*|libnccl*) ;;
    *) cp -L "$lib" "$stage/bundle/lib/" ;;
  esac
done
mkdir -p .gpu-bundle
grep -qx '/.gpu-bundle/' .git/info/exclude 2>/dev/null || echo '/.gpu-bundle/' >> .git/info/exclude
tar -C "$stage" -cJf .gpu-bundle/bundle.tar.xz bundle
ls -la .gpu-bundle/bundle.tar.xz
echo "carry .gpu-bundle and run: bash scripts/gpu_run.sh"
