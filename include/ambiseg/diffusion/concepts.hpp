// ambiseg/diffusion/concepts.hpp — what a schedule, prediction, weighting, timestep
// sampler and sampler must provide, and the schedule quantities derived through λ.
//
// Every policy is a small value type that works on doubles; tensors only meet the scalars
// the policies compute (see predictions.hpp and samplers.hpp for the per-element maths).
//
//   noise_schedule     s.log_snr(t) -> λ(t) = log SNR(t) on t ∈ [0,1], decreasing;
//                      optional s.d_log_snr(t) -> dλ/dt (else a finite difference).
//   prediction         P::x0_coeffs(α, σ)     -> affine  (x̂0 = c_xt·x_t + c_f·f)
//                      P::target_coeffs(α, σ) -> target_affine (f* = c_x0·x0 + c_eps·ε)
//   loss_weighting     w.weight(schedule, t)  -> w(t)
//   timestep_sampler   ts.draw(std::span<double> t, rng&) fills a batch of times in [0,1]
//   sampler            smp.coefficients(λ_t, λ_s) -> step_coeffs
//                      (x_s = c_xt·x_t + c_x0·x̂0 + c_noise·z), S::stochastic
//
// A type that misses a requirement fails at the first use with a static_assert that names
// the missing member (the check_* functions below), not with a page of template errors.
#pragma once

#include <cmath>
#include <concepts>
#include <limits>
#include <span>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/random.hpp"

namespace ambiseg::diffusion {

// ---- small numerics -------------------------------------------------------------------

// sigmoid(x) without overflow for either sign; sigmoid(±inf) = 1, 0 exactly.
inline double stable_sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

// ---- the concepts ---------------------------------------------------------------------

template <class S>
concept noise_schedule = std::copy_constructible<S> && requires(const S& s, double t) {
  { s.log_snr(t) } -> std::convertible_to<double>;
};

template <class S>
concept has_analytic_d_log_snr = noise_schedule<S> && requires(const S& s, double t) {
  { s.d_log_snr(t) } -> std::convertible_to<double>;
};

// x̂0 = c_xt·x_t + c_f·f; c_f is also ∂x̂0/∂f, the factor the loss gradient flows through.
struct affine {
  double c_xt = 0;
  double c_f = 0;
};
// The network's regression target f* = c_x0·x0 + c_eps·ε (x: x0, eps: ε, v: αε − σx0).
struct target_affine {
  double c_x0 = 0;
  double c_eps = 0;
};

template <class P>
concept prediction = requires(double alpha, double sigma) {
  { P::x0_coeffs(alpha, sigma) } -> std::same_as<affine>;
  { P::target_coeffs(alpha, sigma) } -> std::same_as<target_affine>;
  { P::name } -> std::convertible_to<const char*>;
};

template <class W, class S>
concept loss_weighting = noise_schedule<S> && std::copy_constructible<W> &&
                         requires(const W& w, const S& s, double t) {
                           { w.weight(s, t) } -> std::convertible_to<double>;
                         };

template <class TS>
concept timestep_sampler = requires(const TS& ts, std::span<double> t, rng& g) {
  ts.draw(t, g);
};

// One reverse step from t to s < t: x_s = c_xt·x_t + c_x0·x̂0 + c_noise·z, z ~ N(0, I).
struct step_coeffs {
  double c_xt = 0;
  double c_x0 = 0;
  double c_noise = 0;
};

template <class Smp>
concept sampler = std::copy_constructible<Smp> &&
                  requires(const Smp& smp, double lambda_t, double lambda_s) {
                    { smp.coefficients(lambda_t, lambda_s) } -> std::same_as<step_coeffs>;
                    { Smp::stochastic } -> std::convertible_to<bool>;
                  };

// ---- readable failures ----------------------------------------------------------------
// Each check names the first missing requirement. Called from the free functions and the
// facade, so a wrong policy is reported at the point of use.

template <class S>
constexpr bool check_noise_schedule() {
  static_assert(requires(const S& s, double t) { s.log_snr(t); },
                "ambiseg::diffusion::noise_schedule: the schedule type has no member "
                "`double log_snr(double t) const` (λ(t) = log SNR(t), decreasing on [0,1])");
  static_assert(!requires(const S& s, double t) { s.log_snr(t); } ||
                    requires(const S& s, double t) {
                      { s.log_snr(t) } -> std::convertible_to<double>;
                    },
                "ambiseg::diffusion::noise_schedule: log_snr(t) must return a double");
  static_assert(std::copy_constructible<S>,
                "ambiseg::diffusion::noise_schedule: the schedule must be copyable");
  return true;
}

template <class P>
constexpr bool check_prediction() {
  static_assert(requires(double a, double s) {
                  { P::x0_coeffs(a, s) } -> std::same_as<affine>;
                }, "ambiseg::diffusion::prediction: missing `static affine x0_coeffs(double "
                   "alpha, double sigma)` (x̂0 = c_xt·x_t + c_f·f)");
  static_assert(requires(double a, double s) {
                  { P::target_coeffs(a, s) } -> std::same_as<target_affine>;
                }, "ambiseg::diffusion::prediction: missing `static target_affine "
                   "target_coeffs(double alpha, double sigma)` (f* = c_x0·x0 + c_eps·ε)");
  static_assert(requires { { P::name } -> std::convertible_to<const char*>; },
                "ambiseg::diffusion::prediction: missing `static constexpr const char* name`");
  return true;
}

template <class W, class S>
constexpr bool check_loss_weighting() {
  static_assert(requires(const W& w, const S& s, double t) {
                  { w.weight(s, t) } -> std::convertible_to<double>;
                }, "ambiseg::diffusion::loss_weighting: missing `template <noise_schedule S> "
                   "double weight(const S& schedule, double t) const`");
  return true;
}

template <class TS>
constexpr bool check_timestep_sampler() {
  static_assert(timestep_sampler<TS>,
                "ambiseg::diffusion::timestep_sampler: missing `void draw(std::span<double> t, "
                "ambiseg::rng& g) const`");
  return true;
}

template <class Smp>
constexpr bool check_sampler() {
  static_assert(requires(const Smp& smp, double a, double b) {
                  { smp.coefficients(a, b) } -> std::same_as<step_coeffs>;
                }, "ambiseg::diffusion::sampler: missing `step_coeffs coefficients(double "
                   "lambda_t, double lambda_s) const`");
  static_assert(requires { { Smp::stochastic } -> std::convertible_to<bool>; },
                "ambiseg::diffusion::sampler: missing `static constexpr bool stochastic` "
                "(whether a step draws z ~ N(0, I))");
  return true;
}

// ---- schedule quantities, always through λ --------------------------------------------

template <class S>
double log_snr(const S& schedule, double t) {
  static_assert(check_noise_schedule<S>());
  throw_if<value_error>(!(t >= 0.0 && t <= 1.0), "log_snr: t = ", t, " is outside [0, 1]");
  return static_cast<double>(schedule.log_snr(t));
}

// Step of the finite difference: the cube root of the double epsilon balances truncation
// (O(h²)) against rounding (O(ε/h)) for a second-order stencil.
inline constexpr double d_log_snr_step = 6.0e-6;

// dλ/dt: the schedule's own derivative when it has one, otherwise a second-order finite
// difference in double (central inside [h, 1−h], one-sided three-point at the ends so
// that it never evaluates λ outside [0, 1]).
template <class S>
double d_log_snr(const S& schedule, double t) {
  static_assert(check_noise_schedule<S>());
  throw_if<value_error>(!(t >= 0.0 && t <= 1.0), "d_log_snr: t = ", t, " is outside [0, 1]");
  if constexpr (has_analytic_d_log_snr<S>) {
    return static_cast<double>(schedule.d_log_snr(t));
  } else {
    constexpr double h = d_log_snr_step;
    auto lam = [&](double u) { return static_cast<double>(schedule.log_snr(u)); };
    if (t - h < 0.0) return (-3.0 * lam(t) + 4.0 * lam(t + h) - lam(t + 2 * h)) / (2 * h);
    if (t + h > 1.0) return (3.0 * lam(t) - 4.0 * lam(t - h) + lam(t - 2 * h)) / (2 * h);
    return (lam(t + h) - lam(t - h)) / (2 * h);
  }
}

// γ = α² = sigmoid(λ), 1 − γ = σ² = sigmoid(−λ): both accurate even where one is tiny.
template <class S>
double gamma(const S& schedule, double t) {
  return stable_sigmoid(log_snr(schedule, t));
}
template <class S>
double alpha(const S& schedule, double t) {
  return std::sqrt(stable_sigmoid(log_snr(schedule, t)));
}
template <class S>
double sigma(const S& schedule, double t) {
  return std::sqrt(stable_sigmoid(-log_snr(schedule, t)));
}
template <class S>
double snr(const S& schedule, double t) {
  return std::exp(log_snr(schedule, t));
}

// α and σ from λ, for code that already holds λ.
inline double alpha_from_log_snr(double lambda) { return std::sqrt(stable_sigmoid(lambda)); }
inline double sigma_from_log_snr(double lambda) { return std::sqrt(stable_sigmoid(-lambda)); }

// Everything a per-sample kernel needs at one t, computed once in double.
struct noise_level {
  double t = 0;
  double log_snr = 0;
  double alpha = 0;
  double sigma = 0;
};
template <class S>
noise_level noise_level_at(const S& schedule, double t) {
  const double lambda = log_snr(schedule, t);
  return {t, lambda, alpha_from_log_snr(lambda), sigma_from_log_snr(lambda)};
}

}  // namespace ambiseg::diffusion
