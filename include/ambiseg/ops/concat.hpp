// ambiseg/ops/concat.hpp — concatenation along channels (the decoder's skip connections).
//   a [N,Ca,H,W]  b [N,Cb,H,W]  y [N,Ca+Cb,H,W];  backward splits dy into da, db (assigned;
//   either may be empty when not needed)
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/concat.hpp"

namespace ambiseg::ops {


template <op_scalar T, class D>
void concat_channels_forward(in_view<T, D> a, in_view<T, D> b, tensor_view<T, D> y) {
  const char* op = "concat_channels_forward";
  detail::concat_check(op, "a", a.shape(), "b", b.shape());
  expect_shape(op, "y", y, shape{a.size(0), a.size(1) + b.size(1), a.size(2), a.size(3)});
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer(op, {});
    const std::int64_t n = a.size(0);
    cpu_kernels::concat_channels_forward(a.data(), b.data(), y.data(), n,
                                         n ? a.numel() / n : 0, n ? b.numel() / n : 0);
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::concat_channels_forward<T>(a, b, y);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// The split point comes from da and db; one of them may be empty (not needed), in which
// case its channel count is what the other leaves of dy.
template <op_scalar T, class D>
void concat_channels_backward(in_view<T, D> dy, tensor_view<T, D> da, out_view<T, D> db) {
  const char* op = "concat_channels_backward";
  expect_rank(op, "dy", dy, 4);
  const bool has_a = detail::present(da), has_b = detail::present(db);
  if (!has_a && !has_b) return;
  const std::int64_t n = dy.size(0), s = dy.size(2) * dy.size(3);
  std::int64_t ca = 0, cb = 0;
  if (has_a) {
    detail::concat_check(op, "dy", dy.shape(), "da", da.shape());
    ca = da.size(1);
  }
  if (has_b) {
    detail::concat_check(op, "dy", dy.shape(), "db", db.shape());
    cb = db.size(1);
  }
  if (!has_a) ca = dy.size(1) - cb;
  if (!has_b) cb = dy.size(1) - ca;
  throw_if<shape_error>(ca < 0 || cb < 0 || ca + cb != dy.size(1), op, ": da ", da.shape(),
                        " and db ", db.shape(), " do not split dy ", dy.shape());
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer(op, {});
    cpu_kernels::concat_channels_backward(dy.data(), has_a ? da.data() : nullptr,
                                          has_b ? db.data() : nullptr, n, ca * s, cb * s);
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::concat_channels_backward<T>(dy, da, db);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
