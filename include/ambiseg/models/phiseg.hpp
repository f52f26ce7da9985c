// ambiseg/models/phiseg.hpp — PHiSeg (Baumgartner et al. 2019), the hierarchical latent
// model of the paper's comparison, as its TensorFlow reference trains it (phiseg_7_5 with
// n0 = 20: the paper's 7,322,210 parameters); docs/models.md lists every choice.
//
//   training  q = posterior(cat[image, one_hot(mask) − ½]) draws z_l for l = L−1 … 0, each
//             conditioned on the level above; p = prior(image) conditioned on q's samples;
//             level logits s_l = likelihood(z) at full resolution; with S_l = Σ_{k≥l} s_k:
//             loss = Σ_l CE(S_l, mask)/B + Σ_l 4^l·KL(q_l ‖ p_l)/B (per-pixel softmax CE
//             summed over pixels; the KL summed over a level's latents)
//   sampling  the prior's feature pyramid once per image (BatchNorm on running statistics),
//             then per draw its latent levels from its own samples and the likelihood; the
//             score is the foreground logit of Σ_l s_l, the mask score > 0
//
// As in TF, each training step also runs the prior and the likelihood once in generation mode
// (fresh noise, no gradient) and the dead branches, for their BatchNorm statistics:
// `bn_update_generation_pass`, `bn_update_dead_branches` (docs/models.md).
//
// Shape legend: B cases, C image channels, H×W crop, L latent levels, Z latent channels,
// h_l×w_l latent level l's resolution, n draws per image.
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
#include "ambiseg/models/model.hpp"
#include "ambiseg/nn/phiseg.hpp"
#include "ambiseg/ops/affine.hpp"
#include "ambiseg/ops/sigmoid_cross_entropy.hpp"

namespace ambiseg::models {

inline constexpr std::string_view phiseg_kind = "phiseg";

struct phiseg_config {
  nn::phiseg_net_config net;
  bool bn_update_generation_pass = true;  // TF's second BatchNorm update per step
  bool bn_update_dead_branches = true;    // TF updates the dead branches' statistics too

  // "paper": n0 = 20 (Table 1's 7,322,210 parameters); "small" n0 = 10 (1,840,430) and
  // "example" n0 = 5 (465,065) for CPU work; L = 5, R = 7 in all three.
  static phiseg_config preset(const std::string& name) {
    phiseg_config c;
    if (name == "paper") return c;
    if (name == "small") {
      c.net.n0 = 10;
      return c;
    }
    if (name == "example") {
      c.net.n0 = 5;
      return c;
    }
    throw value_error("phiseg: unknown preset '" + name + "' (paper, small, example)");
  }
  void validate(int image_channels) const {
    throw_if<value_error>(image_channels < 1 || image_channels > 64, "phiseg: ", image_channels,
                          " image channels (1 to 64)");
    net.validate();
    throw_if<value_error>(bn_update_dead_branches && !net.dead_branches,
                          "phiseg: bn_update_dead_branches needs dead_branches");
  }
};

inline void to_json(nlohmann::json& j, const phiseg_config& c) {
  j = nlohmann::json(c.net);
  j["bn_update_generation_pass"] = c.bn_update_generation_pass;
  j["bn_update_dead_branches"] = c.bn_update_dead_branches;
}

// {"preset": "paper"|"small"|"example"} (default "paper"), then any field overrides it:
// n0, zdim0, latent_levels, resolution_levels, bn_eps, bn_momentum, dead_branches,
// bn_update_generation_pass, bn_update_dead_branches.
inline void from_json(const nlohmann::json& j, phiseg_config& c) {
  throw_if<format_error>(!j.is_object(), "phiseg: the config must be a JSON object, got ", j.dump());
  static const char* known[] = {"preset", "n0", "zdim0", "latent_levels", "resolution_levels", "bn_eps", "bn_momentum",
                                "dead_branches", "bn_update_generation_pass", "bn_update_dead_branches"};
  for (const auto& [key, value] : j.items()) {
    bool ok = false;
    for (const char* k : known) ok = ok || key == k;
    throw_if<format_error>(!ok, "phiseg: unknown config key '", key, "'");
  }
  try {
    phiseg_config d = phiseg_config::preset(j.value("preset", std::string("paper")));
    d.net.n0 = j.value("n0", d.net.n0);
    d.net.zdim0 = j.value("zdim0", d.net.zdim0);
    d.net.latent_levels = j.value("latent_levels", d.net.latent_levels);
    d.net.resolution_levels = j.value("resolution_levels", d.net.resolution_levels);
    d.net.bn_eps = j.value("bn_eps", d.net.bn_eps);
    d.net.bn_momentum = j.value("bn_momentum", d.net.bn_momentum);
    d.net.dead_branches = j.value("dead_branches", d.net.dead_branches);
    d.bn_update_generation_pass = j.value("bn_update_generation_pass", d.bn_update_generation_pass);
    d.bn_update_dead_branches = j.value("bn_update_dead_branches", d.net.dead_branches && d.bn_update_dead_branches);
    d.validate(1);
    c = std::move(d);
  } catch (const nlohmann::json::exception& e) {
    throw format_error(std::string("phiseg: bad config JSON: ") + e.what());
  } catch (const value_error& e) {
    throw format_error(e.what());
  }
}

template <class T, class D>
struct phiseg_networks {
  parameter_store<T, D> params, buffers;
  std::vector<nn::param_init> inits;
  std::vector<std::pair<std::size_t, T>> buffer_inits;
  nn::state_registry<T, D> registry{{params, inits}, buffers, buffer_inits};
  nn::latent_net<T, D> posterior, prior;
  nn::likelihood_net<T, D> likelihood;

  phiseg_networks(const nn::phiseg_net_config& c, int image_channels)
      : posterior(registry, "posterior", image_channels + 2, c),
        prior(registry, "prior", image_channels, c),
        likelihood(registry, c) {}

  void allocate(std::uint64_t seed) { nn::allocate_state(params, buffers, inits, buffer_inits, seed); }
};

// Per-level noise [B,Z,h_l,w_l], index l = latent level.
template <class T, class D>
using level_tensors = std::vector<tensor_view<const T, D>>;

// One training step's and one generation pass's computation on given noise, on any T.
template <class T, class D>
class phiseg_step {
 public:
  // images [B,C,H,W], masks [B,1,H,W] in {−1,+1}, eps / gen_eps per level → report [B+1]
  // (per case Σ_l CE_l + Σ_l 4^l·KL_l, then their mean) and parameter gradients (+=).
  // gen_eps may be empty when the configuration runs no generation pass.
  void loss_and_gradient(phiseg_networks<T, D>& nets, const phiseg_config& c, tensor_view<const T, D> images,
                         tensor_view<const T, D> masks, const level_tensors<T, D>& eps,
                         const level_tensors<T, D>& gen_eps, tensor_view<double, D> report) {
    const std::int64_t b = images.size(0), h = images.size(2), w = images.size(3);
    const int levels = c.net.latent_levels;
    const nn::param_views<T, D> p{&nets.params}, buf{&nets.buffers};
    const bool dead = c.bn_update_dead_branches;
    mask01_.resize(masks.shape());
    ops::affine_forward(masks, 0.5, 0.5, mask01_.view());                      // y [B,1,H,W] in {0,1}
    one_hot_[0].resize(masks.shape());
    one_hot_[1].resize(masks.shape());
    ops::affine_forward(mask01_.cview(), -1.0, 0.5, one_hot_[0].view());       // (1 − y) − ½
    ops::affine_forward(mask01_.cview(), 1.0, -0.5, one_hot_[1].view());       // y − ½
    partial_in_.resize(shape{b, images.size(1) + 1, h, w});
    ops::concat_channels_forward(images, one_hot_[0].cview(), partial_in_.view());
    posterior_in_.resize(shape{b, images.size(1) + 2, h, w});
    ops::concat_channels_forward(partial_in_.cview(), one_hot_[1].cview(), posterior_in_.view());  // [B,C+2,H,W]

    nets.posterior.encode(p, buf, posterior_in_.cview(), nn::norm_mode::batch, ws_);
    nets.posterior.latents(p, buf, eps, {}, nn::norm_mode::batch, dead, ws_);  // q_l, z_l
    const auto z = nets.posterior.samples();
    nets.prior.encode(p, buf, images, nn::norm_mode::batch, ws_);
    nets.prior.latents(p, buf, {}, z, nn::norm_mode::batch, dead, ws_);       // p_l given q's z
    const auto& s = nets.likelihood.forward(p, buf, z, nn::norm_mode::batch, ws_);  // s_l [B,2,H,W]

    // The foreground logit of each level, e_l = s_l[1] − s_l[0] (two-class softmax = sigmoid
    // of the difference), and the partial sums S_l = Σ_{k≥l} e_k.
    foreground_logits(s, levels);
    partial_.resize(levels);
    dpartial_.resize(levels);
    rec_.resize(shape{b});
    rec_.zero();
    ce_.resize(shape{b});
    for (int l = levels - 1; l >= 0; --l) {
      partial_[l].resize(e_[l].shape());
      if (l == levels - 1)
        device_memory<D>::copy(partial_[l].data(), e_[l].data(), sizeof(T) * static_cast<std::size_t>(e_[l].numel()));
      else
        ops::add_forward(partial_[l + 1].cview(), e_[l].cview(), partial_[l].view());  // S_l [B,1,H,W]
      dpartial_[l].resize(e_[l].shape());
      ops::sigmoid_cross_entropy_forward_backward(partial_[l].cview(), mask01_.cview(), 1.0 / double(b), ce_.view(),
                                                  dpartial_[l].view());       // CE_l [B]
      ops::add_forward(rec_.cview(), ce_.cview(), rec_.view());
    }
    nets.posterior.zero_gradient_slots();
    nets.prior.zero_gradient_slots();
    kl_.resize(shape{b});
    kl_.zero();
    kl_level_.resize(shape{b});
    for (int l = 0; l < levels; ++l) {
      const double weight = static_cast<double>(std::int64_t{1} << (2 * l));  // 4^l
      ops::gaussian_kl_sigma_forward_backward(nets.posterior.mu(l), nets.posterior.sigma(l), nets.prior.mu(l),
                                              nets.prior.sigma(l), 1e-10, weight / double(b), kl_level_.view(),
                                              nets.posterior.dmu(l), nets.posterior.dsigma(l), nets.prior.dmu(l),
                                              nets.prior.dsigma(l));          // KL_l [B]
      ops::affine_forward(kl_level_.cview(), weight, 0.0, kl_level_.view());
      ops::add_forward(kl_.cview(), kl_level_.cview(), kl_.view());
    }
    ops::combine_case_losses(rec_.cview(), kl_.cview(), 1.0, report);        // report [B+1]

    // d e_k = Σ_{l≤k} d S_l; d s_k = [−d e_k, d e_k].
    ds_.resize(levels);
    ds_views_.clear();
    for (int k = 0; k < levels; ++k) {
      if (k > 0) ops::add_forward(dpartial_[k - 1].cview(), dpartial_[k].cview(), dpartial_[k].view());
      neg_.resize(e_[k].shape());
      ops::affine_forward(dpartial_[k].cview(), -1.0, 0.0, neg_.view());
      ds_[k].resize(shape{b, 2, h, w});
      ops::concat_channels_forward(neg_.cview(), dpartial_[k].cview(), ds_[k].view());
      ds_views_.push_back(ds_[k].cview());
    }
    std::vector<tensor_view<T, D>> dz;
    for (int l = 0; l < levels; ++l) dz.push_back(nets.posterior.dz(l));
    nets.likelihood.backward(p, ds_views_, dz, ws_);                          // d z_l (=)
    nets.prior.backward(p, dz, ws_);                                          // d z_l += through p's conditioning
    nets.posterior.backward(p, {}, ws_);

    if (c.bn_update_generation_pass) {
      throw_if<value_error>(static_cast<int>(gen_eps.size()) != levels,
                            "phiseg: the generation pass needs its noise (one tensor per latent level)");
      nets.prior.encode(p, buf, images, nn::norm_mode::batch, ws_);
      nets.prior.latents(p, buf, gen_eps, {}, nn::norm_mode::batch, dead, ws_);
      nets.likelihood.forward(p, buf, nets.prior.samples(), nn::norm_mode::batch, ws_);
    }
  }

  // Inference: the prior's pyramid on running statistics, once per image.
  void encode(phiseg_networks<T, D>& nets, tensor_view<const T, D> images) {
    const nn::param_views<T, D> p{&nets.params}, buf{&nets.buffers};
    nets.prior.encode(p, buf, images, nn::norm_mode::running, ws_);
  }
  // After encode: one draw per image from noise eps per level → foreground logits [B,1,H,W].
  tensor_view<const T, D> draw(phiseg_networks<T, D>& nets, const level_tensors<T, D>& eps) {
    const nn::param_views<T, D> p{&nets.params}, buf{&nets.buffers};
    const int levels = nets.prior.levels();
    nets.prior.latents(p, buf, eps, {}, nn::norm_mode::running, false, ws_);
    const auto& s = nets.likelihood.forward(p, buf, nets.prior.samples(), nn::norm_mode::running, ws_);
    foreground_logits(s, levels);
    score_.resize(e_[0].shape());
    device_memory<D>::copy(score_.data(), e_[0].data(), sizeof(T) * static_cast<std::size_t>(e_[0].numel()));
    for (int l = 1; l < levels; ++l) ops::add_forward(score_.cview(), e_[l].cview(), score_.view());
    return score_.cview();
  }

  tensor_view<const T, D> foreground(int l) const { return e_[l].cview(); }  // e_l [B,1,H,W]
  tensor_view<const double, D> reconstruction() const { return rec_.cview(); }
  tensor_view<const double, D> kl() const { return kl_.cview(); }

 private:
  void foreground_logits(const std::vector<tensor_view<const T, D>>& s, int levels) {
    e_.resize(levels);
    for (int l = 0; l < levels; ++l) {
      const shape one{s[l].size(0), 1, s[l].size(2), s[l].size(3)};
      background_.resize(one);
      e_[l].resize(one);
      ops::concat_channels_backward(s[l], background_.view(), e_[l].view());
      ops::affine_forward(background_.cview(), -1.0, 0.0, background_.view());
      ops::add_forward(e_[l].cview(), background_.cview(), e_[l].view());       // e_l [B,1,H,W]
    }
  }

  workspace<D> ws_;
  tensor<T, D> mask01_, one_hot_[2], partial_in_, posterior_in_, background_, neg_, score_;
  std::vector<tensor<T, D>> e_, partial_, dpartial_, ds_;
  std::vector<tensor_view<const T, D>> ds_views_;
  tensor<double, D> rec_, ce_, kl_, kl_level_;
};

template <class D = cpu>
class phiseg {
 public:
  using device_type = D;
  using config_type = phiseg_config;
  static constexpr std::string_view kind = phiseg_kind;

  phiseg(const phiseg_config& config, const build_context& context)
      : config_((config.validate(context.image_channels), config)),
        image_channels_(context.image_channels),
        nets_(config_.net, image_channels_) {
    nets_.allocate(context.seed);
  }
  phiseg(const phiseg&) = delete;
  phiseg& operator=(const phiseg&) = delete;

  static std::vector<typename parameter_store<float, D>::entry> parameter_layout(const phiseg_config& config,
                                                                                const build_context& context) {
    config.validate(context.image_channels);
    const phiseg_networks<float, D> layout(config.net, context.image_channels);
    return layout.params.entries();
  }
  static input_spec inputs_of(const phiseg_config& config, const build_context& context) {
    return {context.image_channels, config.net.size_divisor()};
  }

  parameter_store<float, D>& parameters() { return nets_.params; }
  const parameter_store<float, D>& parameters() const { return nets_.params; }
  parameter_store<float, D>& buffers() { return nets_.buffers; }
  nlohmann::json config_json() const { return config_; }
  input_spec inputs() const { return inputs_of(config_, {image_channels_, 0}); }
  // The prior's pyramid once per image; each draw runs the prior's latent levels and the
  // likelihood: one network pass per draw.
  std::int64_t network_passes(const sampling_request&) const { return 1; }
  const phiseg_config& config() const { return config_; }
  phiseg_networks<float, D>& networks() { return nets_; }

  void loss_and_gradient(training_inputs<D> batch, rng& g, tensor_view<double, D> report) {
    require_whole_batch(batch.rows, kind);
    const auto eps = draw_levels(0, batch.images, g);
    const auto gen_eps = config_.bn_update_generation_pass ? draw_levels(1, batch.images, g) : level_tensors<float, D>{};
    step_.loss_and_gradient(nets_, config_, batch.images, batch.masks, eps, gen_eps, report);
  }

  void sample(tensor_view<const float, D> images, const sampling_request& request, rng& g,
              tensor_view<float, D> scores, tensor_view<const float, D> init_noise = {}) {
    throw_if<value_error>(init_noise.data() != nullptr,
                          "phiseg: its draws start from latent samples, not from given noise (init_noise)");
    throw_if<value_error>(request.n < 1, "phiseg: n = ", request.n, " masks per image");
    const std::int64_t b = images.size(0), h = images.size(2), w = images.size(3);
    expect_shape("phiseg::sample", "scores", scores, shape{b * request.n, 1, h, w});
    step_.encode(nets_, images);
    for (int j = 0; j < request.n; ++j)
      place_draw(scores, step_.draw(nets_, draw_levels(0, images, g)), request.n, j);  // [B,1,H,W]
  }

 private:
  // N(0, 1) noise for every latent level, coarsest first (the reference's order), drawn on
  // the host in row order and uploaded: the same draws on every device.
  level_tensors<float, D> draw_levels(int slot, tensor_view<const float, D> images, rng& g) {
    const int levels = config_.net.latent_levels, delta = config_.net.delta();
    auto& host = host_[slot];
    auto& dev = noise_[slot];
    host.resize(levels);
    dev.resize(levels);
    level_tensors<float, D> out(levels);
    for (int l = levels - 1; l >= 0; --l) {
      const shape s{images.size(0), config_.net.zdim0, images.size(2) >> (l + delta), images.size(3) >> (l + delta)};
      host[l].resize(s);
      for (std::int64_t i = 0; i < host[l].numel(); ++i) host[l][i] = static_cast<float>(g.normal());
      dev[l].resize(s);
      enqueue_upload<D>(dev[l].data(), host[l].data(), sizeof(float) * static_cast<std::size_t>(host[l].numel()));
      out[l] = dev[l].cview();
    }
    return out;
  }

  phiseg_config config_;
  int image_channels_;
  phiseg_networks<float, D> nets_;
  phiseg_step<float, D> step_;
  std::vector<tensor<float>> host_[2];
  std::vector<tensor<float, D>> noise_[2];
};

static_assert(segmentation_model<phiseg<cpu>>);
static_assert(model_with_buffers<phiseg<cpu>>);

}  // namespace ambiseg::models
