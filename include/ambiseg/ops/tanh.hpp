// ambiseg/ops/tanh.hpp — tanh, elementwise on any shape (the x-prediction head).
//   tanh_forward:  y = tanh(x)               (y may alias x)
//   tanh_backward: dx = dy·(1 − y²), from the saved output y (dx may alias dy)
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/tanh.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void tanh_forward(in_view<T, D> x, tensor_view<T, D> y) {
  expect_shape("tanh_forward", "y", y, x.shape());
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::tanh_forward(x.data(), y.data(), x.numel());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::tanh_forward<T>(x, y);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void tanh_backward(in_view<T, D> y, in_view<T, D> dy, tensor_view<T, D> dx) {
  expect_shape("tanh_backward", "dy", dy, y.shape());
  expect_shape("tanh_backward", "dx", dx, y.shape());
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::tanh_backward(y.data(), dy.data(), dx.data(), y.numel());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::tanh_backward<T>(y, dy, dx);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
