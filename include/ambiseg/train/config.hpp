// ambiseg/train/config.hpp — a training run's configuration: which model (by kind, with its
// own config JSON, validated by the model registry when the trainer builds it), the
// optimiser, the schedule, the data pipeline and the seed. Parsing it needs no network.
//
// JSON (stored as a checkpoint's "config"):
//   {"model": {"kind": "diffusion", "config": {...}}, "adamw": {...}, "lr": {...},
//    "clip_norm", "ema_decay", "batch_size", "crop_size", "crop", "encoding", "seed"}
// Checkpoints written before models had kinds hold "net" and "policy" at the top level
// instead of "model"; they read as kind "diffusion" with {"net", "policy"} as its config.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ambiseg/core/error.hpp"
#include "ambiseg/data/batches.hpp"
#include "ambiseg/data/dataset.hpp"
#include "ambiseg/models/diffusion_config.hpp"
#include "ambiseg/models/model.hpp"
#include "ambiseg/optim/adamw.hpp"
#include "ambiseg/optim/lr_schedule.hpp"

namespace ambiseg::train {

using models::model_spec;

struct trainer_config {
  model_spec model = models::diffusion_spec();  // the paper's model with nn::unet_config::small()
  optim::adamw_options adamw;               // SPEC §7: lr 1e-4, wd 0.01, β (0.9, 0.999)
  optim::warmup_cosine_schedule lr;         // base_lr overrides adamw.lr
  double clip_norm = 1.0;
  std::optional<double> ema_decay;          // none: no EMA
  std::int64_t batch_size = 8;
  std::int64_t crop_size = 64;
  data::crop_mode crop = data::crop_mode::random;
  data::image_encoding encoding = data::image_encoding::grey;
  std::uint64_t seed = 0;

  int image_channels() const { return data::encoded_channels(encoding); }

  // Everything but the model's own config (the registry checks that, knowing the model).
  void validate() const {
    throw_if<value_error>(model.kind.empty(), "trainer_config: no model kind");
    throw_if<value_error>(!model.config.is_object(), "trainer_config: the model config must be a JSON object");
    adamw.validate();
    lr.validate();
    throw_if<value_error>(!(clip_norm > 0.0), "trainer_config: clip norm ", clip_norm, " must be > 0");
    throw_if<value_error>(ema_decay && !(*ema_decay >= 0.0 && *ema_decay < 1.0), "trainer_config: EMA decay ",
                          ema_decay.value_or(0.0), " must lie in [0, 1)");
    throw_if<value_error>(batch_size < 1 || batch_size > (1 << 20), "trainer_config: batch size ", batch_size,
                          " must lie in [1, 2^20]");
    throw_if<value_error>(crop_size < 1 || crop_size > (1 << 15), "trainer_config: crop size ", crop_size,
                          " must lie in [1, 32768]");
  }
};

inline void to_json(nlohmann::json& j, const trainer_config& c) {
  j = nlohmann::json{
      {"model", {{"kind", c.model.kind}, {"config", c.model.config}}},
      {"adamw", {{"lr", c.adamw.lr}, {"beta1", c.adamw.beta1}, {"beta2", c.adamw.beta2},
                 {"eps", c.adamw.eps}, {"weight_decay", c.adamw.weight_decay}}},
      {"lr", {{"base_lr", c.lr.base_lr}, {"warmup_steps", c.lr.warmup_steps},
              {"total_steps", c.lr.total_steps}, {"decay_steps", c.lr.decay_steps}}},
      {"clip_norm", c.clip_norm},
      {"ema_decay", c.ema_decay ? nlohmann::json(*c.ema_decay) : nlohmann::json(nullptr)},
      {"batch_size", c.batch_size},
      {"crop_size", c.crop_size},
      {"crop", c.crop == data::crop_mode::random ? "random" : "central"},
      {"encoding", c.encoding == data::image_encoding::grey ? "grey" : "imagenet_rgb"},
      {"seed", c.seed}};
}

inline void from_json(const nlohmann::json& j, trainer_config& c) {
  throw_if<format_error>(!j.is_object(), "trainer_config: JSON must be an object");
  trainer_config d;
  try {
    if (j.contains("model")) {
      d.model.kind = j.at("model").at("kind").get<std::string>();
      d.model.config = j.at("model").at("config");
    } else {
      d.model.kind = "diffusion";
      d.model.config = {{"net", j.at("net")}, {"policy", j.at("policy")}};
    }
    const auto& a = j.at("adamw");
    d.adamw = {a.at("lr").get<double>(), a.at("beta1").get<double>(), a.at("beta2").get<double>(),
               a.at("eps").get<double>(), a.at("weight_decay").get<double>()};
    const auto& l = j.at("lr");
    d.lr = {l.at("base_lr").get<double>(), l.at("warmup_steps").get<std::int64_t>(),
            l.at("total_steps").get<std::int64_t>(), l.at("decay_steps").get<std::int64_t>()};
    d.clip_norm = j.at("clip_norm").get<double>();
    if (!j.at("ema_decay").is_null()) d.ema_decay = j.at("ema_decay").get<double>();
    d.batch_size = j.at("batch_size").get<std::int64_t>();
    d.crop_size = j.at("crop_size").get<std::int64_t>();
    const std::string crop = j.at("crop").get<std::string>(), encoding = j.at("encoding").get<std::string>();
    throw_if<format_error>(crop != "random" && crop != "central", "trainer_config: crop '", crop,
                           "' (expected random or central)");
    throw_if<format_error>(encoding != "grey" && encoding != "imagenet_rgb", "trainer_config: encoding '",
                           encoding, "' (expected grey or imagenet_rgb)");
    d.crop = crop == "central" ? data::crop_mode::central : data::crop_mode::random;
    d.encoding = encoding == "grey" ? data::image_encoding::grey : data::image_encoding::imagenet_rgb;
    d.seed = j.at("seed").get<std::uint64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw format_error(std::string("trainer_config: bad JSON: ") + e.what());
  }
  try {
    d.validate();
  } catch (const value_error& e) {
    throw format_error(std::string("trainer_config: ") + e.what());
  }
  c = std::move(d);
}

}  // namespace ambiseg::train
