// ambiseg/ops/cuda/tile.cuh — S copies of a batch, and the sum back over the copies (one
// thread per element of the batch, summing its copies in order: deterministic).
#pragma once

#include "ambiseg/ops/cuda/api.hpp"
#include "ambiseg/ops/cuda/common.cuh"
#include "ambiseg/ops/shape_checks.hpp"

namespace ambiseg::ops::cuda_kernels {

namespace detail {
template <class T>
__global__ void tile_rows_forward_kernel(const T* x, T* y, std::int64_t m, std::int64_t copies) {
  for (std::int64_t i = global_thread(); i < m * copies; i += grid_stride()) y[i] = x[i % m];
}
template <class T>
__global__ void tile_rows_backward_kernel(const T* dy, double scale, T* dx, std::int64_t m, std::int64_t copies) {
  for (std::int64_t i = global_thread(); i < m; i += grid_stride()) {
    double sum = 0;
    for (std::int64_t s = 0; s < copies; ++s) sum += double(dy[s * m + i]);
    dx[i] = static_cast<T>(double(dx[i]) + scale * sum);
  }
}
}  // namespace detail

template <cuda_scalar T>
void tile_rows_forward(in_view<T, cuda> x, tensor_view<T, cuda> y) {
  const std::int64_t copies = ops::detail::tile_copies("tile_rows_forward", "x", x, "y", y);
  if (y.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(y.numel()), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::tile_rows_forward_kernel<T>)(x.data(), y.data(), x.numel(), copies);
  detail::check_launch("tile_rows_forward_kernel");
}

template <cuda_scalar T>
void tile_rows_backward(in_view<T, cuda> dy, double scale, tensor_view<T, cuda> dx) {
  const std::int64_t copies = ops::detail::tile_copies("tile_rows_backward", "dx", dx, "dy", dy);
  if (dx.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(dx.numel()), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::tile_rows_backward_kernel<T>)(dy.data(), scale, dx.data(), dx.numel(), copies);
  detail::check_launch("tile_rows_backward_kernel");
}

}  // namespace ambiseg::ops::cuda_kernels
