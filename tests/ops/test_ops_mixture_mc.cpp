// The reference's Monte-Carlo KL for mixture latents, (1/S)Σ_s log q(z_s) − log p(z_s) with
// z_s ~ q reparameterised (straight-through component choice), assembled from the ops of
// ops/gaussian_fc.hpp on the CPU in double, is unbiased: with one component its mean and its
// gradients match the analytic FC KL within 4 standard errors; with several components it
// matches the KL integrated on a grid, and the choices follow softmax(logits). Fixed seeds.
#include "fc_test_util.hpp"

#include <ambiseg/ops/all.hpp>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

using namespace ambiseg;
using namespace ops_test;
using namespace fc_test;

namespace {

// The outputs of one head: mu, log_sigma [1, K, D], tril_raw [1, K, D, D], logits [1, K].
struct head {
  tensor<double> mu, log_sigma, raw, logits;
};

head random_head(std::int64_t k, std::int64_t d, rng& r) {
  return {randn({1, k, d}, r, 0.8), randn({1, k, d}, r, 0.3), randn({1, k, d, d}, r, 0.4),
          randn({1, k}, r)};
}

// [1, ...] repeated S times along the first axis: the ops take one parameter set per row.
tensor<double> repeat(const tensor<double>& t, std::int64_t s) {
  std::vector<std::int64_t> ext(t.shape().begin(), t.shape().end());
  ext[0] = s;
  tensor<double> out(shape::from_range(ext.begin(), ext.end()));
  for (std::int64_t i = 0; i < out.numel(); ++i) out[i] = t[i % t.numel()];
  return out;
}

// Everything per sample: the estimate and the gradients of log q(z_s) − log p(z_s) with
// respect to the repeated head outputs (row s holds sample s's gradient).
struct mc_samples {
  std::int64_t s = 0;
  tensor<double> est;
  tensor<std::int32_t> choice;
  head dq, dp;
};

head zeros_like(const head& h, std::int64_t s) {
  return {tensor<double>::zeros(repeat(h.mu, s).shape()),
          tensor<double>::zeros(repeat(h.log_sigma, s).shape()),
          tensor<double>::zeros(repeat(h.raw, s).shape()),
          tensor<double>::zeros(repeat(h.logits, s).shape())};
}

mc_samples run_mc(const head& q, const head& p, std::int64_t s, double tau, rng& r) {
  const std::int64_t k = q.mu.size(1), kp = p.mu.size(1), d = q.mu.size(2);
  auto mu_q = repeat(q.mu, s), ls_q = repeat(q.log_sigma, s), raw_q = repeat(q.raw, s);
  auto mu_p = repeat(p.mu, s), ls_p = repeat(p.log_sigma, s), raw_p = repeat(p.raw, s);
  auto lg_q = repeat(q.logits, s), lg_p = repeat(p.logits, s);
  tensor<double> l_q({s, k, d, d}), l_p({s, kp, d, d});
  ops::fc_scale_tril_forward(ls_q, raw_q, l_q.view());
  ops::fc_scale_tril_forward(ls_p, raw_p, l_p.view());

  // z_s ~ q: every component drawn, one chosen by the Gumbel-softmax straight-through.
  auto eps = randn({s, k, d}, r);
  tensor<double> gumbel({s, k});
  for (auto& g : gumbel) g = -std::log(-std::log(r.uniform_open0()));
  tensor<double> samples({s, k, d}), z({s, d}), relaxed({s, k}), lq({s}), lp({s});
  mc_samples out{s, tensor<double>({s}), tensor<std::int32_t>({s}), zeros_like(q, s),
                 zeros_like(p, s)};
  ops::fc_gaussian_rsample_forward(mu_q, l_q, eps, samples.view());
  ops::straight_through_mixture_sample_forward(lg_q, gumbel, tau, samples, z.view(), relaxed,
                                               out.choice);

  // Backward of log q(z) − log p(z): through both densities, the choice, the draw, the factor.
  auto dz = tensor<double>::zeros({s, d}), dsamples = tensor<double>::zeros({s, k, d});
  auto dl_q = tensor<double>::zeros(l_q.shape()), dl_p = tensor<double>::zeros(l_p.shape());
  ops::mixture_log_prob_forward_backward(z, lg_q, mu_q, l_q, 1.0, lq.view(), dz.view(),
                                         out.dq.logits, out.dq.mu, dl_q);
  ops::mixture_log_prob_forward_backward(z, lg_p, mu_p, l_p, -1.0, lp.view(), dz.view(),
                                         out.dp.logits, out.dp.mu, dl_p);
  ops::straight_through_mixture_sample_backward(samples, relaxed, out.choice, tau, dz,
                                                out.dq.logits.view(), dsamples);
  ops::fc_gaussian_rsample_backward(eps, dsamples, out.dq.mu.view(), dl_q);
  ops::fc_scale_tril_backward(ls_q, dl_q, out.dq.log_sigma.view(), out.dq.raw);
  ops::fc_scale_tril_backward(ls_p, dl_p, out.dp.log_sigma.view(), out.dp.raw);
  for (std::int64_t i = 0; i < s; ++i) out.est[i] = lq[i] - lp[i];
  return out;
}

struct moments {
  double mean, se;
};
// Mean and standard error over the S rows of element j of a per-row block of `block` values.
moments over_rows(const tensor<double>& t, std::int64_t s, std::int64_t j) {
  const std::int64_t block = t.numel() / s;
  double sum = 0.0, sq = 0.0;
  for (std::int64_t i = 0; i < s; ++i) sum += t[i * block + j];
  const double mean = sum / static_cast<double>(s);
  for (std::int64_t i = 0; i < s; ++i) sq += (t[i * block + j] - mean) * (t[i * block + j] - mean);
  return {mean, std::sqrt(sq / static_cast<double>(s - 1) / static_cast<double>(s))};
}

void check_unbiased(const char* what, const tensor<double>& per_sample, std::int64_t s,
                    const tensor<double>& expected) {
  for (std::int64_t j = 0; j < expected.numel(); ++j) {
    const moments m = over_rows(per_sample, s, j);
    INFO(what << "[" << j << "]: mean " << m.mean << " ± " << m.se << ", analytic "
              << expected[j]);
    CHECK(std::abs(m.mean - expected[j]) <= 4 * m.se + 1e-12);
  }
}

// log of a mixture density from the dense reference, components precomputed.
struct dense_mixture {
  std::vector<double> log_w;
  std::vector<std::vector<double>> mu;
  std::vector<matrix> inv;
  std::vector<double> log_det;

  explicit dense_mixture(const head& h) {
    const std::int64_t k = h.mu.size(1), d = h.mu.size(2);
    tensor<double> l({1, k, d, d});
    ops::fc_scale_tril_forward(h.log_sigma, h.raw, l.view());
    double mx = -1e300, norm = 0.0;
    for (std::int64_t c = 0; c < k; ++c) mx = std::max(mx, h.logits[c]);
    for (std::int64_t c = 0; c < k; ++c) norm += std::exp(h.logits[c] - mx);
    for (std::int64_t c = 0; c < k; ++c) {
      log_w.push_back(h.logits[c] - mx - std::log(norm));
      mu.push_back(row_of(h.mu, c));
      double ld = 0.0;
      inv.push_back(inverse(covariance(lower_of(l, c)), &ld));
      log_det.push_back(ld);
    }
  }
  double log_density(double x, double y) const {  // D = 2
    double sum = 0.0;
    for (std::size_t c = 0; c < mu.size(); ++c) {
      const double a = x - mu[c][0], b = y - mu[c][1];
      const double q = a * a * inv[c][0][0] + 2 * a * b * inv[c][0][1] + b * b * inv[c][1][1];
      sum += std::exp(log_w[c] - 0.5 * (q + log_det[c]) - std::log(2 * std::numbers::pi));
    }
    return std::log(sum);
  }
};

}  // namespace

TEST_CASE("Monte-Carlo KL with one component is unbiased for the analytic FC KL",
          "[ops][gaussian_fc][mixture][mc]") {
  rng r(1301);
  const std::int64_t s = 20000, d = 2;
  const head q = random_head(1, d, r), p = random_head(1, d, r);
  const mc_samples mc = run_mc(q, p, s, 0.1, r);

  // The analytic KL and its gradients with respect to the same head outputs.
  tensor<double> l_q({1, 1, d, d}), l_p({1, 1, d, d}), kl({1});
  ops::fc_scale_tril_forward(q.log_sigma, q.raw, l_q.view());
  ops::fc_scale_tril_forward(p.log_sigma, p.raw, l_p.view());
  head gq = zeros_like(q, 1), gp = zeros_like(p, 1);
  auto dl_q = tensor<double>::zeros(l_q.shape()), dl_p = tensor<double>::zeros(l_p.shape());
  ops::fc_gaussian_kl_forward_backward(q.mu, l_q, p.mu, l_p, 1.0, kl.view(), gq.mu.view(), dl_q,
                                       gp.mu, dl_p);
  ops::fc_scale_tril_backward(q.log_sigma, dl_q, gq.log_sigma.view(), gq.raw);
  ops::fc_scale_tril_backward(p.log_sigma, dl_p, gp.log_sigma.view(), gp.raw);

  const moments est = over_rows(mc.est, s, 0);
  INFO("MC KL " << est.mean << " ± " << est.se << ", analytic " << kl[0]);
  REQUIRE(kl[0] > 0.1);  // a non-trivial pair
  CHECK(est.se < 0.05 * kl[0]);
  CHECK(std::abs(est.mean - kl[0]) <= 4 * est.se);
  check_unbiased("d/d mu_q", mc.dq.mu, s, gq.mu);
  check_unbiased("d/d log_sigma_q", mc.dq.log_sigma, s, gq.log_sigma);
  check_unbiased("d/d tril_raw_q", mc.dq.raw, s, gq.raw);
  check_unbiased("d/d mu_p", mc.dp.mu, s, gp.mu);
  check_unbiased("d/d log_sigma_p", mc.dp.log_sigma, s, gp.log_sigma);
  check_unbiased("d/d tril_raw_p", mc.dp.raw, s, gp.raw);
  CHECK(max_abs(mc.dq.logits) == 0.0);  // one component: no gradient to its logit
}

TEST_CASE("Monte-Carlo KL of FC mixtures matches the KL integrated on a grid",
          "[ops][gaussian_fc][mixture][mc]") {
  rng r(1302);
  const std::int64_t s = 20000, d = 2;
  const head q = random_head(3, d, r), p = random_head(2, d, r);
  const mc_samples mc = run_mc(q, p, s, 0.1, r);

  // ∫ q log(q/p) by the midpoint rule on [−14, 14]²: the densities are smooth and negligible
  // at the border, so the rule is far more accurate than the Monte-Carlo error.
  const dense_mixture dq(q), dp(p);
  const double h = 0.04;
  double kl = 0.0;
  for (double x = -14 + h / 2; x < 14; x += h)
    for (double y = -14 + h / 2; y < 14; y += h) {
      const double lq = dq.log_density(x, y);
      kl += std::exp(lq) * (lq - dp.log_density(x, y)) * h * h;
    }
  const moments est = over_rows(mc.est, s, 0);
  INFO("MC KL " << est.mean << " ± " << est.se << ", grid " << kl);
  CHECK(std::abs(est.mean - kl) <= 4 * est.se);

  // The straight-through choice follows the mixture weights.
  for (std::int64_t c = 0; c < 3; ++c) {
    double n = 0;
    for (std::int64_t i = 0; i < s; ++i) n += mc.choice[i] == c ? 1.0 : 0.0;
    const double pi = std::exp(dq.log_w[c]), f = n / static_cast<double>(s);
    INFO("component " << c << ": frequency " << f << ", weight " << pi);
    CHECK(std::abs(f - pi) <= 4 * std::sqrt(pi * (1 - pi) / static_cast<double>(s)));
  }
}
