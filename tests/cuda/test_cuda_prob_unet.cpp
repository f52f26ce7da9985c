// The Probabilistic U-Net on CUDA against the CPU: one training step (report, every
// parameter gradient, BatchNorm running statistics) and an inference draw, in float (the
// CUDA convolutions are cuDNN's, float only), from the same weights and noise.
#include "cuda_test_util.hpp"

#include <ambiseg/models/prob_unet.hpp>

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
void check_step_parity(double atol, double rtol) {
  models::prob_unet_config c;
  c.net.num_filters = {4, 6, 8};
  c.net.latent_dim = 3;
  models::prob_unet_networks<T, cpu> host(c.net, 2);
  models::prob_unet_networks<T, cuda> dev(c.net, 2);
  host.allocate(7);
  dev.allocate(7);  // the same seeded draws, made on the host

  const auto images = random_tensor<T>(shape{3, 2, 16, 16}, 1);
  auto masks = random_tensor<T>(shape{3, 1, 16, 16}, 2);
  for (auto& m : masks) m = m > 0 ? T(1) : T(-1);
  const auto eps = random_tensor<T>(shape{3, 3}, 3, -2, 2);
  const auto images_d = to_device(images), masks_d = to_device(masks), eps_d = to_device(eps);

  models::prob_unet_step<T, cpu> host_step;
  models::prob_unet_step<T, cuda> dev_step;
  tensor<double> report(shape{4});
  tensor<double, cuda> report_d(shape{4});
  host.params.zero_grad();
  dev.params.zero_grad();
  host_step.loss_and_gradient(host, c.beta, images.cview(), masks.cview(), eps.cview(), report.view());
  dev_step.loss_and_gradient(dev, c.beta, images_d.cview(), masks_d.cview(), eps_d.cview(), report_d.view());
  const tol<double> report_tol{atol, rtol};
  require_close(to_host(report_d), report, report_tol, "loss report");
  const tol<T> t{atol, rtol};
  require_close(host_copy(dev.params.flat_grads()), host_copy(host.params.flat_grads()), t,
                "parameter gradients");
  require_close(host_copy(dev.buffers.flat_values()), host_copy(host.buffers.flat_values()), t,
                "BatchNorm running statistics");

  host_step.encode(host, images.cview());
  dev_step.encode(dev, images_d.cview());
  require_close(host_copy(dev_step.draw(dev, eps_d.cview())), host_copy(host_step.draw(host, eps.cview())), t,
                "inference logits");
}

}  // namespace

TEST_CASE("cuda: prob_unet_aa step and draw match the CPU (float)", "[cuda][models][prob_unet]") {
  AMBISEG_REQUIRE_GPU();
  check_step_parity<float>(1e-4, 1e-3);
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
