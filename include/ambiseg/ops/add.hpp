// ambiseg/ops/add.hpp — elementwise addition and the time-embedding injection.
//   add_forward: y = a + b (same shapes; y may alias a or b). Its backward is the identity
//                for both inputs, so there is no add_backward.
//   add_channel_bias_forward:  h [N,C,H,W] (in place) += e [N,C] broadcast over H×W
//   add_channel_bias_backward: de [N,C] = Σ_{h,w} dh        (assigned)
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/add.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void add_forward(in_view<T, D> a, in_view<T, D> b, tensor_view<T, D> y) {
  expect_shape("add_forward", "b", b, a.shape());
  expect_shape("add_forward", "y", y, a.shape());
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer("add_forward", {});
    cpu_kernels::add_forward(a.data(), b.data(), y.data(), a.numel());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::add_forward<T>(a, b, y);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

namespace detail {
template <class H, class E>
void channel_bias_check(const char* op, const H& h, const E& e) {
  throw_if<shape_error>(h.rank() < 2, op, ": h must have rank 2 to 4 [N, C, ...], got ",
                        h.shape());
  expect_shape(op, "e", e, shape{h.size(0), h.size(1)});
}
}  // namespace detail

template <op_scalar T, class D>
void add_channel_bias_forward(tensor_view<T, D> h, in_view<T, D> e) {
  detail::channel_bias_check("add_channel_bias_forward", h, e);
  if constexpr (std::same_as<D, cpu>) {
    const std::int64_t nc = h.size(0) * h.size(1);
    const profile::scope timer("add_channel_bias_forward", {});
    cpu_kernels::add_channel_bias_forward(h.data(), e.data(), nc, nc ? h.numel() / nc : 0);
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::add_channel_bias_forward<T>(h, e);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void add_channel_bias_backward(in_view<T, D> dh, tensor_view<T, D> de) {
  detail::channel_bias_check("add_channel_bias_backward", dh, de);
  if constexpr (std::same_as<D, cpu>) {
    const std::int64_t nc = dh.size(0) * dh.size(1);
    const profile::scope timer("add_channel_bias_backward", {});
    cpu_kernels::add_channel_bias_backward(dh.data(), de.data(), nc, nc ? dh.numel() / nc : 0);
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::add_channel_bias_backward<T>(dh, de);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
