// ambiseg/diffusion/samplers.hpp — one reverse step from t to s < t, as three scalars.
//
// A sampler turns (λ_t, λ_s) into x_s = c_xt·x_t + c_x0·x̂0 + c_noise·z with z ~ N(0, I);
// the facade (diffusion.hpp) runs the grid t_i = i/N from t = 1 down to 0, evaluates the
// network at t, and returns x̂0 at the last step (s = 0). With r = SNR(t)/SNR(s) =
// exp(λ_t − λ_s) ≤ 1 and c = 1 − r = −expm1(λ_t − λ_s):
//
//   DDIM (η = 0)   x_s = α_s x̂0 + σ_s ε̂,  ε̂ = (x_t − α_t x̂0)/σ_t
//                      = (σ_s/σ_t)·x_t + α_s·(1 − √r)·x̂0
//   DDPM           mean = r·(α_s/α_t)·x_t + c·α_s·x̂0,  variance c·σ_s² ("small": the
//                  true posterior q(x_s | x_t, x0)) or c·σ_t² ("large", the reference)
//
// The paper's printed Eq. 2 has −c·α_t·x0 and c = 1 − SNR(s)/SNR(t); both are misprints
// (with them c < 0 and the "variance" c(1 − α_s²) is negative). docs/diffusion.md derives
// the correct form; tests/diffusion checks it against the posterior.
#pragma once

#include <cmath>

#include "ambiseg/core/config.hpp"
#include "ambiseg/diffusion/concepts.hpp"

namespace ambiseg::diffusion {

struct ddim_sampler {
  static constexpr const char* name = "ddim";
  static constexpr bool stochastic = false;
  step_coeffs coefficients(double lambda_t, double lambda_s) const {
    const double sigma_t = sigma_from_log_snr(lambda_t);
    const double alpha_s = alpha_from_log_snr(lambda_s), sigma_s = sigma_from_log_snr(lambda_s);
    // 1 − √r as −expm1(...): exact when r → 1 (tiny steps) and when λ_t = −inf.
    return {sigma_s / sigma_t, -alpha_s * std::expm1(0.5 * (lambda_t - lambda_s)), 0.0};
  }
};

enum class ddpm_variance { small, large };

template <ddpm_variance Variance>
struct ddpm_sampler {
  static constexpr const char* name = Variance == ddpm_variance::small ? "ddpm_small" : "ddpm_large";
  static constexpr bool stochastic = true;
  step_coeffs coefficients(double lambda_t, double lambda_s) const {
    const double alpha_t = alpha_from_log_snr(lambda_t), sigma_t = sigma_from_log_snr(lambda_t);
    const double alpha_s = alpha_from_log_snr(lambda_s), sigma_s = sigma_from_log_snr(lambda_s);
    const double c = -std::expm1(lambda_t - lambda_s);
    // r·α_s/α_t written as α_t·σ_s²/(σ_t²·α_s): finite where α_t = 0 (t = 1, unclipped).
    const double c_xt = alpha_t * sigma_s * sigma_s / (sigma_t * sigma_t * alpha_s);
    const double std_dev = std::sqrt(c) * (Variance == ddpm_variance::small ? sigma_s : sigma_t);
    return {c_xt, c * alpha_s, std_dev};
  }
};

using ddpm_small = ddpm_sampler<ddpm_variance::small>;
using ddpm_large = ddpm_sampler<ddpm_variance::large>;

static_assert(sampler<ddim_sampler>);
static_assert(sampler<ddpm_small>);
static_assert(sampler<ddpm_large>);

// ---- per-element maths (host and device) ----------------------------------------------

template <class T>
AMBISEG_HD T reverse_step(T c_xt, T c_x0, T c_noise, T x_t, T x0_hat, T z) {
  return c_xt * x_t + c_x0 * x0_hat + c_noise * z;
}
template <class T>
AMBISEG_HD T clip_unit(T v) {
  return v < T(-1) ? T(-1) : (v > T(1) ? T(1) : v);
}

}  // namespace ambiseg::diffusion
