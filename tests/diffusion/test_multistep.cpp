// Multistep solvers (DPM-Solver++ 1/2M/3M, SDE-DPM-Solver++ 2M, UniPC) and the sampling
// grid: coefficient identities, the order of accuracy of every step against the closed-form
// solution of the probability-flow ODE, the runner against a plain host loop, and the
// marginals of a known binary distribution.
#include <catch2/catch.hpp>

#include <ambiseg/diffusion/all.hpp>
#include <ambiseg/diffusion/runner.hpp>

#include "diffusion/reference_diffusion.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <span>
#include <string>
#include <vector>

using namespace ambiseg;
using namespace ambiseg::diffusion;

namespace {

// With x̂0 a function g(ℓ) of the half log-SNR ℓ = log(α/σ) alone, the probability-flow ODE
// d(x/σ)/dℓ = e^ℓ·g(ℓ) integrates in closed form. g(ℓ) = sin(ℓ):
// ∫ e^ℓ sin ℓ dℓ = e^ℓ (sin ℓ − cos ℓ)/2.
double forcing(double ell) { return std::sin(ell); }
double forcing_integral(double ell) { return std::exp(ell) * (std::sin(ell) - std::cos(ell)) / 2; }
double sigma_of_ell(double ell) { return sigma_from_log_snr(2 * ell); }
double exact_state(double x_a, double ell_a, double ell_b) {
  return sigma_of_ell(ell_b) * (x_a / sigma_of_ell(ell_a) + forcing_integral(ell_b) - forcing_integral(ell_a));
}

// A grid of log-SNRs λ_k = 2·ℓ_k with ℓ_k = ℓ_c + h·(k − c + 0.3·sin k): unequal steps, so
// the ratios r of the multistep formulas are not all 1, and point c stays at ℓ_c as h
// shrinks (so the derivatives of x̂0 that set the leading error do not move with h).
std::vector<double> uneven_lambdas(double ell_c, int c, double h, int points) {
  std::vector<double> l(static_cast<std::size_t>(points));
  for (int k = 0; k < points; ++k) l[static_cast<std::size_t>(k)] = 2 * (ell_c + h * (k - c + 0.3 * std::sin(k)));
  return l;
}

// One predictor step from the exact state at point i with exact history: its local error.
template <class Smp>
double predictor_local_error(const Smp& smp, double h, int i) {
  const std::vector<double> lam = uneven_lambdas(0.7, i, h, 40);
  const std::span<const double> l(lam);
  auto ell = [&](int k) { return 0.5 * lam[static_cast<std::size_t>(k)]; };
  const double x_i = exact_state(0.7, ell(0), ell(i));
  const linear_step c = smp.predict(l, i);
  double x = c.c_x * x_i + c.c_prev * exact_state(0.7, ell(0), ell(i - 1));
  for (int j = 0; j < multistep_history; ++j)
    if (i - j >= 0) x += c.c_x0[static_cast<std::size_t>(j)] * forcing(ell(i - j));
  return std::abs(x - exact_state(0.7, ell(0), ell(i + 1)));
}

// The corrector at point i (m_i known) from the exact state at i − 1: its local error.
template <class Smp>
double corrector_local_error(const Smp& smp, double h, int i) {
  const std::vector<double> lam = uneven_lambdas(0.7, i, h, 40);
  const std::span<const double> l(lam);
  auto ell = [&](int k) { return 0.5 * lam[static_cast<std::size_t>(k)]; };
  const linear_step c = smp.correct(l, i);
  double x = c.c_x * 1e3 + c.c_prev * exact_state(0.7, ell(0), ell(i - 1));  // c_x must be 0
  for (int j = 0; j < multistep_history; ++j)
    if (i - j >= 0) x += c.c_x0[static_cast<std::size_t>(j)] * forcing(ell(i - j));
  return std::abs(x - exact_state(0.7, ell(0), ell(i)));
}

// DPM-Solver++(3M) as the authors' code and diffusers write it: D2 = (D1₀ − D1₁)/(r0 + r1),
// half the second difference that a third-order step needs (dpm_solver.hpp says why).
struct dpmpp_3m_as_published {
  std::string sampler_name() const { return "dpmpp_3m (published D2)"; }
  bool is_stochastic() const { return false; }
  linear_step predict(std::span<const double> lambdas, int i) const {
    using namespace multistep_detail;
    linear_step out = dpmpp_3m{}.predict(lambdas, i);
    const double h = ell(lambdas, i + 1) - ell(lambdas, i);
    const double r0 = (ell(lambdas, i) - ell(lambdas, i - 1)) / h, r1 = (ell(lambdas, i - 1) - ell(lambdas, i - 2)) / h;
    // library 3M − published 3M = −α_s·φ3·(D1₀ − D1₁)/(r0 + r1): add it back.
    const basis half_d2 = (1.0 / (r0 + r1)) * ((1.0 / r0) * (unit(0) - unit(1)) - (1.0 / r1) * (unit(1) - unit(2)));
    out.c_x0 = out.c_x0 + (alpha_from_log_snr(lambdas[static_cast<std::size_t>(i) + 1]) * phi3(h)) * half_d2;
    return out;
  }
};

// The observed order of a local error: log2 of err(h)/err(h/2), minus one (local error
// of a method of order p is O(h^{p+1})).
template <class F>
double observed_order(F&& local_error, double h) {
  return std::log2(local_error(h) / local_error(h / 2)) - 1;
}

}  // namespace

// ---- coefficients ------------------------------------------------------------------------

TEST_CASE("sampling grids: uniform in t, uniform in λ, and their errors", "[diffusion][multistep]") {
  const reference_schedule s = make_reference_schedule(0.1);
  const std::vector<double> t = sampling_times(s, 4, time_spacing::uniform_t);
  CHECK(t == std::vector<double>{1.0, 0.75, 0.5, 0.25, 0.0});
  const std::vector<double> u = sampling_times(s, 8, time_spacing::uniform_lambda);
  REQUIRE(u.size() == 9);
  CHECK(u.front() == 1.0);
  CHECK(u.back() == 0.0);
  const std::vector<double> lam = log_snrs_at(s, u);
  for (int k = 0; k <= 8; ++k) CHECK(lam[static_cast<std::size_t>(k)] == Approx(-20.0 + 5.0 * k).margin(1e-9));
  CHECK(parse_spacing("uniform_lambda") == time_spacing::uniform_lambda);
  CHECK(parse_spacing("t") == time_spacing::uniform_t);
  CHECK_THROWS_WITH(parse_spacing("karras"), Catch::Contains("unknown time spacing 'karras'"));
  // The plain cosine has λ(0) = +inf: no uniform-λ grid.
  CHECK_THROWS_WITH(sampling_times(cosine{}, 8, time_spacing::uniform_lambda),
                    Catch::Contains("clipped<>"));
  CHECK_THROWS_AS(sampling_times(s, 0, time_spacing::uniform_t), value_error);
}

TEST_CASE("DPM-Solver++ first order is DDIM; SDE-DPM-Solver++ first order is DDPM (small variance)",
          "[diffusion][multistep]") {
  const std::vector<double> lam{-12.0, -3.5, 0.25, 4.0, 9.0};
  for (int i = 0; i + 1 < static_cast<int>(lam.size()); ++i) {
    const double lt = lam[static_cast<std::size_t>(i)], ls = lam[static_cast<std::size_t>(i) + 1];
    const step_coeffs d = ddim_sampler{}.coefficients(lt, ls);
    const linear_step a = dpmpp_1{}.predict(lam, i);
    CHECK(a.c_x == Approx(d.c_xt).epsilon(1e-12));
    CHECK(a.c_x0[0] == Approx(d.c_x0).epsilon(1e-12));
    CHECK(a.c_noise == 0.0);
    CHECK(a.c_prev == 0.0);
    if (i == 0) {  // the stochastic solver's first step has no history
      const step_coeffs p = ddpm_small{}.coefficients(lt, ls);
      const linear_step b = sde_dpmpp_2m{}.predict(lam, i);
      CHECK(b.c_x == Approx(p.c_xt).epsilon(1e-12));
      CHECK(b.c_x0[0] == Approx(p.c_x0).epsilon(1e-12));
      CHECK(b.c_noise == Approx(p.c_noise).epsilon(1e-12));
      CHECK(b.c_x0[1] == 0.0);
    }
  }
}

TEST_CASE("multistep weights of x̂0 sum to the first-order weight α_s·(1 − e^{−h})",
          "[diffusion][multistep]") {
  // A constant x̂0 is integrated exactly by every order: the difference terms cancel.
  const std::vector<double> lam = uneven_lambdas(-2.0, 0, 0.4, 20);
  auto check = [&](const auto& smp) {
    for (int i = 0; i + 1 < 20; ++i) {
      const linear_step c = smp.predict(std::span<const double>(lam), i);
      const double ls = lam[static_cast<std::size_t>(i) + 1];
      const double h = 0.5 * (ls - lam[static_cast<std::size_t>(i)]);
      double sum = 0;
      for (double v : c.c_x0) sum += v;
      INFO(smp.sampler_name() << " step " << i);
      const double first = alpha_from_log_snr(ls) * -std::expm1(smp.is_stochastic() ? -2 * h : -h);
      CHECK(sum == Approx(first).epsilon(1e-10));
      for (int j = i + 1; j < multistep_history; ++j) CHECK(c.c_x0[static_cast<std::size_t>(j)] == 0.0);
    }
  };
  check(dpmpp_2m{});
  check(dpmpp_3m{});
  check(sde_dpmpp_2m{});
  check(unipc<2>{});
  check(unipc<3>{});
}

TEST_CASE("a step to λ = +inf lands on x̂0", "[diffusion][multistep]") {
  const std::vector<double> lam{-3.0, 0.0, 2.0, INFINITY};
  for (const any_multistep_sampler& s :
       {any_multistep_sampler(dpmpp_3m{}), any_multistep_sampler(sde_dpmpp_2m{}), any_multistep_sampler(unipc<2>{})}) {
    const linear_step c = s.predict(lam, 2);
    CHECK(c.c_x == 0.0);
    CHECK(c.c_noise == 0.0);
    CHECK(c.c_x0[0] == 1.0);
    CHECK(c.c_x0[1] == 0.0);
  }
}

// ---- order of accuracy -------------------------------------------------------------------

TEST_CASE("each solver's step has its order of accuracy on the closed-form ODE", "[diffusion][multistep]") {
  // Point 6 of the grid: every method has its full history; 40 points, so no lower-order
  // final steps. Local errors shrink as h^{p+1}; the observed p (from h = 0.05 and 0.025)
  // is checked to ±0.3.
  const double h = 0.05;
  struct row {
    std::string name;
    std::function<double(double)> err;
    double order;
  };
  const std::vector<row> rows{
      {"dpmpp_1", [](double hh) { return predictor_local_error(dpmpp_1{}, hh, 6); }, 1},
      {"dpmpp_2m", [](double hh) { return predictor_local_error(dpmpp_2m{}, hh, 6); }, 2},
      {"dpmpp_3m", [](double hh) { return predictor_local_error(dpmpp_3m{}, hh, 6); }, 3},
      {"dpmpp_3m (published D2)", [](double hh) { return predictor_local_error(dpmpp_3m_as_published{}, hh, 6); }, 2},
      {"unipc predictor", [](double hh) { return predictor_local_error(unipc<2>{}, hh, 6); }, 2},
      {"unipc3 predictor", [](double hh) { return predictor_local_error(unipc<3>{}, hh, 6); }, 3},
      {"unipc1 corrector", [](double hh) { return corrector_local_error(unipc<1>{}, hh, 6); }, 2},
      {"unipc corrector", [](double hh) { return corrector_local_error(unipc<2>{}, hh, 6); }, 3},
      {"unipc3 corrector", [](double hh) { return corrector_local_error(unipc<3>{}, hh, 6); }, 4},
  };
  for (const row& r : rows) {
    const double p = observed_order(r.err, h);
    INFO(r.name << ": local error " << r.err(h) << " at h = " << h << ", observed order " << p);
    CHECK(std::abs(p - r.order) < 0.3);
  }
}

TEST_CASE("usable order: ramp up, lower-order final steps below 15 steps, no long extrapolation",
          "[diffusion][multistep]") {
  using multistep_detail::usable_order;
  std::vector<double> even10(11), even20(21);
  for (int k = 0; k <= 10; ++k) even10[static_cast<std::size_t>(k)] = -10.0 + 2.0 * k;
  for (int k = 0; k <= 20; ++k) even20[static_cast<std::size_t>(k)] = -10.0 + 1.0 * k;
  CHECK(usable_order(3, 0, even10, true) == 1);
  CHECK(usable_order(3, 1, even10, true) == 2);
  CHECK(usable_order(3, 5, even10, true) == 3);
  CHECK(usable_order(3, 8, even10, true) == 2);
  CHECK(usable_order(3, 9, even10, true) == 1);
  CHECK(usable_order(3, 9, even10, false) == 3);
  CHECK(usable_order(3, 19, even20, true) == 3);
  // A last step 5× longer than the gap before it: first order; 3× with a short gap
  // further back: second order.
  const std::vector<double> long_last{-10.0, -8.0, -6.0, -4.0, -2.0, 8.0};
  CHECK(usable_order(3, 4, long_last, false) == 1);
  const std::vector<double> short_back{-10.0, -9.0, -7.0, -6.8, -4.8, 1.2};
  CHECK(usable_order(3, 4, short_back, false) == 2);
  // The uniform-t grid of the reference schedule ends with such a step.
  const reference_schedule s = make_reference_schedule(0.1);
  const std::vector<double> lam = log_snrs_at(s, sampling_times(s, 25, time_spacing::uniform_t));
  CHECK(usable_order(3, 24, lam, true) == 1);
  CHECK(usable_order(3, 12, lam, true) == 3);
}

// ---- the runner --------------------------------------------------------------------------

namespace {

// The closed-form problem as a denoiser: x̂0 = sin(ℓ(t)), returned as the output of P.
template <class Model>
auto forcing_denoiser(const Model& model) {
  return [&model](tensor_view<const double> x_t, std::span<const double> t, tensor_view<const double>,
                  tensor_view<double> f_out) {
    const std::int64_t per = x_t.numel() / x_t.size(0);
    for (std::int64_t b = 0; b < x_t.size(0); ++b) {
      const noise_level lv = model.level(t[static_cast<std::size_t>(b)]);
      const affine c = model.x0_coeffs(lv);
      const double x0_hat = forcing(0.5 * lv.log_snr);
      for (std::int64_t i = b * per; i < (b + 1) * per; ++i) f_out[i] = output_for_x0(c.c_xt, c.c_f, x_t[i], x0_hat);
    }
  };
}

// The multistep recursion written plainly on one host vector, in double: the reference for
// diffusion_runner::sample_chains (same x̂0, same z draws in element order).
template <class Model, class Net>
std::vector<double> reference_multistep(const Model& model, Net&& net, const any_multistep_sampler& smp,
                                        std::vector<double> x, int chains, int steps, time_spacing spacing,
                                        rng& g) {
  const std::vector<double> grid = sampling_times(model.schedule(), steps, spacing);
  const std::vector<double> lam = log_snrs_at(model.schedule(), grid);
  const std::size_t n = x.size();
  std::vector<std::vector<double>> m;  // m_0 … m_i
  std::vector<double> prev = x, f(n);
  for (int i = 0; i < steps; ++i) {
    const std::vector<double> t(static_cast<std::size_t>(chains), grid[static_cast<std::size_t>(i)]);
    tensor<double> xt({chains, 1, 1, static_cast<std::int64_t>(n) / chains});
    std::copy(x.begin(), x.end(), xt.data());
    tensor<double> ft(xt.shape());
    net(xt.cview(), std::span<const double>(t), tensor_view<const double>{}, ft.view());
    const affine c = model.x0_coeffs(model.level(t[0]));
    std::vector<double> x0(n);
    for (std::size_t e = 0; e < n; ++e) x0[e] = c.c_xt * x[e] + c.c_f * ft[static_cast<std::int64_t>(e)];
    m.push_back(x0);
    auto combine = [&](const linear_step& s, const std::vector<double>& z) {
      std::vector<double> out(n);
      for (std::size_t e = 0; e < n; ++e) {
        double v = s.c_x * x[e] + s.c_prev * prev[e];
        for (int j = 0; j < multistep_history && i - j >= 0; ++j)
          v += s.c_x0[static_cast<std::size_t>(j)] * m[static_cast<std::size_t>(i - j)][e];
        if (!z.empty()) v += s.c_noise * z[e];
        out[e] = v;
      }
      return out;
    };
    if (smp.corrects() && i >= 1) x = combine(smp.correct(lam, i), {});
    prev = x;
    std::vector<double> z;
    if (smp.is_stochastic()) {
      z.resize(n);
      for (double& v : z) v = g.normal();
    }
    x = combine(smp.predict(lam, i), z);
  }
  return x;
}

std::vector<any_multistep_sampler> all_solvers() {
  return {any_multistep_sampler(dpmpp_1{}),      any_multistep_sampler(dpmpp_2m{}),
          any_multistep_sampler(dpmpp_3m{}),     any_multistep_sampler(sde_dpmpp_2m{}),
          any_multistep_sampler(unipc<1>{}),     any_multistep_sampler(unipc<2>{}),
          any_multistep_sampler(unipc<3>{})};
}

}  // namespace

TEST_CASE("the runner's multistep loop agrees with the plain host recursion", "[diffusion][multistep]") {
  const gaussian_diffusion<reference_schedule, eps_prediction, uniform_weighting> model(make_reference_schedule(0.1));
  auto net = forcing_denoiser(model);
  for (const any_multistep_sampler& smp : all_solvers())
    for (int steps : {1, 3, 7, 20})
      for (time_spacing spacing : {time_spacing::uniform_t, time_spacing::uniform_lambda}) {
        rng g0(7);
        tensor<double> x({3, 1, 2, 2});
        for (double& v : x) v = g0.normal();
        const std::vector<double> x1(x.begin(), x.end());
        rng g1(11), g2(11);
        diffusion_runner<decltype(model), double, cpu> run(model);
        sampling_options opts;
        opts.steps = steps;
        opts.spacing = spacing;
        run.sample_chains(net, smp, x.view(), {}, g1, opts);
        const std::vector<double> want = reference_multistep(model, net, smp, x1, 3, steps, spacing, g2);
        INFO(smp.sampler_name() << ", " << steps << " steps, " << spacing_name(spacing));
        for (std::size_t e = 0; e < want.size(); ++e)
          CHECK(x[static_cast<std::int64_t>(e)] == Approx(want[e]).epsilon(1e-12).margin(1e-12));
      }
}

using reference::binary_denoiser;

namespace {

// The probability-flow ODE moves every x along its quantile: with the marginal
// F_t(x) = p·Φ((x − α_t)/σ_t) + (1 − p)·Φ((x + α_t)/σ_t) of the binary mixture, the exact
// solution from t to s is x_s = F_s⁻¹(F_t(x_t)) (found by bisection).
double mixture_cdf(double x, double alpha, double sigma, double p) {
  auto phi = [](double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); };
  return p * phi((x - alpha) / sigma) + (1 - p) * phi((x + alpha) / sigma);
}
double exact_flow(double x_t, const noise_level& from, const noise_level& to, double p) {
  const double target = mixture_cdf(x_t, from.alpha, from.sigma, p);
  double lo = -50, hi = 50;
  for (int it = 0; it < 200; ++it) {
    const double mid = 0.5 * (lo + hi);
    (mixture_cdf(mid, to.alpha, to.sigma, p) < target ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// Least-squares slope of log(error) against log(N).
double fitted_slope(const std::vector<int>& steps, const std::vector<double>& errors) {
  double mx = 0, my = 0;
  const double n = static_cast<double>(steps.size());
  for (std::size_t k = 0; k < steps.size(); ++k) mx += std::log(steps[k]) / n, my += std::log(errors[k]) / n;
  double sxy = 0, sxx = 0;
  for (std::size_t k = 0; k < steps.size(); ++k) {
    const double dx = std::log(steps[k]) - mx;
    sxy += dx * (std::log(errors[k]) - my), sxx += dx * dx;
  }
  return sxy / sxx;
}

}  // namespace

// The test: on the exact posterior-mean denoiser the error against the exact ODE
// solution falls as N⁻¹ for DDIM (dpmpp_1: DDIM's step, landing on t = 0 instead of
// returning x̂0 at t = 1/N) and as N⁻² for DPM-Solver++ 2M. λ runs from −6 to 6 (a
// clipped cosine, uniform-λ grid, N = 16 … 128, so no lower-order final steps); 22 chains
// start at x_1 ∈ [−2, −1] ∪ [1, 2], p = 0.3. Chains that start near the quantile that
// splits the two outcomes follow a stiff trajectory: there the error is larger and its
// slope reaches −2 only beyond N = 128 (for x_1 ∈ [−2, 2] the fitted 2M slope over
// N = 16 … 128 is −1.25). 3M's first steps are first and second order, which caps its
// global order at 2 here; it and UniPC must still beat 2M at every N.
TEST_CASE("global error on the exact denoiser falls as N^-1 (DDIM) and N^-2 (DPM-Solver++ 2M)",
          "[diffusion][multistep]") {
  using schedule_t = clipped<input_scaled<cosine>>;
  const schedule_t sched(input_scaled<cosine>(cosine{}, 1.0), 6.0, -6.0);
  const gaussian_diffusion<schedule_t, x_prediction, uniform_weighting> model(sched);
  const double p = 0.3;
  const int chains = 22;
  tensor<double> cond({chains, 1, 1, 1});
  std::fill(cond.begin(), cond.end(), p);
  tensor<double> x1({chains, 1, 1, 1});
  for (int c = 0; c < 11; ++c) x1[c] = -2.0 + 0.1 * c, x1[11 + c] = 1.0 + 0.1 * c;
  std::vector<double> exact(chains);
  for (int c = 0; c < chains; ++c) exact[static_cast<std::size_t>(c)] = exact_flow(x1[c], model.level(1.0), model.level(0.0), p);
  auto error = [&](const any_multistep_sampler& smp, int steps) {
    tensor<double> x = x1.clone();
    rng g(1);
    diffusion_runner<decltype(model), double, cpu> run(model);
    sampling_options opts;
    opts.steps = steps;
    opts.spacing = time_spacing::uniform_lambda;
    run.sample_chains(binary_denoiser(model), smp, x.view(), cond.cview(), g, opts);
    double worst = 0;
    for (int c = 0; c < chains; ++c) worst = std::max(worst, std::abs(x[c] - exact[static_cast<std::size_t>(c)]));
    return worst;
  };
  const std::vector<int> ns{16, 32, 64, 128};
  const any_multistep_sampler ddim(dpmpp_1{}), second(dpmpp_2m{}), third(dpmpp_3m{}), uni(unipc<2>{});
  std::vector<double> e1, e2;
  for (int n : ns) e1.push_back(error(ddim, n)), e2.push_back(error(second, n));
  const double s1 = fitted_slope(ns, e1), s2 = fitted_slope(ns, e2);
  INFO("fitted slopes: DDIM " << s1 << ", DPM-Solver++ 2M " << s2 << "; errors at N = 16: " << e1[0] << ", " << e2[0]);
  CHECK(s1 == Approx(-1.0).margin(0.15));
  CHECK(s2 == Approx(-2.0).margin(0.2));
  for (std::size_t k = 0; k < ns.size(); ++k) {
    const double e3 = error(third, ns[k]), eu = error(uni, ns[k]);
    INFO("N = " << ns[k] << ": 2M " << e2[k] << ", 3M " << e3 << ", UniPC " << eu);
    CHECK(e3 < e2[k]);
    CHECK(eu < e2[k]);
  }
}

// The probability-flow ODE and the reverse SDE both carry N(0, 1) to the binary mixture, so
// every solver's masks must show P(x0 = +1) = p. 5000 pixel chains per p on the uniform-λ
// grid, 50 steps; tolerance: 4 binomial standard deviations plus 0.01 of discretisation
// bias (examples/few_step_samplers measures |P̂ − p| ≤ 0.011 for every solver at 50 steps
// with 20 000 chains, binomial noise ≈ 0.003 included).
TEMPLATE_TEST_CASE("every multistep solver with the exact denoiser reproduces P(x0 = +1) = p",
                   "[diffusion][multistep][e2e]", x_prediction, eps_prediction, v_prediction) {
  const gaussian_diffusion<reference_schedule, TestType, uniform_weighting> model(make_reference_schedule(0.1));
  const double ps[] = {0.1, 0.3, 0.5, 0.8};
  tensor<double> images({4, 1, 10, 10});
  for (int k = 0; k < 4; ++k) std::fill(images.data() + k * 100, images.data() + (k + 1) * 100, ps[k]);
  const int n_chains = 50, n = n_chains * 100;
  for (const any_multistep_sampler& smp : all_solvers()) {
    diffusion_runner<decltype(model), double, cpu> run(model);
    rng g(2024);
    sampling_options opts;
    opts.steps = 50;
    opts.spacing = time_spacing::uniform_lambda;
    const tensor<double> x0 = run.sample(binary_denoiser(model), smp, images, n_chains, g, opts);
    const tensor<std::uint8_t> masks = to_masks(x0);
    for (int k = 0; k < 4; ++k) {
      double ones = 0;
      for (int j = 0; j < n; ++j) ones += masks[k * n + j];
      const double freq = ones / n, p = ps[k];
      INFO(smp.sampler_name() << ", " << TestType::name << "-prediction, p = " << p << ": frequency " << freq);
      CHECK(std::abs(freq - p) < 4 * std::sqrt(p * (1 - p) / n) + 0.01);
    }
  }
}

TEST_CASE("multistep sampling checks its inputs", "[diffusion][multistep]") {
  const gaussian_diffusion<reference_schedule, x_prediction, uniform_weighting> model(make_reference_schedule(0.1));
  diffusion_runner<decltype(model), double, cpu> run(model);
  auto net = forcing_denoiser(model);
  rng g(1);
  tensor<double> x({2, 1, 2, 2});
  sampling_options opts;
  opts.steps = 0;
  CHECK_THROWS_WITH(run.sample_chains(net, any_multistep_sampler(dpmpp_2m{}), x.view(), {}, g, opts),
                    Catch::Contains("steps = 0"));
  opts.steps = 4;
  tensor<double> cond({3, 1, 2, 2});
  CHECK_THROWS_AS(run.sample_chains(net, any_multistep_sampler(dpmpp_2m{}), x.view(), cond.cview(), g, opts),
                  shape_error);
  // A sampler whose coefficients are NaN is reported, not run.
  struct broken {
    std::string sampler_name() const { return "broken"; }
    bool is_stochastic() const { return false; }
    linear_step predict(std::span<const double>, int) const { return {NAN, 0, {}, 0}; }
  };
  CHECK_THROWS_WITH(run.sample_chains(net, broken{}, x.view(), {}, g, opts), Catch::Contains("non-finite coefficients"));
}
