// Diffusion policies: schedules (closed forms, input scaling, clipping, dλ/dt), concepts,
// predictions, weightings, timestep samplers.
//
// Expected values are closed forms written in γ-space (independent of the λ-space code)
// or, for the reference schedule, the mpmath table printed by
//   /usr/bin/python3 tools/diffusion_reference.py
#include <catch2/catch.hpp>

#include <ambiseg/diffusion/all.hpp>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

using namespace ambiseg;
using namespace ambiseg::diffusion;

namespace {

constexpr double pi = std::numbers::pi;

// Only log_snr: d_log_snr() must fall back to the finite difference.
template <class S>
struct numeric_only {
  S inner{};
  double log_snr(double t) const { return inner.log_snr(t); }
};

double rel_err(double got, double want) {
  return std::abs(got - want) / std::max(std::abs(want), 1e-300);
}

// Types that miss one requirement each (for the concept checks below).
struct no_log_snr { double lambda(double t) const { return -t; } };
struct log_snr_returns_string { std::string log_snr(double) const { return "no"; } };
struct [[maybe_unused]] prediction_without_target {
  static constexpr const char* name = "broken";
  static affine x0_coeffs(double, double) { return {}; }
};
struct sampler_without_stochastic {
  step_coeffs coefficients(double, double) const { return {}; }
};
struct weighting_with_wrong_signature { double weight(double t) const { return t; } };

}  // namespace

// ---- concepts --------------------------------------------------------------------------

TEST_CASE("policy concepts accept the library's policies and reject incomplete types",
          "[diffusion][concepts]") {
  STATIC_REQUIRE(noise_schedule<cosine>);
  STATIC_REQUIRE(noise_schedule<clipped<input_scaled<numeric_only<cosine>>>>);
  STATIC_REQUIRE(has_analytic_d_log_snr<input_scaled<cosine>>);
  STATIC_REQUIRE(!has_analytic_d_log_snr<input_scaled<numeric_only<cosine>>>);
  STATIC_REQUIRE(!has_analytic_d_log_snr<numeric_only<cosine>>);
  // clipped<> always differentiates by the chain rule (see schedules.hpp).
  STATIC_REQUIRE(has_analytic_d_log_snr<clipped<numeric_only<cosine>>>);

  STATIC_REQUIRE(!noise_schedule<no_log_snr>);
  STATIC_REQUIRE(!noise_schedule<log_snr_returns_string>);
  STATIC_REQUIRE(!noise_schedule<int>);
  STATIC_REQUIRE(prediction<v_prediction>);
  STATIC_REQUIRE(!prediction<prediction_without_target>);
  STATIC_REQUIRE(sampler<ddpm_large>);
  STATIC_REQUIRE(!sampler<sampler_without_stochastic>);
  STATIC_REQUIRE(loss_weighting<decoupled<sigmoid_weighting>, reference_schedule>);
  STATIC_REQUIRE(!loss_weighting<weighting_with_wrong_signature, cosine>);
  STATIC_REQUIRE(timestep_sampler<stratified_timesteps>);
  STATIC_REQUIRE(!timestep_sampler<cosine>);
  // Using no_log_snr, e.g. log_snr(no_log_snr{}, 0.5) or clipped<no_log_snr>, stops the
  // build with: "ambiseg::diffusion::noise_schedule: the schedule type has no member
  // `double log_snr(double t) const` ..." (check_noise_schedule; docs/diffusion.md).
}

// ---- schedules: closed forms -----------------------------------------------------------

TEST_CASE("cosine schedule: γ = cos²(πt/2), exact infinite ends", "[diffusion][schedule]") {
  const cosine s;
  CHECK(log_snr(s, 1.0 / 3) == Approx(std::log(3.0)).epsilon(1e-14));  // γ = 3/4
  CHECK(std::abs(log_snr(s, 0.5)) < 1e-15);                            // γ = 1/2
  CHECK(log_snr(s, 2.0 / 3) == Approx(-std::log(3.0)).epsilon(1e-14)); // γ = 1/4
  CHECK(log_snr(s, 0.0) == std::numeric_limits<double>::infinity());
  CHECK(log_snr(s, 1.0) == -std::numeric_limits<double>::infinity());
  CHECK(gamma(s, 0.0) == 1.0);
  CHECK(gamma(s, 1.0) == 0.0);
  CHECK(alpha(s, 1.0) == 0.0);
  CHECK(sigma(s, 0.0) == 0.0);
  for (double t : {0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99}) {
    const double c = std::cos(pi * t / 2), sn = std::sin(pi * t / 2);
    CHECK(rel_err(gamma(s, t), c * c) < 1e-12);
    CHECK(rel_err(sigma(s, t) * sigma(s, t), sn * sn) < 1e-12);
    CHECK(rel_err(snr(s, t), c * c / (sn * sn)) < 1e-12);
    CHECK(rel_err(alpha(s, t) * alpha(s, t) + sigma(s, t) * sigma(s, t), 1.0) < 1e-15);
  }
  // Near t = 1 the tiny α² keeps its relative precision (cos(π/2·t) would not).
  const double u = 1e-9;
  CHECK(rel_err(gamma(s, 1.0 - u), std::pow(std::sin(pi * u / 2), 2)) < 1e-6);
}

TEST_CASE("linear, linear_simple and parabola schedules match their γ(t)",
          "[diffusion][schedule]") {
  for (double t : {0.0, 0.05, 0.2, 0.5, 0.8, 1.0}) {
    const double u = 1e-4 + 10 * t * t;  // the reference: γ = sigmoid(−log(expm1(u))) = e^{−u}
    CHECK(rel_err(gamma(linear{}, t), std::exp(-u)) < 1e-13);
    CHECK(rel_err(sigma(linear{}, t) * sigma(linear{}, t), -std::expm1(-u)) < 1e-12);
  }
  CHECK(log_snr(linear{}, 0.0) == Approx(-std::log(std::expm1(1e-4))).epsilon(1e-14));
  for (double t : {0.1, 0.25, 0.5, 0.75, 0.9}) {
    CHECK(rel_err(gamma(linear_simple{}, t), 1 - t) < 1e-14);
    CHECK(rel_err(gamma(parabola{}, t), (1 - t * t) * (1 - t * t)) < 1e-14);
    CHECK(rel_err(sigma(parabola{}, t) * sigma(parabola{}, t), t * t * (2 - t * t)) < 1e-14);
  }
  CHECK(log_snr(linear_simple{}, 0.25) == Approx(std::log(3.0)).epsilon(1e-14));
  CHECK(log_snr(parabola{}, 0.5) == Approx(std::log(9.0 / 7.0)).epsilon(1e-14));
  CHECK(log_snr(linear_simple{}, 1.0) == -std::numeric_limits<double>::infinity());
  CHECK(log_snr(parabola{}, 0.0) == std::numeric_limits<double>::infinity());
}

TEST_CASE("input scaling: λ_b = λ + 2 log b and the paper's γ_b", "[diffusion][schedule]") {
  for (double b : {1.0, 0.5, 0.1, 0.01}) {
    const input_scaled<cosine> s(b);
    for (double t : {0.05, 0.3, 0.5, 0.9}) {
      CHECK(log_snr(s, t) - log_snr(cosine{}, t) == Approx(2 * std::log(b)).margin(1e-13));
      const double g = std::pow(std::cos(pi * t / 2), 2);
      CHECK(rel_err(gamma(s, t), b * b * g / ((b * b - 1) * g + 1)) < 1e-12);  // paper Eq. 7
    }
  }
  // Composes with any schedule, including one without an analytic derivative.
  const input_scaled<parabola> sp(parabola{}, 0.2);
  CHECK(log_snr(sp, 0.4) == Approx(log_snr(parabola{}, 0.4) + 2 * std::log(0.2)).epsilon(1e-14));
  CHECK_THROWS_AS(input_scaled<cosine>(0.0), value_error);
  CHECK_THROWS_AS(input_scaled<cosine>(1.5), value_error);
  CHECK_THROWS_WITH(input_scaled<cosine>(-1.0), Catch::Contains("input scale b = -1"));
}

TEST_CASE("clipping maps λ(0), λ(1) to ±20 for any inner schedule", "[diffusion][schedule]") {
  auto check_ends = [](const auto& s) {
    CHECK(log_snr(s, 0.0) == Approx(20.0).margin(1e-9));
    CHECK(log_snr(s, 1.0) == Approx(-20.0).margin(1e-9));
    CHECK(std::isfinite(d_log_snr(s, 0.0)));
    CHECK(std::isfinite(d_log_snr(s, 1.0)));
  };
  check_ends(make_reference_schedule(0.1));
  check_ends(clipped(cosine{}));
  check_ends(clipped(input_scaled(parabola{}, 0.3)));
  check_ends(clipped(linear{}));
  check_ends(clipped(numeric_only<linear_simple>{}));
  const clipped custom(cosine{}, 10.0, -5.0);
  CHECK(log_snr(custom, 0.0) == Approx(10.0).margin(1e-12));
  CHECK(log_snr(custom, 1.0) == Approx(-5.0).margin(1e-12));

  // γ_c is affine in γ_b with the slope k of SPEC §2.
  const reference_schedule s = make_reference_schedule(0.1);
  const input_scaled<cosine> inner(0.1);
  const double k = (stable_sigmoid(20) - stable_sigmoid(-20)) / (gamma(inner, 0) - gamma(inner, 1));
  CHECK(s.k() == Approx(k).epsilon(1e-15));
  CHECK(s.k0() == Approx(stable_sigmoid(-20) - gamma(inner, 1) * k).margin(1e-20));
  for (double t : {0.1, 0.4, 0.8})
    CHECK(gamma(s, t) == Approx(k * gamma(inner, t) + s.k0()).epsilon(1e-13));

  CHECK_THROWS_AS(clipped(cosine{}, -1.0, 1.0), value_error);
  CHECK_THROWS_AS(clipped(cosine{}, std::numeric_limits<double>::infinity()), value_error);
}

TEST_CASE("reference schedule matches the 50-digit γ-space evaluation of SPEC §2",
          "[diffusion][schedule]") {
  // {t, γ, λ, dλ/dt} from tools/diffusion_reference.py (mpmath, γ-space as SPEC writes it).
  struct row { double t, gamma, lambda, d_lambda; };
  const row table[] = {
      {0, 0.99999999793884638, 20.0, -1.1970971369704154e-9},
      {0.05, 0.61751423502404418, 0.47901068408200816, -40.164967973225761},
      {0.25, 0.055074307321774312, -2.8424229767053334, -8.8857655610147766},
      {0.5, 0.009900992119348596, -4.6051699798933619, -6.2831840119893317},
      {0.75, 0.0017127921234619922, -6.3679161587030673, -8.8857552015755131},
      {0.95, 6.1937811194614615e-5, -9.6893177818244399, -40.163631639468544},
      {1, 2.0611536181902036e-9, -20.0, -1.1970971369679612e-13},
  };
  const reference_schedule s = make_reference_schedule(0.1);
  for (const row& r : table) {
    INFO("t = " << r.t);
    CHECK(rel_err(gamma(s, r.t), r.gamma) < 1e-13);
    CHECK(log_snr(s, r.lambda == 0 ? 0.5 : r.t) == Approx(r.lambda).epsilon(1e-13).margin(1e-13));
    // dλ/dt: 0 at both ends (γ of the cosine is flat there), analytic in between.
    if (r.t == 0 || r.t == 1)
      CHECK(std::abs(d_log_snr(s, r.t)) < 1e-6);
    else
      CHECK(d_log_snr(s, r.t) == Approx(r.d_lambda).epsilon(1e-10));
  }
}

// ---- dλ/dt -----------------------------------------------------------------------------

TEMPLATE_TEST_CASE("analytic dλ/dt agrees with the finite difference", "[diffusion][schedule]",
                   cosine, linear, linear_simple, parabola) {
  const TestType analytic{};
  const numeric_only<TestType> numeric{};
  for (double t : {0.05, 0.2, 0.5, 0.8, 0.95}) {
    INFO("t = " << t);
    CHECK(d_log_snr(analytic, t) == Approx(d_log_snr(numeric, t)).epsilon(1e-7));
  }
  // Adapters carry the derivative: input scaling does not change it, clipping follows the
  // chain rule (compared against a finite difference of the clipped λ where it is smooth).
  const auto scaled = input_scaled(analytic, 0.3);
  CHECK(d_log_snr(scaled, 0.4) == Approx(d_log_snr(analytic, 0.4)).epsilon(1e-15));
  const auto clip = clipped(scaled);
  const numeric_only<decltype(clip)> clip_numeric{clip};
  for (double t : {0.1, 0.5, 0.9})
    CHECK(d_log_snr(clip, t) == Approx(d_log_snr(clip_numeric, t)).epsilon(1e-6));
}

TEST_CASE("finite-difference dλ/dt stays inside [0, 1] at the ends", "[diffusion][schedule]") {
  // linear: λ is finite at both ends; d/dt = 20t / expm1(−u) (0 at t = 0, where λ bends on
  // the scale t ~ 1e-2, hence the looser margin of the one-sided stencil).
  const numeric_only<linear> s{};
  CHECK(d_log_snr(s, 0.0) == Approx(0.0).margin(1e-4));
  CHECK(d_log_snr(s, 1.0) == Approx(20.0 / std::expm1(-(1e-4 + 10.0))).epsilon(1e-7));
  CHECK_THROWS_AS(d_log_snr(s, 1.5), value_error);
  CHECK_THROWS_AS(log_snr(cosine{}, -0.1), value_error);
  CHECK_THROWS_AS(log_snr(cosine{}, std::nan("")), value_error);
}

// ---- predictions -----------------------------------------------------------------------

TEMPLATE_TEST_CASE("prediction round trip: the target gives back x0 and ε exactly",
                   "[diffusion][prediction]", x_prediction, eps_prediction, v_prediction) {
  const reference_schedule s = make_reference_schedule(0.1);
  for (double t : {0.02, 0.3, 0.7, 0.99}) {
    const noise_level lv = noise_level_at(s, t);
    const affine c = TestType::x0_coeffs(lv.alpha, lv.sigma);
    const target_affine tc = TestType::target_coeffs(lv.alpha, lv.sigma);
    for (double x0 : {-1.0, 1.0, 0.3}) {
      for (double eps : {-1.7, 0.4}) {
        const double x_t = noised(lv.alpha, lv.sigma, x0, eps);
        const double f = regression_target(tc.c_x0, tc.c_eps, x0, eps);
        const double x0_hat = predicted_x0(c.c_xt, c.c_f, x_t, f);
        CHECK(x0_hat == Approx(x0).margin(1e-9));
        CHECK(predicted_eps(lv.alpha, 1 / lv.sigma, x_t, x0_hat) == Approx(eps).margin(1e-9));
        CHECK(output_for_x0(c.c_xt, c.c_f, x_t, x0_hat) == Approx(f).margin(1e-9));
        // ∂x̂0/∂f = c_f, checked by a difference quotient.
        const double h = 1e-6;
        CHECK((predicted_x0(c.c_xt, c.c_f, x_t, f + h) - predicted_x0(c.c_xt, c.c_f, x_t, f - h)) /
                  (2 * h) == Approx(c.c_f).epsilon(1e-6));
      }
    }
  }
}

TEST_CASE("prediction coefficients are x̂0 = f, (x_t − σf)/α, αx_t − σf", "[diffusion][prediction]") {
  const double a = 0.6, s = 0.8;
  CHECK(x_prediction::x0_coeffs(a, s).c_f == 1.0);
  CHECK(x_prediction::x0_coeffs(a, s).c_xt == 0.0);
  CHECK(eps_prediction::x0_coeffs(a, s).c_xt == Approx(1 / 0.6));
  CHECK(eps_prediction::x0_coeffs(a, s).c_f == Approx(-0.8 / 0.6));
  CHECK(v_prediction::x0_coeffs(a, s).c_xt == 0.6);
  CHECK(v_prediction::x0_coeffs(a, s).c_f == -0.8);
  // v = αε − σx0
  CHECK(v_prediction::target_coeffs(a, s).c_eps == 0.6);
  CHECK(v_prediction::target_coeffs(a, s).c_x0 == -0.8);
}

// ---- weightings ------------------------------------------------------------------------

TEST_CASE("weightings at known SNR", "[diffusion][weighting]") {
  const cosine s;
  const double t3 = 1.0 / 3, t13 = 2.0 / 3;  // SNR = 3 and 1/3
  CHECK(snr_weighting{}.weight(s, t3) == Approx(3.0).epsilon(1e-13));
  CHECK(snr_weighting{}.weight(s, t13) == Approx(1.0 / 3).epsilon(1e-13));
  CHECK(truncated_snr_weighting{}.weight(s, t3) == Approx(3.0).epsilon(1e-13));
  CHECK(truncated_snr_weighting{}.weight(s, t13) == 1.0);
  CHECK(snr_plus_one_weighting{}.weight(s, t3) == Approx(4.0).epsilon(1e-13));
  CHECK(uniform_weighting{}.weight(s, t3) == 1.0);
  CHECK(sigmoid_weighting{}.weight(s, t3) == Approx(0.75).epsilon(1e-13));
  CHECK(sigmoid_weighting{-std::log(3.0)}.weight(s, t3) == Approx(0.5).epsilon(1e-13));
  CHECK(sigmoid_weighting{2.0}.weight(s, t13) == Approx(1 / (1 + std::exp(std::log(3.0) - 2))));
  // −dλ/dt of the cosine at t = 1/3 is 2π / sin(π/3) = 4π/√3.
  const double minus_dl = 4 * pi / std::sqrt(3.0);
  CHECK(decoupled<uniform_weighting>{}.weight(s, t3) == Approx(minus_dl).epsilon(1e-13));
  CHECK(decoupled<sigmoid_weighting>{}.weight(s, t3) == Approx(minus_dl * 0.75).epsilon(1e-13));
  CHECK(decoupled<snr_weighting>{}.weight(s, t13) == Approx(minus_dl / 3).epsilon(1e-12));
  // With a schedule that has no analytic derivative, decoupled<> uses the finite difference.
  CHECK(decoupled<uniform_weighting>{}.weight(numeric_only<cosine>{}, t3) ==
        Approx(minus_dl).epsilon(1e-8));
}

// ---- timesteps -------------------------------------------------------------------------

TEST_CASE("stratified timesteps put exactly one t in each stratum, in random order",
          "[diffusion][timesteps]") {
  rng g(123);
  for (std::size_t batch : {1u, 2u, 8u, 37u}) {
    std::vector<double> t(batch);
    std::vector<double> first;
    bool order_changed = false;
    for (int draw = 0; draw < 20; ++draw) {
      stratified_timesteps{}.draw(t, g);
      std::vector<int> hits(batch, 0);
      for (double v : t) {
        REQUIRE(v >= 0.0);
        REQUIRE(v <= 1.0);
        hits[std::min<std::size_t>(static_cast<std::size_t>(v * batch), batch - 1)]++;
      }
      CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
      std::vector<std::size_t> strata(batch);
      for (std::size_t i = 0; i < batch; ++i) strata[i] = static_cast<std::size_t>(t[i] * batch);
      if (draw == 0) first = t;
      else if (!std::is_sorted(strata.begin(), strata.end())) order_changed = true;
    }
    if (batch > 2) CHECK(order_changed);
  }
  // Uniform: mean 1/2 and variance 1/12 over many draws.
  std::vector<double> u(100000);
  uniform_timesteps{}.draw(u, g);
  double mean = 0, var = 0;
  for (double v : u) mean += v;
  mean /= u.size();
  for (double v : u) var += (v - mean) * (v - mean);
  var /= u.size();
  CHECK(mean == Approx(0.5).margin(4 * std::sqrt(1.0 / 12 / u.size())));
  CHECK(var == Approx(1.0 / 12).margin(0.002));
}
