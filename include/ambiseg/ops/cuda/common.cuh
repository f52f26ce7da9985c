// ambiseg/ops/cuda/common.cuh — launch geometry, block reductions and checks shared by
// the CUDA kernels. Compiled by nvcc only (through ops/cuda/kernels.cu).
//
// Reductions are deterministic: a fixed tree over a fixed block size, never atomics, so
// a result depends on the inputs and the launch shape only, not on scheduling.
#pragma once

#include <cuda_runtime.h>

// The CPU emulator of the CUDA runtime (tests/cuda_emulator, target test_cuda_emulated)
// compiles these kernels with the host compiler: it supplies the device built-ins and the
// launcher behind AMBISEG_LAUNCH. Its include directory exists only for that target.
#if defined(AMBISEG_CUDA_EMULATION)
#include "cuda_emulator/device.hpp"
#endif

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <limits>

#include "ambiseg/core/cuda_context.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/ops/shape_checks.hpp"

namespace ambiseg::ops::cuda_kernels::detail {

// The argument checks are the front ends' own (ops/shape_checks.hpp).
using ops::detail::attention_check;
using ops::detail::attention_dims;
using ops::detail::concat_check;
using ops::detail::group_norm_check;
using ops::detail::linear_check;
using ops::detail::present;
using ops::detail::spatial_extent;

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

// σ(x); shared by SiLU and the fused group norm + SiLU.
template <class T>
__device__ __forceinline__ T sigmoid(T x) {
  return T(1) / (T(1) + exp(-x));
}

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}
template <class T>
__device__ __forceinline__ T warp_max(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const T o = __shfl_down_sync(0xffffffffu, v, offset);
    v = o > v ? o : v;
  }
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// result. Safe to call repeatedly in one kernel: the leading barrier keeps a call from
// overwriting partials that the previous call's threads are still reading.
template <class T>
__device__ T block_sum(T v) {
  __shared__ T partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T r = lane < warps ? partial[lane] : T(0);
    r = warp_sum(r);
    if (lane == 0) partial[0] = r;
  }
  __syncthreads();
  return partial[0];
}

template <class T>
__device__ T block_max(T v) {
  __shared__ T partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T r = lane < warps ? partial[lane] : T(-INFINITY);
    r = warp_max(r);
    if (lane == 0) partial[0] = r;
  }
  __syncthreads();
  return partial[0];
}

// dst[i] += src[i] (parameter gradients accumulate; staging buffers are added in).
template <class T>
__global__ void accumulate_kernel(T* dst, const T* src, std::int64_t count) {
  for (std::int64_t i = global_thread(); i < count; i += grid_stride()) dst[i] += src[i];
}

template <class T>
inline void accumulate(cudaStream_t stream, T* dst, const T* src, std::int64_t count) {
  if (count == 0) return;
  AMBISEG_LAUNCH(grid_for(count), block_threads, 0, stream, accumulate_kernel<T>)(dst, src, count);
  check_launch("accumulate_kernel");
}

}  // namespace ambiseg::ops::cuda_kernels::detail
