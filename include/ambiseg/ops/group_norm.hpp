// ambiseg/ops/group_norm.hpp — group normalisation with a per-channel affine transform.
//
//   x [N, C, ...] (rank 2 to 4; trailing extents are flattened to S)  gamma/beta [C]
//   y like x      mean/rstd [N, G] (saved for the backward; rstd = 1/sqrt(var + eps))
// Matches the reference's GroupNorm32 (float32 statistics, eps 1e-5) up to rounding. On cpu
// the sums run in float blocks with double partials (ops/cpu/group_norm.hpp); on cuda in T
// with a fixed block tree (ops/cuda/group_norm.cuh).
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/group_norm.hpp"

namespace ambiseg::ops {


template <op_scalar T, class D>
void group_norm_forward(in_view<T, D> x, in_view<T, D> gamma, in_view<T, D> beta, int groups,
                        double eps, tensor_view<T, D> y, out_view<T, D> mean,
                        out_view<T, D> rstd) {
  const char* op = "group_norm_forward";
  detail::group_norm_check(op, x.shape(), groups);
  throw_if<value_error>(!(eps > 0), op, ": eps must be positive, got ", eps);
  const std::int64_t n = x.size(0), c = x.size(1);
  expect_shape(op, "gamma", gamma, shape{c});
  expect_shape(op, "beta", beta, shape{c});
  expect_shape(op, "y", y, x.shape());
  expect_shape(op, "mean", mean, shape{n, groups});
  expect_shape(op, "rstd", rstd, shape{n, groups});
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer(op, {n, c, detail::spatial_extent(x.shape()), groups});
    cpu_kernels::group_norm_forward(x.data(), gamma.data(), beta.data(), n, c,
                                    detail::spatial_extent(x.shape()), groups, eps, y.data(),
                                    mean.data(), rstd.data());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::group_norm_forward<T>(x, gamma, beta, groups, eps, y, mean, rstd);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// dx assigned; dgamma/dbeta accumulated (either may be empty when not needed).
template <op_scalar T, class D>
void group_norm_backward(in_view<T, D> x, in_view<T, D> gamma, in_view<T, D> mean,
                         in_view<T, D> rstd, in_view<T, D> dy, int groups, tensor_view<T, D> dx,
                         out_view<T, D> dgamma, out_view<T, D> dbeta) {
  const char* op = "group_norm_backward";
  detail::group_norm_check(op, x.shape(), groups);
  const std::int64_t n = x.size(0), c = x.size(1);
  expect_shape(op, "gamma", gamma, shape{c});
  expect_shape(op, "mean", mean, shape{n, groups});
  expect_shape(op, "rstd", rstd, shape{n, groups});
  expect_shape(op, "dy", dy, x.shape());
  if (detail::present(dx)) expect_shape(op, "dx", dx, x.shape());
  if (detail::present(dgamma)) expect_shape(op, "dgamma", dgamma, shape{c});
  if (detail::present(dbeta)) expect_shape(op, "dbeta", dbeta, shape{c});
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer(op, {n, c, detail::spatial_extent(x.shape()), groups});
    cpu_kernels::group_norm_backward(x.data(), gamma.data(), static_cast<const T*>(nullptr),
                                     mean.data(), rstd.data(), dy.data(),
                                     n, c, detail::spatial_extent(x.shape()), groups, dx.data(),
                                     dgamma.data(), dbeta.data());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::group_norm_backward<T>(x, gamma, mean, rstd, dy, groups, dx, dgamma, dbeta);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// Fused y = SiLU(group_norm(x)): one pass less over memory and no stored normalised
// tensor. The backward takes beta as well (to recompute the normalised values) and needs
// dx (it holds the intermediate gradient); dy is the gradient of the SiLU output.
template <op_scalar T, class D>
void group_norm_silu_forward(in_view<T, D> x, in_view<T, D> gamma, in_view<T, D> beta,
                             int groups, double eps, tensor_view<T, D> y, out_view<T, D> mean,
                             out_view<T, D> rstd) {
  const char* op = "group_norm_silu_forward";
  detail::group_norm_check(op, x.shape(), groups);
  throw_if<value_error>(!(eps > 0), op, ": eps must be positive, got ", eps);
  const std::int64_t n = x.size(0), c = x.size(1);
  expect_shape(op, "gamma", gamma, shape{c});
  expect_shape(op, "beta", beta, shape{c});
  expect_shape(op, "y", y, x.shape());
  expect_shape(op, "mean", mean, shape{n, groups});
  expect_shape(op, "rstd", rstd, shape{n, groups});
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer(op, {n, c, detail::spatial_extent(x.shape()), groups});
    cpu_kernels::group_norm_forward<T, true>(x.data(), gamma.data(), beta.data(), n, c,
                                             detail::spatial_extent(x.shape()), groups, eps,
                                             y.data(), mean.data(), rstd.data());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::group_norm_silu_forward<T>(x, gamma, beta, groups, eps, y, mean, rstd);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void group_norm_silu_backward(in_view<T, D> x, in_view<T, D> gamma, in_view<T, D> beta,
                              in_view<T, D> mean, in_view<T, D> rstd, in_view<T, D> dy,
                              int groups, tensor_view<T, D> dx, out_view<T, D> dgamma,
                              out_view<T, D> dbeta) {
  const char* op = "group_norm_silu_backward";
  detail::group_norm_check(op, x.shape(), groups);
  const std::int64_t n = x.size(0), c = x.size(1);
  expect_shape(op, "gamma", gamma, shape{c});
  expect_shape(op, "beta", beta, shape{c});
  expect_shape(op, "mean", mean, shape{n, groups});
  expect_shape(op, "rstd", rstd, shape{n, groups});
  expect_shape(op, "dy", dy, x.shape());
  expect_shape(op, "dx", dx, x.shape());
  throw_if<value_error>(dx.data() == dy.data() || dx.data() == x.data(), op,
                        ": dx must not alias dy or x");
  if (detail::present(dgamma)) expect_shape(op, "dgamma", dgamma, shape{c});
  if (detail::present(dbeta)) expect_shape(op, "dbeta", dbeta, shape{c});
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer(op, {n, c, detail::spatial_extent(x.shape()), groups});
    cpu_kernels::group_norm_backward<T, true>(x.data(), gamma.data(), beta.data(), mean.data(),
                                              rstd.data(), dy.data(), n, c,
                                              detail::spatial_extent(x.shape()), groups,
                                              dx.data(), dgamma.data(), dbeta.data());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::group_norm_silu_backward<T>(x, gamma, beta, mean, rstd, dy, groups, dx,
                                              dgamma, dbeta);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
