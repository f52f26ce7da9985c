// ambiseg/ops/timestep_embedding.hpp — sinusoidal time embedding (no gradient: t is data).
//   t [N] raw diffusion time  emb [N, dim] = [cos(t·f) | sin(t·f)] (a zero column when dim
//   is odd), f_k = exp(−ln(max_period)·k/(dim/2)); the reference uses max_period = 10.
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/timestep_embedding.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void timestep_embedding(in_view<T, D> t, int dim, double max_period, tensor_view<T, D> emb) {
  const char* op = "timestep_embedding";
  expect_rank(op, "t", t, 1);
  throw_if<value_error>(dim < 1, op, ": dim must be positive, got ", dim);
  throw_if<value_error>(!(max_period > 0), op, ": max_period must be positive, got ", max_period);
  expect_shape(op, "emb", emb, shape{t.size(0), dim});
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::timestep_embedding(t.data(), t.size(0), dim, max_period, emb.data());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::timestep_embedding<T>(t, dim, max_period, emb);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
