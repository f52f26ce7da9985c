// ambiseg/ops/upsample.hpp — nearest-neighbour ×2 upsampling (the decoder's Upsample).
//   x [N,C,H,W] -> y [N,C,2H,2W];  backward: dx [N,C,H,W] = sum of each 2×2 block of dy
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/upsample.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void upsample_nearest2x_forward(in_view<T, D> x, tensor_view<T, D> y) {
  const char* op = "upsample_nearest2x_forward";
  expect_rank(op, "x", x, 4);
  expect_shape(op, "y", y, shape{x.size(0), x.size(1), 2 * x.size(2), 2 * x.size(3)});
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::upsample_nearest2x_forward(x.data(), y.data(), x.size(0) * x.size(1), x.size(2),
                                            x.size(3));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::upsample_nearest2x_forward<T>(x, y);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void upsample_nearest2x_backward(in_view<T, D> dy, tensor_view<T, D> dx) {
  const char* op = "upsample_nearest2x_backward";
  expect_rank(op, "dx", dx, 4);
  expect_shape(op, "dy", dy, shape{dx.size(0), dx.size(1), 2 * dx.size(2), 2 * dx.size(3)});
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::upsample_nearest2x_backward(dy.data(), dx.data(), dx.size(0) * dx.size(1),
                                             dx.size(2), dx.size(3));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::upsample_nearest2x_backward<T>(dy, dx);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
