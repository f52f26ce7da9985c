// Mixture latents (ops/gaussian_fc.hpp): the mixture log-density (full and diagonal
// components) against the dense reference and by hand, its stability for large logits and far
// points, finite-difference gradients in double (from non-zero starts: they accumulate); the
// straight-through choice by hand and its gradients (the relaxed part by finite differences);
// shape and value refusals naming the op and the argument.
#include "fc_test_util.hpp"

#include <ambiseg/ops/all.hpp>

#include <cmath>
#include <limits>
#include <numbers>
#include <string>

using namespace ambiseg;
using namespace ops_test;
using namespace fc_test;

namespace {

tensor<double> minus(const tensor<double>& a, const tensor<double>& b) {
  tensor<double> d(a.shape());
  for (std::int64_t i = 0; i < a.numel(); ++i) d[i] = a[i] - b[i];
  return d;
}

// log Σ_k softmax(logits)_k N(z_b; mu_bk, L_bk L_bkᵀ) from the dense reference.
double reference_mixture(const tensor<double>& z, const tensor<double>& logits,
                         const tensor<double>& mu, const tensor<double>& l, std::int64_t b) {
  const std::int64_t k = logits.size(1);
  double mx = -std::numeric_limits<double>::infinity();
  for (std::int64_t c = 0; c < k; ++c) mx = std::max(mx, logits[b * k + c]);
  double norm = 0.0, sum = 0.0;
  for (std::int64_t c = 0; c < k; ++c) norm += std::exp(logits[b * k + c] - mx);
  for (std::int64_t c = 0; c < k; ++c)
    sum += std::exp(logits[b * k + c] - mx) / norm *
           std::exp(mvn_log_density(row_of(z, b), row_of(mu, b * k + c),
                                    covariance(lower_of(l, b * k + c))));
  return std::log(sum);
}

double log_normal(double x, double mu, double sigma) {
  const double u = (x - mu) / sigma;
  return -0.5 * u * u - std::log(sigma) - 0.5 * std::log(2 * std::numbers::pi);
}

}  // namespace

TEST_CASE("mixture log-density: by hand, the dense reference, K = 1, diagonal = full",
          "[ops][gaussian_fc][mixture]") {
  SECTION("D = 1, two components by hand") {
    // ¼·N(0.5; 0, 1) + ¾·N(0.5; 1, 2²)
    auto z = tensor<double>::from({1, 1}, {0.5});
    auto logits = tensor<double>::from({1, 2}, {0.0, std::log(3.0)});
    auto mu = tensor<double>::from({1, 2, 1}, {0.0, 1.0});
    auto l = tensor<double>::from({1, 2, 1, 1}, {1.0, 2.0});
    tensor<double> lp({1});
    ops::mixture_log_prob_forward_backward(z, logits, mu, l, 1.0, lp.view(),
                                           tensor_view<double>{}, {}, {}, {});
    const double expected = std::log(0.25 * std::exp(log_normal(0.5, 0, 1)) +
                                     0.75 * std::exp(log_normal(0.5, 1, 2)));
    CHECK(lp[0] == Approx(expected).epsilon(1e-15));
  }
  rng r(1201);
  const std::int64_t b = 3, k = 4, d = 3;
  auto z = randn({b, d}, r), logits = randn({b, k}, r), mu = randn({b, k, d}, r, 0.7);
  auto l = random_tril({b, k, d, d}, r, 0.3);
  tensor<double> lp({b});
  SECTION("K = 4, D = 3 against the dense reference") {
    ops::mixture_log_prob_forward_backward(z, logits, mu, l, 1.0, lp.view(),
                                           tensor_view<double>{}, {}, {}, {});
    for (std::int64_t i = 0; i < b; ++i)
      CHECK(lp[i] == Approx(reference_mixture(z, logits, mu, l, i)).epsilon(1e-12));
  }
  SECTION("K = 1 is the Gaussian's own log-density, whatever its logit") {
    auto l1 = random_tril({b, 1, d, d}, r);
    auto mu1 = randn({b, 1, d}, r);
    auto logit1 = tensor<double>::from({b, 1}, {5.0, -300.0, 0.0});
    ops::mixture_log_prob_forward_backward(z, logit1, mu1, l1, 1.0, lp.view(),
                                           tensor_view<double>{}, {}, {}, {});
    for (std::int64_t i = 0; i < b; ++i)
      CHECK(lp[i] == Approx(mvn_log_density(row_of(z, i), row_of(mu1, i),
                                            covariance(lower_of(l1, i))))
                         .epsilon(1e-13));
    // And its logit gets no gradient (γ = π = 1).
    auto dlogit = tensor<double>::zeros({b, 1});
    ops::mixture_log_prob_forward_backward(z, logit1, mu1, l1, 1.0, lp.view(),
                                           tensor_view<double>{}, dlogit, {}, {});
    CHECK(max_abs(dlogit) == 0.0);
  }
  SECTION("diagonal components equal full ones with L = diag(exp(log sigma))") {
    auto ls = randn({b, k, d}, r, 0.5);
    auto ld = tensor<double>::zeros({b, k, d, d});
    for (std::int64_t e = 0; e < b * k * d; ++e) ld[e * d + e % d] = std::exp(ls[e]);
    tensor<double> lp_diag({b});
    auto g_full = tensor<double>::zeros(ld.shape()), g_diag = tensor<double>::zeros(ls.shape());
    auto dz_full = tensor<double>::zeros(z.shape()), dz_diag = tensor<double>::zeros(z.shape());
    ops::mixture_log_prob_forward_backward(z, logits, mu, ld, 0.5, lp.view(), dz_full.view(), {},
                                           {}, g_full);
    ops::diag_mixture_log_prob_forward_backward(z, logits, mu, ls, 0.5, lp_diag.view(),
                                                dz_diag.view(), {}, {}, g_diag);
    for (std::int64_t i = 0; i < b; ++i) CHECK(lp_diag[i] == Approx(lp[i]).epsilon(1e-14));
    CHECK(max_abs_diff(dz_full, dz_diag) < 1e-13);
    for (std::int64_t e = 0; e < b * k * d; ++e)  // ∂/∂log σ = σ·∂/∂L_ii
      CHECK(g_diag[e] == Approx(g_full[e * d + e % d] * std::exp(ls[e])).margin(1e-13));
  }
}

TEST_CASE("mixture log-density is stable for large logits and far-away points",
          "[ops][gaussian_fc][mixture]") {
  rng r(1202);
  const std::int64_t k = 3, d = 2;
  auto z = randn({1, d}, r), mu = randn({1, k, d}, r);
  auto l = random_tril({1, k, d, d}, r);
  auto small = tensor<double>::from({1, k}, {0.0, std::log(2.0), -1.0});
  auto large = tensor<double>::from({1, k}, {1e4, 1e4 + std::log(2.0), 1e4 - 1.0});
  tensor<double> a({1}), bb({1});
  auto ga = tensor<double>::zeros({1, k}), gb = tensor<double>::zeros({1, k});
  auto gma = tensor<double>::zeros(mu.shape()), gmb = tensor<double>::zeros(mu.shape());
  ops::mixture_log_prob_forward_backward(z, small, mu, l, 1.0, a.view(), tensor_view<double>{},
                                         ga, gma, {});
  ops::mixture_log_prob_forward_backward(z, large, mu, l, 1.0, bb.view(), tensor_view<double>{},
                                         gb, gmb, {});
  CHECK(bb[0] == Approx(a[0]).epsilon(1e-12));  // log_softmax is shift-invariant
  CHECK(max_abs_diff(ga, gb) < 1e-10);
  CHECK(max_abs_diff(gma, gmb) < 1e-10);

  // z 200 standard deviations away: every exp(log N_k) underflows, log p must not.
  auto far = tensor<double>::from({1, d}, {300.0, -250.0});
  auto dz = tensor<double>::zeros({1, d});
  ops::mixture_log_prob_forward_backward(far, small, mu, l, 1.0, a.view(), dz.view(), ga, gma, {});
  REQUIRE(std::isfinite(a[0]));
  CHECK(a[0] < -1000.0);
  double mx = -std::numeric_limits<double>::infinity(), joint[k];
  const double norm = std::log(1.0 + 2.0 + std::exp(-1.0));
  for (std::int64_t c = 0; c < k; ++c) {
    joint[c] = small[c] - norm +
               mvn_log_density(row_of(far, 0), row_of(mu, c), covariance(lower_of(l, c)));
    mx = std::max(mx, joint[c]);
  }
  double s = 0.0;
  for (double j : joint) s += std::exp(j - mx);
  CHECK(a[0] == Approx(mx + std::log(s)).epsilon(1e-12));
  for (std::int64_t i = 0; i < d; ++i) CHECK(std::isfinite(dz[i]));
  for (double g : ga) CHECK(std::isfinite(g));
}

TEST_CASE("mixture log-density gradients by finite differences, accumulated",
          "[ops][gaussian_fc][mixture][grad]") {
  rng r(1203);
  const std::int64_t b = 2, k = 4, d = 3;
  const double scale = -0.7;
  auto z = randn({b, d}, r), logits = randn({b, k}, r), mu = randn({b, k, d}, r, 0.7);
  tensor<double> lp({b});
  auto total = [&] { return scale * (lp[0] + lp[1]); };
  SECTION("full covariance") {
    auto l = random_tril({b, k, d, d}, r, 0.3);
    auto loss = [&] {
      ops::mixture_log_prob_forward_backward(z, logits, mu, l, scale, lp.view(),
                                             tensor_view<double>{}, {}, {}, {});
      return total();
    };
    auto gz = randn(z.shape(), r), gl = randn(logits.shape(), r);
    auto gm = randn(mu.shape(), r), gL = randn(l.shape(), r);
    auto gz0 = gz.clone(), gl0 = gl.clone(), gm0 = gm.clone(), gL0 = gL.clone();
    ops::mixture_log_prob_forward_backward(z, logits, mu, l, scale, lp.view(), gz.view(), gl, gm,
                                           gL);
    check_gradient("mixture z", z, minus(gz, gz0), loss);
    check_gradient("mixture logits", logits, minus(gl, gl0), loss);
    check_gradient("mixture mu", mu, minus(gm, gm0), loss);
    check_gradient("mixture L (upper triangle: zero)", l, minus(gL, gL0), loss);
  }
  SECTION("diagonal") {
    auto ls = randn({b, k, d}, r, 0.4);
    auto loss = [&] {
      ops::diag_mixture_log_prob_forward_backward(z, logits, mu, ls, scale, lp.view(),
                                                  tensor_view<double>{}, {}, {}, {});
      return total();
    };
    auto gz = randn(z.shape(), r), gl = randn(logits.shape(), r);
    auto gm = randn(mu.shape(), r), gs = randn(ls.shape(), r);
    auto gz0 = gz.clone(), gl0 = gl.clone(), gm0 = gm.clone(), gs0 = gs.clone();
    ops::diag_mixture_log_prob_forward_backward(z, logits, mu, ls, scale, lp.view(), gz.view(), gl,
                                                gm, gs);
    check_gradient("diag mixture z", z, minus(gz, gz0), loss);
    check_gradient("diag mixture logits", logits, minus(gl, gl0), loss);
    check_gradient("diag mixture mu", mu, minus(gm, gm0), loss);
    check_gradient("diag mixture log_sigma", ls, minus(gs, gs0), loss);
  }
}

TEST_CASE("straight-through mixture sample: the choice by hand, value exact, gradients",
          "[ops][gaussian_fc][mixture]") {
  SECTION("by hand") {
    // x = (logits + g)/τ = (0, 2 ln 2, 2): r = (1, 4, e²)/(5 + e²), argmax 2.
    auto logits = tensor<double>::from({1, 3}, {0.0, std::log(2.0), 0.0});
    auto gumbel = tensor<double>::from({1, 3}, {0.0, 0.0, 1.0});
    auto samples = tensor<double>::from({1, 3, 2}, {1, 2, 3, 4, 0.1, -0.3});
    tensor<double> z({1, 2}), relaxed({1, 3});
    tensor<std::int32_t> choice({1});
    ops::straight_through_mixture_sample_forward(logits, gumbel, 0.5, samples, z.view(),
                                                 relaxed, choice);
    const double e2 = std::exp(2.0), n = 5 + e2;
    CHECK(choice[0] == 2);
    CHECK(z[0] == 0.1);  // exactly the chosen sample
    CHECK(z[1] == -0.3);
    CHECK(relaxed[0] == Approx(1 / n).epsilon(1e-15));
    CHECK(relaxed[1] == Approx(4 / n).epsilon(1e-15));
    CHECK(relaxed[2] == Approx(e2 / n).epsilon(1e-15));
    // dz = (1, 1): g = (3, 7, −0.2); dlogits_j = r_j/τ·(g_j − Σ r g).
    auto dz = tensor<double>::from({1, 2}, {1.0, 1.0});
    auto dl = tensor<double>::from({1, 3}, {1.0, 1.0, 1.0});
    auto ds = tensor<double>::zeros({1, 3, 2});
    ops::straight_through_mixture_sample_backward(samples, relaxed, choice, 0.5, dz, dl.view(),
                                                  ds);
    const double g[] = {3.0, 7.0, -0.2}, rr[] = {1 / n, 4 / n, e2 / n};
    const double mean = rr[0] * g[0] + rr[1] * g[1] + rr[2] * g[2];
    for (int j = 0; j < 3; ++j) CHECK(dl[j] == Approx(1.0 + rr[j] / 0.5 * (g[j] - mean)));
    const double ds_expected[] = {0, 0, 0, 0, 1, 1};  // h: the chosen component only
    for (int i = 0; i < 6; ++i) CHECK(ds[i] == ds_expected[i]);
  }
  SECTION("K = 1 always picks the component; its logit gets no gradient") {
    auto logits = tensor<double>::from({2, 1}, {3.0, -2.0});
    auto gumbel = tensor<double>::from({2, 1}, {0.5, 9.0});
    auto samples = tensor<double>::from({2, 1, 2}, {1, 2, 3, 4});
    tensor<double> z({2, 2}), relaxed({2, 1});
    tensor<std::int32_t> choice({2});
    ops::straight_through_mixture_sample_forward(logits, gumbel, 0.1, samples, z.view(), relaxed,
                                                 choice);
    CHECK(choice[0] == 0);
    CHECK(choice[1] == 0);
    CHECK(relaxed[0] == 1.0);
    CHECK(z[3] == 4.0);
    auto dl = tensor<double>::zeros({2, 1});
    ops::straight_through_mixture_sample_backward(samples, relaxed, choice, 0.1, z, dl.view(), {});
    CHECK(max_abs(dl) == 0.0);
  }
  SECTION("finite differences: samples exactly, logits through the relaxed weights") {
    rng r(1204);
    const std::int64_t b = 3, k = 5, d = 4;
    const double tau = 0.7;
    auto logits = randn({b, k}, r), samples = randn({b, k, d}, r), dz = randn({b, d}, r);
    tensor<double> gumbel({b, k});
    for (auto& v : gumbel) v = -std::log(-std::log(r.uniform_open0()));
    tensor<double> z({b, d}), relaxed({b, k});
    tensor<std::int32_t> choice({b}), choice0({b});
    ops::straight_through_mixture_sample_forward(logits, gumbel, tau, samples, z.view(), relaxed,
                                                 choice0);
    // z = Σ_k w_k s_k with w = h − sg(r) + r: in value h, in slope r. The logits' gradient is
    // that of Σ_b dz_b·Σ_k r_bk s_bk; the samples' gradient that of Σ_b dz_b·z_b (the choice
    // does not move with the samples).
    auto relaxed_loss = [&] {
      ops::straight_through_mixture_sample_forward(logits, gumbel, tau, samples, z.view(),
                                                   relaxed, choice);
      double s = 0.0;
      for (std::int64_t i = 0; i < b; ++i)
        for (std::int64_t c = 0; c < k; ++c)
          for (std::int64_t j = 0; j < d; ++j)
            s += dz[i * d + j] * relaxed[i * k + c] * samples[(i * k + c) * d + j];
      return s;
    };
    auto value_loss = [&] {
      ops::straight_through_mixture_sample_forward(logits, gumbel, tau, samples, z.view(),
                                                   relaxed, choice);
      return dot(dz, z);
    };
    relaxed_loss();
    auto gl = randn(logits.shape(), r), gs = randn(samples.shape(), r);
    auto gl0 = gl.clone(), gs0 = gs.clone();
    ops::straight_through_mixture_sample_backward(samples, relaxed, choice0, tau, dz, gl.view(),
                                                  gs);
    check_gradient("straight-through logits (relaxed)", logits, minus(gl, gl0), relaxed_loss);
    check_gradient("straight-through samples", samples, minus(gs, gs0), value_loss);
    for (std::int64_t i = 0; i < b; ++i) CHECK(choice[i] == choice0[i]);
  }
}

TEST_CASE("mixture ops refuse bad shapes and values, naming the op and the argument",
          "[ops][gaussian_fc][mixture]") {
  auto has = [](const char* op, const char* arg) {
    return Catch::Contains(std::string(op) + ": " + arg);
  };
  const char* mix = "mixture_log_prob_forward_backward";
  const char* dmix = "diag_mixture_log_prob_forward_backward";
  tensor<double> z({2, 3}), logits({2, 4}), mu({2, 4, 3}), l({2, 4, 3, 3}), ls({2, 4, 3}),
      lp({2});
  tensor<double> bad_mu({2, 3, 3}), bad_l({2, 4, 3, 2}), lp3({3}), lg33({2, 33}), z65({2, 65});
  auto none = tensor_view<double>{};
  CHECK_THROWS_WITH(ops::mixture_log_prob_forward_backward(z, logits, bad_mu, l, 1.0, lp.view(),
                                                           none, {}, {}, {}),
                    has(mix, "mu"));
  CHECK_THROWS_WITH(ops::mixture_log_prob_forward_backward(z, logits, mu, bad_l, 1.0, lp.view(),
                                                           none, {}, {}, {}),
                    has(mix, "L"));
  CHECK_THROWS_WITH(ops::mixture_log_prob_forward_backward(z, logits, mu, l, 1.0, lp3.view(),
                                                           none, {}, {}, {}),
                    has(mix, "log_prob"));
  CHECK_THROWS_WITH(ops::mixture_log_prob_forward_backward(z, logits, mu, l, 1.0, lp.view(),
                                                           none, {}, {}, bad_l),
                    has(mix, "dL"));
  CHECK_THROWS_WITH(ops::mixture_log_prob_forward_backward(z, lg33, mu, l, 1.0, lp.view(), none,
                                                           {}, {}, {}),
                    has(mix, "logits") && Catch::Contains("1 to 32 components"));
  CHECK_THROWS_WITH(ops::mixture_log_prob_forward_backward(z65, logits, mu, l, 1.0, lp.view(),
                                                           none, {}, {}, {}),
                    has(mix, "z") && Catch::Contains("above the supported 64"));
  CHECK_THROWS_WITH(ops::diag_mixture_log_prob_forward_backward(z, logits, mu, l, 1.0, lp.view(),
                                                                none, {}, {}, {}),
                    has(dmix, "log_sigma"));
  CHECK_THROWS_WITH(ops::diag_mixture_log_prob_forward_backward(z, logits, mu, ls, 1.0, lp.view(),
                                                                none, {}, {}, l),
                    has(dmix, "dlog_sigma"));

  const char* st = "straight_through_mixture_sample_forward";
  const char* stb = "straight_through_mixture_sample_backward";
  tensor<double> zz({2, 3}), rel({2, 4}), gum({2, 4});
  tensor<std::int32_t> ch({2}), ch3({3});
  CHECK_THROWS_WITH(ops::straight_through_mixture_sample_forward(logits, gum, 0.0, mu, zz.view(),
                                                                 rel, ch),
                    has(st, "tau"));
  CHECK_THROWS_AS(ops::straight_through_mixture_sample_forward(logits, gum, 0.0, mu, zz.view(),
                                                               rel, ch),
                  value_error);
  CHECK_THROWS_WITH(ops::straight_through_mixture_sample_forward(logits, lp, 0.5, mu, zz.view(),
                                                                 rel, ch),
                    has(st, "gumbel"));
  CHECK_THROWS_WITH(ops::straight_through_mixture_sample_forward(logits, gum, 0.5, mu, zz.view(),
                                                                 rel, ch3),
                    has(st, "choice"));
  CHECK_THROWS_WITH(ops::straight_through_mixture_sample_forward(logits, gum, 0.5, mu, lp.view(),
                                                                 rel, ch),
                    has(st, "z"));
  CHECK_THROWS_WITH(ops::straight_through_mixture_sample_backward(mu, rel, ch, 0.5, lp, none, {}),
                    has(stb, "dz"));
  CHECK_THROWS_WITH(ops::straight_through_mixture_sample_backward(mu, rel, ch, 0.5, zz, none,
                                                                  bad_mu),
                    has(stb, "dsamples"));
  CHECK_THROWS_WITH(ops::straight_through_mixture_sample_backward(
                        mu, rel, ch, std::numeric_limits<double>::infinity(), zz, none, {}),
                    has(stb, "tau"));
}
