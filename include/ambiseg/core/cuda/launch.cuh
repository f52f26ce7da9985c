// ambiseg/core/cuda/launch.cuh — what every module's CUDA kernels share: the launch macro,
// grid sizing, thread indices and the after-launch check. Device code: compiled by nvcc
// (src/cuda/*.cu) or by the host compiler for the CPU emulator, never by plain host code.
#pragma once

#include <cuda_runtime.h>

// The CPU emulator of the CUDA runtime (tests/cuda_emulator, target test_cuda_emulated)
// compiles the kernels with the host compiler: it supplies the device built-ins and the
// launcher behind AMBISEG_LAUNCH. Its include directory exists only for that target.
#if defined(AMBISEG_CUDA_EMULATION)
#include "cuda_emulator/device.hpp"
#endif

#include <algorithm>
#include <cstdint>
#include <limits>

#include "ambiseg/core/cuda_error.hpp"
#include "ambiseg/core/error.hpp"

// AMBISEG_LAUNCH(grid, block, shared_bytes, stream, kernel)(args...) is
// kernel<<<grid, block, shared_bytes, stream>>>(args...). The kernel comes last because a
// template with several arguments (k<T, Silu>) contains commas; the macro lets the CPU
// emulator, which has no <<<>>>, run the same launch sites.
#if defined(AMBISEG_CUDA_EMULATION)
#define AMBISEG_LAUNCH(grid, block, shared_bytes, stream, ...) \
  ::ambiseg_emu::launcher(#__VA_ARGS__, __VA_ARGS__, grid, block, shared_bytes, stream)
#else
#define AMBISEG_LAUNCH(grid, block, shared_bytes, stream, ...) \
  __VA_ARGS__<<<grid, block, shared_bytes, stream>>>
#endif

namespace ambiseg::gpu {

constexpr int block_threads = 256;
// Grid-stride loops cover any extent; more blocks than this only add scheduling overhead.
constexpr std::int64_t max_grid_blocks = 65535;

inline unsigned grid_for(std::int64_t count, int threads = block_threads) {
  const std::int64_t blocks = (count + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, max_grid_blocks));
}

// Grids over rows: one block per row, at most 2^31 − 1 rows.
inline unsigned row_grid(const char* op, std::int64_t rows) {
  throw_if<shape_error>(rows > std::numeric_limits<int>::max(), op, ": ", rows,
                        " rows exceed one CUDA grid");
  return static_cast<unsigned>(rows);
}

// After every launch: reports a bad configuration at once, without synchronising.
inline void check_launch(const char* kernel) { cuda_check(cudaGetLastError(), kernel); }

__device__ __forceinline__ std::int64_t global_thread() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::int64_t grid_stride() {
  return static_cast<std::int64_t>(gridDim.x) * blockDim.x;
}

}  // namespace ambiseg::gpu
