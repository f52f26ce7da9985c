// ambiseg/ops/cuda/resample.cuh — 2×2 average pooling and bilinear ×2 up-sampling on the
// GPU.
//
//   pool:     x [N,C,H,W] -> y [N,C,H/2,W/2]   (H, W even)
//   bilinear: x [N,C,H,W] -> y [N,C,2H,2W]
// One thread per output element of the forward and per input element of the backward
// (grid-stride loops): every backward is a gather, so no atomics and the result does not
// depend on scheduling. The bilinear taps and gathers are ops/kernel_math.hpp's, the CPU
// kernel's own, in the same summation order.
#pragma once

#include "ambiseg/ops/cuda/api.hpp"
#include "ambiseg/ops/cuda/common.cuh"
#include "ambiseg/ops/kernel_math.hpp"

namespace ambiseg::ops::cuda_kernels {

namespace detail {

template <class T>
__global__ void avg_pool2x2_forward_kernel(const T* x, T* y, std::int64_t nc, std::int64_t h,
                                           std::int64_t w) {
  const std::int64_t ho = h / 2, wo = w / 2, n = nc * ho * wo;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const std::int64_t col = i % wo, row = (i / wo) % ho, p = i / (wo * ho);
    const T* s0 = x + (p * h + 2 * row) * w + 2 * col;
    const T* s1 = s0 + w;
    y[i] = T(0.25) * ((s0[0] + s0[1]) + (s1[0] + s1[1]));  // the CPU kernel's order
  }
}
template <class T>
__global__ void avg_pool2x2_backward_kernel(const T* dy, T* dx, std::int64_t nc, std::int64_t h,
                                            std::int64_t w) {
  const std::int64_t ho = h / 2, wo = w / 2, n = nc * h * w;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const std::int64_t col = i % w, row = (i / w) % h, p = i / (w * h);
    dx[i] = T(0.25) * dy[(p * ho + row / 2) * wo + col / 2];
  }
}

template <class T>
__global__ void upsample_bilinear2x_forward_kernel(const T* x, T* y, std::int64_t nc,
                                                   std::int64_t h, std::int64_t w,
                                                   bilinear_mode mode) {
  const std::int64_t h2 = 2 * h, w2 = 2 * w, n = nc * h2 * w2;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const std::int64_t col = i % w2, row = (i / w2) % h2, p = i / (w2 * h2);
    const kernel_math::bilinear_tap th = kernel_math::bilinear2x_tap(row, h, mode);
    const kernel_math::bilinear_tap tw = kernel_math::bilinear2x_tap(col, w, mode);
    y[i] = kernel_math::bilinear2x_sample(x + p * h * w, w, th, tw);
  }
}
template <class T>
__global__ void upsample_bilinear2x_backward_kernel(const T* dy, T* dx, std::int64_t nc,
                                                    std::int64_t h, std::int64_t w,
                                                    bilinear_mode mode) {
  const std::int64_t n = nc * h * w;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const std::int64_t col = i % w, row = (i / w) % h, p = i / (w * h);
    const kernel_math::bilinear_gather gr = kernel_math::bilinear2x_gather(row, h, mode);
    const kernel_math::bilinear_gather gc = kernel_math::bilinear2x_gather(col, w, mode);
    dx[i] = kernel_math::bilinear2x_gather_value(dy + p * 4 * h * w, w, gr, gc);
  }
}

}  // namespace detail

template <cuda_scalar T>
void avg_pool2x2_forward(in_view<T, cuda> x, tensor_view<T, cuda> y) {
  const char* op = "avg_pool2x2_forward";
  detail::avg_pool2x2_check(op, "x", x);
  expect_shape(op, "y", y, shape{x.size(0), x.size(1), x.size(2) / 2, x.size(3) / 2});
  if (y.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(y.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::avg_pool2x2_forward_kernel<T>)(
      x.data(), y.data(), x.size(0) * x.size(1), x.size(2), x.size(3));
  detail::check_launch("avg_pool2x2_forward_kernel");
}

template <cuda_scalar T>
void avg_pool2x2_backward(in_view<T, cuda> dy, tensor_view<T, cuda> dx) {
  const char* op = "avg_pool2x2_backward";
  detail::avg_pool2x2_check(op, "dx", dx);
  expect_shape(op, "dy", dy, shape{dx.size(0), dx.size(1), dx.size(2) / 2, dx.size(3) / 2});
  if (dx.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(dx.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::avg_pool2x2_backward_kernel<T>)(
      dy.data(), dx.data(), dx.size(0) * dx.size(1), dx.size(2), dx.size(3));
  detail::check_launch("avg_pool2x2_backward_kernel");
}

template <cuda_scalar T>
void upsample_bilinear2x_forward(in_view<T, cuda> x, tensor_view<T, cuda> y, bilinear_mode mode) {
  const char* op = "upsample_bilinear2x_forward";
  expect_rank(op, "x", x, 4);
  expect_shape(op, "y", y, shape{x.size(0), x.size(1), 2 * x.size(2), 2 * x.size(3)});
  if (y.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(y.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::upsample_bilinear2x_forward_kernel<T>)(
      x.data(), y.data(), x.size(0) * x.size(1), x.size(2), x.size(3), mode);
  detail::check_launch("upsample_bilinear2x_forward_kernel");
}

template <cuda_scalar T>
void upsample_bilinear2x_backward(in_view<T, cuda> dy, tensor_view<T, cuda> dx,
                                  bilinear_mode mode) {
  const char* op = "upsample_bilinear2x_backward";
  expect_rank(op, "dx", dx, 4);
  expect_shape(op, "dy", dy, shape{dx.size(0), dx.size(1), 2 * dx.size(2), 2 * dx.size(3)});
  if (dx.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(dx.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::upsample_bilinear2x_backward_kernel<T>)(
      dy.data(), dx.data(), dx.size(0) * dx.size(1), dx.size(2), dx.size(3), mode);
  detail::check_launch("upsample_bilinear2x_backward_kernel");
}

}  // namespace ambiseg::ops::cuda_kernels
