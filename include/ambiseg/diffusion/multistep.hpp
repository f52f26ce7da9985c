// ambiseg/diffusion/multistep.hpp — samplers that remember: each step is a linear
// combination of the state, the state one grid point back and the last few x̂0.
//
// On the grid t_0 = 1 > … > t_N = 0 (sampling_grid.hpp) with log-SNRs λ_0 < … < λ_N, the
// network is evaluated at points 0 … N−1, giving m_k = x̂0(x_k, t_k). A multistep sampler
// says, for the step from point i to i + 1,
//
//   predict(λ, i):  x_{i+1} = c_x·x_i + c_prev·x_{i−1} + Σ_j c_x0[j]·m_{i−j} + c_noise·z
//
// and, if it corrects (UniPC), for i ≥ 1, before predicting,
//
//   correct(λ, i):  x_i ← c_x·x_i + c_prev·x_{i−1} + Σ_j c_x0[j]·m_{i−j}
//
// where x_{i−1} is the state the previous step started from (corrected in its turn). The
// coefficients are host doubles; the runner (runner.hpp) applies them with the same
// per-element kernel as the one-step samplers, so a new sampler is host maths only and runs
// on every device. Entries for points before 0 must be zero (start with a lower order).
//
// The solvers work in half log-SNR ℓ = λ/2 = log(α/σ), the variable of the DPM-Solver and
// UniPC papers; h = ℓ_{i+1} − ℓ_i > 0.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <functional>
#include <span>
#include <string>
#include <utility>

#include "ambiseg/diffusion/concepts.hpp"

namespace ambiseg::diffusion {

// How many past x̂0 a multistep sampler may combine (m_i … m_{i−3}).
inline constexpr int multistep_history = 4;

struct linear_step {
  double c_x = 0;     // the state at point i
  double c_prev = 0;  // the state at point i − 1
  std::array<double, multistep_history> c_x0{};  // m_i, m_{i−1}, m_{i−2}, m_{i−3}
  double c_noise = 0;
};

template <class S>
concept multistep_sampler = std::copy_constructible<S> &&
                            requires(const S& s, std::span<const double> lambdas, int i) {
                              { s.predict(lambdas, i) } -> std::same_as<linear_step>;
                              { s.is_stochastic() } -> std::convertible_to<bool>;
                              { s.sampler_name() } -> std::convertible_to<std::string>;
                            };

template <class S>
concept correcting_sampler = multistep_sampler<S> && requires(const S& s, std::span<const double> l, int i) {
  { s.correct(l, i) } -> std::same_as<linear_step>;
  { s.corrects() } -> std::convertible_to<bool>;
};

template <class S>
constexpr bool check_multistep_sampler() {
  static_assert(requires(const S& s, std::span<const double> l, int i) {
                  { s.predict(l, i) } -> std::same_as<linear_step>;
                }, "ambiseg::diffusion::multistep_sampler: missing `linear_step predict(std::span<const "
                   "double> log_snrs, int i) const` (the step from grid point i to i + 1)");
  static_assert(requires(const S& s) { { s.is_stochastic() } -> std::convertible_to<bool>; },
                "ambiseg::diffusion::multistep_sampler: missing `bool is_stochastic() const`");
  static_assert(requires(const S& s) { { s.sampler_name() } -> std::convertible_to<std::string>; },
                "ambiseg::diffusion::multistep_sampler: missing `std::string sampler_name() const`");
  return true;
}

// A multistep sampler behind one type, so that run-time choices instantiate one loop.
class any_multistep_sampler {
 public:
  template <multistep_sampler S>
  explicit any_multistep_sampler(S s)
      : name_(s.sampler_name()), stochastic_(s.is_stochastic()),
        predict_([s](std::span<const double> l, int i) { return s.predict(l, i); }) {
    if constexpr (correcting_sampler<S>) {
      if (s.corrects()) correct_ = [s](std::span<const double> l, int i) { return s.correct(l, i); };
    }
  }
  linear_step predict(std::span<const double> l, int i) const { return predict_(l, i); }
  linear_step correct(std::span<const double> l, int i) const { return correct_(l, i); }
  bool corrects() const { return static_cast<bool>(correct_); }
  bool is_stochastic() const { return stochastic_; }
  std::string sampler_name() const { return name_; }

 private:
  std::string name_;
  bool stochastic_ = false;
  std::function<linear_step(std::span<const double>, int)> predict_, correct_;
};
static_assert(correcting_sampler<any_multistep_sampler>);

template <class S>
bool sampler_corrects(const S& s) {
  if constexpr (correcting_sampler<S>) return s.corrects();
  else return false;
}

// ---- the exponential-integrator functions, stable for small h --------------------------

namespace multistep_detail {
// φ1(h) = 1 − e^{−h}.
inline double phi1(double h) { return -std::expm1(-h); }
// φ2(h) = 1 − φ1(h)/h = (h − 1 + e^{−h})/h (→ h/2 as h → 0).
inline double phi2(double h) {
  if (std::isinf(h)) return 1.0;
  if (h < 0.1) return h * (1.0 / 2 - h * (1.0 / 6 - h * (1.0 / 24 - h * (1.0 / 120 - h * (1.0 / 720 - h / 5040)))));
  return 1.0 - phi1(h) / h;
}
// φ3(h) = φ2(h)/h − 1/2 (→ −h/6 as h → 0).
inline double phi3(double h) {
  if (std::isinf(h)) return -0.5;
  if (h < 0.1) return -h * (1.0 / 6 - h * (1.0 / 24 - h * (1.0 / 120 - h * (1.0 / 720 - h * (1.0 / 5040 - h / 40320)))));
  return phi2(h) / h - 0.5;
}

// Half log-SNR of point k.
inline double ell(std::span<const double> lambdas, int k) { return 0.5 * lambdas[static_cast<std::size_t>(k)]; }

// The scalars a step from grid point i to i + 1 starts from: α and σ at both ends and
// h = ℓ_s − ℓ_t. A step to λ_s = +∞ (α_s = 1, σ_s = 0) lands on x̂0 itself (onto_x0()).
struct step_ends {
  bool lands_on_x0 = false;
  double alpha_t = 0, sigma_t = 1, alpha_s = 1, sigma_s = 0, h = 0;
};
inline step_ends ends_of(std::span<const double> lambdas, int i) {
  const double lt = lambdas[static_cast<std::size_t>(i)], ls = lambdas[static_cast<std::size_t>(i) + 1];
  step_ends e;
  e.lands_on_x0 = std::isinf(ls);
  if (e.lands_on_x0) return e;
  e.alpha_t = alpha_from_log_snr(lt);
  e.sigma_t = sigma_from_log_snr(lt);
  e.alpha_s = alpha_from_log_snr(ls);
  e.sigma_s = sigma_from_log_snr(ls);
  e.h = ell(lambdas, i + 1) - ell(lambdas, i);
  return e;
}
inline linear_step onto_x0() {
  linear_step out;
  out.c_x0[0] = 1.0;
  return out;
}

// How much longer than the gaps between its points a step may extrapolate x̂0.
inline constexpr double max_extrapolation = 4.0;

// The order a multistep method may use for the step from point i of the grid whose
// log-SNRs are `lambdas`:
//  - at most i + 1 points are known;
//  - with fewer than 15 steps the last steps drop to lower order (the solvers' published
//    practice: a long final step in λ makes extrapolated differences of x̂0 overshoot);
//  - every gap between the points used must be at least h/max_extrapolation. A uniform-t
//    grid on a λ-clipped schedule ends with one step far longer than the rest (ℓ from ≈ 0.5
//    to 10 at N = 25 on the reference schedule); fitting x̂0 through points 0.3 apart and
//    extrapolating it across 9.5 diverges (measured: third order gives masks with
//    P(+1) off by 0.44 on examples/few_step_samplers).
inline int usable_order(int order, int i, std::span<const double> lambdas, bool lower_order_final) {
  const int steps = static_cast<int>(lambdas.size()) - 1;
  int p = std::min(order, i + 1);
  if (lower_order_final && steps < 15) p = std::min(p, steps - i);
  const double h = ell(lambdas, i + 1) - ell(lambdas, i);
  for (int k = 1; k < p; ++k)
    if (ell(lambdas, i - k + 1) - ell(lambdas, i - k) < h / max_extrapolation) {
      p = k;
      break;
    }
  return std::max(p, 1);
}

using basis = std::array<double, multistep_history>;  // a combination of m_i … m_{i−3}
inline basis unit(int j) {
  basis b{};
  b[static_cast<std::size_t>(j)] = 1.0;
  return b;
}
inline basis operator+(basis a, const basis& b) {
  for (std::size_t k = 0; k < a.size(); ++k) a[k] += b[k];
  return a;
}
inline basis operator-(basis a, const basis& b) {
  for (std::size_t k = 0; k < a.size(); ++k) a[k] -= b[k];
  return a;
}
inline basis operator*(double s, basis a) {
  for (double& v : a) v *= s;
  return a;
}
}  // namespace multistep_detail

}  // namespace ambiseg::diffusion
