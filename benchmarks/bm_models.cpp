// What 16 masks of one 128×128 image cost each model at its paper configuration, on the
// CPU: the whole sample_masks call from a freshly initialised model (weights do not change
// the work). Counters: network passes per draw as the model reports them (a diffusion
// model's steps; one for the Probabilistic U-Nets, whose draws then run only fcomb, and for
// PHiSeg, whose draws run the prior's latent levels and the likelihood), and
// the model's parameters. docs/models.md reports the figures.
#include <benchmark/benchmark.h>

#include "ambiseg/core/parallel.hpp"
#include "ambiseg/data/synthetic.hpp"
#include "ambiseg/models/builtin_models.hpp"
#include "ambiseg/train/sampling.hpp"

using namespace ambiseg;

namespace {

void sample16(benchmark::State& state, const models::model_spec& spec) {
  const auto& entry = models::model_registry<cpu>::instance().at(spec.kind);
  auto model = entry.build(spec.config, {1, 0});
  const auto cases = data::synthetic_lesions({.size = 128, .seed = 0}).make_cases(0, 1);
  tensor<float> image(shape{1, 1, 128, 128});
  std::copy(cases[0].image.data(), cases[0].image.data() + 128 * 128, image.data());
  const train::sample_options options{.n = 16, .steps = 10, .sampler = "ddpm"};
  rng g(0);
  benchmark::DoNotOptimize(train::sample_masks(*model, image.cview(), options, g).masks.data());  // warm-up
  for (auto _ : state) benchmark::DoNotOptimize(train::sample_masks(*model, image.cview(), options, g).masks.data());
  state.counters["passes_per_draw"] = static_cast<double>(model->network_passes({.n = 16, .steps = 10}));
  state.counters["parameters"] = static_cast<double>(model->parameters().count());
  state.counters["threads"] = num_threads();
}

void BM_sample16_diffusion_paper(benchmark::State& state) {
  sample16(state, models::diffusion_spec({nn::unet_config::reference(), {}}));
}
void BM_sample16_prob_unet_aa_paper(benchmark::State& state) {
  sample16(state, {"prob_unet_aa", {{"preset", "paper"}}});
}
void BM_sample16_prob_unet_aa_mix_paper(benchmark::State& state) {
  sample16(state, {"prob_unet_aa_mix", {{"preset", "paper"}}});
}
void BM_sample16_prob_unet_fc_paper(benchmark::State& state) {
  sample16(state, {"prob_unet_fc", {{"preset", "paper"}}});
}
void BM_sample16_prob_unet_fc_mix_paper(benchmark::State& state) {
  sample16(state, {"prob_unet_fc_mix", {{"preset", "paper"}}});
}
void BM_sample16_phiseg_paper(benchmark::State& state) { sample16(state, {"phiseg", {{"preset", "paper"}}}); }

// One training step (forward, loss, backward; no optimiser) on 6 cases of 64×64 at the
// paper configuration: what the mixtures' 1000-sample Monte-Carlo KL adds to a step.
void train_step(benchmark::State& state, const models::model_spec& spec) {
  auto model = models::model_registry<cpu>::instance().at(spec.kind).build(spec.config, {1, 0});
  const auto cases = data::synthetic_lesions({.size = 64, .seed = 0}).make_cases(0, 6);
  tensor<float> images(shape{6, 1, 64, 64}), masks(shape{6, 1, 64, 64});
  for (int i = 0; i < 6; ++i) {
    std::copy(cases[i].image.data(), cases[i].image.data() + 64 * 64, images.data() + i * 64 * 64);
    for (int p = 0; p < 64 * 64; ++p) masks[i * 64 * 64 + p] = cases[i].masks.data()[p] ? 1.0f : -1.0f;  // annotator 0
  }
  tensor<double> report(shape{7});
  rng g(0);
  for (auto _ : state) {
    model->parameters().zero_grad();
    model->loss_and_gradient({images.cview(), masks.cview()}, g, report.view());
  }
  state.counters["threads"] = num_threads();
}
void BM_train_step_prob_unet_aa_paper(benchmark::State& state) {
  train_step(state, {"prob_unet_aa", {{"preset", "paper"}}});
}
void BM_train_step_prob_unet_fc_mix_paper(benchmark::State& state) {
  train_step(state, {"prob_unet_fc_mix", {{"preset", "paper"}}});
}
void BM_train_step_phiseg_paper(benchmark::State& state) { train_step(state, {"phiseg", {{"preset", "paper"}}}); }

}  // namespace

BENCHMARK(BM_sample16_diffusion_paper)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_sample16_prob_unet_aa_paper)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_sample16_prob_unet_aa_mix_paper)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_sample16_prob_unet_fc_paper)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_sample16_prob_unet_fc_mix_paper)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_sample16_phiseg_paper)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_train_step_prob_unet_aa_paper)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_train_step_prob_unet_fc_mix_paper)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_train_step_phiseg_paper)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
