// custom_policies — writing your own noise schedule and composing it with the library's
// adapters, prediction, weighting and samplers.
//
// The schedule below (a Laplace schedule in λ, Hang et al. 2024) is not part of ambiseg: it
// is a plain struct with log_snr(t) and d_log_snr(t). clipped<input_scaled<...>> gives it
// the paper's input scaling and the reference's ±20 clipping by composition. The denoiser
// is exact: for pixels with P(x0 = +1) = p, E[x0 | x_t] = tanh(α x_t/σ² + artanh(2p − 1)),
// so the sampled frequency of +1 must approach p as the number of steps grows.
//
//   cmake -S . -B build -DAMBISEG_BUILD_EXAMPLES=ON && cmake --build build --target custom_policies
//   ./build/examples/custom_policies
#include <ambiseg/diffusion/all.hpp>

#include <cmath>
#include <cstdio>
#include <span>
#include <vector>

namespace dm = ambiseg::diffusion;
using ambiseg::tensor;
using ambiseg::tensor_view;

// λ(t) = μ − s·sign(½ − t)·log(1 − 2|t − ½|): Laplace-distributed λ around μ.
struct laplace_schedule {
  static constexpr const char* name = "laplace";
  double mu = 0.0;
  double scale = 2.0;
  double log_snr(double t) const {
    return t < 0.5 ? mu - scale * std::log(2.0 * t) : mu + scale * std::log(2.0 - 2.0 * t);
  }
  double d_log_snr(double t) const { return t < 0.5 ? -scale / t : -scale / (1.0 - t); }
};
static_assert(dm::noise_schedule<laplace_schedule>);

using schedule = dm::clipped<dm::input_scaled<laplace_schedule>>;
using weighting = dm::decoupled<dm::sigmoid_weighting>;  // the paper's printed sigmoid weighting
using model_type = dm::gaussian_diffusion<schedule, dm::v_prediction, weighting>;

// The exact posterior mean of x0, returned as a v-prediction output. cond holds p per pixel.
struct exact_denoiser {
  const model_type* model;
  void operator()(tensor_view<const double> x_t, std::span<const double> t,
                  tensor_view<const double> cond, tensor_view<double> f) const {
    const std::int64_t per = x_t.numel() / x_t.size(0);
    for (std::int64_t b = 0; b < x_t.size(0); ++b) {
      const dm::noise_level lv = model->level(t[b]);
      const dm::affine c = model->x0_coeffs(lv);
      for (std::int64_t i = b * per; i < (b + 1) * per; ++i) {
        const double x0_hat = std::tanh(lv.alpha * x_t[i] / (lv.sigma * lv.sigma) +
                                        std::atanh(2.0 * cond[i] - 1.0));
        f[i] = dm::output_for_x0(c.c_xt, c.c_f, x_t[i], x0_hat);
      }
    }
  }
};

int main() {
  const schedule sched(dm::input_scaled<laplace_schedule>(laplace_schedule{}, 0.1));
  const model_type model(sched, weighting{{2.0}});
  // The library's one loop over tensors (the same on a GPU with cuda in place of cpu).
  dm::diffusion_runner<model_type, double, ambiseg::cpu> runner(model);

  std::printf("schedule clipped<input_scaled<laplace>>, b = 0.1; v-prediction; "
              "w = -dλ/dt · sigmoid(λ + 2)\n\n");
  std::printf("%6s %12s %12s %10s %10s %12s %12s\n", "t", "λ laplace", "λ clipped", "α", "σ",
              "dλ/dt", "w(t)");
  for (double t : {0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0}) {
    const dm::noise_level lv = model.level(t);
    std::printf("%6.2f %12.4f %12.4f %10.6f %10.6f %12.4f %12.4f\n", t,
                dm::log_snr(laplace_schedule{}, t), lv.log_snr, lv.alpha, lv.sigma,
                dm::d_log_snr(sched, t), model.weight(t));
  }

  // The loss for three outputs on the same noisy batch: the true v (0 by construction), the
  // exact posterior mean (the best any network can do), and f = 0.
  ambiseg::rng g(42);
  const ambiseg::shape shape{16, 1, 8, 8};
  tensor<double> x0(shape), cond(shape), x_t(shape), eps(shape), f(shape), grad(shape);
  for (std::int64_t i = 0; i < x0.numel(); ++i) {
    cond[i] = 0.3;
    x0[i] = g.uniform() < 0.3 ? 1.0 : -1.0;
    eps[i] = g.normal();
  }
  std::vector<double> t(16);
  dm::stratified_timesteps{}.draw(t, g);
  runner.add_noise(x0, t, eps, x_t);
  runner.target(x0, t, eps, f);
  const double loss_oracle = runner.loss(x0, x_t, t, f);
  exact_denoiser{&model}(x_t, t, cond, f);
  const double loss_exact = runner.loss(x0, x_t, t, f, grad);
  double grad_norm = 0;
  for (double v : grad) grad_norm += v * v;
  f.zero();
  const double loss_zero = runner.loss(x0, x_t, t, f);
  std::printf("\nloss on a batch of 16 masks 8x8 (p = 0.3), stratified t:\n"
              "  f = true v target      %.3e\n  f = posterior mean     %.6f  (|dL/df| = %.3e)\n"
              "  f = 0                  %.6f\n",
              loss_oracle, loss_exact, std::sqrt(grad_norm), loss_zero);

  // Sampling: 4 images whose pixels all have P(+1) = p, 50 chains × 100 pixels per p.
  const double ps[] = {0.1, 0.3, 0.5, 0.8};
  tensor<double> images({4, 1, 10, 10});
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 100; ++i) images[k * 100 + i] = ps[k];
  const int chains = 50;
  std::printf("\nsampled frequency of x0 = +1 (5000 pixel chains per p; binomial std ≤ 0.007)\n");
  std::printf("%-10s %6s %8s %8s %8s %8s\n", "sampler", "steps", "p=0.1", "p=0.3", "p=0.5",
              "p=0.8");
  auto run = [&](const auto& smp, int steps) {
    dm::sampling_options opts;
    opts.steps = steps;
    ambiseg::rng sg(7);
    const tensor<double> x0_hat = runner.sample(exact_denoiser{&model}, smp, images, chains, sg, opts);
    const tensor<std::uint8_t> masks = dm::to_masks(x0_hat);
    std::printf("%-10s %6d", smp.name, steps);
    for (int k = 0; k < 4; ++k) {
      double ones = 0;
      for (int i = 0; i < chains * 100; ++i) ones += masks[k * chains * 100 + i];
      std::printf(" %8.4f", ones / (chains * 100));
    }
    std::printf("\n");
  };
  for (int steps : {10, 50, 200}) {
    run(dm::ddpm_large{}, steps);
    run(dm::ddim_sampler{}, steps);
  }
  std::printf("%-10s %6s %8.4f %8.4f %8.4f %8.4f\n", "target p", "", ps[0], ps[1], ps[2], ps[3]);
  return 0;
}
