// ambiseg/ops/gaussian_sigma.hpp — diagonal Gaussian latents given by their standard
// deviations (PHiSeg's: σ = softplus(raw), any shape [B, ...]).
//   sigma_gaussian_rsample_forward:  z = μ + σ⊙ε
//   sigma_gaussian_rsample_backward: dmu += dz, dsigma += dz⊙ε (each optional)
// and the KL between two of them with a variance floor (PHiSeg's KL_two_gauss_with_diag_cov),
// per case:
//   mu_q, sigma_q, mu_p, sigma_p [B, ...] (one shape, rank ≥ 1), kl [B] (double, assigned):
//   kl[b] = ½ Σ_i [(σq² + (μp − μq)²)/(σp² + f) + log(σp² + f) − log(σq² + f) − 1]
//   and scale·∂kl[b]/∂· added to dmu_q, dsigma_q, dmu_p, dsigma_p (+=, each optional).
// Per case the sum runs in one thread (CPU, in order) or one block (CUDA, a fixed tree):
// deterministic on both.
#pragma once

#include <cstdint>

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/kernel_math_sigma.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void sigma_gaussian_rsample_forward(in_view<T, D> mu, in_view<T, D> sigma, in_view<T, D> eps, tensor_view<T, D> z) {
  const char* op = "sigma_gaussian_rsample_forward";
  expect_shape(op, "sigma", sigma, mu.shape());
  expect_shape(op, "eps", eps, mu.shape());
  expect_shape(op, "z", z, mu.shape());
  if constexpr (std::same_as<D, cpu>) {
    for (std::int64_t i = 0; i < mu.numel(); ++i)
      z.data()[i] = static_cast<T>(double(mu.data()[i]) + double(sigma.data()[i]) * double(eps.data()[i]));
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::sigma_gaussian_rsample_forward<T>(mu, sigma, eps, z);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void sigma_gaussian_rsample_backward(in_view<T, D> eps, in_view<T, D> dz, tensor_view<T, D> dmu,
                                     out_view<T, D> dsigma) {
  const char* op = "sigma_gaussian_rsample_backward";
  expect_shape(op, "dz", dz, eps.shape());
  detail::expect_shape_if_present(op, "dmu", dmu, eps.shape());
  detail::expect_shape_if_present(op, "dsigma", dsigma, eps.shape());
  if constexpr (std::same_as<D, cpu>) {
    for (std::int64_t i = 0; i < eps.numel(); ++i) {
      if (dmu.data()) dmu.data()[i] += dz.data()[i];
      if (dsigma.data()) dsigma.data()[i] += static_cast<T>(double(dz.data()[i]) * double(eps.data()[i]));
    }
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::sigma_gaussian_rsample_backward<T>(eps, dz, dmu, dsigma);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <op_scalar T, class D>
void gaussian_kl_sigma_forward_backward(in_view<T, D> mu_q, in_view<T, D> sigma_q, in_view<T, D> mu_p,
                                        in_view<T, D> sigma_p, double floor, double scale,
                                        out_view<double, D> kl, tensor_view<T, D> dmu_q,
                                        out_view<T, D> dsigma_q, out_view<T, D> dmu_p,
                                        out_view<T, D> dsigma_p) {
  detail::gaussian_kl_sigma_check("gaussian_kl_sigma_forward_backward", mu_q, sigma_q, mu_p, sigma_p, floor, kl,
                                  dmu_q, dsigma_q, dmu_p, dsigma_p);
  if constexpr (std::same_as<D, cpu>) {
    const std::int64_t b = mu_q.size(0), k = b ? mu_q.numel() / b : 0;
    for (std::int64_t r = 0; r < b; ++r) {
      double sum = 0.0;
      for (std::int64_t j = r * k; j < (r + 1) * k; ++j) {
        const auto t = kernel_math::gaussian_kl_sigma(mu_q.data()[j], sigma_q.data()[j], mu_p.data()[j],
                                                      sigma_p.data()[j], floor);
        sum += t.value;
        if (dmu_q.data()) dmu_q.data()[j] += static_cast<T>(scale * t.dmu_q);
        if (dsigma_q.data()) dsigma_q.data()[j] += static_cast<T>(scale * t.dsigma_q);
        if (dmu_p.data()) dmu_p.data()[j] += static_cast<T>(scale * t.dmu_p);
        if (dsigma_p.data()) dsigma_p.data()[j] += static_cast<T>(scale * t.dsigma_p);
      }
      kl.data()[r] = sum;
    }
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::gaussian_kl_sigma_forward_backward<T>(mu_q, sigma_q, mu_p, sigma_p, floor, scale, kl, dmu_q,
                                                        dsigma_q, dmu_p, dsigma_p);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
