// The whole UNet and one whole training step on the GPU against the CPU: nn::unet<float>
// and nn::unet<float, cuda> with the same weights, the diffusion loop on each side (the
// double reference loops of tests/diffusion on the host, diffusion_runner on the device)
// drawing from the same seed, clip_grad_norm and AdamW on each. Every case also runs with
// the "device" cpu (diffusion_runner on host tensors): everywhere, so without a GPU, where
// it checks the orchestration and these tests' own logic; the cuda instances skip without
// a GPU.
//
// Tolerances (float, strict FP32 on the GPU: no TF32): the CPU and the GPU sum in
// different orders (im2col GEMM vs cuDNN engines, blocked vs tree reductions) through ~50
// layers, so errors are measured against each tensor's own largest CPU value:
//   forward f         |Δ| ≤ 1e-5 + 2e-4·max|f_cpu|
//   each parameter    |Δ| ≤ 2e-3·max|g_cpu of that tensor| + 1e-5·max|g_cpu of all|; the
//                     second term covers tensors whose exact gradient is 0 (a per-channel
//                     constant before a GroupNorm of one channel per group), where both
//                     devices hold rounding noise
//   loss              relative 1e-4; grad norm relative 1e-3
//   values after one AdamW step: |Δ| ≤ 2.5·lr + 1e-5·max|value|, because AdamW's first step
//   moves each weight by ≈ lr·g/|g|, so a gradient that is ~0 on both devices may take
//   either sign.
// A wrong kernel (transposed weight, missing bias, wrong group statistics) is off by O(1)
// of the tensor's scale, far outside these bounds.
#include "cuda_unet_util.hpp"

#include <ambiseg/diffusion/runner.hpp>
#include <ambiseg/models/diffusion_segmenter.hpp>
#include <ambiseg/optim/adamw.hpp>
#include <ambiseg/optim/clip.hpp>

#include "diffusion/reference_diffusion.hpp"

#include <limits>
#include <tuple>

using namespace ambiseg;
using namespace cuda_test;
using nn::pass;
using nn::unet_config;

namespace {

// The tolerances of the header, in one place (the float-vs-double case below shows that
// float rounding alone stays within half of them).
constexpr double fwd_rtol = 2e-4, fwd_atol = 1e-5;
constexpr double grad_rtol = 2e-3, grad_global_rtol = 1e-5;

template <class D>
void check_forward_backward(const unet_config& cfg, std::int64_t n, std::int64_t hw,
                            std::uint32_t seed) {
  nn::unet<float> cpu_net(cfg, seed);
  nn::unet<float, D> gpu_net(cfg, seed);
  perturb_and_mirror(cpu_net, gpu_net, seed + 1);
  require_params_close(cpu_net.parameters(), gpu_net.parameters(), false, 0.0, 0.0);

  const auto x = random_tensor<float>(shape{n, cfg.out_channels, hw, hw}, seed + 2);
  const auto img = random_tensor<float>(shape{n, cfg.image_channels(), hw, hw}, seed + 3);
  const auto t = random_tensor<float>(shape{n}, seed + 4, 0.0, 1.0);
  const auto df = random_tensor<float>(shape{n, cfg.out_channels, hw, hw}, seed + 5);
  const auto xd = to_dev<D>(x), imgd = to_dev<D>(img), td = to_dev<D>(t), dfd = to_dev<D>(df);

  // inference first (its own activation plan), then training
  const auto f_cpu_inf = host_copy<float, cpu>(cpu_net.forward(x.cview(), img.cview(), t.cview(), pass::inference));
  const auto f_gpu_inf = host_copy<float, D>(gpu_net.forward(xd.cview(), imgd.cview(), td.cview(), pass::inference));
  CHECK(scaled_error(f_gpu_inf, f_cpu_inf, fwd_rtol, fwd_atol) <= 1.0);

  const auto f_cpu = host_copy<float, cpu>(cpu_net.forward(x.cview(), img.cview(), t.cview(), pass::training));
  const auto f_gpu = host_copy<float, D>(gpu_net.forward(xd.cview(), imgd.cview(), td.cview(), pass::training));
  INFO("forward scaled error " << scaled_error(f_gpu, f_cpu, fwd_rtol, fwd_atol));
  CHECK(scaled_error(f_gpu, f_cpu, fwd_rtol, fwd_atol) <= 1.0);
  // the output is not trivially zero or saturated
  double peak = 0;
  for (float v : f_cpu) peak = std::max(peak, double(std::abs(v)));
  CHECK(peak > 1e-3);
  CHECK(peak < 1.0);

  cpu_net.parameters().zero_grad();
  gpu_net.parameters().zero_grad();
  cpu_net.backward(df.cview());
  gpu_net.backward(dfd.cview());
  require_params_close(cpu_net.parameters(), gpu_net.parameters(), true, grad_rtol, grad_global_rtol);

  // "+=": a second backward (after a new forward) doubles every gradient on both devices
  cpu_net.forward(x.cview(), img.cview(), t.cview(), pass::training);
  gpu_net.forward(xd.cview(), imgd.cview(), td.cview(), pass::training);
  cpu_net.backward(df.cview());
  gpu_net.backward(dfd.cview());
  require_params_close(cpu_net.parameters(), gpu_net.parameters(), true, grad_rtol, grad_global_rtol);
}

}  // namespace

TEMPLATE_TEST_CASE("unet<float, D>: forward and every parameter gradient match the CPU (tiny, 16x16)",
                   "[cuda][unet]", cpu, cuda) {
  AMBISEG_REQUIRE_GPU_IF_CUDA(TestType);
  check_forward_backward<TestType>(unet_config::tiny(), 3, 16, 21);
}

TEST_CASE("unet<float, cuda>: forward and every parameter gradient match the CPU (small, 64x64)",
          "[cuda][unet]") {
  AMBISEG_REQUIRE_GPU();
  check_forward_backward<cuda>(unet_config::small(), 2, 64, 31);
}

TEST_CASE("unet<float, cuda>: a non-finite time is reported on the device too", "[cuda][unet]") {
  AMBISEG_REQUIRE_GPU();
  nn::unet<float, cuda> net(unet_config::tiny(), 1);
  const auto x = to_dev<cuda>(random_tensor<float>(shape{2, 1, 8, 8}, 1));
  const auto img = to_dev<cuda>(random_tensor<float>(shape{2, 3, 8, 8}, 2));
  auto t_host = tensor<float>::from(shape{2}, {0.5f, std::numeric_limits<float>::quiet_NaN()});
  const auto t = to_dev<cuda>(t_host);
  CHECK_THROWS_AS(net.forward(x.cview(), img.cview(), t.cview()), value_error);
  // checked on the host copy instead of a read-back when the caller passes it
  CHECK_THROWS_AS(net.forward(x.cview(), img.cview(), t.cview(), pass::inference, t_host.cview()), value_error);
  const auto wrong = tensor<float>::from(shape{3}, {0.5f, 0.5f, 0.5f});
  CHECK_THROWS_AS(net.forward(x.cview(), img.cview(), t.cview(), pass::inference, wrong.cview()), shape_error);
  // unet_denoiser passes its host copy: a NaN time is still refused
  models::unet_denoiser<cuda> f(net, pass::inference);
  tensor<float, cuda> out(shape{2, 1, 8, 8});
  const std::vector<double> times{0.5, std::numeric_limits<double>::quiet_NaN()};
  CHECK_THROWS_AS(f(x.cview(), times, img.cview(), out.view()), value_error);
}

TEMPLATE_TEST_CASE("one training step (facade, forward, loss, backward, clip, AdamW) matches the CPU",
                   "[cuda][unet][train]", cpu, cuda) {
  using D = TestType;
  AMBISEG_REQUIRE_GPU_IF_CUDA(D);
  const unet_config cfg = unet_config::tiny();
  const std::int64_t n = 4, hw = 32;
  const double clip_norm = 1e-3;  // below the gradient norm, so clipping acts
  optim::adamw_options aopts;
  aopts.lr = 1e-3;

  nn::unet<float> cpu_net(cfg, 41);
  nn::unet<float, D> gpu_net(cfg, 41);
  perturb_and_mirror(cpu_net, gpu_net, 42);
  optim::adamw<float> cpu_opt(cpu_net.parameters(), aopts);
  optim::adamw<float, D> gpu_opt(gpu_net.parameters(), aopts);

  // masks in {−1, 1}, images in [−1, 1]
  auto x0 = random_tensor<float>(shape{n, 1, hw, hw}, 43);
  for (float& v : x0) v = v > 0 ? 1.0f : -1.0f;
  const auto img = random_tensor<float>(shape{n, cfg.image_channels(), hw, hw}, 44);
  const auto x0d = to_dev<D>(x0), imgd = to_dev<D>(img);

  using diffusion_t = diffusion::reference_config_diffusion;
  const diffusion_t policies(diffusion::make_reference_schedule(0.1));
  const diffusion::reference::reference_diffusion<diffusion_t> host_diffusion(policies);
  diffusion::diffusion_runner<diffusion_t, float, D> gpu_diffusion(policies);

  // CPU step, as train::trainer::step does it
  rng g_cpu(7);
  diffusion::reference::host_training_batch<float> cpu_batch;
  host_diffusion.draw_training_noise(x0.shape(), g_cpu, cpu_batch);
  tensor<float> t_host;
  auto cpu_denoiser = [&](tensor_view<const float> x_t, std::span<const double> t,
                          tensor_view<const float> cond, tensor_view<float> f_out) {
    t_host.resize(shape{static_cast<std::int64_t>(t.size())});
    for (std::size_t i = 0; i < t.size(); ++i) t_host[static_cast<std::int64_t>(i)] = float(t[i]);
    const auto f = cpu_net.forward(x_t, cond, t_host.cview(), pass::training);
    std::copy(f.data(), f.data() + f.numel(), f_out.data());
  };
  const double cpu_loss = host_diffusion.training_loss(cpu_denoiser, x0.cview(), img.cview(), cpu_batch);
  cpu_net.parameters().zero_grad();
  cpu_net.backward(cpu_batch.grad_f.cview());
  const double cpu_norm = optim::clip_grad_norm(cpu_net.parameters(), clip_norm);
  cpu_opt.step(cpu_net.parameters());

  // device step: the same code with D in the template arguments
  rng g_gpu(7);
  diffusion::training_batch<float, D> gpu_batch;
  gpu_diffusion.draw_training_noise(x0.shape(), g_gpu, gpu_batch);
  models::unet_denoiser<D> gpu_denoiser(gpu_net, pass::training);
  const double gpu_loss = gpu_diffusion.training_loss(gpu_denoiser, x0d.cview(), imgd.cview(), gpu_batch);
  gpu_net.parameters().zero_grad();
  gpu_net.backward(gpu_batch.grad_f.cview());
  const double gpu_norm = optim::clip_grad_norm(gpu_net.parameters(), clip_norm);
  gpu_opt.step(gpu_net.parameters());

  // the same draws
  REQUIRE(gpu_batch.t == cpu_batch.t);
  CHECK(scaled_error(host_copy(gpu_batch.eps), host_copy(cpu_batch.eps), 0.0, 0.0) <= 1.0);
  CHECK(scaled_error(host_copy(gpu_batch.x_t), host_copy(cpu_batch.x_t), 1e-6, 1e-7) <= 1.0);

  INFO("loss cpu " << cpu_loss << " gpu " << gpu_loss << "; norm cpu " << cpu_norm << " gpu " << gpu_norm);
  CHECK(std::abs(gpu_loss - cpu_loss) <= 1e-4 * std::abs(cpu_loss));
  for (std::size_t i = 0; i < cpu_batch.per_sample_loss.size(); ++i)
    CHECK(std::abs(gpu_batch.per_sample_loss[i] - cpu_batch.per_sample_loss[i]) <=
          1e-4 * std::abs(cpu_batch.per_sample_loss[i]) + 1e-9);
  CHECK(scaled_error(host_copy(gpu_batch.grad_f), host_copy(cpu_batch.grad_f), 2e-4, 1e-9) <= 1.0);
  CHECK(std::abs(gpu_norm - cpu_norm) <= 1e-3 * cpu_norm);
  CHECK(cpu_norm > clip_norm);  // so that the clipping path is the one compared
  // clipped gradients, then values after the step
  require_params_close(cpu_net.parameters(), gpu_net.parameters(), true, grad_rtol, grad_global_rtol);
  require_params_close(cpu_net.parameters(), gpu_net.parameters(), false, 1e-5, 0.0, 2.5 * aopts.lr);
}

TEST_CASE("the parity tolerances hold between a float and a double UNet on the CPU",
          "[cuda][unet][tolerance]") {
  // Runs everywhere. A GPU float result and a CPU float result each differ from the exact
  // value by float rounding; the double network stands in for the exact value here, so
  // each error must stay within half of the tolerance the GPU tests grant.
  for (const auto& [cfg, n, hw] : {std::tuple{unet_config::tiny(), 3, 16},
                                   std::tuple{unet_config::small(), 2, 64}}) {
    nn::unet<float> f_net(cfg, 61);
    nn::unet<float> scratch(cfg, 61);
    perturb_and_mirror<cpu>(f_net, scratch, 62);
    nn::unet<double> d_net(cfg, 61);
    {
      const auto fv = per_entry(f_net.parameters(), false);
      auto& store = d_net.parameters();
      for (std::size_t k = 0; k < fv.size(); ++k) {
        auto v = store.value(k);
        for (std::int64_t i = 0; i < v.numel(); ++i) v[i] = fv[k][static_cast<std::size_t>(i)];
      }
    }
    const auto x = random_tensor<float>(shape{n, cfg.out_channels, hw, hw}, 63);
    const auto img = random_tensor<float>(shape{n, cfg.image_channels(), hw, hw}, 64);
    const auto t = random_tensor<float>(shape{n}, 65, 0.0, 1.0);
    const auto df = random_tensor<float>(shape{n, cfg.out_channels, hw, hw}, 66);
    auto widen = [](const tensor<float>& a) {
      tensor<double> b(a.shape());
      for (std::int64_t i = 0; i < a.numel(); ++i) b[i] = a[i];
      return b;
    };
    const auto ff = host_copy<float, cpu>(f_net.forward(x.cview(), img.cview(), t.cview(), pass::training));
    const auto fd = host_copy<double, cpu>(
        d_net.forward(widen(x).cview(), widen(img).cview(), widen(t).cview(), pass::training));
    const double fwd_err = scaled_error(widen(ff), fd, fwd_rtol / 2, fwd_atol / 2);
    INFO("forward: float vs double, scaled error " << fwd_err << " of half the tolerance");
    CHECK(fwd_err <= 1.0);
    f_net.parameters().zero_grad();
    d_net.parameters().zero_grad();
    f_net.backward(df.cview());
    d_net.backward(widen(df).cview());
    require_params_close(d_net.parameters(), f_net.parameters(), true, grad_rtol / 2,
                         grad_global_rtol / 2);
  }
}
