// ambiseg/train/trainer.hpp — one diffusion UNet trained with AdamW (SPEC §4, §7).
//
// Per iteration:
//   batch       data::batch_sampler: cases shuffled per epoch, one annotation per case
//               drawn uniformly, random or central crops → images [B,C,s,s], x0 [B,1,s,s]
//   noise       t stratified (or uniform) per batch, ε ~ N(0, I), from the noise rng
//   loss        the x-space weighted loss through the parameterisation; dL/df
//   backward    unet::backward(dL/df) → parameter gradients
//   update      clip to global norm, lr from warm-up + cosine, AdamW, optional EMA
//
// Determinism: the run is a function of the seed. Two rngs drive it, the batch sampler's
// (derived from seed, stream 1) and the noise rng (stream 2). A checkpoint stores the
// weights, the AdamW moments, the EMA and the noise rng; the batch sampler is replayed to
// the checkpoint's step on resume (cropping only, cheap), and its rng state is stored
// too and compared after the replay, so a resumed run continues bit for bit.
//
// Devices: trainer<Data, Device>. With Device = cpu (the default) the step is the host
// facade's (diffusion_model) on unet<float>, exactly as it always was. With Device = cuda
// the same loop runs unet<float, cuda>, adamw<float, cuda>, ema<float, cuda> and the
// device diffusion facade (device_policies.hpp) on the trainer's own cuda_context (one
// stream per model): the batch is cropped on the host and uploaded each step, t and ε are
// drawn on the host from the same noise rng in the same order, so a seed gives the same
// initial weights, batches and draws as on the CPU; the results agree to float rounding
// (docs/cuda.md, "The device trainer"). Checkpoints are the same files on every device
// (train/checkpoint.hpp stages device buffers through host copies), so a run saved on one
// device resumes on the other. The third parameter, DeviceLayer, runs the device path with
// Device = cpu (host tensors through diffusion/device.hpp): what lets the tests exercise
// the GPU trainer's orchestration on a machine without a GPU.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ambiseg/core/device_context.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/data/batches.hpp"
#include "ambiseg/data/dataset.hpp"
#include "ambiseg/io/checkpoint.hpp"
#include "ambiseg/train/checkpoint.hpp"
#include "ambiseg/nn/unet.hpp"
#include "ambiseg/optim/adamw.hpp"
#include "ambiseg/optim/clip.hpp"
#include "ambiseg/optim/ema.hpp"
#include "ambiseg/optim/lr_schedule.hpp"
#include "ambiseg/diffusion/device.hpp"
#include "ambiseg/train/device_policies.hpp"
#include "ambiseg/train/policies.hpp"

namespace ambiseg::train {

struct trainer_config {
  nn::unet_config net = nn::unet_config::small();
  policy_choice policy;
  optim::adamw_options adamw;               // SPEC §7: lr 1e-4, wd 0.01, β (0.9, 0.999)
  optim::warmup_cosine_schedule lr;         // base_lr overrides adamw.lr
  double clip_norm = 1.0;
  std::optional<double> ema_decay;          // none: no EMA
  std::int64_t batch_size = 8;
  std::int64_t crop_size = 64;
  data::crop_mode crop = data::crop_mode::random;
  data::image_encoding encoding = data::image_encoding::grey;
  std::uint64_t seed = 0;

  // The network's input and head follow the data and the prediction: cat[x_t, image]
  // channels, and tanh on the output for x-prediction only (the reference's choice).
  nn::unet_config effective_net() const {
    nn::unet_config c = net;
    c.out_channels = 1;
    c.in_channels = 1 + data::encoded_channels(encoding);
    c.final_tanh = policy.prediction == "x";
    return c;
  }

  void validate() const {
    effective_net().validate();
    policy.validate();
    adamw.validate();
    lr.validate();
    throw_if<value_error>(!(clip_norm > 0.0), "trainer_config: clip norm ", clip_norm, " must be > 0");
    throw_if<value_error>(ema_decay && !(*ema_decay >= 0.0 && *ema_decay < 1.0), "trainer_config: EMA decay ",
                          ema_decay.value_or(0.0), " must lie in [0, 1)");
    throw_if<value_error>(batch_size < 1, "trainer_config: batch size ", batch_size, " must be >= 1");
    const int div = effective_net().size_divisor();
    throw_if<value_error>(crop_size < div || crop_size % div != 0, "trainer_config: crop size ", crop_size,
                          " must be a positive multiple of ", div, " for this network");
  }
};

inline void to_json(nlohmann::json& j, const trainer_config& c) {
  j = nlohmann::json{
      {"net", c.effective_net()},
      {"policy", c.policy},
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
    d.net = j.at("net").get<nn::unet_config>();
    d.policy = j.at("policy").get<policy_choice>();
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
    d.crop = j.at("crop").get<std::string>() == "central" ? data::crop_mode::central : data::crop_mode::random;
    d.encoding = j.at("encoding").get<std::string>() == "grey" ? data::image_encoding::grey
                                                               : data::image_encoding::imagenet_rgb;
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

// The denoiser of the facade on top of a float UNet: t (double) → float, cond = image.
class unet_denoiser {
 public:
  unet_denoiser(nn::unet<float>& net, nn::pass mode) : net_(&net), mode_(mode) {}
  void operator()(tensor_view<const float> x_t, std::span<const double> t, tensor_view<const float> cond,
                  tensor_view<float> f_out) {
    t_.resize(shape{static_cast<std::int64_t>(t.size())});
    for (std::size_t i = 0; i < t.size(); ++i) t_[static_cast<std::int64_t>(i)] = static_cast<float>(t[i]);
    const tensor_view<const float> f = net_->forward(x_t, cond, t_.cview(), mode_);
    std::copy(f.data(), f.data() + f.numel(), f_out.data());
  }

 private:
  nn::unet<float>* net_;
  nn::pass mode_;
  tensor<float> t_;
};

struct step_report {
  std::int64_t step = 0;  // completed iterations after this one
  double loss = 0.0;
  double lr = 0.0;
  double grad_norm = 0.0;  // before clipping
};

template <data::dataset Data, class Device = cpu, bool DeviceLayer = !std::same_as<Device, cpu>>
class trainer {
  static constexpr bool host_facade = !DeviceLayer;
  static_assert(!host_facade || std::same_as<Device, cpu>,
                "trainer: a device other than the cpu runs the device layer (DeviceLayer = true)");

 public:
  using device_type = Device;
  using network_type = nn::unet<float, Device>;

  // `train_data` must outlive the trainer.
  trainer(const trainer_config& config, const Data& train_data)
      : config_(config),
        diffusion_((config_.validate(), make_diffusion(config_.policy))),
        net_(config_.effective_net(), rng::derive(config_.seed, 0)()),
        denoiser_(net_, nn::pass::training),
        opt_(net_.parameters().flat_values().numel(), config_.adamw),
        data_(train_data),
        batches_(std::make_unique<data::batch_sampler<Data>>(train_data, batch_config(), rng::derive(config_.seed, 1)())),
        noise_rng_(rng::derive(config_.seed, 2)()) {
    if constexpr (!host_facade) device_diffusion_ = make_device_diffusion<Device>(config_.policy);
    if (config_.ema_decay) ema_.emplace(net_.parameters(), *config_.ema_decay);
    for (std::size_t i = 0; i < data_.size(); ++i)
      throw_if<value_error>(data_[i].height() < config_.crop_size || data_[i].width() < config_.crop_size,
                            "trainer: case '", data_[i].id, "' is ", data_[i].height(), "x", data_[i].width(),
                            ", smaller than the crop size ", config_.crop_size);
  }

  // The denoiser points into net_, so a trainer stays where it was built.
  trainer(const trainer&) = delete;
  trainer& operator=(const trainer&) = delete;

  const trainer_config& config() const { return config_; }
  const diffusion_model& diffusion() const { return *diffusion_; }
  network_type& network() { return net_; }
  const optim::adamw<float, Device>& optimizer() const { return opt_; }
  const optim::ema<float, Device>* ema() const { return ema_ ? &*ema_ : nullptr; }
  std::int64_t steps_done() const { return step_; }
  // The model's context (a cuda_context on cuda): open a device_context<Device>::scope on
  // it to run the network outside step() on the trainer's stream.
  device_context<Device>& context() { return context_; }

  // One iteration. A non-finite loss or gradient norm throws value_error and leaves the
  // weights, the optimiser state and the EMA as they were (the batch and the noise drawn
  // for the step are spent).
  step_report step() {
    const typename device_context<Device>::scope on_stream(context_);
    batches_->next(batch_);
    if constexpr (host_facade) {
      diffusion_->draw_training_noise(batch_.x0.shape(), noise_rng_, noise_);
      const double loss =
          diffusion_->training_loss(std::ref(denoiser_), batch_.x0.cview(), batch_.images.cview(), noise_);
      auto& params = net_.parameters();
      params.zero_grad();
      net_.backward(noise_.grad_f.cview());
      const double norm = optim::clip_grad_norm(params, config_.clip_norm);
      const double lr = config_.lr.lr(step_);
      opt_.set_lr(lr);
      opt_.step(params);
      if (ema_) ema_->update(params);
      ++step_;
      return {step_, loss, lr, norm};
    } else {
      return device_step();
    }
  }

  nlohmann::json config_json() const { return nlohmann::json(config_); }

  void save(const std::filesystem::path& path) const {
    const typename device_context<Device>::scope on_stream(context_);
    train::training_state state;
    state.step = step_;
    state.rng_state = noise_rng_.state();
    state.config = config_json();
    state.extra["batch_rng"] = train::detail::rng_to_json(batches_->generator().state()).dump();
    train::save_training_checkpoint(path, net_.parameters(), opt_, state, ema());
  }

  // Restores a checkpoint of this configuration (same JSON config) and replays the batch
  // sampler to its step.
  void resume(const std::filesystem::path& path) {
    const typename device_context<Device>::scope on_stream(context_);
    const auto file_config = read_config(path);
    throw_if<value_error>(file_config != config_json(), "trainer::resume: '", path.string(),
                          "' was written by a different configuration:\n  file:  ", file_config.dump(),
                          "\n  this:  ", config_json().dump());
    const train::training_state state =
        train::load_training_checkpoint(path, net_.parameters(), opt_, ema_ ? &*ema_ : nullptr);
    batches_ = std::make_unique<data::batch_sampler<Data>>(data_, batch_config(), rng::derive(config_.seed, 1)());
    for (std::int64_t s = 0; s < state.step; ++s) batches_->next(batch_);
    auto it = state.extra.find("batch_rng");
    throw_if<format_error>(it == state.extra.end(), "trainer::resume: '", path.string(),
                           "' lacks the batch sampler state");
    throw_if<format_error>(train::detail::rng_to_json(batches_->generator().state()).dump() != it->second,
                           "trainer::resume: replaying the batch sampler to step ", state.step,
                           " does not reproduce the saved state (different data?)");
    noise_rng_.set_state(state.rng_state);
    step_ = state.step;
  }

  static nlohmann::json read_config(const std::filesystem::path& path) {
    const auto file = io::safetensors_file::open(path);
    auto it = file.metadata().find("config");
    throw_if<format_error>(it == file.metadata().end(), "read_config: '", path.string(),
                           "' has no 'config' metadata");
    try {
      return nlohmann::json::parse(it->second);
    } catch (const nlohmann::json::exception& e) {
      throw format_error(std::string("read_config: bad JSON: ") + e.what());
    }
  }

 private:
  data::batch_config batch_config() const {
    return {config_.batch_size, config_.crop_size, config_.crop, config_.encoding};
  }
  // The device layer's step: everything is enqueued on the context's stream and the host
  // waits once, at the end, to read the step's report [B + 2] = per-sample losses, the
  // loss, the gradient norm. AdamW and the EMA read the loss and the norm on the device as
  // their guard, so a non-finite step changes no weight although nobody looked before the
  // update; the host then finds the value, sets the optimiser's step counter back and
  // throws the CPU trainer's error.
  step_report device_step() {
    upload(batch_.x0.cview(), x0_);
    upload(batch_.images.cview(), images_);
    device_diffusion_->draw_training_noise(batch_.x0.shape(), noise_rng_, noise_);
    const std::int64_t b = batch_.x0.size(0);
    if (!(report_.shape() == shape{b + 2})) report_ = tensor<double, Device>(shape{b + 2});
    double* const report = report_.data();
    device_diffusion_->training_loss_async(std::ref(denoiser_), x0_.cview(), images_.cview(), noise_,
                                           tensor_view<double, Device>(report, shape{b + 1}));
    auto& params = net_.parameters();
    params.zero_grad();
    net_.backward(noise_.grad_f.cview());
    optim::clip_grad_norm_async(params, config_.clip_norm,
                                tensor_view<double, Device>(report + b + 1, shape{1}));
    const tensor_view<const double, Device> guard(report + b, shape{2});  // loss, norm
    const double lr = config_.lr.lr(step_);
    opt_.set_lr(lr);
    // Until the report says the step counts, the counters go back on any way out (a
    // non-finite value below, or a CUDA error in the launches or the read-back).
    struct counters_back {
      trainer& t;
      std::int64_t optimiser_steps, ema_updates;
      bool keep = false;
      ~counters_back() {
        if (keep) return;
        t.opt_.set_steps(optimiser_steps);
        if (t.ema_) t.ema_->set_updates(ema_updates);
      }
    } rollback{*this, opt_.steps(), ema_ ? ema_->updates() : 0};
    opt_.step(params, guard);
    if (ema_) ema_->update(params, guard);

    std::vector<double>& host = report_host_;
    host.resize(static_cast<std::size_t>(b + 2));
    read_back<Device>(host.data(), report, sizeof(double) * host.size());  // the step's one wait
    const double loss = host[static_cast<std::size_t>(b)], norm = host[static_cast<std::size_t>(b + 1)];
    throw_if<value_error>(!std::isfinite(loss), "loss: the loss is ", loss,
                          " (a non-finite value in x0, x_t or the network output f)");
    throw_if<value_error>(!std::isfinite(norm), "clip_grad_norm: the total gradient norm is ", norm,
                          " (a gradient holds NaN or infinity)");
    rollback.keep = true;
    noise_.per_sample_loss.assign(host.begin(), host.begin() + b);
    ++step_;
    return {step_, loss, lr, norm};
  }

  // host batch → device buffer (grown to the largest batch, never shrunk), enqueued.
  static void upload(tensor_view<const float> host, tensor<float, Device>& dev) {
    dev.resize(host.shape());
    enqueue_upload<Device>(dev.data(), host.data(), sizeof(float) * static_cast<std::size_t>(host.numel()));
  }

  using denoiser_type = std::conditional_t<host_facade, unet_denoiser,
                                           diffusion::forward_denoiser<network_type, nn::pass, float, Device>>;
  using noise_type = std::conditional_t<host_facade, diffusion::training_batch<float>,
                                        diffusion::device_training_batch<float, Device>>;

  trainer_config config_;
  // Declared early: it outlives everything that runs on it. Mutable: a save() (const)
  // makes it current for its downloads.
  mutable device_context<Device> context_;
  std::unique_ptr<diffusion_model> diffusion_;  // the host facade (also the device path's sampler choice)
  std::unique_ptr<device_diffusion_model<Device>> device_diffusion_;  // device path only
  network_type net_;
  denoiser_type denoiser_;  // kept across steps: its time buffer is allocated once
  optim::adamw<float, Device> opt_;
  std::optional<optim::ema<float, Device>> ema_;
  const Data& data_;
  std::unique_ptr<data::batch_sampler<Data>> batches_;
  rng noise_rng_;
  data::training_batch batch_;  // cropped on the host
  tensor<float, Device> x0_, images_;  // device path: the batch uploaded
  tensor<double, Device> report_;      // device path: [B + 2] per-sample losses, loss, norm
  std::vector<double> report_host_;    // its host copy, read once per step
  noise_type noise_;
  std::int64_t step_ = 0;
};

}  // namespace ambiseg::train
