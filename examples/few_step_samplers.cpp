// few_step_samplers — how many network passes each sampler needs, on a problem whose answer
// is known exactly.
//
// Pixels are +1 with probability p and −1 otherwise; the exact denoiser of that
// distribution is E[x0 | x_t] = tanh(α x_t/σ² + artanh(2p − 1)). A sampler that follows the
// reverse process faithfully turns N(0, 1) into masks with P(+1) = p; the table prints the
// largest |frequency − p| over p ∈ {0.1, 0.3, 0.5, 0.8} (20 000 chains each; the binomial
// noise alone is ≈ 0.003) for every sampler, both grids and 1 … 50 network passes, on
// the reference schedule (input-scaled cosine, b = 0.1, λ clipped to ±20).
//
//   cmake -S . -B build -DAMBISEG_BUILD_EXAMPLES=ON && cmake --build build --target few_step_samplers
//   ./build/examples/few_step_samplers
#include <ambiseg/diffusion/all.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

namespace dm = ambiseg::diffusion;
using ambiseg::tensor;
using ambiseg::tensor_view;
using model_type = dm::gaussian_diffusion<dm::reference_schedule, dm::x_prediction, dm::uniform_weighting>;

// The exact posterior mean as the x-prediction output; cond holds p for every pixel.
struct exact_denoiser {
  const model_type* model;
  void operator()(tensor_view<const double> x_t, std::span<const double> t, tensor_view<const double> cond,
                  tensor_view<double> f_out) const {
    const dm::noise_level lv = model->level(t[0]);  // all chains share t while sampling
    for (std::int64_t i = 0; i < x_t.numel(); ++i)
      f_out[i] = std::tanh(lv.alpha * x_t[i] / (lv.sigma * lv.sigma) + std::atanh(2 * cond[i] - 1));
  }
};

constexpr double probabilities[] = {0.1, 0.3, 0.5, 0.8};
constexpr int chains_per_p = 20000;

// The largest |P̂(+1) − p| over the four p.
template <class Sampler>
double marginal_error(const model_type& model, const Sampler& smp, int steps, dm::time_spacing spacing) {
  tensor<double> images({4, 1, 1, 1});
  for (int k = 0; k < 4; ++k) images[k] = probabilities[k];
  dm::diffusion_runner<model_type, double> run(model);
  ambiseg::rng g(7);
  dm::sampling_options opts;
  opts.steps = steps;
  opts.spacing = spacing;
  const tensor<double> x0 = run.sample(exact_denoiser{&model}, smp, images, chains_per_p, g, opts);
  double worst = 0;
  for (int k = 0; k < 4; ++k) {
    int ones = 0;
    for (int j = 0; j < chains_per_p; ++j) ones += x0[k * chains_per_p + j] > 0;
    worst = std::max(worst, std::abs(static_cast<double>(ones) / chains_per_p - probabilities[k]));
  }
  return worst;
}

int main() {
  const model_type model(dm::make_reference_schedule(0.1));
  const int passes[] = {1, 2, 4, 8, 10, 25, 50};
  auto row = [&](const std::string& name, auto smp, dm::time_spacing spacing) {
    std::printf("%-13s %-15s", name.c_str(), dm::spacing_name(spacing));
    for (int n : passes) std::printf(" %6.3f", marginal_error(model, smp, n, spacing));
    std::printf("\n");
    std::fflush(stdout);
  };
  std::printf("largest |P(+1) - p| by network passes per mask\n%-13s %-15s", "sampler", "grid");
  for (int n : passes) std::printf(" %6d", n);
  std::printf("\n");
  for (dm::time_spacing spacing : {dm::time_spacing::uniform_t, dm::time_spacing::uniform_lambda}) {
    row("ddpm_large", dm::ddpm_large{}, spacing);
    row("ddpm_small", dm::ddpm_small{}, spacing);
    row("ddim", dm::ddim_sampler{}, spacing);
    row("dpmpp_2m", dm::any_multistep_sampler(dm::dpmpp_2m{}), spacing);
    row("dpmpp_3m", dm::any_multistep_sampler(dm::dpmpp_3m{}), spacing);
    row("sde_dpmpp_2m", dm::any_multistep_sampler(dm::sde_dpmpp_2m{}), spacing);
    row("unipc", dm::any_multistep_sampler(dm::unipc<2>{}), spacing);
    row("unipc3", dm::any_multistep_sampler(dm::unipc<3>{}), spacing);
  }
}
