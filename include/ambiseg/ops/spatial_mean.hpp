// ambiseg/ops/spatial_mean.hpp — the global average over H×W (the Probabilistic U-Net's
// encoders reduce their last feature map to one vector per image this way).
//   x [N,C,H,W] -> y [N,C] = mean over H×W (summed in double on the CPU, and on CUDA in
//   double by one block per (n, c) with a fixed tree); H·W must be positive.
//   backward: dy [N,C] -> dx [N,C,H,W] = dy/(H·W) broadcast (assigned)
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/spatial_mean.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void spatial_mean_forward(in_view<T, D> x, tensor_view<T, D> y) {
  const char* op = "spatial_mean_forward";
  detail::spatial_mean_check(op, "x", x);
  expect_shape(op, "y", y, shape{x.size(0), x.size(1)});
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::spatial_mean_forward(x.data(), y.data(), x.size(0) * x.size(1),
                                      x.size(2) * x.size(3));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::spatial_mean_forward<T>(x, y);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void spatial_mean_backward(in_view<T, D> dy, tensor_view<T, D> dx) {
  const char* op = "spatial_mean_backward";
  detail::spatial_mean_check(op, "dx", dx);
  expect_shape(op, "dy", dy, shape{dx.size(0), dx.size(1)});
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::spatial_mean_backward(dy.data(), dx.data(), dx.size(0) * dx.size(1),
                                       dx.size(2) * dx.size(3));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::spatial_mean_backward<T>(dy, dx);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
