// ambiseg/ops/gaussian_latent.hpp — diagonal Gaussian latents of the Probabilistic U-Net:
// the reparameterised sample and the KL divergence between posterior and prior.
//   mu, log_sigma (log σ), eps, z [B, Z]   kl [B] (double, whatever T)
//
//   diag_gaussian_rsample_forward:  z = mu + exp(log_sigma)·eps   (Normal(mu, σ).rsample())
//   diag_gaussian_rsample_backward: dmu += dz, dlog_sigma += dz·exp(log_sigma)·eps
//   diag_gaussian_kl_forward_backward:
//     kl[b] = Σ_z KL(N(mu_q, σ_q²) ‖ N(mu_p, σ_p²))
//           = Σ_z log σ_p − log σ_q + (σ_q² + (mu_q − mu_p)²)/(2σ_p²) − ½
//     and the gradients of scale·kl[b] added to dmu_q, dlog_sigma_q, dmu_p, dlog_sigma_p.
//
// Unlike the other ops' input gradients, every gradient here ACCUMULATES (+=): mu and
// log_sigma receive both the sample's gradient and the KL's, so the caller zeroes them once
// and both ops add in. Each gradient is optional (an empty view skips it). Every element is
// evaluated in double and rounded to T once (ops/kernel_math.hpp); the KL of a row is
// summed in order. On CUDA one thread per element (sample) or per row (KL): deterministic.
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/gaussian_latent.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void diag_gaussian_rsample_forward(in_view<T, D> mu, in_view<T, D> log_sigma, in_view<T, D> eps,
                                   tensor_view<T, D> z) {
  const char* op = "diag_gaussian_rsample_forward";
  detail::latent_check(op, "mu", mu, "log_sigma", log_sigma, "eps", eps);
  expect_shape(op, "z", z, mu.shape());
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::diag_gaussian_rsample_forward(mu.data(), log_sigma.data(), eps.data(), z.data(),
                                               mu.numel());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::diag_gaussian_rsample_forward<T>(mu, log_sigma, eps, z);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// dmu (+=, optional), dlog_sigma (+=, optional).
template <op_scalar T, class D>
void diag_gaussian_rsample_backward(in_view<T, D> log_sigma, in_view<T, D> eps, in_view<T, D> dz,
                                    tensor_view<T, D> dmu, out_view<T, D> dlog_sigma) {
  const char* op = "diag_gaussian_rsample_backward";
  detail::latent_check(op, "log_sigma", log_sigma, "eps", eps, "dz", dz);
  detail::expect_shape_if_present(op, "dmu", dmu, log_sigma.shape());
  detail::expect_shape_if_present(op, "dlog_sigma", dlog_sigma, log_sigma.shape());
  if constexpr (std::same_as<D, cpu>) {
    // An absent gradient's data() is null: the kernel skips it.
    cpu_kernels::diag_gaussian_rsample_backward(log_sigma.data(), eps.data(), dz.data(),
                                                dmu.data(), dlog_sigma.data(), log_sigma.numel());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::diag_gaussian_rsample_backward<T>(log_sigma, eps, dz, dmu, dlog_sigma);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// kl [B] assigned; dmu_q, dlog_sigma_q, dmu_p, dlog_sigma_p (+=, each optional).
template <op_scalar T, class D>
void diag_gaussian_kl_forward_backward(in_view<T, D> mu_q, in_view<T, D> log_sigma_q,
                                       in_view<T, D> mu_p, in_view<T, D> log_sigma_p, double scale,
                                       out_view<double, D> kl, tensor_view<T, D> dmu_q,
                                       out_view<T, D> dlog_sigma_q, out_view<T, D> dmu_p,
                                       out_view<T, D> dlog_sigma_p) {
  detail::diag_gaussian_kl_check("diag_gaussian_kl_forward_backward", mu_q, log_sigma_q, mu_p,
                                 log_sigma_p, kl, dmu_q, dlog_sigma_q, dmu_p, dlog_sigma_p);
  if constexpr (std::same_as<D, cpu>) {
    // An absent gradient's data() is null: the kernel skips it.
    cpu_kernels::diag_gaussian_kl_forward_backward(
        mu_q.data(), log_sigma_q.data(), mu_p.data(), log_sigma_p.data(), scale, kl.data(),
        dmu_q.data(), dlog_sigma_q.data(), dmu_p.data(), dlog_sigma_p.data(), mu_q.size(0),
        mu_q.size(1));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::diag_gaussian_kl_forward_backward<T>(mu_q, log_sigma_q, mu_p, log_sigma_p,
                                                       scale, kl, dmu_q, dlog_sigma_q, dmu_p,
                                                       dlog_sigma_p);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
