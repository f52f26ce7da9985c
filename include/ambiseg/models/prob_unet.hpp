// ambiseg/models/prob_unet.hpp — the Probabilistic U-Net (Kohl et al. 2018) and the
// Generalized Probabilistic U-Net (Bhat et al. 2022), built as the latter's reference code
// that the paper's comparison ran; docs/models.md lists every choice. Four kinds:
//
//   prob_unet_aa      one axis-aligned Gaussian latent, analytic KL, β = 10 (the paper's)
//   prob_unet_aa_mix  a mixture of K axis-aligned Gaussians, Monte-Carlo KL, β = 1
//   prob_unet_fc      one full-covariance Gaussian (Cholesky factor), analytic KL, β = 1
//   prob_unet_fc_mix  a mixture of K full-covariance Gaussians, Monte-Carlo KL, β = 1
//
// The computation is models/prob_unet_step.hpp. The reference also adds 1e-5·Σ‖θ‖₂ over the
// prior and posterior nets and Adam's coupled weight decay 1e-5; here regularisation is the
// trainer's (AdamW weight decay), see docs/models.md.
//
// Shape legend: B cases, C image channels, K components, Z latent size, S Monte-Carlo KL
// samples per case, n draws per image.
#pragma once

#include <cmath>
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
#include "ambiseg/models/prob_unet_step.hpp"

namespace ambiseg::models {

// What tells the four kinds apart, and each one's reference defaults (the paper's Table 1
// counts fix Z and K: docs/models.md).
struct prob_unet_variant {
  std::string_view kind;
  nn::latent_covariance covariance;
  bool mixture;
  int latent_dim, n_components;
  double beta;
};

inline constexpr prob_unet_variant prob_unet_aa_variant{"prob_unet_aa", nn::latent_covariance::diagonal, false, 6, 1,
                                                        10.0};
inline constexpr prob_unet_variant prob_unet_aa_mix_variant{"prob_unet_aa_mix", nn::latent_covariance::diagonal, true,
                                                            4, 5, 1.0};
inline constexpr prob_unet_variant prob_unet_fc_variant{"prob_unet_fc", nn::latent_covariance::full, false, 2, 1, 1.0};
inline constexpr prob_unet_variant prob_unet_fc_mix_variant{"prob_unet_fc_mix", nn::latent_covariance::full, true, 2,
                                                            9, 1.0};

inline constexpr std::string_view prob_unet_aa_kind = prob_unet_aa_variant.kind;

struct prob_unet_config {
  nn::prob_unet_net_config net;
  double beta = 10.0;
  double temperature = 0.1;  // mixtures: Gumbel-softmax τ (the reference's default)
  int mc_samples = 1000;     // mixtures: Monte-Carlo KL samples per case (the reference's)

  // "paper": the reference's LIDC setup (the paper's Table 1 counts with one image
  // channel); "small" and "example" for CPU work. The variant sets Z, K, covariance and β.
  static prob_unet_config preset(const std::string& name, const prob_unet_variant& v = prob_unet_aa_variant) {
    prob_unet_config c;
    c.net.latent_dim = v.latent_dim;
    c.net.n_components = v.n_components;
    c.net.covariance = v.covariance;
    c.beta = v.beta;
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
    throw_if<value_error>(!(temperature > 0) || !(temperature <= 100), "prob_unet: temperature ", temperature,
                          " (above 0, at most 100)");
    throw_if<value_error>(mc_samples < 1 || mc_samples > 100000, "prob_unet: mc_samples ", mc_samples,
                          " (1 to 100000)");
  }
  // A configuration of another kind (a JSON edited by hand, a program's own struct).
  void validate(int image_channels, const prob_unet_variant& v) const {
    validate(image_channels);
    throw_if<value_error>(net.covariance != v.covariance, v.kind, ": needs ",
                          v.covariance == nn::latent_covariance::full ? "full" : "diagonal",
                          " covariance (the model kind sets it)");
    throw_if<value_error>(v.mixture != (net.n_components > 1), v.kind, ": n_components ", net.n_components,
                          v.mixture ? " (a mixture needs 2 or more)" : " (one Gaussian: 1)");
  }
};

namespace detail {

inline void prob_unet_config_to_json(nlohmann::json& j, const prob_unet_config& c) {
  j = nlohmann::json(c.net);
  j["beta"] = c.beta;
  if (c.net.n_components > 1) {
    j["temperature"] = c.temperature;
    j["mc_samples"] = c.mc_samples;
  }
}

// {"preset": "paper"|"small"|"example"} (default "paper"), then any field overrides it:
// num_filters, convs_per_block, latent_dim, fcomb_convs, batch_norm, bn_eps, bn_momentum,
// beta; mixtures also n_components, temperature, mc_samples.
inline prob_unet_config prob_unet_config_from_json(const nlohmann::json& j, const prob_unet_variant& v) {
  const std::string kind(v.kind);
  throw_if<format_error>(!j.is_object(), kind, ": the config must be a JSON object, got ", j.dump());
  static const char* known[] = {"preset", "num_filters", "convs_per_block", "latent_dim", "fcomb_convs",
                                "batch_norm", "bn_eps", "bn_momentum", "beta"};
  static const char* mixture_only[] = {"n_components", "temperature", "mc_samples"};
  for (const auto& [key, value] : j.items()) {
    bool ok = false, mixture_key = false;
    for (const char* k : known) ok = ok || key == k;
    for (const char* k : mixture_only) mixture_key = mixture_key || key == k;
    throw_if<format_error>(mixture_key && !v.mixture, kind, ": '", key,
                           "' is a mixture's setting (prob_unet_aa_mix, prob_unet_fc_mix)");
    throw_if<format_error>(!ok && !mixture_key, kind, ": unknown config key '", key, "'");
  }
  try {
    prob_unet_config d = prob_unet_config::preset(j.value("preset", std::string("paper")), v);
    d.net.num_filters = j.value("num_filters", d.net.num_filters);
    d.net.convs_per_block = j.value("convs_per_block", d.net.convs_per_block);
    d.net.latent_dim = j.value("latent_dim", d.net.latent_dim);
    d.net.n_components = j.value("n_components", d.net.n_components);
    d.net.fcomb_convs = j.value("fcomb_convs", d.net.fcomb_convs);
    d.net.batch_norm = j.value("batch_norm", d.net.batch_norm);
    d.net.bn_eps = j.value("bn_eps", d.net.bn_eps);
    d.net.bn_momentum = j.value("bn_momentum", d.net.bn_momentum);
    d.beta = j.value("beta", d.beta);
    d.temperature = j.value("temperature", d.temperature);
    d.mc_samples = j.value("mc_samples", d.mc_samples);
    d.validate(1, v);
    return d;
  } catch (const nlohmann::json::exception& e) {
    throw format_error(kind + ": bad config JSON: " + e.what());
  } catch (const value_error& e) {
    throw format_error(e.what());
  }
}

}  // namespace detail

// The configuration as one kind reads and writes it (the kind's defaults and keys).
template <const prob_unet_variant& V>
struct prob_unet_kind_config : prob_unet_config {
  prob_unet_kind_config() : prob_unet_config(prob_unet_config::preset("paper", V)) {}
  prob_unet_kind_config(const prob_unet_config& c) : prob_unet_config(c) {}  // NOLINT: a checked view of c
  static prob_unet_kind_config preset(const std::string& name) { return prob_unet_config::preset(name, V); }
  void validate(int image_channels) const { prob_unet_config::validate(image_channels, V); }
};

template <const prob_unet_variant& V>
void to_json(nlohmann::json& j, const prob_unet_kind_config<V>& c) {
  detail::prob_unet_config_to_json(j, c);
}
template <const prob_unet_variant& V>
void from_json(const nlohmann::json& j, prob_unet_kind_config<V>& c) {
  c = detail::prob_unet_config_from_json(j, V);
}

template <const prob_unet_variant& V, class D = cpu>
class prob_unet_model {
 public:
  using device_type = D;
  using config_type = prob_unet_kind_config<V>;
  static constexpr std::string_view kind = V.kind;

  prob_unet_model(const config_type& config, const build_context& context)
      : config_((config.validate(context.image_channels), config)),
        image_channels_(context.image_channels),
        nets_(config_.net, image_channels_) {
    nets_.allocate(context.seed);
  }
  prob_unet_model(const prob_unet_model&) = delete;
  prob_unet_model& operator=(const prob_unet_model&) = delete;

  static std::vector<typename parameter_store<float, D>::entry> parameter_layout(const config_type& config,
                                                                                const build_context& context) {
    config.validate(context.image_channels);
    const prob_unet_networks<float, D> layout(config.net, context.image_channels);
    return layout.params.entries();
  }
  static input_spec inputs_of(const config_type& config, const build_context& context) {
    return {context.image_channels, config.net.size_divisor()};
  }

  parameter_store<float, D>& parameters() { return nets_.params; }
  const parameter_store<float, D>& parameters() const { return nets_.params; }
  parameter_store<float, D>& buffers() { return nets_.buffers; }
  nlohmann::json config_json() const { return config_; }
  input_spec inputs() const { return inputs_of(config_, {image_channels_, 0}); }
  // One U-Net and prior pass per image; each draw then runs only fcomb.
  std::int64_t network_passes(const sampling_request&) const { return 1; }
  const config_type& config() const { return config_; }
  prob_unet_networks<float, D>& networks() { return nets_; }

  void loss_and_gradient(training_inputs<D> batch, rng& g, tensor_view<double, D> report) {
    require_whole_batch(batch.rows, kind);
    const std::int64_t b = batch.images.size(0), k = config_.net.n_components, z = config_.net.latent_dim;
    prob_unet_noise<float, D> noise;
    if (k == 1) {
      noise.eps = draw(0, shape{b, z}, g, normal);                              // ε [B,Z]
    } else {
      const std::int64_t s = config_.mc_samples;
      noise.gumbel = draw(0, shape{b, k}, g, gumbel);                           // [B,K]
      noise.eps = draw(1, shape{b, k, z}, g, normal);                           // [B,K,Z]
      noise.kl_gumbel = draw(2, shape{s, b, k}, g, gumbel);                     // [S,B,K]
      noise.kl_eps = draw(3, shape{s, b, k, z}, g, normal);                     // [S,B,K,Z]
    }
    step_.loss_and_gradient(nets_, {config_.beta, config_.temperature}, batch.images, batch.masks, noise, report);
  }

  void sample(tensor_view<const float, D> images, const sampling_request& request, rng& g,
              tensor_view<float, D> scores, tensor_view<const float, D> init_noise = {}) {
    const std::string who(kind);
    throw_if<value_error>(init_noise.data() != nullptr, who,
                          ": its draws start from latent samples, not from given noise (init_noise)");
    throw_if<value_error>(request.n < 1, who, ": n = ", request.n, " masks per image");
    const std::int64_t b = images.size(0), h = images.size(2), w = images.size(3);
    const std::int64_t k = config_.net.n_components, z = config_.net.latent_dim;
    expect_shape((who + "::sample").c_str(), "scores", scores, shape{b * request.n, 1, h, w});
    step_.encode(nets_, images);
    for (int j = 0; j < request.n; ++j) {
      const auto gumbel_noise = k > 1 ? draw(0, shape{b, k}, g, gumbel) : tensor_view<const float, D>{};  // [B,K]
      const auto eps = draw(1, shape{b, k, z}, g, normal);                      // ε [B,K,Z]
      place_draw(scores, step_.draw(nets_, eps, gumbel_noise), request.n, j);   // [B,1,H,W]
    }
  }

 private:
  enum noise_kind { normal, gumbel };
  // Noise drawn on the host in row order and uploaded (the same draws on every device):
  // N(0, 1), or Gumbel(0, 1) = −log(−log u) with u uniform in (0, 1).
  tensor_view<const float, D> draw(int slot, const shape& s, rng& g, noise_kind what) {
    tensor<float>& host = noise_host_[slot];
    host.resize(s);
    for (std::int64_t i = 0; i < host.numel(); ++i) {
      if (what == normal) {
        host[i] = static_cast<float>(g.normal());
      } else {
        double u = g.uniform_open0();
        while (u >= 1.0) u = g.uniform_open0();
        host[i] = static_cast<float>(-std::log(-std::log(u)));
      }
    }
    noise_[slot].resize(s);
    enqueue_upload<D>(noise_[slot].data(), host.data(), sizeof(float) * static_cast<std::size_t>(host.numel()));
    return noise_[slot].cview();
  }

  config_type config_;
  int image_channels_;
  prob_unet_networks<float, D> nets_;
  prob_unet_step<float, D> step_;
  tensor<float> noise_host_[4];
  tensor<float, D> noise_[4];
};

template <class D = cpu>
using prob_unet_aa = prob_unet_model<prob_unet_aa_variant, D>;
template <class D = cpu>
using prob_unet_aa_mix = prob_unet_model<prob_unet_aa_mix_variant, D>;
template <class D = cpu>
using prob_unet_fc = prob_unet_model<prob_unet_fc_variant, D>;
template <class D = cpu>
using prob_unet_fc_mix = prob_unet_model<prob_unet_fc_mix_variant, D>;

static_assert(segmentation_model<prob_unet_aa<cpu>>);
static_assert(model_with_buffers<prob_unet_fc_mix<cpu>>);

}  // namespace ambiseg::models
