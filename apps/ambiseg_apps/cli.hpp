// ambiseg_apps/cli.hpp — the `ambiseg` command line: parsing only (no I/O), so tests can
// check every error. Running the commands is commands.hpp; the reader is args.hpp.
//
//   ambiseg train  --data synthetic|PATH --out DIR [options]
//   ambiseg sample --ckpt FILE (--data SPEC | --image FILE.npy|.png) --out DIR [options]
//   ambiseg eval   --ckpt FILE --data SPEC [-n 4,16] [--pp 0.5] [options]
//   ambiseg export --data SPEC --out DIR [--crop S] [--crop-mode random|central] [--seed S]
//   ambiseg distill --ckpt TEACHER --data SPEC --out DIR --to 4|2|1 [options]
// Options are `--name value` or `--name=value`; flags take no value. A parse error is a
// value_error; run_cli prints it as "ambiseg <command>: error: ..." above the usage.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/error.hpp"
#include "ambiseg/metrics/evaluate.hpp"
#include "ambiseg_apps/args.hpp"
#include "ambiseg_apps/data_source.hpp"
#include "ambiseg_apps/model_api.hpp"

namespace ambiseg::apps {

// `train --select-best-by val_ged`: the criterion, how often and on what it is measured
// (selection.hpp). Resolved at parsing: `every` is never 0 in a parsed command.
struct selection_options {
  std::string by = "val_ged";
  std::int64_t every = 0;    // steps between validations (--val-every; default --checkpoint-every)
  std::int64_t cases = 0;    // the last K training cases (in the loader's order), held out
  std::int64_t samples = 16;  // masks per validation image
};

inline void to_json(nlohmann::json& j, const selection_options& s) {
  j = {{"by", s.by}, {"every", s.every}, {"cases", s.cases}, {"samples", s.samples}};
}

struct train_command {
  data_request data;
  trainer_config config;
  std::filesystem::path out;
  bool resume = false;
  std::string device = "cpu";  // cpu | cuda (a build with -DAMBISEG_CUDA=ON)
  std::string cpu_conv = "winograd";  // --cpu-conv (apply_cpu_conv, commands.hpp)
  std::string precision = "fp32";     // --precision (precision_for_run, commands.hpp)
  std::int64_t checkpoint_every = 200;
  std::vector<std::int64_t> snapshots;  // steps whose weights are also kept in DIR/snapshots/
  std::optional<selection_options> select;  // --select-best-by: validation and DIR/best.safetensors
  std::optional<double> cpu_budget;  // --cpu-budget: CPU seconds of training steps, then stop
};

struct sample_command {
  std::filesystem::path ckpt;
  std::optional<data_request> data;
  std::optional<std::filesystem::path> image;
  std::int64_t images = 4;  // test images taken from --data
  int n = 8;
  int steps = 10;
  sampler_kind sampler = sampler_kind::ddpm_large;
  bool clip_x0 = false;
  diffusion::time_spacing spacing = diffusion::time_spacing::uniform_t;
  std::optional<std::filesystem::path> init_noise, save_x0;
  std::filesystem::path out;
  std::uint64_t seed = 0;
  std::optional<bool> use_ema;
  std::string device = "cpu";
  std::string cpu_conv = "winograd";
  std::string precision = "fp32";
};

struct eval_command {
  std::filesystem::path ckpt;
  data_request data;
  std::optional<std::int64_t> images;  // default: the whole test set
  std::vector<int> n{4, 16};
  std::vector<double> pp{0.5};  // post-processing ratios, a row each; empty: raw only
  int steps = 10;
  sampler_kind sampler = sampler_kind::ddpm_large;
  bool clip_x0 = false;
  diffusion::time_spacing spacing = diffusion::time_spacing::uniform_t;
  bool baselines = false;  // reference rows: oracle + majority (synthetic), raters + majority (real data)
  std::optional<std::filesystem::path> out;
  std::uint64_t seed = 0;
  std::optional<bool> use_ema;
  std::string device = "cpu";
  std::string cpu_conv = "winograd";
  std::string precision = "fp32";
};

// The loaded data as .npy arrays, for other tools (the PyTorch peer of benchmarks/peer/):
// training cases as loaded, test cases cropped exactly as `ambiseg eval` crops them.
struct export_command {
  data_request data;
  std::int64_t crop_size = 64;
  data::crop_mode crop = data::crop_mode::random;
  std::uint64_t seed = 0;  // fixes the test crops (a model's --seed)
  std::filesystem::path out;
};

// Progressive distillation of a diffusion model's DDIM sampler: rounds from --from steps
// (or a distilled teacher's own) halving down to --to, each a training run in DIR/steps-<N>/.
struct distill_command {
  std::filesystem::path ckpt;  // the teacher
  data_request data;           // its training data
  std::filesystem::path out;
  int to = 1;                          // the last student's steps
  std::optional<int> from;             // the first teacher's steps (default 8)
  std::optional<std::string> spacing;  // the grid (default uniform_t; a distilled teacher's own)
  std::int64_t steps = 500;            // training steps per round
  std::optional<std::int64_t> batch;   // default: the teacher's
  double lr = 1e-4;
  std::optional<double> ema_decay;
  std::uint64_t seed = 0;
  std::int64_t checkpoint_every = 200;
  std::optional<double> cpu_budget;  // per round
  bool resume = false;
  std::string device = "cpu";
  std::string cpu_conv = "winograd";
  std::string precision = "fp32";
};

struct help_command {
  std::string topic;
};

using command =
    std::variant<train_command, sample_command, eval_command, export_command, distill_command, help_command>;

inline std::string cli_usage() {
  return "usage: ambiseg <command> [options]\n"
         "\n"
         "  ambiseg train --data synthetic|PATH --out DIR [--crop 64|128] [--crop-mode random|central]\n"
         "                [--config default|small|tiny|paper|example] [--steps N] [--batch B] [--lr LR]\n"
         "                [--warmup N] [--decay-steps N] [--weight-decay W] [--clip NORM]\n"
         "                [--schedule cosine|linear|linear_simple|parabola]\n"
         "                [--input-scale B] [--prediction x|eps|v]\n"
         "                [--weighting snr|trunc_snr|snr_plus_one|uniform|sigmoid] [--sigmoid-bias B]\n"
         "                [--uniform-t] [--ema DECAY] [--encoding grey|imagenet] [--seed S]\n"
         "                [--checkpoint-every N] [--snapshots N1,N2,...] [--split DIR]\n"
         "                [--synthetic-images N] [--device cpu|cuda] [--cpu-conv winograd|winograd2|direct]\n"
         "                [--precision fp32|tf32|bf16] [--resume] [--cpu-budget SECONDS]\n"
         "                [--model KIND [--model-config FILE|JSON]]  (default: diffusion, configured by\n"
         "                --config and the policy options above)\n"
         "                [--select-best-by val_ged --val-cases K [--val-every N] [--val-samples n]]\n"
         "                (the last K training cases are held out; every N steps, default\n"
         "                --checkpoint-every, and at the end their GED2 with n samples per image, as\n"
         "                eval computes it, goes to DIR/val.csv; the best is DIR/best.safetensors)\n"
         "  ambiseg sample --ckpt FILE (--data SPEC [--images K] | --image FILE.npy|.png) --out DIR\n"
         "                [-n N] [--steps S] [--sampler ddpm|ddim|ddpm_small|ddpm_large|dpmpp_2m|\n"
         "                dpmpp_3m|sde_dpmpp_2m|unipc|unipc3] [--spacing uniform_t|uniform_lambda] [--clip-x0]\n"
         "                [--init-noise FILE.npy] [--save-x0 FILE.npy] [--seed S] [--ema|--no-ema]\n"
         "                [--device cpu|cuda] [--cpu-conv winograd|winograd2|direct]\n"
         "                [--precision fp32|tf32|bf16|fp16]\n"
         "  ambiseg eval --ckpt FILE --data SPEC [-n 4,16] [--pp 0.5|R1,R2,...|none] [--protocol paper] [--images K]\n"
         "                [--steps S] [--sampler ...] [--spacing ...] [--baselines] [--out DIR] [--seed S] [--ema|--no-ema]\n"
         "                [--device cpu|cuda] [--cpu-conv winograd|winograd2|direct]\n"
         "                [--precision fp32|tf32|bf16|fp16]\n"
         "  ambiseg export --data SPEC --out DIR [--crop S] [--crop-mode random|central] [--seed S]\n"
         "  ambiseg distill --ckpt TEACHER --data SPEC --out DIR --to 4|2|1 [--from 8] [--steps N]\n"
         "                [--spacing uniform_t|uniform_lambda] [--batch B] [--lr LR] [--ema DECAY] [--seed S]\n"
         "                [--checkpoint-every N] [--cpu-budget SECONDS] [--resume] [--device cpu|cuda]\n"
         "                [--cpu-conv winograd|winograd2|direct] [--precision fp32|tf32|bf16]\n"
         "                (progressive distillation: each round halves the DDIM steps, --steps training\n"
         "                steps (or --cpu-budget CPU seconds) a round, into DIR/steps-<N>/; see docs/distillation.md)\n"
         "\n"
         "PATH: a LIDC .pkl, a lidc-cimd-samples folder, or the DeepMind PNG layout (images/, gt/).\n"
         "Every command that reads --data takes --folds K --fold I: K-fold cross-validation over all\n"
         "the cases (sorted by id, fold = position mod K); train uses the other folds, sample/eval fold I.\n"
         "--cpu-budget stops training once its steps have used that much process CPU time.\n"
         "--cpu-conv: the CPU's 3x3 convolutions by Winograd F(4x4,3x3) (default, fastest), F(2x2,3x3)\n"
         "(as accurate as direct) or the direct method (see docs/ops.md).\n"
         "--precision (with --device cuda): the GEMMs and convolutions in fp32 (default), on TF32\n"
         "tensor cores, or on bf16/fp16 tensor cores with float accumulation and float tensors\n"
         "(fp16 for sample and eval only: its gradients would need loss scaling); see docs/cuda.md.\n"
         "ambiseg help models lists the model kinds.\n"
         "See docs/training.md.\n";
}

namespace cli_detail {

// Options shared by every command that reads data.
inline bool data_option(arg_reader& r, data_request& d) {
  if (r.is("--data")) d.spec = r.text();
  else if (r.is("--split")) d.split_dir = r.text();
  else if (r.is("--synthetic-images")) d.synthetic_train = r.integer(1, 1'000'000);
  else if (r.is("--synthetic-test")) d.synthetic_test = r.integer(1, 100'000);
  else if (r.is("--synthetic-seed")) d.synthetic_seed = static_cast<std::uint64_t>(r.integer(0, largest_count));
  else if (r.is("--folds")) d.folds = r.integer(2, 1'000'000);
  else if (r.is("--fold")) d.fold = r.integer(0, 1'000'000);
  else return false;
  return true;
}

inline data::crop_mode crop_mode_option(arg_reader& r) {
  return r.choice({"random", "central"}) == "random" ? data::crop_mode::random : data::crop_mode::central;
}

// --model-config: a JSON object, inline or in a file.
inline nlohmann::json model_config_option(arg_reader& r) {
  const std::string v = r.text();
  std::string text = v;
  if (v.empty() || v.front() != '{') {
    std::ifstream in(v, std::ios::binary);
    throw_if<value_error>(!in, "--model-config: cannot read '", v, "' (give a JSON file or an inline {...})");
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw value_error("--model-config '" + v + "': not valid JSON (" + e.what() + ")");
  }
  throw_if<value_error>(!j.is_object(), "--model-config '", v, "': expected a JSON object");
  return j;
}

// The training cases of the synthetic set: --synthetic-images, less the test fold's.
inline std::int64_t synthetic_training_cases(const data_request& d) {
  if (!d.folds) return d.synthetic_train;
  return d.synthetic_train - (d.synthetic_train - *d.fold + *d.folds - 1) / *d.folds;
}

// --precision: TF32 and 16-bit tensor cores are a GPU's. On the CPU ambiseg computes in
// fp32: its AVX512-BF16 GEMM, measured, made the training step slower than the fp32
// Winograd convolutions (docs/benchmarks.md). fp16 gradients underflow without loss
// scaling, which ambiseg does not do, so training takes bf16 instead.
inline void check_precision(const std::string& device, const std::string& precision, bool trains) {
  throw_if<value_error>(device != "cuda" && precision != "fp32", "--precision ", precision,
                        " needs --device cuda: on the CPU ambiseg computes in fp32 (a bf16 CPU path "
                        "measured slower than its fp32 Winograd convolutions; see docs/benchmarks.md)");
  throw_if<value_error>(trains && precision == "fp16",
                        "--precision fp16 is for sample and eval: fp16 gradients underflow without "
                        "loss scaling; train with bf16 (the same tensor cores, float's range)");
}

// --cpu-budget SECONDS: a positive, finite number (a year at most: more is a typing mistake).
inline double cpu_budget_option(arg_reader& r) {
  const double seconds = r.real(-std::numeric_limits<double>::max(), 365.0 * 24 * 3600);
  throw_if<value_error>(seconds <= 0.0, "option --cpu-budget: ", args_detail::number_text(seconds),
                        " is not a budget (give more than 0 CPU seconds)");
  return seconds;
}

inline void ema_option(arg_reader& r, std::optional<bool>& use_ema) {
  r.flag();
  use_ema = r.is("--ema");
}

inline train_command parse_train(std::span<const std::string> args) {
  train_command c;
  arg_reader r(args);
  bool has_data = false, has_out = false, has_warmup = false, has_decay = false;
  std::int64_t steps = 2000;
  std::string preset = "small";
  models::policy_choice policy;
  std::string model_kind(models::diffusion_kind);
  std::optional<nlohmann::json> model_config;
  std::string diffusion_flag;  // the first diffusion-only option given, for the message below
  selection_options select;
  std::string selection_flag;  // the first --val-* option given, for the message below
  auto validation_only = [&](arg_reader& reader) -> arg_reader& {
    if (selection_flag.empty()) selection_flag = reader.name();
    return reader;
  };
  bool has_select = false;
  auto diffusion_only = [&](arg_reader& reader) -> arg_reader& {
    if (diffusion_flag.empty()) diffusion_flag = reader.name();
    return reader;
  };
  while (r.next()) {
    if (r.is("--data")) has_data = true;
    if (data_option(r, c.data)) continue;
    if (r.is("--out")) c.out = r.text(), has_out = true;
    else if (r.is("--resume")) r.flag(), c.resume = true;
    else if (r.is("--crop")) c.config.crop_size = r.integer(8, 4096);
    else if (r.is("--crop-mode")) c.config.crop = crop_mode_option(r);
    else if (r.is("--config")) preset = diffusion_only(r).text();
    else if (r.is("--model")) model_kind = r.choice(model_kinds());
    else if (r.is("--model-config")) model_config = model_config_option(r);
    else if (r.is("--steps")) steps = r.integer(1, largest_count);
    else if (r.is("--batch")) c.config.batch_size = r.integer(1, 4096);
    else if (r.is("--lr")) c.config.lr.base_lr = r.real(0.0, 1.0);
    else if (r.is("--warmup")) c.config.lr.warmup_steps = r.integer(0, largest_count), has_warmup = true;
    else if (r.is("--decay-steps")) c.config.lr.decay_steps = r.integer(0, largest_count), has_decay = true;
    else if (r.is("--weight-decay")) c.config.adamw.weight_decay = r.real(0.0, 1.0);
    else if (r.is("--clip")) c.config.clip_norm = r.real(1e-12, 1e12);
    else if (r.is("--schedule")) policy.schedule = diffusion_only(r).choice(models::schedule_names());
    else if (r.is("--input-scale")) policy.input_scale = diffusion_only(r).real(1e-6, 1.0);
    else if (r.is("--prediction")) policy.prediction = diffusion_only(r).choice(models::prediction_names());
    else if (r.is("--weighting")) policy.weighting = diffusion_only(r).choice(models::weighting_names());
    else if (r.is("--sigmoid-bias")) policy.sigmoid_bias = diffusion_only(r).real(-100.0, 100.0);
    else if (r.is("--uniform-t")) diffusion_only(r).flag(), policy.stratified_t = false;
    else if (r.is("--ema")) c.config.ema_decay = r.real(0.0, 0.999999999);
    else if (r.is("--encoding"))
      c.config.encoding = r.choice({"grey", "imagenet"}) == "grey" ? data::image_encoding::grey
                                                                   : data::image_encoding::imagenet_rgb;
    else if (r.is("--seed")) c.config.seed = static_cast<std::uint64_t>(r.integer(0, largest_count));
    else if (r.is("--checkpoint-every")) c.checkpoint_every = r.integer(1, largest_count);
    else if (r.is("--device")) c.device = r.choice({"cpu", "cuda"});
    else if (r.is("--cpu-conv")) c.cpu_conv = r.choice({"winograd", "winograd2", "direct"});
    else if (r.is("--precision")) c.precision = r.choice({"fp32", "tf32", "bf16", "fp16"});
    else if (r.is("--snapshots")) c.snapshots = r.integer_list(1, largest_count, true, "500,1000,2000");
    else if (r.is("--select-best-by")) select.by = r.choice({"val_ged"}), has_select = true;
    else if (r.is("--val-every")) select.every = validation_only(r).integer(1, largest_count);
    else if (r.is("--val-cases")) select.cases = validation_only(r).integer(1, largest_count);
    else if (r.is("--val-samples")) select.samples = validation_only(r).integer(1, 4096);
    else if (r.is("--cpu-budget")) c.cpu_budget = cpu_budget_option(r);
    else r.unknown();
  }
  throw_if<value_error>(!has_out, "--out DIR is required");
  throw_if<value_error>(!has_data, "--data synthetic|PATH is required");
  check_fold_request(c.data);
  throw_if<value_error>(!has_select && !selection_flag.empty(), selection_flag,
                        " configures the validation of --select-best-by val_ged, which is not given");
  if (has_select) {
    throw_if<value_error>(select.cases == 0, "--select-best-by ", select.by,
                          " needs --val-cases K (the last K training cases are held out for validation)");
    // The synthetic set's size is known now; a data set's is checked once it is loaded.
    const std::int64_t synthetic_cases = synthetic_training_cases(c.data);
    throw_if<value_error>(c.data.spec == "synthetic" && select.cases >= synthetic_cases, "--val-cases ",
                          select.cases, " holds out every training case (", synthetic_cases, " training cases",
                          c.data.folds ? " outside the test fold" : ", --synthetic-images",
                          "); at least one must remain for training");
    if (select.every == 0) select.every = c.checkpoint_every;
    c.select = select;
  }
  // The diffusion model is configured by its options; another model by --model-config alone.
  throw_if<value_error>(model_config && !diffusion_flag.empty(), diffusion_flag,
                        " configures the diffusion model; with --model-config the file says it all");
  throw_if<value_error>(model_kind != models::diffusion_kind && !diffusion_flag.empty(), diffusion_flag,
                        " applies to --model diffusion, not --model ", model_kind);
  if (model_config)
    c.config.model = {model_kind, *model_config};
  else if (model_kind == models::diffusion_kind)
    c.config.model = models::diffusion_spec({network_preset(preset), policy});
  else
    c.config.model = {model_kind, nlohmann::json::object()};
  check_model(c.config.model, c.config.image_channels(), c.config.crop_size);
  c.config.lr.total_steps = steps;
  // SPEC §7 scaled to the run: warm-up 1000 steps (at most a tenth of the run), cosine
  // decay over the last quarter (100k of 400k).
  if (!has_warmup) c.config.lr.warmup_steps = std::min<std::int64_t>(1000, std::max<std::int64_t>(1, steps / 10));
  if (!has_decay) c.config.lr.decay_steps = steps / 4;
  throw_if<value_error>(c.config.lr.decay_steps > steps, "--decay-steps ", c.config.lr.decay_steps,
                        " exceeds --steps ", steps);
  c.config.adamw.lr = c.config.lr.base_lr;
  c.data.synthetic_size = c.config.crop_size;
  c.config.validate();
  cli_detail::check_precision(c.device, c.precision, true);
  return c;
}

inline sample_command parse_sample(std::span<const std::string> args) {
  sample_command c;
  arg_reader r(args);
  bool has_out = false, has_ckpt = false, has_data = false;
  data_request d;
  while (r.next()) {
    if (r.is("--data")) has_data = true;
    if (data_option(r, d)) continue;
    if (r.is("--ckpt")) c.ckpt = r.text(), has_ckpt = true;
    else if (r.is("--image")) c.image = r.text();
    else if (r.is("--images")) c.images = r.integer(1, 100'000);
    else if (r.is("-n")) c.n = static_cast<int>(r.integer(1, 4096));
    else if (r.is("--steps")) c.steps = static_cast<int>(r.integer(1, 100'000));
    else if (r.is("--sampler")) c.sampler = models::parse_sampler(r.choice(models::sampler_names()));
    else if (r.is("--clip-x0")) r.flag(), c.clip_x0 = true;
    else if (r.is("--spacing")) c.spacing = diffusion::parse_spacing(r.choice(models::spacing_names()));
    else if (r.is("--init-noise")) c.init_noise = r.text();
    else if (r.is("--save-x0")) c.save_x0 = r.text();
    else if (r.is("--out")) c.out = r.text(), has_out = true;
    else if (r.is("--seed")) c.seed = static_cast<std::uint64_t>(r.integer(0, largest_count));
    else if (r.is("--ema") || r.is("--no-ema")) ema_option(r, c.use_ema);
    else if (r.is("--device")) c.device = r.choice({"cpu", "cuda"});
    else if (r.is("--cpu-conv")) c.cpu_conv = r.choice({"winograd", "winograd2", "direct"});
    else if (r.is("--precision")) c.precision = r.choice({"fp32", "tf32", "bf16", "fp16"});
    else r.unknown();
  }
  throw_if<value_error>(!has_ckpt, "--ckpt FILE is required");
  throw_if<value_error>(!has_out, "--out DIR is required");
  throw_if<value_error>(has_data == c.image.has_value(), "give exactly one of --data and --image");
  if (has_data) check_fold_request(d), c.data = d;
  if (c.image) {
    const auto ext = c.image->extension();
    throw_if<value_error>(ext != ".npy" && ext != ".png" && ext != ".jpg" && ext != ".jpeg", "--image '",
                          c.image->string(), "' must be .npy, .png or .jpg");
  }
  cli_detail::check_precision(c.device, c.precision, false);
  return c;
}

inline eval_command parse_eval(std::span<const std::string> args) {
  eval_command c;
  arg_reader r(args);
  bool has_ckpt = false, has_data = false, paper = false;
  std::string protocol_conflict;  // -n or --pp, which --protocol paper fixes
  while (r.next()) {
    if (r.is("--data")) has_data = true;
    if (data_option(r, c.data)) continue;
    if (r.is("--ckpt")) c.ckpt = r.text(), has_ckpt = true;
    else if (r.is("-n")) {
      protocol_conflict = "-n";
      const auto values = r.integer_list(1, 4096, false, "4,16");
      c.n.assign(values.begin(), values.end());
    } else if (r.is("--pp")) c.pp = r.ratios_or_none(), protocol_conflict = "--pp";
    else if (r.is("--protocol")) paper = r.choice({"paper", "default"}) == "paper";
    else if (r.is("--images")) c.images = r.integer(1, 1'000'000);
    else if (r.is("--steps")) c.steps = static_cast<int>(r.integer(1, 100'000));
    else if (r.is("--sampler")) c.sampler = models::parse_sampler(r.choice(models::sampler_names()));
    else if (r.is("--clip-x0")) r.flag(), c.clip_x0 = true;
    else if (r.is("--spacing")) c.spacing = diffusion::parse_spacing(r.choice(models::spacing_names()));
    else if (r.is("--baselines")) r.flag(), c.baselines = true;
    else if (r.is("--out")) c.out = r.text();
    else if (r.is("--seed")) c.seed = static_cast<std::uint64_t>(r.integer(0, largest_count));
    else if (r.is("--ema") || r.is("--no-ema")) ema_option(r, c.use_ema);
    else if (r.is("--device")) c.device = r.choice({"cpu", "cuda"});
    else if (r.is("--cpu-conv")) c.cpu_conv = r.choice({"winograd", "winograd2", "direct"});
    else if (r.is("--precision")) c.precision = r.choice({"fp32", "tf32", "bf16", "fp16"});
    else r.unknown();
  }
  throw_if<value_error>(!has_ckpt, "--ckpt FILE is required");
  throw_if<value_error>(!has_data, "--data SPEC is required");
  check_fold_request(c.data);
  if (paper) {
    throw_if<value_error>(!protocol_conflict.empty(), "--protocol paper scores 4 samples per image with --pp 0.5; drop ",
                          protocol_conflict);
    c.n = {metrics::paper_protocol_samples};
    c.pp = {*metrics::paper_protocol().pp_ratio};
  }
  cli_detail::check_precision(c.device, c.precision, false);
  return c;
}

inline export_command parse_export(std::span<const std::string> args) {
  export_command c;
  arg_reader r(args);
  bool has_data = false, has_out = false;
  while (r.next()) {
    if (r.is("--data")) has_data = true;
    if (data_option(r, c.data)) continue;
    if (r.is("--out")) c.out = r.text(), has_out = true;
    else if (r.is("--crop")) c.crop_size = r.integer(8, 4096);
    else if (r.is("--crop-mode")) c.crop = crop_mode_option(r);
    else if (r.is("--seed")) c.seed = static_cast<std::uint64_t>(r.integer(0, largest_count));
    else r.unknown();
  }
  throw_if<value_error>(!has_out, "--out DIR is required");
  throw_if<value_error>(!has_data, "--data synthetic|PATH is required");
  check_fold_request(c.data);
  c.data.synthetic_size = c.crop_size;
  return c;
}

inline bool power_of_two(std::int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

inline distill_command parse_distill(std::span<const std::string> args) {
  distill_command c;
  arg_reader r(args);
  bool has_ckpt = false, has_data = false, has_out = false, has_to = false;
  while (r.next()) {
    if (r.is("--data")) has_data = true;
    if (data_option(r, c.data)) continue;
    if (r.is("--ckpt")) c.ckpt = r.text(), has_ckpt = true;
    else if (r.is("--out")) c.out = r.text(), has_out = true;
    else if (r.is("--to")) c.to = static_cast<int>(r.integer(1, 4096)), has_to = true;
    else if (r.is("--from")) c.from = static_cast<int>(r.integer(2, 8192));
    else if (r.is("--spacing")) c.spacing = r.choice(models::spacing_names());
    else if (r.is("--steps")) c.steps = r.integer(1, largest_count);
    else if (r.is("--batch")) c.batch = r.integer(1, 4096);
    else if (r.is("--lr")) c.lr = r.real(0.0, 1.0);
    else if (r.is("--ema")) c.ema_decay = r.real(0.0, 0.999999999);
    else if (r.is("--seed")) c.seed = static_cast<std::uint64_t>(r.integer(0, largest_count));
    else if (r.is("--checkpoint-every")) c.checkpoint_every = r.integer(1, largest_count);
    else if (r.is("--cpu-budget")) c.cpu_budget = cpu_budget_option(r);
    else if (r.is("--resume")) r.flag(), c.resume = true;
    else if (r.is("--device")) c.device = r.choice({"cpu", "cuda"});
    else if (r.is("--cpu-conv")) c.cpu_conv = r.choice({"winograd", "winograd2", "direct"});
    else if (r.is("--precision")) c.precision = r.choice({"fp32", "tf32", "bf16", "fp16"});
    else r.unknown();
  }
  throw_if<value_error>(!has_ckpt, "--ckpt TEACHER is required (the diffusion model to distill)");
  throw_if<value_error>(!has_data, "--data synthetic|PATH is required (the teacher's training data)");
  throw_if<value_error>(!has_out, "--out DIR is required");
  throw_if<value_error>(!has_to, "--to N is required (the student's steps: 4, 2 or 1)");
  check_fold_request(c.data);
  if (c.from)
    throw_if<value_error>(*c.from <= c.to || *c.from % c.to != 0 || !power_of_two(*c.from / c.to), "--from ", *c.from,
                          " --to ", c.to, ": each round halves the steps, so --from must be --to times a power of two");
  cli_detail::check_precision(c.device, c.precision, true);
  return c;
}

}  // namespace cli_detail

// args excludes the program name. Throws value_error with a message for the user.
inline command parse_command(std::span<const std::string> args) {
  throw_if<value_error>(args.empty(), "missing command (train, sample, eval, export, distill, help)");
  const std::string& cmd = args[0];
  const auto rest = args.subspan(1);
  // `ambiseg train --help` is a request for help, not an unknown option.
  for (const std::string& a : rest)
    if (a == "--help" || a == "-h") return help_command{cmd};
  if (cmd == "train") return cli_detail::parse_train(rest);
  if (cmd == "sample") return cli_detail::parse_sample(rest);
  if (cmd == "eval") return cli_detail::parse_eval(rest);
  if (cmd == "export") return cli_detail::parse_export(rest);
  if (cmd == "distill") return cli_detail::parse_distill(rest);
  if (cmd == "help" || cmd == "--help" || cmd == "-h") return help_command{rest.empty() ? "" : rest[0]};
  throw value_error("unknown command '" + cmd + "' (train, sample, eval, export, distill, help)");
}

}  // namespace ambiseg::apps
