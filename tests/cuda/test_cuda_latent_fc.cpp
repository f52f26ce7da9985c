// CUDA op layer, full-covariance and mixture latents (ops/gaussian_fc.hpp): CPU/GPU parity
// forward and backward, float and double, through the same front ends; accumulated
// gradients start from non-zero values so that "+=" is checked. The KL runs up to D = 64
// (more columns than one block has threads), the mixture density up to K = 32, D = 64.
// Skips without a GPU, except the shape-validation case, which calls the CUDA functions
// directly.
#include "cuda_test_util.hpp"

#include <ambiseg/ops/all.hpp>
#include <ambiseg/ops/cuda/api.hpp>

#include <array>
#include <cmath>

using namespace ambiseg;
using namespace cuda_test;
namespace ck = ambiseg::ops::cuda_kernels;

namespace {

// [B, K, D, D] with a diagonal in [1, 2], small entries below and garbage above it.
template <class T>
tensor<T> random_factor(shape s, std::uint32_t seed, double off) {
  auto l = random_tensor<T>(s, seed, -off, off);
  const std::int64_t d = s[3];
  for (std::int64_t e = 0; e < l.numel(); ++e) {
    const std::int64_t c = e % d, i = (e / d) % d;
    if (i == c) l[e] = static_cast<T>(1.5 + 0.5 * std::sin(static_cast<double>(e)));
    if (i < c) l[e] = static_cast<T>(5);
  }
  return l;
}

}  // namespace

TEMPLATE_TEST_CASE("CUDA fc_scale_tril and fc rsample match the CPU ops, gradients accumulate",
                   "[cuda][ops][gaussian_fc]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const auto tl = default_tol<T>();
  const shape v{3, 2, 5}, m{3, 2, 5, 5};
  SECTION("scale_tril forward and backward") {
    auto ls = random_tensor<T>(v, 201), raw = random_tensor<T>(m, 202);
    auto dl = random_tensor<T>(m, 203);
    auto lsd = to_device(ls), rawd = to_device(raw), dld = to_device(dl);
    tensor<T> l(m);
    tensor<T, cuda> ld(m);
    ops::fc_scale_tril_forward(ls.cview(), raw.cview(), l.view());
    ops::fc_scale_tril_forward(lsd.cview(), rawd.cview(), ld.view());
    require_close(ld, l, tl, "scale_tril L");
    auto g_ls = random_tensor<T>(v, 204), g_raw = random_tensor<T>(m, 205);
    auto g_lsd = to_device(g_ls), g_rawd = to_device(g_raw);
    ops::fc_scale_tril_backward(ls.cview(), dl.cview(), g_ls.view(), g_raw.view());
    ops::fc_scale_tril_backward(lsd.cview(), dld.cview(), g_lsd.view(), g_rawd.view());
    require_close(g_lsd, g_ls, tl, "scale_tril dlog_sigma (+=)");
    require_close(g_rawd, g_raw, {0, 0}, "scale_tril dtril_raw (+=)");
    ops::fc_scale_tril_backward(ls.cview(), dl.cview(), tensor_view<T>{}, g_raw.view());
    ops::fc_scale_tril_backward(lsd.cview(), dld.cview(), tensor_view<T, cuda>{}, g_rawd.view());
    require_close(g_lsd, g_ls, tl, "scale_tril dlog_sigma untouched");
    require_close(g_rawd, g_raw, {0, 0}, "scale_tril dtril_raw, second accumulation");
  }
  SECTION("rsample forward and backward") {
    auto mu = random_tensor<T>(v, 210), eps = random_tensor<T>(v, 211, -2, 2);
    auto l = random_factor<T>(m, 212, 0.5);
    auto dz = random_tensor<T>(v, 213);
    auto mud = to_device(mu), epsd = to_device(eps), ld = to_device(l), dzd = to_device(dz);
    tensor<T> z(v);
    tensor<T, cuda> zd(v);
    ops::fc_gaussian_rsample_forward(mu.cview(), l.cview(), eps.cview(), z.view());
    ops::fc_gaussian_rsample_forward(mud.cview(), ld.cview(), epsd.cview(), zd.view());
    require_close(zd, z, tl, "rsample z");
    auto g_mu = random_tensor<T>(v, 214), g_l = random_tensor<T>(m, 215);
    auto g_mud = to_device(g_mu), g_ld = to_device(g_l);
    ops::fc_gaussian_rsample_backward(eps.cview(), dz.cview(), g_mu.view(), g_l.view());
    ops::fc_gaussian_rsample_backward(epsd.cview(), dzd.cview(), g_mud.view(), g_ld.view());
    require_close(g_mud, g_mu, {0, 0}, "rsample dmu (+=)");
    require_close(g_ld, g_l, tl, "rsample dL (+=)");
  }
}

TEMPLATE_TEST_CASE("CUDA fc Gaussian KL matches the CPU op for D = 1, 5 and 64",
                   "[cuda][ops][gaussian_fc]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const auto tl = default_tol<T>();
  for (const std::int64_t d : {1, 5, 64}) {
    INFO("D = " << d);
    const std::int64_t b = 3;
    const shape v{b, 1, d}, m{b, 1, d, d};
    const auto seed = static_cast<std::uint32_t>(220 + d);
    auto mq = random_tensor<T>(v, seed), mp = random_tensor<T>(v, seed + 1);
    auto lq = random_factor<T>(m, seed + 2, 0.1), lp = random_factor<T>(m, seed + 3, 0.1);
    auto mqd = to_device(mq), mpd = to_device(mp), lqd = to_device(lq), lpd = to_device(lp);
    auto g0 = random_tensor<T>(v, seed + 4), g1 = random_tensor<T>(m, seed + 5);
    auto g2 = random_tensor<T>(v, seed + 6), g3 = random_tensor<T>(m, seed + 7);
    auto g0d = to_device(g0), g1d = to_device(g1), g2d = to_device(g2), g3d = to_device(g3);
    tensor<double> kl({b});
    tensor<double, cuda> kld(shape{b});
    const double scale = 0.6;
    ops::fc_gaussian_kl_forward_backward(mq.cview(), lq.cview(), mp.cview(), lp.cview(), scale,
                                         kl.view(), g0.view(), g1.view(), g2.view(), g3.view());
    ops::fc_gaussian_kl_forward_backward(mqd.cview(), lqd.cview(), mpd.cview(), lpd.cview(),
                                         scale, kld.view(), g0d.view(), g1d.view(), g2d.view(),
                                         g3d.view());
    require_close(kld, kl, {1e-12, 1e-12}, "kl");  // the same double maths, in the same order
    require_close(g0d, g0, tl, "kl dmu_q (+=)");
    require_close(g1d, g1, tl, "kl dL_q (+=)");
    require_close(g2d, g2, tl, "kl dmu_p (+=)");
    require_close(g3d, g3, tl, "kl dL_p (+=)");
    // Without gradients: the same KL, nothing written.
    tensor<double, cuda> kl2(shape{b});
    ops::fc_gaussian_kl_forward_backward(mqd.cview(), lqd.cview(), mpd.cview(), lpd.cview(), scale,
                                         kl2.view(), tensor_view<T, cuda>{}, {}, {}, {});
    require_close(kl2, to_host(kld), {0, 0}, "kl without gradients");
    require_close(g0d, g0, tl, "kl dmu_q untouched");
  }
}

TEMPLATE_TEST_CASE("CUDA mixture log-density (full and diagonal) matches the CPU op",
                   "[cuda][ops][gaussian_fc]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const auto tl = default_tol<T>();
  // K = 32 and D = 64 fill the shared scratch; K = 9, D = 2 is FC mix's size.
  using dims = std::array<std::int64_t, 3>;
  for (const auto& [b, k, d] : {dims{5, 9, 2}, dims{2, 32, 64}}) {
    INFO("B " << b << ", K " << k << ", D " << d);
    const auto seed = static_cast<std::uint32_t>(300 + k);
    auto z = random_tensor<T>({b, d}, seed), logits = random_tensor<T>({b, k}, seed + 1, -3, 3);
    auto mu = random_tensor<T>({b, k, d}, seed + 2);
    auto l = random_factor<T>({b, k, d, d}, seed + 3, 0.1);
    auto ls = random_tensor<T>({b, k, d}, seed + 4, -0.5, 0.5);
    auto zd = to_device(z), lgd = to_device(logits), mud = to_device(mu), ld = to_device(l);
    auto lsd = to_device(ls);
    auto gz = random_tensor<T>({b, d}, seed + 5), gl = random_tensor<T>({b, k}, seed + 6);
    auto gm = random_tensor<T>({b, k, d}, seed + 7), gL = random_tensor<T>({b, k, d, d}, seed + 8);
    auto gs = random_tensor<T>({b, k, d}, seed + 9);
    auto gzd = to_device(gz), gld = to_device(gl), gmd = to_device(gm), gLd = to_device(gL);
    auto gsd = to_device(gs);
    tensor<double> lp({b});
    tensor<double, cuda> lpd(shape{b});
    ops::mixture_log_prob_forward_backward(z.cview(), logits.cview(), mu.cview(), l.cview(), 0.3,
                                           lp.view(), gz.view(), gl.view(), gm.view(), gL.view());
    ops::mixture_log_prob_forward_backward(zd.cview(), lgd.cview(), mud.cview(), ld.cview(), 0.3,
                                           lpd.view(), gzd.view(), gld.view(), gmd.view(),
                                           gLd.view());
    require_close(lpd, lp, {1e-12, 1e-12}, "log_prob");
    require_close(gzd, gz, tl, "dz (+=)");
    require_close(gld, gl, tl, "dlogits (+=)");
    require_close(gmd, gm, tl, "dmu (+=)");
    require_close(gLd, gL, tl, "dL (+=)");
    ops::diag_mixture_log_prob_forward_backward(z.cview(), logits.cview(), mu.cview(), ls.cview(),
                                                -1.0, lp.view(), gz.view(), {}, gm.view(),
                                                gs.view());
    ops::diag_mixture_log_prob_forward_backward(zd.cview(), lgd.cview(), mud.cview(), lsd.cview(),
                                                -1.0, lpd.view(), gzd.view(), {}, gmd.view(),
                                                gsd.view());
    require_close(lpd, lp, {1e-12, 1e-12}, "diag log_prob");
    require_close(gzd, gz, tl, "diag dz (+=)");
    require_close(gld, gl, tl, "diag: dlogits untouched");
    require_close(gmd, gm, tl, "diag dmu (+=)");
    require_close(gsd, gs, tl, "diag dlog_sigma (+=)");
  }
}

TEMPLATE_TEST_CASE("CUDA straight-through mixture sample matches the CPU op",
                   "[cuda][ops][gaussian_fc]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const auto tl = default_tol<T>();
  const std::int64_t b = 300, k = 9, d = 2;  // more rows than one block has threads
  auto logits = random_tensor<T>({b, k}, 401, -2, 2);
  auto u = random_tensor<double>({b, k}, 402, 1e-6, 1.0);
  tensor<T> gumbel({b, k});
  for (std::int64_t i = 0; i < u.numel(); ++i)
    gumbel[i] = static_cast<T>(-std::log(-std::log(u[i])));
  auto samples = random_tensor<T>({b, k, d}, 403), dz = random_tensor<T>({b, d}, 404);
  auto lgd = to_device(logits), gud = to_device(gumbel), sd = to_device(samples);
  auto dzd = to_device(dz);
  tensor<T> z({b, d}), relaxed({b, k});
  tensor<std::int32_t> choice({b});
  tensor<T, cuda> zd(shape{b, d}), relaxedd(shape{b, k});
  tensor<std::int32_t, cuda> choiced(shape{b});
  ops::straight_through_mixture_sample_forward(logits.cview(), gumbel.cview(), 0.1,
                                               samples.cview(), z.view(), relaxed.view(),
                                               choice.view());
  ops::straight_through_mixture_sample_forward(lgd.cview(), gud.cview(), 0.1, sd.cview(),
                                               zd.view(), relaxedd.view(), choiced.view());
  require_close(zd, z, {0, 0}, "z (a copy of the chosen sample)");
  require_close(relaxedd, relaxed, tl, "relaxed");
  require_close(choiced, choice, {0, 0}, "choice");
  auto gl = random_tensor<T>({b, k}, 405), gs = random_tensor<T>({b, k, d}, 406);
  auto gld = to_device(gl), gsd = to_device(gs);
  ops::straight_through_mixture_sample_backward(samples.cview(), relaxed.cview(), choice.cview(),
                                                0.1, dz.cview(), gl.view(), gs.view());
  ops::straight_through_mixture_sample_backward(sd.cview(), relaxedd.cview(), choiced.cview(),
                                                0.1, dzd.cview(), gld.view(), gsd.view());
  require_close(gld, gl, {1e-4, 1e-4}, "dlogits (+=; ×1/τ)");
  require_close(gsd, gs, {0, 0}, "dsamples (+=)");
}

TEST_CASE("CUDA fc latent ops validate shapes before touching the device", "[cuda][ops]") {
  static float placeholder[1];
  static double placeholder_d[1];
  auto v = [](shape s) { return tensor_view<float, cuda>(placeholder, s); };
  auto c = [](shape s) { return tensor_view<const float, cuda>(placeholder, s); };
  auto vd = [](shape s) { return tensor_view<double, cuda>(placeholder_d, s); };
  CHECK_THROWS_WITH(ck::fc_scale_tril_forward(c({2, 3, 4}), c({2, 3, 4, 3}), v({2, 3, 4, 4})),
                    Catch::Contains("fc_scale_tril_forward: tril_raw"));
  CHECK_THROWS_WITH(ck::fc_scale_tril_backward(c({2, 3, 4}), c({2, 3, 4, 4}), v({2, 3, 5}), {}),
                    Catch::Contains("fc_scale_tril_backward: dlog_sigma"));
  CHECK_THROWS_WITH(ck::fc_gaussian_rsample_forward(c({2, 3, 4}), c({2, 3, 4, 4}), c({2, 3, 4}),
                                                    v({2, 4, 4})),
                    Catch::Contains("fc_gaussian_rsample_forward: z"));
  CHECK_THROWS_WITH(ck::fc_gaussian_rsample_backward(c({2, 3, 4}), c({2, 3, 4}), v({2, 3, 4}),
                                                     v({2, 3, 4, 5})),
                    Catch::Contains("fc_gaussian_rsample_backward: dL"));
  CHECK_THROWS_WITH(ck::fc_gaussian_kl_forward_backward(c({2, 1, 3}), c({2, 1, 3, 3}),
                                                        c({2, 1, 3}), c({2, 1, 3, 3}), 1.0,
                                                        vd({2}), v({2, 1, 3}), {}, {},
                                                        v({2, 1, 2, 3})),
                    Catch::Contains("fc_gaussian_kl_forward_backward: dL_p"));
  CHECK_THROWS_WITH(ck::fc_gaussian_kl_forward_backward(c({1, 1, 65}), c({1, 1, 65, 65}),
                                                        c({1, 1, 65}), c({1, 1, 65, 65}), 1.0,
                                                        vd({1}), tensor_view<float, cuda>{}, {},
                                                        {}, {}),
                    Catch::Contains("above the supported 64"));
  CHECK_THROWS_WITH(ck::mixture_log_prob_forward_backward(c({2, 3}), c({2, 4}), c({2, 4, 3}),
                                                          c({2, 4, 3, 3}), 1.0, vd({2}),
                                                          v({2, 3}), v({2, 5}), {}, {}),
                    Catch::Contains("mixture_log_prob_forward_backward: dlogits"));
  CHECK_THROWS_WITH(ck::diag_mixture_log_prob_forward_backward(c({2, 3}), c({2, 4}), c({2, 4, 3}),
                                                               c({2, 4, 3, 3}), 1.0, vd({2}),
                                                               v({2, 3}), {}, {}, {}),
                    Catch::Contains("diag_mixture_log_prob_forward_backward: log_sigma"));
  static std::int32_t placeholder_i[1];
  auto vi = [](shape s) { return tensor_view<std::int32_t, cuda>(placeholder_i, s); };
  auto ci = [](shape s) { return tensor_view<const std::int32_t, cuda>(placeholder_i, s); };
  CHECK_THROWS_WITH(ck::straight_through_mixture_sample_forward(c({2, 4}), c({2, 4}), -1.0,
                                                                c({2, 4, 3}), v({2, 3}),
                                                                v({2, 4}), vi({2})),
                    Catch::Contains("straight_through_mixture_sample_forward: tau"));
  CHECK_THROWS_WITH(ck::straight_through_mixture_sample_backward(c({2, 4, 3}), c({2, 4}),
                                                                 ci({3}), 0.5, c({2, 3}),
                                                                 v({2, 4}), {}),
                    Catch::Contains("straight_through_mixture_sample_backward: choice"));
}
