// ambiseg/ops/gaussian_fc.hpp — full-covariance Gaussian latents of the Generalized
// Probabilistic U-Net (Bhat et al. 2022, "FC"): the Cholesky factor from the head's
// outputs, the reparameterised sample and the analytic KL between posterior and prior.
//   log_sigma, mu, eps, z [B, K, D]   tril_raw, L [B, K, D, D] (row-major, L[b][k][r][c])
//
//   fc_scale_tril_forward: L = strictly-lower part of tril_raw, diagonal exp(log σ) + 1e-4,
//     zero above (the reference's tril(L̂, −1) + diag(exp(log σ) + 1e-4)); Σ = L·Lᵀ.
//   fc_gaussian_rsample_forward: z = mu + L·eps (MultivariateNormal(mu, scale_tril=L).rsample())
//   fc_gaussian_kl_forward_backward (K = 1: [B, 1, D], [B, 1, D, D]; D ≤ 64):
//     kl[b] = Σ log diag(L_p) − Σ log diag(L_q) + ½(‖L_p⁻¹L_q‖²_F + ‖L_p⁻¹(mu_q − mu_p)‖² − D)
//     (torch's _kl_multivariatenormal_multivariatenormal, by triangular solves), and the
//     gradients of scale·kl[b] added.
//
// As with the diagonal latents (ops/gaussian_latent.hpp), every gradient ACCUMULATES (+=)
// and is optional (an empty view skips it): mu and L receive the sample's gradient and the
// KL's. Only the lower triangle of an L is read, and only the lower triangle of a dL is
// written (the upper one is structurally zero); tril_raw's diagonal and upper triangle get no
// gradient. Every value is formed in double (ops/kernel_math_fc.hpp) and rounded to T once.
// CUDA: one thread per element (factor, sample), one block per row for the KL (columns of
// the triangular solves in parallel, sums in one thread in the CPU's order): deterministic.
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/gaussian_fc.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void fc_scale_tril_forward(in_view<T, D> log_sigma, in_view<T, D> tril_raw, tensor_view<T, D> L) {
  detail::fc_scale_tril_check("fc_scale_tril_forward", log_sigma, "tril_raw", tril_raw, "L", L,
                              false);
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::fc_scale_tril_forward(log_sigma.data(), tril_raw.data(), L.data(),
                                       log_sigma.size(0) * log_sigma.size(1), log_sigma.size(2));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::fc_scale_tril_forward<T>(log_sigma, tril_raw, L);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// dlog_sigma += diag(dL)·exp(log σ), dtril_raw += dL below the diagonal (each optional).
template <op_scalar T, class D>
void fc_scale_tril_backward(in_view<T, D> log_sigma, in_view<T, D> dL,
                            tensor_view<T, D> dlog_sigma, out_view<T, D> dtril_raw) {
  const char* op = "fc_scale_tril_backward";
  detail::fc_scale_tril_check(op, log_sigma, "dL", dL, "dtril_raw", dtril_raw, true);
  detail::expect_shape_if_present(op, "dlog_sigma", dlog_sigma, log_sigma.shape());
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::fc_scale_tril_backward(log_sigma.data(), dL.data(), dlog_sigma.data(),
                                        dtril_raw.data(), log_sigma.size(0) * log_sigma.size(1),
                                        log_sigma.size(2));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::fc_scale_tril_backward<T>(log_sigma, dL, dlog_sigma, dtril_raw);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void fc_gaussian_rsample_forward(in_view<T, D> mu, in_view<T, D> L, in_view<T, D> eps,
                                 tensor_view<T, D> z) {
  detail::fc_rsample_forward_check("fc_gaussian_rsample_forward", mu, L, eps, z);
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::fc_gaussian_rsample_forward(mu.data(), L.data(), eps.data(), z.data(),
                                             mu.size(0) * mu.size(1), mu.size(2));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::fc_gaussian_rsample_forward<T>(mu, L, eps, z);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// dmu += dz, dL += tril(dz·epsᵀ) (each optional).
template <op_scalar T, class D>
void fc_gaussian_rsample_backward(in_view<T, D> eps, in_view<T, D> dz, tensor_view<T, D> dmu,
                                  out_view<T, D> dL) {
  detail::fc_rsample_backward_check("fc_gaussian_rsample_backward", eps, dz, dmu, dL);
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::fc_gaussian_rsample_backward(eps.data(), dz.data(), dmu.data(), dL.data(),
                                              eps.size(0) * eps.size(1), eps.size(2));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::fc_gaussian_rsample_backward<T>(eps, dz, dmu, dL);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// kl [B] assigned; dmu_q, dL_q, dmu_p, dL_p (+=, each optional).
template <op_scalar T, class D>
void fc_gaussian_kl_forward_backward(in_view<T, D> mu_q, in_view<T, D> L_q, in_view<T, D> mu_p,
                                     in_view<T, D> L_p, double scale, out_view<double, D> kl,
                                     tensor_view<T, D> dmu_q, out_view<T, D> dL_q,
                                     out_view<T, D> dmu_p, out_view<T, D> dL_p) {
  detail::fc_gaussian_kl_check("fc_gaussian_kl_forward_backward", mu_q, L_q, mu_p, L_p, kl,
                               dmu_q, dL_q, dmu_p, dL_p);
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::fc_gaussian_kl_forward_backward(
        mu_q.data(), L_q.data(), mu_p.data(), L_p.data(), scale, kl.data(), dmu_q.data(),
        dL_q.data(), dmu_p.data(), dL_p.data(), mu_q.size(0), mu_q.size(2));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::fc_gaussian_kl_forward_backward<T>(mu_q, L_q, mu_p, L_p, scale, kl, dmu_q, dL_q,
                                                     dmu_p, dL_p);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
