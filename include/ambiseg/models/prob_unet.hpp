// ambiseg/models/prob_unet.hpp — the Probabilistic U-Net with an axis-aligned Gaussian
// latent ("AA", Kohl et al. 2018), built as in the Generalized Probabilistic U-Net code
// (Bhat et al. 2022) that the paper's comparison ran; docs/models.md lists every choice.
//
//   training  q = posterior(cat[image, mask01]), p = prior(image) (diagonal Gaussians [B,Z]);
//             z = μ_q + σ_q·ε; logits = fcomb(unet(image), z);
//             loss = (Σ BCE(logits, mask01) + β·Σ_b KL(q_b ‖ p_b)) / B
//   sampling  one prior and U-Net pass per image (BatchNorm on running statistics), then per
//             draw z ~ p and fcomb only; the mask is logit > 0
//
// The reference also adds 1e-5·Σ‖θ‖₂ over the prior and posterior nets and Adam's coupled
// weight decay 1e-5; here regularisation is the trainer's (AdamW weight decay), see
// docs/models.md.
//
// Shape legend: B cases, C image channels, s×s crop, Z latent size, n draws per image.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/device_context.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/parameters.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/core/workspace.hpp"
#include "ambiseg/models/model.hpp"
#include "ambiseg/nn/prob_unet.hpp"
#include "ambiseg/ops/affine.hpp"
#include "ambiseg/ops/concat.hpp"
#include "ambiseg/ops/gaussian_latent.hpp"
#include "ambiseg/ops/sigmoid_cross_entropy.hpp"

namespace ambiseg::models {

inline constexpr std::string_view prob_unet_aa_kind = "prob_unet_aa";

struct prob_unet_config {
  nn::prob_unet_net_config net;
  double beta = 10.0;  // the paper found 10 better than 1 for AA

  // "paper": the reference's LIDC setup, 6,847,129 parameters with one image channel (the
  // paper's Table 1); "small" and "example" for CPU work.
  static prob_unet_config preset(const std::string& name) {
    prob_unet_config c;
    if (name == "paper") return c;
    if (name == "small") {
      c.net.num_filters = {16, 32, 64, 128};
      return c;
    }
    if (name == "example") {
      c.net.num_filters = {8, 16, 32, 64};
      return c;
    }
    throw value_error("prob_unet: unknown preset '" + name + "' (paper, small, example)");
  }

  void validate(int image_channels) const {
    throw_if<value_error>(image_channels < 1 || image_channels > 64, "prob_unet: ", image_channels,
                          " image channels (1 to 64)");
    net.validate();
    throw_if<value_error>(!(beta >= 0) || !(beta < 1e6), "prob_unet: beta ", beta, " (0 to 1e6)");
  }
};

inline void to_json(nlohmann::json& j, const prob_unet_config& c) {
  j = nlohmann::json(c.net);
  j["beta"] = c.beta;
}

// {"preset": "paper"|"small"|"example"} (default "paper"), then any field overrides it:
// num_filters, convs_per_block, latent_dim, fcomb_convs, batch_norm, bn_eps, bn_momentum, beta.
inline void from_json(const nlohmann::json& j, prob_unet_config& c) {
  throw_if<format_error>(!j.is_object(), "prob_unet: the config must be a JSON object, got ", j.dump());
  static const char* known[] = {"preset", "num_filters", "convs_per_block", "latent_dim", "fcomb_convs",
                                "batch_norm", "bn_eps", "bn_momentum", "beta"};
  for (const auto& [key, value] : j.items()) {
    bool ok = false;
    for (const char* k : known) ok = ok || key == k;
    throw_if<format_error>(!ok, "prob_unet: unknown config key '", key, "'");
  }
  try {
    prob_unet_config d = prob_unet_config::preset(j.value("preset", std::string("paper")));
    d.net.num_filters = j.value("num_filters", d.net.num_filters);
    d.net.convs_per_block = j.value("convs_per_block", d.net.convs_per_block);
    d.net.latent_dim = j.value("latent_dim", d.net.latent_dim);
    d.net.fcomb_convs = j.value("fcomb_convs", d.net.fcomb_convs);
    d.net.batch_norm = j.value("batch_norm", d.net.batch_norm);
    d.net.bn_eps = j.value("bn_eps", d.net.bn_eps);
    d.net.bn_momentum = j.value("bn_momentum", d.net.bn_momentum);
    d.beta = j.value("beta", d.beta);
    d.validate(1);
    c = std::move(d);
  } catch (const nlohmann::json::exception& e) {
    throw format_error(std::string("prob_unet: bad config JSON: ") + e.what());
  } catch (const value_error& e) {
    throw format_error(e.what());
  }
}

// The networks and their stores, on any T (float for training, double for the reference
// checks of tests/models).
template <class T, class D>
struct prob_unet_networks {
  parameter_store<T, D> params, buffers;
  std::vector<nn::param_init> inits;
  std::vector<std::pair<std::size_t, T>> buffer_inits;
  nn::state_registry<T, D> registry{{params, inits}, buffers, buffer_inits};
  nn::unet_features<T, D> unet;
  nn::latent_encoder<T, D> prior, posterior;
  nn::fcomb<T, D> head;

  prob_unet_networks(const nn::prob_unet_net_config& c, int image_channels)
      : unet(registry, c, image_channels),
        prior(registry, "prior", image_channels, c),
        posterior(registry, "posterior", image_channels + 1, c),
        head(registry, c) {}

  // Allocates both stores, draws the parameters (seeded) and sets the buffers.
  void allocate(std::uint64_t seed) {
    params.allocate();
    buffers.allocate();
    nn::initialise_parameters(params, inits, seed);
    std::vector<T> host(static_cast<std::size_t>(buffers.flat_values().numel()), T(0));
    for (const auto& [index, value] : buffer_inits) {
      const auto v = buffers.value(index);
      std::fill(host.begin() + (v.data() - buffers.flat_values().data()),
                host.begin() + (v.data() - buffers.flat_values().data()) + v.numel(), value);
    }
    device_memory<D>::copy_from_host(buffers.flat_values().data(), host.data(), host.size() * sizeof(T));
  }
};

// One training step's and one sampling pass's computation on given noise, on any T: the
// model runs it in float with ε drawn from its rng; tests run it in double on the
// reference's ε.
template <class T, class D>
class prob_unet_step {
 public:
  // images [B,C,s,s], masks [B,1,s,s] in {−1,+1}, eps [B,Z] → report [B+1] (per-case
  // rec_b + β·KL_b, then their mean) and parameter gradients (+=).
  void loss_and_gradient(prob_unet_networks<T, D>& nets, double beta, tensor_view<const T, D> images,
                         tensor_view<const T, D> masks, tensor_view<const T, D> eps, tensor_view<double, D> report) {
    const std::int64_t b = images.size(0);
    const nn::param_views<T, D> p{&nets.params}, buf{&nets.buffers};
    const shape latent = eps.shape();
    mask01_.resize(masks.shape());
    ops::affine_forward(masks, 0.5, 0.5, mask01_.view());                      // y  [B,1,s,s] in {0,1}
    posterior_in_.resize(shape{b, images.size(1) + 1, images.size(2), images.size(3)});
    ops::concat_channels_forward(images, mask01_.cview(), posterior_in_.view());  // [B,C+1,s,s]
    nets.posterior.forward(p, buf, posterior_in_.cview(), nn::norm_mode::batch, ws_);  // μ_q, log σ_q [B,Z]
    nets.prior.forward(p, buf, images, nn::norm_mode::batch, ws_);             // μ_p, log σ_p [B,Z]
    z_.resize(latent);
    ops::diag_gaussian_rsample_forward(nets.posterior.mu(), nets.posterior.log_sigma(), eps, z_.view());  // z [B,Z]
    features_ = nets.unet.forward(p, buf, images, nn::norm_mode::batch, ws_);  // [B,F0,s,s]
    logits_ = nets.head.forward(p, buf, features_, z_.cview(), nn::norm_mode::batch, ws_);  // [B,1,s,s]

    rec_.resize(shape{b});
    kl_.resize(shape{b});
    dlogits_.resize(logits_.shape());
    ops::sigmoid_cross_entropy_forward_backward(logits_, mask01_.cview(), 1.0 / double(b), rec_.view(),
                                                dlogits_.view());              // rec [B], dlogits
    for (auto* t : {&dmu_q_, &dls_q_, &dmu_p_, &dls_p_}) {
      t->resize(latent);
      t->zero();
    }
    ops::diag_gaussian_kl_forward_backward(nets.posterior.mu(), nets.posterior.log_sigma(), nets.prior.mu(),
                                           nets.prior.log_sigma(), beta / double(b), kl_.view(), dmu_q_.view(),
                                           dls_q_.view(), dmu_p_.view(), dls_p_.view());  // kl [B]
    ops::combine_case_losses(rec_.cview(), kl_.cview(), beta, report);         // report [B+1]

    dfeatures_.resize(features_.shape());
    dz_.resize(latent);
    nets.head.backward(p, dlogits_.cview(), dfeatures_.view(), dz_.view(), ws_);
    ops::diag_gaussian_rsample_backward(nets.posterior.log_sigma(), eps, dz_.cview(), dmu_q_.view(),
                                        dls_q_.view());                        // += through z
    nets.unet.backward(p, dfeatures_.cview(), ws_);
    nets.posterior.backward(p, dmu_q_.cview(), dls_q_.cview(), ws_);
    nets.prior.backward(p, dmu_p_.cview(), dls_p_.cview(), ws_);
  }

  // Inference: the prior and the U-Net on running statistics, once per image.
  void encode(prob_unet_networks<T, D>& nets, tensor_view<const T, D> images) {
    const nn::param_views<T, D> p{&nets.params}, buf{&nets.buffers};
    nets.prior.forward(p, buf, images, nn::norm_mode::running, ws_);           // μ_p, log σ_p [B,Z]
    features_ = nets.unet.forward(p, buf, images, nn::norm_mode::running, ws_);  // [B,F0,H,W]
  }
  // After encode: one draw per image from the prior with noise eps [B,Z] → logits [B,1,H,W].
  tensor_view<const T, D> draw(prob_unet_networks<T, D>& nets, tensor_view<const T, D> eps) {
    const nn::param_views<T, D> p{&nets.params}, buf{&nets.buffers};
    z_.resize(eps.shape());
    ops::diag_gaussian_rsample_forward(nets.prior.mu(), nets.prior.log_sigma(), eps, z_.view());  // z [B,Z]
    logits_ = nets.head.forward(p, buf, features_, z_.cview(), nn::norm_mode::running, ws_);  // [B,1,H,W]
    return logits_;
  }
  // Given z instead of noise (tests).
  tensor_view<const T, D> decode(prob_unet_networks<T, D>& nets, tensor_view<const T, D> z) {
    const nn::param_views<T, D> p{&nets.params}, buf{&nets.buffers};
    logits_ = nets.head.forward(p, buf, features_, z, nn::norm_mode::running, ws_);
    return logits_;
  }

  // The last step's intermediate values (tests and diagnostics).
  tensor_view<const T, D> z() const { return z_.cview(); }
  tensor_view<const T, D> features() const { return features_; }
  tensor_view<const T, D> logits() const { return logits_; }
  tensor_view<const double, D> reconstruction() const { return rec_.cview(); }
  tensor_view<const double, D> kl() const { return kl_.cview(); }

 private:
  workspace<D> ws_;
  tensor_view<const T, D> features_, logits_;
  tensor<T, D> z_, mask01_, posterior_in_, dlogits_, dmu_q_, dls_q_, dmu_p_, dls_p_, dfeatures_, dz_;
  tensor<double, D> rec_, kl_;
};

template <class D = cpu>
class prob_unet_aa {
 public:
  using device_type = D;
  using config_type = prob_unet_config;
  static constexpr std::string_view kind = prob_unet_aa_kind;

  prob_unet_aa(const prob_unet_config& config, const build_context& context)
      : config_((config.validate(context.image_channels), config)),
        image_channels_(context.image_channels),
        nets_(config_.net, image_channels_) {
    nets_.allocate(context.seed);
  }
  prob_unet_aa(const prob_unet_aa&) = delete;
  prob_unet_aa& operator=(const prob_unet_aa&) = delete;

  static std::vector<typename parameter_store<float, D>::entry> parameter_layout(const prob_unet_config& config,
                                                                                const build_context& context) {
    config.validate(context.image_channels);
    const prob_unet_networks<float, D> layout(config.net, context.image_channels);
    return layout.params.entries();
  }
  static input_spec inputs_of(const prob_unet_config& config, const build_context& context) {
    return {context.image_channels, config.net.size_divisor()};
  }

  parameter_store<float, D>& parameters() { return nets_.params; }
  const parameter_store<float, D>& parameters() const { return nets_.params; }
  parameter_store<float, D>& buffers() { return nets_.buffers; }
  nlohmann::json config_json() const { return config_; }
  input_spec inputs() const { return inputs_of(config_, {image_channels_, 0}); }
  // One U-Net and prior pass per image; each draw then runs only fcomb.
  std::int64_t network_passes(const sampling_request&) const { return 1; }
  const prob_unet_config& config() const { return config_; }
  prob_unet_networks<float, D>& networks() { return nets_; }

  void loss_and_gradient(training_inputs<D> batch, rng& g, tensor_view<double, D> report) {
    draw_normal(shape{batch.images.size(0), config_.net.latent_dim}, g);       // ε [B,Z]
    step_.loss_and_gradient(nets_, config_.beta, batch.images, batch.masks, eps_.cview(), report);
  }

  void sample(tensor_view<const float, D> images, const sampling_request& request, rng& g,
              tensor_view<float, D> scores, tensor_view<const float, D> init_noise = {}) {
    throw_if<value_error>(init_noise.data() != nullptr,
                          "prob_unet_aa: its draws start from latent samples, not from given noise (init_noise)");
    throw_if<value_error>(request.n < 1, "prob_unet_aa: n = ", request.n, " masks per image");
    const std::int64_t b = images.size(0), h = images.size(2), w = images.size(3);
    expect_shape("prob_unet_aa::sample", "scores", scores, shape{b * request.n, 1, h, w});
    step_.encode(nets_, images);
    const std::int64_t plane = h * w;
    for (int j = 0; j < request.n; ++j) {
      draw_normal(shape{b, config_.net.latent_dim}, g);                         // ε [B,Z]
      const auto logits = step_.draw(nets_, eps_.cview());                      // [B,1,H,W]
      for (std::int64_t i = 0; i < b; ++i)
        device_memory<D>::copy(scores.data() + (i * request.n + j) * plane, logits.data() + i * plane,
                               sizeof(float) * static_cast<std::size_t>(plane));
    }
  }

 private:
  // ε ~ N(0, 1) drawn on the host in row order and uploaded (the same draws on every device).
  void draw_normal(const shape& s, rng& g) {
    eps_host_.resize(s);
    for (std::int64_t i = 0; i < eps_host_.numel(); ++i) eps_host_[i] = static_cast<float>(g.normal());
    eps_.resize(s);
    enqueue_upload<D>(eps_.data(), eps_host_.data(), sizeof(float) * static_cast<std::size_t>(eps_host_.numel()));
  }

  prob_unet_config config_;
  int image_channels_;
  prob_unet_networks<float, D> nets_;
  prob_unet_step<float, D> step_;
  tensor<float> eps_host_;
  tensor<float, D> eps_;
};

static_assert(segmentation_model<prob_unet_aa<cpu>>);
static_assert(model_with_buffers<prob_unet_aa<cpu>>);

}  // namespace ambiseg::models
