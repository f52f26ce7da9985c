// Full-covariance Gaussian latents (ops/gaussian_fc.hpp): forward values by hand and
// against a dense reference (fc_test_util.hpp), finite-difference gradients in double
// (from non-zero starts: the gradients accumulate), and shape refusals naming the op and
// the argument.
#include "fc_test_util.hpp"

#include <ambiseg/ops/all.hpp>

#include <cmath>
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

}  // namespace

TEST_CASE("fc_scale_tril: strictly-lower raw part, exp(log sigma) + 1e-4 on the diagonal",
          "[ops][gaussian_fc]") {
  const double ln2 = std::log(2.0);
  auto ls = tensor<double>::from({1, 2, 2}, {ln2, 0.0, -ln2, 1.0});
  auto raw = tensor<double>::from({1, 2, 2, 2}, {9, 7, 3, 5, -1, 4, 0.25, 6});
  tensor<double> l({1, 2, 2, 2});
  ops::fc_scale_tril_forward(ls, raw, l.view());
  const double e = std::exp(1.0);
  const double expected[] = {2 + 1e-4, 0, 3, 1 + 1e-4, 0.5 + 1e-4, 0, 0.25, e + 1e-4};
  for (int i = 0; i < 8; ++i) CHECK(l[i] == Approx(expected[i]).margin(1e-15));

  // Backward: the diagonal feeds log σ (·σ), the strict lower part tril_raw, the rest nothing.
  auto dl = tensor<double>::from({1, 2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  auto dls = tensor<double>::from({1, 2, 2}, {1, 1, 1, 1});
  auto draw = tensor<double>::from({1, 2, 2, 2}, {1, 1, 1, 1, 1, 1, 1, 1});
  ops::fc_scale_tril_backward(ls, dl, dls.view(), draw);
  const double dls_expected[] = {1 + 1 * 2.0, 1 + 4 * 1.0, 1 + 5 * 0.5, 1 + 8 * e};
  for (int i = 0; i < 4; ++i) CHECK(dls[i] == Approx(dls_expected[i]).epsilon(1e-15));
  const double draw_expected[] = {1, 1, 4, 1, 1, 1, 8, 1};
  for (int i = 0; i < 8; ++i) CHECK(draw[i] == draw_expected[i]);
  ops::fc_scale_tril_backward(ls, dl, tensor_view<double>{}, draw);  // dlog_sigma not needed
  CHECK(draw[2] == 7.0);
  CHECK(dls[0] == Approx(3.0));

  rng r(1101);
  auto ls2 = randn({2, 3, 4}, r, 0.5), raw2 = randn({2, 3, 4, 4}, r);
  auto seed = randn({2, 3, 4, 4}, r);
  tensor<double> l2({2, 3, 4, 4});
  auto loss = [&] {
    ops::fc_scale_tril_forward(ls2, raw2, l2.view());
    return dot(seed, l2);
  };
  auto g_ls = randn(ls2.shape(), r), g_raw = randn(raw2.shape(), r);
  auto g_ls0 = g_ls.clone(), g_raw0 = g_raw.clone();
  ops::fc_scale_tril_backward(ls2, seed, g_ls.view(), g_raw);
  check_gradient("scale_tril log_sigma", ls2, minus(g_ls, g_ls0), loss);
  check_gradient("scale_tril tril_raw", raw2, minus(g_raw, g_raw0), loss);
}

TEST_CASE("fc_gaussian_rsample: z = mu + L eps by hand and by finite differences",
          "[ops][gaussian_fc]") {
  auto mu = tensor<double>::from({1, 1, 2}, {1.0, -1.0});
  auto l = tensor<double>::from({1, 1, 2, 2}, {2.0, 99.0, 3.0, 1.0});  // 99: never read
  auto eps = tensor<double>::from({1, 1, 2}, {0.5, -1.0});
  tensor<double> z({1, 1, 2});
  ops::fc_gaussian_rsample_forward(mu, l, eps, z.view());
  CHECK(z[0] == 2.0);
  CHECK(z[1] == -0.5);
  auto dz = tensor<double>::from({1, 1, 2}, {2.0, -3.0});
  auto dmu = tensor<double>::from({1, 1, 2}, {1.0, 1.0});
  auto dl = tensor<double>::from({1, 1, 2, 2}, {1.0, 1.0, 1.0, 1.0});
  ops::fc_gaussian_rsample_backward(eps, dz, dmu.view(), dl);
  CHECK(dmu[0] == 3.0);
  CHECK(dmu[1] == -2.0);
  CHECK(dl[0] == 2.0);   // 1 + 2·0.5
  CHECK(dl[1] == 1.0);   // upper triangle untouched
  CHECK(dl[2] == -0.5);  // 1 − 3·0.5
  CHECK(dl[3] == 4.0);   // 1 + 3

  rng r(1102);
  const shape v{2, 3, 5};
  auto mu2 = randn(v, r), eps2 = randn(v, r), seed = randn(v, r);
  auto l2 = random_tril({2, 3, 5, 5}, r);
  tensor<double> z2(v);
  auto loss = [&] {
    ops::fc_gaussian_rsample_forward(mu2, l2, eps2, z2.view());
    return dot(seed, z2);
  };
  auto g_mu = randn(v, r), g_l = randn(l2.shape(), r);
  auto g_mu0 = g_mu.clone(), g_l0 = g_l.clone();
  ops::fc_gaussian_rsample_backward(eps2, seed, g_mu.view(), g_l);
  check_gradient("rsample mu", mu2, minus(g_mu, g_mu0), loss);
  check_gradient("rsample L (upper triangle: zero)", l2, minus(g_l, g_l0), loss);
}

TEST_CASE("fc_gaussian_kl: closed forms, a 2x2 Cholesky by hand, the dense reference, KL(p||p)",
          "[ops][gaussian_fc]") {
  const double ln2 = std::log(2.0);
  tensor<double> kl({1});
  SECTION("D = 1 equals the univariate KL") {
    // (mu_q, σ_q) = (1, 2), (mu_p, σ_p) = (0, 1): ln(1/2) + (4 + 1)/2 − ½.
    auto mq = tensor<double>::from({1, 1, 1}, {1.0});
    auto lq = tensor<double>::from({1, 1, 1, 1}, {2.0});
    auto mp = tensor<double>::from({1, 1, 1}, {0.0});
    auto lp = tensor<double>::from({1, 1, 1, 1}, {1.0});
    ops::fc_gaussian_kl_forward_backward(mq, lq, mp, lp, 1.0, kl.view(), tensor_view<double>{},
                                         {}, {}, {});
    CHECK(kl[0] == Approx(-ln2 + 2.5 - 0.5).epsilon(1e-15));
  }
  SECTION("2x2: Σ_q = [[4, 2], [2, 5]] (L = [[2, 0], [1, 2]]) against Σ_p = I") {
    // KL(N(m, Σ) ‖ N(0, I)) = ½(tr Σ + |m|² − 2 − ln det Σ), det Σ = 16.
    auto mq = tensor<double>::from({1, 1, 2}, {1.0, -2.0});
    auto lq = tensor<double>::from({1, 1, 2, 2}, {2.0, 0.0, 1.0, 2.0});
    auto mp = tensor<double>::from({1, 1, 2}, {0.0, 0.0});
    auto lp = tensor<double>::from({1, 1, 2, 2}, {1.0, 0.0, 0.0, 1.0});
    ops::fc_gaussian_kl_forward_backward(mq, lq, mp, lp, 1.0, kl.view(), tensor_view<double>{},
                                         {}, {}, {});
    CHECK(kl[0] == Approx(0.5 * (9.0 + 5.0 - 2.0 - std::log(16.0))).epsilon(1e-15));
    // And the roles swapped: ½(tr Σ⁻¹ + mᵀΣ⁻¹m − 2 + ln 16), Σ⁻¹ = [[5, −2], [−2, 4]]/16.
    ops::fc_gaussian_kl_forward_backward(mp, lp, mq, lq, 1.0, kl.view(), tensor_view<double>{},
                                         {}, {}, {});
    const double maha = (5.0 * 1 + 2 * 2.0 * 2 + 4.0 * 4) / 16.0;  // mᵀΣ⁻¹m, m = (1, −2)
    CHECK(kl[0] == Approx(0.5 * (9.0 / 16.0 + maha - 2.0 + std::log(16.0))).epsilon(1e-14));
  }
  SECTION("random D = 5 rows against the dense formula; diagonal L equals the diagonal op") {
    rng r(1103);
    const std::int64_t b = 3, d = 5;
    auto mq = randn({b, 1, d}, r), mp = randn({b, 1, d}, r);
    auto lq = random_tril({b, 1, d, d}, r), lp = random_tril({b, 1, d, d}, r);
    tensor<double> klb({b});
    ops::fc_gaussian_kl_forward_backward(mq, lq, mp, lp, 1.0, klb.view(), tensor_view<double>{},
                                         {}, {}, {});
    for (std::int64_t i = 0; i < b; ++i)
      CHECK(klb[i] == Approx(mvn_kl(row_of(mq, i), covariance(lower_of(lq, i)), row_of(mp, i),
                                    covariance(lower_of(lp, i))))
                          .epsilon(1e-12));
    // Diagonal factors: the same numbers (and dL_ii·σ = dlog σ) as diag_gaussian_kl.
    tensor<double> ldq({b, 1, d, d}), ldp({b, 1, d, d}), lsq({b, d}), lsp({b, d});
    ldq.zero();
    ldp.zero();
    for (std::int64_t e = 0; e < b * d; ++e) {
      lsq[e] = 0.5 * r.normal();
      lsp[e] = 0.5 * r.normal();
      ldq[e * d + e % d] = std::exp(lsq[e]);
      ldp[e * d + e % d] = std::exp(lsp[e]);
    }
    auto g_lq = tensor<double>::zeros(ldq.shape()), g_lsq = tensor<double>::zeros({b, d});
    ops::fc_gaussian_kl_forward_backward(mq, ldq, mp, ldp, 0.5, klb.view(), tensor_view<double>{},
                                         g_lq, {}, {});
    tensor<double> kld({b}), mq2({b, d}), mp2({b, d});
    for (std::int64_t e = 0; e < b * d; ++e) mq2[e] = mq[e], mp2[e] = mp[e];
    ops::diag_gaussian_kl_forward_backward(mq2, lsq, mp2, lsp, 0.5, kld.view(),
                                           tensor_view<double>{}, g_lsq, {}, {});
    for (std::int64_t i = 0; i < b; ++i) CHECK(klb[i] == Approx(kld[i]).epsilon(1e-13));
    for (std::int64_t e = 0; e < b * d; ++e)
      CHECK(g_lq[e * d + e % d] * std::exp(lsq[e]) == Approx(g_lsq[e]).margin(1e-13));
  }
  SECTION("KL(p||p) = 0 with zero gradients") {
    rng r(1104);
    auto m = randn({2, 1, 4}, r);
    auto l = random_tril({2, 1, 4, 4}, r);
    tensor<double> kl2({2});
    auto g1 = tensor<double>::zeros(m.shape()), g2 = tensor<double>::zeros(l.shape());
    auto g3 = tensor<double>::zeros(m.shape()), g4 = tensor<double>::zeros(l.shape());
    ops::fc_gaussian_kl_forward_backward(m, l, m, l, 3.0, kl2.view(), g1.view(), g2, g3, g4);
    for (double v : kl2) CHECK(v == Approx(0.0).margin(1e-14));
    for (const auto* g : {&g1, &g2, &g3, &g4}) CHECK(max_abs(*g) < 1e-13);
  }
}

TEST_CASE("fc_gaussian_kl gradients by finite differences, accumulated",
          "[ops][gaussian_fc][grad]") {
  rng r(1105);
  for (const std::int64_t d : {1, 2, 6}) {
    INFO("D = " << d);
    const std::int64_t b = 3;
    auto mq = randn({b, 1, d}, r), mp = randn({b, 1, d}, r);
    auto lq = random_tril({b, 1, d, d}, r), lp = random_tril({b, 1, d, d}, r);
    const double scale = 0.7;
    tensor<double> kl({b});
    auto loss = [&] {
      ops::fc_gaussian_kl_forward_backward(mq, lq, mp, lp, scale, kl.view(), tensor_view<double>{},
                                           {}, {}, {});
      return scale * (kl[0] + kl[1] + kl[2]);
    };
    auto g_mq = randn(mq.shape(), r), g_lq = randn(lq.shape(), r);
    auto g_mp = randn(mp.shape(), r), g_lp = randn(lp.shape(), r);
    auto g_mq0 = g_mq.clone(), g_lq0 = g_lq.clone(), g_mp0 = g_mp.clone(), g_lp0 = g_lp.clone();
    ops::fc_gaussian_kl_forward_backward(mq, lq, mp, lp, scale, kl.view(), g_mq.view(), g_lq, g_mp,
                                         g_lp);
    check_gradient("kl mu_q", mq, minus(g_mq, g_mq0), loss);
    check_gradient("kl L_q", lq, minus(g_lq, g_lq0), loss);
    check_gradient("kl mu_p", mp, minus(g_mp, g_mp0), loss);
    check_gradient("kl L_p", lp, minus(g_lp, g_lp0), loss);
  }
}

TEST_CASE("fc latent ops refuse bad shapes, naming the op and the argument",
          "[ops][gaussian_fc]") {
  auto has = [](const char* op, const char* arg) {
    return Catch::Contains(std::string(op) + ": " + arg);
  };
  tensor<double> ls({2, 3, 4}), raw({2, 3, 4, 4}), l({2, 3, 4, 4}), bad({2, 3, 4, 3});
  CHECK_THROWS_WITH(ops::fc_scale_tril_forward(ls, bad, l.view()),
                    has("fc_scale_tril_forward", "tril_raw"));
  CHECK_THROWS_WITH(ops::fc_scale_tril_forward(ls, raw, bad.view()),
                    has("fc_scale_tril_forward", "L"));
  CHECK_THROWS_WITH(ops::fc_scale_tril_forward(raw, raw, l.view()),
                    has("fc_scale_tril_forward", "log_sigma"));
  CHECK_THROWS_WITH(ops::fc_scale_tril_backward(ls, l, tensor_view<double>{}, bad),
                    has("fc_scale_tril_backward", "dtril_raw"));
  tensor<double> v({2, 3, 4}), vbad({2, 3, 5});
  CHECK_THROWS_WITH(ops::fc_scale_tril_backward(ls, l, vbad.view(), {}),
                    has("fc_scale_tril_backward", "dlog_sigma"));
  CHECK_THROWS_WITH(ops::fc_gaussian_rsample_forward(v, bad, v, v.view()),
                    has("fc_gaussian_rsample_forward", "L"));
  CHECK_THROWS_WITH(ops::fc_gaussian_rsample_forward(v, l, vbad, v.view()),
                    has("fc_gaussian_rsample_forward", "eps"));
  CHECK_THROWS_WITH(ops::fc_gaussian_rsample_backward(v, vbad, tensor_view<double>{}, {}),
                    has("fc_gaussian_rsample_backward", "dz"));
  CHECK_THROWS_WITH(ops::fc_gaussian_rsample_backward(v, v, tensor_view<double>{}, bad),
                    has("fc_gaussian_rsample_backward", "dL"));

  const char* op = "fc_gaussian_kl_forward_backward";
  tensor<double> m({2, 1, 3}), lm({2, 1, 3, 3}), kl({2}), kl_bad({3}), lbad({2, 1, 3, 2});
  CHECK_THROWS_WITH(ops::fc_gaussian_kl_forward_backward(v, l, v, l, 1.0, kl.view(),
                                                         tensor_view<double>{}, {}, {}, {}),
                    has(op, "mu_q") && Catch::Contains("[B, 1, D]"));
  CHECK_THROWS_WITH(ops::fc_gaussian_kl_forward_backward(m, lm, m, lbad, 1.0, kl.view(),
                                                         tensor_view<double>{}, {}, {}, {}),
                    has(op, "L_p"));
  CHECK_THROWS_WITH(ops::fc_gaussian_kl_forward_backward(m, lm, m, lm, 1.0, kl_bad.view(),
                                                         tensor_view<double>{}, {}, {}, {}),
                    has(op, "kl"));
  CHECK_THROWS_WITH(ops::fc_gaussian_kl_forward_backward(m, lm, m, lm, 1.0, kl.view(),
                                                         tensor_view<double>{}, lbad, {}, {}),
                    has(op, "dL_q"));
  tensor<double> m65({1, 1, 65}), l65({1, 1, 65, 65}), kl1({1});
  CHECK_THROWS_WITH(ops::fc_gaussian_kl_forward_backward(m65, l65, m65, l65, 1.0, kl1.view(),
                                                         tensor_view<double>{}, {}, {}, {}),
                    has(op, "mu_q") && Catch::Contains("above the supported 64"));
}
