// ambiseg/models/model.hpp — what the trainer, the sampler, the evaluator and checkpoints
// need from a segmentation model, as a C++20 concept.
//
// A model learns p(mask | image) from cases with one annotation drawn per case, and draws
// n masks per image. Its parameters live in one parameter_store (AdamW, clipping, the EMA
// and checkpoints work on that store without knowing the model); its configuration is JSON
// (stored in every checkpoint with the model's kind, so a file rebuilds its own model).
//
// Shape legend: B cases, C image channels, s×s crop, n masks per image, H×W pixels.
//   images   [B, C, H, W]   encoded as the model was trained (data::image_encoding)
//   masks    [B, 1, s, s]   one annotation per case, in {−1, +1}
//   scores   [B·n, 1, H, W] row b·n + j is draw j for image b; the mask is scores > 0
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ambiseg/core/parameters.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/core/tensor.hpp"

namespace ambiseg::models {

// A model by registry name with its own config JSON (what a trainer_config and a
// checkpoint record). The registry validates the config against the kind.
struct model_spec {
  std::string kind;
  nlohmann::json config = nlohmann::json::object();
  friend bool operator==(const model_spec&, const model_spec&) = default;
};

// Which rows of the step's global batch a rank's inputs are, in data-parallel training
// (train/trainer.hpp). A model that supports it draws its noise for the whole global
// batch, exactly as one process would, and keeps its rows: the run's noise, like its data,
// does not depend on the number of ranks. global = 0: the inputs are the whole batch.
struct batch_rows {
  std::int64_t first = 0;
  std::int64_t global = 0;
  bool whole() const { return global == 0; }
};

// One training batch on the model's device.
template <class D>
struct training_inputs {
  tensor_view<const float, D> images;  // [B, C, s, s]
  tensor_view<const float, D> masks;   // [B, 1, s, s]
  batch_rows rows{};
};

// For models whose batch cannot be split by rows: BatchNorm's batch statistics would differ
// per rank (synchronised BatchNorm is not built). A clear refusal.
inline void require_whole_batch(const batch_rows& rows, std::string_view kind) {
  throw_if<value_error>(!rows.whole(), "model '", kind,
                        "': data-parallel training (several ranks) is not supported for this model yet; "
                        "train it in one process");
}

// How to draw masks. Models read what applies to them (steps and sampler are a diffusion
// model's) and ignore the rest.
struct sampling_request {
  int n = 16;                    // masks per image
  int steps = 10;                // network evaluations per chain of an iterative sampler
  std::string sampler = "ddpm";  // ddim | ddpm | ddpm_small | ddpm_large | dpmpp_2m | dpmpp_3m |
                                 // sde_dpmpp_2m | unipc | unipc3
  bool clip_x0 = false;          // clip intermediate predictions to [−1, 1]
  std::string spacing = "uniform_t";  // the sampling grid: uniform_t | uniform_lambda
};

// What a model accepts as input: the sampler and the data pipeline check against it.
struct input_spec {
  int image_channels = 1;
  int size_divisor = 1;  // H and W must be multiples of this
};

// The constructor arguments every registered model takes besides its own config JSON.
struct build_context {
  int image_channels = 1;   // from the data's encoding
  std::uint64_t seed = 0;   // initial weights
};

// A model that makes its n draws per image one at a time: draw j of every image, [B,1,H,W],
// into its rows i·n + j of scores [B·n,1,H,W].
template <class D>
void place_draw(tensor_view<float, D> scores, tensor_view<const float, D> draw, std::int64_t n, std::int64_t j) {
  const std::int64_t b = draw.size(0), plane = draw.numel() / std::max<std::int64_t>(b, 1);
  for (std::int64_t i = 0; i < b; ++i)
    device_memory<D>::copy(scores.data() + (i * n + j) * plane, draw.data() + i * plane,
                           sizeof(float) * static_cast<std::size_t>(plane));
}

template <class M, class D = typename M::device_type>
concept segmentation_model =
    requires(M& m, const M& cm, training_inputs<D> batch, rng& g, tensor_view<double, D> report,
             tensor_view<const float, D> images, const sampling_request& request,
             tensor_view<float, D> scores, tensor_view<const float, D> init_noise) {
      // The registry name, recorded in checkpoints ("diffusion", ...).
      { M::kind } -> std::convertible_to<std::string_view>;
      { m.parameters() } -> std::same_as<parameter_store<float, D>&>;
      { cm.parameters() } -> std::same_as<const parameter_store<float, D>&>;
      // The configuration that rebuilds this model with build_context (JSON object).
      { cm.config_json() } -> std::same_as<nlohmann::json>;
      { cm.inputs() } -> std::same_as<input_spec>;
      // Enqueues the batch's loss and adds its gradient to parameters().grads (+=, the
      // caller zeroes them). report [B + 1] receives the per-case losses, then their mean;
      // nothing is read back (a NaN shows in the report, which the trainer checks once).
      // Random draws (noise, latents) come from g.
      { m.loss_and_gradient(batch, g, report) } -> std::same_as<void>;
      // request.n masks per image: scores [B·n, 1, H, W] (device). init_noise, when given,
      // fixes the model's per-draw randomness (a diffusion model's x_1, [B·n, 1, H, W]); a
      // model without such a start refuses it.
      { m.sample(images, request, g, scores, init_noise) } -> std::same_as<void>;
      // Network evaluations one draw of one mask costs under this request.
      { cm.network_passes(request) } -> std::convertible_to<std::int64_t>;
    };

// A model whose state includes values that are not trained (BatchNorm running statistics)
// keeps them in a second store, `parameter_store<float, D>& buffers()`. Checkpoints save it
// as "buffers.<name>"; the optimiser, gradient clipping and the EMA never see it.
template <class M, class D = typename M::device_type>
concept model_with_buffers = requires(M& m) {
  { m.buffers() } -> std::same_as<parameter_store<float, D>&>;
};

// A model that samples one way only (a student distilled to N DDIM steps) says so with
// `sampling_request fixed_sampling() const` (its steps, sampler and spacing): its sample()
// runs that whatever the request asks, and callers record it instead of the request.
template <class M>
concept model_with_fixed_sampling = requires(const M& m) {
  { m.fixed_sampling() } -> std::same_as<sampling_request>;
};

}  // namespace ambiseg::models
