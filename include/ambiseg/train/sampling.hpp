// ambiseg/train/sampling.hpp — n plausible masks per image from any segmentation model,
// and the per-pixel uncertainty maps; a model rebuilt from its checkpoint.
//
// Shape legend: B images, C image channels, n samples per image, H×W pixels.
//   images      [B, C, H, W]  encoded as the model was trained
//   x0_hat      [B, n, H, W]  the model's scores (a diffusion model's final x̂0)
//   masks       [B, n, H, W]  scores > 0 (uint8 0/1, SPEC §1)
//   mean        [B, H, W]     fraction of samples marking the pixel
//   variance    [B, H, W]     population variance of the binary masks, mean·(1 − mean)
//
// The draws of one image always run in the same batch (draw j of image b is row b·n + j);
// several images share a batch up to max_chains rows. init_noise ([B, n, H, W]) fixes each
// draw's start (a diffusion model's x_1) so that sampling is reproducible from it;
// otherwise the model draws from the rng, batch by batch. Images, init_noise and results
// stay on the host; the model runs on its device, on the caller's current context (open
// the model's device_context<D>::scope around the call to use its stream), and the host
// waits once per network batch, for the scores.
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
#include "ambiseg/models/builtin_models.hpp"
#include "ambiseg/models/registry.hpp"
#include "ambiseg/train/checkpoint.hpp"
#include "ambiseg/train/config.hpp"

namespace ambiseg::train {

struct sample_options {
  int n = 16;
  int steps = 10;
  std::string sampler = "ddpm";  // diffusion models: models::sampler_names()
  bool clip_x0 = false;
  std::int64_t max_chains = 64;  // rows per network batch (memory bound); ≥ n
  std::string spacing = "uniform_t";  // uniform_t | uniform_lambda (diffusion models)

  models::sampling_request request() const { return {n, steps, sampler, clip_x0, spacing}; }
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

// n masks per image from a model on its device D (a concrete model or models::any_model<D>).
template <class Model, class D = typename Model::device_type>
sample_result sample_masks(Model& model, tensor_view<const float> images, const sample_options& opts, rng& g,
                           tensor_view<const float> init_noise = {}) {
  expect_rank("sample_masks", "images", images, 4);
  throw_if<value_error>(opts.n < 1 || opts.steps < 1, "sample_masks: n = ", opts.n, " and steps = ", opts.steps,
                        " must be >= 1");
  throw_if<value_error>(opts.max_chains < opts.n, "sample_masks: max_chains = ", opts.max_chains,
                        " is smaller than n = ", opts.n, " (the draws of one image share a batch)");
  const models::input_spec spec = model.inputs();
  throw_if<shape_error>(images.size(1) != spec.image_channels, "sample_masks: images have ", images.size(1),
                        " channels, the model expects ", spec.image_channels);
  const std::int64_t b = images.size(0), n = opts.n, c = images.size(1), h = images.size(2), w = images.size(3);
  throw_if<shape_error>(h % spec.size_divisor != 0 || w % spec.size_divisor != 0, "sample_masks: images are ", h,
                        "x", w, "; this model needs multiples of ", spec.size_divisor);
  if (init_noise.data() != nullptr) expect_shape("sample_masks", "init_noise", init_noise, shape{b, n, h, w});
  const std::int64_t per_batch = std::max<std::int64_t>(1, opts.max_chains / n), plane = h * w;
  const models::sampling_request request = opts.request();

  sample_result r;
  r.x0_hat.resize(shape{b, n, h, w});
  tensor<float, D> batch_images, scores, batch_noise;
  for (std::int64_t first = 0; first < b; first += per_batch) {
    const std::int64_t count = std::min(per_batch, b - first);
    // Enqueued: the batch's sampling is queued before the host waits, once, for the scores.
    batch_images.resize(shape{count, c, h, w});
    enqueue_upload<D>(batch_images.data(), images.data() + first * c * plane,
                      sizeof(float) * static_cast<std::size_t>(batch_images.numel()));
    scores.resize(shape{count * n, 1, h, w});
    tensor_view<const float, D> noise;
    if (init_noise.data() != nullptr) {
      batch_noise.resize(scores.shape());
      enqueue_upload<D>(batch_noise.data(), init_noise.data() + first * n * plane,
                        sizeof(float) * static_cast<std::size_t>(batch_noise.numel()));
      noise = batch_noise.cview();
    }
    model.sample(batch_images.cview(), request, g, scores.view(), noise);
    read_back<D>(r.x0_hat.data() + first * n * plane, scores.data(),
                 sizeof(float) * static_cast<std::size_t>(scores.numel()));
  }
  r.masks = diffusion::to_masks<float, cpu>(r.x0_hat.cview());
  mask_statistics(r.masks.cview(), r.mean, r.variance);
  return r;
}

// A model rebuilt from a trainer checkpoint.
template <class D = cpu>
struct loaded_model {
  trainer_config config;
  std::unique_ptr<models::any_model<D>> model;
  std::int64_t step = 0;
  bool ema_weights = false;  // whether the EMA weights were loaded
};

// use_ema: nullopt = the EMA weights when the file has them, else the raw weights. The
// model is built on D (load_model<cuda>(path) for the GPU; the file is the same). The
// file's tensors are checked against the parameters its config asks for before anything
// is allocated, so an edited config cannot request an absurd network.
template <class D = cpu>
loaded_model<D> load_model(const std::filesystem::path& path, std::optional<bool> use_ema = std::nullopt) {
  const auto file = io::safetensors_file::open(path);
  const io::metadata_reader md{file, "load_model"};
  md.check(file.metadata().count("config") != 0, "no 'config' metadata (not an ambiseg checkpoint)");
  loaded_model<D> m;
  try {
    m.config = md.json("config").template get<trainer_config>();
  } catch (const format_error& e) {
    md.check(false, e.what());
  }
  if (auto s = file.metadata().find("step"); s != file.metadata().end()) {
    const std::string& text = s->second;
    md.check(!text.empty() && text.size() < 19 && text.find_first_not_of("0123456789") == std::string::npos,
             "metadata 'step' is not a non-negative integer: '", text, "'");
    m.step = std::stoll(text);
  }
  const bool has_ema = file.metadata().count("ema") != 0;
  md.check(!(use_ema.value_or(false) && !has_ema), "the file holds no EMA weights");
  m.ema_weights = use_ema.value_or(has_ema);
  const std::string prefix = m.ema_weights ? "ema." : "";

  const models::model_entry<D>* found = nullptr;
  try {
    found = &models::model_registry<D>::instance().at(m.config.model.kind);
  } catch (const value_error& e) {
    md.check(false, e.what());
  }
  const auto& entry = *found;
  const models::build_context context{m.config.image_channels(), 0};
  std::vector<typename parameter_store<float, D>::entry> layout;
  try {
    entry.validate(m.config.model.config, context);
    layout = entry.parameter_layout(m.config.model.config, context);
  } catch (const value_error& e) {
    md.check(false, "model '", m.config.model.kind, "': ", e.what());
  }
  for (const auto& p : layout) {
    const std::string name = prefix + p.name;
    md.check(file.contains(name), "the config asks for parameter '", name, "' ", p.shape.to_string(),
             ", which the file lacks (config and weights disagree)");
    const auto& t = file.info(name);
    md.check(t.shape == std::vector<std::int64_t>(p.shape.begin(), p.shape.end()), "the config asks for '", name,
             "' as ", p.shape.to_string(), ", the file holds ", t.shape_string(), " (config and weights disagree)");
  }
  // The weights ignore every state section the file lists (optimiser, EMA, buffers).
  io::load_options weights{.prefix = prefix};
  if (file.metadata().count("state_prefixes") != 0) {
    const auto listed = md.json("state_prefixes");
    md.check(listed.is_array(), "metadata 'state_prefixes' is not a list");
    for (const auto& p : listed) {
      md.check(p.is_string() && !p.get<std::string>().empty(), "metadata 'state_prefixes' holds ", p.dump());
      weights.ignore_prefixes.push_back(p.get<std::string>());
    }
  }
  m.model = entry.build(m.config.model.config, context);
  io::load_parameters(m.model->parameters(), file, weights);
  // Buffers (BatchNorm running statistics) are not averaged by the EMA: the trained ones
  // serve either set of weights.
  if (auto* buffers = m.model->buffers()) io::load_parameters(*buffers, file, {.prefix = "buffers."});
  return m;
}

}  // namespace ambiseg::train
