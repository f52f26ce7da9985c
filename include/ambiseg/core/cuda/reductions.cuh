// ambiseg/core/cuda/reductions.cuh — warp and block reductions for the kernels of every
// module. Deterministic: a fixed tree over a fixed block size, never atomics, so a result
// depends on the inputs and the launch shape only, not on scheduling.
#pragma once

#include <cmath>

#include "ambiseg/core/cuda/launch.cuh"

namespace ambiseg::gpu {

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

}  // namespace ambiseg::gpu
