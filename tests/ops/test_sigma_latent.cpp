// softplus and the σ-parametrised Gaussian KL (PHiSeg's latents): values worked out by hand,
// finite-difference gradients in double, and the refusals.
#include <catch2/catch.hpp>

#include <cmath>

#include "ambiseg/ops/gaussian_sigma.hpp"
#include "ambiseg/ops/softplus.hpp"
#include "ops_test_util.hpp"

using namespace ambiseg;
using namespace ops_test;

TEST_CASE("softplus: log(1 + e^x) without overflow, and its gradient sigmoid(x)", "[ops][softplus]") {
  auto x = tensor<double>::from({5}, {0.0, 1.0, -2.0, 800.0, -800.0});
  tensor<double> y({5});
  ops::softplus_forward(x, y.view());
  CHECK(y[0] == Approx(std::log(2.0)).epsilon(1e-15));
  CHECK(y[1] == Approx(std::log1p(std::exp(1.0))).epsilon(1e-15));
  CHECK(y[2] == Approx(std::log1p(std::exp(-2.0))).epsilon(1e-15));
  CHECK(y[3] == 800.0);
  CHECK(y[4] == 0.0);  // e^−800 underflows to 0, as the reference's float computation does
  tensor<double> dy({5}), dx({5});
  dy.fill(2.0);
  ops::softplus_backward(x, dy, dx.view());
  CHECK(dx[0] == Approx(1.0).epsilon(1e-15));
  CHECK(dx[1] == Approx(2.0 / (1.0 + std::exp(-1.0))).epsilon(1e-15));
  CHECK(dx[3] == 2.0);
  CHECK(dx[4] == 0.0);

  rng r(31);
  auto z = randn({2, 3, 4}, r, 3.0);
  auto w = randn({2, 3, 4}, r);
  tensor<double> out({2, 3, 4}), dz({2, 3, 4});
  auto loss = [&] {
    ops::softplus_forward(z, out.view());
    return dot(w, out);
  };
  ops::softplus_backward(z, w, dz.view());
  check_gradient("softplus x", z, dz, loss);
  tensor<double> bad({2, 3, 5});
  CHECK_THROWS_AS(ops::softplus_forward(z, bad.view()), shape_error);
}

TEST_CASE("gaussian_kl_sigma: the closed form per case, PHiSeg's variance floor", "[ops][gaussian_kl_sigma]") {
  // One case, two elements: KL(N(0, 1) ‖ N(1, 2²)) = log 2 + (1 + 1)/8 − ½, and identical
  // Gaussians (0 up to the floor's effect).
  auto mu_q = tensor<double>::from({1, 2}, {0.0, 0.3}), sigma_q = tensor<double>::from({1, 2}, {1.0, 0.7});
  auto mu_p = tensor<double>::from({1, 2}, {1.0, 0.3}), sigma_p = tensor<double>::from({1, 2}, {2.0, 0.7});
  tensor<double> kl({1});
  const tensor_view<double> none{};
  ops::gaussian_kl_sigma_forward_backward(mu_q, sigma_q, mu_p, sigma_p, 0.0, 1.0, kl.view(), none, none, none, none);
  CHECK(kl[0] == Approx(std::log(2.0) + 2.0 / 8.0 - 0.5).epsilon(1e-14));
  // The floor enters as PHiSeg writes it: σ² + f in both logs and the denominator.
  const double f = 1e-3;
  ops::gaussian_kl_sigma_forward_backward(mu_q, sigma_q, mu_p, sigma_p, f, 1.0, kl.view(), none, none, none, none);
  const double first = 0.5 * ((1.0 + 1.0) / (4.0 + f) + std::log(4.0 + f) - std::log(1.0 + f) - 1.0);
  const double second = 0.5 * (0.49 / (0.49 + f) + std::log(0.49 + f) - std::log(0.49 + f) - 1.0);
  CHECK(kl[0] == Approx(first + second).epsilon(1e-14));
}

TEST_CASE("gaussian_kl_sigma gradients of scale·Σ_b kl[b] (finite differences, double)",
          "[ops][gaussian_kl_sigma][grad]") {
  rng r(32);
  const shape s{3, 2, 2, 3};
  auto mu_q = randn(s, r), mu_p = randn(s, r);
  auto sigma_q = randn(s, r), sigma_p = randn(s, r);
  for (auto& v : sigma_q) v = 0.3 + std::abs(v);
  for (auto& v : sigma_p) v = 0.3 + std::abs(v);
  const double scale = -1.7, floor = 1e-2;
  tensor<double> kl({3});
  const tensor_view<double> none{};
  auto loss = [&] {
    ops::gaussian_kl_sigma_forward_backward(mu_q, sigma_q, mu_p, sigma_p, floor, 1.0, kl.view(), none, none, none,
                                            none);
    return scale * (kl[0] + kl[1] + kl[2]);
  };
  auto g0 = tensor<double>::zeros(s), g1 = tensor<double>::zeros(s), g2 = tensor<double>::zeros(s),
       g3 = tensor<double>::zeros(s);
  ops::gaussian_kl_sigma_forward_backward(mu_q, sigma_q, mu_p, sigma_p, floor, scale, kl.view(), g0.view(), g1.view(),
                                          g2.view(), g3.view());
  check_gradient("mu_q", mu_q, g0, loss);
  check_gradient("sigma_q", sigma_q, g1, loss);
  check_gradient("mu_p", mu_p, g2, loss);
  check_gradient("sigma_p", sigma_p, g3, loss);

  tensor<double> bad({3, 2, 2, 2}), kl_bad({2});
  CHECK_THROWS_AS(ops::gaussian_kl_sigma_forward_backward(mu_q, bad, mu_p, sigma_p, floor, 1.0, kl.view(), none, none,
                                                          none, none),
                  shape_error);
  CHECK_THROWS_AS(ops::gaussian_kl_sigma_forward_backward(mu_q, sigma_q, mu_p, sigma_p, floor, 1.0, kl_bad.view(), none,
                                                          none, none, none),
                  shape_error);
  CHECK_THROWS_AS(ops::gaussian_kl_sigma_forward_backward(mu_q, sigma_q, mu_p, sigma_p, -1.0, 1.0, kl.view(), none,
                                                          none, none, none),
                  value_error);
}

TEST_CASE("sigma_gaussian_rsample: z = μ + σ⊙ε and its gradients", "[ops][gaussian_sigma][grad]") {
  rng r(33);
  const shape s{2, 2, 3};
  auto mu = randn(s, r), sigma = randn(s, r), eps = randn(s, r), w = randn(s, r);
  tensor<double> z(s);
  ops::sigma_gaussian_rsample_forward(mu, sigma, eps, z.view());
  for (std::int64_t i = 0; i < z.numel(); ++i) CHECK(z[i] == mu[i] + sigma[i] * eps[i]);
  auto loss = [&] {
    ops::sigma_gaussian_rsample_forward(mu, sigma, eps, z.view());
    return dot(w, z);
  };
  auto dmu = tensor<double>::zeros(s), dsigma = tensor<double>::zeros(s);
  ops::sigma_gaussian_rsample_backward(eps, w, dmu.view(), dsigma.view());
  check_gradient("mu", mu, dmu, loss);
  check_gradient("sigma", sigma, dsigma, loss);
  tensor<double> bad({2, 2, 2});
  CHECK_THROWS_AS(ops::sigma_gaussian_rsample_forward(mu, sigma, bad, z.view()), shape_error);
}
