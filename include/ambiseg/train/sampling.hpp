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
//
// Devices: sample_masks(unet<float, D>&, …) with D = cuda runs the network and the
// sampler's per-element maths on the GPU (device_policies.hpp) on the caller's current
// context; images, init_noise and the results stay on the host (the conditioning rows and
// x_1 are laid out on the host exactly as on the CPU and uploaded once per network batch,
// x̂0 downloaded), and the draws are the CPU's, so a seed gives the same chains on every
// device to float rounding. load_model<D>(path) builds the network on D.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "ambiseg/core/device_context.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/io/checkpoint.hpp"
#include "ambiseg/nn/unet.hpp"
#include "ambiseg/train/device_policies.hpp"
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

namespace sampling_detail {

// The argument checks shared by every device; returns the images per network batch.
inline std::int64_t check_inputs(const nn::unet_config& net, tensor_view<const float> images,
                                 const sample_options& opts, tensor_view<const float> init_noise) {
  expect_rank("sample_masks", "images", images, 4);
  throw_if<value_error>(opts.n < 1 || opts.steps < 1, "sample_masks: n = ", opts.n, " and steps = ", opts.steps,
                        " must be >= 1");
  throw_if<value_error>(opts.max_chains < opts.n, "sample_masks: max_chains = ", opts.max_chains,
                        " is smaller than n = ", opts.n, " (the chains of one image share a batch)");
  const int image_channels = net.image_channels();
  throw_if<shape_error>(images.size(1) != image_channels, "sample_masks: images have ", images.size(1),
                        " channels, the network expects ", image_channels);
  const std::int64_t b = images.size(0), n = opts.n, h = images.size(2), w = images.size(3);
  const int div = net.size_divisor();
  throw_if<shape_error>(h % div != 0 || w % div != 0, "sample_masks: images are ", h, "x", w,
                        "; this network needs multiples of ", div);
  if (init_noise.data() != nullptr) expect_shape("sample_masks", "init_noise", init_noise, shape{b, n, h, w});
  return std::max<std::int64_t>(1, opts.max_chains / n);
}

// Rows [first, first + count) of the images, each repeated n times, into cond, and their
// chains' x_1 (from init_noise, else drawn from g) into x: the host layout of every device.
inline void lay_out_batch(tensor_view<const float> images, std::int64_t first, std::int64_t count,
                          const sample_options& opts, rng& g, tensor_view<const float> init_noise,
                          tensor<float>& cond, tensor<float>& x) {
  const std::int64_t n = opts.n, h = images.size(2), w = images.size(3), chains = count * n;
  const std::int64_t plane = h * w, image_size = images.size(1) * plane;
  x.resize(shape{chains, 1, h, w});
  cond.resize(shape{chains, images.size(1), h, w});
  for (std::int64_t i = 0; i < count; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      std::copy(images.data() + (first + i) * image_size, images.data() + (first + i + 1) * image_size,
                cond.data() + (i * n + j) * image_size);
  if (init_noise.data() != nullptr)
    std::copy(init_noise.data() + first * n * plane, init_noise.data() + (first + count) * n * plane, x.data());
  else
    for (float& v : x) v = static_cast<float>(g.normal());
}

inline void finish(sample_result& r) {
  r.masks = diffusion::to_masks(r.x0_hat);
  mask_statistics(r.masks.cview(), r.mean, r.variance);
}

// The device loop (any D, including cpu through the device layer: the tests' way to run
// it without a GPU).
template <class D>
sample_result sample_on_device(nn::unet<float, D>& net, device_diffusion_model<D>& diffusion,
                               tensor_view<const float> images, const sample_options& opts, rng& g,
                               tensor_view<const float> init_noise) {
  const std::int64_t per_batch = check_inputs(net.config(), images, opts, init_noise);
  const std::int64_t b = images.size(0), n = opts.n, h = images.size(2), w = images.size(3), plane = h * w;
  sample_result r;
  r.x0_hat.resize(shape{b, n, h, w});
  diffusion::forward_denoiser<nn::unet<float, D>, nn::pass, float, D> denoiser(net, nn::pass::inference);
  const diffusion::sampling_options so{opts.steps, opts.clip_x0, 1};
  tensor<float> cond_host, x_host;
  tensor<float, D> cond, x;
  for (std::int64_t first = 0; first < b; first += per_batch) {
    const std::int64_t count = std::min(per_batch, b - first);
    lay_out_batch(images, first, count, opts, g, init_noise, cond_host, x_host);
    x.resize(x_host.shape());
    cond.resize(cond_host.shape());
    // Enqueued: the whole batch's sampling is queued before the host waits, once, for x̂0.
    enqueue_upload<D>(x.data(), x_host.data(), sizeof(float) * static_cast<std::size_t>(x.numel()));
    enqueue_upload<D>(cond.data(), cond_host.data(), sizeof(float) * static_cast<std::size_t>(cond.numel()));
    diffusion.sample_chains(std::ref(denoiser), opts.sampler, x.view(), cond.cview(), g, so);
    read_back<D>(r.x0_hat.data() + first * n * plane, x.data(), sizeof(float) * static_cast<std::size_t>(x.numel()));
  }
  finish(r);
  return r;
}

}  // namespace sampling_detail

inline sample_result sample_masks(nn::unet<float>& net, const diffusion_model& diffusion,
                                  tensor_view<const float> images, const sample_options& opts, rng& g,
                                  tensor_view<const float> init_noise = {}) {
  const std::int64_t per_batch = sampling_detail::check_inputs(net.config(), images, opts, init_noise);
  const std::int64_t b = images.size(0), n = opts.n, h = images.size(2), w = images.size(3), plane = h * w;
  sample_result r;
  r.x0_hat.resize(shape{b, n, h, w});
  unet_denoiser denoiser(net, nn::pass::inference);
  const diffusion::sampling_options so{opts.steps, opts.clip_x0, 1};
  tensor<float> cond, x;
  for (std::int64_t first = 0; first < b; first += per_batch) {
    const std::int64_t count = std::min(per_batch, b - first), chains = count * n;
    sampling_detail::lay_out_batch(images, first, count, opts, g, init_noise, cond, x);
    diffusion.sample_chains(std::ref(denoiser), opts.sampler, x.view(), cond.cview(), g, so);
    std::copy(x.data(), x.data() + chains * plane, r.x0_hat.data() + first * n * plane);
  }
  sampling_detail::finish(r);
  return r;
}

// The same on a device network: images, init_noise and the result on the host; the
// diffusion's policies (diffusion.choice()) rebuilt on D. Runs on the current context
// (open the model's device_context<D>::scope around it to use its stream).
template <class D>
  requires(!std::same_as<D, cpu>)
sample_result sample_masks(nn::unet<float, D>& net, const diffusion_model& diffusion,
                           tensor_view<const float> images, const sample_options& opts, rng& g,
                           tensor_view<const float> init_noise = {}) {
  const auto on_device = make_device_diffusion<D>(diffusion.choice());
  return sampling_detail::sample_on_device<D>(net, *on_device, images, opts, g, init_noise);
}

// A network and its diffusion rebuilt from a trainer checkpoint.
template <class D = cpu>
struct basic_loaded_model {
  trainer_config config;
  std::unique_ptr<diffusion_model> diffusion;
  std::unique_ptr<nn::unet<float, D>> net;
  std::int64_t step = 0;
  bool ema_weights = false;  // whether the EMA weights were loaded
};

using loaded_model = basic_loaded_model<cpu>;

// use_ema: nullopt = the EMA weights when the file has them, else the raw weights. The
// network is built on D (load_model<cuda>(path) for the GPU; the file is the same).
template <class D = cpu>
basic_loaded_model<D> load_model(const std::filesystem::path& path, std::optional<bool> use_ema = std::nullopt) {
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
  basic_loaded_model<D> m;
  m.config = j.get<trainer_config>();
  m.diffusion = make_diffusion(m.config.policy);
  m.net = std::make_unique<nn::unet<float, D>>(m.config.effective_net());
  const bool has_ema = file.metadata().count("ema") != 0;
  throw_if<value_error>(use_ema.value_or(false) && !has_ema, "load_model: '", path.string(),
                        "' holds no EMA weights");
  m.ema_weights = use_ema.value_or(has_ema);
  io::load_parameters(m.net->parameters(), file, {.prefix = m.ema_weights ? "ema." : ""});
  if (auto s = file.metadata().find("step"); s != file.metadata().end()) m.step = std::stoll(s->second);
  return m;
}

}  // namespace ambiseg::train
