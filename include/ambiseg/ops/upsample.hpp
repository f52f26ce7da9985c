// ambiseg/ops/upsample.hpp — ×2 upsampling: nearest-neighbour (the diffusion UNet's
// Upsample) and bilinear (the Probabilistic U-Net's decoder).
//   x [N,C,H,W] -> y [N,C,2H,2W];  backward: dy [N,C,2H,2W] -> dx [N,C,H,W] (assigned)
//   nearest:  dx = sum of each 2×2 block of dy
//   bilinear: F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=...), both
//             modes, and TensorFlow 1's legacy resize (PHiSeg). Per axis, output i reads
//             inputs i0 = ⌊s⌋ and min(i0 + 1, in − 1) with weights 1 − (s − i0) and s − i0,
//             where s = max((i + ½)/2 − ½, 0) for half_pixel (align_corners = false),
//             s = i·(in − 1)/(2·in − 1) for align_corners (the corners are kept exactly)
//             and s = i/2 for asymmetric (TF: out[2k] = in[k], out[2k+1] = ½(in[k] +
//             in[k+1]), the last = in[n−1]). The backward gathers, for each input pixel, the at most 4×4
//             outputs that read it (ops/kernel_math.hpp): deterministic on both devices.
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
    const profile::scope timer(op, {});
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
    const profile::scope timer(op, {});
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

template <op_scalar T, class D>
void upsample_bilinear2x_forward(in_view<T, D> x, tensor_view<T, D> y, bilinear_mode mode) {
  const char* op = "upsample_bilinear2x_forward";
  expect_rank(op, "x", x, 4);
  expect_shape(op, "y", y, shape{x.size(0), x.size(1), 2 * x.size(2), 2 * x.size(3)});
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer(op, {});
    cpu_kernels::upsample_bilinear2x_forward(x.data(), y.data(), x.size(0) * x.size(1),
                                             x.size(2), x.size(3), mode);
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::upsample_bilinear2x_forward<T>(x, y, mode);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void upsample_bilinear2x_backward(in_view<T, D> dy, tensor_view<T, D> dx, bilinear_mode mode) {
  const char* op = "upsample_bilinear2x_backward";
  expect_rank(op, "dx", dx, 4);
  expect_shape(op, "dy", dy, shape{dx.size(0), dx.size(1), 2 * dx.size(2), 2 * dx.size(3)});
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer(op, {});
    cpu_kernels::upsample_bilinear2x_backward(dy.data(), dx.data(), dx.size(0) * dx.size(1),
                                              dx.size(2), dx.size(3), mode);
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::upsample_bilinear2x_backward<T>(dy, dx, mode);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// PyTorch's two modes by its flag.
template <op_scalar T, class D>
void upsample_bilinear2x_forward(in_view<T, D> x, tensor_view<T, D> y, bool align_corners) {
  upsample_bilinear2x_forward(x, y, align_corners ? bilinear_mode::align_corners : bilinear_mode::half_pixel);
}
template <op_scalar T, class D>
void upsample_bilinear2x_backward(in_view<T, D> dy, tensor_view<T, D> dx, bool align_corners) {
  upsample_bilinear2x_backward(dy, dx, align_corners ? bilinear_mode::align_corners : bilinear_mode::half_pixel);
}

}  // namespace ambiseg::ops
