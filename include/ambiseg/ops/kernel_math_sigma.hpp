// ambiseg/ops/kernel_math_sigma.hpp — the per-element math of the σ-parametrised latents
// (PHiSeg: σ = softplus(raw), a KL with a variance floor), shared by the CPU and CUDA
// kernels, in double.
#pragma once

#include <cmath>

#include "ambiseg/core/config.hpp"

namespace ambiseg::ops::kernel_math {

// softplus(x) = log(1 + eˣ) = max(x, 0) + log1p(e^−|x|) (no overflow), and its derivative
// sigmoid(x).
AMBISEG_HD double softplus(double x) { return (x > 0.0 ? x : 0.0) + std::log1p(std::exp(-std::fabs(x))); }
AMBISEG_HD double softplus_grad(double x) {
  return x >= 0.0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
}

// One element of ½[(σq² + (μp − μq)²)/(σp² + f) + log(σp² + f) − log(σq² + f) − 1] and its
// partial derivatives (PHiSeg's KL_two_gauss_with_diag_cov, f = 1e-10).
struct kl_sigma_term {
  double value, dmu_q, dsigma_q, dmu_p, dsigma_p;
};
AMBISEG_HD kl_sigma_term gaussian_kl_sigma(double mu_q, double sigma_q, double mu_p, double sigma_p,
                                           double floor) {
  const double vq = sigma_q * sigma_q, vp = sigma_p * sigma_p + floor, dm = mu_p - mu_q;
  const double num = vq + dm * dm;
  kl_sigma_term t;
  t.value = 0.5 * (num / vp + std::log(vp) - std::log(vq + floor) - 1.0);
  t.dmu_q = -dm / vp;
  t.dmu_p = dm / vp;
  t.dsigma_q = sigma_q / vp - sigma_q / (vq + floor);
  t.dsigma_p = sigma_p / vp - sigma_p * num / (vp * vp);
  return t;
}

}  // namespace ambiseg::ops::kernel_math
