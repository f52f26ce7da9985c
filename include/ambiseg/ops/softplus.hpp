// ambiseg/ops/softplus.hpp — softplus, elementwise on any shape (PHiSeg's σ heads).
//   softplus_forward:  y = log(1 + eˣ), formed as max(x, 0) + log1p(e^−|x|)   (y may alias x)
//   softplus_backward: dx = dy·sigmoid(x), from the saved input x              (dx may alias dy)
// Values are formed in double and rounded to T once.
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/kernel_math_sigma.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void softplus_forward(in_view<T, D> x, tensor_view<T, D> y) {
  expect_shape("softplus_forward", "y", y, x.shape());
  if constexpr (std::same_as<D, cpu>) {
    for (std::int64_t i = 0; i < x.numel(); ++i)
      y.data()[i] = static_cast<T>(kernel_math::softplus(static_cast<double>(x.data()[i])));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::softplus_forward<T>(x, y);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void softplus_backward(in_view<T, D> x, in_view<T, D> dy, tensor_view<T, D> dx) {
  expect_shape("softplus_backward", "dy", dy, x.shape());
  expect_shape("softplus_backward", "dx", dx, x.shape());
  if constexpr (std::same_as<D, cpu>) {
    for (std::int64_t i = 0; i < x.numel(); ++i)
      dx.data()[i] = static_cast<T>(static_cast<double>(dy.data()[i]) *
                                    kernel_math::softplus_grad(static_cast<double>(x.data()[i])));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::softplus_backward<T>(x, dy, dx);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
