// ambiseg/diffusion/dpm_solver.hpp — DPM-Solver++ (Lu et al. 2022), multistep, in the
// data-prediction form: the probability-flow ODE solved exactly in its linear part,
//
//   x_s/σ_s = x_t/σ_t + ∫_{ℓ_t}^{ℓ_s} e^ℓ x̂0(ℓ) dℓ,
//
// with x̂0 interpolated through the last k network outputs (ℓ = λ/2, h = ℓ_s − ℓ_t,
// φ1 = 1 − e^{−h}, φ2 = 1 − φ1/h, φ3 = φ2/h − ½; m0 = m_i, m1 = m_{i−1}, m2 = m_{i−2};
// r0 = (ℓ_t − ℓ_{i−1})/h, r1 = (ℓ_{i−1} − ℓ_{i−2})/h):
//
//   1st order (= DDIM, but stepping to t = 0)  x_s = (σ_s/σ_t)·x_t + α_s·φ1·m0
//   2M   + ½·α_s·φ1·D1,                       D1 = (m0 − m1)/r0
//   3M   + α_s·φ2·D1 − α_s·φ3·D2 instead,      D1 = D1₀ + r0/(r0 + r1)·(D1₀ − D1₁),
//        D2 = 2·(D1₀ − D1₁)/(r0 + r1),         D1₀ = (m0 − m1)/r0, D1₁ = (m1 − m2)/r1
//
// D1 ≈ h·x̂0′ and D2 ≈ h²·x̂0″ make 3M a third-order step: the exact integral of the
// quadratic term is −α_s·φ3·h²·x̂0″. The authors' code and diffusers write
// D2 = (D1₀ − D1₁)/(r0 + r1) ≈ h²·x̂0″/2, which leaves an O(h³) local error (second order;
// tests/diffusion/test_multistep.cpp measures both). docs/diffusion.md §4b says more.
//
// and the stochastic SDE-DPM-Solver++(2M) (the same paper's SDE form):
//
//   x_s = (σ_s/σ_t)·e^{−h}·x_t + α_s·(1 − e^{−2h})·(m0 + ½·D1) + σ_s·√(1 − e^{−2h})·z
//
// whose first-order step is exactly DDPM with the posterior ("small") variance.
// The first steps use the orders the known points allow; with fewer than 15 steps the
// final steps use lower orders (multistep_detail::usable_order). A step to λ = +∞ (an
// unclipped schedule's t = 0) is x̂0 itself.
#pragma once

#include <cmath>
#include <span>
#include <string>

#include "ambiseg/diffusion/multistep.hpp"

namespace ambiseg::diffusion {

template <int Order>
struct dpm_solver_pp {
  static_assert(Order >= 1 && Order <= 3, "dpm_solver_pp: order 1, 2 or 3");
  bool lower_order_final = true;

  std::string sampler_name() const { return Order == 1 ? "dpmpp_1" : Order == 2 ? "dpmpp_2m" : "dpmpp_3m"; }
  bool is_stochastic() const { return false; }

  linear_step predict(std::span<const double> lambdas, int i) const {
    using namespace multistep_detail;
    const step_ends e = ends_of(lambdas, i);
    if (e.lands_on_x0) return onto_x0();
    const double as = e.alpha_s, h = e.h;
    const int p = usable_order(Order, i, lambdas, lower_order_final);
    linear_step out;
    out.c_x = e.sigma_s / e.sigma_t;
    basis m = as * phi1(h) * unit(0);
    if (p >= 2) {
      const double r0 = (ell(lambdas, i) - ell(lambdas, i - 1)) / h;
      const basis d1_0 = (1.0 / r0) * (unit(0) - unit(1));
      if (p == 2) {
        m = m + (0.5 * as * phi1(h)) * d1_0;
      } else {
        const double r1 = (ell(lambdas, i - 1) - ell(lambdas, i - 2)) / h;
        const basis d1_1 = (1.0 / r1) * (unit(1) - unit(2));
        const basis d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1);
        const basis d2 = (2.0 / (r0 + r1)) * (d1_0 - d1_1);
        m = m + (as * phi2(h)) * d1 - (as * phi3(h)) * d2;
      }
    }
    out.c_x0 = m;
    return out;
  }
};

using dpmpp_1 = dpm_solver_pp<1>;
using dpmpp_2m = dpm_solver_pp<2>;
using dpmpp_3m = dpm_solver_pp<3>;

struct sde_dpmpp_2m {
  bool lower_order_final = true;

  std::string sampler_name() const { return "sde_dpmpp_2m"; }
  bool is_stochastic() const { return true; }

  linear_step predict(std::span<const double> lambdas, int i) const {
    using namespace multistep_detail;
    const step_ends e = ends_of(lambdas, i);
    if (e.lands_on_x0) return onto_x0();
    const double as = e.alpha_s, ss = e.sigma_s, st = e.sigma_t, h = e.h;
    const double one_minus_e2h = -std::expm1(-2.0 * h);
    linear_step out;
    // (σ_s/σ_t)·e^{−h} = α_t·σ_s²/(σ_t²·α_s), finite where α_t = 0 (as ddpm_small writes it).
    out.c_x = e.alpha_t * ss * ss / (st * st * as);
    basis m = as * one_minus_e2h * unit(0);
    if (usable_order(2, i, lambdas, lower_order_final) >= 2) {
      const double r0 = (ell(lambdas, i) - ell(lambdas, i - 1)) / h;
      m = m + (0.5 * as * one_minus_e2h / r0) * (unit(0) - unit(1));
    }
    out.c_x0 = m;
    out.c_noise = ss * std::sqrt(one_minus_e2h);
    return out;
  }
};

static_assert(multistep_sampler<dpmpp_2m>);
static_assert(multistep_sampler<sde_dpmpp_2m>);

}  // namespace ambiseg::diffusion
