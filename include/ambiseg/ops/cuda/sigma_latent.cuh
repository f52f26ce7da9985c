// ambiseg/ops/cuda/sigma_latent.cuh — softplus and the σ-parametrised Gaussian sample (one
// thread per element), and PHiSeg's KL (one block per case, a fixed tree: deterministic).
#pragma once

#include "ambiseg/core/cuda/reductions.cuh"
#include "ambiseg/ops/cuda/api.hpp"
#include "ambiseg/ops/cuda/common.cuh"
#include "ambiseg/ops/kernel_math_sigma.hpp"
#include "ambiseg/ops/shape_checks.hpp"

namespace ambiseg::ops::cuda_kernels {

namespace detail {
template <class T>
__global__ void softplus_forward_kernel(const T* x, T* y, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride())
    y[i] = static_cast<T>(kernel_math::softplus(static_cast<double>(x[i])));
}
template <class T>
__global__ void softplus_backward_kernel(const T* x, const T* dy, T* dx, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride())
    dx[i] = static_cast<T>(static_cast<double>(dy[i]) * kernel_math::softplus_grad(static_cast<double>(x[i])));
}
template <class T>
__global__ void sigma_rsample_kernel(const T* mu, const T* sigma, const T* eps, T* z, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride())
    z[i] = static_cast<T>(double(mu[i]) + double(sigma[i]) * double(eps[i]));
}
template <class T>
__global__ void sigma_rsample_backward_kernel(const T* eps, const T* dz, T* dmu, T* dsigma, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    if (dmu) dmu[i] += dz[i];
    if (dsigma) dsigma[i] += static_cast<T>(double(dz[i]) * double(eps[i]));
  }
}
template <class T>
__global__ void gaussian_kl_sigma_kernel(const T* mu_q, const T* sigma_q, const T* mu_p, const T* sigma_p,
                                         double floor, double scale, double* kl, T* dmu_q, T* dsigma_q, T* dmu_p,
                                         T* dsigma_p, std::int64_t k) {
  const std::int64_t off = static_cast<std::int64_t>(blockIdx.x) * k;
  double sum = 0.0;
  for (std::int64_t j = off + threadIdx.x; j < off + k; j += blockDim.x) {
    const auto t = kernel_math::gaussian_kl_sigma(mu_q[j], sigma_q[j], mu_p[j], sigma_p[j], floor);
    sum += t.value;
    if (dmu_q) dmu_q[j] += static_cast<T>(scale * t.dmu_q);
    if (dsigma_q) dsigma_q[j] += static_cast<T>(scale * t.dsigma_q);
    if (dmu_p) dmu_p[j] += static_cast<T>(scale * t.dmu_p);
    if (dsigma_p) dsigma_p[j] += static_cast<T>(scale * t.dsigma_p);
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) kl[blockIdx.x] = sum;
}
}  // namespace detail

template <cuda_scalar T>
void softplus_forward(in_view<T, cuda> x, tensor_view<T, cuda> y) {
  expect_shape("softplus_forward", "y", y, x.shape());
  if (x.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(x.numel()), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::softplus_forward_kernel<T>)(x.data(), y.data(), x.numel());
  detail::check_launch("softplus_forward_kernel");
}

template <cuda_scalar T>
void softplus_backward(in_view<T, cuda> x, in_view<T, cuda> dy, tensor_view<T, cuda> dx) {
  expect_shape("softplus_backward", "dy", dy, x.shape());
  expect_shape("softplus_backward", "dx", dx, x.shape());
  if (x.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(x.numel()), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::softplus_backward_kernel<T>)(x.data(), dy.data(), dx.data(), x.numel());
  detail::check_launch("softplus_backward_kernel");
}

template <cuda_scalar T>
void sigma_gaussian_rsample_forward(in_view<T, cuda> mu, in_view<T, cuda> sigma, in_view<T, cuda> eps,
                                    tensor_view<T, cuda> z) {
  const char* op = "sigma_gaussian_rsample_forward";
  expect_shape(op, "sigma", sigma, mu.shape());
  expect_shape(op, "eps", eps, mu.shape());
  expect_shape(op, "z", z, mu.shape());
  if (mu.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(mu.numel()), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::sigma_rsample_kernel<T>)(mu.data(), sigma.data(), eps.data(), z.data(), mu.numel());
  detail::check_launch("sigma_rsample_kernel");
}

template <cuda_scalar T>
void sigma_gaussian_rsample_backward(in_view<T, cuda> eps, in_view<T, cuda> dz, tensor_view<T, cuda> dmu,
                                     out_view<T, cuda> dsigma) {
  const char* op = "sigma_gaussian_rsample_backward";
  expect_shape(op, "dz", dz, eps.shape());
  ops::detail::expect_shape_if_present(op, "dmu", dmu, eps.shape());
  ops::detail::expect_shape_if_present(op, "dsigma", dsigma, eps.shape());
  if (eps.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(eps.numel()), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::sigma_rsample_backward_kernel<T>)(eps.data(), dz.data(), dmu.data(), dsigma.data(),
                                                           eps.numel());
  detail::check_launch("sigma_rsample_backward_kernel");
}

template <cuda_scalar T>
void gaussian_kl_sigma_forward_backward(in_view<T, cuda> mu_q, in_view<T, cuda> sigma_q, in_view<T, cuda> mu_p,
                                        in_view<T, cuda> sigma_p, double floor, double scale,
                                        out_view<double, cuda> kl, tensor_view<T, cuda> dmu_q,
                                        out_view<T, cuda> dsigma_q, out_view<T, cuda> dmu_p,
                                        out_view<T, cuda> dsigma_p) {
  const char* op = "gaussian_kl_sigma_forward_backward";
  ops::detail::gaussian_kl_sigma_check(op, mu_q, sigma_q, mu_p, sigma_p, floor, kl, dmu_q, dsigma_q, dmu_p,
                                       dsigma_p);
  const std::int64_t b = mu_q.size(0);
  if (b == 0) return;
  AMBISEG_LAUNCH(detail::row_grid(op, b), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::gaussian_kl_sigma_kernel<T>)(mu_q.data(), sigma_q.data(), mu_p.data(), sigma_p.data(), floor,
                                                      scale, kl.data(), dmu_q.data(), dsigma_q.data(), dmu_p.data(),
                                                      dsigma_p.data(), mu_q.numel() / b);
  detail::check_launch("gaussian_kl_sigma_kernel");
}

}  // namespace ambiseg::ops::cuda_kernels
