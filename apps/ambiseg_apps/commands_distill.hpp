// ambiseg_apps/commands_distill.hpp — `ambiseg distill`: progressive distillation of a
// diffusion model's DDIM sampler (docs/distillation.md), one training run per round.
//
//   DIR/steps-<N>/  per round, as train writes DIR (checkpoint, log.csv, loss.png,
//                   config.json, summary.json)
//   DIR/distill.json  the rounds, their CPU seconds against the teacher's training, the
//                     student's checkpoint
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>

#include "ambiseg/io/atomic_file.hpp"
#include "ambiseg_apps/cli.hpp"
#include "ambiseg_apps/data_source.hpp"
#include "ambiseg_apps/gpu_ranks.hpp"
#include "ambiseg_apps/model_api.hpp"
#include "ambiseg_apps/output.hpp"
#include "ambiseg_apps/training_run.hpp"

namespace ambiseg::apps {

namespace command_detail {

// The teacher of a distillation: its network and policies, the steps and grid its sampler
// is distilled from.
struct distillation_teacher {
  trainer_config config;
  models::diffusion_segmenter_config diffusion;
  int steps = 8;
  std::string spacing = "uniform_t";
};

inline distillation_teacher read_teacher(const distill_command& cmd) {
  distillation_teacher t;
  t.config = stored_training_config(cmd.ckpt);
  const std::string& kind = t.config.model.kind;
  const std::string where = "--ckpt '" + cmd.ckpt.string() + "'";
  if (kind == models::diffusion_kind) {
    t.diffusion = t.config.model.config.get<models::diffusion_segmenter_config>();
    t.steps = cmd.from.value_or(8);
    t.spacing = cmd.spacing.value_or("uniform_t");
  } else if (kind == models::distilled_diffusion_kind) {
    const auto d = t.config.model.config.get<models::distilled_diffusion_config>();
    t.diffusion = d.diffusion;
    t.steps = d.steps;
    t.spacing = d.spacing;
    throw_if<value_error>(cmd.from && *cmd.from != d.steps, where, " is distilled to ", d.steps,
                          " steps, so its students start from ", d.steps, ", not --from ", *cmd.from);
    throw_if<value_error>(cmd.spacing && *cmd.spacing != d.spacing, where, " was distilled on the ", d.spacing,
                          " grid; its students keep it (leave out --spacing ", *cmd.spacing, ")");
  } else {
    throw value_error(where + " holds a " + kind + " model; distillation needs a diffusion model");
  }
  throw_if<value_error>(t.diffusion.policy.prediction == "eps", where,
                        " predicts eps, whose x0 estimate divides by alpha, which vanishes at t = 1: an eps-model "
                        "cannot be distilled to few steps (train an x- or v-prediction teacher)");
  throw_if<value_error>(cmd.to >= t.steps || t.steps % cmd.to != 0 || !cli_detail::power_of_two(t.steps / cmd.to),
                        "--to ", cmd.to, ": the teacher samples with ", t.steps,
                        " steps and each round halves them, so --to must be ", t.steps,
                        " divided by a power of two (", t.steps / 2, ", ", std::max(1, t.steps / 4), ", ...)");
  return t;
}

// What an ended round's summary.json says of it: CPU seconds and steps done.
inline std::pair<double, std::int64_t> read_round_summary(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  throw_if<io_error>(!in, "cannot read '", path.string(), "'");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    const auto j = nlohmann::json::parse(text);
    return {j.at("train_cpu_seconds").get<double>(), j.at("steps_done").get<std::int64_t>()};
  } catch (const nlohmann::json::exception& e) {
    throw format_error("'" + path.string() + "' is not a round summary (" + e.what() +
                       "); remove it to run that round again");
  }
}

// The weights a round starts from: the teacher's (EMA when it has one), as the student and
// as its frozen teacher alike.
template <class Device>
void start_from_teacher(models::any_model<Device>& m, const std::filesystem::path& teacher) {
  const sampling_model<Device> t = load_for_sampling<Device>(teacher, std::nullopt);
  const auto src = t.model->parameters().flat_values();
  for (parameter_store<float, Device>* dst : {&m.parameters(), m.buffers()}) {
    throw_if<value_error>(dst == nullptr || dst->flat_values().numel() != src.numel(), "distill: '",
                          teacher.string(), "' does not have the student's network");
    device_memory<Device>::copy(dst->flat_values().data(), src.data(), sizeof(float) * static_cast<std::size_t>(src.numel()));
  }
}

}  // namespace command_detail

// Progressive distillation (docs/distillation.md): round r trains a student of N steps in
// DIR/steps-<N>/ (a training run: checkpoint, log.csv, loss.png, config.json, summary.json)
// from the previous round's student, or the teacher in the first; DIR/distill.json sums up.
// --resume skips the rounds that ended (summary.json) and continues the one that did not.
// Under mpirun every rank distils its rows of each batch (as `train`); rank 0 writes.
inline int run_distill(const distill_command& cmd, std::ostream& out, std::ostream& err, const run_options& ro = {}) {
  namespace fs = std::filesystem;
  const bool leader = !ro.group || ro.group->rank() == 0;
  check_input_file(cmd.ckpt, "--ckpt");
  const command_detail::distillation_teacher teacher = command_detail::read_teacher(cmd);
  const auto teacher_folds = checkpoint_metadata(cmd.ckpt, folds_key);
  throw_if<value_error>(teacher_folds && *teacher_folds != folds_text(cmd.data), "--ckpt '", cmd.ckpt.string(),
                        "' trained on the folds ", *teacher_folds, " (fold/folds), the command line gives ",
                        folds_text(cmd.data), ": the student must learn from the teacher's training cases");
  if (cmd.resume) {
    throw_if<io_error>(!fs::is_directory(cmd.out), "--resume: the folder '", cmd.out.string(),
                       "' does not exist, so there is no distillation to resume");
    check_writable_folder(cmd.out, "--out folder");
  } else if (leader) {
    prepare_output_folder(cmd.out, "--out folder");
  }
  data_request dr = cmd.data;
  dr.synthetic_size = teacher.config.crop_size;
  const loaded_data data = load_data(dr);
  const validation_split split = split_for_validation(data.train, 0);

  const double teacher_cpu = training_cpu_seconds(cmd.ckpt);
  nlohmann::ordered_json rounds = nlohmann::ordered_json::array();
  double distill_cpu = 0;
  fs::path previous = cmd.ckpt;
  int round = 0;
  for (int n = teacher.steps / 2; n >= cmd.to; n /= 2, ++round) {
    const fs::path dir = cmd.out / ("steps-" + std::to_string(n));
    const fs::path ckpt = dir / "checkpoint.safetensors";
    train_command tc;
    tc.data = cmd.data;
    tc.out = dir;
    tc.device = cmd.device;
    tc.cpu_conv = cmd.cpu_conv;
    tc.precision = cmd.precision;
    tc.checkpoint_every = cmd.checkpoint_every;
    tc.cpu_budget = cmd.cpu_budget;
    tc.resume = cmd.resume && fs::exists(ckpt);
    trainer_config& c = tc.config;
    c = teacher.config;
    c.model = models::distilled_diffusion_spec(teacher.diffusion, n, teacher.spacing);
    if (cmd.batch) c.batch_size = *cmd.batch;
    c.seed = cmd.seed + static_cast<std::uint64_t>(round);
    c.ema_decay = cmd.ema_decay;
    c.lr.base_lr = c.adamw.lr = cmd.lr;
    c.lr.total_steps = cmd.steps;
    // S&H anneal the rate to zero within each round; a short warm-up steadies AdamW's start.
    c.lr.warmup_steps = std::max<std::int64_t>(1, std::min<std::int64_t>(100, cmd.steps / 20));
    c.lr.decay_steps = cmd.steps - c.lr.warmup_steps;
    c.validate();
    const fs::path summary_path = dir / "summary.json";
    if (cmd.resume && fs::exists(summary_path)) {  // every rank sees the same ended rounds
      const auto [cpu_seconds, steps_done] = command_detail::read_round_summary(summary_path);
      out << "ambiseg distill: " << 2 * n << " -> " << n << " steps ended earlier (" << dir.string() << ")\n";
      distill_cpu += cpu_seconds;
      rounds.push_back({{"steps", n}, {"teacher", previous.string()}, {"checkpoint", ckpt.string()},
                        {"train_cpu_seconds", cpu_seconds}, {"steps_done", steps_done}});
      previous = ckpt;
      continue;
    }
    if (tc.resume) check_writable_folder(dir, "round folder");
    else if (leader) prepare_output_folder(dir, "round folder");
    std::error_code no_summary;
    if (leader) fs::remove(summary_path, no_summary);
    training_plan plan{.checkpoint = ckpt, .resume = tc.resume, .checkpoint_every = cmd.checkpoint_every,
                       .snapshots = {}, .snapshot_dir = {}, .validate_every = 0, .best = {}, .metadata = {},
                       .cpu_budget = cmd.cpu_budget, .group = ro.group};
    plan.metadata[folds_key] = folds_text(cmd.data);
    plan.metadata["distilled_from"] = previous.string();
    command_detail::train_reporter reporter(tc, c, data, split, false, out, err, ro,
                                            "ambiseg distill " + std::to_string(2 * n) + " -> " + std::to_string(n) +
                                                " steps");
    const gpu_for_rank gpu(cmd.device, ro.group);
    const training_outcome outcome = on_device(cmd.device, [&]<class D>() {
      const std::function<void(models::any_model<D>&)> initialise = [&](models::any_model<D>& m) {
        command_detail::start_from_teacher<D>(m, previous);
      };
      training_plan on_device_plan = plan;
      const std::unique_ptr<train::communicator> gpus = device_group<D>(ro.group);  // NCCL on GPUs
      if (gpus) on_device_plan.group = gpus.get();
      return run_training<D>(c, split.train, on_device_plan, reporter, {}, initialise);
    });
    // The next round starts from this round's checkpoint, which rank 0 has just written:
    // no rank reads it before rank 0 gets here (a broadcast from rank 0).
    if (ro.group) ro.group->agree_stop(false);
    if (!leader) {
      previous = ckpt;
      continue;
    }
    if (ro.interactive) err << "\n";
    io::write_file_atomically(summary_path, command_detail::training_summary(tc, c, outcome, reporter.parameters(),
                                                                             split.train.size(), reporter.wall_seconds())
                                                    .dump(2) +
                                                "\n");
    distill_cpu += outcome.train_cpu_seconds;
    rounds.push_back({{"steps", n}, {"teacher", previous.string()}, {"checkpoint", ckpt.string()},
                      {"train_cpu_seconds", outcome.train_cpu_seconds}, {"steps_done", outcome.steps_done}});
    previous = ckpt;
  }
  if (!leader) return 0;
  const nlohmann::ordered_json summary{{"teacher", cmd.ckpt.string()},
                                       {"teacher_steps", teacher.steps},
                                       {"spacing", teacher.spacing},
                                       {"teacher_train_cpu_seconds", teacher_cpu},
                                       {"rounds", rounds},
                                       {"distill_cpu_seconds", distill_cpu},
                                       {"student", previous.string()},
                                       {"student_steps", cmd.to}};
  io::write_file_atomically(cmd.out / "distill.json", summary.dump(2) + "\n");
  char cpu[64];
  std::snprintf(cpu, sizeof cpu, "%.1f CPU s (the teacher's training: %.1f)", distill_cpu, teacher_cpu);
  out << "ambiseg distill: " << teacher.steps << " -> " << cmd.to << " DDIM steps in " << rounds.size()
      << " round(s), " << cpu << "\nwrote " << previous.string() << " (sample or eval it as any model), "
      << (cmd.out / "distill.json").string() << "\n";
  return 0;
}

}  // namespace ambiseg::apps
