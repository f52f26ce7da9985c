// CUDA op layer, the Probabilistic U-Net's ops: CPU/GPU parity forward and backward, float
// and double (ReLU, 2×2 average pooling, bilinear ×2, spatial mean, BCE with logits,
// Gaussian rsample and KL). Each case calls the same front end (ops/<op>.hpp) with cpu
// views of host data and with cuda views of device copies, so both the dispatch and the
// kernels of ops/cuda/api.hpp run; accumulated gradients start from non-zero values so
// that "+=" is checked. Skips without a GPU, except the shape-validation case, which calls
// the CUDA functions directly and never touches the device.
#include "cuda_test_util.hpp"

#include <ambiseg/ops/all.hpp>
#include <ambiseg/ops/cuda/api.hpp>

#include <cmath>

using namespace ambiseg;
using namespace cuda_test;
namespace ck = ambiseg::ops::cuda_kernels;

TEMPLATE_TEST_CASE("CUDA relu, avg_pool and spatial mean match the CPU ops", "[cuda][ops]", float,
                   double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const auto tl = default_tol<T>();
  SECTION("relu forward and backward (from the output)") {
    const shape s{2, 3, 5, 7};
    auto x = random_tensor<T>(s, 101, -3, 3);
    auto dy = random_tensor<T>(s, 102);
    auto xd = to_device(x), dyd = to_device(dy);
    tensor<T> y(s), dx(s);
    tensor<T, cuda> yd(s), dxd(s);
    ops::relu_forward(x.cview(), y.view());
    ops::relu_forward(xd.cview(), yd.view());
    require_close(yd, y, {0, 0}, "relu forward");
    ops::relu_backward(y.cview(), dy.cview(), dx.view());
    ops::relu_backward(yd.cview(), dyd.cview(), dxd.view());
    require_close(dxd, dx, {0, 0}, "relu backward");
  }
  SECTION("avg_pool2x2 forward and backward") {
    auto x = random_tensor<T>({2, 3, 6, 10}, 103);
    auto dy = random_tensor<T>({2, 3, 3, 5}, 104);
    auto xd = to_device(x), dyd = to_device(dy);
    tensor<T> y({2, 3, 3, 5}), dx({2, 3, 6, 10});
    tensor<T, cuda> yd(shape{2, 3, 3, 5}), dxd(shape{2, 3, 6, 10});
    ops::avg_pool2x2_forward(x.cview(), y.view());
    ops::avg_pool2x2_forward(xd.cview(), yd.view());
    require_close(yd, y, {0, 0}, "avg_pool forward");  // the same summation order
    ops::avg_pool2x2_backward(dy.cview(), dx.view());
    ops::avg_pool2x2_backward(dyd.cview(), dxd.view());
    require_close(dxd, dx, {0, 0}, "avg_pool backward");
  }
  SECTION("spatial mean forward (rows longer than a block) and backward") {
    const shape s{2, 3, 17, 19};  // 323 values per row: more than one per thread
    auto x = random_tensor<T>(s, 105, -1, 3);
    auto dy = random_tensor<T>({2, 3}, 106);
    auto xd = to_device(x), dyd = to_device(dy);
    tensor<T> y({2, 3}), dx(s);
    tensor<T, cuda> yd(shape{2, 3}), dxd(s);
    ops::spatial_mean_forward(x.cview(), y.view());
    ops::spatial_mean_forward(xd.cview(), yd.view());
    require_close(yd, y, tl, "spatial mean forward");  // both in double; order differs
    ops::spatial_mean_backward(dy.cview(), dx.view());
    ops::spatial_mean_backward(dyd.cview(), dxd.view());
    require_close(dxd, dx, {0, 0}, "spatial mean backward");
  }
}

TEMPLATE_TEST_CASE("CUDA bilinear 2x matches the CPU op for both align_corners", "[cuda][ops]",
                   float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const auto tl = default_tol<T>();
  for (const auto mode : {ops::bilinear_mode::half_pixel, ops::bilinear_mode::align_corners,
                            ops::bilinear_mode::asymmetric})
    for (const shape s : {shape{2, 3, 5, 4}, shape{1, 2, 1, 3}, shape{1, 1, 8, 8}}) {
      INFO("mode " << static_cast<int>(mode) << ", x " << s.to_string());
      const shape ys{s[0], s[1], 2 * s[2], 2 * s[3]};
      auto x = random_tensor<T>(s, 110);
      auto dy = random_tensor<T>(ys, 111);
      auto xd = to_device(x), dyd = to_device(dy);
      tensor<T> y(ys), dx(s);
      tensor<T, cuda> yd(ys), dxd(s);
      ops::upsample_bilinear2x_forward(x.cview(), y.view(), mode);
      ops::upsample_bilinear2x_forward(xd.cview(), yd.view(), mode);
      require_close(yd, y, tl, "bilinear forward");  // same taps; a GPU may contract to FMA
      ops::upsample_bilinear2x_backward(dy.cview(), dx.view(), mode);
      ops::upsample_bilinear2x_backward(dyd.cview(), dxd.view(), mode);
      require_close(dxd, dx, tl, "bilinear backward");
    }
}

TEMPLATE_TEST_CASE("CUDA sigmoid cross-entropy matches the CPU op", "[cuda][ops]", float,
                   double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const shape s{3, 1, 20, 30};  // 600 values per case: several per thread of a block
  auto logits = random_tensor<T>(s, 120, -12, 12);
  auto targets = random_tensor<T>(s, 121, 0, 1);
  for (std::int64_t i = 0; i < targets.numel(); i += 3) targets[i] = T(i % 2);  // hard labels
  auto ld = to_device(logits), td = to_device(targets);
  const double scale = 1.0 / 3;
  tensor<double> per_case({3});
  tensor<double, cuda> per_cased(shape{3});
  tensor<T> dl(s);
  tensor<T, cuda> dld(s);
  ops::sigmoid_cross_entropy_forward_backward(logits.cview(), targets.cview(), scale,
                                              per_case.view(), dl.view());
  ops::sigmoid_cross_entropy_forward_backward(ld.cview(), td.cview(), scale, per_cased.view(),
                                             dld.view());
  // Every term in double on both devices: only the summation order differs.
  require_close(per_cased, per_case, {1e-12, 1e-12}, "bce per case");
  require_close(dld, dl, default_tol<T>(), "bce dlogits");
  // Without the gradient: the same loss, nothing written to dlogits.
  tensor<double, cuda> per_case2(shape{3});
  ops::sigmoid_cross_entropy_forward_backward(ld.cview(), td.cview(), scale, per_case2.view(),
                                             tensor_view<T, cuda>{});
  require_close(per_case2, to_host(per_cased), {0, 0}, "bce per case, no gradient");
}

TEMPLATE_TEST_CASE("CUDA Gaussian rsample and KL match the CPU ops, gradients accumulate",
                   "[cuda][ops]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const auto tl = default_tol<T>();
  const shape s{5, 6};
  auto mu = random_tensor<T>(s, 130), ls = random_tensor<T>(s, 131, -1, 1);
  auto eps = random_tensor<T>(s, 132, -2, 2), dz = random_tensor<T>(s, 133);
  auto mud = to_device(mu), lsd = to_device(ls), epsd = to_device(eps), dzd = to_device(dz);
  SECTION("rsample forward and backward (+=)") {
    tensor<T> z(s);
    tensor<T, cuda> zd(s);
    ops::diag_gaussian_rsample_forward(mu.cview(), ls.cview(), eps.cview(), z.view());
    ops::diag_gaussian_rsample_forward(mud.cview(), lsd.cview(), epsd.cview(), zd.view());
    require_close(zd, z, tl, "rsample z");
    auto dmu = random_tensor<T>(s, 134), dls = random_tensor<T>(s, 135);
    auto dmud = to_device(dmu), dlsd = to_device(dls);
    ops::diag_gaussian_rsample_backward(ls.cview(), eps.cview(), dz.cview(), dmu.view(),
                                        dls.view());
    ops::diag_gaussian_rsample_backward(lsd.cview(), epsd.cview(), dzd.cview(), dmud.view(),
                                       dlsd.view());
    require_close(dmud, dmu, {0, 0}, "rsample dmu (+=)");
    require_close(dlsd, dls, tl, "rsample dlog_sigma (+=)");
    // dlog_sigma only.
    ops::diag_gaussian_rsample_backward(ls.cview(), eps.cview(), dz.cview(), tensor_view<T>{},
                                        dls.view());
    ops::diag_gaussian_rsample_backward(lsd.cview(), epsd.cview(), dzd.cview(),
                                       tensor_view<T, cuda>{}, dlsd.view());
    require_close(dmud, dmu, {0, 0}, "rsample dmu untouched");
    require_close(dlsd, dls, tl, "rsample dlog_sigma, second accumulation");
  }
  SECTION("KL forward and the four gradients (+=), some absent") {
    auto mu_p = random_tensor<T>(s, 136), ls_p = random_tensor<T>(s, 137, -1, 1);
    auto mupd = to_device(mu_p), lspd = to_device(ls_p);
    const double scale = 0.4;
    tensor<double> kl({5});
    tensor<double, cuda> kld(shape{5});
    auto g0 = random_tensor<T>(s, 140), g1 = random_tensor<T>(s, 141);
    auto g2 = random_tensor<T>(s, 142), g3 = random_tensor<T>(s, 143);
    auto g0d = to_device(g0), g1d = to_device(g1), g2d = to_device(g2), g3d = to_device(g3);
    ops::diag_gaussian_kl_forward_backward(mu.cview(), ls.cview(), mu_p.cview(), ls_p.cview(),
                                           scale, kl.view(), g0.view(), g1.view(), g2.view(),
                                           g3.view());
    ops::diag_gaussian_kl_forward_backward(mud.cview(), lsd.cview(), mupd.cview(), lspd.cview(),
                                          scale, kld.view(), g0d.view(), g1d.view(), g2d.view(),
                                          g3d.view());
    require_close(kld, kl, {1e-13, 1e-13}, "kl");  // the same double maths, in order
    require_close(g0d, g0, tl, "kl dmu_q (+=)");
    require_close(g1d, g1, tl, "kl dlog_sigma_q (+=)");
    require_close(g2d, g2, tl, "kl dmu_p (+=)");
    require_close(g3d, g3, tl, "kl dlog_sigma_p (+=)");
    // Only the posterior's gradients (a fixed prior).
    ops::diag_gaussian_kl_forward_backward(mu.cview(), ls.cview(), mu_p.cview(), ls_p.cview(),
                                           scale, kl.view(), g0.view(), g1.view(), {}, {});
    ops::diag_gaussian_kl_forward_backward(mud.cview(), lsd.cview(), mupd.cview(), lspd.cview(),
                                          scale, kld.view(), g0d.view(), g1d.view(), {}, {});
    require_close(g0d, g0, tl, "kl dmu_q, second accumulation");
    require_close(g2d, g2, tl, "kl dmu_p untouched");
  }
}

TEST_CASE("CUDA Probabilistic U-Net ops validate shapes before touching the device",
          "[cuda][ops]") {
  // Runs without a GPU: every call below throws before any CUDA call (placeholder pointers,
  // never dereferenced, make the views count as present).
  static float placeholder[1];
  static double placeholder_d[1];
  auto v = [](shape s) { return tensor_view<float, cuda>(placeholder, s); };
  auto c = [](shape s) { return tensor_view<const float, cuda>(placeholder, s); };
  auto vd = [](shape s) { return tensor_view<double, cuda>(placeholder_d, s); };
  CHECK_THROWS_AS(ck::relu_forward(c({2, 3}), v({3, 2})), shape_error);
  CHECK_THROWS_AS(ck::relu_backward(c({2, 3}), c({2, 4}), v({2, 3})), shape_error);
  CHECK_THROWS_WITH(ck::avg_pool2x2_forward(c({1, 2, 5, 4}), v({1, 2, 2, 2})),
                    Catch::Contains("avg_pool2x2_forward: x") && Catch::Contains("even"));
  CHECK_THROWS_AS(ck::avg_pool2x2_backward(c({1, 2, 2, 3}), v({1, 2, 4, 4})), shape_error);
  CHECK_THROWS_AS(ck::upsample_bilinear2x_forward(c({1, 2, 3, 4}), v({1, 2, 6, 7}), ops::bilinear_mode::align_corners),
                  shape_error);
  CHECK_THROWS_AS(ck::upsample_bilinear2x_backward(c({1, 2, 6, 8}), v({1, 2, 3, 3}), ops::bilinear_mode::half_pixel),
                  shape_error);
  CHECK_THROWS_WITH(ck::spatial_mean_forward(c({2, 3, 0, 4}), v({2, 3})),
                    Catch::Contains("no pixels"));
  CHECK_THROWS_AS(ck::spatial_mean_backward(c({3, 2}), v({2, 3, 4, 4})), shape_error);
  CHECK_THROWS_WITH(ck::sigmoid_cross_entropy_forward_backward(c({2, 8}), c({2, 8}), 1.0,
                                                               vd({3}), v({2, 8})),
                    Catch::Contains("sigmoid_cross_entropy_forward_backward: per_case"));
  CHECK_THROWS_WITH(ck::sigmoid_cross_entropy_forward_backward(c({2, 8}), c({2, 8}), 1.0,
                                                               vd({2}), v({2, 7})),
                    Catch::Contains("dlogits"));
  CHECK_THROWS_AS(ck::diag_gaussian_rsample_forward(c({2, 3}), c({2, 3}), c({3, 2}), v({2, 3})),
                  shape_error);
  CHECK_THROWS_WITH(ck::diag_gaussian_rsample_backward(c({2, 3}), c({2, 3}), c({2, 3}),
                                                       v({2, 3}), v({3, 3})),
                    Catch::Contains("dlog_sigma"));
  CHECK_THROWS_WITH(ck::diag_gaussian_kl_forward_backward(c({2, 3}), c({2, 3}), c({2, 3}),
                                                          c({2, 3}), 1.0, vd({2}), v({2, 4}), {},
                                                          {}, {}),
                    Catch::Contains("diag_gaussian_kl_forward_backward: dmu_q"));
}
