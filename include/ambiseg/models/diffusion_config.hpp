// ambiseg/models/diffusion_config.hpp — the diffusion segmenter's configuration, readable
// without building anything: the run-time policy names (schedule, prediction, weighting,
// sampler), policy_choice, the UNet's config and diffusion_spec (a trainer_config's model).
// JSON: {"net": nn::unet_config, "policy": {"schedule", "input_scale", "prediction",
// "weighting", "sigmoid_bias", "stratified_t"}}.
#pragma once

#include <cmath>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/error.hpp"
#include "ambiseg/models/model.hpp"
#include "ambiseg/nn/config.hpp"

namespace ambiseg::models {

inline constexpr std::string_view diffusion_kind = "diffusion";

// One-step samplers (diffusion/samplers.hpp) and multistep solvers (dpm_solver.hpp,
// unipc.hpp); the solvers are meant for few steps (5–20).
enum class sampler_kind { ddim, ddpm_small, ddpm_large, dpmpp_2m, dpmpp_3m, sde_dpmpp_2m, unipc, unipc3 };

inline const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> v{"cosine", "linear", "linear_simple", "parabola"};
  return v;
}
inline const std::vector<std::string>& prediction_names() {
  static const std::vector<std::string> v{"x", "eps", "v"};
  return v;
}
inline const std::vector<std::string>& weighting_names() {
  static const std::vector<std::string> v{"snr", "trunc_snr", "snr_plus_one", "uniform", "sigmoid"};
  return v;
}
inline const std::vector<std::string>& sampler_names() {
  static const std::vector<std::string> v{"ddim",     "ddpm",         "ddpm_small", "ddpm_large", "dpmpp_2m",
                                          "dpmpp_3m", "sde_dpmpp_2m", "unipc",      "unipc3"};
  return v;
}

namespace policy_detail {
inline std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : "|") + n;
  return s;
}
inline void check_name(const char* what, const std::string& value, const std::vector<std::string>& allowed) {
  for (const auto& a : allowed)
    if (a == value) return;
  throw value_error(std::string("unknown ") + what + " '" + value + "' (expected " + joined(allowed) + ")");
}
}  // namespace policy_detail

// "ddpm" is the reference default, DDPM with the large variance.
inline sampler_kind parse_sampler(const std::string& name) {
  policy_detail::check_name("sampler", name, sampler_names());
  if (name == "ddim") return sampler_kind::ddim;
  if (name == "ddpm_small") return sampler_kind::ddpm_small;
  if (name == "dpmpp_2m") return sampler_kind::dpmpp_2m;
  if (name == "dpmpp_3m") return sampler_kind::dpmpp_3m;
  if (name == "sde_dpmpp_2m") return sampler_kind::sde_dpmpp_2m;
  if (name == "unipc") return sampler_kind::unipc;
  if (name == "unipc3") return sampler_kind::unipc3;
  return sampler_kind::ddpm_large;
}

inline std::string sampler_name(sampler_kind s) {
  switch (s) {
    case sampler_kind::ddim: return "ddim";
    case sampler_kind::ddpm_small: return "ddpm_small";
    case sampler_kind::ddpm_large: return "ddpm_large";
    case sampler_kind::dpmpp_2m: return "dpmpp_2m";
    case sampler_kind::dpmpp_3m: return "dpmpp_3m";
    case sampler_kind::sde_dpmpp_2m: return "sde_dpmpp_2m";
    case sampler_kind::unipc: return "unipc";
    case sampler_kind::unipc3: return "unipc3";
  }
  return "ddpm_large";
}

inline const std::vector<std::string>& spacing_names() {
  static const std::vector<std::string> v{"uniform_t", "uniform_lambda"};
  return v;
}

struct policy_choice {
  std::string schedule = "cosine";
  double input_scale = 0.1;       // b of input_scaled<S> (paper: 0.1)
  std::string prediction = "x";
  std::string weighting = "snr_plus_one";  // the reference config; the paper's final is trunc_snr
  double sigmoid_bias = 0.0;      // b̃ of the sigmoid weighting
  bool stratified_t = true;       // stratified t per batch (reference) or plain uniform

  void validate() const {
    policy_detail::check_name("schedule", schedule, schedule_names());
    policy_detail::check_name("prediction", prediction, prediction_names());
    policy_detail::check_name("weighting", weighting, weighting_names());
    throw_if<value_error>(!(input_scale > 0.0 && input_scale <= 1.0), "policy_choice: input scale b = ",
                          input_scale, " must lie in (0, 1]");
    throw_if<value_error>(!std::isfinite(sigmoid_bias), "policy_choice: sigmoid bias ", sigmoid_bias);
  }
  friend bool operator==(const policy_choice&, const policy_choice&) = default;
};

inline void to_json(nlohmann::json& j, const policy_choice& p) {
  j = nlohmann::json{{"schedule", p.schedule},   {"input_scale", p.input_scale},
                     {"prediction", p.prediction}, {"weighting", p.weighting},
                     {"sigmoid_bias", p.sigmoid_bias}, {"stratified_t", p.stratified_t}};
}
inline void from_json(const nlohmann::json& j, policy_choice& p) {
  policy_choice d;
  try {
    d.schedule = j.value("schedule", d.schedule);
    d.input_scale = j.value("input_scale", d.input_scale);
    d.prediction = j.value("prediction", d.prediction);
    d.weighting = j.value("weighting", d.weighting);
    d.sigmoid_bias = j.value("sigmoid_bias", d.sigmoid_bias);
    d.stratified_t = j.value("stratified_t", d.stratified_t);
  } catch (const nlohmann::json::exception& e) {
    throw format_error(std::string("policy_choice: bad JSON: ") + e.what());
  }
  try {
    d.validate();
  } catch (const value_error& e) {
    throw format_error(e.what());
  }
  p = d;
}

struct diffusion_segmenter_config {
  nn::unet_config net = nn::unet_config::small();
  policy_choice policy;

  // The network's input and head follow the data and the prediction: cat[x_t, image]
  // channels, and tanh on the output for x-prediction only (the reference's choice).
  nn::unet_config effective_net(int image_channels) const {
    nn::unet_config c = net;
    c.out_channels = 1;
    c.in_channels = 1 + image_channels;
    c.final_tanh = policy.prediction == "x";
    return c;
  }
  void validate(int image_channels) const {
    throw_if<value_error>(image_channels < 1, "diffusion_segmenter: ", image_channels, " image channels");
    effective_net(image_channels).validate();
    policy.validate();
  }
  friend bool operator==(const diffusion_segmenter_config&, const diffusion_segmenter_config&) = default;
};

inline void to_json(nlohmann::json& j, const diffusion_segmenter_config& c) {
  j = nlohmann::json{{"net", c.net}, {"policy", c.policy}};
}
inline void from_json(const nlohmann::json& j, diffusion_segmenter_config& c) {
  throw_if<format_error>(!j.is_object() || !j.contains("net") || !j.contains("policy"),
                         "diffusion_segmenter: the config needs \"net\" and \"policy\"");
  diffusion_segmenter_config d;
  d.net = j.at("net").get<nn::unet_config>();
  d.policy = j.at("policy").get<policy_choice>();
  c = std::move(d);
}

// The model_spec that trains this configuration (trainer_config::model).
inline model_spec diffusion_spec(const diffusion_segmenter_config& c = {}) {
  return {std::string(diffusion_kind), nlohmann::json(c)};
}

}  // namespace ambiseg::models
