// ambiseg/ops/avg_pool.hpp — 2×2 average pooling with stride 2 (the Probabilistic U-Net's
// down-sampling, nn.AvgPool2d(2, 2, 0, ceil_mode=True), which is the plain 2×2 mean for
// even extents; odd H or W throw shape_error).
//   x [N,C,H,W] -> y [N,C,H/2,W/2];  backward: dx [N,C,H,W] = ¼·dy spread over each block
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/avg_pool.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void avg_pool2x2_forward(in_view<T, D> x, tensor_view<T, D> y) {
  const char* op = "avg_pool2x2_forward";
  detail::avg_pool2x2_check(op, "x", x);
  expect_shape(op, "y", y, shape{x.size(0), x.size(1), x.size(2) / 2, x.size(3) / 2});
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::avg_pool2x2_forward(x.data(), y.data(), x.size(0) * x.size(1), x.size(2),
                                     x.size(3));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::avg_pool2x2_forward<T>(x, y);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void avg_pool2x2_backward(in_view<T, D> dy, tensor_view<T, D> dx) {
  const char* op = "avg_pool2x2_backward";
  detail::avg_pool2x2_check(op, "dx", dx);
  expect_shape(op, "dy", dy, shape{dx.size(0), dx.size(1), dx.size(2) / 2, dx.size(3) / 2});
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::avg_pool2x2_backward(dy.data(), dx.data(), dx.size(0) * dx.size(1), dx.size(2),
                                      dx.size(3));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::avg_pool2x2_backward<T>(dy, dx);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
