// ambiseg/train/checkpoint.hpp — a training run in one safetensors file: the weights, the
// AdamW moments, the EMA weights and the metadata to continue bit for bit.
//
//   <name>            weights
//   optim.m.<name>    AdamW first moment      optim.v.<name>   second moment
//   ema.<name>        EMA weights (optional)
//   __metadata__      format, step, rng, optimizer, config (JSON), ema, dtype, user keys
// Saving and loading round-trip bit for bit. Loading checks names, shapes and metadata of
// every section before touching the model, optimiser or EMA (an I/O error during the reads
// that follow — a file truncated meanwhile — can still leave them partly loaded). The
// weights are read and written by name through io/checkpoint.hpp; this file is the part
// that knows the optimiser and the EMA, so it lives with training.
#pragma once

#include <bit>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/parameters.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/io/checkpoint.hpp"
#include "ambiseg/optim/adamw.hpp"
#include "ambiseg/optim/ema.hpp"

namespace ambiseg::train {

// ---- training checkpoints ------------------------------------------------------------

inline constexpr std::string_view training_checkpoint_format = "ambiseg.training_checkpoint.v1";

struct training_state {
  std::int64_t step = 0;  // completed training iterations
  rng::state_type rng_state{};
  nlohmann::json config = nlohmann::json::object();  // the model/training configuration
  std::map<std::string, std::string> extra;          // free-form (e.g. a git hash)
};

namespace detail {

inline const std::vector<std::string>& reserved_metadata_keys() {
  static const std::vector<std::string> keys = {"format", "step", "rng", "optimizer", "config", "ema", "dtype"};
  return keys;
}

inline nlohmann::json rng_to_json(const rng::state_type& s) {
  return {{"s", {s.s[0], s.s[1], s.s[2], s.s[3]}},
          {"cached_normal_bits", std::bit_cast<std::uint64_t>(s.cached_normal)},
          {"has_cached_normal", s.has_cached_normal}};
}

// Metadata field access that reports a malformed checkpoint as format_error.
struct metadata_reader {
  const io::safetensors_file& file;

  template <class... Args>
  void check(bool ok, Args&&... what) const {
    throw_if<format_error>(!ok, "load_training_checkpoint('", file.path().string(), "'): ",
                           std::forward<Args>(what)...);
  }
  const std::string& text(const std::string& key) const {
    auto it = file.metadata().find(key);
    check(it != file.metadata().end(), "metadata key '", key, "' is missing");
    return it->second;
  }
  nlohmann::json json(const std::string& key) const {
    try {
      return nlohmann::json::parse(text(key));
    } catch (const nlohmann::json::exception& e) {
      check(false, "metadata '", key, "' is not valid JSON: ", e.what());
    }
    return {};
  }
  template <class V>
  V field(const nlohmann::json& j, const std::string& key, const char* name) const {
    check(j.is_object() && j.contains(name), "metadata '", key, "' lacks \"", name, "\"");
    const auto& v = j.at(name);
    bool ok = false;
    if constexpr (std::is_same_v<V, bool>) ok = v.is_boolean();
    else if constexpr (std::is_same_v<V, std::uint64_t>) ok = v.is_number_unsigned();
    else if constexpr (std::is_integral_v<V>) ok = v.is_number_integer();
    else if constexpr (std::is_floating_point_v<V>) ok = v.is_number();
    else ok = v.is_string();
    check(ok, "metadata '", key, "': \"", name, "\" has the wrong type (", v.dump(), ")");
    return v.get<V>();
  }
};

}  // namespace detail

template <class T, class D>
void save_training_checkpoint(const std::filesystem::path& path, const parameter_store<T, D>& params,
                              const optim::adamw<T, D>& opt, const training_state& state,
                              std::type_identity_t<const optim::ema<T, D>*> ema = nullptr) {
  const std::int64_t flat = params.flat_values().numel();
  throw_if<shape_error>(opt.exp_avg().numel() != flat, "save_training_checkpoint: the optimiser holds ",
                        opt.exp_avg().numel(), " elements, the model ", flat);
  throw_if<shape_error>(ema && ema->shadow().numel() != flat, "save_training_checkpoint: the EMA holds ",
                        ema ? ema->shadow().numel() : 0, " elements, the model ", flat);
  std::map<std::string, std::string> meta;
  for (const auto& [k, v] : state.extra) {
    for (const auto& r : detail::reserved_metadata_keys())
      throw_if<value_error>(k == r, "save_training_checkpoint: extra metadata key '", k, "' is reserved");
    meta[k] = v;
  }
  const auto& o = opt.options();
  meta["format"] = std::string(training_checkpoint_format);
  meta["step"] = std::to_string(state.step);
  meta["rng"] = detail::rng_to_json(state.rng_state).dump();
  meta["optimizer"] = nlohmann::json{{"type", "adamw"},      {"lr", o.lr},   {"beta1", o.beta1},
                                     {"beta2", o.beta2},     {"eps", o.eps}, {"weight_decay", o.weight_decay},
                                     {"steps", opt.steps()}}.dump();
  meta["config"] = state.config.dump();
  meta["dtype"] = std::string(io::dtype_name(io::dtype_of<T>()));
  if (ema) meta["ema"] = nlohmann::json{{"decay", ema->decay()}, {"updates", ema->updates()}}.dump();

  const io::detail::host_flat_source<T, D> values(params.flat_values());
  const io::detail::host_flat_source<T, D> m(opt.exp_avg());
  const io::detail::host_flat_source<T, D> v(opt.exp_avg_sq());
  std::vector<io::tensor_to_save> entries;
  io::detail::append_entries(entries, params, values.data(), "");
  io::detail::append_entries(entries, params, m.data(), "optim.m.");
  io::detail::append_entries(entries, params, v.data(), "optim.v.");
  std::optional<io::detail::host_flat_source<T, D>> averaged;
  if (ema) {
    averaged.emplace(ema->shadow());
    io::detail::append_entries(entries, params, averaged->data(), "ema.");
  }
  io::save_safetensors(path, entries, meta);
}

// Restores weights, optimiser state (moments, step count, hyperparameters, as
// torch's load_state_dict does) and, when `ema` is given, the EMA weights and update count
// (its decay stays the one it was built with). Returns step, rng state, config, extras.
template <class T, class D>
training_state load_training_checkpoint(const std::filesystem::path& path, parameter_store<T, D>& params,
                                        optim::adamw<T, D>& opt,
                                        std::type_identity_t<optim::ema<T, D>*> ema = nullptr) {
  const auto file = io::safetensors_file::open(path);
  const detail::metadata_reader md{file};
  md.check(md.text("format") == training_checkpoint_format, "not a training checkpoint (format '",
           md.text("format"), "', expected '", training_checkpoint_format, "')");
  const std::int64_t flat = params.flat_values().numel();
  md.check(opt.exp_avg().numel() == flat, "the optimiser was built for ", opt.exp_avg().numel(),
           " elements, the model has ", flat);
  md.check(!ema || ema->shadow().numel() == flat, "the EMA holds a different number of elements than the model");

  // Parse and check everything first: a failure leaves model, optimiser and EMA as they were.
  training_state state;
  const std::string& step_text = md.text("step");
  md.check(!step_text.empty() && step_text.size() < 19 &&
               step_text.find_first_not_of("0123456789") == std::string::npos,
           "metadata 'step' is not a non-negative integer: '", step_text, "'");
  state.step = std::stoll(step_text);

  const auto r = md.json("rng");
  md.check(r.is_object() && r.contains("s") && r["s"].is_array() && r["s"].size() == 4,
           "metadata 'rng' lacks the four state words \"s\"");
  for (std::size_t i = 0; i < 4; ++i) {
    md.check(r["s"][i].is_number_unsigned(), "metadata 'rng': state word ", i, " is not an unsigned integer");
    state.rng_state.s[i] = r["s"][i].get<std::uint64_t>();
  }
  state.rng_state.cached_normal = std::bit_cast<double>(md.field<std::uint64_t>(r, "rng", "cached_normal_bits"));
  state.rng_state.has_cached_normal = md.field<bool>(r, "rng", "has_cached_normal");

  const auto o = md.json("optimizer");
  md.check(md.field<std::string>(o, "optimizer", "type") == "adamw", "optimizer type is not adamw");
  optim::adamw_options options{.lr = md.field<double>(o, "optimizer", "lr"),
                               .beta1 = md.field<double>(o, "optimizer", "beta1"),
                               .beta2 = md.field<double>(o, "optimizer", "beta2"),
                               .eps = md.field<double>(o, "optimizer", "eps"),
                               .weight_decay = md.field<double>(o, "optimizer", "weight_decay")};
  try {
    options.validate();
  } catch (const value_error& e) {
    md.check(false, "invalid optimizer settings: ", e.what());
  }
  const auto opt_steps = md.field<std::int64_t>(o, "optimizer", "steps");
  md.check(opt_steps >= 0, "negative optimizer step count ", opt_steps);
  state.config = md.json("config");

  std::int64_t ema_updates = 0;
  if (ema) {
    const auto e = md.json("ema");
    ema_updates = md.field<std::int64_t>(e, "ema", "updates");
    md.check(ema_updates >= 0, "negative EMA update count ", ema_updates);
  }
  for (const auto& [k, v] : file.metadata()) {
    bool reserved = false;
    for (const auto& key : detail::reserved_metadata_keys()) reserved = reserved || k == key;
    if (!reserved) state.extra[k] = v;
  }

  // Every section strict: the weights ignore the optim./ema. sections, and vice versa.
  const auto weights = io::detail::plan_load(params, file, {.prefix = ""});
  const auto m = io::detail::plan_load(params, file, {.prefix = "optim.m.", .ignore_prefixes = {}});
  const auto v = io::detail::plan_load(params, file, {.prefix = "optim.v.", .ignore_prefixes = {}});
  io::detail::throw_if_incomplete<T>(weights, file, "load_training_checkpoint: weights");
  io::detail::throw_if_incomplete<T>(m, file, "load_training_checkpoint: optimiser first moment");
  io::detail::throw_if_incomplete<T>(v, file, "load_training_checkpoint: optimiser second moment");
  io::detail::load_plan averaged;
  if (ema) {
    averaged = io::detail::plan_load(params, file, {.prefix = "ema.", .ignore_prefixes = {}});
    io::detail::throw_if_incomplete<T>(averaged, file, "load_training_checkpoint: EMA weights");
  }

  // The flat buffers' padding is zero everywhere; clearing first keeps it so (off the
  // CPU the staging copies start at zero and are uploaded whole).
  using target_start = typename io::detail::host_flat_target<T, D>::start;
  opt.reset();
  {
    io::detail::host_flat_target<T, D> dst(params.flat_values(), target_start::zeros);
    io::detail::execute_load(weights, params, file, "", dst.data());
    dst.commit();
  }
  {
    io::detail::host_flat_target<T, D> dst(opt.exp_avg(), target_start::zeros);
    io::detail::execute_load(m, params, file, "optim.m.", dst.data());
    dst.commit();
  }
  {
    io::detail::host_flat_target<T, D> dst(opt.exp_avg_sq(), target_start::zeros);
    io::detail::execute_load(v, params, file, "optim.v.", dst.data());
    dst.commit();
  }
  opt.set_options(options);
  opt.set_steps(opt_steps);
  if (ema) {
    io::detail::host_flat_target<T, D> dst(ema->shadow(), target_start::zeros);
    io::detail::execute_load(averaged, params, file, "ema.", dst.data());
    dst.commit();
    ema->set_updates(ema_updates);
  }
  return state;
}

}  // namespace ambiseg::train
