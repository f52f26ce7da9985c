// What 16 masks of one 128×128 image cost each model at its paper configuration, on the
// CPU: the whole sample_masks call from a freshly initialised model (weights do not change
// the work). Counters: network passes per draw as the model reports them (a diffusion
// model's steps; one for the Probabilistic U-Net, whose draws then run only fcomb), and
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

}  // namespace

BENCHMARK(BM_sample16_diffusion_paper)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_sample16_prob_unet_aa_paper)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
