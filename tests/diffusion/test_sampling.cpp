// Diffusion facade: noising, the x-space loss and its gradient, the DDPM/DDIM steps
// against the Gaussian posterior, the paper's misprinted Eq. 2, and end-to-end sampling
// with the exact denoiser of a known binary distribution.
#include <catch2/catch.hpp>

#include <ambiseg/diffusion/all.hpp>
#include <ambiseg/diffusion/runner.hpp>

#include "diffusion/reference_diffusion.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <span>
#include <vector>

using namespace ambiseg;
using namespace ambiseg::diffusion;

namespace {

// The library's one loop (diffusion_runner) on the host. It keeps scratch buffers, so each
// test holds its own.
template <class T, class Diffusion>
diffusion_runner<Diffusion, T, cpu> on_host(const Diffusion& d) {
  return diffusion_runner<Diffusion, T, cpu>(d);
}

template <class T>
tensor<T> random_tensor(shape s, rng& g, double scale = 1.0) {
  tensor<T> out(s);
  for (T& v : out) v = static_cast<T>(scale * g.normal());
  return out;
}

// The Gaussian posterior q(x_s | x_t, x0) of the VP process, derived from the forward
// transition x_t = α_{t|s}·x_s + σ_{t|s}·ε with α_{t|s} = α_t/α_s, σ²_{t|s} = σ_t² −
// α²_{t|s}σ_s² (the standard product-of-Gaussians result, written without λ or r).
struct posterior {
  double coef_xt, coef_x0, variance, forward_variance;
};
posterior true_posterior(double alpha_t, double sigma_t, double alpha_s, double sigma_s) {
  const double a_ts = alpha_t / alpha_s;
  const double var_ts = sigma_t * sigma_t - a_ts * a_ts * sigma_s * sigma_s;
  const double st2 = sigma_t * sigma_t;
  return {a_ts * sigma_s * sigma_s / st2, alpha_s * var_ts / st2,
          var_ts * sigma_s * sigma_s / st2, var_ts};
}

}  // namespace

// ---- the forward process and the loss ----------------------------------------------------

TEMPLATE_TEST_CASE("add_noise forms α x0 + σ ε per sample", "[diffusion][loss]", float, double) {
  const gaussian_diffusion<reference_schedule, x_prediction, uniform_weighting> model(
      make_reference_schedule(0.1));
  auto run = on_host<TestType>(model);
  rng g(1);
  auto x0 = random_tensor<TestType>({2, 1, 3, 3}, g);
  auto eps = random_tensor<TestType>({2, 1, 3, 3}, g);
  tensor<TestType> x_t({2, 1, 3, 3});
  const std::vector<double> t{0.2, 0.9};
  run.add_noise(x0, t, eps, x_t);
  for (int b = 0; b < 2; ++b) {
    const double a = alpha(model.schedule(), t[b]), s = sigma(model.schedule(), t[b]);
    for (int p = 0; p < 9; ++p)
      CHECK(x_t[b * 9 + p] == Approx(a * x0[b * 9 + p] + s * eps[b * 9 + p]).epsilon(1e-6));
  }
  CHECK_THROWS_AS(run.add_noise(x0, std::vector<double>{0.5}, eps, x_t), shape_error);
  tensor<TestType> wrong({2, 1, 3, 2});
  CHECK_THROWS_WITH(run.add_noise(x0, t, eps, wrong), Catch::Contains("x_t has shape"));
}

TEMPLATE_TEST_CASE("x-space loss identities: SNR·(x0−x̂0)² = (ε−f)², (1+SNR)·(x0−x̂0)² = (v−f)²",
                   "[diffusion][loss]", eps_prediction, v_prediction) {
  using model_type = gaussian_diffusion<reference_schedule, TestType, uniform_weighting>;
  const model_type model(make_reference_schedule(0.1));
  auto run = on_host<double>(model);
  rng g(2);
  const shape s{3, 1, 4, 4};
  auto x0 = random_tensor<double>(s, g);
  auto eps = random_tensor<double>(s, g);
  auto f = random_tensor<double>(s, g);
  tensor<double> x_t(s), target(s);
  const std::vector<double> t{0.1, 0.5, 0.85};
  run.add_noise(x0, t, eps, x_t);
  run.target(x0, t, eps, target);
  std::vector<double> per_sample(3);
  run.loss(x0, x_t, t, f, {}, per_sample);
  for (int b = 0; b < 3; ++b) {
    double target_mse = 0;
    for (int p = 0; p < 16; ++p) target_mse += std::pow(target[b * 16 + p] - f[b * 16 + p], 2);
    target_mse /= 16;
    const double snr_t = snr(model.schedule(), t[b]);
    const double factor = std::is_same_v<TestType, eps_prediction> ? snr_t : snr_t + 1;
    INFO("t = " << t[b]);
    CHECK(factor * per_sample[b] == Approx(target_mse).epsilon(1e-10));
  }
  // The v target really is αε − σx0.
  if constexpr (std::is_same_v<TestType, v_prediction>) {
    const double a = alpha(model.schedule(), t[1]), sg = sigma(model.schedule(), t[1]);
    CHECK(target[16] == Approx(a * eps[16] - sg * x0[16]).epsilon(1e-12));
  }
}

TEST_CASE("the loss weights each sample's pixel mean by w(t_b)", "[diffusion][loss]") {
  const gaussian_diffusion<cosine, x_prediction, truncated_snr_weighting> model;
  auto run = on_host<double>(model);
  // x0 = 1, f = 0 (x̂0 = 0): every pixel contributes 1, so L = mean_b w(t_b).
  auto x0 = tensor<double>::from({2, 1, 1, 2}, {1, 1, 1, 1});
  auto zeros = tensor<double>::zeros({2, 1, 1, 2});
  const std::vector<double> t{1.0 / 3, 2.0 / 3};  // SNR 3 and 1/3 → w = 3 and 1
  CHECK(run.loss(x0, zeros.cview(), t, zeros.cview()) == Approx(2.0).epsilon(1e-12));
  // An unclipped cosine has infinite SNR at t = 0: reported, not returned as inf.
  CHECK_THROWS_WITH(run.loss(x0, zeros.cview(), std::vector<double>{0.0, 0.5}, zeros.cview()),
                    Catch::Contains("w(0)"));
  auto nan_f = tensor<double>::from({2, 1, 1, 2}, {0, std::nan(""), 0, 0});
  CHECK_THROWS_AS(run.loss(x0, zeros.cview(), t, nan_f.cview()), value_error);
}

TEMPLATE_TEST_CASE("dL/df matches central finite differences", "[diffusion][loss]",
                   x_prediction, eps_prediction, v_prediction) {
  const gaussian_diffusion<reference_schedule, TestType, decoupled<sigmoid_weighting>> model(
      make_reference_schedule(0.1), decoupled<sigmoid_weighting>{{-1.0}});
  auto run = on_host<double>(model);
  rng g(3);
  const shape s{3, 1, 2, 3};
  auto x0 = random_tensor<double>(s, g);
  auto eps = random_tensor<double>(s, g);
  auto f = random_tensor<double>(s, g);
  tensor<double> x_t(s), grad(s);
  const std::vector<double> t{0.05, 0.45, 0.97};
  run.add_noise(x0, t, eps, x_t);
  run.loss(x0, x_t, t, f, grad);
  for (std::int64_t i = 0; i < f.numel(); ++i) {
    const double keep = f[i], h = 1e-5;
    f[i] = keep + h;
    const double up = run.loss(x0, x_t, t, f);
    f[i] = keep - h;
    const double down = run.loss(x0, x_t, t, f);
    f[i] = keep;
    INFO("element " << i);
    CHECK(grad[i] == Approx((up - down) / (2 * h)).epsilon(1e-6).margin(1e-10));
  }
}

TEST_CASE("training_loss noises x0, forwards the conditioning and returns the loss",
          "[diffusion][loss]") {
  using model_type = gaussian_diffusion<reference_schedule, eps_prediction, snr_plus_one_weighting>;
  const model_type model(make_reference_schedule(0.1));
  auto run = on_host<float>(model);
  rng g(4);
  const shape s{4, 1, 3, 3};
  auto x0 = random_tensor<float>(s, g);
  auto cond = random_tensor<float>({4, 3, 3, 3}, g);
  training_batch<float> batch;
  run.draw_training_noise(x0.shape(), g, batch);
  REQUIRE(batch.t.size() == 4);
  const float* seen_cond = nullptr;
  tensor<float> seen_xt(s);
  auto net = [&](tensor_view<const float> x_t, std::span<const double> t,
                 tensor_view<const float> c, tensor_view<float> f_out) {
    seen_cond = c.data();
    seen_xt.copy_from(x_t);
    for (std::int64_t i = 0; i < x_t.numel(); ++i) f_out[i] = 0.5f * x_t[i] + float(t[i / 9]);
  };
  const double l = run.training_loss(net, x0, cond, batch);
  CHECK(seen_cond == cond.data());
  for (int b = 0; b < 4; ++b) {
    const double a = alpha(model.schedule(), batch.t[b]), sg = sigma(model.schedule(), batch.t[b]);
    CHECK(seen_xt[b * 9 + 4] == Approx(a * x0[b * 9 + 4] + sg * batch.eps[b * 9 + 4]).epsilon(1e-6));
  }
  CHECK(l == Approx(run.loss(x0, batch.x_t.cview(), batch.t, batch.f.cview())).epsilon(1e-12));
  double mean_per_sample = 0;
  for (double v : batch.per_sample_loss) mean_per_sample += v / 4;
  CHECK(l == Approx(mean_per_sample).epsilon(1e-12));
  // Same seed → same t and ε.
  rng g1(9), g2(9);
  training_batch<float> b1, b2;
  run.draw_training_noise(s, g1, b1);
  run.draw_training_noise(s, g2, b2);
  CHECK(b1.t == b2.t);
  CHECK(std::equal(b1.eps.begin(), b1.eps.end(), b2.eps.begin()));
  // Data parallel: rows [1, 3) of a global batch of 4 are those rows of the whole draw, and
  // the generator ends where the whole draw leaves it (the next draws agree).
  rng g3(9);
  training_batch<float> rows;
  const shape two{2, s[1], s[2], s[3]};
  run.draw_training_noise(two, g3, rows, stratified_timesteps{}, 1, 4);
  REQUIRE(rows.t.size() == 2);
  CHECK(rows.t[0] == b1.t[1]);
  CHECK(rows.t[1] == b1.t[2]);
  REQUIRE(rows.eps.shape() == two);
  const std::int64_t per_row = two.numel() / 2;
  CHECK(std::equal(rows.eps.begin(), rows.eps.end(), b1.eps.begin() + per_row));
  CHECK(g3.normal() == g1.normal());
  CHECK_THROWS_WITH(run.draw_training_noise(two, g3, rows, stratified_timesteps{}, 3, 4),
                    Catch::Contains("not inside the global batch of 4"));
  auto wrong_cond = random_tensor<float>({3, 3, 3, 3}, g);
  CHECK_THROWS_WITH(run.training_loss(net, x0, wrong_cond, batch), Catch::Contains("cond"));
}

// ---- sampler steps ---------------------------------------------------------------------

TEST_CASE("DDPM step with x̂0 = x0 is the posterior q(x_s | x_t, x0)", "[diffusion][sampler]") {
  const reference_schedule sched = make_reference_schedule(0.1);
  struct pair_ts { double t, s; };
  for (pair_ts ts : {pair_ts{1.0, 0.9}, pair_ts{0.5, 0.4}, pair_ts{0.2, 0.19}, pair_ts{0.7, 0.1},
                     pair_ts{0.02, 0.01}}) {
    const noise_level lt = noise_level_at(sched, ts.t), ls = noise_level_at(sched, ts.s);
    const posterior q = true_posterior(lt.alpha, lt.sigma, ls.alpha, ls.sigma);
    const step_coeffs small = ddpm_small{}.coefficients(lt.log_snr, ls.log_snr);
    const step_coeffs large = ddpm_large{}.coefficients(lt.log_snr, ls.log_snr);
    INFO("t = " << ts.t << ", s = " << ts.s);
    CHECK(small.c_xt == Approx(q.coef_xt).epsilon(1e-10));
    CHECK(small.c_x0 == Approx(q.coef_x0).epsilon(1e-10));
    CHECK(small.c_noise * small.c_noise == Approx(q.variance).epsilon(1e-10));
    // "large" uses the same mean and the forward transition variance σ²_{t|s}.
    CHECK(large.c_xt == small.c_xt);
    CHECK(large.c_x0 == small.c_x0);
    CHECK(large.c_noise * large.c_noise == Approx(q.forward_variance).epsilon(1e-10));
  }
  // Plain cosine at t = 1 (α_t = 0, λ_t = −inf): finite, x_t drops out, c = 1.
  const step_coeffs first = ddpm_small{}.coefficients(log_snr(cosine{}, 1.0), log_snr(cosine{}, 0.9));
  CHECK(first.c_xt == 0.0);
  CHECK(first.c_x0 == Approx(alpha(cosine{}, 0.9)));
  CHECK(first.c_noise == Approx(sigma(cosine{}, 0.9)));
}

TEST_CASE("the paper's printed Eq. 2 is not the posterior; the corrected form is",
          "[diffusion][sampler]") {
  // Printed: x_s = √(α_s²/α_t²)·((1 − c)x_t − c·α_t·x0) + √(c(1 − α_s²))·ε,
  //          c = 1 − α_s²σ_s⁻²α_t⁻²σ_t² = 1 − SNR(s)/SNR(t).
  const reference_schedule sched = make_reference_schedule(0.1);
  const double t = 0.5, s = 0.4, x_t = 0.3, x0 = 1.0;
  const noise_level lt = noise_level_at(sched, t), ls = noise_level_at(sched, s);
  const double as = ls.alpha, ss = ls.sigma, at = lt.alpha, st = lt.sigma;
  const double c_printed = 1 - as * as / (ss * ss) / (at * at) * st * st;
  const double var_printed = c_printed * (1 - as * as);
  CHECK(c_printed < 0);    // SNR(s) > SNR(t): the printed ratio is inverted …
  CHECK(var_printed < 0);  // … so its "variance" is negative: the printed step is undefined.
  const double mean_printed = std::sqrt(as * as / (at * at)) * ((1 - c_printed) * x_t - c_printed * at * x0);
  const posterior q = true_posterior(at, st, as, ss);
  const double mean_true = q.coef_xt * x_t + q.coef_x0 * x0;
  CHECK(std::abs(mean_printed - mean_true) > 0.1);
  // Fixing only the ratio still leaves the sign error on x0:
  const double c = 1 - (at * at / (st * st)) / (as * as / (ss * ss));
  const double mean_sign_error = (as / at) * ((1 - c) * x_t - c * at * x0);
  CHECK(std::abs(mean_sign_error - mean_true) > 0.1);
  // With both corrections (SPEC §5) it is the posterior, and c(1 − α_s²) = cσ_s² is the
  // posterior variance ("small").
  const double mean_fixed = (as / at) * ((1 - c) * x_t + c * at * x0);
  CHECK(mean_fixed == Approx(mean_true).epsilon(1e-12));
  CHECK(c * (1 - as * as) == Approx(q.variance).epsilon(1e-10));
  CHECK(c == Approx(-std::expm1(lt.log_snr - ls.log_snr)).epsilon(1e-12));
}

TEST_CASE("DDIM step with x̂0 = x0 moves along the same ε", "[diffusion][sampler]") {
  const reference_schedule sched = make_reference_schedule(0.1);
  for (double t : {1.0, 0.6, 0.11}) {
    const double s = t - 0.1;
    const noise_level lt = noise_level_at(sched, t), ls = noise_level_at(sched, s);
    const step_coeffs k = ddim_sampler{}.coefficients(lt.log_snr, ls.log_snr);
    CHECK(k.c_noise == 0.0);
    for (double x0 : {-1.0, 1.0}) {
      const double eps = 0.7;
      const double x_t = lt.alpha * x0 + lt.sigma * eps;
      CHECK(reverse_step(k.c_xt, k.c_x0, k.c_noise, x_t, x0, 0.0) ==
            Approx(ls.alpha * x0 + ls.sigma * eps).epsilon(1e-10));
    }
  }
}

// ---- end-to-end sampling -----------------------------------------------------------------

namespace {

using reference::binary_denoiser;

template <class P, class Smp>
struct combo {
  using prediction_type = P;
  using sampler_type = Smp;
};

}  // namespace

// 4 "images" of 10×10 pixels whose only content is p, 50 chains each: 5000 independent
// pixel chains per p (20000 in one batch of 200 chains), N = 200 steps
// on the reference schedule (b = 0.1). Tolerance: 4 binomial standard deviations
// √(p(1−p)/5000) plus 0.015 for the discretisation bias of N = 200 steps, which
// tools/diffusion_reference.py measures at ≤ 0.012 (DDPM-small, the slowest to converge;
// at N = 10 the bias is ≈ 0.1, so a broken step fails this test).
TEMPLATE_TEST_CASE("samplers with the exact denoiser reproduce P(x0 = +1) = p",
                   "[diffusion][sampler][e2e]",
                   (combo<x_prediction, ddpm_small>), (combo<x_prediction, ddpm_large>),
                   (combo<x_prediction, ddim_sampler>), (combo<eps_prediction, ddpm_small>),
                   (combo<eps_prediction, ddpm_large>), (combo<eps_prediction, ddim_sampler>),
                   (combo<v_prediction, ddpm_small>), (combo<v_prediction, ddpm_large>),
                   (combo<v_prediction, ddim_sampler>)) {
  using P = typename TestType::prediction_type;
  using Smp = typename TestType::sampler_type;
  const gaussian_diffusion<reference_schedule, P, uniform_weighting> model(
      make_reference_schedule(0.1));
  auto run = on_host<double>(model);
  const double ps[] = {0.1, 0.3, 0.5, 0.8};
  tensor<double> images({4, 1, 10, 10});
  for (int k = 0; k < 4; ++k)
    std::fill(images.data() + k * 100, images.data() + (k + 1) * 100, ps[k]);
  const int n_chains = 50, n = n_chains * 100;  // pixel chains per p
  rng g(2024);
  sampling_options opts;
  opts.steps = 200;
  const tensor<double> x0 = run.sample(binary_denoiser(model), Smp{}, images, n_chains, g, opts);
  REQUIRE(x0.shape() == shape{4 * n_chains, 1, 10, 10});
  const tensor<std::uint8_t> masks = to_masks(x0);
  for (int k = 0; k < 4; ++k) {
    double ones = 0;
    for (int j = 0; j < n; ++j) ones += masks[k * n + j];
    const double freq = ones / n, p = ps[k];
    const double tol = 4 * std::sqrt(p * (1 - p) / n) + 0.015;
    INFO(Smp::name << ", " << P::name << "-prediction, p = " << p << ": frequency " << freq);
    CHECK(std::abs(freq - p) < tol);
  }
  // Samples are (nearly) binary: the last x̂0 is taken at t = 1/N where SNR is large.
  double off = 0;
  for (double v : x0) off += std::abs(std::abs(v) - 1) > 0.05;
  CHECK(off / x0.numel() < 0.01);
}

TEST_CASE("sampling is reproducible and init_noise replaces the drawn x_1", "[diffusion][sampler]") {
  const gaussian_diffusion<reference_schedule, v_prediction, uniform_weighting> model(
      make_reference_schedule(0.1));
  auto run = on_host<double>(model);
  auto images = tensor<double>::from({2, 1, 1, 2}, {0.2, 0.4, 0.6, 0.9});
  auto net = [&](tensor_view<const double> x_t, std::span<const double> t,
                 tensor_view<const double> cond, tensor_view<double> f) {
    // An arbitrary deterministic function of (x_t, t, cond).
    for (std::int64_t i = 0; i < x_t.numel(); ++i) f[i] = 0.3 * x_t[i] - cond[i] * t[i / 2];
  };
  sampling_options opts;
  opts.steps = 7;
  rng g1(11), g2(11);
  const auto a = run.sample(net, ddpm_large{}, images, 3, g1, opts);
  const auto b = run.sample(net, ddpm_large{}, images, 3, g2, opts);
  REQUIRE(a.shape() == shape{6, 1, 1, 2});
  CHECK(std::equal(a.begin(), a.end(), b.begin()));
  // Drawing x_1 by hand from the same stream and passing it gives the same samples.
  rng g3(11);
  tensor<double> noise({6, 1, 1, 2});
  for (double& v : noise) v = g3.normal();
  const auto c = run.sample(net, ddpm_large{}, images, 3, g3, opts, noise.cview());
  CHECK(std::equal(a.begin(), a.end(), c.begin()));
  // DDIM is deterministic given x_1.
  rng g4(1), g5(2);
  const auto d1 = run.sample(net, ddim_sampler{}, images, 3, g4, opts, noise.cview());
  const auto d2 = run.sample(net, ddim_sampler{}, images, 3, g5, opts, noise.cview());
  CHECK(std::equal(d1.begin(), d1.end(), d2.begin()));

  rng g(0);
  CHECK_THROWS_AS(run.sample(net, ddim_sampler{}, images, 0, g), value_error);
  sampling_options zero_steps;
  zero_steps.steps = 0;
  CHECK_THROWS_WITH(run.sample(net, ddim_sampler{}, images, 2, g, zero_steps),
                    Catch::Contains("steps = 0"));
  tensor<double> short_noise({5, 1, 1, 2});
  CHECK_THROWS_WITH(run.sample(net, ddim_sampler{}, images, 3, g, opts, short_noise.cview()),
                    Catch::Contains("init_noise"));
}

TEST_CASE("clip_x0 clips x̂0 to [−1, 1]; eps-prediction at α = 0 is reported",
          "[diffusion][sampler]") {
  const gaussian_diffusion<reference_schedule, x_prediction, uniform_weighting> model(
      make_reference_schedule(0.1));
  auto run = on_host<float>(model);
  auto far = [](tensor_view<const float>, std::span<const double>, tensor_view<const float>,
                tensor_view<float> f) {
    for (float& v : f) v = 3.0f;
  };
  rng g(5);
  tensor<float> x({8, 1, 2, 2});
  for (float& v : x) v = static_cast<float>(g.normal());
  tensor<float> y = x.clone();
  sampling_options opts;
  opts.steps = 4;
  run.sample_chains(far, ddpm_small{}, x, {}, g, opts);
  CHECK(std::all_of(x.begin(), x.end(), [](float v) { return v == 3.0f; }));
  opts.clip_x0 = true;
  run.sample_chains(far, ddpm_small{}, y, {}, g, opts);
  CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 1.0f; }));
  const auto masks = to_masks(y);
  CHECK(std::all_of(masks.begin(), masks.end(), [](std::uint8_t m) { return m == 1; }));

  // The unclipped cosine has α(1) = 0, where eps-prediction cannot give x̂0.
  const gaussian_diffusion<cosine, eps_prediction, uniform_weighting> plain;
  auto zero_net = [](tensor_view<const float>, std::span<const double>, tensor_view<const float>,
                     tensor_view<float> f) { f.data()[0] = 0; for (float& v : f) v = 0; };
  tensor<float> z({1, 1, 1, 1});
  CHECK_THROWS_WITH(on_host<float>(plain).sample_chains(zero_net, ddim_sampler{}, z, {}, g, opts),
                    Catch::Contains("eps-prediction is undefined at t = 1"));
  // x-prediction on the same schedule is fine at t = 1.
  const gaussian_diffusion<cosine, x_prediction, uniform_weighting> plain_x;
  CHECK_NOTHROW(on_host<float>(plain_x).sample_chains(zero_net, ddim_sampler{}, z, {}, g, opts));
}

// ---- user-defined policies (the examples of docs/diffusion.md §6) ----------------------

namespace {

struct min_snr_5 {
  static constexpr const char* name = "min_snr_5";
  template <noise_schedule S>
  double weight(const S& s, double t) const { return std::min(snr(s, t), 5.0); }
};

struct ddim_eta {
  static constexpr const char* name = "ddim_eta";
  static constexpr bool stochastic = true;
  double eta = 0.5;
  step_coeffs coefficients(double lt, double ls) const {
    const double at = alpha_from_log_snr(lt), st = sigma_from_log_snr(lt);
    const double as = alpha_from_log_snr(ls), ss = sigma_from_log_snr(ls);
    const double var = eta * eta * -std::expm1(lt - ls) * ss * ss;
    const double dir = std::sqrt(ss * ss - var);
    return {dir / st, as - dir * at / st, std::sqrt(var)};
  }
};

}  // namespace

TEST_CASE("user-defined weighting and sampler plug into the facade", "[diffusion][custom]") {
  STATIC_REQUIRE(sampler<ddim_eta>);
  STATIC_REQUIRE(loss_weighting<min_snr_5, reference_schedule>);
  const reference_schedule sched = make_reference_schedule(0.1);
  // η = 1 is DDPM with the posterior variance, η = 0 is DDIM.
  for (double t : {0.9, 0.5, 0.2}) {
    const double lt = log_snr(sched, t), ls = log_snr(sched, t - 0.05);
    const step_coeffs one = ddim_eta{1.0}.coefficients(lt, ls), small = ddpm_small{}.coefficients(lt, ls);
    CHECK(one.c_xt == Approx(small.c_xt).epsilon(1e-10));
    CHECK(one.c_x0 == Approx(small.c_x0).epsilon(1e-10));
    CHECK(one.c_noise == Approx(small.c_noise).epsilon(1e-10));
    const step_coeffs zero = ddim_eta{0.0}.coefficients(lt, ls), ddim = ddim_sampler{}.coefficients(lt, ls);
    CHECK(zero.c_xt == Approx(ddim.c_xt).epsilon(1e-10));
    CHECK(zero.c_x0 == Approx(ddim.c_x0).epsilon(1e-10));
  }
  const gaussian_diffusion<reference_schedule, x_prediction, min_snr_5> model(sched);
  auto run = on_host<double>(model);
  CHECK(model.weight(0.0) == 5.0);
  CHECK(model.weight(0.5) == Approx(std::exp(log_snr(sched, 0.5))));
  auto images = tensor<double>::from({1, 1, 1, 1}, {0.5});
  auto net = [](tensor_view<const double> x_t, std::span<const double>, tensor_view<const double>,
                tensor_view<double> f) {
    for (std::int64_t i = 0; i < x_t.numel(); ++i) f[i] = std::tanh(x_t[i]);
  };
  rng g(3);
  const auto x0 = run.sample(net, ddim_eta{0.5}, images, 4, g);
  CHECK(x0.shape() == shape{4, 1, 1, 1});
  CHECK(std::all_of(x0.begin(), x0.end(), [](double v) { return std::abs(v) < 1; }));
}

TEST_CASE("x0_loss_report: per-sample losses w·S/P and their mean, summed in sample order",
          "[diffusion][loss]") {
  const double sums[3] = {2.0, 4.0, 6.0}, weights[3] = {1.0, 0.5, 2.0};
  double report[4] = {};
  x0_loss_report(sums, weights, 4.0, 3, report);
  CHECK(report[0] == 0.5);
  CHECK(report[1] == 0.5);
  CHECK(report[2] == 3.0);
  CHECK(report[3] == 4.0 / 3.0);
}

TEST_CASE("loss_async reports what loss() returns, without checking", "[diffusion][loss]") {
  const reference_config_diffusion host(make_reference_schedule(0.1));
  auto run = on_host<float>(host);
  rng g(5);
  const shape s{3, 1, 4, 4};
  const auto x0 = random_tensor<float>(s, g), x_t = random_tensor<float>(s, g);
  auto f = random_tensor<float>(s, g);
  const std::vector<double> t{0.2, 0.5, 0.9};
  std::vector<double> per_sample(3);
  const double loss = run.loss(x0.cview(), x_t.cview(), t, f.cview(), {}, per_sample);
  // The double reference evaluates the same per-element expression.
  const reference::reference_diffusion<reference_config_diffusion> ref(host);
  CHECK(loss == Approx(ref.loss(x0.cview(), x_t.cview(), t, f.cview())).epsilon(1e-12));
  tensor<double> report(shape{4});
  run.loss_async(x0.cview(), x_t.cview(), t, f.cview(), {}, report.view());
  CHECK(report[3] == loss);
  for (std::int64_t i = 0; i < 3; ++i) CHECK(report[i] == per_sample[static_cast<std::size_t>(i)]);
  CHECK((report[0] + report[1] + report[2]) / 3.0 == loss);

  f[5] = std::numeric_limits<float>::quiet_NaN();
  CHECK_NOTHROW(run.loss_async(x0.cview(), x_t.cview(), t, f.cview(), {}, report.view()));
  CHECK(std::isnan(report[0]));
  CHECK(std::isnan(report[3]));
  CHECK(report[1] == per_sample[1]);
  CHECK_THROWS_WITH(run.loss(x0.cview(), x_t.cview(), t, f.cview()), Catch::Contains("the loss is nan"));
  tensor<double> short_report(shape{3});
  CHECK_THROWS_AS(run.loss_async(x0.cview(), x_t.cview(), t, f.cview(), {}, short_report.view()), shape_error);
}

// The runner (float kernels, coefficient blocks, on-device reductions) against the plain
// double loops of tests/diffusion/reference_diffusion.hpp: the loss, its gradient and whole
// sampling chains agree to float rounding for every prediction and sampler.
TEMPLATE_TEST_CASE("the runner agrees with the double reference loops", "[diffusion][reference]",
                   (combo<x_prediction, ddpm_small>), (combo<eps_prediction, ddpm_large>),
                   (combo<v_prediction, ddim_sampler>)) {
  using P = typename TestType::prediction_type;
  using Smp = typename TestType::sampler_type;
  using model_type = gaussian_diffusion<reference_schedule, P, snr_plus_one_weighting>;
  const model_type model(make_reference_schedule(0.1));
  const reference::reference_diffusion<model_type> ref(model);
  auto run = on_host<float>(model);
  rng g(17);
  const shape s{4, 1, 5, 5};
  const auto x0 = random_tensor<float>(s, g), eps = random_tensor<float>(s, g), f = random_tensor<float>(s, g);
  const std::vector<double> t{0.03, 0.3, 0.6, 0.99};
  tensor<float> x_t(s), x_t_ref(s), grad(s), grad_ref(s);
  run.add_noise(x0.cview(), t, eps.cview(), x_t.view());
  ref.add_noise(x0, t, eps.cview(), x_t_ref.view());
  for (std::int64_t i = 0; i < x_t.numel(); ++i) CHECK(x_t[i] == Approx(x_t_ref[i]).epsilon(1e-6).margin(1e-6));
  const double l = run.loss(x0.cview(), x_t.cview(), t, f.cview(), grad.view());
  const double l_ref = ref.loss(x0, x_t.cview(), t, f.cview(), grad_ref.view());
  CHECK(l == Approx(l_ref).epsilon(1e-6));
  for (std::int64_t i = 0; i < grad.numel(); ++i)
    CHECK(grad[i] == Approx(grad_ref[i]).epsilon(1e-5).margin(1e-7));

  const auto images = random_tensor<float>({2, 1, 5, 5}, g);
  auto net = [](tensor_view<const float> x, std::span<const double> tt, tensor_view<const float> c,
                tensor_view<float> out) {
    const std::int64_t per = x.numel() / x.size(0);
    for (std::int64_t i = 0; i < x.numel(); ++i)
      out[i] = std::tanh(0.7f * x[i] + 0.3f * c[i] - static_cast<float>(tt[static_cast<std::size_t>(i / per)]));
  };
  sampling_options opts;
  opts.steps = 6;
  rng g1(23), g2(23);
  const auto a = run.sample(net, Smp{}, images.cview(), 3, g1, opts);
  const auto b = ref.sample(net, Smp{}, images, 3, g2, opts);
  REQUIRE(a.shape() == b.shape());
  for (std::int64_t i = 0; i < a.numel(); ++i) CHECK(a[i] == Approx(b[i]).epsilon(1e-4).margin(1e-5));
}
