// ambiseg_apps/commands.hpp — what `ambiseg train|sample|export|distill` do (parsing: cli.hpp,
// eval: commands_eval.hpp) and run_command; run_cli.cpp wraps them into the whole tool.
//
//   train   DIR/checkpoint.safetensors (atomic, every --checkpoint-every steps and at the
//           end), DIR/snapshots/step-<N>.safetensors (--snapshots), DIR/log.csv
//           (training_log.hpp), DIR/loss.png, DIR/config.json, DIR/summary.json (how the
//           run ended: steps, CPU seconds of its steps, --cpu-budget); with
//           --select-best-by DIR/val.csv and DIR/best.safetensors (selection.hpp)
//   export  DIR/{train,test}_images.npy [N,C,H,W] float32, {train,test}_masks.npy
//           [N,A,H,W] uint8, {train,test}_ids.txt
//   sample  DIR/masks.npy [B,n,H,W] uint8, DIR/mean.npy, DIR/variance.npy [B,H,W] float,
//           DIR/sample_<k>.png per image, DIR/samples.png (all images, one row each),
//           DIR/sample.json (the model, its parameters, network passes per mask, seconds)
//   distill commands_distill.hpp
//   eval    JSON on stdout (and DIR/eval.json), a markdown table (DIR/eval.md): results.hpp
//
// Every command checks its inputs and prepares its output folder before any work.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <new>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/device_context.hpp"
#include "ambiseg/ops/cpu/conv2d.hpp"
#include "ambiseg/data/all.hpp"
#include "ambiseg/io/atomic_file.hpp"
#include "ambiseg/io/npy.hpp"
#include "ambiseg_apps/cli.hpp"
#include "ambiseg_apps/commands_distill.hpp"
#include "ambiseg_apps/commands_eval.hpp"
#include "ambiseg_apps/data_source.hpp"
#include "ambiseg_apps/gpu_ranks.hpp"
#include "ambiseg_apps/inputs.hpp"
#include "ambiseg_apps/model_api.hpp"
#include "ambiseg_apps/output.hpp"
#include "ambiseg_apps/plot.hpp"
#include "ambiseg_apps/selection.hpp"
#include "ambiseg_apps/training_log.hpp"
#include "ambiseg_apps/training_run.hpp"

namespace ambiseg::apps {

// Under mpirun every rank runs this: rank 0 prepares the folder, reports and writes every
// file; the others read the same data and checkpoint and train their rows of each batch.
inline int run_train(const train_command& cmd, std::ostream& out, std::ostream& err, const run_options& ro = {}) {
  namespace fs = std::filesystem;
  const bool leader = !ro.group || ro.group->rank() == 0;
  const fs::path ckpt = cmd.out / "checkpoint.safetensors";
  trainer_config config = cmd.config;
  std::optional<selection_options> select = cmd.select;
  if (cmd.resume) {
    throw_if<io_error>(!fs::is_directory(cmd.out), "--resume: the folder '", cmd.out.string(),
                       "' does not exist, so there is no run to resume (leave out --resume to start one)");
    throw_if<io_error>(!fs::exists(ckpt), "--resume: no checkpoint at '", ckpt.string(), "'");
    check_writable_folder(cmd.out, "--out folder");
    config = stored_training_config(ckpt);
    if (nlohmann::json(config) != nlohmann::json(cmd.config))
      err << "note: --resume continues with the configuration stored in " << ckpt.string() << "\n";
    select = resumed_selection(ckpt, cmd.select, err);
    const auto stored_folds = checkpoint_metadata(ckpt, folds_key);
    throw_if<value_error>(stored_folds && *stored_folds != folds_text(cmd.data), "--resume: the run of '",
                          ckpt.string(), "' trained on the folds ", stored_folds.value_or(""),
                          " (fold/folds), the command line gives ", folds_text(cmd.data),
                          ": resuming would change its training data");
  } else if (leader) {
    prepare_output_folder(cmd.out, "--out folder");
    remove_earlier_selection(cmd.out, err);
  }
  training_plan plan{.checkpoint = ckpt,
                     .resume = cmd.resume,
                     .checkpoint_every = cmd.checkpoint_every,
                     .snapshots = cmd.snapshots,
                     .snapshot_dir = cmd.out / "snapshots",
                     .validate_every = select ? select->every : 0,
                     .best = cmd.out / "best.safetensors",
                     .metadata = {},
                     .cpu_budget = cmd.cpu_budget,
                     .group = ro.group};
  if (leader && !cmd.snapshots.empty()) create_folder(plan.snapshot_dir, "snapshot folder");
  if (select) plan.metadata[selection_key] = nlohmann::json(*select).dump();
  plan.metadata[folds_key] = folds_text(cmd.data);
  // summary.json says a run has ended: an earlier one's must not describe this run.
  std::error_code no_summary;
  if (leader) std::filesystem::remove(cmd.out / "summary.json", no_summary);
  data_request dr = cmd.data;
  dr.synthetic_size = config.crop_size;
  const loaded_data data = load_data(dr);
  const validation_split split = split_for_validation(data.train, select ? select->cases : 0);
  std::optional<val_ged_scorer> scorer;
  if (select) scorer.emplace(split.validation, config, select->samples);
  command_detail::train_reporter reporter(cmd, config, data, split, select.has_value(), out, err, ro);
  const gpu_for_rank gpu(cmd.device, ro.group);
  const training_outcome outcome = on_device(cmd.device, [&]<class D>() {
    validation_function<D> validate;
    if (scorer) validate = [&](sampling_model<D>& m) { return (*scorer)(m); };
    training_plan on_device_plan = plan;
    const std::unique_ptr<train::communicator> gpus = device_group<D>(ro.group);  // NCCL on GPUs
    if (gpus) on_device_plan.group = gpus.get();
    return run_training<D>(config, split.train, on_device_plan, reporter, validate);
  });
  if (!leader) return 0;
  if (ro.interactive) err << "\n";
  io::write_file_atomically(cmd.out / "summary.json",
                            command_detail::training_summary(cmd, config, outcome, reporter.parameters(),
                                                             split.train.size(), reporter.wall_seconds())
                                    .dump(2) +
                                "\n");
  char cpu[32];
  std::snprintf(cpu, sizeof cpu, "%.1f", outcome.train_cpu_seconds);
  out << "ambiseg train: " << outcome.steps_done << " of " << outcome.planned_steps << " steps, " << cpu
      << " CPU s in training steps"
      << (outcome.budget_reached
              ? " (stopped: --cpu-budget " + args_detail::number_text(*cmd.cpu_budget) + " s reached)"
          : outcome.interrupted ? std::string(" (stopped on request; the checkpoint is this step's, --resume continues)")
                                : std::string())
      << "\n";
  out << "wrote " << ckpt.string() << ", " << (cmd.out / "log.csv").string() << ", "
      << (cmd.out / "loss.png").string() << ", summary.json"
      << (select ? ", " + plan.best.string() + ", val.csv" : std::string()) << "\n";
  return 0;
}

// Under mpirun (group of several ranks) the images are spread over the ranks
// (draw_masks_over_ranks); rank 0 writes, the others return after sampling.
template <class Device>
int run_sample_on(const sample_command& asked, std::ostream& out, std::ostream& err, train::communicator* group) {
  const bool spread = group && group->size() > 1;
  namespace fs = std::filesystem;
  device_context<Device> context;  // the model's stream on a GPU; nothing on the CPU
  const typename device_context<Device>::scope on_context(context);
  sampling_model<Device> m = load_for_sampling<Device>(asked.ckpt, asked.use_ema);
  const sample_command cmd = with_model_sampling(asked, m, err);
  const sample_inputs in = gather_inputs(input_format_of(m), cmd.data, cmd.image, cmd.images);
  const std::int64_t b = in.images.size(0), h = in.images.size(2), w = in.images.size(3);
  tensor<float> init;
  if (cmd.init_noise) {
    auto a = io::read_npy<float>(*cmd.init_noise);
    const std::int64_t expected = b * cmd.n * h * w;
    throw_if<shape_error>(a.numel() != expected, "--init-noise '", cmd.init_noise->string(), "' holds ", a.numel(),
                          " values; expected [", b, ", ", cmd.n, ", ", h, ", ", w, "]");
    init.resize(shape{b, cmd.n, h, w});
    std::copy(a.data.begin(), a.data.end(), init.data());
  }
  rng g(cmd.seed);
  const draw_options drawing{cmd.n, cmd.steps, cmd.sampler, cmd.clip_x0, cmd.spacing};
  const tensor_view<const float> init_noise = cmd.init_noise ? init.cview() : tensor_view<const float>{};
  const sampling_cost cost = timed([&] {
    return spread ? draw_masks_over_ranks(m, in.images.cview(), drawing, cmd.seed, *group, cmd.save_x0.has_value(),
                                          init_noise)
                  : draw_masks(m, in.images.cview(), drawing, g, init_noise);
  });
  if (spread && group->rank() != 0) return 0;
  const sample_result& r = cost.result;
  const double seconds = cost.seconds;
  const std::vector<std::int64_t> mask_shape{b, cmd.n, h, w}, map_shape{b, h, w};
  auto span_of = [](const auto& t) { return std::span(t.data(), static_cast<std::size_t>(t.numel())); };
  io::write_npy<std::uint8_t>(cmd.out / "masks.npy", span_of(r.masks), mask_shape);
  io::write_npy<float>(cmd.out / "mean.npy", span_of(r.mean), map_shape);
  io::write_npy<float>(cmd.out / "variance.npy", span_of(r.variance), map_shape);
  if (cmd.save_x0) io::write_npy<float>(*cmd.save_x0, span_of(r.x0_hat), mask_shape);
  for (std::int64_t k = 0; k < b; ++k) image_grid(in, r, k).write(cmd.out / ("sample_" + std::to_string(k) + ".png"));
  overview_grid(in, r).write(cmd.out / "samples.png");
  // What one draw costs, for tables of models (CPU seconds: fair when runs share a machine).
  const nlohmann::ordered_json info{{"checkpoint", cmd.ckpt.string()},
                                    {"step", m.step},
                                    {"model", std::string(m.model->kind_name())},
                                    {"parameters", m.model->parameters().count()},
                                    {"images", b},
                                    {"n", cmd.n},
                                    {"height", h},
                                    {"width", w},
                                    {"sampler", sampler_name(cmd.sampler)},
                                    {"spacing", diffusion::spacing_name(cmd.spacing)},
                                    {"steps", cmd.steps},
                                    {"network_passes_per_mask", passes_per_mask(m, cmd.steps, cmd.sampler)},
                                    {"seconds", seconds},
                                    {"cpu_seconds", cost.cpu_seconds},
                                    {"ranks", spread ? group->size() : 1}};
  io::write_file_atomically(cmd.out / "sample.json", info.dump(2) + "\n");
  out << "ambiseg sample: " << b << " image(s) x " << cmd.n << " samples, " << cmd.steps << " steps, " << seconds
      << " s, " << cost.cpu_seconds << " CPU s (step " << m.step << (m.ema_weights ? ", EMA weights" : "") << ")\n"
      << "wrote " << (cmd.out / "masks.npy").string() << ", mean.npy, variance.npy, sample.json, sample_<k>.png and "
      << (cmd.out / "samples.png").string() << "\n";
  return 0;
}

inline int run_sample(const sample_command& cmd, std::ostream& out, std::ostream& err,
                      train::communicator* group = nullptr) {
  check_input_file(cmd.ckpt, "--ckpt");
  if (cmd.image) check_input_file(*cmd.image, "--image");
  if (cmd.init_noise) check_input_file(*cmd.init_noise, "--init-noise");
  const bool leader = !group || group->rank() == 0;
  if (leader && cmd.save_x0) check_output_file(*cmd.save_x0, "--save-x0");
  if (leader) prepare_output_folder(cmd.out, "--out folder");
  const gpu_for_rank gpu(cmd.device, group);
  return on_device(cmd.device, [&]<class D>() { return run_sample_on<D>(cmd, out, err, group); });
}

namespace command_detail {

// cases → images [N, C, H, W] float32 and masks [N, A, H, W] uint8 (+ ids, one a line).
inline void write_case_arrays(const data::case_set& cases, const std::filesystem::path& dir, const std::string& name) {
  throw_if<value_error>(cases.size() == 0, "the ", name, " set is empty");
  const data::case_ref first = cases[0];
  const std::int64_t n = static_cast<std::int64_t>(cases.size()), c = first.image.size(0);
  const std::int64_t h = first.height(), w = first.width(), a = first.annotations(), plane = h * w;
  std::vector<float> images(static_cast<std::size_t>(n * c * plane));
  std::vector<std::uint8_t> masks(static_cast<std::size_t>(n * a * plane));
  std::string ids;
  for (std::int64_t k = 0; k < n; ++k) {
    const data::case_ref x = cases[static_cast<std::size_t>(k)];
    throw_if<shape_error>(x.image.size(0) != c || x.height() != h || x.width() != w || x.annotations() != a, name,
                          " case '", x.id, "' has ", x.image.size(0), " channel(s), ", x.annotations(),
                          " annotation(s) of ", x.height(), "x", x.width(), "; the first has ", c, ", ", a, " of ", h,
                          "x", w,
                          " (one array needs one shape; training cases are written uncropped, test cases at --crop)");
    std::copy(x.image.data(), x.image.data() + c * plane, images.begin() + k * c * plane);
    std::copy(x.masks.data(), x.masks.data() + a * plane, masks.begin() + k * a * plane);
    ids.append(x.id).append("\n");
  }
  io::write_npy<float>(dir / (name + "_images.npy"), images, std::vector<std::int64_t>{n, c, h, w});
  io::write_npy<std::uint8_t>(dir / (name + "_masks.npy"), masks, std::vector<std::int64_t>{n, a, h, w});
  io::write_file_atomically(dir / (name + "_ids.txt"), ids);
}

}  // namespace command_detail

inline int run_export(const export_command& cmd, std::ostream& out) {
  prepare_output_folder(cmd.out, "--out folder");
  data_request dr = cmd.data;
  dr.synthetic_size = cmd.crop_size;
  const loaded_data d = load_data(dr);
  command_detail::write_case_arrays(d.train, cmd.out, "train");
  command_detail::write_case_arrays(data::evaluation_set(d.test, cmd.crop_size, cmd.crop, cmd.seed), cmd.out, "test");
  out << "ambiseg export: " << d.kind << " data, " << d.train.size() << " training and " << d.test.size()
      << " test cases (test crops " << cmd.crop_size << ", seed " << cmd.seed << ") → " << cmd.out.string()
      << "/{train,test}_{images,masks}.npy\n";
  return 0;
}

// --cpu-conv: the CPU's 3×3 "same" convolutions by Winograd F(4×4,3×3) ("winograd", the
// default), F(2×2,3×3) ("winograd2": the direct method's rounding) or the direct method.
// Set for every run, so a run in the same process never inherits the last one's choice.
inline void apply_cpu_conv(const std::string& name) {
  namespace ck = ops::cpu_kernels;
  ck::conv_settings().winograd = name == "direct"      ? ck::winograd_tile::off
                                 : name == "winograd2" ? ck::winograd_tile::f2
                                                       : ck::winograd_tile::f4;
}

// --precision: the numerics of the GEMMs and convolutions of the CUDA contexts this run
// builds (core/cuda_context.hpp's defaults), for the run only: the process's defaults
// return when it ends, so contexts built later (by a caller of run_cli) do not inherit
// it. The parser has refused any choice but fp32 on the CPU.
class precision_for_run {
 public:
  explicit precision_for_run([[maybe_unused]] const std::string& name) {
#if defined(AMBISEG_WITH_CUDA)
    saved_ = cuda_context_defaults().precision;
    cuda_context_defaults().precision = name == "tf32"   ? cuda_precision::tf32
                                        : name == "bf16" ? cuda_precision::bf16
                                        : name == "fp16" ? cuda_precision::fp16
                                                         : cuda_precision::fp32;
#endif
  }
  precision_for_run(const precision_for_run&) = delete;
  precision_for_run& operator=(const precision_for_run&) = delete;
  ~precision_for_run() {
#if defined(AMBISEG_WITH_CUDA)
    cuda_context_defaults().precision = saved_;
#endif
  }

 private:
#if defined(AMBISEG_WITH_CUDA)
  cuda_precision saved_ = cuda_precision::fp32;
#endif
};

inline int run_command(const command& c, std::ostream& out, std::ostream& err, const run_options& ro = {}) {
  std::visit(
      [](const auto& cmd) {
        if constexpr (requires { cmd.cpu_conv; }) apply_cpu_conv(cmd.cpu_conv);
      },
      c);
  const precision_for_run precision(
      std::visit([](const auto& cmd) -> std::string {
        if constexpr (requires { cmd.precision; }) return cmd.precision;
        else return "fp32";
      }, c));
  if (const auto* t = std::get_if<train_command>(&c)) return run_train(*t, out, err, ro);
  if (const auto* s = std::get_if<sample_command>(&c)) return run_sample(*s, out, err, ro.group);
  if (const auto* e = std::get_if<eval_command>(&c)) return run_eval(*e, out, err, ro.group);
  if (const auto* x = std::get_if<export_command>(&c)) return run_export(*x, out);
  if (const auto* d = std::get_if<distill_command>(&c)) return run_distill(*d, out, err, ro);
  // `ambiseg help models`: the registered kinds, one a line (for scripts that pick models).
  if (const auto* h = std::get_if<help_command>(&c); h && h->topic == "models") {
    for (const std::string& kind : model_kinds()) out << kind << "\n";
    return 0;
  }
  out << cli_usage();
  return 0;
}

}  // namespace ambiseg::apps
