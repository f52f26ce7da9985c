// ambiseg_apps/training_run.hpp — the command's side of a training run, shared by `train`
// and `distill` (each of its rounds is a training run): progress line, DIR/log.csv,
// DIR/loss.png, DIR/config.json (train_reporter) and DIR/summary.json (training_summary).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "ambiseg/io/atomic_file.hpp"
#include "ambiseg_apps/cli.hpp"
#include "ambiseg_apps/data_source.hpp"
#include "ambiseg_apps/model_api.hpp"
#include "ambiseg_apps/plot.hpp"
#include "ambiseg_apps/run_cli.hpp"
#include "ambiseg_apps/selection.hpp"
#include "ambiseg_apps/training_log.hpp"

namespace ambiseg::apps {

namespace command_detail {

inline std::string clock(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%02lld:%02lld", s / 60, s % 60);
  return buf;
}

inline std::string progress_line(std::int64_t step, std::int64_t total, double loss, double lr, double rate,
                                 double eta) {
  const int width = 24;
  const auto filled = static_cast<int>(width * static_cast<double>(step) / static_cast<double>(std::max<std::int64_t>(total, 1)));
  char buf[200];
  std::snprintf(buf, sizeof buf, "[%s%s] step %lld/%lld  loss %.4f  lr %.2e  %.2f it/s  ETA %s",
                std::string(static_cast<std::size_t>(filled), '#').c_str(),
                std::string(static_cast<std::size_t>(width - filled), '.').c_str(), static_cast<long long>(step),
                static_cast<long long>(total), loss, lr, rate, clock(eta).c_str());
  return buf;
}

// The command's side of a training run: log.csv, loss.png, config.json, progress.
class train_reporter final : public training_observer {
 public:
  // title: the start of its header line ("ambiseg train").
  train_reporter(const train_command& cmd, const trainer_config& config, const loaded_data& data,
                 const validation_split& split, bool validates, std::ostream& out, std::ostream& err,
                 const run_options& ro, std::string title = "ambiseg train")
      : cmd_(cmd), config_(config), data_(data), split_(split), out_(out), err_(err), ro_(ro),
        title_(std::move(title)) {
    if (validates) validation_.emplace(cmd.out, ro.interactive);
  }

  void started(const training_start& s) override {
    if (cmd_.resume) log_ = read_training_log(csv(), s.first_step, err_);
    if (validation_) validation_->start(s.first_step, cmd_.resume, err_);
    io::write_file_atomically(cmd_.out / "config.json", nlohmann::json(config_).dump(2) + "\n");
    out_ << title_ << ": " << data_.kind << " data, " << split_.train.size() << " training cases"
         << (validation_ ? " (" + std::to_string(split_.validation.size()) + " more held out for validation)"
                         : std::string())
         << " on " << cmd_.device << (cmd_.device == "cpu" && cmd_.cpu_conv != "winograd" ? " (" + cmd_.cpu_conv + " 3x3 convolutions)" : std::string())
         << (cmd_.precision != "fp32" ? " (" + cmd_.precision + " tensor cores)" : std::string())
         << (ro_.group && ro_.group->size() > 1
                 ? ", data parallel over " + ro_.group->describe() +
                       (cmd_.device == "cpu" ? std::string() : std::string(", gradients summed by NCCL"))
                 : std::string())
         << "; model of " << s.parameters << " parameters; " << s.model << "\n"
         << "  steps " << config_.lr.total_steps << ", batch " << config_.batch_size << ", crop " << config_.crop_size
         << (cmd_.resume ? ", resumed at step " + std::to_string(s.first_step) : std::string()) << "\n";
    // The kept rows are written whole, then every step is appended.
    std::string head = std::string(training_log_header) + "\n";
    for (const std::string& row : log_.rows) head += row + "\n";
    io::write_file_atomically(csv(), head);
    csv_out_.open(csv(), std::ios::app);
    throw_if<io_error>(!csv_out_, "cannot append to '", csv().string(), "'");
    first_ = s.first_step;
    parameters_ = s.parameters;
    start_ = std::chrono::steady_clock::now();
    cpu_start_ = std::clock();
  }

  void stepped(const step_report& r, bool checkpoint) override {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    // Process CPU time (all threads): the fair clock for comparing runs on a shared machine.
    const double cpu = static_cast<double>(std::clock() - cpu_start_) / CLOCKS_PER_SEC;
    csv_out_ << r.step << "," << r.loss << "," << r.lr << "," << r.grad_norm << "," << elapsed << "," << cpu << "\n";
    log_.steps.push_back(r.step);
    log_.loss.push_back(r.loss);
    const std::int64_t total = config_.lr.total_steps;
    const double rate = static_cast<double>(r.step - first_) / std::max(elapsed, 1e-9);
    const double eta = static_cast<double>(total - r.step) / rate;
    if (ro_.interactive || checkpoint || elapsed - last_print_ >= 30.0) {
      err_ << (ro_.interactive ? "\r" : "") << progress_line(r.step, total, r.loss, r.lr, rate, eta)
           << (ro_.interactive ? "" : "\n") << std::flush;
      last_print_ = elapsed;
    }
  }

  // The caller's progress callback (Python's ambiseg.train): false stops the run here.
  bool stop_requested(const step_report& r) override {
    if (!ro_.on_step) return false;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    return !ro_.on_step({r.step, config_.lr.total_steps, r.loss, r.lr, r.grad_norm, elapsed});
  }

  void checkpointing() override {
    csv_out_.flush();
    throw_if<io_error>(!csv_out_, "could not append to '", csv().string(), "' (disk full?)");
    if (!log_.steps.empty()) loss_curve(log_.steps, log_.loss).write(cmd_.out / "loss.png");
  }

  bool validated(std::int64_t step, double value, std::map<std::string, std::string>& metadata) override {
    return validation_->record(step, value, metadata, err_);
  }

  std::int64_t parameters() const { return parameters_; }
  double wall_seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::filesystem::path csv() const { return cmd_.out / "log.csv"; }

  const train_command& cmd_;
  const trainer_config& config_;
  const loaded_data& data_;
  const validation_split& split_;
  std::optional<validation_record> validation_;
  std::ostream &out_, &err_;
  const run_options& ro_;
  std::string title_;
  training_log log_;
  std::ofstream csv_out_;
  std::int64_t first_ = 0, parameters_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::clock_t cpu_start_ = 0;
  double last_print_ = -1;
};

// DIR/summary.json: what a comparison of runs needs without parsing the log.
inline nlohmann::ordered_json training_summary(const train_command& cmd, const trainer_config& config,
                                               const training_outcome& o, std::int64_t parameters,
                                               std::size_t training_cases, double wall_seconds) {
  nlohmann::ordered_json j{{"model", config.model.kind},
                           {"parameters", parameters},
                           {"seed", config.seed},
                           {"data", cmd.data.spec},
                           {"folds", cmd.data.folds ? nlohmann::ordered_json(*cmd.data.folds) : nullptr},
                           {"fold", cmd.data.fold ? nlohmann::ordered_json(*cmd.data.fold) : nullptr},
                           {"training_cases", training_cases},
                           {"planned_steps", o.planned_steps},
                           {"first_step", o.first_step},
                           {"steps_done", o.steps_done},
                           {"train_cpu_seconds", o.train_cpu_seconds},
                           {"cpu_budget", cmd.cpu_budget ? nlohmann::ordered_json(*cmd.cpu_budget) : nullptr},
                           {"stopped_by", o.budget_reached ? "cpu_budget" : o.interrupted ? "interrupted" : "steps"},
                           {"wall_seconds", wall_seconds},
                           {"train_wall_seconds", o.train_wall_seconds}};
  const std::int64_t steps = o.steps_done - o.first_step;
  if (o.ranks > 1 && steps > 0) {
    const double wait = o.sum_wait_seconds / static_cast<double>(steps);
    j["data_parallel"] = {
        {"ranks", o.ranks},
        {"bytes_summed_per_step", static_cast<double>(o.bytes_summed) / static_cast<double>(steps)},
        {"communicator", o.communicator},
        {"sum_wait_seconds_per_step", wait},
        {"blocking_sum_seconds", o.blocking_sum_seconds},
        {"hidden_share", o.blocking_sum_seconds > 0 ? std::clamp(1.0 - wait / o.blocking_sum_seconds, 0.0, 1.0) : 0.0}};
    // On GPUs the host never waits for a sum (the stream does), so no share is measured.
    if (o.sums_on_device) j["data_parallel"]["sum_wait_seconds_per_step"] = j["data_parallel"]["hidden_share"] = nullptr;
  }
  return j;
}

}  // namespace command_detail

}  // namespace ambiseg::apps
