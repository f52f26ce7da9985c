// ambiseg_apps/model_api.hpp — every call the tools make into the library's training and
// sampling API (train::trainer, train::load_model, train::sample_masks, the network
// presets), so that the commands depend on that API here and nowhere else.
//
//   network_preset(name)             nn::unet_config presets + "example"
//   stored_training_config(ckpt)     the configuration a checkpoint was trained with
//   checkpoint_step(ckpt)            the step a checkpoint records, checked
//   run_training<D>(config, cases, plan, observer, validate)
//                                    trains (or resumes) to config's total steps or the
//                                    plan's CPU budget, saving checkpoints and snapshots as
//                                    the plan says, and validating a copy of the model
//                                    (best.safetensors)
//   training_cpu_seconds(ckpt)       the CPU time of training steps a checkpoint records
//   model_kinds() / check_model(spec, channels)
//                                    the registered models; a --model choice checked early
//   load_for_sampling<D>(ckpt, ema)  the model of a checkpoint, on device D
//   input_format_of(model)           how the model's inputs are cropped and encoded
//   draw_masks(model, images, ...)   n sampled masks per image (+ mean, variance)
//   on_device(name, f)               runs f.template operator()<D>() for --device
#pragma once

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/device.hpp"
#include "ambiseg/core/device_context.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/data/all.hpp"
#include "ambiseg/io/safetensors.hpp"
#include "ambiseg/models/all.hpp"
#include "ambiseg/nn/config.hpp"
#include "ambiseg/train/sampling.hpp"
#include "ambiseg/train/trainer.hpp"
#include "ambiseg_apps/args.hpp"

namespace ambiseg::apps {

using train::trainer_config;
using models::sampler_kind;
using train::sample_result;
using train::step_report;

// The presets of nn::unet_config plus "example": the network of scripts/example.sh, sized
// to learn the synthetic lesions in minutes on a 2-core CPU.
inline nn::unet_config network_preset(const std::string& name) {
  if (name == "example") {
    nn::unet_config c = nn::unet_config::small();
    c.model_channels = 16;
    c.channel_mult = {1, 2, 4};
    c.num_res_blocks = {1, 1, 1};
    c.num_middle_res_blocks = 2;
    c.attention_levels = {2};
    c.num_heads = 1;
    return c;
  }
  try {
    return nn::unet_config::preset(name);
  } catch (const value_error&) {
    throw value_error("unknown --config '" + name + "' (default, reference, paper, small, tiny, example)");
  }
}

inline trainer_config stored_training_config(const std::filesystem::path& ckpt) {
  return train::trainer<data::case_set>::read_config(ckpt);
}

inline std::vector<std::string> model_kinds() { return models::model_registry<cpu>::instance().kinds(); }

// Refuses an unknown kind, a config its model would refuse or a crop it cannot take,
// before any data is read.
inline void check_model(const models::model_spec& spec, int image_channels, std::int64_t crop_size) {
  const auto& entry = models::model_registry<cpu>::instance().at(spec.kind);
  models::input_spec inputs;
  try {
    entry.validate(spec.config, {image_channels, 0});
    inputs = entry.inputs(spec.config, {image_channels, 0});
  } catch (const ambiseg::error& e) {
    throw value_error("--model " + spec.kind + ": " + e.what());
  }
  throw_if<value_error>(crop_size % inputs.size_divisor != 0, "--crop ", crop_size, ": this model needs a multiple of ",
                        inputs.size_divisor);
}

// The model in words for the log: a diffusion model's policies, else its kind and config.
template <class Device>
std::string describe_model(const models::any_model<Device>& m) {
  if (const auto* d = m.template as<models::diffusion_segmenter<Device>>()) return d->diffusion().describe();
  if (const auto* s = m.template as<models::distilled_diffusion<Device>>())
    return "a student of " + std::to_string(s->config().steps) + " DDIM step(s) on " + s->config().spacing + " of " +
           s->diffusion().describe();
  return std::string(m.kind_name()) + " " + m.config_json().dump();
}

// The "step" metadata of a checkpoint (0 when absent). A negative or non-integer step is
// no file a run writes: it is refused by name before the weights are read.
inline std::int64_t checkpoint_step(const std::filesystem::path& ckpt) {
  const auto file = io::safetensors_file::open(ckpt);
  const auto it = file.metadata().find("step");
  if (it == file.metadata().end()) return 0;
  const auto step = args_detail::to_integer(it->second);
  throw_if<format_error>(!step || *step < 0 || *step > largest_count, "checkpoint '", ckpt.string(),
                         "' records step='", it->second, "', not a step count (0 or more): the file is damaged");
  return *step;
}

// The cases a run trains on: the first `count` of a loaded set (the others validate), seen
// without a copy, since a data set can take a good part of the memory.
struct training_cases {
  const data::case_set* all = nullptr;
  std::size_t count = 0;

  std::size_t size() const { return count; }
  data::case_ref operator[](std::size_t i) const {
    throw_if<value_error>(i >= count, "training_cases: index ", i, " out of range for ", count, " cases");
    return (*all)[i];
  }
};
static_assert(data::dataset<training_cases>);

struct training_plan {
  std::filesystem::path checkpoint;  // written every `checkpoint_every` steps and at the end
  bool resume = false;               // continue from `checkpoint`
  std::int64_t checkpoint_every = 200;
  std::vector<std::int64_t> snapshots;  // sorted; kept as snapshot_dir/step-<N>.safetensors
  std::filesystem::path snapshot_dir;
  std::int64_t validate_every = 0;  // 0: no validation; else every N steps and at the end
  std::filesystem::path best;       // the checkpoint of the best validation so far
  std::map<std::string, std::string> metadata;  // added to every file written (checkpoints, best, snapshots)
  std::optional<double> cpu_budget;  // stop once the steps have used this many CPU seconds
  // Data parallel: the ranks of the run (train/communicator.hpp). Rank 0 reports, validates
  // and writes every file; stop decisions are rank 0's, agreed on by all.
  train::communicator* group = nullptr;
};

// Every file a run writes records the CPU seconds its training steps have used so far, so
// that a resumed run counts its budget from there.
inline constexpr const char* train_cpu_key = "train_cpu_seconds";

// How a run ended: at the last step, or at the CPU budget.
struct training_outcome {
  std::int64_t first_step = 0, steps_done = 0, planned_steps = 0;
  double train_cpu_seconds = 0;  // of all steps, earlier runs of a resumed one included
  double train_wall_seconds = 0;  // of this run's steps
  bool budget_reached = false;
  bool interrupted = false;  // stopped by training_observer::stop_requested
  // Data parallel (rank 0's view): the ranks, the gradient bytes each rank summed, the
  // seconds it waited for sums after its backward pass, and what one blocking sum of the
  // whole gradient took before training (the communication there was to hide).
  int ranks = 1;
  std::uint64_t bytes_summed = 0;
  double sum_wait_seconds = 0, blocking_sum_seconds = 0;
  std::string communicator;     // what summed (data parallel)
  bool sums_on_device = false;  // on GPUs: the host waits for no sum
};

// A checkpoint's metadata value, if it has the key.
inline std::optional<std::string> checkpoint_metadata(const std::filesystem::path& ckpt, const std::string& key) {
  const auto file = io::safetensors_file::open(ckpt);
  const auto it = file.metadata().find(key);
  if (it == file.metadata().end()) return std::nullopt;
  return it->second;
}

// The CPU seconds of training steps a checkpoint records (0 for a file written before this
// was recorded; a damaged value is refused by name).
inline double training_cpu_seconds(const std::filesystem::path& ckpt) {
  const auto stored = checkpoint_metadata(ckpt, train_cpu_key);
  if (!stored) return 0;
  const std::string& text = *stored;
  double v = -1;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  throw_if<format_error>(ec != std::errc() || ptr != text.data() + text.size() || !(v >= 0) || !std::isfinite(v),
                         "checkpoint '", ckpt.string(), "' records ", train_cpu_key, "='", text,
                         "', not a number of seconds: the file is damaged");
  return v;
}

struct training_start {
  std::int64_t first_step = 0;  // steps already done (a resumed run)
  std::int64_t parameters = 0;
  std::string model;  // the model in words
};

// What the command does around the trainer: logging, progress, pictures.
class training_observer {
 public:
  virtual ~training_observer() = default;
  virtual void started(const training_start& s) = 0;
  // After every step; `checkpoint` says whether a checkpoint follows it.
  virtual void stepped(const step_report& r, bool checkpoint) = 0;
  // Before each checkpoint is written (the log and the pictures catch up first).
  virtual void checkpointing() = 0;
  // Asked after every step, before stepped() (on rank 0): true makes this step the run's
  // last (checkpointed and validated as a planned last step) — a user's interrupt or a
  // caller's stop.
  virtual bool stop_requested(const step_report& /*r*/) { return false; }
  // A validation's value (lower is better); true when it is the best so far, which the
  // trainer then keeps as plan.best with `metadata` added.
  virtual bool validated(std::int64_t /*step*/, double /*value*/, std::map<std::string, std::string>& /*metadata*/) {
    return false;
  }
};

template <class Device>
using sampling_model = train::loaded_model<Device>;

// The criterion of a model (lower is better), e.g. the validation GED².
template <class Device>
using validation_function = std::function<double(sampling_model<Device>&)>;

// A model to validate the trainer's with, as `eval` would load it from a checkpoint written
// now: the EMA weights when the run keeps an EMA, else the weights. It is a separate copy,
// so that validating neither touches the training state nor draws from its rngs.
template <class Data, class Device>
void copy_for_validation(const train::trainer<Data, Device>& t, std::optional<sampling_model<Device>>& m) {
  if (!m) m = sampling_model<Device>{t.config(), train::build_model<Device>(t.config()), 0, t.ema() != nullptr};
  auto& dst = m->model->parameters();
  if (t.ema()) {
    t.ema()->copy_to(dst);
  } else {
    const auto src = t.model().parameters().flat_values();
    device_memory<Device>::copy(dst.flat_values().data(), src.data(),
                                sizeof(float) * static_cast<std::size_t>(src.numel()));
  }
  // A model's buffers (BatchNorm running statistics) are the trained ones for either weights.
  if (const auto* buffers = t.model().buffers()) {
    const auto src = buffers->flat_values();
    device_memory<Device>::copy(m->model->buffers()->flat_values().data(), src.data(),
                                sizeof(float) * static_cast<std::size_t>(src.numel()));
  }
  m->step = t.steps_done();
}

// One trainer step; a non-finite loss or gradient (the trainer changed no weight) is
// reported as a diverged run: which step, at which rate, and which checkpoint is left.
template <class Trainer>
step_report diverging_step_named(Trainer& t, std::int64_t last_saved, const training_plan& plan) {
  try {
    return t.step();
  } catch (const value_error& e) {
    const std::int64_t step = t.steps_done() + 1;
    std::ostringstream where;
    where << (last_saved > 0 ? "the checkpoint of step " + std::to_string(last_saved) + " in " +
                                   plan.checkpoint.string() + " is from before it; "
                             : std::string("no checkpoint was written yet; "))
          << "train again with a lower --lr (--resume would keep the stored rate)";
    throw value_error("train: step " + std::to_string(step) + " diverged at learning rate " +
                      args_detail::number_text(t.config().lr.lr(step - 1)) + ": " + e.what() + "; " + where.str());
  }
}

// One sum of the gradients' size, alone, waited for: the fastest of 3 (what the backward
// pass has to hide). On the device the trainer sums on, where that is a GPU.
template <class Trainer>
double blocking_sum_seconds(Trainer& t, train::communicator& group) {
  using Device = typename Trainer::device_type;
  const std::int64_t n = t.model().parameters().flat_grads().numel();
  const typename device_context<Device>::scope on_stream(t.context());
  tensor<float, Device> zeros(shape{n});
  zeros.zero();
  t.context().synchronize();
  double best = 1e300;
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    if (train::device_sums* sums = group.on_device()) {
      sums->start_sum(zeros.data(), static_cast<std::size_t>(n), 1.0f, current_stream<Device>());
      sums->finish(current_stream<Device>());
      t.context().synchronize();
    } else if constexpr (std::same_as<Device, cpu>) {
      group.start_sum(std::span<float>(zeros.data(), static_cast<std::size_t>(n)));
      group.finish();
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

// validate: required when plan.validate_every > 0.
//
// The CPU budget counts the process CPU time (std::clock: every thread, user and system;
// the clock of log.csv's cpu_seconds) spent inside trainer steps only: data loading,
// validation, checkpoints and logging are outside it. It is checked after each step, so
// the run stops after the step that reaches it; that step is then the last (validated,
// checkpointed) as the planned last step would be.
//
// initialise (optional): sets the weights of a fresh run before its first step (a resumed
// run has its own).
template <class Device>
training_outcome run_training(const trainer_config& config, const training_cases& cases, const training_plan& plan,
                              training_observer& observer, const validation_function<Device>& validate = {},
                              const std::function<void(models::any_model<Device>&)>& initialise = {}) {
  throw_if<value_error>(plan.validate_every > 0 && !validate, "run_training: validation planned without a function");
  train::trainer<training_cases, Device> t(config, cases, plan.group);
  const bool leader = !plan.group || plan.group->rank() == 0;
  auto agreed = [&](bool rank0_says) { return plan.group ? plan.group->agree_stop(rank0_says) : rank0_says; };
  training_outcome outcome;
  if (plan.resume) {
    checkpoint_step(plan.checkpoint);
    outcome.train_cpu_seconds = training_cpu_seconds(plan.checkpoint);
    t.resume(plan.checkpoint);
  } else if (initialise) {
    t.initialise(initialise);
  }
  if (leader) observer.started({t.steps_done(), t.model().parameters().count(), describe_model(t.model())});
  if (plan.group && plan.group->size() > 1) {
    outcome.ranks = plan.group->size();
    outcome.blocking_sum_seconds = blocking_sum_seconds(t, *plan.group);
    outcome.communicator = plan.group->describe();
    outcome.sums_on_device = plan.group->on_device() != nullptr;
  }
  const std::uint64_t bytes_before = plan.group ? plan.group->bytes_reduced() : 0;
  auto metadata_now = [&](std::map<std::string, std::string> metadata) {
    metadata[train_cpu_key] = args_detail::number_text(outcome.train_cpu_seconds);
    return metadata;
  };
  auto save = [&] {
    if (!leader) return;
    observer.checkpointing();
    t.save(plan.checkpoint, metadata_now(plan.metadata));
  };
  auto over_budget = [&] { return plan.cpu_budget && outcome.train_cpu_seconds >= *plan.cpu_budget; };
  std::optional<sampling_model<Device>> copy;
  const std::int64_t first = t.steps_done(), total = config.lr.total_steps;
  outcome.first_step = first;
  outcome.planned_steps = total;
  outcome.budget_reached = agreed(first < total && over_budget());
  std::int64_t last_saved = first;
  while (t.steps_done() < total && !outcome.budget_reached && !outcome.interrupted) {
    const std::clock_t before = std::clock();
    const auto wall_before = std::chrono::steady_clock::now();
    const step_report r = diverging_step_named(t, last_saved, plan);
    outcome.train_cpu_seconds += static_cast<double>(std::clock() - before) / CLOCKS_PER_SEC;
    outcome.train_wall_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_before).count();
    outcome.budget_reached = agreed(r.step < total && over_budget());
    const bool stop_asked = leader && observer.stop_requested(r);  // every step: it reports progress too
    if (r.step < total && !outcome.budget_reached) outcome.interrupted = agreed(stop_asked);
    const bool last = r.step == total || outcome.budget_reached || outcome.interrupted;
    if (last) t.check_ranks_agree();
    if (leader && std::binary_search(plan.snapshots.begin(), plan.snapshots.end(), r.step))
      t.save(plan.snapshot_dir / ("step-" + std::to_string(r.step) + ".safetensors"), metadata_now(plan.metadata));
    const bool checkpoint = r.step % plan.checkpoint_every == 0 || last;
    if (leader) observer.stepped(r, checkpoint);
    if (leader && plan.validate_every > 0 && (r.step % plan.validate_every == 0 || last)) {
      double value = 0;
      {
        const typename device_context<Device>::scope on_stream(t.context());
        copy_for_validation(t, copy);
        value = validate(*copy);
      }
      std::map<std::string, std::string> metadata = metadata_now(plan.metadata);
      if (observer.validated(r.step, value, metadata)) t.save(plan.best, metadata);
    }
    if (checkpoint) save(), last_saved = r.step;
  }
  if (t.steps_done() == first) save();
  outcome.steps_done = t.steps_done();
  if (plan.group) {
    outcome.bytes_summed = plan.group->bytes_reduced() - bytes_before;
    outcome.sum_wait_seconds = t.communication_wait_seconds();
  }
  return outcome;
}

// use_ema: nullopt = the EMA weights when the checkpoint has them.
template <class Device>
sampling_model<Device> load_for_sampling(const std::filesystem::path& ckpt, std::optional<bool> use_ema) {
  checkpoint_step(ckpt);
  return train::load_model<Device>(ckpt, use_ema);
}

// How a model's inputs were cut and encoded in training: test images are cut the same way.
struct input_format {
  std::int64_t crop_size = 64;
  data::crop_mode crop = data::crop_mode::random;
  std::uint64_t seed = 0;  // fixes the random test windows
  data::image_encoding encoding = data::image_encoding::grey;
};

inline input_format input_format_of(const trainer_config& c) { return {c.crop_size, c.crop, c.seed, c.encoding}; }

template <class Device>
input_format input_format_of(const sampling_model<Device>& m) {
  return input_format_of(m.config);
}

using models::sampler_name;

struct draw_options {
  int n = 8;
  int steps = 10;
  sampler_kind sampler = sampler_kind::ddpm_large;
  bool clip_x0 = false;
  diffusion::time_spacing spacing = diffusion::time_spacing::uniform_t;
};

// masks [B, n, H, W] of images [B, C, H, W]; init_noise empty or [B, n, H, W].
template <class Device>
sample_result draw_masks(sampling_model<Device>& m, tensor_view<const float> images, const draw_options& o, rng& g,
                         tensor_view<const float> init_noise = {}) {
  const train::sample_options so{o.n,       o.steps,           sampler_name(o.sampler),
                                 o.clip_x0, std::max(64, o.n), diffusion::spacing_name(o.spacing)};
  return train::sample_masks(*m.model, images, so, g, init_noise);
}

// draw_masks spread over the ranks of an mpirun (eval, sample): rank r samples images
// [r·B/N, (r+1)·B/N), each image from its own stream rng::derive(seed, image) (and its rows
// of init_noise), so the masks do not depend on the number of ranks; they differ from one
// process's single stream by sampling noise only. Rank 0 receives every rank's masks (and
// x̂0 when `with_x0`) and returns them with their mean and variance; the other ranks return
// an empty result.
template <class Device>
sample_result draw_masks_over_ranks(sampling_model<Device>& m, tensor_view<const float> images, const draw_options& o,
                                    std::uint64_t seed, train::communicator& group, bool with_x0 = false,
                                    tensor_view<const float> init_noise = {}) {
  const std::int64_t b = images.size(0), ranks = group.size(), r = group.rank();
  const std::int64_t first = b * r / ranks, last = b * (r + 1) / ranks;
  const std::int64_t h = images.size(2), w = images.size(3), per_image = images.numel() / std::max<std::int64_t>(b, 1);
  const std::int64_t per_draw = o.n * h * w;  // one image's masks or x̂0
  std::vector<std::uint8_t> masks, x0;
  for (std::int64_t k = first; k < last; ++k) {
    rng g = rng::derive(seed, static_cast<std::uint64_t>(k));
    const tensor_view<const float> one(images.data() + k * per_image, shape{1, images.size(1), h, w});
    const tensor_view<const float> noise =
        init_noise.data() ? tensor_view<const float>(init_noise.data() + k * per_draw, shape{1, o.n, h, w})
                          : tensor_view<const float>{};
    const sample_result part = draw_masks(m, one, o, g, noise);
    masks.insert(masks.end(), part.masks.data(), part.masks.data() + part.masks.numel());
    if (with_x0) {
      const auto* bytes = reinterpret_cast<const std::uint8_t*>(part.x0_hat.data());
      x0.insert(x0.end(), bytes, bytes + sizeof(float) * static_cast<std::size_t>(part.x0_hat.numel()));
    }
  }
  const std::vector<std::uint8_t> all_masks = group.gather_bytes(masks);
  const std::vector<std::uint8_t> all_x0 = with_x0 ? group.gather_bytes(x0) : std::vector<std::uint8_t>{};
  sample_result result;
  if (r != 0) return result;
  result.masks.resize(shape{b, o.n, h, w});
  throw_if<value_error>(static_cast<std::int64_t>(all_masks.size()) != result.masks.numel(),
                        "draw_masks_over_ranks: gathered ", all_masks.size(), " mask bytes, expected ",
                        result.masks.numel());
  std::copy(all_masks.begin(), all_masks.end(), result.masks.data());
  if (with_x0) {
    result.x0_hat.resize(shape{b, o.n, h, w});
    throw_if<value_error>(all_x0.size() != sizeof(float) * static_cast<std::size_t>(result.x0_hat.numel()),
                          "draw_masks_over_ranks: gathered ", all_x0.size(), " bytes of x0, expected ",
                          sizeof(float) * static_cast<std::size_t>(result.x0_hat.numel()));
    std::memcpy(result.x0_hat.data(), all_x0.data(), all_x0.size());
  }
  train::mask_statistics(result.masks.cview(), result.mean, result.variance);
  return result;
}

// A model that samples one way (a distilled student, models::model_with_fixed_sampling)
// runs that whatever the command asks: the command's steps, sampler and spacing become the
// model's, so that what is recorded is what ran, with a note when they differ.
template <class Command, class Device>
Command with_model_sampling(Command cmd, const sampling_model<Device>& m, std::ostream& err) {
  const std::optional<models::sampling_request> fixed = m.model->fixed_sampling();
  if (!fixed) return cmd;
  const sampler_kind sampler = models::parse_sampler(fixed->sampler);
  const diffusion::time_spacing spacing = diffusion::parse_spacing(fixed->spacing);
  if (cmd.steps != fixed->steps || cmd.sampler != sampler || cmd.spacing != spacing)
    err << "note: this " << m.model->kind_name() << " model samples with " << fixed->steps << " " << fixed->sampler
        << " step(s) on the " << fixed->spacing << " grid it was distilled for; --steps, --sampler and --spacing "
        << "do not apply\n";
  cmd.steps = fixed->steps;
  cmd.sampler = sampler;
  cmd.spacing = spacing;
  return cmd;
}

// Network evaluations per drawn mask under these sampler settings, as the model reports them.
template <class Device>
std::int64_t passes_per_mask(const sampling_model<Device>& m, int steps, sampler_kind sampler) {
  return m.model->network_passes({.n = 16, .steps = steps, .sampler = sampler_name(sampler)});
}

// A sampling call with its wall and process CPU seconds (std::clock: every thread).
struct sampling_cost {
  sample_result result;
  double seconds = 0, cpu_seconds = 0;
};
template <class F>
sampling_cost timed(F&& draw) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::clock_t c0 = std::clock();
  sampling_cost cost{draw()};
  cost.cpu_seconds = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  cost.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return cost;
}

// Runs f.template operator()<D>() with D the device that --device names (cuda exists in
// builds that link ambiseg::cuda).
template <class F>
decltype(auto) on_device(const std::string& device, F&& f) {
  if (device == "cpu") return f.template operator()<cpu>();
#if defined(AMBISEG_WITH_CUDA)
  if (device == "cuda") return f.template operator()<cuda>();
#endif
  throw value_error("--device " + device + ": this ambiseg was built without CUDA (configure with -DAMBISEG_CUDA=ON)");
}

}  // namespace ambiseg::apps
