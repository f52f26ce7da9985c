// ambiseg/ops/cuda/losses.cuh — the Probabilistic U-Net's loss terms on the GPU: binary
// cross-entropy with logits summed per case, the reparameterised diagonal Gaussian sample
// and the KL divergence between two diagonal Gaussians.
//
//   logits, targets [N, K] (K = values per case)  per_case [N] (double)
//   mu, log_sigma, eps, z [B, Z]  kl [B] (double)
// Every element is evaluated in double by ops/kernel_math.hpp, the CPU kernels' own code.
// BCE: one block per case, the K terms summed in double by a fixed tree (block_sum), the
// gradient written in the same pass. Latents are small: one thread per element (sample) or
// per row (KL, its Z terms summed in order). No atomics anywhere: deterministic.
#pragma once

#include "ambiseg/ops/cuda/api.hpp"
#include "ambiseg/ops/cuda/common.cuh"
#include "ambiseg/ops/kernel_math.hpp"

namespace ambiseg::ops::cuda_kernels {

namespace detail {

// dlogits may be null (not needed).
template <class T>
__global__ void sigmoid_cross_entropy_kernel(const T* logits, const T* targets, double scale,
                                             double* per_case, T* dlogits, std::int64_t k) {
  const std::int64_t off = static_cast<std::int64_t>(blockIdx.x) * k;
  double sum = 0.0;
  for (std::int64_t j = threadIdx.x; j < k; j += blockDim.x) {
    const double l = static_cast<double>(logits[off + j]);
    const double y = static_cast<double>(targets[off + j]);
    sum += kernel_math::sigmoid_cross_entropy(l, y);
    if (dlogits) dlogits[off + j] = static_cast<T>(scale * (kernel_math::stable_sigmoid(l) - y));
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) per_case[blockIdx.x] = sum;
}

template <class T>
__global__ void gaussian_rsample_kernel(const T* mu, const T* log_sigma, const T* eps, T* z,
                                        std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride())
    z[i] = static_cast<T>(kernel_math::gaussian_rsample(mu[i], log_sigma[i], eps[i]));
}

// dmu += dz, dlog_sigma += dz·σ·eps; either may be null.
template <class T>
__global__ void gaussian_rsample_backward_kernel(const T* log_sigma, const T* eps, const T* dz,
                                                 T* dmu, T* dlog_sigma, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    if (dmu) dmu[i] += dz[i];
    if (dlog_sigma)
      dlog_sigma[i] +=
          static_cast<T>(kernel_math::gaussian_rsample_dlog_sigma(log_sigma[i], eps[i], dz[i]));
  }
}

// One thread per row b: kl[b] = Σ_z in order; scale·∂kl/∂· added to the non-null gradients.
template <class T>
__global__ void gaussian_kl_kernel(const T* mu_q, const T* log_sigma_q, const T* mu_p,
                                   const T* log_sigma_p, double scale, double* kl, T* dmu_q,
                                   T* dlog_sigma_q, T* dmu_p, T* dlog_sigma_p, std::int64_t b,
                                   std::int64_t z) {
  for (std::int64_t r = global_thread(); r < b; r += grid_stride()) {
    double sum = 0.0;
    for (std::int64_t j = r * z; j < (r + 1) * z; ++j) {
      const kernel_math::gaussian_kl_terms t =
          kernel_math::gaussian_kl(mu_q[j], log_sigma_q[j], mu_p[j], log_sigma_p[j]);
      sum += t.kl;
      if (dmu_q) dmu_q[j] += static_cast<T>(scale * t.d_mu_q);
      if (dlog_sigma_q) dlog_sigma_q[j] += static_cast<T>(scale * t.d_log_sigma_q);
      if (dmu_p) dmu_p[j] += static_cast<T>(scale * t.d_mu_p);
      if (dlog_sigma_p) dlog_sigma_p[j] += static_cast<T>(scale * t.d_log_sigma_p);
    }
    kl[r] = sum;
  }
}

}  // namespace detail

template <cuda_scalar T>
void sigmoid_cross_entropy_forward_backward(in_view<T, cuda> logits, in_view<T, cuda> targets,
                                            double scale, out_view<double, cuda> per_case,
                                            tensor_view<T, cuda> dlogits) {
  const char* op = "sigmoid_cross_entropy_forward_backward";
  detail::sigmoid_cross_entropy_check(op, logits, targets, per_case, dlogits);
  const std::int64_t n = logits.size(0);
  if (n == 0) return;
  // An absent dlogits has a null data(): the kernel skips the gradient.
  AMBISEG_LAUNCH(detail::row_grid(op, n), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::sigmoid_cross_entropy_kernel<T>)(
      logits.data(), targets.data(), scale, per_case.data(), dlogits.data(), logits.numel() / n);
  detail::check_launch("sigmoid_cross_entropy_kernel");
}

template <cuda_scalar T>
void diag_gaussian_rsample_forward(in_view<T, cuda> mu, in_view<T, cuda> log_sigma,
                                   in_view<T, cuda> eps, tensor_view<T, cuda> z) {
  const char* op = "diag_gaussian_rsample_forward";
  detail::latent_check(op, "mu", mu, "log_sigma", log_sigma, "eps", eps);
  expect_shape(op, "z", z, mu.shape());
  if (mu.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(mu.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::gaussian_rsample_kernel<T>)(
      mu.data(), log_sigma.data(), eps.data(), z.data(), mu.numel());
  detail::check_launch("gaussian_rsample_kernel");
}

template <cuda_scalar T>
void diag_gaussian_rsample_backward(in_view<T, cuda> log_sigma, in_view<T, cuda> eps,
                                    in_view<T, cuda> dz, tensor_view<T, cuda> dmu,
                                    out_view<T, cuda> dlog_sigma) {
  const char* op = "diag_gaussian_rsample_backward";
  detail::latent_check(op, "log_sigma", log_sigma, "eps", eps, "dz", dz);
  detail::expect_shape_if_present(op, "dmu", dmu, log_sigma.shape());
  detail::expect_shape_if_present(op, "dlog_sigma", dlog_sigma, log_sigma.shape());
  if (log_sigma.numel() == 0 || (!detail::present(dmu) && !detail::present(dlog_sigma))) return;
  AMBISEG_LAUNCH(detail::grid_for(log_sigma.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::gaussian_rsample_backward_kernel<T>)(
      log_sigma.data(), eps.data(), dz.data(), dmu.data(), dlog_sigma.data(), log_sigma.numel());
  detail::check_launch("gaussian_rsample_backward_kernel");
}

template <cuda_scalar T>
void diag_gaussian_kl_forward_backward(in_view<T, cuda> mu_q, in_view<T, cuda> log_sigma_q,
                                       in_view<T, cuda> mu_p, in_view<T, cuda> log_sigma_p,
                                       double scale, out_view<double, cuda> kl,
                                       tensor_view<T, cuda> dmu_q, out_view<T, cuda> dlog_sigma_q,
                                       out_view<T, cuda> dmu_p, out_view<T, cuda> dlog_sigma_p) {
  detail::diag_gaussian_kl_check("diag_gaussian_kl_forward_backward", mu_q, log_sigma_q, mu_p,
                                 log_sigma_p, kl, dmu_q, dlog_sigma_q, dmu_p, dlog_sigma_p);
  const std::int64_t b = mu_q.size(0);
  if (b == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(b), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::gaussian_kl_kernel<T>)(
      mu_q.data(), log_sigma_q.data(), mu_p.data(), log_sigma_p.data(), scale, kl.data(),
      dmu_q.data(), dlog_sigma_q.data(), dmu_p.data(), dlog_sigma_p.data(), b, mu_q.size(1));
  detail::check_launch("gaussian_kl_kernel");
}

}  // namespace ambiseg::ops::cuda_kernels
