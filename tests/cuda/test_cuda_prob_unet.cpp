// The Probabilistic U-Net variants (AA, AA mix, FC, FC mix) on CUDA against the CPU: one training step (report, every
// parameter gradient, BatchNorm running statistics) and an inference draw, in float (the
// CUDA convolutions are cuDNN's, float only), from the same weights and noise.
#include "cuda_test_util.hpp"

#include <ambiseg/models/prob_unet.hpp>
#include <ambiseg/ops/tile.hpp>

using namespace cuda_test;

namespace {

// A host copy of a view on either device.
template <class V>
auto host_copy(V v) {
  using T = std::remove_const_t<std::remove_pointer_t<decltype(v.data())>>;
  tensor<T> h(v.shape());
  device_memory<typename V::device_type>::copy_to_host(h.data(), v.data(), sizeof(T) * static_cast<std::size_t>(v.numel()));
  return h;
}

template <class T>
void check_step_parity(const models::prob_unet_variant& v, double atol, double rtol) {
  INFO(v.kind);
  auto c = models::prob_unet_config::preset("example", v);
  c.net.num_filters = {4, 6, 8};
  c.net.latent_dim = 3;
  if (v.mixture) {
    c.net.n_components = 3;
    c.mc_samples = 16;
    c.temperature = 0.5;
  }
  const std::int64_t k = c.net.n_components, s = c.mc_samples;
  models::prob_unet_networks<T, cpu> host(c.net, 2);
  models::prob_unet_networks<T, cuda> dev(c.net, 2);
  host.allocate(7);
  dev.allocate(7);  // the same seeded draws, made on the host

  const auto images = random_tensor<T>(shape{3, 2, 16, 16}, 1);
  auto masks = random_tensor<T>(shape{3, 1, 16, 16}, 2);
  for (auto& m : masks) m = m > 0 ? T(1) : T(-1);
  const auto eps = random_tensor<T>(shape{3, k, 3}, 3, -2, 2);
  const auto gumbel = random_tensor<T>(shape{3, k}, 4, -1, 3);
  const auto kl_eps = random_tensor<T>(shape{s, 3, k, 3}, 5, -2, 2);
  const auto kl_gumbel = random_tensor<T>(shape{s, 3, k}, 6, -1, 3);
  const auto images_d = to_device(images), masks_d = to_device(masks), eps_d = to_device(eps);
  const auto gumbel_d = to_device(gumbel), kl_eps_d = to_device(kl_eps), kl_gumbel_d = to_device(kl_gumbel);
  models::prob_unet_noise<T, cpu> noise{eps.cview(), {}, {}, {}};
  models::prob_unet_noise<T, cuda> noise_d{eps_d.cview(), {}, {}, {}};
  if (v.mixture) {
    noise = {eps.cview(), gumbel.cview(), kl_eps.cview(), kl_gumbel.cview()};
    noise_d = {eps_d.cview(), gumbel_d.cview(), kl_eps_d.cview(), kl_gumbel_d.cview()};
  }

  models::prob_unet_step<T, cpu> host_step;
  models::prob_unet_step<T, cuda> dev_step;
  tensor<double> report(shape{4});
  tensor<double, cuda> report_d(shape{4});
  host.params.zero_grad();
  dev.params.zero_grad();
  const models::prob_unet_step_options o{c.beta, c.temperature};
  host_step.loss_and_gradient(host, o, images.cview(), masks.cview(), noise, report.view());
  dev_step.loss_and_gradient(dev, o, images_d.cview(), masks_d.cview(), noise_d, report_d.view());
  const tol<double> report_tol{atol, rtol};
  require_close(to_host(report_d), report, report_tol, "loss report");
  const tol<T> t{atol, rtol};
  require_close(host_copy(dev.params.flat_grads()), host_copy(host.params.flat_grads()), t,
                "parameter gradients");
  require_close(host_copy(dev.buffers.flat_values()), host_copy(host.buffers.flat_values()), t,
                "BatchNorm running statistics");

  host_step.encode(host, images.cview());
  dev_step.encode(dev, images_d.cview());
  const auto g = v.mixture ? gumbel.cview() : tensor_view<const T, cpu>{};
  const auto g_d = v.mixture ? gumbel_d.cview() : tensor_view<const T, cuda>{};
  require_close(host_copy(dev_step.draw(dev, eps_d.cview(), g_d)), host_copy(host_step.draw(host, eps.cview(), g)),
                t, "inference logits");
}

}  // namespace

TEST_CASE("cuda: the prob_unet steps and draws match the CPU (float)", "[cuda][models][prob_unet]") {
  AMBISEG_REQUIRE_GPU();
  for (const auto* v : {&models::prob_unet_aa_variant, &models::prob_unet_aa_mix_variant,
                        &models::prob_unet_fc_variant, &models::prob_unet_fc_mix_variant})
    check_step_parity<float>(*v, 1e-4, 1e-3);
}

TEST_CASE("cuda: affine_forward and combine_case_losses match the CPU", "[cuda][ops][affine]") {
  AMBISEG_REQUIRE_GPU();
  const auto x = random_tensor<float>(shape{4, 5}, 9);
  tensor<float> y(x.shape());
  ops::affine_forward(x.cview(), 0.5, 0.5, y.view());
  const auto xd = to_device(x);
  tensor<float, cuda> yd(x.shape());
  ops::affine_forward(xd.cview(), 0.5, 0.5, yd.view());
  require_close(to_host(yd), y, default_tol<float>(), "affine");

  const auto a = random_tensor<double>(shape{5}, 10), b = random_tensor<double>(shape{5}, 11);
  tensor<double> r(shape{6});
  ops::combine_case_losses<cpu>(a.cview(), b.cview(), 10.0, r.view());
  const auto ad = to_device(a), bd = to_device(b);
  tensor<double, cuda> rd(shape{6});
  ops::combine_case_losses<cuda>(ad.cview(), bd.cview(), 10.0, rd.view());
  require_close(to_host(rd), r, default_tol<double>(), "combine_case_losses");
}

TEST_CASE("cuda: tile_rows forward and backward match the CPU", "[cuda][ops][tile]") {
  AMBISEG_REQUIRE_GPU();
  const auto x = random_tensor<float>(shape{3, 2, 4}, 12);
  tensor<float> y(shape{15, 2, 4});
  ops::tile_rows_forward(x.cview(), y.view());
  const auto xd = to_device(x);
  tensor<float, cuda> yd(y.shape());
  ops::tile_rows_forward(xd.cview(), yd.view());
  require_close(to_host(yd), y, tol<float>{0.0, 0.0}, "tile forward");

  const auto dy = random_tensor<double>(shape{15, 2, 4}, 13);
  auto dx = random_tensor<double>(shape{3, 2, 4}, 14);
  auto dxd = to_device(dx);
  ops::tile_rows_backward(dy.cview(), -0.25, dx.view());
  ops::tile_rows_backward(to_device(dy).cview(), -0.25, dxd.view());
  require_close(to_host(dxd), dx, default_tol<double>(), "tile backward");
}
