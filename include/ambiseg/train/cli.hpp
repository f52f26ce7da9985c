// ambiseg/train/cli.hpp — the `ambiseg` command line: parsing only (no I/O), so tests can
// check every error. Running the commands is train/commands.hpp.
//
//   ambiseg train  --data synthetic|PATH --out DIR [options]
//   ambiseg sample --ckpt FILE (--data SPEC | --image FILE.npy|.png) --out DIR [options]
//   ambiseg eval   --ckpt FILE --data SPEC [-n 4,16] [--pp 0.5] [options]
//   ambiseg export --data SPEC --out DIR [--crop S] [--crop-mode random|central] [--seed S]
// Options are `--name value` or `--name=value`; flags take no value.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <variant>
#include <string>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/nn/config.hpp"
#include "ambiseg/train/data_source.hpp"
#include "ambiseg/train/policies.hpp"
#include "ambiseg/train/trainer.hpp"

namespace ambiseg::train {

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

struct train_command {
  data_request data;
  trainer_config config;
  std::filesystem::path out;
  bool resume = false;
  std::string device = "cpu";  // cpu | cuda (a build with -DAMBISEG_CUDA=ON)
  std::int64_t checkpoint_every = 200;
  std::vector<std::int64_t> snapshots;  // steps whose weights are also kept in DIR/snapshots/
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
  std::optional<std::filesystem::path> init_noise, save_x0;
  std::filesystem::path out;
  std::uint64_t seed = 0;
  std::optional<bool> use_ema;
  std::string device = "cpu";
};

struct eval_command {
  std::filesystem::path ckpt;
  data_request data;
  std::optional<std::int64_t> images;  // default: the whole test set
  std::vector<int> n{4, 16};
  std::optional<double> pp = 0.5;
  int steps = 10;
  sampler_kind sampler = sampler_kind::ddpm_large;
  bool clip_x0 = false;
  bool baselines = false;  // reference rows: oracle + majority (synthetic), raters + majority (real data)
  std::optional<std::filesystem::path> out;
  std::uint64_t seed = 0;
  std::optional<bool> use_ema;
  std::string device = "cpu";
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

struct help_command {
  std::string topic;
};

using command = std::variant<train_command, sample_command, eval_command, export_command, help_command>;

inline std::string cli_usage() {
  return "usage: ambiseg <command> [options]\n"
         "\n"
         "  ambiseg train --data synthetic|PATH --out DIR [--crop 64|128] [--crop-mode random|central]\n"
         "                [--config default|small|tiny|paper|example] [--steps N] [--batch B] [--lr LR]\n"
         "                [--warmup N] [--decay-steps N] [--schedule cosine|linear|linear_simple|parabola]\n"
         "                [--input-scale B] [--prediction x|eps|v]\n"
         "                [--weighting snr|trunc_snr|snr_plus_one|uniform|sigmoid] [--sigmoid-bias B]\n"
         "                [--uniform-t] [--ema DECAY] [--encoding grey|imagenet] [--seed S]\n"
         "                [--checkpoint-every N] [--snapshots N1,N2,...] [--split DIR]\n"
         "                [--synthetic-images N] [--device cpu|cuda] [--resume]\n"
         "  ambiseg sample --ckpt FILE (--data SPEC [--images K] | --image FILE.npy|.png) --out DIR\n"
         "                [-n N] [--steps S] [--sampler ddpm|ddim|ddpm_small|ddpm_large] [--clip-x0]\n"
         "                [--init-noise FILE.npy] [--save-x0 FILE.npy] [--seed S] [--ema|--no-ema]\n"
         "                [--device cpu|cuda]\n"
         "  ambiseg eval --ckpt FILE --data SPEC [-n 4,16] [--pp 0.5|none] [--images K] [--steps S]\n"
         "                [--sampler ...] [--baselines] [--out DIR] [--seed S] [--ema|--no-ema]\n"
         "                [--device cpu|cuda]\n"
         "  ambiseg export --data SPEC --out DIR [--crop S] [--crop-mode random|central] [--seed S]\n"
         "\n"
         "PATH: a LIDC .pkl, a lidc-cimd-samples folder, or the DeepMind PNG layout (images/, gt/).\n"
         "See docs/training.md.\n";
}

namespace cli_detail {

struct arg_reader {
  std::span<const std::string> args;
  std::size_t i = 0;
  std::string name;
  std::optional<std::string> inline_value;

  bool next() {
    if (i >= args.size()) return false;
    const std::string& a = args[i++];
    throw_if<value_error>(a.size() < 2 || a[0] != '-', "unexpected argument '", a, "' (options start with --)");
    inline_value.reset();
    const auto eq = a.find('=');
    if (eq != std::string::npos && a.rfind("--", 0) == 0) {
      name = a.substr(0, eq);
      inline_value = a.substr(eq + 1);
    } else {
      name = a;
    }
    return true;
  }
  std::string value() {
    if (inline_value) return *std::exchange(inline_value, std::nullopt);
    throw_if<value_error>(i >= args.size(), "option ", name, " needs a value");
    return args[i++];
  }
  void flag() const { throw_if<value_error>(inline_value.has_value(), "option ", name, " takes no value"); }

  std::int64_t integer(std::int64_t lo, std::int64_t hi) {
    const std::string v = value();
    std::size_t used = 0;
    long long x = 0;
    try {
      x = std::stoll(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    throw_if<value_error>(used == 0 || used != v.size(), "option ", name, ": '", v, "' is not an integer");
    throw_if<value_error>(x < lo || x > hi, "option ", name, ": ", x, " outside [", lo, ", ", hi, "]");
    return x;
  }
  double real(double lo, double hi) {
    const std::string v = value();
    std::size_t used = 0;
    double x = 0;
    try {
      x = std::stod(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    throw_if<value_error>(used == 0 || used != v.size() || !std::isfinite(x), "option ", name, ": '", v,
                          "' is not a number");
    throw_if<value_error>(x < lo || x > hi, "option ", name, ": ", x, " outside [", lo, ", ", hi, "]");
    return x;
  }
  std::string choice(const std::vector<std::string>& allowed) {
    const std::string v = value();
    for (const auto& a : allowed)
      if (a == v) return v;
    throw value_error("option " + name + ": '" + v + "' is not one of " + policy_detail::joined(allowed));
  }
  [[noreturn]] void unknown(const char* cmd) const {
    throw value_error(std::string("ambiseg ") + cmd + ": unknown option '" + name + "'");
  }
};

constexpr std::int64_t big = std::int64_t{1} << 40;

// Options shared by every command that reads data.
inline bool data_option(arg_reader& r, data_request& d) {
  if (r.name == "--data") d.spec = r.value();
  else if (r.name == "--split") d.split_dir = r.value();
  else if (r.name == "--synthetic-images") d.synthetic_train = r.integer(1, 1'000'000);
  else if (r.name == "--synthetic-test") d.synthetic_test = r.integer(1, 100'000);
  else if (r.name == "--synthetic-seed") d.synthetic_seed = static_cast<std::uint64_t>(r.integer(0, big));
  else return false;
  return true;
}

// "a,b,c" → integers in [lo, hi]; `increasing` demands a strictly increasing list.
inline std::vector<std::int64_t> parse_int_list(const std::string& option, const std::string& text, std::int64_t lo,
                                                std::int64_t hi, bool increasing, const char* example) {
  std::vector<std::int64_t> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    throw_if<value_error>(used == 0 || used != item.size() || v < lo || v > hi, "option ", option, ": '", item,
                          "' is not an integer in [", lo, ", ", hi, "] (use e.g. ", option, " ", example, ")");
    throw_if<value_error>(increasing && !out.empty() && v <= out.back(), "option ", option,
                          ": values must increase (", out.back(), " then ", v, ")");
    out.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

inline train_command parse_train(std::span<const std::string> args) {
  train_command c;
  arg_reader r{args, 0, {}, {}};
  bool has_data = false, has_out = false, has_warmup = false, has_decay = false;
  std::int64_t steps = 2000;
  std::string preset = "small";
  while (r.next()) {
    if (r.name == "--data") has_data = true;
    if (data_option(r, c.data)) continue;
    if (r.name == "--out") c.out = r.value(), has_out = true;
    else if (r.name == "--resume") r.flag(), c.resume = true;
    else if (r.name == "--crop") c.config.crop_size = r.integer(8, 4096);
    else if (r.name == "--crop-mode")
      c.config.crop = r.choice({"random", "central"}) == "random" ? data::crop_mode::random : data::crop_mode::central;
    else if (r.name == "--config") preset = r.value();
    else if (r.name == "--steps") steps = r.integer(1, big);
    else if (r.name == "--batch") c.config.batch_size = r.integer(1, 4096);
    else if (r.name == "--lr") c.config.lr.base_lr = r.real(0.0, 1.0);
    else if (r.name == "--warmup") c.config.lr.warmup_steps = r.integer(0, big), has_warmup = true;
    else if (r.name == "--decay-steps") c.config.lr.decay_steps = r.integer(0, big), has_decay = true;
    else if (r.name == "--weight-decay") c.config.adamw.weight_decay = r.real(0.0, 1.0);
    else if (r.name == "--clip") c.config.clip_norm = r.real(1e-12, 1e12);
    else if (r.name == "--schedule") c.config.policy.schedule = r.choice(schedule_names());
    else if (r.name == "--input-scale") c.config.policy.input_scale = r.real(1e-6, 1.0);
    else if (r.name == "--prediction") c.config.policy.prediction = r.choice(prediction_names());
    else if (r.name == "--weighting") c.config.policy.weighting = r.choice(weighting_names());
    else if (r.name == "--sigmoid-bias") c.config.policy.sigmoid_bias = r.real(-100.0, 100.0);
    else if (r.name == "--uniform-t") r.flag(), c.config.policy.stratified_t = false;
    else if (r.name == "--ema") c.config.ema_decay = r.real(0.0, 0.999999999);
    else if (r.name == "--encoding")
      c.config.encoding = r.choice({"grey", "imagenet"}) == "grey" ? data::image_encoding::grey
                                                                   : data::image_encoding::imagenet_rgb;
    else if (r.name == "--seed") c.config.seed = static_cast<std::uint64_t>(r.integer(0, big));
    else if (r.name == "--checkpoint-every") c.checkpoint_every = r.integer(1, big);
    else if (r.name == "--device") c.device = r.choice({"cpu", "cuda"});
    else if (r.name == "--snapshots") c.snapshots = parse_int_list(r.name, r.value(), 1, big, true, "500,1000,2000");
    else r.unknown("train");
  }
  throw_if<value_error>(!has_out, "ambiseg train: --out DIR is required");
  throw_if<value_error>(!has_data, "ambiseg train: --data synthetic|PATH is required");
  c.config.net = network_preset(preset);
  c.config.lr.total_steps = steps;
  // SPEC §7 scaled to the run: warm-up 1000 steps (at most a tenth of the run), cosine
  // decay over the last quarter (100k of 400k).
  if (!has_warmup) c.config.lr.warmup_steps = std::min<std::int64_t>(1000, std::max<std::int64_t>(1, steps / 10));
  if (!has_decay) c.config.lr.decay_steps = steps / 4;
  throw_if<value_error>(c.config.lr.decay_steps > steps, "ambiseg train: --decay-steps ", c.config.lr.decay_steps,
                        " exceeds --steps ", steps);
  c.config.adamw.lr = c.config.lr.base_lr;
  c.data.synthetic_size = c.config.crop_size;
  c.config.validate();
  return c;
}

inline void ema_option(arg_reader& r, std::optional<bool>& use_ema) {
  r.flag();
  use_ema = r.name == "--ema";
}

inline sample_command parse_sample(std::span<const std::string> args) {
  sample_command c;
  arg_reader r{args, 0, {}, {}};
  bool has_out = false, has_ckpt = false;
  data_request d;
  bool has_data = false;
  while (r.next()) {
    if (r.name == "--data") has_data = true;
    if (data_option(r, d)) continue;
    if (r.name == "--ckpt") c.ckpt = r.value(), has_ckpt = true;
    else if (r.name == "--image") c.image = r.value();
    else if (r.name == "--images") c.images = r.integer(1, 100'000);
    else if (r.name == "-n") c.n = static_cast<int>(r.integer(1, 4096));
    else if (r.name == "--steps") c.steps = static_cast<int>(r.integer(1, 100'000));
    else if (r.name == "--sampler") c.sampler = parse_sampler(r.choice(sampler_names()));
    else if (r.name == "--clip-x0") r.flag(), c.clip_x0 = true;
    else if (r.name == "--init-noise") c.init_noise = r.value();
    else if (r.name == "--save-x0") c.save_x0 = r.value();
    else if (r.name == "--out") c.out = r.value(), has_out = true;
    else if (r.name == "--seed") c.seed = static_cast<std::uint64_t>(r.integer(0, big));
    else if (r.name == "--ema" || r.name == "--no-ema") ema_option(r, c.use_ema);
    else if (r.name == "--device") c.device = r.choice({"cpu", "cuda"});
    else r.unknown("sample");
  }
  throw_if<value_error>(!has_ckpt, "ambiseg sample: --ckpt FILE is required");
  throw_if<value_error>(!has_out, "ambiseg sample: --out DIR is required");
  throw_if<value_error>(has_data == c.image.has_value(), "ambiseg sample: give exactly one of --data and --image");
  if (has_data) c.data = d;
  if (c.image) {
    const auto ext = c.image->extension();
    throw_if<value_error>(ext != ".npy" && ext != ".png" && ext != ".jpg" && ext != ".jpeg",
                          "ambiseg sample: --image '", c.image->string(), "' must be .npy, .png or .jpg");
  }
  return c;
}

inline std::vector<int> parse_n_list(const std::string& text) {
  const auto values = parse_int_list("-n", text, 1, 4096, false, "4,16");
  return {values.begin(), values.end()};
}

inline eval_command parse_eval(std::span<const std::string> args) {
  eval_command c;
  arg_reader r{args, 0, {}, {}};
  bool has_ckpt = false, has_data = false;
  while (r.next()) {
    if (r.name == "--data") has_data = true;
    if (data_option(r, c.data)) continue;
    if (r.name == "--ckpt") c.ckpt = r.value(), has_ckpt = true;
    else if (r.name == "-n") c.n = parse_n_list(r.value());
    else if (r.name == "--pp") {
      const std::string v = r.value();
      if (v == "none") c.pp.reset();
      else {
        r.inline_value = v;
        c.pp = r.real(0.0, 1.0);
      }
    } else if (r.name == "--images") c.images = r.integer(1, 1'000'000);
    else if (r.name == "--steps") c.steps = static_cast<int>(r.integer(1, 100'000));
    else if (r.name == "--sampler") c.sampler = parse_sampler(r.choice(sampler_names()));
    else if (r.name == "--clip-x0") r.flag(), c.clip_x0 = true;
    else if (r.name == "--baselines") r.flag(), c.baselines = true;
    else if (r.name == "--out") c.out = r.value();
    else if (r.name == "--seed") c.seed = static_cast<std::uint64_t>(r.integer(0, big));
    else if (r.name == "--ema" || r.name == "--no-ema") ema_option(r, c.use_ema);
    else if (r.name == "--device") c.device = r.choice({"cpu", "cuda"});
    else r.unknown("eval");
  }
  throw_if<value_error>(!has_ckpt, "ambiseg eval: --ckpt FILE is required");
  throw_if<value_error>(!has_data, "ambiseg eval: --data SPEC is required");
  return c;
}

inline export_command parse_export(std::span<const std::string> args) {
  export_command c;
  arg_reader r{args, 0, {}, {}};
  bool has_data = false, has_out = false;
  while (r.next()) {
    if (r.name == "--data") has_data = true;
    if (data_option(r, c.data)) continue;
    if (r.name == "--out") c.out = r.value(), has_out = true;
    else if (r.name == "--crop") c.crop_size = r.integer(8, 4096);
    else if (r.name == "--crop-mode")
      c.crop = r.choice({"random", "central"}) == "random" ? data::crop_mode::random : data::crop_mode::central;
    else if (r.name == "--seed") c.seed = static_cast<std::uint64_t>(r.integer(0, big));
    else r.unknown("export");
  }
  throw_if<value_error>(!has_out, "ambiseg export: --out DIR is required");
  throw_if<value_error>(!has_data, "ambiseg export: --data synthetic|PATH is required");
  c.data.synthetic_size = c.crop_size;
  return c;
}

}  // namespace cli_detail

// args excludes the program name. Throws value_error with a message for the user.
inline command parse_command(std::span<const std::string> args) {
  throw_if<value_error>(args.empty(), "missing command (train, sample, eval, export, help)");
  const std::string& cmd = args[0];
  const auto rest = args.subspan(1);
  // `ambiseg train --help` is a request for help, not an unknown option.
  for (const std::string& a : rest)
    if (a == "--help" || a == "-h") return help_command{cmd};
  if (cmd == "train") return cli_detail::parse_train(rest);
  if (cmd == "sample") return cli_detail::parse_sample(rest);
  if (cmd == "eval") return cli_detail::parse_eval(rest);
  if (cmd == "export") return cli_detail::parse_export(rest);
  if (cmd == "help" || cmd == "--help" || cmd == "-h") return help_command{rest.empty() ? "" : rest[0]};
  throw value_error("unknown command '" + cmd + "' (train, sample, eval, export, help)");
}

}  // namespace ambiseg::train
