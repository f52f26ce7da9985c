// CUDA op layer, full-covariance Gaussian latents (ops/gaussian_fc.hpp): CPU/GPU parity
// forward and backward, float and double, through the same front ends; accumulated
// gradients start from non-zero values so that "+=" is checked. The KL runs up to D = 64
// (more columns than one block has threads). Skips without a GPU, except the
// shape-validation case, which calls the CUDA functions directly.
#include "cuda_test_util.hpp"

#include <ambiseg/ops/all.hpp>
#include <ambiseg/ops/cuda/api.hpp>

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
}
