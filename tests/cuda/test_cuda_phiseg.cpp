// PHiSeg on CUDA against the CPU: one training step (report, every parameter gradient,
// BatchNorm running statistics after both passes) and a generation draw, in float, from the
// same weights and noise; and its ops (softplus, the σ-parametrised sample and KL).
#include "cuda_test_util.hpp"

#include <ambiseg/models/phiseg.hpp>

using namespace cuda_test;

namespace {

template <class V>
auto host_copy(V v) {
  using T = std::remove_const_t<std::remove_pointer_t<decltype(v.data())>>;
  tensor<T> h(v.shape());
  device_memory<typename V::device_type>::copy_to_host(h.data(), v.data(), sizeof(T) * static_cast<std::size_t>(v.numel()));
  return h;
}

}  // namespace

TEST_CASE("cuda: the phiseg step and draw match the CPU (float)", "[cuda][models][phiseg]") {
  AMBISEG_REQUIRE_GPU();
  models::phiseg_config c;
  c.net.n0 = 3;
  c.net.latent_levels = 2;
  c.net.resolution_levels = 3;
  models::phiseg_networks<float, cpu> host(c.net, 1);
  models::phiseg_networks<float, cuda> dev(c.net, 1);
  host.allocate(11);
  dev.allocate(11);

  const auto images = random_tensor<float>(shape{3, 1, 32, 24}, 1);
  auto masks = random_tensor<float>(shape{3, 1, 32, 24}, 2);
  for (auto& m : masks) m = m > 0 ? 1.0f : -1.0f;
  std::vector<tensor<float>> eps, gen;
  std::vector<tensor<float, cuda>> eps_d, gen_d;
  models::level_tensors<float, cpu> eps_v, gen_v;
  models::level_tensors<float, cuda> eps_dv, gen_dv;
  for (int l = 0; l < 2; ++l) {
    const shape s{3, 2, 32 >> (l + 1), 24 >> (l + 1)};
    eps.push_back(random_tensor<float>(s, 10 + l, -2, 2));
    gen.push_back(random_tensor<float>(s, 20 + l, -2, 2));
  }
  for (int l = 0; l < 2; ++l) {
    eps_d.push_back(to_device(eps[l]));
    gen_d.push_back(to_device(gen[l]));
  }
  for (int l = 0; l < 2; ++l) {
    eps_v.push_back(eps[l].cview());
    gen_v.push_back(gen[l].cview());
    eps_dv.push_back(eps_d[l].cview());
    gen_dv.push_back(gen_d[l].cview());
  }
  const auto images_d = to_device(images), masks_d = to_device(masks);
  models::phiseg_step<float, cpu> host_step;
  models::phiseg_step<float, cuda> dev_step;
  tensor<double> report(shape{4});
  tensor<double, cuda> report_d(shape{4});
  host.params.zero_grad();
  dev.params.zero_grad();
  host_step.loss_and_gradient(host, c, images.cview(), masks.cview(), eps_v, gen_v, report.view());
  dev_step.loss_and_gradient(dev, c, images_d.cview(), masks_d.cview(), eps_dv, gen_dv, report_d.view());
  require_close(to_host(report_d), report, tol<double>{1e-4, 1e-3}, "loss report");
  const tol<float> t{1e-4, 1e-3};
  // Per parameter tensor, ‖g_cuda − g_cpu‖ ≤ 1e-3·‖g_cpu‖: the deepest layers' gradients
  // pass through a dozen BatchNorms over few pixels, where float sums in another order
  // differ in single elements by a few 1e-3 (seen in the emulator).
  const auto hg = host_copy(host.params.flat_grads()), dg = host_copy(dev.params.flat_grads());
  for (std::size_t i = 0; i < host.params.size(); ++i) {
    const auto v = host.params.grad(i);
    const auto off = v.data() - host.params.flat_grads().data();
    double diff = 0, norm = 0;
    for (std::int64_t k = 0; k < v.numel(); ++k) {
      diff += (double(hg[off + k]) - dg[off + k]) * (double(hg[off + k]) - dg[off + k]);
      norm += double(hg[off + k]) * hg[off + k];
    }
    INFO(host.params.info(i).name << ": |difference| " << std::sqrt(diff) << ", |gradient| " << std::sqrt(norm));
    CHECK(std::sqrt(diff) <= 1e-3 * std::sqrt(norm) + 1e-7);
  }
  require_close(host_copy(dev.buffers.flat_values()), host_copy(host.buffers.flat_values()), t,
                "BatchNorm running statistics");
  host_step.encode(host, images.cview());
  dev_step.encode(dev, images_d.cview());
  require_close(host_copy(dev_step.draw(dev, eps_dv)), host_copy(host_step.draw(host, eps_v)), t, "draw");
}

TEMPLATE_TEST_CASE("cuda: softplus and the σ-parametrised Gaussian ops match the CPU", "[cuda][ops][phiseg]", float,
                   double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const shape s{3, 2, 5, 7};
  const auto x = random_tensor<T>(s, 40, -30, 30), dy = random_tensor<T>(s, 41);
  tensor<T> y(s), dx(s);
  tensor<T, cuda> yd(s), dxd(s);
  const auto xd = to_device(x), dyd = to_device(dy);
  ops::softplus_forward(x.cview(), y.view());
  ops::softplus_forward(xd.cview(), yd.view());
  require_close(yd, y, default_tol<T>(), "softplus");
  ops::softplus_backward(x.cview(), dy.cview(), dx.view());
  ops::softplus_backward(xd.cview(), dyd.cview(), dxd.view());
  require_close(dxd, dx, default_tol<T>(), "softplus backward");

  const auto mu_q = random_tensor<T>(s, 42), mu_p = random_tensor<T>(s, 43), eps = random_tensor<T>(s, 44);
  const auto sq = random_tensor<T>(s, 45, 0.2, 2), sp = random_tensor<T>(s, 46, 0.2, 2);
  tensor<T> z(s);
  tensor<T, cuda> zd(s);
  const auto mu_qd = to_device(mu_q), mu_pd = to_device(mu_p), epsd = to_device(eps), sqd = to_device(sq),
             spd = to_device(sp);
  ops::sigma_gaussian_rsample_forward(mu_q.cview(), sq.cview(), eps.cview(), z.view());
  ops::sigma_gaussian_rsample_forward(mu_qd.cview(), sqd.cview(), epsd.cview(), zd.view());
  require_close(zd, z, default_tol<T>(), "sigma rsample");
  auto g0 = random_tensor<T>(s, 47), g1 = random_tensor<T>(s, 48);
  auto g0d = to_device(g0), g1d = to_device(g1);
  ops::sigma_gaussian_rsample_backward(eps.cview(), dy.cview(), g0.view(), g1.view());
  ops::sigma_gaussian_rsample_backward(epsd.cview(), dyd.cview(), g0d.view(), g1d.view());
  require_close(g0d, g0, default_tol<T>(), "sigma rsample dmu");
  require_close(g1d, g1, default_tol<T>(), "sigma rsample dsigma");

  tensor<double> kl(shape{3});
  tensor<double, cuda> kld(shape{3});
  auto d0 = random_tensor<T>(s, 50), d1 = random_tensor<T>(s, 51), d2 = random_tensor<T>(s, 52),
       d3 = random_tensor<T>(s, 53);
  auto d0d = to_device(d0), d1d = to_device(d1), d2d = to_device(d2), d3d = to_device(d3);
  ops::gaussian_kl_sigma_forward_backward(mu_q.cview(), sq.cview(), mu_p.cview(), sp.cview(), 1e-10, 0.7, kl.view(),
                                          d0.view(), d1.view(), d2.view(), d3.view());
  ops::gaussian_kl_sigma_forward_backward(mu_qd.cview(), sqd.cview(), mu_pd.cview(), spd.cview(), 1e-10, 0.7,
                                          kld.view(), d0d.view(), d1d.view(), d2d.view(), d3d.view());
  require_close(to_host(kld), kl, default_tol<double>(), "kl");
  require_close(d0d, d0, default_tol<T>(), "kl dmu_q");
  require_close(d1d, d1, default_tol<T>(), "kl dsigma_q");
  require_close(d2d, d2, default_tol<T>(), "kl dmu_p");
  require_close(d3d, d3, default_tol<T>(), "kl dsigma_p");
}
