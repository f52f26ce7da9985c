// train_synthetic — the library API end to end, without the command line: train a small
// diffusion UNet on synthetic ambiguous lesions, draw 8 masks per test image, score them
// (GED, dice) and write the sample grid. `ambiseg-cli train|sample|eval` does the same with
// options, checkpoints and progress (scripts/example.sh).
//
//   train_synthetic [steps = 200] [out_dir = train_synthetic_out]
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include "ambiseg/metrics/evaluate.hpp"
#include "ambiseg/train/all.hpp"
#include "ambiseg_apps/model_api.hpp"
#include "ambiseg_apps/plot.hpp"

using namespace ambiseg;

int main(int argc, char** argv) try {
  const std::int64_t steps = argc > 1 ? std::stoll(argv[1]) : 200;
  const std::filesystem::path out = argc > 2 ? argv[2] : "train_synthetic_out";
  std::filesystem::create_directories(out);

  // Data: 64×64 synthetic lesions, 4 annotations each; faint lesions are marked by about
  // half of the annotators, so the right answer is a distribution of masks.
  const data::synthetic_lesions gen({.size = 64, .seed = 0});
  const data::case_set train_cases = gen.make_cases(0, 2048), test_cases = gen.make_cases(1'000'000, 8);

  // The paper's diffusion (cosine, b = 0.1, x-prediction) with the reference's SNR + 1.
  train::trainer_config config;
  config.model = models::diffusion_spec({apps::network_preset("example"), {"cosine", 0.1, "x", "snr_plus_one", 0.0, true}});
  config.lr = {1e-3, steps / 10 + 1, steps, steps / 4};
  config.crop_size = 64;
  train::trainer<data::case_set> trainer(config, train_cases);
  for (std::int64_t s = 0; s < steps; ++s) {
    const auto r = trainer.step();
    if (r.step % 50 == 0 || r.step == steps) std::printf("step %lld  loss %.4f\n", static_cast<long long>(r.step), r.loss);
  }

  // 8 masks per test image, the chains of all images in one batch.
  tensor<float> images(shape{8, 1, 64, 64});
  for (std::size_t k = 0; k < 8; ++k)
    std::copy(test_cases[k].image.data(), test_cases[k].image.data() + 64 * 64, images.data() + k * 64 * 64);
  rng g(1);
  const train::sample_result r =
      train::sample_masks(trainer.model(), images.cview(), {.n = 8, .steps = 10, .sampler = "ddpm_large"}, g);

  std::vector<std::uint8_t> annotations;
  for (std::size_t k = 0; k < 8; ++k)
    annotations.insert(annotations.end(), test_cases[k].masks.data(), test_cases[k].masks.data() + 4 * 64 * 64);
  const auto scores = metrics::evaluate({r.masks.data(), 8, 8, 64, 64}, {annotations.data(), 8, 4, 64, 64});
  std::printf("GED² %.4f  dice %.4f  HM-IoU %.4f (8 images, n = 8)\n", scores.raw.ged, scores.raw.dice, scores.raw.hm_iou);

  apps::sample_inputs shown{images.clone(), test_cases.subset({0, 1, 2, 3, 4, 5, 6, 7}), true, {}};
  apps::overview_grid(shown, r).write(out / "samples.png");
  std::cout << "wrote " << (out / "samples.png").string() << "\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "train_synthetic: " << e.what() << "\n";
  return 1;
}
