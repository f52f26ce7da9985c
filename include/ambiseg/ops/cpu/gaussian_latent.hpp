// ambiseg/ops/cpu/gaussian_latent.hpp — the reparameterised sample of a diagonal Gaussian
// and the KL divergence between two, on latent vectors [B, Z] (a few hundred values: no
// threads). Every element is evaluated in double (ops/kernel_math.hpp) and rounded once.
#pragma once

#include <cstdint>

#include "ambiseg/ops/kernel_math.hpp"

namespace ambiseg::ops::cpu_kernels {

template <class T>
void diag_gaussian_rsample_forward(const T* mu, const T* log_sigma, const T* eps, T* z,
                                   std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i)
    z[i] = static_cast<T>(kernel_math::gaussian_rsample(mu[i], log_sigma[i], eps[i]));
}

// dmu += dz, dlog_sigma += dz·σ·eps; either may be null (not needed).
template <class T>
void diag_gaussian_rsample_backward(const T* log_sigma, const T* eps, const T* dz, T* dmu,
                                    T* dlog_sigma, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) {
    if (dmu) dmu[i] += dz[i];
    if (dlog_sigma)
      dlog_sigma[i] +=
          static_cast<T>(kernel_math::gaussian_rsample_dlog_sigma(log_sigma[i], eps[i], dz[i]));
  }
}

// kl[b] = Σ_z KL of the row (in order, double); the gradients of scale·kl[b] are added to
// the gradient arrays that are not null.
template <class T>
void diag_gaussian_kl_forward_backward(const T* mu_q, const T* log_sigma_q, const T* mu_p,
                                       const T* log_sigma_p, double scale, double* kl,
                                       T* dmu_q, T* dlog_sigma_q, T* dmu_p, T* dlog_sigma_p,
                                       std::int64_t b, std::int64_t z) {
  for (std::int64_t r = 0; r < b; ++r) {
    double sum = 0;
    for (std::int64_t j = r * z; j < (r + 1) * z; ++j) {
      const auto t = kernel_math::gaussian_kl(mu_q[j], log_sigma_q[j], mu_p[j], log_sigma_p[j]);
      sum += t.kl;
      if (dmu_q) dmu_q[j] += static_cast<T>(scale * t.d_mu_q);
      if (dlog_sigma_q) dlog_sigma_q[j] += static_cast<T>(scale * t.d_log_sigma_q);
      if (dmu_p) dmu_p[j] += static_cast<T>(scale * t.d_mu_p);
      if (dlog_sigma_p) dlog_sigma_p[j] += static_cast<T>(scale * t.d_log_sigma_p);
    }
    kl[r] = sum;
  }
}

}  // namespace ambiseg::ops::cpu_kernels
