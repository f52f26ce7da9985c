// ambiseg/ops/cuda/mixed.cuh — the 16-bit operands of the mixed-precision GEMMs and
// convolutions (cuda_precision::bf16 and fp16, core/cuda_context.hpp).
//
// Every tensor the model stores stays float: activations, master weights, gradients,
// optimiser state. A GEMM or convolution on a bf16/fp16 context rounds its float inputs
// into 16-bit scratch (narrow), runs cuBLAS/cuDNN on tensor cores with float
// accumulation, and the result comes back as float: cuBLAS writes float C directly; a
// cuDNN convolution writes 16 bits, widened into the float output (or added into a float
// gradient). This is autocast at the op boundary: the rounding is that of PyTorch's
// autocast, without its 16-bit activations (ambiseg keeps the memory of an fp32 run).
//
//   narrow            dst16[i] = round16(src[i])       i < count
//   widen             dst[i]   = float(src16[i])
//   widen_accumulate  dst[i]  += float(src16[i])
#pragma once

#include <cstdint>

#include "ambiseg/core/low_precision.hpp"
#include "ambiseg/ops/cuda/common.cuh"

namespace ambiseg::ops::cuda_kernels::detail {

enum class half_format { bf16, fp16 };

inline half_format format_of(cuda_precision p) {
  return p == cuda_precision::fp16 ? half_format::fp16 : half_format::bf16;
}

template <half_format F>
AMBISEG_HD std::uint16_t round16(float f) {
  if constexpr (F == half_format::bf16) return bf16_bits(f);
  else return half_bits(f);
}
template <half_format F>
AMBISEG_HD float widen16(std::uint16_t h) {
  if constexpr (F == half_format::bf16) return bf16_float(h);
  else return half_float(h);
}

template <half_format F>
__global__ void narrow_kernel(const float* src, std::uint16_t* dst, std::int64_t count) {
  for (std::int64_t i = global_thread(); i < count; i += grid_stride()) dst[i] = round16<F>(src[i]);
}

template <half_format F, bool Accumulate>
__global__ void widen_kernel(const std::uint16_t* src, float* dst, std::int64_t count) {
  for (std::int64_t i = global_thread(); i < count; i += grid_stride()) {
    const float v = widen16<F>(src[i]);
    if constexpr (Accumulate) dst[i] += v;
    else dst[i] = v;
  }
}

inline void narrow(cudaStream_t stream, half_format f, const float* src, std::uint16_t* dst,
                   std::int64_t count) {
  if (count == 0) return;
  if (f == half_format::bf16)
    AMBISEG_LAUNCH(grid_for(count), block_threads, 0, stream, narrow_kernel<half_format::bf16>)(src, dst, count);
  else
    AMBISEG_LAUNCH(grid_for(count), block_threads, 0, stream, narrow_kernel<half_format::fp16>)(src, dst, count);
  check_launch("narrow_kernel");
}

template <bool Accumulate>
inline void widen(cudaStream_t stream, half_format f, const std::uint16_t* src, float* dst,
                  std::int64_t count) {
  if (count == 0) return;
  if (f == half_format::bf16)
    AMBISEG_LAUNCH(grid_for(count), block_threads, 0, stream,
                   widen_kernel<half_format::bf16, Accumulate>)(src, dst, count);
  else
    AMBISEG_LAUNCH(grid_for(count), block_threads, 0, stream,
                   widen_kernel<half_format::fp16, Accumulate>)(src, dst, count);
  check_launch("widen_kernel");
}

}  // namespace ambiseg::ops::cuda_kernels::detail
