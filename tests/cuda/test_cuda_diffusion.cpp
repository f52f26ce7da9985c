// The one diffusion loop (diffusion_runner, diffusion/runner.hpp; cuda_diffusion of
// diffusion/cuda.hpp on the GPU) against the double reference loops of the tests
// (tests/diffusion/reference_diffusion.hpp): every
// per-element entry point, the loss with dL/df and the per-sample losses, and sampling (DDIM
// and DDPM) from the same seed, with an analytic device network and with the UNet. Each
// case runs with D = cpu (everywhere: the runner on host tensors, in the GPU's float
// arithmetic, which also checks the tolerances below) and D = cuda (skips without a GPU);
// the validation case runs everywhere.
//
// Tolerances: the elementwise maths is evaluated in double on the host and in T on the
// GPU with coefficients rounded to T. Coefficients such as 1/α reach ~10³ near t = 1, and
// an output near zero can be the difference of two such terms, so the elementwise results
// are compared against the tensor's largest value: |Δ| ≤ 2e-6·max|cpu| for float, 1e-13
// for double (predict_eps, through 1/σ: 10×). The loss is evaluated per element in double
// on both and only summed in another order: relative 1e-12 for float and double inputs
// alike; dL/df is one double product rounded to T, |Δ| ≤ 2.4e-7·max|cpu| (float) and
// 1e-14 (double). Sampling with tanh(x_t + cond) as network: 2e-5 for float after 8 steps
// (each step's rounding passes through a contraction), 1e-12 for double. Sampling with the
// UNet: 1e-3 of the largest |x̂0|.
#include "cuda_unet_util.hpp"

#include <ambiseg/diffusion/cuda.hpp>
#include <ambiseg/diffusion/distillation.hpp>
#include <ambiseg/diffusion/runner.hpp>
#include <ambiseg/models/diffusion_segmenter.hpp>
#include <ambiseg/ops/all.hpp>

#include "diffusion/reference_diffusion.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

using namespace ambiseg;
using namespace cuda_test;

namespace {

template <class T, class D>
void require_peak_close(const tensor<T, D>& gpu, const tensor<T>& cpu, double rtol,
                        const char* what) {
  const double err = scaled_error(host_copy(gpu), cpu, rtol, 0.0);
  INFO(what << ": error / (rtol·max|cpu|) = " << err);
  CHECK(err <= 1.0);
}

// f = tanh(x_t + cond) on either device through the ops front ends: cheap, smooth, and it
// reads cond, so a wrongly repeated conditioning row changes the result.
template <class T, class D>
struct tanh_net {
  tensor<T, D> sum;
  void operator()(tensor_view<const T, D> x_t, std::span<const double>, tensor_view<const T, D> cond,
                  tensor_view<T, D> f_out) {
    sum.resize(x_t.shape());
    ops::add_forward(x_t, cond, sum.view());
    ops::tanh_forward(sum.cview(), f_out);
  }
};

// The values of a double tensor in T (the host reference's results against a T device).
template <class T>
tensor<T> converted(const tensor<double>& a) {
  tensor<T> r(a.shape());
  for (std::int64_t i = 0; i < a.numel(); ++i) r[i] = static_cast<T>(a[i]);
  return r;
}

std::vector<double> times(std::int64_t b, std::uint32_t seed, double lo, double hi) {
  auto r = random_tensor<double>(shape{b}, seed, lo, hi);
  return std::vector<double>(r.data(), r.data() + b);
}

template <class Diffusion, class T, class D>
void check_elementwise(const Diffusion& policies) {
  const diffusion::reference::reference_diffusion<Diffusion> host(policies);
  diffusion::diffusion_runner<Diffusion, T, D> dev(policies);
  const shape s{5, 1, 7, 9};
  const auto x0 = random_tensor<T>(s, 1), eps = random_tensor<T>(s, 2, -3, 3);
  const auto f = random_tensor<T>(s, 3), x_t = random_tensor<T>(s, 4, -2, 2);
  const auto x0d = to_dev<D>(x0), epsd = to_dev<D>(eps), fd = to_dev<D>(f), x_td = to_dev<D>(x_t);
  const std::vector<double> t = times(5, 5, 0.02, 0.98);
  const double rtol = std::is_same_v<T, float> ? 2e-6 : 1e-13;
  tensor<T> out(s);
  tensor<T, D> outd(s);

  host.add_noise(x0.cview(), t, eps.cview(), out.view());
  dev.add_noise(x0d.cview(), t, epsd.cview(), outd.view());
  require_peak_close(outd, out, rtol, "add_noise");
  host.target(x0.cview(), t, eps.cview(), out.view());
  dev.target(x0d.cview(), t, epsd.cview(), outd.view());
  require_peak_close(outd, out, rtol, "target");
  host.predict_x0(x_t.cview(), t, f.cview(), out.view());
  dev.predict_x0(x_td.cview(), t, fd.cview(), outd.view());
  require_peak_close(outd, out, rtol, "predict_x0");
  host.predict_eps(x_t.cview(), t, f.cview(), out.view());
  dev.predict_eps(x_td.cview(), t, fd.cview(), outd.view());
  require_peak_close(outd, out, 10 * rtol, "predict_eps");  // 1/σ amplifies

  tensor<T> grad(s);
  tensor<T, D> gradd(s);
  std::vector<double> per(5), perd(5);
  const double l = host.loss(x0.cview(), x_t.cview(), t, f.cview(), grad.view(), per);
  const double ld = dev.loss(x0d.cview(), x_td.cview(), t, fd.cview(), gradd.view(), perd);
  CHECK(std::abs(ld - l) <= 1e-12 * std::abs(l));
  for (int i = 0; i < 5; ++i) CHECK(std::abs(perd[i] - per[i]) <= 1e-12 * std::abs(per[i]));
  require_peak_close(gradd, grad, std::is_same_v<T, float> ? 2.4e-7 : 1e-14, "loss grad_f");
  // without the gradient, the same value
  CHECK(dev.loss(x0d.cview(), x_td.cview(), t, fd.cview()) == ld);
}

}  // namespace

using f_cpu = on_device<float, cpu>;
using d_cpu = on_device<double, cpu>;
using f_cuda = on_device<float, cuda>;
using d_cuda = on_device<double, cuda>;

TEMPLATE_TEST_CASE("diffusion_runner: noising, targets, predictions and the loss match the host",
                   "[cuda][diffusion]", f_cpu, d_cpu, f_cuda, d_cuda) {
  using T = typename TestType::value;
  using D = typename TestType::device;
  AMBISEG_REQUIRE_GPU_IF_CUDA(D);
  using S = diffusion::reference_schedule;  // clipped: α, σ stay away from 0
  using W = diffusion::snr_plus_one_weighting;
  const S sched = diffusion::make_reference_schedule(0.1);
  check_elementwise<diffusion::reference_config_diffusion, T, D>(diffusion::reference_config_diffusion(sched));
  check_elementwise<diffusion::paper_diffusion, T, D>(diffusion::paper_diffusion(sched));
  check_elementwise<diffusion::gaussian_diffusion<S, diffusion::eps_prediction, W>, T, D>(
      diffusion::gaussian_diffusion<S, diffusion::eps_prediction, W>(sched));
  check_elementwise<diffusion::gaussian_diffusion<S, diffusion::v_prediction, W>, T, D>(
      diffusion::gaussian_diffusion<S, diffusion::v_prediction, W>(sched));
}

TEMPLATE_TEST_CASE("diffusion_runner: sampling with an analytic network matches the host "
                   "(DDIM, DDPM, clipping, conditioning per chain)",
                   "[cuda][diffusion]", f_cpu, d_cpu, f_cuda, d_cuda) {
  using T = typename TestType::value;
  using D = typename TestType::device;
  AMBISEG_REQUIRE_GPU_IF_CUDA(D);
  using Diff = diffusion::reference_config_diffusion;
  const Diff policies(diffusion::make_reference_schedule(0.1));
  const diffusion::reference::reference_diffusion<Diff> host(policies);
  diffusion::diffusion_runner<Diff, T, D> dev(policies);
  const auto images = random_tensor<T>(shape{3, 1, 6, 5}, 11);
  const auto imagesd = to_dev<D>(images);
  const tol<T> tl = std::is_same_v<T, float> ? tol<T>{2e-5, 2e-5} : tol<T>{1e-12, 1e-12};
  for (bool clip : {false, true}) {
    diffusion::sampling_options opts;
    opts.steps = 8;
    opts.clip_x0 = clip;
    tanh_net<T, cpu> host_net;
    tanh_net<T, D> dev_net;
    {
      rng g1(3), g2(3);
      const auto a = host.sample(host_net, diffusion::ddim_sampler{}, images, 4, g1, opts);
      const auto b = dev.sample(dev_net, diffusion::ddim_sampler{}, imagesd.cview(), 4, g2, opts);
      require_close(host_copy(b), a, tl, "ddim");
      CHECK(g1() == g2());  // the same number of draws
    }
    {
      rng g1(4), g2(4);
      const auto a = host.sample(host_net, diffusion::ddpm_large{}, images, 4, g1, opts);
      const auto b = dev.sample(dev_net, diffusion::ddpm_large{}, imagesd.cview(), 4, g2, opts);
      require_close(host_copy(b), a, tl, "ddpm_large");
      CHECK(g1() == g2());
      const auto ma = diffusion::to_masks(a), mb = diffusion::to_masks(b);
      std::int64_t differ = 0;
      for (std::int64_t i = 0; i < ma.numel(); ++i) differ += ma[i] != mb[i];
      CHECK(differ <= 1);  // only an x̂0 within rounding of 0 may flip
    }
  }
}

// The multistep solvers apply their combinations with the one-step kernel, term by term:
// the same draws and results as the double host runner (itself checked against a plain
// recursion in tests/diffusion/test_multistep.cpp). Float: 1e-4 after 8 steps, the
// higher-order combinations weigh differences of x̂0 by up to ~10.
TEMPLATE_TEST_CASE("diffusion_runner: multistep solvers match the double host runner",
                   "[cuda][diffusion][multistep]", f_cpu, d_cpu, f_cuda, d_cuda) {
  using T = typename TestType::value;
  using D = typename TestType::device;
  AMBISEG_REQUIRE_GPU_IF_CUDA(D);
  using Diff = diffusion::reference_config_diffusion;
  const Diff policies(diffusion::make_reference_schedule(0.1));
  diffusion::diffusion_runner<Diff, double, cpu> host(policies);
  diffusion::diffusion_runner<Diff, T, D> dev(policies);
  const auto images = random_tensor<double>(shape{3, 1, 6, 5}, 12);
  const auto imagesd = to_dev<D>(converted<T>(images));
  const tol<T> tl = std::is_same_v<T, float> ? tol<T>{1e-4, 1e-4} : tol<T>{1e-12, 1e-12};
  using diffusion::any_multistep_sampler;
  for (const any_multistep_sampler& smp :
       {any_multistep_sampler(diffusion::dpmpp_3m{}), any_multistep_sampler(diffusion::sde_dpmpp_2m{}),
        any_multistep_sampler(diffusion::unipc<3>{})})
    for (bool clip : {false, true}) {
      diffusion::sampling_options opts;
      opts.steps = 8;
      opts.clip_x0 = clip;
      opts.spacing = diffusion::time_spacing::uniform_lambda;
      tanh_net<double, cpu> host_net;
      tanh_net<T, D> dev_net;
      rng g1(5), g2(5);
      const auto a = host.sample(host_net, smp, images, 4, g1, opts);
      const auto b = dev.sample(dev_net, smp, imagesd.cview(), 4, g2, opts);
      const std::string what = smp.sampler_name() + (clip ? ", clipped" : "");
      require_close(host_copy(b), converted<T>(a), tl, what.c_str());
      CHECK(g1() == g2());
    }
}

// Progressive distillation's job (diffusion/distillation.hpp) on the device: the same
// target x̃0, loss report and dL/df as the double host job (itself checked against the
// teacher's steps written out by hand in tests/diffusion/test_distillation.cpp).
TEMPLATE_TEST_CASE("progressive distillation: target, loss and gradient match the double host job",
                   "[cuda][diffusion][distillation]", f_cpu, d_cpu, f_cuda, d_cuda) {
  using T = typename TestType::value;
  using D = typename TestType::device;
  AMBISEG_REQUIRE_GPU_IF_CUDA(D);
  using Diff = diffusion::reference_config_diffusion;
  const Diff policies(diffusion::make_reference_schedule(0.1));
  diffusion::diffusion_runner<Diff, double, cpu> host(policies);
  diffusion::diffusion_runner<Diff, T, D> dev(policies);
  const std::vector<double> grid = diffusion::sampling_times(policies.schedule(), 8, diffusion::time_spacing::uniform_lambda);
  diffusion::progressive_distillation<double, cpu> host_job(grid);
  diffusion::progressive_distillation<T, D> dev_job(grid);
  const shape s{6, 1, 5, 4};
  const auto x0 = random_tensor<double>(s, 31), eps = random_tensor<double>(s, 32, -2, 2);
  const auto cond = random_tensor<double>(s, 33);
  const tensor<T> x0_t = converted<T>(x0), eps_t = converted<T>(eps), cond_t = converted<T>(cond);
  const auto x0d = to_dev<D>(x0_t), condd = to_dev<D>(cond_t);
  const std::vector<int> steps{0, 1, 2, 3, 3, 0};
  host_job.set_draws(steps, eps.cview());
  dev_job.set_draws(steps, eps_t.cview());
  tanh_net<double, cpu> host_teacher, host_student;
  tanh_net<T, D> dev_teacher, dev_student;
  tensor<double> host_report(shape{7});
  tensor<double, D> dev_report(shape{7});
  host_job.loss_async(host, host_teacher, host_student, x0.cview(), cond.cview(), host_report.view());
  dev_job.loss_async(dev, dev_teacher, dev_student, x0d.cview(), condd.cview(), dev_report.view());
  const tol<T> tl = std::is_same_v<T, float> ? tol<T>{1e-4, 1e-4} : tol<T>{1e-12, 1e-12};
  require_close(host_copy(dev_job.target()), converted<T>(host_copy(host_job.target())), tl, "target");
  require_close(host_copy(dev_job.grad_f()), converted<T>(host_copy(host_job.grad_f())), tl, "grad_f");
  const tensor<double> report = host_copy(dev_report.cview());
  // Float: 1e-4 of the largest per-case loss (a case near t = 0 has a loss of 1e-8 whose
  // float rounding is relatively large).
  double largest = 0;
  for (std::int64_t i = 0; i < 7; ++i) largest = std::max(largest, std::abs(host_report[i]));
  const double rel = std::is_same_v<T, float> ? 1e-4 : 1e-12;
  for (std::int64_t i = 0; i < 7; ++i) CHECK(report[i] == Approx(host_report[i]).epsilon(rel).margin(rel * largest));
}

TEMPLATE_TEST_CASE("diffusion_runner: UNet sampling from the same initial noise matches the CPU "
                   "(DDIM, DDPM)", "[cuda][diffusion][unet]", cpu, cuda) {
  using D = TestType;
  AMBISEG_REQUIRE_GPU_IF_CUDA(D);
  const nn::unet_config cfg = nn::unet_config::tiny();
  nn::unet<float> cpu_net(cfg, 51);
  nn::unet<float, D> gpu_net(cfg, 51);
  perturb_and_mirror(cpu_net, gpu_net, 52);
  using Diff = diffusion::reference_config_diffusion;
  const Diff policies(diffusion::make_reference_schedule(0.1));
  const diffusion::reference::reference_diffusion<Diff> host(policies);
  diffusion::diffusion_runner<Diff, float, D> dev(policies);
  const auto images = random_tensor<float>(shape{2, cfg.image_channels(), 32, 32}, 53);
  const auto imagesd = to_dev<D>(images);
  // the initial noise is given explicitly (and drawn from the same rng otherwise)
  rng noise_gen(54);
  tensor<float> init(shape{6, 1, 32, 32});
  for (float& v : init) v = static_cast<float>(noise_gen.normal());
  const auto initd = to_dev<D>(init);

  tensor<float> t_host;
  auto cpu_denoiser = [&](tensor_view<const float> x_t, std::span<const double> t,
                          tensor_view<const float> cond, tensor_view<float> f_out) {
    t_host.resize(shape{static_cast<std::int64_t>(t.size())});
    for (std::size_t i = 0; i < t.size(); ++i) t_host[static_cast<std::int64_t>(i)] = float(t[i]);
    const auto f = cpu_net.forward(x_t, cond, t_host.cview(), nn::pass::inference);
    std::copy(f.data(), f.data() + f.numel(), f_out.data());
  };
  models::unet_denoiser<D> gpu_denoiser(
      gpu_net, nn::pass::inference);
  diffusion::sampling_options opts;
  opts.steps = 5;
  auto check = [&](const tensor<float>& a, const tensor<float, D>& b, const char* what) {
    const double err = scaled_error(host_copy(b), a, 1e-3, 1e-6);
    INFO(what << ": scaled error " << err);
    CHECK(err <= 1.0);
  };
  {
    rng g1(9), g2(9);
    const auto a = host.sample(cpu_denoiser, diffusion::ddim_sampler{}, images, 3, g1, opts, init.cview());
    const auto b = dev.sample(gpu_denoiser, diffusion::ddim_sampler{}, imagesd.cview(), 3, g2, opts, initd.cview());
    check(a, b, "ddim");
  }
  {
    rng g1(10), g2(10);
    const auto a = host.sample(cpu_denoiser, diffusion::ddpm_small{}, images, 3, g1, opts, init.cview());
    const auto b = dev.sample(gpu_denoiser, diffusion::ddpm_small{}, imagesd.cview(), 3, g2, opts, initd.cview());
    check(a, b, "ddpm_small");
  }
  {  // x_1 drawn by the facade itself from the seed
    rng g1(11), g2(11);
    const auto a = host.sample(cpu_denoiser, diffusion::ddpm_large{}, images, 3, g1, opts);
    const auto b = dev.sample(gpu_denoiser, diffusion::ddpm_large{}, imagesd.cview(), 3, g2, opts);
    check(a, b, "ddpm_large, drawn noise");
  }
}

TEST_CASE("cuda_diffusion validates before touching the device", "[cuda][diffusion]") {
  static_assert(std::same_as<diffusion::cuda_diffusion<diffusion::paper_diffusion>,
                             diffusion::diffusion_runner<diffusion::paper_diffusion, float, cuda>>);
  // Runs without a GPU: placeholder (never dereferenced) device views.
  static float placeholder[4];
  auto v = [](shape s) { return tensor_view<float, cuda>(placeholder, s); };
  auto c = [](shape s) { return tensor_view<const float, cuda>(placeholder, s); };
  diffusion::cuda_diffusion<diffusion::reference_config_diffusion> dev(
      diffusion::reference_config_diffusion(diffusion::make_reference_schedule(0.1)));
  const std::vector<double> t2{0.1, 0.2}, t3{0.1, 0.2, 0.3};
  CHECK_THROWS_AS(dev.add_noise(c({3, 1, 4, 4}), t2, c({3, 1, 4, 4}), v({3, 1, 4, 4})), shape_error);
  CHECK_THROWS_AS(dev.predict_x0(c({0, 1, 4, 4}), {}, c({0, 1, 4, 4}), v({0, 1, 4, 4})), shape_error);
  CHECK_THROWS_AS(dev.loss(c({3, 1, 4, 4}), c({3, 1, 4, 5}), t3, c({3, 1, 4, 4})), shape_error);
  std::vector<double> per(2);
  CHECK_THROWS_AS(dev.loss(c({3, 1, 4, 4}), c({3, 1, 4, 4}), t3, c({3, 1, 4, 4}), {}, per), shape_error);
  tanh_net<float, cuda> net;
  rng g(1);
  diffusion::sampling_options opts;
  opts.steps = 0;
  CHECK_THROWS_AS(dev.sample_chains(net, diffusion::ddim_sampler{}, v({2, 1, 4, 4}), {}, g, opts),
                  value_error);
  opts.steps = 4;
  CHECK_THROWS_AS(dev.sample_chains(net, diffusion::ddim_sampler{}, v({2, 1, 4, 4}), c({3, 1, 4, 4}), g, opts),
                  shape_error);
  CHECK_THROWS_AS(dev.sample(net, diffusion::ddim_sampler{}, c({2, 1, 4, 4}), 0, g, opts), value_error);
  CHECK_THROWS_AS(dev.sample(net, diffusion::ddim_sampler{}, c({2, 4, 4}), 1, g, opts), shape_error);
  diffusion::cuda_training_batch<float> batch;
  CHECK_THROWS_AS(dev.draw_training_noise(shape{}, g, batch), shape_error);

  // the new CUDA functions check their own arguments too
  namespace ck = diffusion::cuda_kernels;
  static double placeholder_d[4];
  auto vd = [](shape s) { return tensor_view<double, cuda>(placeholder_d, s); };
  auto cd = [](shape s) { return tensor_view<const double, cuda>(placeholder_d, s); };
  CHECK_THROWS_AS(ck::diffusion_target<float>(c({3, 4}), c({3, 4}), c({3}), c({2}), v({3, 4})),
                  shape_error);
  CHECK_THROWS_AS(ck::diffusion_predicted_eps<float>(c({3, 4}), c({3, 4}), c({3}), c({3}), c({3}),
                                                     c({3}), v({3, 5})),
                  shape_error);
  CHECK_THROWS_AS(ck::diffusion_x0_loss<float>(c({3, 4}), c({3, 4}), c({3, 4}), cd({3}), cd({3}),
                                               cd({3}), v({3, 4}), vd({2})),
                  shape_error);
  CHECK_THROWS_AS(ck::diffusion_x0_loss<float>(c({3, 4}), c({3, 4}), c({3, 4}), cd({3}), cd({3}),
                                               cd({1}), v({3, 4}), vd({3})),
                  shape_error);
  CHECK_THROWS_AS(ck::repeat_rows<float>(c({2, 3}), 2, v({2, 6})), shape_error);
  CHECK_THROWS_AS(ck::repeat_rows<float>(c({2, 3}), 0, v({0, 3})), value_error);
}
