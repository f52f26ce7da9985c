// ambiseg/ops/relu.hpp — ReLU, elementwise on any shape (the Probabilistic U-Net's
// activation).
//   relu_forward:  y = max(x, 0)                          (y may alias x; NaN passes through)
//   relu_backward: dx = dy where y > 0, else 0, from the saved output y (dx may alias dy)
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/relu.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void relu_forward(in_view<T, D> x, tensor_view<T, D> y) {
  expect_shape("relu_forward", "y", y, x.shape());
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::relu_forward(x.data(), y.data(), x.numel());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::relu_forward<T>(x, y);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void relu_backward(in_view<T, D> y, in_view<T, D> dy, tensor_view<T, D> dx) {
  expect_shape("relu_backward", "dy", dy, y.shape());
  expect_shape("relu_backward", "dx", dx, y.shape());
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::relu_backward(y.data(), dy.data(), dx.data(), y.numel());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::relu_backward<T>(y, dy, dx);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
