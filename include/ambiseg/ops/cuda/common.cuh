// ambiseg/ops/cuda/common.cuh — what the op kernels share beyond core/cuda/: the front
// ends' argument checks, σ(x) and gradient accumulation. Compiled by nvcc only (through
// src/cuda/ops.cu).
#pragma once

#include <cstdint>
#include <cmath>

#include "ambiseg/core/cuda/launch.cuh"
#include "ambiseg/core/cuda/reductions.cuh"
#include "ambiseg/core/cuda_context.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/ops/shape_checks.hpp"

namespace ambiseg::ops::cuda_kernels::detail {

using namespace ::ambiseg::gpu;

// The argument checks are the front ends' own (ops/shape_checks.hpp).
using ops::detail::attention_check;
using ops::detail::attention_dims;
using ops::detail::avg_pool2x2_check;
using ops::detail::concat_check;
using ops::detail::diag_gaussian_kl_check;
using ops::detail::expect_shape_if_present;
using ops::detail::group_norm_check;
using ops::detail::latent_check;
using ops::detail::linear_check;
using ops::detail::present;
using ops::detail::sigmoid_cross_entropy_check;
using ops::detail::spatial_extent;
using ops::detail::spatial_mean_check;

// σ(x); shared by SiLU and the fused group norm + SiLU.
template <class T>
__device__ __forceinline__ T sigmoid(T x) {
  return T(1) / (T(1) + exp(-x));
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
