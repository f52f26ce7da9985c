// ambiseg/ops/linear.hpp — fully connected layer (the time-embedding MLP and projections).
//   x [N, In]  w [Out, In]  b [Out] or empty  y [N, Out] = x·wᵀ + b
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/linear.hpp"

namespace ambiseg::ops {


template <op_scalar T, class D>
void linear_forward(in_view<T, D> x, in_view<T, D> w, in_view<T, D> b, tensor_view<T, D> y) {
  const char* op = "linear_forward";
  detail::linear_check(op, x.shape(), w.shape());
  const std::int64_t n = x.size(0), in = x.size(1), out = w.size(0);
  if (detail::present(b)) expect_shape(op, "b", b, shape{out});
  expect_shape(op, "y", y, shape{n, out});
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer(op, {});
    cpu_kernels::linear_forward(x.data(), w.data(), b.data(), y.data(), n, in, out);
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::linear_forward<T>(x, w, b, y);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// dx assigned (optional), dw and db accumulated (db optional).
template <op_scalar T, class D>
void linear_backward(in_view<T, D> x, in_view<T, D> w, in_view<T, D> dy, out_view<T, D> dx,
                     tensor_view<T, D> dw, out_view<T, D> db) {
  const char* op = "linear_backward";
  detail::linear_check(op, x.shape(), w.shape());
  const std::int64_t n = x.size(0), in = x.size(1), out = w.size(0);
  expect_shape(op, "dy", dy, shape{n, out});
  if (detail::present(dx)) expect_shape(op, "dx", dx, x.shape());
  if (detail::present(dw)) expect_shape(op, "dw", dw, w.shape());
  if (detail::present(db)) expect_shape(op, "db", db, shape{out});
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer(op, {});
    cpu_kernels::linear_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(),
                                 n, in, out);
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::linear_backward<T>(x, w, dy, dx, dw, db);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
