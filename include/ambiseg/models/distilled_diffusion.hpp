// ambiseg/models/distilled_diffusion.hpp — a diffusion segmenter distilled to N
// deterministic steps (progressive distillation, Salimans & Ho 2022), as a
// segmentation_model: `ambiseg distill` trains one per round, and sample/eval load it as
// any model.
//
//   parameters  the student UNet (the teacher's architecture and policies)
//   buffers     the frozen teacher UNet of its round: saved in every checkpoint, so a round
//               resumes from its file alone; never trained
//   training    diffusion::progressive_distillation: one student DDIM step t → t″ learns
//               the teacher's two DDIM steps t → t′ → t″ on the teacher's 2N-step grid
//   sampling    N DDIM steps on the grid it was distilled on, whatever the request asks
//               (fixed_sampling() says so to the callers that record what ran)
//
// JSON: {"diffusion": diffusion_segmenter_config, "steps": N, "sampler": "ddim",
// "spacing": "uniform_t"|"uniform_lambda"}.
//
// Shape legend: B cases (or B·n chains), C image channels, H×W pixels.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/diffusion/distillation.hpp"
#include "ambiseg/models/diffusion_config.hpp"
#include "ambiseg/models/diffusion_policies.hpp"
#include "ambiseg/models/diffusion_segmenter.hpp"
#include "ambiseg/models/model.hpp"
#include "ambiseg/nn/unet.hpp"

namespace ambiseg::models {

inline constexpr std::string_view distilled_diffusion_kind = "distilled_diffusion";

struct distilled_diffusion_config {
  diffusion_segmenter_config diffusion;  // the teacher's network and policies
  int steps = 1;                         // N: the student's DDIM steps; its teacher takes 2N
  std::string spacing = "uniform_t";     // the grid of both (sampling_grid.hpp)

  void validate(int image_channels) const {
    diffusion.validate(image_channels);
    throw_if<value_error>(steps < 1 || steps > 4096, "distilled_diffusion: steps = ", steps,
                          " must lie in [1, 4096]");
    diffusion::parse_spacing(spacing);
    // x̂0 = (x_t − σ·f)/α amplifies the student's error by σ/α, which near t = 1 is the
    // clip's e^{−λ_min/2} (≈ 1800 for the reference schedule): an ε-student cannot be
    // distilled to few steps (Salimans & Ho §4). x and v keep x̂0 bounded.
    throw_if<value_error>(diffusion.policy.prediction == "eps",
                          "distilled_diffusion: an eps-prediction model cannot be distilled to few steps (its x0 "
                          "estimate divides by alpha, which vanishes at t = 1); distill an x- or v-prediction model");
  }
  friend bool operator==(const distilled_diffusion_config&, const distilled_diffusion_config&) = default;
};

inline void to_json(nlohmann::json& j, const distilled_diffusion_config& c) {
  j = nlohmann::json{{"diffusion", c.diffusion}, {"steps", c.steps}, {"sampler", "ddim"}, {"spacing", c.spacing}};
}
inline void from_json(const nlohmann::json& j, distilled_diffusion_config& c) {
  throw_if<format_error>(!j.is_object() || !j.contains("diffusion") || !j.contains("steps"),
                         "distilled_diffusion: the config needs \"diffusion\" and \"steps\"");
  distilled_diffusion_config d;
  try {
    d.diffusion = j.at("diffusion").get<diffusion_segmenter_config>();
    d.steps = j.at("steps").get<int>();
    d.spacing = j.value("spacing", d.spacing);
    const std::string sampler = j.value("sampler", std::string("ddim"));
    throw_if<format_error>(sampler != "ddim", "distilled_diffusion: sampler '", sampler,
                           "' (a distilled model samples with ddim)");
  } catch (const nlohmann::json::exception& e) {
    throw format_error(std::string("distilled_diffusion: bad JSON: ") + e.what());
  }
  c = std::move(d);
}

template <class D = cpu>
class distilled_diffusion {
 public:
  using device_type = D;
  using config_type = distilled_diffusion_config;
  static constexpr std::string_view kind = distilled_diffusion_kind;

  distilled_diffusion(const distilled_diffusion_config& config, const build_context& context)
      : config_((config.validate(context.image_channels), config)),
        image_channels_(context.image_channels),
        diffusion_(make_diffusion<D>(config_.diffusion.policy)),
        student_(config_.diffusion.effective_net(image_channels_), context.seed),
        teacher_(config_.diffusion.effective_net(image_channels_), context.seed),
        train_denoiser_(student_, nn::pass::training),
        sample_denoiser_(student_, nn::pass::inference),
        teacher_denoiser_(teacher_, nn::pass::inference),
        job_(diffusion_->sampling_times(2 * config_.steps, diffusion::parse_spacing(config_.spacing))) {}
  // The denoisers point into the networks.
  distilled_diffusion(const distilled_diffusion&) = delete;
  distilled_diffusion& operator=(const distilled_diffusion&) = delete;

  nlohmann::json config_json() const {
    distilled_diffusion_config stored = config_;
    stored.diffusion.net = student_.config();
    return stored;
  }
  static std::vector<typename parameter_store<float, D>::entry> parameter_layout(
      const distilled_diffusion_config& config, const build_context& context) {
    config.validate(context.image_channels);
    return nn::unet<float, D>::parameter_layout(config.diffusion.effective_net(context.image_channels));
  }
  static input_spec inputs_of(const distilled_diffusion_config& config, const build_context& context) {
    return {context.image_channels, config.diffusion.effective_net(context.image_channels).size_divisor()};
  }

  parameter_store<float, D>& parameters() { return student_.parameters(); }
  const parameter_store<float, D>& parameters() const { return student_.parameters(); }
  // The teacher's weights: model_with_buffers keeps them in checkpoints and out of the optimiser.
  parameter_store<float, D>& buffers() { return teacher_.parameters(); }
  input_spec inputs() const { return {image_channels_, student_.config().size_divisor()}; }
  const distilled_diffusion_config& config() const { return config_; }
  const diffusion_model<D>& diffusion() const { return *diffusion_; }

  // What every draw runs, whatever a request asks.
  sampling_request fixed_sampling() const {
    sampling_request r;
    r.steps = config_.steps;
    r.sampler = "ddim";
    r.spacing = config_.spacing;
    return r;
  }
  std::int64_t network_passes(const sampling_request&) const { return config_.steps; }

  void loss_and_gradient(training_inputs<D> batch, rng& g, tensor_view<double, D> report) {
    if (batch.rows.whole()) job_.draw(batch.masks.shape(), g);
    else job_.draw_rows(batch.masks.shape(), batch.rows.first, batch.rows.global, g);
    job_.loss_async(*diffusion_, std::ref(teacher_denoiser_), std::ref(train_denoiser_), batch.masks, batch.images,
                    report);
    student_.backward(job_.grad_f());
  }
  void sample(tensor_view<const float, D> images, const sampling_request& request, rng& g,
              tensor_view<float, D> scores, tensor_view<const float, D> init_noise = {}) {
    const diffusion::sampling_options options{config_.steps, diffusion::parse_spacing(config_.spacing),
                                              request.clip_x0, 1};
    diffusion_->sample(std::ref(sample_denoiser_), sampler_kind::ddim, images, request.n, g, options, scores,
                       init_noise);
  }

 private:
  distilled_diffusion_config config_;
  int image_channels_;
  std::unique_ptr<diffusion_model<D>> diffusion_;
  nn::unet<float, D> student_, teacher_;
  unet_denoiser<D> train_denoiser_, sample_denoiser_, teacher_denoiser_;
  diffusion::progressive_distillation<float, D> job_;
};

static_assert(segmentation_model<distilled_diffusion<cpu>>);
static_assert(model_with_buffers<distilled_diffusion<cpu>>);

// The model_spec of a student of `teacher` distilled to `steps` DDIM steps.
inline model_spec distilled_diffusion_spec(const diffusion_segmenter_config& teacher, int steps,
                                           const std::string& spacing = "uniform_t") {
  return {std::string(distilled_diffusion_kind), nlohmann::json(distilled_diffusion_config{teacher, steps, spacing})};
}

}  // namespace ambiseg::models
