// ambiseg/ops/tile.hpp — S copies of a batch stacked along the first axis, and the sum back.
// The Monte-Carlo KL of a mixture latent draws S samples per case through ops that take
// one parameter set per row, so the heads' outputs are tiled S times and their gradients
// summed over the S copies.
//   x [B, ...]  y [S·B, ...]:  y[s·B + b] = x[b]                       (tile_rows_forward)
//   dy [S·B, ...]  dx [B, ...]: dx[b] += scale · Σ_s dy[s·B + b]         (tile_rows_backward)
// The sum is formed in double over s in order (deterministic on every device).
#pragma once

#include <cstdint>

#include "ambiseg/ops/common.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void tile_rows_forward(in_view<T, D> x, tensor_view<T, D> y) {
  const std::int64_t copies = detail::tile_copies("tile_rows_forward", "x", x, "y", y);
  if constexpr (std::same_as<D, cpu>) {
    const std::int64_t m = x.numel();
    for (std::int64_t s = 0; s < copies; ++s)
      for (std::int64_t i = 0; i < m; ++i) y.data()[s * m + i] = x.data()[i];
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::tile_rows_forward<T>(x, y);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void tile_rows_backward(in_view<T, D> dy, double scale, tensor_view<T, D> dx) {
  const std::int64_t copies = detail::tile_copies("tile_rows_backward", "dx", dx, "dy", dy);
  if constexpr (std::same_as<D, cpu>) {
    const std::int64_t m = dx.numel();
    for (std::int64_t i = 0; i < m; ++i) {
      double sum = 0;
      for (std::int64_t s = 0; s < copies; ++s) sum += double(dy.data()[s * m + i]);
      dx.data()[i] = static_cast<T>(double(dx.data()[i]) + scale * sum);
    }
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::tile_rows_backward<T>(dy, scale, dx);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
