// ambiseg/diffusion/schedules.hpp — variance-preserving noise schedules in continuous time.
//
// A schedule is its log-SNR λ(t) on t ∈ [0,1] (t = 0 data, t = 1 noise); γ = α² =
// sigmoid(λ) and σ² = sigmoid(−λ) follow (concepts.hpp). Writing schedules in λ keeps the
// ends exact: the plain cosine has λ(0) = +inf and λ(1) = −inf, and a γ-space formula would
// round both to a finite, wrong value.
//
// Adapters wrap any schedule, so a user's schedule gets them by composition:
//   input_scaled<S>  λ_b = λ + 2·log b                  (γ_b = b²γ / ((b²−1)γ + 1))
//   clipped<S>       γ mapped affinely so that λ(0) = λ_max, λ(1) = λ_min (±20 by default)
// The reference model uses clipped<input_scaled<cosine>> with b = 0.1.
#pragma once

#include <cmath>
#include <numbers>
#include <utility>

#include "ambiseg/core/error.hpp"
#include "ambiseg/diffusion/concepts.hpp"

namespace ambiseg::diffusion {

// γ(t) = cos²(πt/2); λ(t) = −2·log tan(πt/2).
struct cosine {
  static constexpr const char* name = "cosine";
  // cos(πt/2) is written as sin(π(1−t)/2) so that t = 1 gives exactly 0 (cos(π/2) in double
  // is 6e-17), hence λ(1) = −inf, and values near t = 1 keep their relative precision.
  double log_snr(double t) const {
    const double half_pi = std::numbers::pi / 2;
    return 2.0 * std::log(std::sin(half_pi * (1.0 - t))) - 2.0 * std::log(std::sin(half_pi * t));
  }
  // dλ/dt = −2π / sin(πt), with sin(πt) = sin(π·min(t, 1−t)) exact at both ends.
  double d_log_snr(double t) const {
    return -2.0 * std::numbers::pi / std::sin(std::numbers::pi * std::fmin(t, 1.0 - t));
  }
};

// The reference's "linear": γ = sigmoid(−log(expm1(u))) with u = 1e-4 + 10t², which is
// λ = −log(expm1(u)) (and γ = e^{−u}).
struct linear {
  static constexpr const char* name = "linear";
  double log_snr(double t) const { return -std::log(std::expm1(1e-4 + 10.0 * t * t)); }
  // dλ/dt = −20t·e^u / expm1(u) = 20t / expm1(−u).
  double d_log_snr(double t) const { return 20.0 * t / std::expm1(-(1e-4 + 10.0 * t * t)); }
};

// γ = 1 − t; λ = log(1 − t) − log t.
struct linear_simple {
  static constexpr const char* name = "linear_simple";
  double log_snr(double t) const { return std::log1p(-t) - std::log(t); }
  double d_log_snr(double t) const { return -1.0 / (t * (1.0 - t)); }
};

// γ = (1 − t²)²; 1 − γ = t²(2 − t²), so λ = 2·log(1 − t²) − 2·log t − log(2 − t²).
struct parabola {
  static constexpr const char* name = "parabola";
  double log_snr(double t) const {
    return 2.0 * std::log1p(-t * t) - 2.0 * std::log(t) - std::log(2.0 - t * t);
  }
  double d_log_snr(double t) const {
    return -4.0 * t / (1.0 - t * t) - 2.0 / t + 2.0 * t / (2.0 - t * t);
  }
};

// Input scaling by b ∈ (0, 1]: the SNR is multiplied by b², i.e. λ_b = λ + 2·log b.
template <class S>
class input_scaled {
  static_assert(check_noise_schedule<S>(), "input_scaled<S>: S must be a noise_schedule");

 public:
  static constexpr const char* name = "input_scaled";

  input_scaled(S inner_schedule, double b) : inner_(std::move(inner_schedule)), b_(b) {
    throw_if<value_error>(!(b > 0.0 && b <= 1.0), "input_scaled: the input scale b = ", b,
                          " must lie in (0, 1]");
    two_log_b_ = 2.0 * std::log(b);
  }
  explicit input_scaled(double b)
    requires std::default_initializable<S>
      : input_scaled(S{}, b) {}

  const S& inner() const { return inner_; }
  double b() const { return b_; }

  double log_snr(double t) const { return static_cast<double>(inner_.log_snr(t)) + two_log_b_; }
  double d_log_snr(double t) const
    requires has_analytic_d_log_snr<S>
  {
    return static_cast<double>(inner_.d_log_snr(t));
  }

 private:
  S inner_;
  double b_ = 1.0;
  double two_log_b_ = 0.0;
};

template <class S>
input_scaled(S, double) -> input_scaled<S>;

// Endpoint clipping of the reference implementation: γ_c = k·γ + k0 with k, k0 chosen so
// that γ_c(0) = sigmoid(λ_max) and γ_c(1) = sigmoid(λ_min). Computed as
//   γ_c     = sigmoid(λ_min)  + k·(γ − γ(1))
//   1 − γ_c = sigmoid(−λ_max) + k·(σ² − σ²(0))
// so both are sums of non-negative terms and λ_c = log γ_c − log(1 − γ_c) stays accurate at
// the ends (1 − γ_c(0) = 2e-9 would lose half its digits if formed as 1 − γ_c).
template <class S>
class clipped {
  static_assert(check_noise_schedule<S>(), "clipped<S>: S must be a noise_schedule");

 public:
  static constexpr const char* name = "clipped";

  clipped()
    requires std::default_initializable<S>
      : clipped(S{}) {}
  explicit clipped(S inner_schedule, double lambda_max = 20.0, double lambda_min = -20.0)
      : inner_(std::move(inner_schedule)), lambda_max_(lambda_max), lambda_min_(lambda_min) {
    throw_if<value_error>(!(std::isfinite(lambda_max) && std::isfinite(lambda_min) &&
                            lambda_max > lambda_min),
                          "clipped: need finite lambda_max > lambda_min, got lambda_max = ",
                          lambda_max, ", lambda_min = ", lambda_min);
    const double lambda0 = static_cast<double>(inner_.log_snr(0.0));
    const double lambda1 = static_cast<double>(inner_.log_snr(1.0));
    throw_if<value_error>(!(lambda0 > lambda1), "clipped: the inner schedule must have "
                          "λ(0) > λ(1), got λ(0) = ", lambda0, ", λ(1) = ", lambda1);
    gamma1_ = stable_sigmoid(lambda1);
    sigma2_0_ = stable_sigmoid(-lambda0);
    k_ = (stable_sigmoid(lambda_max) - stable_sigmoid(lambda_min)) /
         (stable_sigmoid(lambda0) - gamma1_);
  }

  const S& inner() const { return inner_; }
  double lambda_max() const { return lambda_max_; }
  double lambda_min() const { return lambda_min_; }
  double k() const { return k_; }
  double k0() const { return stable_sigmoid(lambda_min_) - gamma1_ * k_; }

  double log_snr(double t) const {
    const double lambda = static_cast<double>(inner_.log_snr(t));
    return std::log(clipped_gamma(lambda)) - std::log(clipped_one_minus_gamma(lambda));
  }

  // dλ_c/dt = k·γσ²·λ'·(1/γ_c + 1/(1 − γ_c)) by the chain rule, with λ' the inner
  // schedule's derivative (its own or a finite difference of the inner λ, which is smooth
  // where the clipped λ is not: with b = 0.1 the clipped λ falls from 20 to 18 within
  // t < 1e-5, too steep for a finite difference of λ_c). Where λ' is infinite (the plain
  // cosine at t = 0, 1), γσ²·λ' is 0·inf although it tends to a finite limit; the formula
  // is then taken a hair inside [0, 1], where the limit is reached to double precision.
  double d_log_snr(double t) const {
    const double d = chain_rule_d_log_snr(t);
    if (std::isfinite(d)) return d;
    return chain_rule_d_log_snr(t < 0.5 ? 1e-150 : std::nextafter(1.0, 0.0));
  }

 private:
  double clipped_gamma(double lambda) const {
    return stable_sigmoid(lambda_min_) + k_ * (stable_sigmoid(lambda) - gamma1_);
  }
  double clipped_one_minus_gamma(double lambda) const {
    return stable_sigmoid(-lambda_max_) + k_ * (stable_sigmoid(-lambda) - sigma2_0_);
  }
  double chain_rule_d_log_snr(double t) const {
    const double lambda = static_cast<double>(inner_.log_snr(t));
    const double d_gamma = stable_sigmoid(lambda) * stable_sigmoid(-lambda) *
                           diffusion::d_log_snr(inner_, t);
    return k_ * d_gamma * (1.0 / clipped_gamma(lambda) + 1.0 / clipped_one_minus_gamma(lambda));
  }

  S inner_;
  double lambda_max_ = 20.0;
  double lambda_min_ = -20.0;
  double gamma1_ = 0.0;    // γ_inner(1)
  double sigma2_0_ = 0.0;  // 1 − γ_inner(0)
  double k_ = 1.0;
};

template <class S>
clipped(S) -> clipped<S>;
template <class S>
clipped(S, double) -> clipped<S>;
template <class S>
clipped(S, double, double) -> clipped<S>;

// The paper's and the reference's schedule: cosine, input scale b (0.1), clipped to ±20.
using reference_schedule = clipped<input_scaled<cosine>>;
inline reference_schedule make_reference_schedule(double b = 0.1) {
  return reference_schedule(input_scaled<cosine>(cosine{}, b));
}

static_assert(noise_schedule<cosine> && has_analytic_d_log_snr<cosine>);
static_assert(noise_schedule<linear> && has_analytic_d_log_snr<linear>);
static_assert(noise_schedule<linear_simple> && has_analytic_d_log_snr<linear_simple>);
static_assert(noise_schedule<parabola> && has_analytic_d_log_snr<parabola>);
static_assert(noise_schedule<reference_schedule> && has_analytic_d_log_snr<reference_schedule>);

}  // namespace ambiseg::diffusion
