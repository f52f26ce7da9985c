// ambiseg/train/sampling.hpp — n plausible masks per image from a trained model, and the
// per-pixel uncertainty maps.
//
// Shape legend: B images, C image channels, n samples per image, H×W pixels.
//   images      [B, C, H, W]  encoded as the network was trained
//   x0_hat      [B, n, H, W]  the sampler's final x̂0 (float)
//   masks       [B, n, H, W]  x̂0 > 0 (uint8 0/1, SPEC §1)
//   mean        [B, H, W]     fraction of samples marking the pixel
//   variance    [B, H, W]     population variance of the binary masks, mean·(1 − mean)
//
// The chains of one image always run in the same batch (chain j of image b is row b·n + j,
// as gaussian_diffusion::sample lays them out); several images share a batch up to
// max_chains rows. init_noise ([B, n, H, W], the x_1 of every chain) makes sampling
// reproducible from a given start; otherwise x_1 comes from the rng, image by image.
//
// loaded_model rebuilds a network from a checkpoint (weights or the EMA weights, the
// config JSON written by the trainer).
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/io/checkpoint.hpp"
#include "ambiseg/nn/unet.hpp"
#include "ambiseg/train/policies.hpp"
#include "ambiseg/train/trainer.hpp"

namespace ambiseg::train {

struct sample_options {
  int n = 16;
  int steps = 10;
  sampler_kind sampler = sampler_kind::ddpm_large;
  bool clip_x0 = false;
  std::int64_t max_chains = 64;  // rows per network batch (memory bound); ≥ n
};

struct sample_result {
  tensor<float> x0_hat;         // [B, n, H, W]
  tensor<std::uint8_t> masks;   // [B, n, H, W]
  tensor<float> mean;           // [B, H, W]
  tensor<float> variance;       // [B, H, W]
};

// Mean and variance over axis 1 of binary masks [B, n, H, W].
inline void mask_statistics(tensor_view<const std::uint8_t> masks, tensor<float>& mean, tensor<float>& variance) {
  throw_if<shape_error>(masks.rank() != 4 || masks.size(1) < 1, "mask_statistics: masks ",
                        masks.shape().to_string(), " must be [B, n, H, W] with n >= 1");
  const std::int64_t b = masks.size(0), n = masks.size(1), plane = masks.size(2) * masks.size(3);
  mean.resize(shape{b, masks.size(2), masks.size(3)});
  variance.resize(mean.shape());
  for (std::int64_t i = 0; i < b; ++i)
    for (std::int64_t p = 0; p < plane; ++p) {
      int count = 0;
      for (std::int64_t j = 0; j < n; ++j) count += masks[(i * n + j) * plane + p] ? 1 : 0;
      const double m = static_cast<double>(count) / static_cast<double>(n);
      mean[i * plane + p] = static_cast<float>(m);
      variance[i * plane + p] = static_cast<float>(m * (1.0 - m));
    }
}

inline sample_result sample_masks(nn::unet<float>& net, const diffusion_model& diffusion,
                                  tensor_view<const float> images, const sample_options& opts, rng& g,
                                  tensor_view<const float> init_noise = {}) {
  expect_rank("sample_masks", "images", images, 4);
  throw_if<value_error>(opts.n < 1 || opts.steps < 1, "sample_masks: n = ", opts.n, " and steps = ", opts.steps,
                        " must be >= 1");
  throw_if<value_error>(opts.max_chains < opts.n, "sample_masks: max_chains = ", opts.max_chains,
                        " is smaller than n = ", opts.n, " (the chains of one image share a batch)");
  const int image_channels = net.config().image_channels();
  throw_if<shape_error>(images.size(1) != image_channels, "sample_masks: images have ", images.size(1),
                        " channels, the network expects ", image_channels);
  const std::int64_t b = images.size(0), n = opts.n, h = images.size(2), w = images.size(3);
  const int div = net.config().size_divisor();
  throw_if<shape_error>(h % div != 0 || w % div != 0, "sample_masks: images are ", h, "x", w,
                        "; this network needs multiples of ", div);
  if (init_noise.data() != nullptr) expect_shape("sample_masks", "init_noise", init_noise, shape{b, n, h, w});

  sample_result r;
  r.x0_hat.resize(shape{b, n, h, w});
  const std::int64_t plane = h * w, image_size = image_channels * plane;
  const std::int64_t per_batch = std::max<std::int64_t>(1, opts.max_chains / n);
  unet_denoiser denoiser(net, nn::pass::inference);
  const diffusion::sampling_options so{opts.steps, opts.clip_x0, 1};
  tensor<float> cond, x;
  for (std::int64_t first = 0; first < b; first += per_batch) {
    const std::int64_t count = std::min(per_batch, b - first), chains = count * n;
    x.resize(shape{chains, 1, h, w});
    cond.resize(shape{chains, image_channels, h, w});
    for (std::int64_t i = 0; i < count; ++i)
      for (std::int64_t j = 0; j < n; ++j)
        std::copy(images.data() + (first + i) * image_size, images.data() + (first + i + 1) * image_size,
                  cond.data() + (i * n + j) * image_size);
    if (init_noise.data() != nullptr)
      std::copy(init_noise.data() + first * n * plane, init_noise.data() + (first + count) * n * plane, x.data());
    else
      for (float& v : x) v = static_cast<float>(g.normal());
    diffusion.sample_chains(std::ref(denoiser), opts.sampler, x.view(), cond.cview(), g, so);
    std::copy(x.data(), x.data() + chains * plane, r.x0_hat.data() + first * n * plane);
  }
  r.masks = diffusion::to_masks(r.x0_hat);
  mask_statistics(r.masks.cview(), r.mean, r.variance);
  return r;
}

// A network and its diffusion rebuilt from a trainer checkpoint.
struct loaded_model {
  trainer_config config;
  std::unique_ptr<diffusion_model> diffusion;
  std::unique_ptr<nn::unet<float>> net;
  std::int64_t step = 0;
  bool ema_weights = false;  // whether the EMA weights were loaded
};

// use_ema: nullopt = the EMA weights when the file has them, else the raw weights.
inline loaded_model load_model(const std::filesystem::path& path, std::optional<bool> use_ema = std::nullopt) {
  const auto file = io::safetensors_file::open(path);
  auto it = file.metadata().find("config");
  throw_if<format_error>(it == file.metadata().end(), "load_model: '", path.string(),
                         "' has no 'config' metadata (not an ambiseg training checkpoint)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    throw format_error("load_model: '" + path.string() + "': bad config JSON: " + e.what());
  }
  loaded_model m;
  m.config = j.get<trainer_config>();
  m.diffusion = make_diffusion(m.config.policy);
  m.net = std::make_unique<nn::unet<float>>(m.config.effective_net());
  const bool has_ema = file.metadata().count("ema") != 0;
  throw_if<value_error>(use_ema.value_or(false) && !has_ema, "load_model: '", path.string(),
                        "' holds no EMA weights");
  m.ema_weights = use_ema.value_or(has_ema);
  io::load_parameters(m.net->parameters(), file, {.prefix = m.ema_weights ? "ema." : ""});
  if (auto s = file.metadata().find("step"); s != file.metadata().end()) m.step = std::stoll(s->second);
  return m;
}

}  // namespace ambiseg::train
