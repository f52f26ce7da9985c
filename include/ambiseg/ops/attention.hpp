// ambiseg/ops/attention.hpp — multi-head self-attention in the reference's legacy layout.
//
//   qkv [B, 3C, T] is viewed as [B·heads, 3·ch, T] (ch = C/heads) and each head's rows are
//   split into q, k, v [ch, T] — heads first, then q|k|v, as in QKVAttentionLegacy.
//   probs [B·heads, T, T] = softmax over keys of (q·s)ᵀ(k·s), s = ch^(−1/4)
//   y [B, C, T] = v·probsᵀ (per head)
// probs is saved by the forward for the backward; dqkv [B, 3C, T] is assigned.
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/attention.hpp"

namespace ambiseg::ops {


template <op_scalar T, class D>
void attention_forward(in_view<T, D> qkv, int heads, tensor_view<T, D> y, out_view<T, D> probs,
                       workspace<D>& ws) {
  const char* op = "attention_forward";
  const auto d = detail::attention_check(op, qkv.shape(), heads);
  expect_shape(op, "y", y, shape{d.b, d.c, d.t});
  expect_shape(op, "probs", probs, shape{d.bh, d.t, d.t});
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer(op, {d.bh, d.ch, d.t}, 2.0 * 2.0 * static_cast<double>(d.bh * d.t * d.t * d.ch));  // QK^T and PV
    cpu_kernels::attention_forward(qkv.data(), d.bh, d.ch, d.t, y.data(), probs.data());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::attention_forward<T>(qkv, heads, y, probs, ws);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void attention_backward(in_view<T, D> qkv, in_view<T, D> probs, in_view<T, D> dy, int heads,
                        tensor_view<T, D> dqkv, workspace<D>& ws) {
  const char* op = "attention_backward";
  const auto d = detail::attention_check(op, qkv.shape(), heads);
  expect_shape(op, "probs", probs, shape{d.bh, d.t, d.t});
  expect_shape(op, "dy", dy, shape{d.b, d.c, d.t});
  expect_shape(op, "dqkv", dqkv, qkv.shape());
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer(op, {d.bh, d.ch, d.t}, 2.0 * 2.0 * 2.0 * static_cast<double>(d.bh * d.t * d.t * d.ch));
    cpu_kernels::attention_backward(qkv.data(), probs.data(), dy.data(), d.bh, d.ch, d.t,
                                    dqkv.data(), ws);
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::attention_backward<T>(qkv, probs, dy, heads, dqkv, ws);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
