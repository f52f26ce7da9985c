// ambiseg/ops/silu.hpp — SiLU (swish), elementwise on any shape.
//   silu_forward:  y = x·σ(x)       (y may alias x)
//   silu_backward: dx = dy·σ'(x)    (dx may alias dy)
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/silu.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void silu_forward(in_view<T, D> x, tensor_view<T, D> y) {
  expect_shape("silu_forward", "y", y, x.shape());
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer("silu_forward", {});
    cpu_kernels::silu_forward(x.data(), y.data(), x.numel());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::silu_forward<T>(x, y);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void silu_backward(in_view<T, D> x, in_view<T, D> dy, tensor_view<T, D> dx) {
  expect_shape("silu_backward", "dy", dy, x.shape());
  expect_shape("silu_backward", "dx", dx, x.shape());
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer("silu_backward", {});
    cpu_kernels::silu_backward(x.data(), dy.data(), dx.data(), x.numel());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::silu_backward<T>(x, dy, dx);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
