// ambiseg/diffusion/unipc.hpp — UniPC (Zhao et al. 2023), data prediction, B(h) = e^h − 1
// ("bh2"): a multistep predictor (UniP) and a corrector (UniC) that reuses the network
// output at the new point, so correction costs no extra pass.
//
// With ℓ = λ/2, h = ℓ_s − ℓ_t, h_φ1 = e^{−h} − 1, B = e^{−h} − 1 and, for the order p
// of a step, r_k = (ℓ_{t_k} − ℓ_t)/h for the k = 1 … p−1 earlier points (then r_p = 1),
// D_k = (m_{t_k} − m_t)/r_k, R_{jk} = r_k^j and b_j = j!·φ_{j+1}(h)/B from the recursion
// φ_1 = h_φ1/(−h) − 1, φ_{j+1} = φ_j/(−h) − 1/(j+1)!:
//
//   predict   x_s = (σ_s/σ_t)·x_t − α_s·h_φ1·m_t − α_s·B·Σ_k ρ_k·D_k
//             ρ = R[:p−1, :p−1]⁻¹·b[:p−1] (ρ = ½ when p = 2)
//   correct   at the next point, once m_s is known:
//             x_s ← (σ_s/σ_t)·x_t − α_s·h_φ1·m_t − α_s·B·(Σ_{k<p} ρ_k·D_k + ρ_p·(m_s − m_t))
//             ρ = R⁻¹·b (ρ = ½ when p = 1), p the order the predictor used
//
// The network is evaluated at the predicted (uncorrected) state, as the paper does.
#pragma once

#include <array>
#include <cmath>
#include <span>
#include <string>

#include "ambiseg/diffusion/multistep.hpp"

namespace ambiseg::diffusion {

namespace unipc_detail {
// Solves the n×n system a·x = b (n ≤ 3) by Gaussian elimination with partial pivoting.
inline std::array<double, 3> solve(std::array<std::array<double, 3>, 3> a, std::array<double, 3> b, int n) {
  for (int c = 0; c < n; ++c) {
    int pivot = c;
    for (int r = c + 1; r < n; ++r)
      if (std::abs(a[r][c]) > std::abs(a[pivot][c])) pivot = r;
    std::swap(a[c], a[pivot]);
    std::swap(b[c], b[pivot]);
    for (int r = c + 1; r < n; ++r) {
      const double f = a[r][c] / a[c][c];
      for (int k = c; k < n; ++k) a[r][k] -= f * a[c][k];
      b[r] -= f * b[c];
    }
  }
  std::array<double, 3> x{};
  for (int r = n - 1; r >= 0; --r) {
    double s = b[r];
    for (int k = r + 1; k < n; ++k) s -= a[r][k] * x[k];
    x[r] = s / a[r][r];
  }
  return x;
}

// The coefficients ρ of one UniPC update of order p from ℓ_t to ℓ_s = ℓ_t + h, with the
// earlier points' ratios r_1 … r_{p−1}; corrector: the p-point solve, else the predictor's.
inline std::array<double, 3> rhos(double h, const std::array<double, 3>& r_earlier, int p, bool corrector) {
  const double hh = -h, b_h = std::expm1(hh);
  std::array<double, 3> r{};
  for (int k = 0; k < p - 1; ++k) r[k] = r_earlier[k];
  r[p - 1] = 1.0;
  std::array<std::array<double, 3>, 3> big_r{};
  std::array<double, 3> b{};
  double h_phi_k = std::expm1(hh) / hh - 1.0, factorial = 1.0;
  for (int j = 1; j <= p; ++j) {
    for (int k = 0; k < p; ++k) big_r[j - 1][k] = std::pow(r[k], j - 1);
    b[j - 1] = h_phi_k * factorial / b_h;
    factorial *= j + 1;
    h_phi_k = h_phi_k / hh - 1.0 / factorial;
  }
  if (corrector) return p == 1 ? std::array<double, 3>{0.5, 0, 0} : solve(big_r, b, p);
  if (p == 2) return {0.5, 0, 0};
  return p == 1 ? std::array<double, 3>{} : solve(big_r, b, p - 1);
}
}  // namespace unipc_detail

template <int Order>
struct unipc {
  static_assert(Order >= 1 && Order <= 3, "unipc: order 1, 2 or 3");
  bool lower_order_final = true;
  bool use_corrector = true;

  std::string sampler_name() const { return Order == 2 ? "unipc" : "unipc" + std::to_string(Order); }
  bool is_stochastic() const { return false; }
  bool corrects() const { return use_corrector; }

  linear_step predict(std::span<const double> lambdas, int i) const {
    using namespace multistep_detail;
    const step_ends e = ends_of(lambdas, i);
    if (e.lands_on_x0) return onto_x0();
    const int p = usable_order(Order, i, lambdas, lower_order_final);
    const double h = e.h, as = e.alpha_s;
    linear_step out;
    out.c_x = e.sigma_s / e.sigma_t;
    basis m = (-as * std::expm1(-h)) * unit(0);
    std::array<double, 3> r{};
    for (int k = 1; k < p; ++k) r[k - 1] = (ell(lambdas, i - k) - ell(lambdas, i)) / h;
    const auto rho = unipc_detail::rhos(h, r, p, false);
    const double b_h = std::expm1(-h);
    for (int k = 1; k < p; ++k) m = m - (as * b_h * rho[k - 1] / r[k - 1]) * (unit(k) - unit(0));
    out.c_x0 = m;
    return out;
  }

  // At point j ≥ 1 (m_j just computed): the state x_j recomputed from x_{j−1}.
  linear_step correct(std::span<const double> lambdas, int j) const {
    using namespace multistep_detail;
    const double lt = lambdas[static_cast<std::size_t>(j) - 1], ls = lambdas[static_cast<std::size_t>(j)];
    linear_step out;
    out.c_x = 1.0;  // uncorrected where the formula is undefined
    if (std::isinf(ls) || std::isinf(lt)) return out;
    const int p = usable_order(Order, j - 1, lambdas, lower_order_final);
    const double h = ell(lambdas, j) - ell(lambdas, j - 1);
    const double as = alpha_from_log_snr(ls), b_h = std::expm1(-h);
    out.c_x = 0.0;
    out.c_prev = sigma_from_log_snr(ls) / sigma_from_log_snr(lt);
    // Relative to point j: m_{j−1} is unit(1), m_{j−1−k} is unit(1 + k).
    basis m = (-as * std::expm1(-h)) * unit(1);
    std::array<double, 3> r{};
    for (int k = 1; k < p; ++k) r[k - 1] = (ell(lambdas, j - 1 - k) - ell(lambdas, j - 1)) / h;
    const auto rho = unipc_detail::rhos(h, r, p, true);
    for (int k = 1; k < p; ++k) m = m - (as * b_h * rho[k - 1] / r[k - 1]) * (unit(1 + k) - unit(1));
    m = m - (as * b_h * rho[p - 1]) * (unit(0) - unit(1));
    out.c_x0 = m;
    return out;
  }
};

static_assert(correcting_sampler<unipc<2>>);

}  // namespace ambiseg::diffusion
