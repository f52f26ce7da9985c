// Finite-difference gradient checks (double, central differences) for the Probabilistic
// U-Net's ops, with the random scalar loss L = Σ dy·y (or the op's own scaled loss for the
// fused loss ops). The latent ops' gradients accumulate (+=): checked from non-zero starts.
#include "ops_test_util.hpp"

#include <ambiseg/ops/all.hpp>

using namespace ambiseg;
using namespace ops_test;

namespace {

// a − b, elementwise (the part a backward added to a gradient that started at b).
tensor<double> minus(const tensor<double>& a, const tensor<double>& b) {
  tensor<double> d(a.shape());
  for (std::int64_t i = 0; i < a.numel(); ++i) d[i] = a[i] - b[i];
  return d;
}

}  // namespace

TEST_CASE("relu, avg_pool and spatial mean gradients",
          "[ops][relu][avg_pool][spatial_mean][grad]") {
  rng r(911);
  {
    auto x = randn({2, 3, 4, 5}, r);
    for (auto& v : x) v += v < 0 ? -0.1 : 0.1;  // away from the kink, beyond the FD step
    auto dy = randn(x.shape(), r);
    tensor<double> y(x.shape()), dx(x.shape());
    auto loss = [&] {
      ops::relu_forward(x, y.view());
      return dot(dy, y);
    };
    loss();
    ops::relu_backward(y, dy, dx.view());
    check_gradient("relu x", x, dx, loss);
  }
  {
    auto x = randn({2, 3, 4, 6}, r);
    auto dy = randn({2, 3, 2, 3}, r);
    tensor<double> y(dy.shape()), dx(x.shape());
    auto loss = [&] {
      ops::avg_pool2x2_forward(x, y.view());
      return dot(dy, y);
    };
    ops::avg_pool2x2_backward(dy, dx.view());
    check_gradient("avg_pool x", x, dx, loss);
  }
  {
    auto x = randn({2, 3, 3, 5}, r);
    auto dy = randn({2, 3}, r);
    tensor<double> y({2, 3}), dx(x.shape());
    auto loss = [&] {
      ops::spatial_mean_forward(x, y.view());
      return dot(dy, y);
    };
    ops::spatial_mean_backward(dy, dx.view());
    check_gradient("spatial mean x", x, dx, loss);
  }
}

TEST_CASE("bilinear 2x gradients, every mode, down to one row or column",
          "[ops][upsample][grad]") {
  rng r(912);
  for (const auto mode : {ops::bilinear_mode::half_pixel, ops::bilinear_mode::align_corners,
                            ops::bilinear_mode::asymmetric})
    for (const shape s :
         {shape{2, 2, 3, 4}, shape{1, 2, 1, 3}, shape{1, 1, 5, 1}, shape{1, 1, 2, 2}}) {
      INFO("mode " << static_cast<int>(mode) << ", x " << s);
      auto x = randn(s, r);
      auto dy = randn({s[0], s[1], 2 * s[2], 2 * s[3]}, r);
      tensor<double> y(dy.shape()), dx(s);
      auto loss = [&] {
        ops::upsample_bilinear2x_forward(x, y.view(), mode);
        return dot(dy, y);
      };
      ops::upsample_bilinear2x_backward(dy, dx.view(), mode);
      check_gradient("bilinear x", x, dx, loss);
    }
}

TEST_CASE("sigmoid cross-entropy gradient of scale times the summed loss",
          "[ops][sigmoid_cross_entropy][grad]") {
  rng r(913);
  const shape s{3, 1, 4, 4};
  auto logits = randn(s, r, 3.0);
  tensor<double> targets(s);
  for (std::int64_t i = 0; i < targets.numel(); ++i)  // soft and hard labels
    targets[i] = i % 2 ? r.uniform() : (i % 4 == 0 ? 1.0 : 0.0);
  const double scale = 0.25;
  tensor<double> per_case({3}), dlogits(s);
  auto loss = [&] {
    ops::sigmoid_cross_entropy_forward_backward(logits, targets, scale, per_case.view(),
                                                tensor_view<double>{});
    return scale * (per_case[0] + per_case[1] + per_case[2]);
  };
  ops::sigmoid_cross_entropy_forward_backward(logits, targets, scale, per_case.view(),
                                              dlogits.view());
  check_gradient("bce logits", logits, dlogits, loss);
}

TEST_CASE("Gaussian rsample and KL gradients accumulate", "[ops][gaussian_latent][grad]") {
  rng r(914);
  const shape s{3, 4};
  {
    auto mu = randn(s, r), ls = randn(s, r, 0.5), eps = randn(s, r);
    auto dz = randn(s, r);
    tensor<double> z(s);
    auto loss = [&] {
      ops::diag_gaussian_rsample_forward(mu, ls, eps, z.view());
      return dot(dz, z);
    };
    auto dmu = randn(s, r), dls = randn(s, r);
    auto dmu0 = dmu.clone(), dls0 = dls.clone();
    ops::diag_gaussian_rsample_backward(ls, eps, dz, dmu.view(), dls);
    check_gradient("rsample mu", mu, minus(dmu, dmu0), loss);
    check_gradient("rsample log_sigma", ls, minus(dls, dls0), loss);
  }
  {
    auto mu_q = randn(s, r), ls_q = randn(s, r, 0.5), mu_p = randn(s, r), ls_p = randn(s, r, 0.5);
    const double scale = 0.7;
    tensor<double> kl({3});
    auto loss = [&] {
      ops::diag_gaussian_kl_forward_backward(mu_q, ls_q, mu_p, ls_p, scale, kl.view(),
                                             tensor_view<double>{}, {}, {}, {});
      return scale * (kl[0] + kl[1] + kl[2]);
    };
    auto g_mq = randn(s, r), g_lq = randn(s, r), g_mp = randn(s, r), g_lp = randn(s, r);
    auto g_mq0 = g_mq.clone(), g_lq0 = g_lq.clone(), g_mp0 = g_mp.clone(), g_lp0 = g_lp.clone();
    ops::diag_gaussian_kl_forward_backward(mu_q, ls_q, mu_p, ls_p, scale, kl.view(), g_mq.view(),
                                           g_lq, g_mp, g_lp);
    check_gradient("kl mu_q", mu_q, minus(g_mq, g_mq0), loss);
    check_gradient("kl log_sigma_q", ls_q, minus(g_lq, g_lq0), loss);
    check_gradient("kl mu_p", mu_p, minus(g_mp, g_mp0), loss);
    check_gradient("kl log_sigma_p", ls_p, minus(g_lp, g_lp0), loss);
  }
}
