// ambiseg/diffusion/predictions.hpp — what the network output f means.
//
//   x    x̂0 = f                      target x0     ∂x̂0/∂f = 1
//   eps  x̂0 = (x_t − σ f)/α          target ε      ∂x̂0/∂f = −σ/α
//   v    x̂0 = α x_t − σ f            target v = αε − σx0   ∂x̂0/∂f = −σ
// and always ε̂ = (x_t − α x̂0)/σ. The policies return the per-sample scalars (double, once
// per sample); the per-element maths below is written once as AMBISEG_HD functions so the
// CUDA backend compiles the same expressions.
//
// The reference puts tanh on the network output for x-prediction: that belongs to the
// network's head, not here (f is whatever the network returns).
#pragma once

#include <cstdint>

#include "ambiseg/core/config.hpp"
#include "ambiseg/diffusion/concepts.hpp"

namespace ambiseg::diffusion {

struct x_prediction {
  static constexpr const char* name = "x";
  static affine x0_coeffs(double /*alpha*/, double /*sigma*/) { return {0.0, 1.0}; }
  static target_affine target_coeffs(double /*alpha*/, double /*sigma*/) { return {1.0, 0.0}; }
};

struct eps_prediction {
  static constexpr const char* name = "eps";
  // Undefined where α = 0 (t = 1 of an unclipped schedule): the coefficients are then
  // infinite and the facade reports it.
  static affine x0_coeffs(double alpha, double sigma) { return {1.0 / alpha, -sigma / alpha}; }
  static target_affine target_coeffs(double /*alpha*/, double /*sigma*/) { return {0.0, 1.0}; }
};

struct v_prediction {
  static constexpr const char* name = "v";
  static affine x0_coeffs(double alpha, double sigma) { return {alpha, -sigma}; }
  static target_affine target_coeffs(double alpha, double sigma) { return {-sigma, alpha}; }
};

static_assert(prediction<x_prediction>);
static_assert(prediction<eps_prediction>);
static_assert(prediction<v_prediction>);

// ---- per-element maths (host and device) ----------------------------------------------

// Forward process, paper Eq. 1: x_t = α x0 + σ ε.
template <class T>
AMBISEG_HD T noised(T alpha, T sigma, T x0, T eps) {
  return alpha * x0 + sigma * eps;
}
// x̂0 = c_xt·x_t + c_f·f.
template <class T>
AMBISEG_HD T predicted_x0(T c_xt, T c_f, T x_t, T f) {
  return c_xt * x_t + c_f * f;
}
// ε̂ = (x_t − α x̂0)/σ.
template <class T>
AMBISEG_HD T predicted_eps(T alpha, T inv_sigma, T x_t, T x0_hat) {
  return (x_t - alpha * x0_hat) * inv_sigma;
}
// The regression target f* = c_x0·x0 + c_eps·ε.
template <class T>
AMBISEG_HD T regression_target(T c_x0, T c_eps, T x0, T eps) {
  return c_x0 * x0 + c_eps * eps;
}
// Inverse of predicted_x0 for a given x̂0: the output f that a network would have to
// return (used to wrap analytic denoisers, and by tests). Needs c_f ≠ 0.
template <class T>
AMBISEG_HD T output_for_x0(T c_xt, T c_f, T x_t, T x0_hat) {
  return (x0_hat - c_xt * x_t) / c_f;
}

// The weighted x-space loss from the per-sample sums Σ_p (x̂0 − x0)²: report[i] =
// w_i·sums_i/per (the per-sample losses) and report[n] = (Σ_i report[i])/n, summed in i
// order, so every device computes the same bits.
AMBISEG_HD void x0_loss_report(const double* sums, const double* weights, double per,
                               std::int64_t n, double* report) {
  double total = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    report[i] = weights[i] * sums[i] / per;
    total += report[i];
  }
  report[n] = total / static_cast<double>(n);
}

}  // namespace ambiseg::diffusion
