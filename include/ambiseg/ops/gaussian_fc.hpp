// ambiseg/ops/gaussian_fc.hpp — the latents of the Generalized Probabilistic U-Net
// (Bhat et al. 2022, reference code ishaanb92/GeneralizedProbabilisticUNet): full-covariance
// Gaussians ("FC") and mixtures of diagonal or full-covariance Gaussians ("AA mix", "FC mix").
//   log_sigma, mu, eps, samples [B, K, D]   tril_raw, L [B, K, D, D] (row-major L[b][k][r][c])
//   z [B, D] (mixtures) or [B, K, D] (component samples)   logits, gumbel, relaxed [B, K]
//
//   fc_scale_tril_forward: L = strictly-lower part of tril_raw, diagonal exp(log σ) + 1e-4,
//     zero above (the reference's tril(L̂, −1) + diag(exp(log σ) + 1e-4)); Σ = L·Lᵀ.
//   fc_gaussian_rsample_forward: z = mu + L·eps (MultivariateNormal(mu, scale_tril=L).rsample())
//   fc_gaussian_kl_forward_backward (K = 1: [B, 1, D], [B, 1, D, D]; D ≤ 64):
//     kl[b] = Σ log diag(L_p) − Σ log diag(L_q) + ½(‖L_p⁻¹L_q‖²_F + ‖L_p⁻¹(mu_q − mu_p)‖² − D)
//     (torch's _kl_multivariatenormal_multivariatenormal, by triangular solves), and the
//     gradients of scale·kl[b] added.
//   mixture_log_prob_forward_backward (K ≤ 32, D ≤ 64), diag_ variant with log σ for L:
//     log_prob[b] = logsumexp_k [log_softmax(logits)_k + log N(z; mu_k, L_k·L_kᵀ)]
//     (torch's MixtureSameFamily.log_prob), and the gradients of scale·log_prob[b] added.
//   straight_through_mixture_sample_forward: r = softmax((logits + gumbel)/τ), h =
//     one_hot(argmax r), z = Σ_k (h_k − sg(r_k) + r_k)·samples_k — in value samples[argmax]
//     exactly; the backward is the autograd of that expression (the reference's mog.py).
//
// The mixture KL of the reference is a Monte-Carlo estimate, (1/S)Σ_s log q(z_s) − log p(z_s)
// with z_s ~ q drawn by the sample ops: these ops are its pieces (unbiased when so assembled:
// tests/ops/test_ops_mixture_mc.cpp).
// The diagonal mixture is its own op rather than an L with a zero off-diagonal: the AA
// components have σ = exp(log σ) with no 1e-4, no D×D tensors are needed, and log σ enters
// the density directly.
//
// As with the diagonal latents (ops/gaussian_latent.hpp), every gradient ACCUMULATES (+=)
// and is optional (an empty view skips it): mu and L receive the sample's gradient and the
// KL's (or log-densities'). Only the lower triangle of an L is read, and only the lower
// triangle of a dL is written (the upper one is structurally zero); tril_raw's diagonal and
// upper triangle get no gradient. Every value is formed in double (ops/kernel_math_fc.hpp)
// and rounded to T once. CUDA: one thread per element (factor, sample) or per row (the
// straight-through choice), one block per row for the KL and the mixture density (columns
// or components in parallel, sums in one thread in the CPU's order): deterministic.
#pragma once

#include <cstdint>

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

// log_prob [B] assigned (double); dz, dlogits, dmu, dL (+=, each optional).
template <op_scalar T, class D>
void mixture_log_prob_forward_backward(in_view<T, D> z, in_view<T, D> logits, in_view<T, D> mu,
                                       in_view<T, D> L, double scale,
                                       out_view<double, D> log_prob, tensor_view<T, D> dz,
                                       out_view<T, D> dlogits, out_view<T, D> dmu,
                                       out_view<T, D> dL) {
  detail::mixture_log_prob_check("mixture_log_prob_forward_backward", z, logits, mu, "L", L,
                                 false, log_prob, dz, dlogits, dmu, dL, "dL");
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::mixture_log_prob_forward_backward<false>(
        z.data(), logits.data(), mu.data(), L.data(), scale, log_prob.data(), dz.data(),
        dlogits.data(), dmu.data(), dL.data(), z.size(0), logits.size(1), z.size(1));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::mixture_log_prob_forward_backward<T>(z, logits, mu, L, scale, log_prob, dz,
                                                       dlogits, dmu, dL);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// The same for diagonal components N(mu, diag(exp(2 log σ))) (the AA mixtures).
template <op_scalar T, class D>
void diag_mixture_log_prob_forward_backward(in_view<T, D> z, in_view<T, D> logits,
                                            in_view<T, D> mu, in_view<T, D> log_sigma,
                                            double scale, out_view<double, D> log_prob,
                                            tensor_view<T, D> dz, out_view<T, D> dlogits,
                                            out_view<T, D> dmu, out_view<T, D> dlog_sigma) {
  detail::mixture_log_prob_check("diag_mixture_log_prob_forward_backward", z, logits, mu,
                                 "log_sigma", log_sigma, true, log_prob, dz, dlogits, dmu,
                                 dlog_sigma, "dlog_sigma");
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::mixture_log_prob_forward_backward<true>(
        z.data(), logits.data(), mu.data(), log_sigma.data(), scale, log_prob.data(), dz.data(),
        dlogits.data(), dmu.data(), dlog_sigma.data(), z.size(0), logits.size(1), z.size(1));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::diag_mixture_log_prob_forward_backward<T>(z, logits, mu, log_sigma, scale,
                                                            log_prob, dz, dlogits, dmu,
                                                            dlog_sigma);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// z [B, D] = samples[b, choice[b]] exactly; relaxed [B, K] = r and choice [B] saved for the
// backward.
template <op_scalar T, class D>
void straight_through_mixture_sample_forward(in_view<T, D> logits, in_view<T, D> gumbel,
                                             double tau, in_view<T, D> samples,
                                             tensor_view<T, D> z, out_view<T, D> relaxed,
                                             out_view<std::int32_t, D> choice) {
  detail::st_mixture_sample_check("straight_through_mixture_sample_forward", logits, gumbel, tau,
                                  samples, z, relaxed, choice);
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::straight_through_mixture_sample_forward(
        logits.data(), gumbel.data(), tau, samples.data(), z.data(), relaxed.data(),
        choice.data(), samples.size(0), samples.size(1), samples.size(2));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::straight_through_mixture_sample_forward<T>(logits, gumbel, tau, samples, z,
                                                             relaxed, choice);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// dlogits += (r/τ)⊙(g − Σ r·g) with g_k = dz·samples_k; dsamples[b, choice] += dz (each
// optional). choice must hold the forward's indices (0 ≤ choice < K; not checked on the data).
template <op_scalar T, class D>
void straight_through_mixture_sample_backward(in_view<T, D> samples, in_view<T, D> relaxed,
                                              in_view<std::int32_t, D> choice, double tau,
                                              in_view<T, D> dz, tensor_view<T, D> dlogits,
                                              out_view<T, D> dsamples) {
  detail::st_mixture_sample_backward_check("straight_through_mixture_sample_backward", samples,
                                           relaxed, choice, tau, dz, dlogits, dsamples);
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::straight_through_mixture_sample_backward(
        samples.data(), relaxed.data(), choice.data(), tau, dz.data(), dlogits.data(),
        dsamples.data(), samples.size(0), samples.size(1), samples.size(2));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::straight_through_mixture_sample_backward<T>(samples, relaxed, choice, tau, dz,
                                                              dlogits, dsamples);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
