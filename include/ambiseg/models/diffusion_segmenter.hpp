// ambiseg/models/diffusion_segmenter.hpp — the paper's model: the reference UNet denoising
// masks under a run-time choice of diffusion policies (SPEC §1-§7), as a segmentation_model.
//
//   training  t, ε drawn per case; x_t = α·x0 + σ·ε; f = UNet(cat[x_t, image], t); the
//             weighted x-space loss and dL/df; backward through the UNet
//   sampling  n chains per image from x_1 ~ N(0, I), `steps` UNet passes each; x̂0 > 0
//
// Shape legend: B cases (or B·n chains), Cc image channels, H×W pixels.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/device_context.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/models/diffusion_config.hpp"
#include "ambiseg/models/diffusion_policies.hpp"
#include "ambiseg/models/model.hpp"
#include "ambiseg/nn/unet.hpp"

namespace ambiseg::models {

// Adapts a UNet to the denoiser callable: t is rounded to float and uploaded, the output
// copied into f_out. Its host copy of t goes to unet::forward, which checks t for NaN
// there instead of reading the uploaded values back (a wait on a GPU).
template <class D>
class unet_denoiser {
 public:
  unet_denoiser(nn::unet<float, D>& net, nn::pass mode) : net_(&net), mode_(mode) {}
  void operator()(tensor_view<const float, D> x_t, std::span<const double> t, tensor_view<const float, D> cond,
                  tensor_view<float, D> f_out) {
    const shape ts{static_cast<std::int64_t>(t.size())};
    if (!(t_host_.shape() == ts)) {
      t_host_ = tensor<float>(ts);
      t_dev_ = tensor<float, D>(ts);
    }
    for (std::size_t i = 0; i < t.size(); ++i) t_host_[static_cast<std::int64_t>(i)] = static_cast<float>(t[i]);
    enqueue_upload<D>(t_dev_.data(), t_host_.data(), sizeof(float) * t.size());
    const tensor_view<const float, D> f = net_->forward(x_t, cond, t_dev_.cview(), mode_, t_host_.cview());
    expect_shape("unet_denoiser", "f_out", f_out, f.shape());
    device_memory<D>::copy(f_out.data(), f.data(), sizeof(float) * static_cast<std::size_t>(f.numel()));
  }

 private:
  nn::unet<float, D>* net_;
  nn::pass mode_;
  tensor<float> t_host_;
  tensor<float, D> t_dev_;
};

template <class D = cpu>
class diffusion_segmenter {
 public:
  using device_type = D;
  using config_type = diffusion_segmenter_config;
  static constexpr std::string_view kind = diffusion_kind;

  diffusion_segmenter(const diffusion_segmenter_config& config, const build_context& context)
      : config_((config.validate(context.image_channels), config)),
        image_channels_(context.image_channels),
        diffusion_(make_diffusion<D>(config_.policy)),
        net_(config_.effective_net(image_channels_), context.seed),
        train_denoiser_(net_, nn::pass::training),
        sample_denoiser_(net_, nn::pass::inference) {}
  // The denoisers point into net_.
  diffusion_segmenter(const diffusion_segmenter&) = delete;
  diffusion_segmenter& operator=(const diffusion_segmenter&) = delete;

  // The config as stored: the effective network (input and head included), so the file
  // alone rebuilds it.
  nlohmann::json config_json() const {
    diffusion_segmenter_config stored = config_;
    stored.net = net_.config();
    return stored;
  }
  static std::vector<typename parameter_store<float, D>::entry> parameter_layout(
      const diffusion_segmenter_config& config, const build_context& context) {
    config.validate(context.image_channels);
    return nn::unet<float, D>::parameter_layout(config.effective_net(context.image_channels));
  }

  static input_spec inputs_of(const diffusion_segmenter_config& config, const build_context& context) {
    return {context.image_channels, config.effective_net(context.image_channels).size_divisor()};
  }

  parameter_store<float, D>& parameters() { return net_.parameters(); }
  const parameter_store<float, D>& parameters() const { return net_.parameters(); }
  input_spec inputs() const { return {image_channels_, net_.config().size_divisor()}; }
  std::int64_t network_passes(const sampling_request& request) const { return request.steps; }

  const diffusion_segmenter_config& config() const { return config_; }
  nn::unet<float, D>& network() { return net_; }
  const diffusion_model<D>& diffusion() const { return *diffusion_; }
  // The last step's t, ε, x_t, f and dL/df (tests and diagnostics).
  const diffusion::training_batch<float, D>& last_batch() const { return noise_; }

  void loss_and_gradient(training_inputs<D> batch, rng& g, tensor_view<double, D> report) {
    diffusion_->draw_training_noise(batch.masks.shape(), g, noise_, batch.rows.first, batch.rows.global);
    diffusion_->training_loss_async(std::ref(train_denoiser_), batch.masks, batch.images, noise_, report);
    net_.backward(noise_.grad_f.cview());
  }

  void sample(tensor_view<const float, D> images, const sampling_request& request, rng& g,
              tensor_view<float, D> scores, tensor_view<const float, D> init_noise = {}) {
    const diffusion::sampling_options options{request.steps, diffusion::parse_spacing(request.spacing),
                                              request.clip_x0, 1};
    diffusion_->sample(std::ref(sample_denoiser_), parse_sampler(request.sampler), images, request.n, g, options,
                       scores, init_noise);
  }

 private:
  diffusion_segmenter_config config_;
  int image_channels_;
  std::unique_ptr<diffusion_model<D>> diffusion_;
  nn::unet<float, D> net_;
  unet_denoiser<D> train_denoiser_, sample_denoiser_;  // kept: their time buffers are allocated once
  diffusion::training_batch<float, D> noise_;
};

static_assert(segmentation_model<diffusion_segmenter<cpu>>);

}  // namespace ambiseg::models
