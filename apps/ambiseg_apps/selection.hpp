// ambiseg_apps/selection.hpp — `ambiseg train --select-best-by val_ged`: the checkpoint of
// the lowest GED² on a validation split held out of the training data, kept beside the last.
//
//   split        the last K training cases (--val-cases, in the loader's order) validate;
//                the others train. They are never shared.
//   validation   every N steps (--val-every) and at the end: n masks (--val-samples) per
//                validation image from a copy of the current model (its EMA weights when
//                the run keeps an EMA, as `eval` loads a checkpoint), with the sampler
//                settings and seed `eval` uses by default, scored by eval's own code
//                (score_samples): the mean raw GED² over the validation images
//   DIR/val.csv  step,val_ged — one row per validation
//   DIR/best.safetensors
//                the training checkpoint (same format as checkpoint.safetensors) of the
//                lowest val_ged so far, replaced only by a strictly lower one; its
//                metadata adds val_ged to the step every checkpoint records
//   --resume     the settings are in every checkpoint's metadata ("selection") and the run
//                continues with them; the best so far is read back from best.safetensors,
//                the file it describes (a rerun step validates again and finds the same value)
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/data/all.hpp"
#include "ambiseg/io/atomic_file.hpp"
#include "ambiseg/io/checkpoint.hpp"
#include "ambiseg/io/safetensors.hpp"
#include "ambiseg/metrics/evaluate.hpp"
#include "ambiseg_apps/args.hpp"
#include "ambiseg_apps/cli.hpp"
#include "ambiseg_apps/commands_eval.hpp"
#include "ambiseg_apps/inputs.hpp"
#include "ambiseg_apps/model_api.hpp"
#include "ambiseg_apps/training_log.hpp"

namespace ambiseg::apps {

inline constexpr std::string_view validation_log_header = "step,val_ged";
inline constexpr const char* selection_key = "selection";  // checkpoint metadata: the settings
inline constexpr const char* val_ged_key = "val_ged";      // best.safetensors's metadata

inline std::string describe(const selection_options& s) {
  return s.by + " every " + std::to_string(s.every) + " steps on the last " + std::to_string(s.cases) +
         " training cases, " + std::to_string(s.samples) + " samples per image";
}

// The settings a checkpoint's run validates with (nullopt: it does not).
inline std::optional<selection_options> stored_selection(const std::filesystem::path& ckpt) {
  const auto file = io::safetensors_file::open(ckpt);
  if (file.metadata().count(selection_key) == 0) return std::nullopt;
  const io::metadata_reader md{file, "selection"};
  const nlohmann::json j = md.json(selection_key);
  selection_options s;
  s.by = md.field<std::string>(j, selection_key, "by");
  s.every = md.field<std::int64_t>(j, selection_key, "every");
  s.cases = md.field<std::int64_t>(j, selection_key, "cases");
  s.samples = md.field<std::int64_t>(j, selection_key, "samples");
  md.check(s.by == "val_ged" && s.every >= 1 && s.cases >= 1 && s.samples >= 1 && s.samples <= 4096,
           "metadata 'selection' holds ", j.dump(), ", not settings a run writes");
  return s;
}

// What a resumed run validates with: the settings stored in its checkpoint. A run started
// without validation cannot take it up, since holding cases out changes its training data.
inline std::optional<selection_options> resumed_selection(const std::filesystem::path& ckpt,
                                                          const std::optional<selection_options>& asked,
                                                          std::ostream& err) {
  const auto stored = stored_selection(ckpt);
  throw_if<value_error>(asked && !stored, "--select-best-by ", asked ? asked->by : std::string(), ": the run of '",
                        ckpt.string(), "' was started without a validation split, and holding out --val-cases now ",
                        "would change its training data; start a new run (without --resume) to select by it");
  if (stored && (!asked || nlohmann::json(*asked) != nlohmann::json(*stored)))
    err << "note: --resume continues the validation stored in " << ckpt.string() << ": " << describe(*stored)
        << "\n";
  return stored;
}

// A new run in a folder replaces an earlier run's files; a best.safetensors left from that
// run would otherwise be taken for this run's on a resume.
inline void remove_earlier_selection(const std::filesystem::path& dir, std::ostream& err) {
  for (const char* name : {"best.safetensors", "val.csv"}) {
    std::error_code ec;
    if (!std::filesystem::exists(dir / name, ec)) continue;
    std::filesystem::remove(dir / name, ec);
    throw_if<io_error>(ec.operator bool(), "cannot remove '", (dir / name).string(), "' of an earlier run: ",
                       ec.message());
    err << "note: removed " << (dir / name).string() << " of an earlier run in this folder\n";
  }
}

// The training cases less the last k, and those k.
struct validation_split {
  training_cases train;
  data::case_set validation;
};

inline validation_split split_for_validation(const data::case_set& all, std::int64_t k) {
  const auto n = static_cast<std::int64_t>(all.size());
  throw_if<value_error>(k >= n, "--val-cases ", k, " holds out every training case (the data has ", n,
                        "); at least one must remain for training");
  validation_split s{{&all, static_cast<std::size_t>(n - k)}, {}};
  std::vector<std::size_t> last;
  for (std::int64_t i = n - k; i < n; ++i) last.push_back(static_cast<std::size_t>(i));
  if (k > 0) s.validation = all.subset(last);
  return s;
}

// The validation GED² of a model: the held-out cases cropped and encoded as `eval` prepares
// test cases, sampled with eval's default settings and seed (the same noise every time, so
// that two validations differ by the model alone) and scored by eval's code.
class val_ged_scorer {
 public:
  val_ged_scorer(const data::case_set& cases, const trainer_config& config, std::int64_t samples)
      : samples_(static_cast<int>(samples)) {
    const input_format format = input_format_of(config);
    in_.cases = data::evaluation_set(cases, format.crop_size, format.crop, format.seed);
    in_.has_annotations = true;
    encode_images(format, in_);
    annotations_ = gather_annotations(in_.cases);
    try {
      metrics::check_evaluation_sizes(samples_, annotations_.m, {});
    } catch (const value_error& e) {
      throw value_error("--val-samples " + std::to_string(samples) + ": " + e.what());
    }
  }

  template <class Device>
  double operator()(sampling_model<Device>& m) const {
    const eval_command defaults;
    rng g(defaults.seed);
    const sample_result r =
        draw_masks(m, in_.images.cview(), {samples_, defaults.steps, defaults.sampler, defaults.clip_x0}, g);
    return score_samples(r, samples_, annotations_, {}).raw.ged;
  }

 private:
  int samples_;
  sample_inputs in_;
  annotation_batch annotations_;
};

// The best validation so far, as best.safetensors records it (nullopt: no such file).
struct best_record {
  std::int64_t step = 0;
  double value = 0;
};

inline std::optional<best_record> read_best(const std::filesystem::path& best) {
  if (!std::filesystem::exists(best)) return std::nullopt;
  const auto file = io::safetensors_file::open(best);
  const auto& meta = file.metadata();
  std::optional<double> value;
  std::int64_t step = -1;
  if (const auto it = meta.find(val_ged_key); it != meta.end()) value = log_detail::to_real(it->second);
  if (const auto it = meta.find("step"); it != meta.end()) step = args_detail::to_integer(it->second).value_or(-1);
  if (!value || step < 0)
    throw format_error("'" + best.string() +
                       "' records no val_ged and step of its validation (delete it to resume: the next "
                       "validation writes a new one)");
  return best_record{step, *value};
}

// DIR/val.csv and the choice of the best: the command's side of a validation.
class validation_record {
 public:
  validation_record(std::filesystem::path dir, bool interactive) : dir_(std::move(dir)), interactive_(interactive) {}

  std::filesystem::path csv() const { return dir_ / "val.csv"; }
  std::filesystem::path best_file() const { return dir_ / "best.safetensors"; }

  // Keeps the rows up to `first_step` (a resumed run validates the later steps again).
  void start(std::int64_t first_step, bool resume, std::ostream& warnings) {
    std::string text = std::string(validation_log_header) + "\n";
    if (resume) {
      for (const std::string& row : kept_rows(first_step, warnings)) text += row + "\n";
      best_ = read_best(best_file());
    }
    io::write_file_atomically(csv(), text);
    out_.open(csv(), std::ios::app);
    throw_if<io_error>(!out_, "cannot append to '", csv().string(), "'");
  }

  // Appends the row, says so on `progress`; true (and val_ged in `metadata`) for a new best.
  bool record(std::int64_t step, double value, std::map<std::string, std::string>& metadata, std::ostream& progress) {
    const std::string text = args_detail::number_text(value);
    out_ << step << "," << text << "\n" << std::flush;
    throw_if<io_error>(!out_, "could not append to '", csv().string(), "' (disk full?)");
    const bool better = !best_ || value < best_->value;
    progress << (interactive_ ? "\n" : "") << "step " << step << ": val_ged " << text;
    if (better) {
      best_ = best_record{step, value};
      metadata[val_ged_key] = text;
      progress << " (best; writing " << best_file().string() << ")\n";
    } else {
      progress << " (best " << args_detail::number_text(best_->value) << " at step " << best_->step << ")\n";
    }
    return better;
  }

 private:
  std::vector<std::string> kept_rows(std::int64_t upto, std::ostream& warnings) const {
    std::vector<std::string> rows;
    std::ifstream in(csv());
    if (!in) return rows;
    std::string line;
    std::int64_t number = 1, later = 0;
    std::getline(in, line);
    while (std::getline(in, line)) {
      ++number;
      if (line.empty()) continue;
      const auto f = log_detail::fields(line);
      const auto step = f.size() == 2 ? args_detail::to_integer(f[0]) : std::nullopt;
      if (!step || !log_detail::to_real(f[1]) || *step < 1) {
        warnings << "warning: " << csv().string() << ":" << number << ": cannot read '" << log_detail::shown(line)
                 << "' as " << validation_log_header << "; the row is left out\n";
      } else if (*step > upto) {
        ++later;
      } else {
        rows.push_back(line);
      }
    }
    if (later > 0)
      warnings << "warning: " << csv().string() << ": " << later << " row(s) after step " << upto
               << " (the checkpoint) are left out; those steps are validated again\n";
    return rows;
  }

  std::filesystem::path dir_;
  bool interactive_;
  std::optional<best_record> best_;
  std::ofstream out_;
};

}  // namespace ambiseg::apps
