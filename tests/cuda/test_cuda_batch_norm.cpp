// CUDA batch norm (ops/cuda/batch_norm.cuh) against the CPU op: training forward with its
// running statistics over two steps, inference (also in place), backward with optional
// outputs and dx over dy, through ops/cuda/api.hpp and through the device-generic front end.
// Shapes cover both loop forms of the kernels: planes at least a block wide (row by row) and
// small planes or [N, C] (one flat range). Parameter gradients start non-zero so that "+="
// is checked. Skips without a GPU, except the validation case.
#include "cuda_test_util.hpp"

#include <ambiseg/ops/all.hpp>
#include <ambiseg/ops/cuda/api.hpp>

using namespace ambiseg;
using namespace cuda_test;
namespace ck = ambiseg::ops::cuda_kernels;

TEMPLATE_TEST_CASE("CUDA batch norm matches the CPU op", "[cuda][batch_norm]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  // Both devices sum in double; what remains is rounding in T and FMA contraction.
  const tol<T> tl = std::is_same_v<T, float> ? tol<T>{1e-4, 1e-4} : tol<T>{1e-11, 1e-11};
  for (const shape s : {shape{2, 8, 6, 7}, shape{3, 5, 20, 17}, shape{37, 6}, shape{2, 3, 1, 1}}) {
    INFO("x " << s.to_string());
    const std::int64_t c = s[1];
    const shape cs{c};
    auto x = random_tensor<T>(s, 50, -2, 3);  // a non-zero mean
    auto x2 = random_tensor<T>(s, 51, -1, 5);
    auto gamma = random_tensor<T>(cs, 52, 0.5, 1.5);
    auto beta = random_tensor<T>(cs, 53);
    auto dy = random_tensor<T>(s, 54);
    auto rm = random_tensor<T>(cs, 55), rv = random_tensor<T>(cs, 56, 0.5, 2);
    auto xd = to_device(x), x2d = to_device(x2), gd = to_device(gamma), bd = to_device(beta);
    auto dyd = to_device(dy), rmd = to_device(rm), rvd = to_device(rv);

    tensor<T> y(s), mean(cs), rstd(cs);
    tensor<T, cuda> yd(s), meand(cs), rstdd(cs);
    for (int step = 0; step < 2; ++step) {  // the second step starts from updated running stats
      INFO("training step " << step);
      const auto& xs = step == 0 ? x : x2;
      const auto& xsd = step == 0 ? xd : x2d;
      ops::batch_norm_forward_training(xs.cview(), gamma.cview(), beta.cview(), 1e-5, 0.1,
                                       y.view(), mean.view(), rstd.view(), rm.view(), rv.view());
      ck::batch_norm_forward_training(xsd.cview(), gd.cview(), bd.cview(), 1e-5, 0.1, yd.view(),
                                      meand.view(), rstdd.view(), rmd.view(), rvd.view());
      require_close(yd, y, tl, "batch norm y");
      require_close(meand, mean, tl, "batch norm saved_mean");
      require_close(rstdd, rstd, tl, "batch norm saved_rstd");
      require_close(rmd, rm, tl, "batch norm running_mean");
      require_close(rvd, rv, tl, "batch norm running_var");
    }

    // backward of the second step: every output, then dx alone over dy, then dγ/dβ alone
    tensor<T> dx(s);
    tensor<T, cuda> dxd(s);
    auto dgamma = random_tensor<T>(cs, 57), dbeta = random_tensor<T>(cs, 58);
    auto dgd = to_device(dgamma), dbd = to_device(dbeta);
    ops::batch_norm_backward(x2.cview(), gamma.cview(), mean.cview(), rstd.cview(), dy.cview(),
                             dx.view(), dgamma.view(), dbeta.view());
    ck::batch_norm_backward(x2d.cview(), gd.cview(), meand.cview(), rstdd.cview(), dyd.cview(),
                            dxd.view(), dgd.view(), dbd.view());
    require_close(dxd, dx, tl, "batch norm dx");
    require_close(dgd, dgamma, tl, "batch norm dgamma (+=)");
    require_close(dbd, dbeta, tl, "batch norm dbeta (+=)");
    auto inplace = to_device(dy);
    ck::batch_norm_backward(x2d.cview(), gd.cview(), meand.cview(), rstdd.cview(),
                            inplace.cview(), inplace.view(), {}, {});
    require_close(inplace, dx, tl, "batch norm dx over dy");
    ck::batch_norm_backward(x2d.cview(), gd.cview(), meand.cview(), rstdd.cview(), dyd.cview(),
                            tensor_view<T, cuda>{}, dgd.view(), dbd.view());
    ops::batch_norm_backward(x2.cview(), gamma.cview(), mean.cview(), rstd.cview(), dy.cview(),
                             tensor_view<T>{}, dgamma.view(), dbeta.view());
    require_close(dgd, dgamma, tl, "batch norm dgamma without dx");
    require_close(dbd, dbeta, tl, "batch norm dbeta without dx");

    // inference with the running statistics of the two steps; then in place on the GPU
    ops::batch_norm_forward_inference(x.cview(), gamma.cview(), beta.cview(), rm.cview(),
                                      rv.cview(), 1e-3, y.view());
    ck::batch_norm_forward_inference(xd.cview(), gd.cview(), bd.cview(), rmd.cview(), rvd.cview(),
                                     1e-3, yd.view());
    require_close(yd, y, tl, "batch norm inference y");
    auto xin = to_device(x);
    ck::batch_norm_forward_inference(xin.cview(), gd.cview(), bd.cview(), rmd.cview(),
                                     rvd.cview(), 1e-3, xin.view());
    require_close(xin, y, tl, "batch norm inference in place");
  }
}

TEMPLATE_TEST_CASE("front ends on cuda: batch norm dispatches to the CUDA kernels",
                   "[cuda][front][batch_norm]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const tol<T> tl = std::is_same_v<T, float> ? tol<T>{1e-4, 1e-4} : tol<T>{1e-11, 1e-11};
  const shape s{4, 3, 5, 5}, cs{3};
  auto x = random_tensor<T>(s, 60, -1, 2), dy = random_tensor<T>(s, 61);
  auto gamma = random_tensor<T>(cs, 62), beta = random_tensor<T>(cs, 63);
  auto rm = random_tensor<T>(cs, 64), rv = random_tensor<T>(cs, 65, 0.5, 2);
  auto xd = to_device(x), dyd = to_device(dy), gd = to_device(gamma), bd = to_device(beta);
  auto rmd = to_device(rm), rvd = to_device(rv);
  tensor<T> y(s), mean(cs), rstd(cs), dx(s), dgamma = tensor<T>::zeros(cs), dbeta = tensor<T>::zeros(cs);
  tensor<T, cuda> yd(s), meand(cs), rstdd(cs), dxd(s);
  auto dgd = to_device(dgamma), dbd = to_device(dbeta);
  ops::batch_norm_forward_training(x.cview(), gamma.cview(), beta.cview(), 1e-3, 0.01, y.view(),
                                   mean.view(), rstd.view(), rm.view(), rv.view());
  ops::batch_norm_forward_training(xd.cview(), gd.cview(), bd.cview(), 1e-3, 0.01, yd.view(),
                                   meand.view(), rstdd.view(), rmd.view(), rvd.view());
  require_close(yd, y, tl, "front end training y");
  require_close(rvd, rv, tl, "front end running_var");
  ops::batch_norm_backward(x.cview(), gamma.cview(), mean.cview(), rstd.cview(), dy.cview(),
                           dx.view(), dgamma.view(), dbeta.view());
  ops::batch_norm_backward(xd.cview(), gd.cview(), meand.cview(), rstdd.cview(), dyd.cview(),
                           dxd.view(), dgd.view(), dbd.view());
  require_close(dxd, dx, tl, "front end dx");
  require_close(dgd, dgamma, tl, "front end dgamma");
  require_close(dbd, dbeta, tl, "front end dbeta");
  // training without running statistics, then inference
  ops::batch_norm_forward_training(xd.cview(), gd.cview(), bd.cview(), 1e-3, 0.01, yd.view(),
                                   meand.view(), rstdd.view(), {}, {});
  require_close(yd, y, tl, "front end training y, stats not tracked");
  ops::batch_norm_forward_inference(x.cview(), gamma.cview(), beta.cview(), rm.cview(), rv.cview(),
                                    1e-3, y.view());
  ops::batch_norm_forward_inference(xd.cview(), gd.cview(), bd.cview(), rmd.cview(), rvd.cview(),
                                    1e-3, yd.view());
  require_close(yd, y, tl, "front end inference y");
}

TEST_CASE("CUDA batch norm validates its arguments before touching the device",
          "[cuda][batch_norm][errors]") {
  // Empty device tensors carry shapes only; every call below throws in the checks.
  const tensor_view<const float, cuda> x(nullptr, shape{1, 3, 1, 1}), g(nullptr, shape{3}),
      g_bad(nullptr, shape{4}), x4(nullptr, shape{2, 3, 4, 4});
  const tensor_view<float, cuda> y(nullptr, shape{1, 3, 1, 1}), m(nullptr, shape{3}),
      y4(nullptr, shape{2, 3, 4, 4});
  CHECK_THROWS_WITH(ck::batch_norm_forward_training<float>(x, g, g, 1e-5, 0.1, y, m, m, m, m),
                    Catch::Contains("batch_norm_forward_training") &&
                        Catch::Contains("more than 1 value per channel"));
  CHECK_THROWS_AS(ck::batch_norm_forward_training<float>(x4, g, g, 1e-5, 2.0, y4, m, m, m, m),
                  value_error);
  CHECK_THROWS_WITH(ck::batch_norm_forward_inference<float>(x4, g, g, g, g_bad, 1e-5, y4),
                    Catch::Contains("batch_norm_forward_inference: running_var"));
  CHECK_THROWS_WITH(ck::batch_norm_backward<float>(x4, g_bad, g, g, x4, y4, {}, {}),
                    Catch::Contains("batch_norm_backward: gamma"));
}
