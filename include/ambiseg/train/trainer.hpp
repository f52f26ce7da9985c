// ambiseg/train/trainer.hpp — any registered segmentation model trained with AdamW (SPEC
// §4, §7), on any device.
//
// Per iteration:
//   batch       data::batch_sampler: cases shuffled per epoch, one annotation per case
//               drawn uniformly, random or central crops → images [B,C,s,s], masks [B,1,s,s]
//   loss        model.loss_and_gradient: the model's loss, its gradient accumulated into the
//               parameters, the per-case losses and their mean written to the step's report
//   update      clip to global norm, lr from warm-up + cosine, AdamW, optional EMA
//
// One step path for every device: the work is enqueued on the trainer's context and the
// host waits once, at the end, to read the report [B + 2] = per-case losses, the loss, the
// gradient norm. AdamW and the EMA read (loss, norm) as a guard where they run, so a
// non-finite step changes no weight although nobody looked before the update; the host
// then finds the value, rolls the counters back and throws value_error.
//
// Determinism: the run is a function of the seed. Two rngs drive it, the batch sampler's
// (derived from seed, stream 1) and the noise rng (stream 2); the initial weights come
// from stream 0. A checkpoint stores the weights, the AdamW moments, the EMA and the noise
// rng; the batch sampler is replayed to the checkpoint's step on resume (its draws only,
// cheap) and its rng state, stored too, is compared after the replay, so a resumed run
// continues bit for bit. Checkpoints are the same files on every device.
//
// Data parallel (a communicator of several ranks: MPI on the CPU, NCCL on GPUs): every rank
// makes the draws of the same global batch (crops its own rows [r·B/N, (r+1)·B/N) only) and
// of the same noise, runs the model on its rows, scales its gradient by its share of the batch
// and sums it over the ranks in buckets as the backward pass finishes them
// (train/communicator.hpp); the per-case losses and the loss are summed the same way. The
// ranks then clip and update identical gradients: every rank holds the same weights, AdamW
// moments and EMA (compared by a hash every hash_every steps), a run follows the one-process
// run of the same global batch up to the order of float sums, and its checkpoints are the
// one-process run's, resumable on any number of ranks.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/device_context.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/data/batches.hpp"
#include "ambiseg/data/dataset.hpp"
#include "ambiseg/models/builtin_models.hpp"
#include "ambiseg/models/registry.hpp"
#include "ambiseg/optim/adamw.hpp"
#include "ambiseg/optim/clip.hpp"
#include "ambiseg/optim/ema.hpp"
#include "ambiseg/optim/lr_schedule.hpp"
#include "ambiseg/train/checkpoint.hpp"
#include "ambiseg/train/communicator.hpp"
#include "ambiseg/train/config.hpp"

namespace ambiseg::train {

struct step_report {
  std::int64_t step = 0;  // completed iterations after this one
  double loss = 0.0;
  double lr = 0.0;
  double grad_norm = 0.0;  // before clipping
};

// The model a config names, built on D: the registry validates its config first.
template <class D>
std::unique_ptr<models::any_model<D>> build_model(const trainer_config& config) {
  config.validate();
  const auto& entry = models::model_registry<D>::instance().at(config.model.kind);
  const models::build_context context{config.image_channels(), rng::derive(config.seed, 0)()};
  try {
    entry.validate(config.model.config, context);
  } catch (const value_error& e) {
    throw value_error("model '" + config.model.kind + "': " + e.what());
  }
  return entry.build(config.model.config, context);
}

template <data::dataset Data, class Device = cpu>
class trainer {
 public:
  using device_type = Device;
  using model_type = models::any_model<Device>;

  // Gradient buckets of this many bytes are summed over the ranks as they are handed over.
  static constexpr std::int64_t bucket_bytes = 4 << 20;
  // How often the ranks compare a hash of their weights.
  static constexpr std::int64_t hash_every = 50;

  // `train_data` and `group` (when given) must outlive the trainer.
  trainer(const trainer_config& config, const Data& train_data, communicator* group = nullptr)
      : config_(config),
        group_(takes_part(group) ? group : nullptr),
        model_(build_model<Device>(config_)),
        opt_(model_->parameters().flat_values().numel(), config_.adamw),
        data_(train_data),
        batches_(std::make_unique<data::batch_sampler<Data>>(train_data, batch_config(), rng::derive(config_.seed, 1)())),
        noise_rng_(rng::derive(config_.seed, 2)()) {
    const int div = model_->inputs().size_divisor;
    throw_if<value_error>(config_.crop_size < div || config_.crop_size % div != 0, "trainer_config: crop size ",
                          config_.crop_size, " must be a positive multiple of ", div, " for this model");
    if (group_) {
      throw_if<value_error>(!std::same_as<Device, cpu> && !group_->on_device(),
                            "trainer: data-parallel training on a GPU (", group_->describe(),
                            ") needs sums of device memory (NCCL)");
      throw_if<value_error>(config_.batch_size < group_->size(), "trainer: the batch of ", config_.batch_size,
                            " cases cannot be split over ", group_->size(), " ranks (give --batch ≥ ranks)");
    }
    if (config_.ema_decay) ema_.emplace(model_->parameters(), *config_.ema_decay);
    for (std::size_t i = 0; i < data_.size(); ++i)
      throw_if<value_error>(data_[i].height() < config_.crop_size || data_[i].width() < config_.crop_size,
                            "trainer: case '", data_[i].id, "' is ", data_[i].height(), "x", data_[i].width(),
                            ", smaller than the crop size ", config_.crop_size);
  }

  // The model's denoisers point into it, so a trainer stays where it was built.
  trainer(const trainer&) = delete;
  trainer& operator=(const trainer&) = delete;

  const trainer_config& config() const { return config_; }
  model_type& model() { return *model_; }
  const model_type& model() const { return *model_; }
  const optim::adamw<float, Device>& optimizer() const { return opt_; }
  const optim::ema<float, Device>* ema() const { return ema_ ? &*ema_ : nullptr; }
  std::int64_t steps_done() const { return step_; }
  // The last step's per-case losses.
  const std::vector<double>& per_case_loss() const { return per_case_loss_; }
  // The model's context (a cuda_context on cuda): open a device_context<Device>::scope on
  // it to run the model outside step() on the trainer's stream.
  device_context<Device>& context() { return context_; }

  // Sets the weights of a run that has not stepped yet (a student starting from its
  // teacher): f(model) writes them; the EMA then starts from them.
  template <class F>
  void initialise(F&& f) {
    throw_if<value_error>(step_ != 0, "trainer::initialise: the run has done ", step_, " steps already");
    const typename device_context<Device>::scope on_stream(context_);
    f(*model_);
    if (ema_) ema_->reset(model_->parameters());
  }

  // One iteration. A non-finite loss or gradient norm throws value_error and leaves the
  // weights, the optimiser state and the EMA as they were (the batch and the noise drawn
  // for the step are spent).
  step_report step() {
    const typename device_context<Device>::scope on_stream(context_);
    const std::int64_t b = config_.batch_size;
    if (group_) batches_->next(batch_, rows_first(), rows_count());  // this rank's rows only
    else batches_->next(batch_);
    if (!(report_.shape() == shape{b + 2})) report_ = tensor<double, Device>(shape{b + 2});
    double* const report = report_.data();
    auto& params = model_->parameters();
    params.zero_grad();
    if (group_) loss_and_gradient_over_ranks(b, report);
    else model_->loss_and_gradient(inputs(), noise_rng_, tensor_view<double, Device>(report, shape{b + 1}));
    optim::clip_grad_norm_async(params, config_.clip_norm, tensor_view<double, Device>(report + b + 1, shape{1}));
    const tensor_view<const double, Device> guard(report + b, shape{2});  // loss, norm
    const double lr = config_.lr.lr(step_);
    opt_.set_lr(lr);
    // Until the report says the step counts, the counters go back on any way out (a
    // non-finite value below, or a device error in the launches or the read-back).
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
                          " (a non-finite value in the batch or the model's output)");
    throw_if<value_error>(!std::isfinite(norm), "clip_grad_norm: the total gradient norm is ", norm,
                          " (a gradient holds NaN or infinity)");
    rollback.keep = true;
    per_case_loss_.assign(host.begin(), host.begin() + b);
    ++step_;
    if (group_ && step_ % hash_every == 0) check_ranks_agree();
    return {step_, loss, lr, norm};
  }

  // Data parallel: the seconds this rank has waited, after its backward pass, for the sums
  // to finish (what communication the backward pass did not hide).
  double communication_wait_seconds() const { return communication_wait_; }

  // FNV-1a over the bytes of the weights, the optimiser state and the EMA (on the host).
  std::uint64_t state_hash() const {
    const typename device_context<Device>::scope on_stream(context_);
    std::uint64_t h = 1469598103934665603ull;
    auto mix = [&h](tensor_view<const float, Device> flat) {
      std::vector<float> host(static_cast<std::size_t>(flat.numel()));
      read_back<Device>(host.data(), flat.data(), sizeof(float) * host.size());
      const auto* bytes = reinterpret_cast<const unsigned char*>(host.data());
      for (std::size_t i = 0; i < sizeof(float) * host.size(); ++i) h = (h ^ bytes[i]) * 1099511628211ull;
    };
    mix(model_->parameters().flat_values());
    for (const auto& s : sections())
      for (const auto& state : s.tensors) mix(state.flat);
    return h;
  }

  // Throws unless every rank holds the same state (a rank that drifted would train another
  // model silently).
  void check_ranks_agree() {
    if (!group_) return;
    throw_if<value_error>(!group_->same_everywhere(state_hash()), "trainer: after step ", step_,
                          " the ranks hold different weights or optimiser states (",
                          group_->describe(), "); the run cannot continue");
  }

  // The configuration as stored: the model's own config JSON as the built model reports it.
  nlohmann::json config_json() const {
    trainer_config stored = config_;
    stored.model.config = model_->config_json();
    return nlohmann::json(stored);
  }

  // `extra`: the caller's own metadata (a key of the checkpoint's own is refused).
  void save(const std::filesystem::path& path, const std::map<std::string, std::string>& extra = {}) const {
    const typename device_context<Device>::scope on_stream(context_);
    training_state state;
    state.step = step_;
    state.rng_state = noise_rng_.state();
    state.config = config_json();
    state.extra = extra;
    throw_if<value_error>(extra.count("batch_rng") != 0, "trainer::save: extra metadata key 'batch_rng' is reserved");
    state.extra["batch_rng"] = checkpoint_detail::rng_to_json(batches_->generator().state()).dump();
    save_training_checkpoint(path, model_->parameters(), state, sections());
  }

  // Restores a checkpoint of this configuration (same JSON config) and replays the batch
  // sampler to its step.
  void resume(const std::filesystem::path& path) {
    const typename device_context<Device>::scope on_stream(context_);
    const auto file_config = normalised(read_checkpoint_config(path), path);
    throw_if<value_error>(file_config != config_json(), "trainer::resume: '", path.string(),
                          "' was written by a different configuration:\n  file:  ", file_config.dump(),
                          "\n  this:  ", config_json().dump());
    const training_state state = load_training_checkpoint(path, model_->parameters(), sections());
    batches_ = std::make_unique<data::batch_sampler<Data>>(data_, batch_config(), rng::derive(config_.seed, 1)());
    for (std::int64_t s = 0; s < state.step; ++s) batches_->next(batch_, 0, 0);  // the draws, no crops
    auto it = state.extra.find("batch_rng");
    throw_if<format_error>(it == state.extra.end(), "trainer::resume: '", path.string(),
                           "' lacks the batch sampler state");
    throw_if<format_error>(checkpoint_detail::rng_to_json(batches_->generator().state()).dump() != it->second,
                           "trainer::resume: replaying the batch sampler to step ", state.step,
                           " does not reproduce the saved state (different data?)");
    noise_rng_.set_state(state.rng_state);
    step_ = state.step;
  }

  // The trainer_config a checkpoint was written with (any format version).
  static trainer_config read_config(const std::filesystem::path& path) {
    try {
      return read_checkpoint_config(path).get<trainer_config>();
    } catch (const format_error& e) {
      throw format_error("'" + path.string() + "': " + e.what());
    }
  }

 private:
  // A file's config in today's layout (older files keep the model's fields at the top).
  static nlohmann::json normalised(const nlohmann::json& j, const std::filesystem::path& path) {
    try {
      return nlohmann::json(j.get<trainer_config>());
    } catch (const format_error& e) {
      throw format_error("trainer::resume: '" + path.string() + "': " + e.what());
    }
  }

  std::vector<state_section<float, Device>> sections() const {
    auto& self = const_cast<trainer&>(*this);  // saving reads the components only
    std::vector<state_section<float, Device>> s{section<float, Device>(self.opt_)};
    if (ema_) s.push_back(section<float, Device>(*self.ema_));
    if (auto* buffers = self.model_->buffers()) s.push_back(buffers_section(*buffers));
    return s;
  }

  // Several ranks, or one that sums on a device (a one-GPU NCCL run takes the same path as
  // many, so that one GPU tests it).
  static bool takes_part(communicator* group) { return group && (group->size() > 1 || group->on_device()); }

  // This rank's rows of the global batch: [first, first + count).
  std::int64_t rows_first() const { return config_.batch_size * group_->rank() / group_->size(); }
  std::int64_t rows_count() const {
    return config_.batch_size * (group_->rank() + 1) / group_->size() - rows_first();
  }

  // This rank's rows of the global batch: the model's loss and gradient on them, the
  // gradient scaled by the rows' share and summed over the ranks, and the report [B + 1]
  // (per-case losses at their rows, the batch's loss) summed likewise. On the CPU the sums
  // run on host memory while the backward computes; on a GPU they run on device memory in
  // the stream's order (device_sums, NCCL), the host waiting for none of them.
  void loss_and_gradient_over_ranks(std::int64_t b, double* report) {
    const std::int64_t first = rows_first(), count = rows_count();
    device_sums* const on_device = group_->on_device();
    void* const stream = current_stream<Device>();  // on_device is set on a GPU (the constructor checked)
    if (!(local_report_.shape() == shape{count + 1})) local_report_ = tensor<double, Device>(shape{count + 1});
    // Buckets from the end of the flat gradients (a network's backward finishes its last
    // parameters first), each scaled by this rank's share of the batch and handed to the
    // sums as soon as the network says it is final.
    auto& params = model_->parameters();
    auto grads = params.flat_grads();
    const double share = static_cast<double>(count) / static_cast<double>(b);
    const std::int64_t bucket = bucket_bytes / static_cast<std::int64_t>(sizeof(float));
    std::int64_t unsent = grads.numel();  // [0, unsent) not handed over yet
    auto hand_over = [&](std::int64_t final_from) {
      while (unsent > 0) {
        const std::int64_t begin = std::max<std::int64_t>(0, unsent - bucket);
        if (begin < final_from) break;
        float* const data = grads.data() + begin;
        const auto n = static_cast<std::size_t>(unsent - begin);
        if (on_device) {
          on_device->start_sum(data, n, static_cast<float>(share), stream);
        } else if constexpr (std::same_as<Device, cpu>) {
          for (std::size_t i = 0; i < n; ++i) data[i] *= static_cast<float>(share);
          group_->start_sum(std::span<float>(data, n));
        }
        unsent = begin;
      }
      if (!on_device) group_->progress();
    };
    params.set_gradient_listener(hand_over);
    struct listener_off {
      parameter_store<float, Device>& p;
      ~listener_off() { p.set_gradient_listener({}); }
    } off{params};
    auto local = inputs();
    // One rank: the inputs are the whole batch (a model that cannot split its batch trains).
    if (group_->size() > 1) local.rows = {first, b};
    model_->loss_and_gradient(local, noise_rng_, local_report_.view());
    hand_over(0);
    // The report: this rank's per-case losses at their rows, zeros elsewhere, and its mean
    // loss; summed over the ranks (the mean weighted by the rows' share).
    const double* const mine = local_report_.data();
    enqueue_zero<Device>(report, sizeof(double) * static_cast<std::size_t>(b));
    enqueue_copy<Device>(report + first, mine, sizeof(double) * static_cast<std::size_t>(count));
    enqueue_copy<Device>(report + b, mine + count, sizeof(double));
    if (on_device) {
      on_device->start_sum(report, static_cast<std::size_t>(b), 1.0, stream);
      on_device->start_sum(report + b, 1, share, stream);
      on_device->finish(stream);
    } else {
      report[b] *= share;
      const auto waiting = std::chrono::steady_clock::now();
      group_->finish();
      group_->allreduce_sum(std::span<double>(report, static_cast<std::size_t>(b + 1)));
      communication_wait_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - waiting).count();
    }
  }

  data::batch_config batch_config() const {
    return {config_.batch_size, config_.crop_size, config_.crop, config_.encoding};
  }

  // The batch on the device: the host crops themselves on the CPU, else uploaded copies
  // (grown to the largest batch, never shrunk; the copies are enqueued).
  models::training_inputs<Device> inputs() {
    if constexpr (std::same_as<Device, cpu>) {
      return {batch_.images.cview(), batch_.x0.cview()};
    } else {
      upload(batch_.x0.cview(), masks_);
      upload(batch_.images.cview(), images_);
      return {images_.cview(), masks_.cview()};
    }
  }
  static void upload(tensor_view<const float> host, tensor<float, Device>& dev) {
    dev.resize(host.shape());
    enqueue_upload<Device>(dev.data(), host.data(), sizeof(float) * static_cast<std::size_t>(host.numel()));
  }

  trainer_config config_;
  communicator* group_ = nullptr;  // several ranks (or one GPU's NCCL: takes_part), or none
  // Declared early: it outlives everything that runs on it. Mutable: a save() (const)
  // makes it current for its downloads.
  mutable device_context<Device> context_;
  std::unique_ptr<model_type> model_;
  optim::adamw<float, Device> opt_;
  std::optional<optim::ema<float, Device>> ema_;
  const Data& data_;
  std::unique_ptr<data::batch_sampler<Data>> batches_;
  rng noise_rng_;
  data::training_batch batch_;            // cropped on the host
  tensor<float, Device> images_, masks_;  // the batch uploaded (devices other than the CPU)
  tensor<double, Device> report_;         // [B + 2] per-case losses, loss, norm
  std::vector<double> report_host_;       // its host copy, read once per step
  std::vector<double> per_case_loss_;
  tensor<double, Device> local_report_;  // data parallel: this rank's rows' losses and their mean
  double communication_wait_ = 0.0;
  std::int64_t step_ = 0;
};

}  // namespace ambiseg::train
